//! HTTP: the poem-openapi operations, Swagger UI, the spec, and the edges every request
//! passes (body limit, problem+json for every failure).

pub mod account;
pub mod admin;
pub mod auth;
pub mod failures;
pub mod health;
pub mod oauth;
pub mod problem;
pub mod recovery;
pub mod revocations;
pub mod routes;
pub mod sessions;
mod strict;
pub mod wellknown;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use poem::http::{Method, header};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response};
use poem_openapi::OpenApiService;
use tracing::Instrument;

use crate::domain::keys::KeyRing;
use crate::domain::{AuthService, Client};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::telemetry::export::ServerSpan;
use crate::telemetry::{self, RequestTelemetry, Timings};
use crate::throttle::Throttle;
use problem::ProblemType;
use routes::{LabelledRoute, RouteLabels};

/// Bodies larger than this get 413, whether or not they declare a `Content-Length`.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// A client gets this long to send its body (slow-loris bodies get 408).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// No request is worked on longer than this (503 past it).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

type Apis = (
    auth::AuthApi,
    account::AccountApi,
    recovery::RecoveryApi,
    revocations::RevocationsApi,
    sessions::SessionsApi,
    oauth::OAuthApi,
    wellknown::WellKnownApi,
    health::HealthApi,
);

/// The OpenAPI service; constructible without state so the spec can be printed offline.
pub fn api_service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            auth::AuthApi,
            account::AccountApi,
            recovery::RecoveryApi,
            revocations::RevocationsApi,
            sessions::SessionsApi,
            oauth::OAuthApi,
            wellknown::WellKnownApi,
            health::HealthApi,
        ),
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
    pub throttle: Arc<Throttle>,
    pub trust_forwarded_for: bool,
    /// Whether responses carry `Server-Timing`.
    pub server_timing: bool,
    pub metrics: Arc<Metrics>,
}

pub fn app(state: State) -> impl Endpoint<Output = Response> {
    let api = api_service();
    let swagger_ui = api.swagger_ui();
    let spec_json = api.spec_endpoint();
    let spec_yaml = api.spec_endpoint_yaml();
    let throttle = state.throttle;
    let trust_forwarded_for = state.trust_forwarded_for;
    let metrics = state.metrics;
    let observed = metrics.clone();
    let server_timing = state.server_timing;
    let (route, labels) = LabelledRoute::new()
        .operations(api)
        .nest("/docs", swagger_ui)
        .at("/openapi.json", spec_json)
        .at("/openapi.yaml", spec_yaml)
        .at("/metrics", poem::get(render_metrics))
        .into_parts();
    let labels = Arc::new(labels);
    route
        .data(metrics)
        .data(state.service)
        .data(state.keys)
        .data(state.store)
        .data(wellknown::Issuer(state.issuer))
        .around(limit_body)
        .around(move |next, req| {
            let throttle = throttle.clone();
            async move { rate_limit(next, req, &throttle, trust_forwarded_for).await }
        })
        .catch_all_error(problem::catch_all)
        .around(move |next, req| {
            let metrics = observed.clone();
            let labels = labels.clone();
            async move { observe(next, req, &metrics, &labels, server_timing).await }
        })
}

/// The method as a metric label or log field: one of a fixed set, since any token is a
/// valid method and each distinct one would otherwise add a series for good.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// One log line and one metric sample per request, under a request id taken from
/// `X-Request-Id` (when it is short and printable) or made, and returned. The request is
/// handled inside a span holding the id, so every line logged on its behalf carries it;
/// with an OTLP endpoint that span is the request's server span, and with
/// `server_timing` its phases are summed into `Server-Timing`.
async fn observe<E: Endpoint>(
    next: Arc<E>,
    req: Request,
    metrics: &Metrics,
    labels: &RouteLabels,
    server_timing: bool,
) -> poem::Result<Response> {
    let started = std::time::Instant::now();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let method = method_label(req.method());
    let route = labels.label(req.uri().path());
    // At ERROR level so that the span is enabled whenever any event inside it is: at
    // `AUTHGATE_LOG=warn` an INFO span would be filtered out and a warning would lose
    // its request id.
    let span = tracing::span!(
        target: "authgate::http",
        tracing::Level::ERROR,
        "request",
        request_id = %request_id,
        method,
        route,
    );
    let telemetry = RequestTelemetry {
        timings: server_timing.then(|| Arc::new(Timings::default())),
        trace: ServerSpan::start(method, route, &request_id, req.headers()),
    };
    let handled = next.call(req).instrument(span);
    let handled = if telemetry.timings.is_some() || telemetry.trace.is_some() {
        telemetry::observed(telemetry.clone(), handled).await
    } else {
        handled.await
    };
    let mut response = handled.map(IntoResponse::into_response)?;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if let Some(trace) = telemetry.trace {
        trace.end(status);
    }
    metrics.observe_request(route, method, status, elapsed.as_secs_f64());
    tracing::info!(
        target: "authgate::http",
        request_id = %request_id,
        method,
        route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    if let Ok(value) = request_id.parse() {
        response.headers_mut().insert("x-request-id", value);
    }
    if let Some(timings) = telemetry.timings
        && let Ok(value) = timings.header_value(elapsed).parse()
    {
        response.headers_mut().insert("server-timing", value);
    }
    Ok(response)
}

#[poem::handler]
fn render_metrics(
    metrics: poem::web::Data<&Arc<Metrics>>,
    service: poem::web::Data<&Arc<AuthService>>,
    store: poem::web::Data<&Store>,
) -> Response {
    let hasher = service.hasher();
    metrics.set_pool("argon2", "running", hasher.running());
    metrics.set_pool("argon2", "queued", hasher.queued());
    let (open, idle) = store.pool_stats();
    metrics.set_pool("database", "open", open);
    metrics.set_pool("database", "idle", idle);
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .body(metrics.render())
}

/// The peer address, or with `AUTHGATE_TRUST_FORWARDED_FOR` the rightmost
/// `X-Forwarded-For` address (the one the trusted proxy saw).
fn client_ip(req: &Request, trust_forwarded_for: bool) -> IpAddr {
    let forwarded = trust_forwarded_for
        .then(|| req.headers().get_all("x-forwarded-for"))
        .and_then(|values| values.iter().filter_map(|v| v.to_str().ok()).next_back())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse::<IpAddr>().ok());
    forwarded
        .or_else(|| req.remote_addr().as_socket_addr().map(|addr| addr.ip()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Per-IP quota on `POST /v1/auth/*`, and the client address for the operations.
async fn rate_limit<E: Endpoint>(
    next: Arc<E>,
    mut req: Request,
    throttle: &Throttle,
    trust_forwarded_for: bool,
) -> poem::Result<Response> {
    let ip = insert_client(&mut req, trust_forwarded_for);
    if req.method() == Method::POST && req.uri().path().starts_with("/v1/auth/") {
        match throttle.check_rate(ip).await {
            Ok(Ok(())) => {}
            Ok(Err(retry)) => {
                let mut response = ProblemType::TooManyRequests.response(format!(
                    "Too many requests from this address; retry in {} s.",
                    retry.secs()
                ));
                if let Ok(value) = retry.secs().to_string().parse() {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                return Ok(response);
            }
            Err(err) => tracing::error!(error = %err, "rate limit unavailable; not enforced"),
        }
    }
    with_timeout(next, req).await
}

/// The client (address and user agent) as the operations take it; the address is
/// returned.
fn insert_client(req: &mut Request, trust_forwarded_for: bool) -> IpAddr {
    let ip = client_ip(req, trust_forwarded_for);
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    req.extensions_mut().insert(Client { ip, user_agent });
    ip
}

/// No request is worked on longer than [`REQUEST_TIMEOUT`].
async fn with_timeout<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.call(req)).await {
        Ok(result) => result.map(IntoResponse::into_response),
        Err(_) => Ok(ProblemType::Unavailable.response("The request took too long.")),
    }
}

/// For the admin listener: the client, the timeout, no rate limit (it is reached by
/// operators, with a key).
async fn with_client<E: Endpoint>(next: Arc<E>, mut req: Request) -> poem::Result<Response> {
    insert_client(&mut req, false);
    with_timeout(next, req).await
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
    let body = req.take_body().into_bytes_limit(MAX_BODY_BYTES);
    match tokio::time::timeout(BODY_TIMEOUT, body).await {
        Ok(Ok(bytes)) => req.set_body(bytes),
        Ok(Err(poem::error::ReadBodyError::PayloadTooLarge)) => return Ok(too_large()),
        Ok(Err(err)) => {
            return Ok(ProblemType::MalformedRequest.response(format!("Unreadable body: {err}")));
        }
        Err(_) => {
            return Ok(
                ProblemType::RequestTimeout.response("The request body did not arrive in time.")
            );
        }
    }
    next.call(req).await.map(IntoResponse::into_response)
}
