//! `/admin/v1/audit`: the audit trail, newest first.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::users::{AdminAnswer, AdminFailure, no_store, page_limit};
use super::{AdminKey, AdminTags};
use crate::api::problem::ProblemType;
use crate::domain::admin::AuditFilter;
use crate::domain::types::AuditRecord;
use crate::domain::{AuthService, UnixMillis};

/// One recorded event.
#[derive(Object)]
pub struct AuditEvent {
    /// RFC 3339.
    pub at: String,
    /// `register`, `login`, `password_reset`, `user_updated`, …
    pub event: String,
    pub user_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The admin key that made the change; `null` when the user did.
    pub actor: Option<String>,
    pub detail: Option<String>,
}

impl From<AuditRecord> for AuditEvent {
    fn from(record: AuditRecord) -> Self {
        Self {
            at: record.at.rfc3339(),
            event: record.event,
            user_id: record.user_id,
            session_id: record.session_id,
            client_ip: record.client_ip,
            user_agent: record.user_agent,
            actor: record.actor,
            detail: record.detail,
        }
    }
}

#[derive(Object)]
pub struct AuditPage {
    /// Newest first.
    pub events: Vec<AuditEvent>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
pub enum AuditResponse {
    #[oai(status = 200)]
    Ok(Json<AuditPage>, #[oai(header = "Cache-Control")] String),
}

pub struct AuditApi;

#[OpenApi(prefix_path = "/admin/v1", tag = "AdminTags::Audit")]
impl AuditApi {
    /// The audit trail, newest first: of one user, one event, since a time (RFC 3339);
    /// `limit` per page (1 to 200, default 50), `cursor` from the previous page.
    #[oai(path = "/audit", method = "get")]
    #[allow(clippy::too_many_arguments)] // one per query parameter
    async fn audit(
        &self,
        service: Data<&Arc<AuthService>>,
        _key: AdminKey,
        user_id: Query<Option<Uuid>>,
        event: Query<Option<String>>,
        since: Query<Option<String>>,
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> AdminAnswer<AuditResponse> {
        let since = match since.0 {
            Some(text) => Some(UnixMillis::parse_rfc3339(&text).ok_or_else(|| {
                AdminFailure::BadRequest(Json(
                    ProblemType::MalformedRequest.problem("since must be an RFC 3339 time."),
                ))
            })?),
            None => None,
        };
        let filter = AuditFilter {
            user_id: user_id.0,
            event: event.0,
            since,
            limit: page_limit(limit.0)?,
            cursor: cursor.0,
        };
        let page = service.admin_audit(filter).await?;
        Ok(AuditResponse::Ok(
            Json(AuditPage {
                events: page.items.into_iter().map(AuditEvent::from).collect(),
                next_cursor: page.next_cursor,
            }),
            no_store(),
        ))
    }
}
