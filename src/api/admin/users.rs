//! `/admin/v1/users…` and `/admin/v1/sessions/{sid}`.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::{AdminKey, AdminTags};
use crate::api::auth::NO_STORE;
use crate::api::problem::{Problem, ProblemType, internal, problem_of};
use crate::api::sessions::{SessionBody, SessionList};
use crate::api::strict::StrictString;
use crate::domain::admin::{AdminError, NewUser, UserFilter};
use crate::domain::{AuthService, Client, User};
use crate::store::UserChange;

/// An account as an operator sees it.
#[derive(Object)]
pub struct AdminUser {
    pub id: Uuid,
    pub email: String,
    pub email_verified: bool,
    /// Sorted.
    pub roles: Vec<String>,
    pub disabled: bool,
    /// RFC 3339.
    pub created_at: String,
    /// The latest successful login (RFC 3339), `null` before the first.
    pub last_login_at: Option<String>,
}

impl From<User> for AdminUser {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            email: user.email,
            email_verified: user.email_verified,
            roles: user.roles,
            disabled: user.disabled,
            created_at: user.created_at.rfc3339(),
            last_login_at: user.last_login_at.map(|at| at.rfc3339()),
        }
    }
}

#[derive(Object)]
pub struct UserPage {
    /// In email order (bytewise).
    pub users: Vec<AdminUser>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Object)]
pub struct CreateUser {
    pub email: StrictString,
    /// 8 to 1024 characters; without one, login fails as a wrong password until a reset.
    #[oai(write_only)]
    pub password: Option<StrictString>,
    /// Default: `AUTHGATE_DEFAULT_ROLES`.
    pub roles: Option<Vec<String>>,
    /// Default: false.
    pub email_verified: Option<bool>,
}

#[derive(Object)]
pub struct UpdateUser {
    /// A new email is unverified unless `email_verified` is given too.
    pub email: Option<StrictString>,
    /// Replaces the roles; they reach access tokens at the next login or refresh.
    pub roles: Option<Vec<String>>,
    /// Disabling ends every session at once.
    pub disabled: Option<bool>,
    pub email_verified: Option<bool>,
}

/// A reset token for out-of-band delivery.
#[derive(Object)]
pub struct ResetToken {
    /// For `POST /v1/auth/password/reset`; single-use.
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// The failures every admin operation shares.
#[derive(ApiResponse)]
pub enum AdminFailure {
    /// A malformed parameter, id, cursor or body.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// Missing, unknown or revoked admin key.
    #[oai(status = 401, content_type = "application/problem+json")]
    #[allow(dead_code)] // answered by the AdminKey checker; declared for the spec
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// No such account, session or delivery.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// Another account has this email.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// Invalid email, password or roles.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// Server failure.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
    /// Too many passwords being hashed; retry after the given seconds.
    #[oai(status = 503, content_type = "application/problem+json")]
    Overloaded(Json<Problem>, #[oai(header = "Retry-After")] u64),
}

impl From<AdminError> for AdminFailure {
    fn from(err: AdminError) -> Self {
        let problem = |kind| Json(problem_of(kind, &err));
        match &err {
            AdminError::UserNotFound
            | AdminError::SessionNotFound
            | AdminError::DeliveryNotFound
            | AdminError::ClientNotFound => Self::NotFound(problem(ProblemType::NotFound)),
            AdminError::EmailTaken => Self::Conflict(problem(ProblemType::EmailTaken)),
            AdminError::InvalidEmail(_) => Self::Unprocessable(problem(ProblemType::InvalidEmail)),
            AdminError::InvalidPassword(_) => {
                Self::Unprocessable(problem(ProblemType::InvalidPassword))
            }
            AdminError::InvalidRoles(_) => Self::Unprocessable(problem(ProblemType::InvalidRoles)),
            AdminError::InvalidClient(_) => {
                Self::Unprocessable(problem(ProblemType::InvalidClientSettings))
            }
            AdminError::BadParameter(_) => Self::BadRequest(problem(ProblemType::MalformedRequest)),
            AdminError::Overloaded => Self::Overloaded(problem(ProblemType::Overloaded), 1),
            AdminError::Fault(fault) => Self::Internal(Json(internal(fault))),
        }
    }
}

pub(super) type AdminAnswer<T> = Result<T, AdminFailure>;

/// `limit` (1 to 200, default 50), or a 400.
pub(super) fn page_limit(limit: Option<u32>) -> Result<u64, AdminFailure> {
    match limit.unwrap_or(50) {
        limit @ 1..=200 => Ok(u64::from(limit)),
        _ => Err(AdminFailure::BadRequest(Json(
            ProblemType::MalformedRequest.problem("limit must be 1 to 200."),
        ))),
    }
}

/// Users' data is never cached.
pub(super) fn no_store() -> String {
    NO_STORE.to_owned()
}

#[derive(ApiResponse)]
pub enum UserPageResponse {
    #[oai(status = 200)]
    Ok(Json<UserPage>, #[oai(header = "Cache-Control")] String),
}

#[derive(ApiResponse)]
pub enum UserResponse {
    #[oai(status = 200)]
    Ok(Json<AdminUser>, #[oai(header = "Cache-Control")] String),
}

#[derive(ApiResponse)]
pub enum CreatedUserResponse {
    #[oai(status = 201)]
    Created(Json<AdminUser>, #[oai(header = "Cache-Control")] String),
}

#[derive(ApiResponse)]
pub enum DoneResponse {
    #[oai(status = 204)]
    NoContent,
}

#[derive(ApiResponse)]
pub enum SessionsResponse {
    /// Live sessions (`current` is always false here), most recently used first.
    #[oai(status = 200)]
    Ok(Json<SessionList>, #[oai(header = "Cache-Control")] String),
}

#[derive(ApiResponse)]
pub enum ResetTokenResponse {
    /// Nothing was sent: hand the token to the user yourself.
    #[oai(status = 201)]
    Created(Json<ResetToken>, #[oai(header = "Cache-Control")] String),
}

pub struct UsersApi;

#[OpenApi(prefix_path = "/admin/v1", tag = "AdminTags::Users")]
impl UsersApi {
    /// Find accounts: `email` exact, `q` an email prefix, `role`, `disabled`; in email
    /// order, `limit` per page (1 to 200, default 50), `cursor` from the previous page.
    #[oai(path = "/users", method = "get")]
    #[allow(clippy::too_many_arguments)] // one per query parameter
    async fn find_users(
        &self,
        service: Data<&Arc<AuthService>>,
        _key: AdminKey,
        email: Query<Option<String>>,
        q: Query<Option<String>>,
        role: Query<Option<String>>,
        disabled: Query<Option<bool>>,
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> AdminAnswer<UserPageResponse> {
        let filter = UserFilter {
            email: email.0,
            q: q.0,
            role: role.0,
            disabled: disabled.0,
            limit: page_limit(limit.0)?,
            cursor: cursor.0,
        };
        let page = service.admin_find_users(filter).await?;
        Ok(UserPageResponse::Ok(
            Json(UserPage {
                users: page.items.into_iter().map(AdminUser::from).collect(),
                next_cursor: page.next_cursor,
            }),
            no_store(),
        ))
    }

    /// Create an account.
    #[oai(path = "/users", method = "post")]
    async fn create_user(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        key: AdminKey,
        body: Json<CreateUser>,
    ) -> AdminAnswer<CreatedUserResponse> {
        let Json(body) = body;
        let new = NewUser {
            email: body.email.0,
            password: body.password.map(|password| password.0),
            roles: body.roles,
            email_verified: body.email_verified,
        };
        let user = service.admin_create_user(&key.0, client.0, new).await?;
        Ok(CreatedUserResponse::Created(Json(user.into()), no_store()))
    }

    /// One account.
    #[oai(path = "/users/:id", method = "get")]
    async fn user(
        &self,
        service: Data<&Arc<AuthService>>,
        _key: AdminKey,
        id: Path<Uuid>,
    ) -> AdminAnswer<UserResponse> {
        let user = service.admin_user(id.0).await?;
        Ok(UserResponse::Ok(Json(user.into()), no_store()))
    }

    /// Change an account's email, roles, disabled or email_verified.
    #[oai(path = "/users/:id", method = "patch")]
    async fn update_user(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        key: AdminKey,
        id: Path<Uuid>,
        body: Json<UpdateUser>,
    ) -> AdminAnswer<UserResponse> {
        let Json(body) = body;
        let change = UserChange {
            email: body.email.map(|email| email.0),
            roles: body.roles,
            disabled: body.disabled,
            email_verified: body.email_verified,
        };
        let user = service
            .admin_update_user(&key.0, client.0, id.0, change)
            .await?;
        Ok(UserResponse::Ok(Json(user.into()), no_store()))
    }

    /// Delete an account, its sessions and tokens (as a deletion by its user).
    #[oai(path = "/users/:id", method = "delete")]
    async fn delete_user(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        key: AdminKey,
        id: Path<Uuid>,
    ) -> AdminAnswer<DoneResponse> {
        service.admin_delete_user(&key.0, client.0, id.0).await?;
        Ok(DoneResponse::NoContent)
    }

    /// An account's live sessions.
    #[oai(path = "/users/:id/sessions", method = "get")]
    async fn user_sessions(
        &self,
        service: Data<&Arc<AuthService>>,
        _key: AdminKey,
        id: Path<Uuid>,
    ) -> AdminAnswer<SessionsResponse> {
        let sessions = service.admin_user_sessions(id.0).await?;
        Ok(SessionsResponse::Ok(
            Json(SessionList {
                sessions: sessions
                    .into_iter()
                    .map(|session| SessionBody::new(session, Uuid::nil()))
                    .collect(),
            }),
            no_store(),
        ))
    }

    /// End every session of an account.
    #[oai(path = "/users/:id/logout", method = "post")]
    async fn logout_user(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        key: AdminKey,
        id: Path<Uuid>,
    ) -> AdminAnswer<DoneResponse> {
        service.admin_logout_user(&key.0, client.0, id.0).await?;
        Ok(DoneResponse::NoContent)
    }

    /// End one session, whoever's it is.
    #[oai(path = "/sessions/:sid", method = "delete")]
    async fn end_session(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        key: AdminKey,
        sid: Path<Uuid>,
    ) -> AdminAnswer<DoneResponse> {
        service.admin_end_session(&key.0, client.0, sid.0).await?;
        Ok(DoneResponse::NoContent)
    }

    /// A single-use password-reset token for the account, for out-of-band delivery.
    #[oai(path = "/users/:id/password-reset", method = "post")]
    async fn reset_token(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        key: AdminKey,
        id: Path<Uuid>,
    ) -> AdminAnswer<ResetTokenResponse> {
        let (token, expires_at) = service.admin_reset_token(&key.0, client.0, id.0).await?;
        Ok(ResetTokenResponse::Created(
            Json(ResetToken {
                token,
                expires_at: expires_at.rfc3339(),
            }),
            no_store(),
        ))
    }
}
