//! `/v1/auth/*`: thin operations that parse, call the domain and map the result.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, SecurityScheme, Tags, auth::Bearer};
use uuid::Uuid;

use super::failures::{Answer, BearerFailure, BearerPostFailure, BodyFailure};
use super::problem::{Problem, ProblemType, internal, problem_of, www_authenticate};
use super::strict::StrictString;
use crate::domain::{
    self, AuthService, AuthenticateError, Authenticated, Client, LoginError, RefreshError,
    RegisterError,
};

#[derive(Tags)]
pub(super) enum ApiTags {
    /// Accounts, sessions and tokens.
    Auth,
    /// OAuth 2.0 for service clients: client credentials and introspection.
    #[oai(rename = "OAuth")]
    OAuth,
}

/// Email and password.
#[derive(Object)]
pub struct Credentials {
    /// Trimmed and lower-cased before use; at most 254 characters.
    pub email: StrictString,
    /// 8 to 1024 Unicode characters.
    #[oai(write_only)]
    pub password: StrictString,
}

#[derive(Object)]
pub struct RefreshTokenRequest {
    /// A refresh token from login or an earlier refresh.
    pub refresh_token: StrictString,
}

/// An account.
#[derive(Object, Debug)]
#[oai(rename = "User")]
pub struct UserBody {
    pub id: Uuid,
    pub email: String,
    /// RFC 3339.
    pub created_at: String,
    /// Whether a verification or reset token sent to `email` was used.
    pub email_verified: bool,
    /// Given by an admin; sorted.
    pub roles: Vec<String>,
}

impl From<domain::User> for UserBody {
    fn from(user: domain::User) -> Self {
        let created_at = user.created_at.rfc3339();
        Self {
            id: user.id,
            email: user.email,
            created_at,
            email_verified: user.email_verified,
            roles: user.roles,
        }
    }
}

/// An access token and the refresh token that renews it.
#[derive(Object)]
#[oai(rename = "TokenPair")]
pub struct TokenPairBody {
    /// EdDSA-signed JWT (RFC 9068), for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque; spent by its next use.
    pub refresh_token: String,
    /// Seconds until the refresh token expires if unused.
    pub refresh_expires_in: u64,
}

impl From<domain::TokenPair> for TokenPairBody {
    fn from(pair: domain::TokenPair) -> Self {
        Self {
            access_token: pair.access_token,
            token_type: "Bearer".to_owned(),
            expires_in: pair.expires_in,
            refresh_token: pair.refresh_token,
            refresh_expires_in: pair.refresh_expires_in,
        }
    }
}

pub(super) const NO_STORE: &str = "no-store";

#[derive(ApiResponse)]
pub enum RegisterResponse {
    /// The account was created.
    #[oai(status = 201)]
    Created(Json<UserBody>),
    /// The email is already registered (case-insensitive).
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// Invalid email (at most 254 characters) or password (8 to 1024 characters).
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// Too many passwords being hashed; retry after the given seconds.
    #[oai(status = 503, content_type = "application/problem+json")]
    Overloaded(Json<Problem>, #[oai(header = "Retry-After")] u64),
}

impl From<RegisterError> for Answer<RegisterResponse> {
    fn from(err: RegisterError) -> Self {
        let problem = |kind| Json(problem_of(kind, &err));
        Ok(match err {
            RegisterError::InvalidEmail(_) => {
                RegisterResponse::Unprocessable(problem(ProblemType::InvalidEmail))
            }
            RegisterError::InvalidPassword(_) => {
                RegisterResponse::Unprocessable(problem(ProblemType::InvalidPassword))
            }
            RegisterError::EmailTaken => {
                RegisterResponse::Conflict(problem(ProblemType::EmailTaken))
            }
            RegisterError::Overloaded => {
                RegisterResponse::Overloaded(problem(ProblemType::Overloaded), 1)
            }
            RegisterError::Fault(fault) => return Err(fault.into()),
        })
    }
}

/// Responses of login and refresh, which both issue a token pair.
#[derive(ApiResponse)]
pub enum TokenResponse {
    /// A new token pair.
    #[oai(status = 200)]
    Ok(Json<TokenPairBody>, #[oai(header = "Cache-Control")] String),
    /// Wrong credentials, or a refresh token that is unknown, expired, spent or revoked.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    /// Login only, with the right password: the account is disabled
    /// (`account-disabled`), or its email is not verified yet and
    /// `AUTHGATE_REQUIRE_VERIFIED_EMAIL` is set (`email-not-verified`).
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// Too many passwords being hashed; retry after the given seconds.
    #[oai(status = 503, content_type = "application/problem+json")]
    Overloaded(Json<Problem>, #[oai(header = "Retry-After")] u64),
}

impl TokenResponse {
    fn issued(pair: domain::TokenPair) -> Answer<Self> {
        Ok(Self::Ok(Json(pair.into()), NO_STORE.to_owned()))
    }
}

impl From<LoginError> for Answer<TokenResponse> {
    fn from(err: LoginError) -> Self {
        match err {
            // One message for unknown account and wrong password.
            LoginError::InvalidCredentials => Ok(TokenResponse::Unauthorized(Json(
                ProblemType::InvalidCredentials.problem("The email or password is wrong."),
            ))),
            LoginError::EmailNotVerified => Ok(TokenResponse::Forbidden(Json(problem_of(
                ProblemType::EmailNotVerified,
                &err,
            )))),
            LoginError::AccountDisabled => Ok(TokenResponse::Forbidden(Json(problem_of(
                ProblemType::AccountDisabled,
                &err,
            )))),
            LoginError::Throttled(retry) => Err(BodyFailure::TooManyRequests(
                Json(problem_of(ProblemType::TooManyRequests, &err)),
                retry.secs(),
            )),
            LoginError::Overloaded => Ok(TokenResponse::Overloaded(
                Json(problem_of(ProblemType::Overloaded, &err)),
                1,
            )),
            LoginError::Fault(fault) => Err(fault.into()),
        }
    }
}

impl From<RefreshError> for Answer<TokenResponse> {
    fn from(err: RefreshError) -> Self {
        match err {
            RefreshError::InvalidRefreshToken => Ok(TokenResponse::Unauthorized(Json(problem_of(
                ProblemType::InvalidRefreshToken,
                &err,
            )))),
            RefreshError::Fault(fault) => Err(fault.into()),
        }
    }
}

#[derive(ApiResponse)]
pub enum RevokeResponse {
    /// The token's session has ended (also answered for an unknown token, RFC 7009).
    #[oai(status = 204)]
    NoContent,
}

#[derive(ApiResponse)]
pub enum LogoutAllResponse {
    /// Every session of the user has ended.
    #[oai(status = 204)]
    NoContent,
}

#[derive(ApiResponse)]
pub enum MeResponse {
    /// The authenticated user (a user's data: never cached).
    #[oai(status = 200)]
    Ok(Json<UserBody>, #[oai(header = "Cache-Control")] String),
}

/// An access token from login or refresh, whose session is still live.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "authenticate")]
pub struct BearerAuth(pub(super) Authenticated);

async fn authenticate(req: &poem::Request, bearer: Bearer) -> poem::Result<Authenticated> {
    let service = req
        .data::<Arc<AuthService>>()
        .ok_or_else(|| poem::Error::from_status(poem::http::StatusCode::INTERNAL_SERVER_ERROR))?;
    service
        .authenticate(&bearer.token)
        .await
        .map_err(|err| poem::Error::from_response(rejection(err)))
}

/// An access token that did not authenticate, as RFC 6750 answers it; why it failed is
/// for the logs, not for whoever presented it.
fn rejection(err: AuthenticateError) -> poem::Response {
    let fault = match err {
        AuthenticateError::Rejected(reason) => {
            tracing::debug!(%reason, "rejected access token");
            None
        }
        AuthenticateError::SessionEnded => None,
        AuthenticateError::Fault(fault) => Some(fault),
    };
    if let Some(fault) = fault {
        let problem = internal(&fault);
        return ProblemType::Internal.response(problem.detail);
    }
    let mut response = ProblemType::InvalidToken
        .response("The access token is invalid, expired or its session has ended.");
    if let Ok(value) = www_authenticate(true).parse() {
        response
            .headers_mut()
            .insert(poem::http::header::WWW_AUTHENTICATE, value);
    }
    response
}

pub struct AuthApi;

#[OpenApi(prefix_path = "/v1/auth", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Create an account.
    #[oai(path = "/register", method = "post")]
    async fn register(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        body: Json<Credentials>,
    ) -> Answer<RegisterResponse> {
        let Json(Credentials { email, password }) = body;
        match service.register(&email.0, password.0, client.0).await {
            Ok(user) => Ok(RegisterResponse::Created(Json(user.into()))),
            Err(err) => err.into(),
        }
    }

    /// Log in: start a session and get a token pair.
    #[oai(path = "/login", method = "post")]
    async fn login(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        body: Json<Credentials>,
    ) -> Answer<TokenResponse> {
        let Json(Credentials { email, password }) = body;
        match service.login(&email.0, password.0, client.0).await {
            Ok(pair) => TokenResponse::issued(pair),
            Err(err) => err.into(),
        }
    }

    /// Spend a refresh token for a new token pair in the same session.
    ///
    /// Presenting a spent token again within the reuse grace window returns the same
    /// successor; later, or after the successor was spent, it ends the whole session.
    #[oai(path = "/refresh", method = "post")]
    async fn refresh(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        body: Json<RefreshTokenRequest>,
    ) -> Answer<TokenResponse> {
        match service.refresh(&body.0.refresh_token.0, client.0).await {
            Ok(pair) => TokenResponse::issued(pair),
            Err(err) => err.into(),
        }
    }

    /// End the session of a refresh token (RFC 7009).
    #[oai(path = "/revoke", method = "post")]
    async fn revoke(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        body: Json<RefreshTokenRequest>,
    ) -> Answer<RevokeResponse> {
        service.revoke(&body.0.refresh_token.0, client.0).await?;
        Ok(RevokeResponse::NoContent)
    }

    /// End every session of the authenticated user.
    #[oai(path = "/logout-all", method = "post")]
    async fn logout_all(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        auth: BearerAuth,
    ) -> Answer<LogoutAllResponse, BearerPostFailure> {
        service.logout_all(auth.0.user.id, client.0).await?;
        Ok(LogoutAllResponse::NoContent)
    }

    /// The authenticated user.
    #[oai(path = "/me", method = "get")]
    async fn me(&self, auth: BearerAuth) -> Answer<MeResponse, BearerFailure> {
        Ok(MeResponse::Ok(
            Json(auth.0.user.into()),
            NO_STORE.to_owned(),
        ))
    }
}
