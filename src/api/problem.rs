//! RFC 9457 problem details: the problem types (one table, shared with
//! authgate-verify), the problem of a server fault, and the catch-all that turns every other failure (parse errors, 404,
//! 405, missing credentials) into `application/problem+json`.

use poem::Response;
use poem::error::{MethodNotAllowedError, NotFoundError};
use poem::http::{StatusCode, header};
use poem_openapi::error::{
    AuthorizationError, ContentTypeError, ParseMultipartError, ParseParamError,
    ParseRequestPayloadError,
};

use crate::domain::Fault;

pub use authgate_verify::problem::{PROBLEM_JSON, Problem, ProblemType};

/// The problem for a server-side failure: logged in full, told to the client in one
/// opaque sentence.
pub fn internal(fault: &Fault) -> Problem {
    tracing::error!(error = ?fault, "request failed");
    ProblemType::Internal.problem("The server failed to handle the request; it has been logged.")
}

/// A problem whose detail is the error's own message, as a sentence.
pub fn problem_of(kind: ProblemType, err: &impl std::fmt::Display) -> Problem {
    kind.problem(capitalize(&err.to_string()))
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
