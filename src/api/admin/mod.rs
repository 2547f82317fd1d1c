//! The admin API, served only on `AUTHGATE_ADMIN_LISTEN`: its own OpenAPI service,
//! Swagger UI at `/docs` and spec at `/openapi.json`; every operation takes an admin key
//! as a Bearer token.

mod audit;
mod clients;
mod users;
mod webhooks;

use std::sync::Arc;

use poem::{Endpoint, EndpointExt, Response};
use poem_openapi::auth::Bearer;
use poem_openapi::{OpenApiService, SecurityScheme, Tags};

use super::problem::{self, ProblemType, internal};
use super::routes::LabelledRoute;
use crate::domain::AuthService;
use crate::domain::admin::AdminCaller;
use crate::metrics::Metrics;

#[derive(Tags)]
enum AdminTags {
    /// Accounts and their sessions.
    Users,
    /// The audit trail.
    Audit,
    /// Event webhook deliveries.
    Webhooks,
    /// Service clients of the client-credentials grant.
    Clients,
}

/// An admin key from `authgate admin-keys create`, or a client-credentials token whose
/// scope includes `authgate:admin`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "authenticate")]
pub struct AdminKey(AdminCaller);

async fn authenticate(req: &poem::Request, bearer: Bearer) -> poem::Result<AdminCaller> {
    let service = req
        .data::<Arc<AuthService>>()
        .ok_or_else(|| poem::Error::from_status(poem::http::StatusCode::INTERNAL_SERVER_ERROR))?;
    // An admin key is base64url; a client token is a JWT.
    let caller = match bearer.token.contains('.') {
        true => service
            .authenticate_admin_client(&bearer.token)
            .await
            .map(|name| name.map(|key_name| AdminCaller { key_name })),
        false => service.authenticate_admin(&bearer.token).await,
    };
    match caller {
        Ok(Some(caller)) => Ok(caller),
        Ok(None) => {
            let mut response = ProblemType::InvalidToken.response(
                "Unknown or revoked admin key, or not a client token with scope authgate:admin.",
            );
            response.headers_mut().insert(
                poem::http::header::WWW_AUTHENTICATE,
                poem::http::HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            );
            Err(poem::Error::from_response(response))
        }
        Err(fault) => Err(poem::Error::from_response(
            ProblemType::Internal.response(internal(&fault).detail),
        )),
    }
}

type Apis = (
    users::UsersApi,
    audit::AuditApi,
    webhooks::WebhooksApi,
    clients::ClientsApi,
);

/// The admin OpenAPI service; constructible without state for `authgate openapi --admin`.
pub fn api_service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            users::UsersApi,
            audit::AuditApi,
            webhooks::WebhooksApi,
            clients::ClientsApi,
        ),
        "authgate admin",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Operators' API of authgate: accounts, their sessions, the audit trail, event deliveries and service clients. \
         Served only on AUTHGATE_ADMIN_LISTEN; every operation takes an admin key or a client token with scope authgate:admin.",
    )
}

/// The spec as YAML, as `authgate openapi --admin` prints it and `openapi-admin.yaml`
/// holds it.
pub fn spec_yaml() -> String {
    api_service().spec_yaml()
}

/// The admin listener's application.
pub fn app(
    service: Arc<AuthService>,
    metrics: Arc<Metrics>,
    server_timing: bool,
) -> impl Endpoint<Output = Response> {
    let api = api_service();
    let swagger_ui = api.swagger_ui();
    let spec_json = api.spec_endpoint();
    let (route, labels) = LabelledRoute::new()
        .operations(api)
        .nest("/docs", swagger_ui)
        .at("/openapi.json", spec_json)
        .into_parts();
    let labels = Arc::new(labels);
    let observed = metrics.clone();
    route
        .data(service)
        .around(super::limit_body)
        .around(|next, req| async move { super::with_client(next, req).await })
        .catch_all_error(problem::catch_all)
        .around(move |next, req| {
            let metrics = observed.clone();
            let labels = labels.clone();
            async move { super::observe(next, req, &metrics, &labels, server_timing).await }
        })
}
