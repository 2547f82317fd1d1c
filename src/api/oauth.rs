//! `/v1/oauth/*`: the client-credentials grant (RFC 6749 §4.4) and token introspection
//! (RFC 7662), for any OAuth 2.0 client library. Forms in, JSON out, and errors as RFC
//! 6749 §5.2 bodies (`error`, `error_description`), not problem+json.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use poem::Request;
use poem::web::Data;
use poem_openapi::payload::{Form, Json};
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::auth::{ApiTags, NO_STORE};
use super::problem::internal;
use crate::domain::AuthService;
use crate::domain::clients::{ClientCredentials, Introspection, OAuthError};

/// `POST /v1/oauth/token`'s form.
#[derive(Object, serde::Deserialize)]
pub struct TokenForm {
    /// `client_credentials`.
    pub grant_type: Option<String>,
    /// Space-separated scopes, each allowed for the client; absent: all of them.
    pub scope: Option<String>,
    /// `client_secret_post` (otherwise `Authorization: Basic`).
    pub client_id: Option<String>,
    #[oai(write_only)]
    pub client_secret: Option<String>,
}

/// `POST /v1/oauth/introspect`'s form.
#[derive(Object, serde::Deserialize)]
pub struct IntrospectionForm {
    /// An access token or a refresh token.
    #[oai(write_only)]
    pub token: Option<String>,
    /// `access_token` or `refresh_token`; a hint only.
    pub token_type_hint: Option<String>,
    pub client_id: Option<String>,
    #[oai(write_only)]
    pub client_secret: Option<String>,
}

#[derive(Object)]
pub struct ClientTokenBody {
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    pub expires_in: u64,
    /// The scopes granted, space-separated.
    pub scope: String,
}

/// RFC 7662 §2.2; only `active` when the token is not.
#[derive(Object, Default)]
pub struct IntrospectionBody {
    pub active: bool,
    /// `access_token` or `refresh_token`.
    #[oai(skip_serializing_if_is_none)]
    pub token_type: Option<String>,
    /// The user id, or the client id.
    #[oai(skip_serializing_if_is_none)]
    pub sub: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub client_id: Option<String>,
    /// The session of a user's token.
    #[oai(skip_serializing_if_is_none)]
    pub sid: Option<Uuid>,
    #[oai(skip_serializing_if_is_none)]
    pub scope: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub roles: Option<Vec<String>>,
    #[oai(skip_serializing_if_is_none)]
    pub exp: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub iat: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub iss: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub aud: Option<String>,
}

impl From<Introspection> for IntrospectionBody {
    fn from(found: Introspection) -> Self {
        Self {
            active: found.active,
            token_type: found.token_type.map(str::to_owned),
            sub: found.sub,
            client_id: found.client_id,
            sid: found.sid,
            scope: found.scope,
            roles: found.roles,
            exp: found.exp,
            iat: found.iat,
            iss: found.iss,
            aud: found.aud,
        }
    }
}

/// RFC 6749 §5.2.
#[derive(Object)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `unsupported_grant_type`, `invalid_scope`
    /// or `server_error`.
    pub error: String,
    pub error_description: String,
}

fn error_body(error: &str, description: impl Into<String>) -> Json<OAuthErrorBody> {
    Json(OAuthErrorBody {
        error: error.to_owned(),
        error_description: description.into(),
    })
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "TokenResponse::unparsable")]
pub enum TokenResponse {
    #[oai(status = 200)]
    Ok(
        Json<ClientTokenBody>,
        #[oai(header = "Cache-Control")] String,
        #[oai(header = "Pragma")] String,
    ),
    /// `invalid_request`, `unsupported_grant_type` or `invalid_scope`.
    #[oai(status = 400)]
    BadRequest(
        Json<OAuthErrorBody>,
        #[oai(header = "Cache-Control")] String,
    ),
    /// `invalid_client`, with `WWW-Authenticate: Basic`.
    #[oai(status = 401)]
    Unauthorized(
        Json<OAuthErrorBody>,
        #[oai(header = "WWW-Authenticate")] String,
    ),
    /// `server_error`.
    #[oai(status = 500)]
    Internal(Json<OAuthErrorBody>),
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "IntrospectionResponse::unparsable")]
pub enum IntrospectionResponse {
    #[oai(status = 200)]
    Ok(
        Json<IntrospectionBody>,
        #[oai(header = "Cache-Control")] String,
    ),
    /// `invalid_request`.
    #[oai(status = 400)]
    BadRequest(
        Json<OAuthErrorBody>,
        #[oai(header = "Cache-Control")] String,
    ),
    /// `invalid_client`, with `WWW-Authenticate: Basic`.
    #[oai(status = 401)]
    Unauthorized(
        Json<OAuthErrorBody>,
        #[oai(header = "WWW-Authenticate")] String,
    ),
    /// `server_error`.
    #[oai(status = 500)]
    Internal(Json<OAuthErrorBody>),
}

/// The answers both OAuth endpoints share.
trait Refusals: Sized {
    fn bad_request(body: Json<OAuthErrorBody>) -> Self;
    fn unauthorized(body: Json<OAuthErrorBody>) -> Self;
    fn internal(body: Json<OAuthErrorBody>) -> Self;

    /// How each failure is answered (RFC 6749 §5.2).
    fn refuse(err: &OAuthError) -> Self {
        let body = |code: &str| error_body(code, err.to_string());
        match err {
            OAuthError::InvalidRequest(_) => Self::bad_request(body("invalid_request")),
            OAuthError::UnsupportedGrantType => Self::bad_request(body("unsupported_grant_type")),
            OAuthError::InvalidScope => Self::bad_request(body("invalid_scope")),
            OAuthError::InvalidClient => Self::unauthorized(body("invalid_client")),
            OAuthError::Fault(fault) => {
                Self::internal(error_body("server_error", internal(fault).detail))
            }
        }
    }

    /// A body that is not a form of the right fields (JSON, a field given twice, …).
    fn unparsable(err: poem::Error) -> Self {
        Self::bad_request(error_body("invalid_request", unparsable(&err)))
    }
}

impl Refusals for TokenResponse {
    fn bad_request(body: Json<OAuthErrorBody>) -> Self {
        Self::BadRequest(body, NO_STORE.to_owned())
    }
    fn unauthorized(body: Json<OAuthErrorBody>) -> Self {
        Self::Unauthorized(body, BASIC_CHALLENGE.to_owned())
    }
    fn internal(body: Json<OAuthErrorBody>) -> Self {
        Self::Internal(body)
    }
}

impl Refusals for IntrospectionResponse {
    fn bad_request(body: Json<OAuthErrorBody>) -> Self {
        Self::BadRequest(body, NO_STORE.to_owned())
    }
    fn unauthorized(body: Json<OAuthErrorBody>) -> Self {
        Self::Unauthorized(body, BASIC_CHALLENGE.to_owned())
    }
    fn internal(body: Json<OAuthErrorBody>) -> Self {
        Self::Internal(body)
    }
}

fn unparsable(err: &poem::Error) -> String {
    let reason = err.to_string();
    if reason.contains("content type") || reason.contains("Content-Type") {
        "the body must be application/x-www-form-urlencoded".into()
    } else {
        format!("the form could not be read: {reason}")
    }
}

const BASIC_CHALLENGE: &str = r#"Basic realm="authgate", charset="UTF-8""#;

/// The client's credentials: `Authorization: Basic` (RFC 6749 §2.3.1: id and secret
/// form-urlencoded, then base64) or `client_id` + `client_secret` in the form, not both.
fn credentials(
    req: &Request,
    form_id: Option<&str>,
    form_secret: Option<&str>,
) -> Result<ClientCredentials, OAuthError> {
    let header = req
        .headers()
        .get(poem::http::header::AUTHORIZATION)
        .map(|value| value.to_str().unwrap_or_default());
    match (header, form_id, form_secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(OAuthError::InvalidRequest(
            "authenticate with the Authorization header or the form, not both".into(),
        )),
        (Some(header), None, None) => {
            let encoded = header
                .strip_prefix("Basic ")
                .or_else(|| header.strip_prefix("basic "))
                .ok_or(OAuthError::InvalidClient)?;
            let decoded = STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or(OAuthError::InvalidClient)?;
            let (id, secret) = decoded.split_once(':').ok_or(OAuthError::InvalidClient)?;
            let decode = |text: &str| {
                url::form_urlencoded::parse(format!("x={text}").as_bytes())
                    .next()
                    .map(|(_, value)| value.into_owned())
                    .unwrap_or_default()
            };
            Ok(ClientCredentials {
                client_id: decode(id),
                client_secret: decode(secret),
            })
        }
        (None, Some(id), Some(secret)) => Ok(ClientCredentials {
            client_id: id.to_owned(),
            client_secret: secret.to_owned(),
        }),
        (None, _, _) => Err(OAuthError::InvalidClient),
    }
}

pub struct OAuthApi;

#[OpenApi(prefix_path = "/v1/oauth", tag = "ApiTags::OAuth")]
impl OAuthApi {
    /// Client credentials grant (RFC 6749 §4.4): an access token for a service client,
    /// authenticated with `client_secret_basic` or `client_secret_post`. The token has
    /// `sub` = `client_id` = the client's id, the granted `scope`, no `sid`, and no refresh
    /// token; it lives `AUTHGATE_CLIENT_TOKEN_TTL` seconds.
    #[oai(path = "/token", method = "post")]
    async fn token(
        &self,
        service: Data<&Arc<AuthService>>,
        req: &Request,
        form: Form<TokenForm>,
    ) -> TokenResponse {
        let outcome = async {
            let credentials = credentials(
                req,
                form.client_id.as_deref(),
                form.client_secret.as_deref(),
            )?;
            match form.grant_type.as_deref() {
                Some("client_credentials") => {}
                Some(_) => return Err(OAuthError::UnsupportedGrantType),
                None => return Err(OAuthError::InvalidRequest("grant_type is missing".into())),
            }
            service
                .client_credentials_token(&credentials, form.scope.as_deref())
                .await
        }
        .await;
        match outcome {
            Ok(token) => TokenResponse::Ok(
                Json(ClientTokenBody {
                    access_token: token.access_token,
                    token_type: "Bearer".into(),
                    expires_in: token.expires_in,
                    scope: token.scope,
                }),
                NO_STORE.to_owned(),
                "no-cache".to_owned(),
            ),
            Err(err) => TokenResponse::refuse(&err),
        }
    }

    /// Token introspection (RFC 7662) for an authenticated client: `{active: false}` for
    /// anything invalid, expired, of an ended session, of a deleted or disabled account
    /// or a deleted client, or signed by a revoked key.
    #[oai(path = "/introspect", method = "post")]
    async fn introspect(
        &self,
        service: Data<&Arc<AuthService>>,
        req: &Request,
        form: Form<IntrospectionForm>,
    ) -> IntrospectionResponse {
        let outcome = async {
            let credentials = credentials(
                req,
                form.client_id.as_deref(),
                form.client_secret.as_deref(),
            )?;
            let token = form
                .token
                .as_deref()
                .ok_or_else(|| OAuthError::InvalidRequest("token is missing".into()))?;
            service.introspect(&credentials, token).await
        }
        .await;
        match outcome {
            Ok(found) => IntrospectionResponse::Ok(Json(found.into()), NO_STORE.to_owned()),
            Err(err) => IntrospectionResponse::refuse(&err),
        }
    }
}
