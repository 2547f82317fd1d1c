//! RFC 9457 problem details: one table of stable problem types, the conversion of
//! domain errors, and the catch-all that turns every other failure (parse errors, 404,
//! 405, missing credentials) into `application/problem+json`.

use poem::Response;
use poem::error::{MethodNotAllowedError, NotFoundError};
use poem::http::{StatusCode, header};
use poem_openapi::Object;
use poem_openapi::error::{
    AuthorizationError, ContentTypeError, ParseMultipartError, ParseParamError,
    ParseRequestPayloadError,
};

use crate::domain::DomainError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details object.
#[derive(Object, Debug, Clone, PartialEq, Eq)]
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

/// Every problem type authgate answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    MalformedRequest,
    MissingToken,
    InvalidToken,
    InvalidCredentials,
    InvalidRefreshToken,
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

    pub fn problem(self, detail: impl Into<String>) -> Problem {
        let (status, code, title) = self.row();
        Problem {
            kind: format!("urn:authgate:problem:{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }

    /// The problem as a complete response, for use outside operations.
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

/// Maps a domain error to its problem; a server-side failure is logged in full and
/// told to the client in one opaque sentence.
pub fn from_domain(err: &DomainError) -> Problem {
    use ProblemType::*;
    let kind = match err {
        DomainError::InvalidEmail(_) => InvalidEmail,
        DomainError::InvalidPassword(_) => InvalidPassword,
        DomainError::EmailTaken => EmailTaken,
        DomainError::InvalidCredentials => InvalidCredentials,
        DomainError::InvalidRefreshToken => InvalidRefreshToken,
        DomainError::InvalidAccessToken(_) | DomainError::SessionEnded => InvalidToken,
        DomainError::Throttled(_) => TooManyRequests,
        DomainError::Overloaded => Overloaded,
        DomainError::Store(_) | DomainError::Password(_) | DomainError::Key(_) => {
            tracing::error!(error = ?err, "request failed");
            return Internal
                .problem("The server failed to handle the request; it has been logged.");
        }
    };
    let detail = match err {
        // One message for unknown account and wrong password.
        DomainError::InvalidCredentials => "The email or password is wrong.".to_owned(),
        // The reason a token failed is for logs, not for whoever presented it.
        DomainError::InvalidAccessToken(reason) => {
            tracing::debug!(%reason, "rejected access token");
            "The access token is invalid, expired or its session has ended.".to_owned()
        }
        DomainError::SessionEnded => {
            "The access token is invalid, expired or its session has ended.".to_owned()
        }
        other => capitalize(&other.to_string()),
    };
    kind.problem(detail)
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect::<String>() + ".")
        .unwrap_or_default()
}

/// `WWW-Authenticate` for a 401 on a Bearer endpoint (RFC 6750 §3).
pub fn www_authenticate(token_presented: bool) -> String {
    if token_presented {
        r#"Bearer error="invalid_token", error_description="The access token is invalid, expired or its session has ended""#.to_owned()
    } else {
        "Bearer".to_owned()
    }
}

/// Root error handler: anything that is not already a response of ours becomes a problem.
pub async fn catch_all(err: poem::Error) -> Response {
    if err.is_from_response() {
        return err.into_response();
    }
    use ProblemType::*;
    let kind = if err.is::<ParseRequestPayloadError>()
        || err.is::<ParseParamError>()
        || err.is::<ParseMultipartError>()
    {
        MalformedRequest
    } else if err.is::<AuthorizationError>() {
        let mut response =
            MissingToken.response("This endpoint needs an Authorization: Bearer header.");
        if let Ok(value) = www_authenticate(false).parse() {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        return response;
    } else if err.is::<ContentTypeError>() {
        // A body that is not declared JSON is as malformed as bad JSON (the contract's
        // 400), and keeps every operation's documented statuses to what it declares.
        MalformedRequest
    } else if err.is::<NotFoundError>() {
        NotFound
    } else if err.is::<MethodNotAllowedError>() {
        MethodNotAllowed
    } else {
        match err.status() {
            StatusCode::BAD_REQUEST => MalformedRequest,
            StatusCode::NOT_FOUND => NotFound,
            StatusCode::METHOD_NOT_ALLOWED => MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => UnsupportedMediaType,
            status => {
                tracing::error!(%status, error = %err, "unhandled error");
                return Internal
                    .response("The server failed to handle the request; it has been logged.");
            }
        }
    };
    let detail = match kind {
        NotFound => "No such resource.".to_owned(),
        MethodNotAllowed => "This method is not allowed on this resource.".to_owned(),
        _ => err.to_string(),
    };
    kind.response(detail)
}
