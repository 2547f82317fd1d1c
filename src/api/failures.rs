//! The failures operations share, declared once: an operation answers
//! `Result<ItsResponse, OneOfThese>`, its own enum holding only the statuses that are its
//! own (poem-openapi documents both). Which one an operation takes follows from how it is
//! called: with a JSON body or not, with a Bearer token or not.

use poem_openapi::ApiResponse;
use poem_openapi::payload::Json;

use super::problem::{Problem, internal};
use crate::domain::Fault;

/// What an operation answers: its own response, or one of the shared failures.
pub type Answer<T, F = BodyFailure> = Result<T, F>;

/// An operation that takes a JSON body (one that also takes a Bearer token declares its
/// 401 itself).
#[derive(ApiResponse)]
pub enum BodyFailure {
    /// Malformed JSON, missing fields or wrong types.
    #[oai(status = 400, content_type = "application/problem+json")]
    #[allow(dead_code)] // answered by the catch-all; declared for the spec
    BadRequest(Json<Problem>),
    /// The body is larger than 16 KiB.
    #[oai(status = 413, content_type = "application/problem+json")]
    #[allow(dead_code)] // answered by the body limit; declared for the spec
    PayloadTooLarge(Json<Problem>),
    /// Too many requests from this client address, or too many failed password checks
    /// for the account from it.
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Json<Problem>, #[oai(header = "Retry-After")] u64),
    /// Server failure.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}

/// A `POST` with a Bearer token and no body (rate-limited like every `POST`).
#[derive(ApiResponse)]
pub enum BearerPostFailure {
    /// Missing or invalid access token, or its session has ended.
    #[oai(status = 401, content_type = "application/problem+json")]
    #[allow(dead_code)] // answered by the BearerAuth checker; declared for the spec
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// Too many requests from this client address.
    #[oai(status = 429, content_type = "application/problem+json")]
    #[allow(dead_code)] // answered by the rate-limit middleware; declared for the spec
    TooManyRequests(Json<Problem>, #[oai(header = "Retry-After")] u64),
    /// Server failure.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}

/// Any other operation with a Bearer token (`GET`, `DELETE`).
#[derive(ApiResponse)]
pub enum BearerFailure {
    /// Missing or invalid access token, or its session has ended.
    #[oai(status = 401, content_type = "application/problem+json")]
    #[allow(dead_code)] // answered by the BearerAuth checker; declared for the spec
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// Server failure.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}

/// A fault of the server is a 500 whatever the operation: logged in full, told in one
/// opaque sentence.
macro_rules! internal_from_fault {
    ($($failure:ident),*) => {$(
        impl From<Fault> for $failure {
            fn from(fault: Fault) -> Self {
                Self::Internal(Json(internal(&fault)))
            }
        }
    )*};
}

internal_from_fault!(BodyFailure, BearerPostFailure, BearerFailure);
