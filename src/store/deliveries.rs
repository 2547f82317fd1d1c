//! The event outbox: one row per (event, subscriber), written in the transaction of the
//! change, claimed by one instance per attempt, kept after delivery for the admin API
//! until cleanup.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Statement, UpdateMany,
};
use uuid::Uuid;

use super::entities::event_deliveries;
use super::{Result, Store};
use crate::domain::events::{
    AttemptOutcome, Delivery, DeliveryStatus, Event, EventFilter, PendingDelivery,
};
use crate::domain::types::{AuditEntry, UnixMillis};

/// The insert of one pending delivery per event and subscriber that wants it (`None`:
/// nobody wants these events), to run in the transaction of the change.
pub(super) fn deliveries_insert(
    routes: &[(String, EventFilter)],
    events: &[Event],
    backend: DbBackend,
) -> Option<Statement> {
    let now = UnixMillis::now();
    let rows: Vec<event_deliveries::ActiveModel> = events
        .iter()
        .flat_map(|event| {
            let body = event.body(now);
            routes
                .iter()
                .filter(|(_, filter)| filter.wants(event.event_type))
                .map(move |(url, _)| event_deliveries::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    event_id: Set(event.id),
                    event_type: Set(event.event_type.as_str().to_owned()),
                    subscriber: Set(url.clone()),
                    body: Set(body.clone()),
                    status: Set(DeliveryStatus::Pending.as_str().to_owned()),
                    attempts: Set(0),
                    created_at: Set(now.millis()),
                    next_attempt_at: Set(now.millis()),
                    claimed_until: Set(0),
                    last_attempt_at: Set(None),
                    last_status: Set(None),
                })
        })
        .collect();
    (!rows.is_empty()).then(|| event_deliveries::Entity::insert_many(rows).build(backend))
}

/// What every recorded attempt sets: the delivery's status after it, its claim released,
/// when it was made and the HTTP status it got (if any).
fn attempt_recorded(
    state: DeliveryStatus,
    at: UnixMillis,
    status: Option<u16>,
) -> UpdateMany<event_deliveries::Entity> {
    event_deliveries::Entity::update_many()
        .col_expr(
            event_deliveries::Column::Status,
            Expr::value(state.as_str()),
        )
        .col_expr(event_deliveries::Column::ClaimedUntil, Expr::value(0i64))
        .col_expr(event_deliveries::Column::LastAttemptAt, Expr::value(at))
        .col_expr(
            event_deliveries::Column::LastStatus,
            Expr::value(status.map(i32::from)),
        )
}

impl Store {
    /// Claims up to `limit` due deliveries to these subscribers for one attempt each until
    /// `lease_until`; rows another instance is claiming are skipped on PostgreSQL, not
    /// waited for. Only the instances that know a subscriber claim its deliveries, so
    /// instances with an older configuration (a rolling change) leave them to the others.
    pub async fn claim_due_deliveries(
        &self,
        subscribers: &[String],
        now: UnixMillis,
        lease_until: UnixMillis,
        limit: u32,
    ) -> Result<Vec<PendingDelivery>> {
        if subscribers.is_empty() {
            return Ok(Vec::new());
        }
        let backend = self.db.get_database_backend();
        let placeholders: Vec<String> = (4..4 + subscribers.len())
            .map(|n| match backend {
                DbBackend::Postgres => format!("${n}"),
                _ => format!("?{n}"),
            })
            .collect();
        let known = placeholders.join(", ");
        let sql = match backend {
            DbBackend::Postgres => format!(
                "UPDATE event_deliveries SET claimed_until = $2, attempts = attempts + 1
                  WHERE id IN (SELECT id FROM event_deliveries
                                WHERE status = 'pending' AND next_attempt_at <= $1 AND claimed_until <= $1
                                  AND subscriber IN ({known})
                                ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING *"
            ),
            _ => format!(
                "UPDATE event_deliveries SET claimed_until = ?2, attempts = attempts + 1
                  WHERE id IN (SELECT id FROM event_deliveries
                                WHERE status = 'pending' AND next_attempt_at <= ?1 AND claimed_until <= ?1
                                  AND subscriber IN ({known})
                                ORDER BY next_attempt_at LIMIT ?3)
                 RETURNING *"
            ),
        };
        let mut values: Vec<sea_orm::Value> =
            vec![now.into(), lease_until.into(), i64::from(limit).into()];
        values.extend(subscribers.iter().map(|url| url.as_str().into()));
        let statement = Statement::from_sql_and_values(backend, sql, values);
        let rows = self.write_alone(statement).await?;
        rows.iter()
            .map(|row| {
                let row = event_deliveries::Model::from_query_result(row, "")?;
                Ok(PendingDelivery {
                    id: row.id,
                    event_id: row.event_id,
                    event_type: row.event_type,
                    subscriber: row.subscriber,
                    body: row.body,
                    created_at: UnixMillis::from_millis(row.created_at),
                    attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    /// Records the outcome of each attempt (id, HTTP status if any, outcome), in one
    /// transaction.
    pub async fn record_attempts(
        &self,
        attempts: &[(Uuid, Option<u16>, AttemptOutcome)],
        at: UnixMillis,
    ) -> Result<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        let backend = self.db.get_database_backend();
        // Deliveries answered alike (as a rule all 200) take one statement.
        let mut delivered: std::collections::BTreeMap<Option<u16>, Vec<Uuid>> =
            std::collections::BTreeMap::new();
        let mut updates = Vec::new();
        for &(id, status, outcome) in attempts {
            let (state, next) = match outcome {
                AttemptOutcome::Delivered => {
                    delivered.entry(status).or_default().push(id);
                    continue;
                }
                AttemptOutcome::Retry(next) => (DeliveryStatus::Pending, next),
                AttemptOutcome::Failed => (DeliveryStatus::Failed, at),
            };
            updates.push(
                attempt_recorded(state, at, status)
                    .col_expr(event_deliveries::Column::NextAttemptAt, Expr::value(next))
                    .filter(event_deliveries::Column::Id.eq(id))
                    .build(backend),
            );
        }
        for (status, ids) in delivered {
            updates.push(
                attempt_recorded(DeliveryStatus::Delivered, at, status)
                    .filter(event_deliveries::Column::Id.is_in(ids))
                    .build(backend),
            );
        }
        if updates.len() == 1 {
            // The common round: one statement is its own transaction.
            self.write_alone(updates.remove(0)).await?;
            return Ok(());
        }
        let work = self.begin().await?;
        for update in updates {
            work.db().execute_raw(update).await?;
        }
        work.commit(None).await?;
        Ok(())
    }

    /// Deliveries of a status (or all), in the order their events happened, after the
    /// delivery `after`.
    pub async fn deliveries(
        &self,
        status: Option<DeliveryStatus>,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<Delivery>> {
        let mut query = event_deliveries::Entity::find()
            .order_by_asc(event_deliveries::Column::Id)
            .limit(limit);
        if let Some(status) = status {
            query = query.filter(event_deliveries::Column::Status.eq(status.as_str()));
        }
        if let Some(after) = after {
            query = query.filter(event_deliveries::Column::Id.gt(after));
        }
        Ok(query
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| {
                let status = DeliveryStatus::parse(&row.status).unwrap_or(DeliveryStatus::Pending);
                Delivery {
                    id: row.id,
                    event_id: row.event_id,
                    event_type: row.event_type,
                    subscriber: row.subscriber,
                    status,
                    attempts: u32::try_from(row.attempts).unwrap_or(0),
                    next_attempt_at: (status == DeliveryStatus::Pending)
                        .then(|| UnixMillis::from_millis(row.next_attempt_at)),
                    last_status: row.last_status.and_then(|code| u16::try_from(code).ok()),
                }
            })
            .collect())
    }

    /// Makes a delivery pending and due now; false for an unknown id.
    pub async fn retry_delivery(&self, id: Uuid, audit: &AuditEntry<'_>) -> Result<bool> {
        let now = audit.at;
        let work = self.begin().await?;
        let found = event_deliveries::Entity::update_many()
            .col_expr(
                event_deliveries::Column::Status,
                Expr::value(DeliveryStatus::Pending.as_str()),
            )
            .col_expr(event_deliveries::Column::NextAttemptAt, Expr::value(now))
            // A retried delivery gets a full retry period of its own from now.
            .col_expr(event_deliveries::Column::CreatedAt, Expr::value(now))
            .filter(event_deliveries::Column::Id.eq(id))
            .exec(work.db())
            .await?
            .rows_affected
            == 1;
        work.commit(found.then_some(audit)).await?;
        Ok(found)
    }

    /// Deliveries not yet delivered nor given up, and messages waiting in the outbox.
    pub async fn outbox_pending(&self) -> Result<u64> {
        let deliveries = event_deliveries::Entity::find()
            .filter(event_deliveries::Column::Status.eq(DeliveryStatus::Pending.as_str()))
            .count(&self.db)
            .await?;
        let messages = super::entities::outbox::Entity::find()
            .count(&self.db)
            .await?;
        Ok(deliveries + messages)
    }

    /// Deletes up to `batch` delivered or failed deliveries whose last attempt was
    /// before `cutoff`, and pending ones whose retry period (from `abandoned_before` on)
    /// ended long ago: no instance knows their subscriber any more.
    pub async fn delete_finished_deliveries(
        &self,
        cutoff: UnixMillis,
        abandoned_before: UnixMillis,
        batch: u64,
    ) -> Result<u64> {
        use sea_orm::sea_query::{Cond, Query};
        let work = self.begin().await?;
        let finished = Cond::all()
            .add(event_deliveries::Column::Status.ne(DeliveryStatus::Pending.as_str()))
            .add(event_deliveries::Column::LastAttemptAt.lt(cutoff));
        let abandoned = Cond::all()
            .add(event_deliveries::Column::Status.eq(DeliveryStatus::Pending.as_str()))
            .add(event_deliveries::Column::CreatedAt.lt(abandoned_before));
        let old = Query::select()
            .column(event_deliveries::Column::Id)
            .from(event_deliveries::Entity)
            .cond_where(Cond::any().add(finished).add(abandoned))
            .limit(batch)
            .to_owned();
        let deleted = event_deliveries::Entity::delete_many()
            .filter(event_deliveries::Column::Id.in_subquery(old))
            .exec(work.db())
            .await?
            .rows_affected;
        work.commit(None).await?;
        Ok(deleted)
    }
}
