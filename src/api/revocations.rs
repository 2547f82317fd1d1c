//! `GET /v1/auth/revocations`: the revocation feed.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::auth::{ApiTags, NO_STORE};
use super::problem::{Problem, ProblemType, internal, problem_of};
use crate::domain::AuthService;
use crate::domain::revocations::RevocationFeedError;

/// A session that ended.
#[derive(Object)]
pub struct Revoked {
    /// The `sid` of its access tokens: reject them.
    pub sid: Uuid,
    /// RFC 3339.
    pub ended_at: String,
}

#[derive(Object)]
pub struct RevocationFeed {
    /// Sessions that ended while their access tokens may still be unexpired (an access
    /// token lifetime and a minute), oldest first.
    pub revoked: Vec<Revoked>,
    /// Pass as `after` next time to get only what ended since (entries may repeat).
    pub cursor: String,
}

#[derive(ApiResponse)]
pub enum RevocationFeedResponse {
    #[oai(status = 200)]
    Ok(
        Json<RevocationFeed>,
        #[oai(header = "Cache-Control")] String,
    ),
    /// The cursor is not one this feed handed out.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// Server failure.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}

pub struct RevocationsApi;

#[OpenApi(prefix_path = "/v1/auth", tag = "ApiTags::Auth")]
impl RevocationsApi {
    /// The revocation feed: sessions that ended recently, for services that verify access
    /// tokens offline (authgate-verify's `.revocation_feed(interval)` polls it).
    #[oai(path = "/revocations", method = "get")]
    async fn revocations(
        &self,
        service: Data<&Arc<AuthService>>,
        after: Query<Option<String>>,
    ) -> RevocationFeedResponse {
        match service.revocation_feed(after.0.as_deref()).await {
            Ok(page) => RevocationFeedResponse::Ok(
                Json(RevocationFeed {
                    revoked: page
                        .ended
                        .into_iter()
                        .map(|(sid, at)| Revoked {
                            sid,
                            ended_at: at.rfc3339(),
                        })
                        .collect(),
                    cursor: page.cursor,
                }),
                NO_STORE.to_owned(),
            ),
            Err(err @ RevocationFeedError::BadCursor) => RevocationFeedResponse::BadRequest(Json(
                problem_of(ProblemType::MalformedRequest, &err),
            )),
            Err(RevocationFeedError::Fault(fault)) => {
                RevocationFeedResponse::Internal(Json(internal(&fault)))
            }
        }
    }
}
