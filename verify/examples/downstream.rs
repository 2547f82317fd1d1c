//! A downstream poem-openapi service protected by authgate-verify.
//!
//! ```sh
//! cargo run -p authgate-verify --example downstream
//! ```
//! Finds its keys through the discovery document of `AUTHGATE_ISSUER` (default
//! `http://127.0.0.1:8080`), expects the audience `AUTHGATE_AUDIENCE` (default
//! `authgate`), listens on `DOWNSTREAM_LISTEN` (default `127.0.0.1:8081`), and serves
//! `GET /hello` → `{sub, sid}` for a valid access token (a user's, or a service client's
//! with `sid` null), `GET /admin` → `{sub, roles}` for
//! a token with the role `admin`, `GET /reports` → `{sub, scope}` for a token whose scope
//! includes `reports:read` (403 otherwise), with Swagger UI at `/docs`. Polls authgate's
//! revocation feed every `DOWNSTREAM_REVOCATION_INTERVAL` seconds (default 5) and refuses
//! tokens of ended sessions. Logs to stderr at the level of `DOWNSTREAM_LOG` (default `info`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "start-up of an example service: a failure should stop it"
)]

use std::sync::Arc;

use authgate_verify::poem::{AuthFailures, JwtAuth, Role, Scope, WithRole, WithScope};
use authgate_verify::{Caller, Verifier};
use poem::listener::TcpListener;
use poem::{EndpointExt, Route, Server};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, OpenApiService};

/// Who called.
#[derive(Object)]
struct Hello {
    /// The user id, or the client id of a service client (the token's `sub`).
    sub: String,
    /// The session id (the token's `sid`); null for a service client.
    sid: Option<String>,
}

/// An administrator.
#[derive(Object)]
struct AdminHello {
    sub: String,
    roles: Vec<String>,
}

/// A holder of `reports:read`.
#[derive(Object)]
struct Reports {
    sub: String,
    /// The token's scopes, space-separated.
    scope: String,
}

struct Admin;
impl Role for Admin {
    const NAME: &'static str = "admin";
}

struct ReportsRead;
impl Scope for ReportsRead {
    const NAME: &'static str = "reports:read";
}

struct Api;

#[OpenApi]
impl Api {
    /// Greets the holder of a valid authgate access token: a user, or a service client
    /// (`JwtAuth` alone admits users only, `JwtAuth<ClientClaims>` clients only).
    #[oai(path = "/hello", method = "get")]
    async fn hello(&self, auth: JwtAuth<Caller>) -> Result<Json<Hello>, AuthFailures> {
        Ok(Json(Hello {
            sub: auth.subject(),
            sid: auth.sid().map(|sid| sid.to_string()),
        }))
    }

    /// For tokens with the role `admin` (authgate roles, managed by its admin API). A
    /// service client's token is valid here but holds no role: 403.
    #[oai(path = "/admin", method = "get")]
    async fn admin(
        &self,
        auth: WithRole<Admin, Caller>,
    ) -> Result<Json<AdminHello>, AuthFailures<WithRole<Admin, Caller>>> {
        Ok(Json(AdminHello {
            sub: auth.subject(),
            roles: auth.roles().to_vec(),
        }))
    }

    /// For tokens whose scope includes `reports:read`: a user's (scopes come from roles,
    /// mapped in authgate's configuration file) or a service client's.
    #[oai(path = "/reports", method = "get")]
    async fn reports(
        &self,
        auth: WithScope<ReportsRead, Caller>,
    ) -> Result<Json<Reports>, AuthFailures<WithScope<ReportsRead, Caller>>> {
        Ok(Json(Reports {
            sub: auth.subject(),
            scope: auth.scope().unwrap_or_default().to_owned(),
        }))
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

// One thread, as the bench harness's ceiling server runs (bench/README.md), so that the
// comparison measures this library and not the choice of runtime.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // DOWNSTREAM_LOG (tracing's filter syntax, default `info`): a refused issuer or an
    // unreachable JWKS is a warning there, not a silent 503.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DOWNSTREAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let issuer = env_or("AUTHGATE_ISSUER", "http://127.0.0.1:8080");
    let audience = env_or("AUTHGATE_AUDIENCE", "authgate");
    let listen = env_or("DOWNSTREAM_LISTEN", "127.0.0.1:8081");

    // Tokens of sessions that ended (logout, theft, a disabled account) are refused
    // within this many seconds, although verification stays offline.
    let revocation_interval: u64 = env_or("DOWNSTREAM_REVOCATION_INTERVAL", "5").parse()?;
    let verifier = Verifier::builder(&issuer, &audience)
        .discovery()
        .revocation_feed(std::time::Duration::from_secs(revocation_interval))
        .build()
        .await?;

    let api = OpenApiService::new(Api, "downstream", "1.0");
    let docs = api.swagger_ui();
    let app = Route::new()
        .nest("/", api)
        .nest("/docs", docs)
        .data(Arc::new(verifier));
    Server::new(TcpListener::bind(listen)).run(app).await?;
    Ok(())
}
