//! `/v1/auth/password` and `/v1/auth/me/delete`: what a user does with their own
//! account, proving it with the password.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::auth::{ApiTags, BearerAuth};
use super::problem::{Problem, ProblemType, internal, problem_of, www_authenticate};
use super::strict::StrictString;
use crate::domain::{AuthService, ChangePasswordError, Client, DeleteAccountError};

#[derive(Object)]
pub struct PasswordChange {
    #[oai(write_only)]
    pub current_password: StrictString,
    /// 8 to 1024 Unicode characters, not the current password.
    #[oai(write_only)]
    pub new_password: StrictString,
}

#[derive(Object)]
pub struct PasswordConfirmation {
    #[oai(write_only)]
    pub password: StrictString,
}

#[derive(ApiResponse)]
pub enum ChangePasswordResponse {
    /// The password has changed; every other session has ended.
    #[oai(status = 204)]
    NoContent,
    /// Malformed JSON, missing fields or wrong types.
    #[oai(status = 400, content_type = "application/problem+json")]
    #[allow(dead_code)] // answered by the catch-all; declared for the spec
    BadRequest(Json<Problem>),
    /// Missing or invalid access token, or its session has ended.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// The current password is wrong (counted as a failed login).
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// The body is larger than 16 KiB.
    #[oai(status = 413, content_type = "application/problem+json")]
    #[allow(dead_code)] // answered by the body limit; declared for the spec
    PayloadTooLarge(Json<Problem>),
    /// The new password breaks the rules (8 to 1024 characters, not the current one).
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// Too many requests from this address, or too many wrong passwords for the account.
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Json<Problem>, #[oai(header = "Retry-After")] u64),
    /// Server failure.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
    /// Too many passwords being hashed; retry after the given seconds.
    #[oai(status = 503, content_type = "application/problem+json")]
    Overloaded(Json<Problem>, #[oai(header = "Retry-After")] u64),
}

impl From<ChangePasswordError> for ChangePasswordResponse {
    fn from(err: ChangePasswordError) -> Self {
        match err {
            ChangePasswordError::WrongPassword => {
                Self::Forbidden(Json(problem_of(ProblemType::WrongPassword, &err)))
            }
            ChangePasswordError::SessionEnded => Self::Unauthorized(
                Json(
                    ProblemType::InvalidToken
                        .problem("The access token is invalid, expired or its session has ended."),
                ),
                www_authenticate(true),
            ),
            ChangePasswordError::InvalidPassword(_) => {
                Self::Unprocessable(Json(problem_of(ProblemType::InvalidPassword, &err)))
            }
            ChangePasswordError::Throttled(retry) => Self::TooManyRequests(
                Json(problem_of(ProblemType::TooManyRequests, &err)),
                retry.secs(),
            ),
            ChangePasswordError::Overloaded => {
                Self::Overloaded(Json(problem_of(ProblemType::Overloaded, &err)), 1)
            }
            ChangePasswordError::Fault(fault) => Self::Internal(Json(internal(&fault))),
        }
    }
}

#[derive(ApiResponse)]
pub enum DeleteAccountResponse {
    /// The account, its sessions and its tokens are gone; the email can register again.
    #[oai(status = 204)]
    NoContent,
    /// Malformed JSON, missing fields or wrong types.
    #[oai(status = 400, content_type = "application/problem+json")]
    #[allow(dead_code)] // answered by the catch-all; declared for the spec
    BadRequest(Json<Problem>),
    /// Missing or invalid access token, or its session has ended.
    #[oai(status = 401, content_type = "application/problem+json")]
    #[allow(dead_code)] // answered by the BearerAuth checker; declared for the spec
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// The password is wrong (counted as a failed login).
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// The body is larger than 16 KiB.
    #[oai(status = 413, content_type = "application/problem+json")]
    #[allow(dead_code)] // answered by the body limit; declared for the spec
    PayloadTooLarge(Json<Problem>),
    /// Too many requests from this address, or too many wrong passwords for the account.
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Json<Problem>, #[oai(header = "Retry-After")] u64),
    /// Server failure.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
    /// Too many passwords being hashed; retry after the given seconds.
    #[oai(status = 503, content_type = "application/problem+json")]
    Overloaded(Json<Problem>, #[oai(header = "Retry-After")] u64),
}

impl From<DeleteAccountError> for DeleteAccountResponse {
    fn from(err: DeleteAccountError) -> Self {
        match err {
            DeleteAccountError::WrongPassword => {
                Self::Forbidden(Json(problem_of(ProblemType::WrongPassword, &err)))
            }
            DeleteAccountError::Throttled(retry) => Self::TooManyRequests(
                Json(problem_of(ProblemType::TooManyRequests, &err)),
                retry.secs(),
            ),
            DeleteAccountError::Overloaded => {
                Self::Overloaded(Json(problem_of(ProblemType::Overloaded, &err)), 1)
            }
            DeleteAccountError::Fault(fault) => Self::Internal(Json(internal(&fault))),
        }
    }
}

pub struct AccountApi;

#[OpenApi(prefix_path = "/v1/auth", tag = "ApiTags::Auth")]
impl AccountApi {
    /// Change the password: every other session of the user ends, the caller's keeps
    /// working.
    #[oai(path = "/password", method = "post")]
    async fn change_password(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        auth: BearerAuth,
        body: Json<PasswordChange>,
    ) -> ChangePasswordResponse {
        let Json(PasswordChange {
            current_password,
            new_password,
        }) = body;
        match service
            .change_password(&auth.0, &current_password.0, &new_password.0, client.0)
            .await
        {
            Ok(()) => ChangePasswordResponse::NoContent,
            Err(err) => err.into(),
        }
    }

    /// Delete the caller's account, its sessions and its tokens.
    #[oai(path = "/me/delete", method = "post")]
    async fn delete_account(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        auth: BearerAuth,
        body: Json<PasswordConfirmation>,
    ) -> DeleteAccountResponse {
        match service
            .delete_account(&auth.0, &body.0.password.0, client.0)
            .await
        {
            Ok(()) => DeleteAccountResponse::NoContent,
            Err(err) => err.into(),
        }
    }
}
