//! The audit trail: every security event, written in the transaction of its change.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, Statement,
};
use uuid::Uuid;

use super::entities::audit_events;
use super::{Result, Store};
use crate::domain::types::{Actor, AuditEntry, AuditRecord, UnixMillis};

impl Store {
    /// Records an event that changes nothing else (a failed login).
    pub async fn record(&self, audit: &AuditEntry<'_>) -> Result<()> {
        let work = self.begin().await?;
        Ok(work.commit(Some(audit)).await?)
    }

    /// Events, oldest first, optionally of one user and from a time on.
    pub async fn audit_events(
        &self,
        user_id: Option<Uuid>,
        since: Option<UnixMillis>,
        limit: u64,
    ) -> Result<Vec<AuditRecord>> {
        let mut query = audit_events::Entity::find()
            .order_by_asc(audit_events::Column::At)
            .limit(limit);
        if let Some(user_id) = user_id {
            query = query.filter(audit_events::Column::UserId.eq(user_id));
        }
        if let Some(since) = since {
            query = query.filter(audit_events::Column::At.gte(since));
        }
        Ok(query
            .all(&self.db)
            .await?
            .into_iter()
            .map(AuditRecord::from)
            .collect())
    }

    /// Deletes up to `batch` audit events recorded before `cutoff`.
    pub async fn delete_audit_before(&self, cutoff: UnixMillis, batch: u64) -> Result<u64> {
        let work = self.begin().await?;
        use sea_orm::sea_query::Query;
        let old = Query::select()
            .column(audit_events::Column::Id)
            .from(audit_events::Entity)
            .and_where(audit_events::Column::At.lt(cutoff))
            .limit(batch)
            .to_owned();
        let deleted = audit_events::Entity::delete_many()
            .filter(audit_events::Column::Id.in_subquery(old))
            .exec(work.db())
            .await?
            .rows_affected;
        work.commit(None).await?;
        Ok(deleted)
    }
}

pub(super) fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// The client address as the audit trail stores it (at most an IPv6 address's length).
pub(super) fn recorded_ip(actor: &Actor) -> Option<String> {
    actor.client_ip.as_deref().map(|ip| truncate(ip, 45))
}

/// The user agent as the audit trail stores it (at most 256 characters).
pub(super) fn recorded_user_agent(actor: &Actor) -> Option<String> {
    actor.user_agent.as_deref().map(|ua| truncate(ua, 256))
}

/// The insert of an audit event, to run in the transaction of its change.
pub(super) fn audit_insert(audit: &AuditEntry<'_>, backend: DbBackend) -> Statement {
    audit_events::Entity::insert(audit_events::ActiveModel {
        // Time-ordered: events of one millisecond keep their order in the admin's pages.
        id: Set(Uuid::now_v7()),
        at: Set(audit.at.millis()),
        event: Set(audit.event.as_str().to_owned()),
        user_id: Set(audit.user_id),
        session_id: Set(audit.session_id),
        client_ip: Set(recorded_ip(audit.actor)),
        user_agent: Set(recorded_user_agent(audit.actor)),
        detail: Set(audit.detail.as_deref().map(|detail| truncate(detail, 512))),
        actor: Set(audit.actor.name.as_deref().map(|name| truncate(name, 64))),
    })
    .build(backend)
}

impl From<audit_events::Model> for AuditRecord {
    fn from(row: audit_events::Model) -> Self {
        Self {
            id: row.id,
            at: UnixMillis::from_millis(row.at),
            event: row.event,
            user_id: row.user_id,
            session_id: row.session_id,
            client_ip: row.client_ip,
            user_agent: row.user_agent,
            detail: row.detail,
            actor: row.actor,
        }
    }
}
