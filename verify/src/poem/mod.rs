//! poem and poem-openapi integration.
//!
//! Add the verifier to the app with `.data(Arc::new(verifier))`, then take
//! [`JwtAuth`] (poem-openapi operations; documented as a Bearer security scheme) or
//! [`Jwt`] (plain poem handlers) as a parameter. [`WithScope`] also demands scopes
//! (one, [`AllOf`] or [`AnyOf`]), [`WithRole`] a role; plain handlers check them with
//! [`RequireScope`] / [`RequireRole`], also for scope names known only at run time.
//! Every extractor hands over the claims the same way: `.claims()`, or through `Deref`
//! (`auth.sub`).
//! Failures answer `application/problem+json` with RFC 6750 `WWW-Authenticate`: 401
//! without a token or with an invalid one, 403 `insufficient_scope` (problem types
//! `insufficient-scope`, `insufficient-role`), and 503 while no keys could be loaded.
//! Declare them in an operation's spec with [`AuthFailures`] as its error type.

mod requirements;

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use poem::http::{StatusCode, header};
use poem::{FromRequest, IntoResponse, Request, RequestBody, Response};
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde::de::DeserializeOwned;

use crate::problem::{Problem, ProblemType};
use crate::{AccessClaims, Verifier, VerifyError};

pub use requirements::{
    AllOf, AnyOf, RequireRole, RequireScope, Role, Scope, ScopeRequirement, WithRole, WithScope,
};

/// Name of the security scheme in the OpenAPI document.
pub const SECURITY_SCHEME: &str = "AuthgateBearer";

/// Why a request was refused, as an HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No `Authorization: Bearer` header.
    MissingToken,
    /// The token did not verify; the reason is logged, not sent.
    InvalidToken(VerifyError),
    /// The token lacks these scopes (as the requirement states them, e.g. `a b` for
    /// all of them or `a|b` for either).
    InsufficientScope(String),
    /// The token lacks this role.
    InsufficientRole(String),
    /// No `Arc<Verifier>` was added to the app with `.data()`.
    NotConfigured,
}

impl Rejection {
    /// The problem type it is answered with.
    pub fn problem_type(&self) -> ProblemType {
        match self {
            Self::MissingToken => ProblemType::MissingToken,
            Self::InvalidToken(VerifyError::KeysUnavailable) => ProblemType::Unavailable,
            Self::InvalidToken(_) => ProblemType::InvalidToken,
            Self::InsufficientScope(_) => ProblemType::InsufficientScope,
            Self::InsufficientRole(_) => ProblemType::InsufficientRole,
            Self::NotConfigured => ProblemType::Internal,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.problem_type().status()
    }

    /// The problem+json response with its `WWW-Authenticate` challenge.
    pub fn to_response(&self) -> Response {
        let (detail, challenge) = match self {
            Self::MissingToken => (
                "This endpoint needs an Authorization: Bearer header.".to_owned(),
                Some("Bearer".to_owned()),
            ),
            Self::InvalidToken(VerifyError::KeysUnavailable) => (
                "The token issuer's keys could not be loaded; retry later.".to_owned(),
                None,
            ),
            Self::InvalidToken(_) => (
                "The access token is invalid or expired.".to_owned(),
                Some(
                    r#"Bearer error="invalid_token", error_description="The access token is invalid or expired""#
                        .to_owned(),
                ),
            ),
            Self::InsufficientScope(scope) => (
                format!("The access token lacks the scope {scope:?}."),
                Some(format!(
                    r#"Bearer error="insufficient_scope", scope="{}", error_description="The access token lacks a required scope""#,
                    scope.replace('|', " ")
                )),
            ),
            Self::InsufficientRole(role) => (
                format!("The access token lacks the role {role:?}."),
                Some(
                    r#"Bearer error="insufficient_scope", error_description="The access token lacks a required role""#
                        .to_owned(),
                ),
            ),
            Self::NotConfigured => (
                "The server failed to handle the request; it has been logged.".to_owned(),
                None,
            ),
        };
        let kind = self.problem_type();
        let mut response = kind.response(detail);
        let headers = response.headers_mut();
        if let Some(value) = challenge.and_then(|challenge| challenge.parse().ok()) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if kind == ProblemType::Unavailable {
            let retry_after = crate::jwks::NO_KEYS_RETRY_INTERVAL.as_secs().max(1);
            headers.insert(header::RETRY_AFTER, header::HeaderValue::from(retry_after));
        }
        response
    }
}

impl From<Rejection> for poem::Error {
    fn from(rejection: Rejection) -> Self {
        // from_response keeps the headers; an error type would lose them to catch-alls.
        poem::Error::from_response(rejection.to_response())
    }
}

/// The bearer token of a request, or `None`.
fn bearer_token(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Verifies the request's bearer token with the app's `Arc<Verifier>`.
pub async fn authenticate<T: DeserializeOwned>(req: &Request) -> Result<T, Rejection> {
    let Some(verifier) = req.data::<Arc<Verifier>>() else {
        tracing::error!("authgate-verify: add .data(Arc<Verifier>) to the app");
        return Err(Rejection::NotConfigured);
    };
    let token = bearer_token(req).ok_or(Rejection::MissingToken)?;
    verifier.verify_as(token).await.map_err(|reason| {
        tracing::debug!(%reason, "rejected bearer token");
        Rejection::InvalidToken(reason)
    })
}

pub(crate) fn register_scheme(registry: &mut Registry) {
    registry.create_security_scheme(
        SECURITY_SCHEME,
        MetaSecurityScheme {
            ty: "http",
            description: Some("An access token issued by authgate."),
            name: None,
            key_in: None,
            scheme: Some("bearer"),
            bearer_format: Some("JWT"),
            flows: None,
            openid_connect_url: None,
        },
    );
}

/// poem-openapi security scheme: a verified bearer token's claims (`T` defaults to
/// [`AccessClaims`]; use [`crate::Claims<YourClaims>`] for custom claims).
pub struct JwtAuth<T = AccessClaims>(pub T);

impl<T> JwtAuth<T> {
    pub fn claims(&self) -> &T {
        &self.0
    }
}

impl<T> Deref for JwtAuth<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<'a, T: DeserializeOwned + Send> ApiExtractor<'a> for JwtAuth<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        register_scheme(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![SECURITY_SCHEME]
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(Self(authenticate(req).await?))
    }
}

/// Plain poem extractor: a verified bearer token's claims.
pub struct Jwt<T = AccessClaims>(pub T);

impl<T> Jwt<T> {
    pub fn claims(&self) -> &T {
        &self.0
    }
}

impl<T> Deref for Jwt<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The refusals of the extractors, for an operation's spec: use it as the error type with
/// the operation's extractor as its parameter, `Result<Json<T>, AuthFailures<WithScope<
/// Write>>>` (default: [`JwtAuth`]), and the operation documents its 401, 503 and, when
/// the extractor demands a scope or role, the 403 naming it. The extractors answer
/// these themselves; an operation never needs to build one.
pub struct AuthFailures<E: Demands = JwtAuth>(Refusal, PhantomData<E>);

/// What an extractor demands beyond a valid token, as [`AuthFailures`] documents it.
pub trait Demands {
    /// `None` for any valid token; otherwise how the spec names the demand, e.g.
    /// ``scope `orders:write` ``.
    fn demands() -> Option<String>;
}

impl<T> Demands for JwtAuth<T> {
    fn demands() -> Option<String> {
        None
    }
}

impl<T> Demands for Jwt<T> {
    fn demands() -> Option<String> {
        None
    }
}

impl<S: ScopeRequirement, T> Demands for WithScope<S, T> {
    fn demands() -> Option<String> {
        Some(format!("scope `{}`", S::describe()))
    }
}

impl<R: Role, T> Demands for WithRole<R, T> {
    fn demands() -> Option<String> {
        Some(format!("role `{}`", R::NAME))
    }
}

#[derive(poem_openapi::ApiResponse)]
#[allow(dead_code)] // declared for the spec; the extractors answer these themselves
enum Refusal {
    /// No token, or one that is invalid or expired (`WWW-Authenticate: Bearer …`).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(
        poem_openapi::payload::Json<Problem>,
        #[oai(header = "WWW-Authenticate")] String,
    ),
    /// The token lacks a required scope or role.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(
        poem_openapi::payload::Json<Problem>,
        #[oai(header = "WWW-Authenticate")] String,
    ),
    /// The issuer's keys could not be loaded yet; retry after the given seconds.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(
        poem_openapi::payload::Json<Problem>,
        #[oai(header = "Retry-After")] u64,
    ),
}

impl<E: Demands> poem_openapi::ApiResponse for AuthFailures<E> {
    fn meta() -> poem_openapi::registry::MetaResponses {
        let mut meta = Refusal::meta();
        match E::demands() {
            Some(demand) => {
                for response in &mut meta.responses {
                    if response.status == Some(403) {
                        response.description = lasting(format!(
                            "The token lacks the {demand} this operation demands \
                             (`WWW-Authenticate: Bearer error=\"insufficient_scope\"`)."
                        ));
                    }
                }
            }
            // Any valid token will do: no 403.
            None => meta
                .responses
                .retain(|response| response.status != Some(403)),
        }
        meta
    }

    fn register(registry: &mut Registry) {
        Refusal::register(registry);
    }
}

impl<E: Demands + Send> IntoResponse for AuthFailures<E> {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl<E: Demands> From<AuthFailures<E>> for poem::Error {
    fn from(failures: AuthFailures<E>) -> Self {
        poem::Error::from(failures.0)
    }
}

/// A description that lives as long as the spec needs it (poem-openapi keeps `&'static
/// str`): made once per distinct text, however often the spec is generated.
fn lasting(text: String) -> &'static str {
    static MADE: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&found) = made.iter().find(|&&known| known == text) {
        return found;
    }
    let leaked: &'static str = Box::leak(text.into_boxed_str());
    made.push(leaked);
    leaked
}

impl<'a, T: DeserializeOwned + Send> FromRequest<'a> for Jwt<T> {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        Ok(Self(authenticate(req).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_role_is_a_403_with_its_own_problem_type() {
        let response = Rejection::InsufficientRole("admin".into()).to_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let challenge = response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap();
        assert!(
            challenge.contains(r#"error="insufficient_scope""#),
            "{challenge}"
        );
        assert_eq!(
            Rejection::InsufficientRole("admin".into())
                .problem_type()
                .uri(),
            "urn:authgate:problem:insufficient-role"
        );
    }

    #[test]
    fn a_503_asks_to_retry_when_the_verifier_itself_retries() {
        let response = Rejection::InvalidToken(VerifyError::KeysUnavailable).to_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let retry_after = response.headers()[header::RETRY_AFTER].to_str().unwrap();
        assert_eq!(
            retry_after.parse::<u64>().unwrap(),
            crate::jwks::NO_KEYS_RETRY_INTERVAL.as_secs()
        );
    }
}
