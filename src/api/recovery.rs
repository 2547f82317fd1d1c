//! `/v1/auth/password/forgot`, `/password/reset`, `/email/verification` and
//! `/email/verify`: proving an email address with a token sent to it.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::auth::{ApiTags, BearerAuth};
use super::failures::{Answer, BearerPostFailure, BodyFailure};
use super::problem::{Problem, ProblemType, problem_of};
use super::strict::StrictString;
use crate::domain::{
    AuthService, Client, ForgotPasswordError, RequestVerificationError, ResetPasswordError,
    VerifyEmailError,
};

#[derive(Object)]
pub struct ForgotPassword {
    /// The account's email; the answer is the same whether it is registered or not.
    pub email: StrictString,
}

#[derive(Object)]
pub struct ResetPassword {
    /// The token of a `password_reset` message.
    #[oai(write_only)]
    pub token: StrictString,
    /// 8 to 1024 Unicode characters.
    #[oai(write_only)]
    pub new_password: StrictString,
}

#[derive(Object)]
pub struct VerifyEmail {
    /// The token of an `email_verification` message.
    #[oai(write_only)]
    pub token: StrictString,
}

/// No delivery channel is configured: nothing can be sent.
fn not_configured(err: &impl std::fmt::Display) -> Json<Problem> {
    Json(problem_of(ProblemType::DeliveryNotConfigured, err))
}

#[derive(ApiResponse)]
pub enum ForgotPasswordResponse {
    /// Accepted: if the email belongs to an account, a reset message is on its way (at
    /// most one per account per minute).
    #[oai(status = 202)]
    Accepted,
    /// The email cannot be an account's.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// No delivery channel is configured (`delivery-not-configured`).
    #[oai(status = 501, content_type = "application/problem+json")]
    NotImplemented(Json<Problem>),
}

impl From<ForgotPasswordError> for Answer<ForgotPasswordResponse> {
    fn from(err: ForgotPasswordError) -> Self {
        Ok(match err {
            ForgotPasswordError::InvalidEmail(_) => ForgotPasswordResponse::Unprocessable(Json(
                problem_of(ProblemType::InvalidEmail, &err),
            )),
            ForgotPasswordError::DeliveryNotConfigured => {
                ForgotPasswordResponse::NotImplemented(not_configured(&err))
            }
            ForgotPasswordError::Busy => {
                return Err(BodyFailure::TooManyRequests(
                    Json(problem_of(ProblemType::TooManyRequests, &err)),
                    1,
                ));
            }
        })
    }
}

#[derive(ApiResponse)]
pub enum ResetPasswordResponse {
    /// The password is set; every session of the account has ended.
    #[oai(status = 204)]
    NoContent,
    /// The token is unknown, expired or used (`invalid-reset-token`).
    #[oai(status = 400, content_type = "application/problem+json")]
    InvalidToken(Json<Problem>),
    /// The new password breaks the rules; the token stays usable.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// Too many passwords being hashed; retry after the given seconds.
    #[oai(status = 503, content_type = "application/problem+json")]
    Overloaded(Json<Problem>, #[oai(header = "Retry-After")] u64),
}

impl From<ResetPasswordError> for Answer<ResetPasswordResponse> {
    fn from(err: ResetPasswordError) -> Self {
        let problem = |kind| Json(problem_of(kind, &err));
        Ok(match err {
            ResetPasswordError::InvalidToken => {
                ResetPasswordResponse::InvalidToken(problem(ProblemType::InvalidResetToken))
            }
            ResetPasswordError::InvalidPassword(_) => {
                ResetPasswordResponse::Unprocessable(problem(ProblemType::InvalidPassword))
            }
            ResetPasswordError::Overloaded => {
                ResetPasswordResponse::Overloaded(problem(ProblemType::Overloaded), 1)
            }
            ResetPasswordError::Fault(fault) => return Err(fault.into()),
        })
    }
}

#[derive(ApiResponse)]
pub enum RequestVerificationResponse {
    /// Accepted: a verification message is on its way, unless the email is verified or
    /// one was sent in the last minute.
    #[oai(status = 202)]
    Accepted,
    /// No delivery channel is configured (`delivery-not-configured`).
    #[oai(status = 501, content_type = "application/problem+json")]
    NotImplemented(Json<Problem>),
}

impl From<RequestVerificationError> for Answer<RequestVerificationResponse, BearerPostFailure> {
    fn from(err: RequestVerificationError) -> Self {
        match err {
            RequestVerificationError::DeliveryNotConfigured => Ok(
                RequestVerificationResponse::NotImplemented(not_configured(&err)),
            ),
            RequestVerificationError::Fault(fault) => Err(fault.into()),
        }
    }
}

#[derive(ApiResponse)]
pub enum VerifyEmailResponse {
    /// The email is verified.
    #[oai(status = 204)]
    NoContent,
    /// The token is unknown, expired or used (`invalid-verification-token`).
    #[oai(status = 400, content_type = "application/problem+json")]
    InvalidToken(Json<Problem>),
}

impl From<VerifyEmailError> for Answer<VerifyEmailResponse> {
    fn from(err: VerifyEmailError) -> Self {
        match err {
            VerifyEmailError::InvalidToken => Ok(VerifyEmailResponse::InvalidToken(Json(
                problem_of(ProblemType::InvalidVerificationToken, &err),
            ))),
            VerifyEmailError::Fault(fault) => Err(fault.into()),
        }
    }
}

pub struct RecoveryApi;

#[OpenApi(prefix_path = "/v1/auth", tag = "ApiTags::Auth")]
impl RecoveryApi {
    /// Ask for a password-reset message. The answer, and its timing, are the same for
    /// a registered, an unknown or a disabled account.
    #[oai(path = "/password/forgot", method = "post")]
    async fn forgot_password(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        body: Json<ForgotPassword>,
    ) -> Answer<ForgotPasswordResponse> {
        match service.forgot_password(&body.0.email.0, client.0) {
            Ok(()) => Ok(ForgotPasswordResponse::Accepted),
            Err(err) => err.into(),
        }
    }

    /// Set a new password with the token of a reset message: every session of the
    /// account ends, every reset token of it is spent, and the email counts as verified.
    #[oai(path = "/password/reset", method = "post")]
    async fn reset_password(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        body: Json<ResetPassword>,
    ) -> Answer<ResetPasswordResponse> {
        let Json(ResetPassword {
            token,
            new_password,
        }) = body;
        match service
            .reset_password(&token.0, &new_password.0, client.0)
            .await
        {
            Ok(()) => Ok(ResetPasswordResponse::NoContent),
            Err(err) => err.into(),
        }
    }

    /// Ask for a verification message to the caller's email.
    #[oai(path = "/email/verification", method = "post")]
    async fn request_verification(
        &self,
        service: Data<&Arc<AuthService>>,
        auth: BearerAuth,
    ) -> Answer<RequestVerificationResponse, BearerPostFailure> {
        match service.request_verification(&auth.0).await {
            Ok(()) => Ok(RequestVerificationResponse::Accepted),
            Err(err) => err.into(),
        }
    }

    /// Verify an email with the token of a verification message.
    #[oai(path = "/email/verify", method = "post")]
    async fn verify_email(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        body: Json<VerifyEmail>,
    ) -> Answer<VerifyEmailResponse> {
        match service.verify_email(&body.0.token.0, client.0).await {
            Ok(()) => Ok(VerifyEmailResponse::NoContent),
            Err(err) => err.into(),
        }
    }
}
