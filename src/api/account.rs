//! `/v1/auth/password` and `/v1/auth/me/delete`: what a user does with their own
//! account, proving it with the password.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::auth::{ApiTags, BearerAuth};
use super::failures::{Answer, BodyFailure};
use super::problem::{Problem, ProblemType, problem_of, www_authenticate};
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
    /// Missing or invalid access token, or its session has ended.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// The current password is wrong (counted as a failed login).
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// The new password breaks the rules (8 to 1024 characters, not the current one).
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// Too many passwords being hashed; retry after the given seconds.
    #[oai(status = 503, content_type = "application/problem+json")]
    Overloaded(Json<Problem>, #[oai(header = "Retry-After")] u64),
}

impl From<ChangePasswordError> for Answer<ChangePasswordResponse, BodyFailure> {
    fn from(err: ChangePasswordError) -> Self {
        let problem = |kind| Json(problem_of(kind, &err));
        Ok(match err {
            ChangePasswordError::WrongPassword => {
                ChangePasswordResponse::Forbidden(problem(ProblemType::WrongPassword))
            }
            ChangePasswordError::InvalidPassword(_) => {
                ChangePasswordResponse::Unprocessable(problem(ProblemType::InvalidPassword))
            }
            ChangePasswordError::Overloaded => {
                ChangePasswordResponse::Overloaded(problem(ProblemType::Overloaded), 1)
            }
            ChangePasswordError::SessionEnded => ChangePasswordResponse::Unauthorized(
                Json(
                    ProblemType::InvalidToken
                        .problem("The access token is invalid, expired or its session has ended."),
                ),
                www_authenticate(true),
            ),
            ChangePasswordError::Throttled(retry) => {
                return Err(BodyFailure::TooManyRequests(
                    problem(ProblemType::TooManyRequests),
                    retry.secs(),
                ));
            }
            ChangePasswordError::Fault(fault) => return Err(fault.into()),
        })
    }
}

#[derive(ApiResponse)]
pub enum DeleteAccountResponse {
    /// The account, its sessions and its tokens are gone; the email can register again.
    #[oai(status = 204)]
    NoContent,
    /// Missing or invalid access token, or its session has ended.
    #[oai(status = 401, content_type = "application/problem+json")]
    #[allow(dead_code)] // answered by the BearerAuth checker; declared for the spec
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// The password is wrong (counted as a failed login).
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    /// Too many passwords being hashed; retry after the given seconds.
    #[oai(status = 503, content_type = "application/problem+json")]
    Overloaded(Json<Problem>, #[oai(header = "Retry-After")] u64),
}

impl From<DeleteAccountError> for Answer<DeleteAccountResponse, BodyFailure> {
    fn from(err: DeleteAccountError) -> Self {
        let problem = |kind| Json(problem_of(kind, &err));
        Ok(match err {
            DeleteAccountError::WrongPassword => {
                DeleteAccountResponse::Forbidden(problem(ProblemType::WrongPassword))
            }
            DeleteAccountError::Overloaded => {
                DeleteAccountResponse::Overloaded(problem(ProblemType::Overloaded), 1)
            }
            DeleteAccountError::Throttled(retry) => {
                return Err(BodyFailure::TooManyRequests(
                    problem(ProblemType::TooManyRequests),
                    retry.secs(),
                ));
            }
            DeleteAccountError::Fault(fault) => return Err(fault.into()),
        })
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
    ) -> Answer<ChangePasswordResponse, BodyFailure> {
        let Json(PasswordChange {
            current_password,
            new_password,
        }) = body;
        match service
            .change_password(&auth.0, &current_password.0, &new_password.0, client.0)
            .await
        {
            Ok(()) => Ok(ChangePasswordResponse::NoContent),
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
    ) -> Answer<DeleteAccountResponse, BodyFailure> {
        match service
            .delete_account(&auth.0, &body.0.password.0, client.0)
            .await
        {
            Ok(()) => Ok(DeleteAccountResponse::NoContent),
            Err(err) => err.into(),
        }
    }
}
