//! `/v1/auth/sessions` and `/v1/auth/logout-others`: a user's own sessions.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::auth::{ApiTags, BearerAuth, NO_STORE};
use super::failures::{Answer, BearerFailure, BearerPostFailure};
use super::problem::{Problem, ProblemType, problem_of};
use crate::domain::{AuthService, Client, EndSessionError, Session};

/// A live session of the caller.
#[derive(Object)]
#[oai(rename = "Session")]
pub struct SessionBody {
    /// The `sid` of its access tokens.
    pub id: Uuid,
    /// RFC 3339.
    pub created_at: String,
    /// The latest login or refresh (RFC 3339).
    pub last_used_at: String,
    /// When the session ends at the latest (RFC 3339).
    pub expires_at: String,
    /// The client address of the latest login or refresh.
    pub ip: Option<String>,
    /// The user agent of the latest login or refresh (at most 256 characters).
    pub user_agent: Option<String>,
    /// True for the session of the token that asks.
    pub current: bool,
}

impl SessionBody {
    pub(super) fn new(session: Session, current: Uuid) -> Self {
        Self {
            id: session.id,
            created_at: session.created_at.rfc3339(),
            last_used_at: session.last_used_at().rfc3339(),
            expires_at: session.expires_at.rfc3339(),
            ip: session.client.client_ip,
            user_agent: session.client.user_agent,
            current: session.id == current,
        }
    }
}

#[derive(Object)]
pub struct SessionList {
    /// Most recently used first.
    pub sessions: Vec<SessionBody>,
}

#[derive(ApiResponse)]
pub enum SessionsResponse {
    /// The caller's live sessions (a user's data: never cached).
    #[oai(status = 200)]
    Ok(Json<SessionList>, #[oai(header = "Cache-Control")] String),
}

#[derive(ApiResponse)]
pub enum EndSessionResponse {
    /// The session has ended; its refresh and access tokens stop working.
    #[oai(status = 204)]
    NoContent,
    /// The id is not a UUID.
    #[oai(status = 400, content_type = "application/problem+json")]
    #[allow(dead_code)]
    // answered by the catch-all for a malformed path; declared for the spec
    BadRequest(Json<Problem>),
    /// Not a live session of the caller.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
}

impl From<EndSessionError> for Answer<EndSessionResponse, BearerFailure> {
    fn from(err: EndSessionError) -> Self {
        match err {
            EndSessionError::NotFound => Ok(EndSessionResponse::NotFound(Json(problem_of(
                ProblemType::NotFound,
                &err,
            )))),
            EndSessionError::Fault(fault) => Err(fault.into()),
        }
    }
}

#[derive(ApiResponse)]
pub enum LogoutOthersResponse {
    /// Every other session of the user has ended; the caller's keeps working.
    #[oai(status = 204)]
    NoContent,
}

pub struct SessionsApi;

#[OpenApi(prefix_path = "/v1/auth", tag = "ApiTags::Auth")]
impl SessionsApi {
    /// The caller's live sessions, most recently used first.
    #[oai(path = "/sessions", method = "get")]
    async fn list(
        &self,
        service: Data<&Arc<AuthService>>,
        auth: BearerAuth,
    ) -> Answer<SessionsResponse, BearerFailure> {
        let current = auth.0.claims.sid;
        let sessions = service.sessions_of(&auth.0).await?;
        Ok(SessionsResponse::Ok(
            Json(SessionList {
                sessions: sessions
                    .into_iter()
                    .map(|session| SessionBody::new(session, current))
                    .collect(),
            }),
            NO_STORE.to_owned(),
        ))
    }

    /// End one of the caller's sessions (the current one included).
    #[oai(path = "/sessions/:id", method = "delete")]
    async fn end(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Answer<EndSessionResponse, BearerFailure> {
        match service.end_session(&auth.0, id.0, client.0).await {
            Ok(()) => Ok(EndSessionResponse::NoContent),
            Err(err) => err.into(),
        }
    }

    /// End every session of the caller but the current one.
    #[oai(path = "/logout-others", method = "post")]
    async fn logout_others(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        auth: BearerAuth,
    ) -> Answer<LogoutOthersResponse, BearerPostFailure> {
        service.logout_others(&auth.0, client.0).await?;
        Ok(LogoutOthersResponse::NoContent)
    }
}
