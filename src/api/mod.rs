//! HTTP: the poem-openapi operations, Swagger UI, the spec, and the edges every request
//! passes (body limit, problem+json for every failure).

pub mod auth;
pub mod health;
pub mod problem;
mod strict;
pub mod wellknown;

use std::sync::Arc;

use poem::http::header;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route};
use poem_openapi::OpenApiService;

use crate::domain::AuthService;
use crate::domain::keys::KeyRing;
use crate::store::Store;
use problem::ProblemType;

/// Bodies larger than this get 413, whether or not they declare a `Content-Length`.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

type Apis = (auth::AuthApi, wellknown::WellKnownApi, health::HealthApi);

/// The OpenAPI service; constructible without state so the spec can be printed offline.
pub fn api_service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (auth::AuthApi, wellknown::WellKnownApi, health::HealthApi),
        "authgate",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "JWT authentication: accounts, sessions, rotating refresh tokens and EdDSA \
         access tokens (RFC 9068) verifiable offline through the JWKS.",
    )
}

/// The spec as YAML, as `authgate openapi` prints it and `openapi.yaml` holds it.
pub fn spec_yaml() -> String {
    api_service().spec_yaml()
}

/// Everything an operation may need, handed out as poem data.
#[derive(Clone)]
pub struct State {
    pub service: Arc<AuthService>,
    pub keys: Arc<KeyRing>,
    pub store: Store,
    pub issuer: String,
}

pub fn app(state: State) -> impl Endpoint<Output = Response> {
    let api = api_service();
    let swagger_ui = api.swagger_ui();
    let spec_json = api.spec_endpoint();
    let spec_yaml = api.spec_endpoint_yaml();
    Route::new()
        .nest("/", api)
        .nest("/docs", swagger_ui)
        .at("/openapi.json", spec_json)
        .at("/openapi.yaml", spec_yaml)
        .data(state.service)
        .data(state.keys)
        .data(state.store)
        .data(wellknown::Issuer(state.issuer))
        .around(limit_body)
        .catch_all_error(problem::catch_all)
}

/// Reads the body up front with a hard limit, so an oversized body is refused before
/// any parsing, chunked or not.
async fn limit_body<E: Endpoint>(next: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let too_large = || {
        ProblemType::PayloadTooLarge
            .response(format!("The request body exceeds {MAX_BODY_BYTES} bytes."))
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Ok(too_large());
    }
    match req.take_body().into_bytes_limit(MAX_BODY_BYTES).await {
        Ok(bytes) => req.set_body(bytes),
        Err(poem::error::ReadBodyError::PayloadTooLarge) => return Ok(too_large()),
        Err(err) => {
            return Ok(ProblemType::MalformedRequest.response(format!("Unreadable body: {err}")));
        }
    }
    next.call(req).await.map(IntoResponse::into_response)
}
