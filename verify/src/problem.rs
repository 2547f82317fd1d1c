//! RFC 9457 problem details: the one table of problem types that authgate and this
//! library answer with, so a client can match on a stable `type`
//! (`urn:authgate:problem:<code>`) whichever of the two refused it.

use poem::Response;
use poem::http::{StatusCode, header};

/// The media type of a problem.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details object.
#[derive(poem_openapi::Object, Debug, Clone, PartialEq, Eq)]
#[oai(rename = "Problem")]
pub struct Problem {
    /// Stable identifier of the problem type (`urn:authgate:problem:…`).
    #[oai(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence.
    pub detail: String,
}

/// Every problem type, with its status, code and title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    MalformedRequest,
    MissingToken,
    InvalidToken,
    InvalidCredentials,
    InvalidRefreshToken,
    InsufficientScope,
    InsufficientRole,
    AccountDisabled,
    InvalidRoles,
    InvalidClientSettings,
    WrongPassword,
    EmailNotVerified,
    InvalidResetToken,
    InvalidVerificationToken,
    DeliveryNotConfigured,
    NotFound,
    MethodNotAllowed,
    EmailTaken,
    PayloadTooLarge,
    UnsupportedMediaType,
    InvalidEmail,
    InvalidPassword,
    TooManyRequests,
    Overloaded,
    RequestTimeout,
    Unavailable,
    Internal,
}

impl ProblemType {
    fn row(self) -> (StatusCode, &'static str, &'static str) {
        use ProblemType::*;
        match self {
            MalformedRequest => (
                StatusCode::BAD_REQUEST,
                "malformed-request",
                "Malformed request",
            ),
            MissingToken => (
                StatusCode::UNAUTHORIZED,
                "missing-token",
                "Bearer token required",
            ),
            InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "invalid-token",
                "Invalid access token",
            ),
            InvalidCredentials => (
                StatusCode::UNAUTHORIZED,
                "invalid-credentials",
                "Invalid email or password",
            ),
            InvalidRefreshToken => (
                StatusCode::UNAUTHORIZED,
                "invalid-refresh-token",
                "Invalid refresh token",
            ),
            InsufficientScope => (
                StatusCode::FORBIDDEN,
                "insufficient-scope",
                "Insufficient scope",
            ),
            InsufficientRole => (
                StatusCode::FORBIDDEN,
                "insufficient-role",
                "Insufficient role",
            ),
            AccountDisabled => (
                StatusCode::FORBIDDEN,
                "account-disabled",
                "Account disabled",
            ),
            InvalidRoles => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-roles",
                "Invalid roles",
            ),
            InvalidClientSettings => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-client-settings",
                "Invalid client name or scopes",
            ),
            WrongPassword => (StatusCode::FORBIDDEN, "wrong-password", "Wrong password"),
            EmailNotVerified => (
                StatusCode::FORBIDDEN,
                "email-not-verified",
                "Email not verified",
            ),
            InvalidResetToken => (
                StatusCode::BAD_REQUEST,
                "invalid-reset-token",
                "Invalid reset token",
            ),
            InvalidVerificationToken => (
                StatusCode::BAD_REQUEST,
                "invalid-verification-token",
                "Invalid verification token",
            ),
            DeliveryNotConfigured => (
                StatusCode::NOT_IMPLEMENTED,
                "delivery-not-configured",
                "Message delivery not configured",
            ),
            NotFound => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            EmailTaken => (
                StatusCode::CONFLICT,
                "email-taken",
                "Email already registered",
            ),
            PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
            ),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            InvalidEmail => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-email",
                "Invalid email",
            ),
            InvalidPassword => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-password",
                "Invalid password",
            ),
            TooManyRequests => (
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                "Too many requests",
            ),
            Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded", "Server busy"),
            RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "Request timeout",
            ),
            Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }

    pub fn status(self) -> StatusCode {
        self.row().0
    }

    /// The `type` member: `urn:authgate:problem:<code>`.
    pub fn uri(self) -> String {
        format!("urn:authgate:problem:{}", self.row().1)
    }

    pub fn problem(self, detail: impl Into<String>) -> Problem {
        let (status, _, title) = self.row();
        Problem {
            kind: self.uri(),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }

    /// The problem as a complete response, for use outside typed operations.
    pub fn response(self, detail: impl Into<String>) -> Response {
        let problem = self.problem(detail);
        let body = serde_json::json!({
            "type": problem.kind, "title": problem.title,
            "status": problem.status, "detail": problem.detail,
        });
        Response::builder()
            .status(self.status())
            .header(header::CONTENT_TYPE, PROBLEM_JSON)
            .body(body.to_string())
    }
}
