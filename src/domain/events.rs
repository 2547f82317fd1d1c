//! Events for the services around authgate: what a change tells its subscribers, who
//! subscribes to what, and the admin's view of their deliveries. The store writes a
//! change's events to the outbox in the change's own transaction (one delivery per
//! subscriber that wants the event); the deliverer in `crate::delivery` sends them.

use serde_json::json;
use uuid::Uuid;

use super::admin::{AdminCaller, AdminError, Page};
use super::types::{Actor, AuditEntry, AuditEvent, UnixMillis};
use super::{AuthService, Client};

/// A delivery is retried for at least this long after its event, then marked failed.
pub const RETRY_PERIOD_SECS: u64 = 24 * 3600;

/// The kinds of event a subscriber can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    UserCreated,
    UserUpdated,
    UserDeleted,
    SessionCreated,
    SessionEnded,
    RefreshReuseDetected,
}

impl EventType {
    pub const ALL: [Self; 6] = [
        Self::UserCreated,
        Self::UserUpdated,
        Self::UserDeleted,
        Self::SessionCreated,
        Self::SessionEnded,
        Self::RefreshReuseDetected,
    ];

    /// The `type` of the body; stable, as subscribers match on it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UserCreated => "user.created",
            Self::UserUpdated => "user.updated",
            Self::UserDeleted => "user.deleted",
            Self::SessionCreated => "session.created",
            Self::SessionEnded => "session.ended",
            Self::RefreshReuseDetected => "refresh.reuse_detected",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// Why a session ended (`data.cause` of `session.ended`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    Logout,
    LogoutAll,
    LogoutOthers,
    Revoked,
    ReuseDetected,
    PasswordChanged,
    PasswordReset,
    Disabled,
    Deleted,
    Admin,
}

impl EndCause {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::LogoutAll => "logout_all",
            Self::LogoutOthers => "logout_others",
            Self::Revoked => "revoked",
            Self::ReuseDetected => "reuse_detected",
            Self::PasswordChanged => "password_changed",
            Self::PasswordReset => "password_reset",
            Self::Disabled => "disabled",
            Self::Deleted => "deleted",
            Self::Admin => "admin",
        }
    }

    /// Why the change an audit entry records ends sessions: the audited event says what
    /// happened, its actor whether an admin did it.
    pub fn of(audit: &AuditEntry<'_>) -> Self {
        let by_admin = audit.actor.name.is_some();
        match audit.event {
            AuditEvent::Revoke => Self::Logout,
            AuditEvent::LogoutAll if by_admin => Self::Admin,
            AuditEvent::LogoutAll => Self::LogoutAll,
            AuditEvent::LogoutOthers => Self::LogoutOthers,
            AuditEvent::SessionRevoked if by_admin => Self::Admin,
            AuditEvent::SessionRevoked => Self::Revoked,
            AuditEvent::ReuseDetected => Self::ReuseDetected,
            AuditEvent::PasswordChanged => Self::PasswordChanged,
            AuditEvent::PasswordReset => Self::PasswordReset,
            AuditEvent::UserUpdated => Self::Disabled,
            AuditEvent::AccountDeleted => Self::Deleted,
            _ if by_admin => Self::Admin,
            _ => Self::Revoked,
        }
    }
}

/// One event: its id (the `webhook-id` of every attempt to every subscriber), type and
/// `data`.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    pub event_type: EventType,
    pub data: serde_json::Value,
}

impl Event {
    fn new(event_type: EventType, data: serde_json::Value) -> Self {
        Self {
            // Time-ordered, so deliveries list in the order their events happened.
            id: Uuid::now_v7(),
            event_type,
            data,
        }
    }

    pub fn user_created(user_id: Uuid, email: &str) -> Self {
        Self::new(
            EventType::UserCreated,
            json!({"user": {"id": user_id, "email": email}}),
        )
    }

    pub fn user_updated(user_id: Uuid, email: &str, changed: &[&str]) -> Self {
        Self::new(
            EventType::UserUpdated,
            json!({"user": {"id": user_id, "email": email}, "changed": changed}),
        )
    }

    pub fn user_deleted(user_id: Uuid) -> Self {
        Self::new(EventType::UserDeleted, json!({"user": {"id": user_id}}))
    }

    pub fn session_created(session_id: Uuid, user_id: Uuid, client: &Actor) -> Self {
        Self::new(
            EventType::SessionCreated,
            json!({"session": {"id": session_id, "user_id": user_id,
                   "ip": client.client_ip, "user_agent": client.user_agent}}),
        )
    }

    pub fn session_ended(session_id: Uuid, user_id: Uuid, cause: EndCause) -> Self {
        Self::new(
            EventType::SessionEnded,
            json!({"session": {"id": session_id, "user_id": user_id}, "cause": cause.as_str()}),
        )
    }

    pub fn refresh_reuse_detected(session_id: Uuid, user_id: Uuid, client: &Actor) -> Self {
        Self::new(
            EventType::RefreshReuseDetected,
            json!({"session": {"id": session_id, "user_id": user_id}, "ip": client.client_ip}),
        )
    }

    /// The body subscribers receive (the same on every attempt).
    pub fn body(&self, at: UnixMillis) -> String {
        json!({"type": self.event_type.as_str(), "timestamp": at.rfc3339(), "data": self.data})
            .to_string()
    }

    /// The `webhook-id` subscribers deduplicate by.
    pub fn webhook_id(id: Uuid) -> String {
        format!("evt_{}", id.simple())
    }
}

/// Which event types a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    All,
    Only(Vec<EventType>),
}

impl EventFilter {
    pub fn wants(&self, event_type: EventType) -> bool {
        match self {
            Self::All => true,
            Self::Only(types) => types.contains(&event_type),
        }
    }
}

/// A receiver of events: its URL (which also names it), the bytes of its `whsec_`
/// secret and what it wants.
#[derive(Clone)]
pub struct Subscriber {
    pub url: String,
    pub secret: Vec<u8>,
    pub filter: EventFilter,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("url", &crate::config::SecretUrl::from(self.url.as_str()))
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// One event on its way to one subscriber.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub subscriber: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: Option<UnixMillis>,
    /// The HTTP status of the latest attempt; `None` before one, or when it got no
    /// answer (timeout, connection refused).
    pub last_status: Option<u16>,
}

/// A delivery claimed for one attempt.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub subscriber: String,
    pub body: String,
    pub created_at: UnixMillis,
    /// Attempts made, this one included.
    pub attempts: u32,
}

/// What became of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    /// Tried again at this time.
    Retry(UnixMillis),
    /// No more attempts.
    Failed,
}

/// The admin's query of deliveries.
#[derive(Debug, Clone)]
pub struct DeliveryFilter {
    pub status: Option<String>,
    pub limit: u64,
    pub cursor: Option<String>,
}

impl AuthService {
    /// Deliveries of one status (or all), oldest event first, a page at a time.
    pub async fn admin_deliveries(
        &self,
        filter: DeliveryFilter,
    ) -> Result<Page<Delivery>, AdminError> {
        let status = match filter.status.as_deref() {
            Some(text) => Some(DeliveryStatus::parse(text).ok_or_else(|| {
                AdminError::BadParameter("status: pending, failed or delivered".into())
            })?),
            None => None,
        };
        let after = match &filter.cursor {
            Some(cursor) => Some(
                super::admin::decode_cursor(cursor)?
                    .parse::<Uuid>()
                    .map_err(|_| AdminError::BadParameter("malformed cursor".into()))?,
            ),
            None => None,
        };
        let mut deliveries = self
            .store
            .deliveries(status, after, filter.limit + 1)
            .await?;
        let next_cursor = (deliveries.len() as u64 > filter.limit).then(|| {
            deliveries.truncate(filter.limit as usize);
            deliveries
                .last()
                .map(|delivery| super::admin::encode_cursor(&delivery.id.to_string()))
        });
        Ok(Page {
            items: deliveries,
            next_cursor: next_cursor.flatten(),
        })
    }

    /// Makes a delivery due now, whatever its status (a failed one gets a new retry
    /// period from now).
    pub async fn admin_retry_delivery(
        &self,
        caller: &AdminCaller,
        client: &Client,
        id: Uuid,
    ) -> Result<(), AdminError> {
        let actor = Self::admin_actor(caller, client);
        let now = UnixMillis::now();
        let audit = AuditEntry::new(AuditEvent::WebhookRetried, &actor, now).detail(id.to_string());
        match self.store.retry_delivery(id, &audit).await? {
            true => {
                self.store.events_written();
                Ok(())
            }
            false => Err(AdminError::DeliveryNotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_and_status_reads_back_from_its_name() {
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventType::parse("user.*"), None);
        for status in ["pending", "failed", "delivered"] {
            assert_eq!(DeliveryStatus::parse(status).unwrap().as_str(), status);
        }
    }

    #[test]
    fn the_cause_follows_the_audited_change_and_who_made_it() {
        let user = Actor::default();
        let admin = Actor {
            name: Some("ops".into()),
            ..Actor::default()
        };
        let at = UnixMillis::from_millis(0);
        let cause = |event, actor| EndCause::of(&AuditEntry::new(event, actor, at)).as_str();
        assert_eq!(cause(AuditEvent::LogoutAll, &user), "logout_all");
        assert_eq!(cause(AuditEvent::LogoutAll, &admin), "admin");
        assert_eq!(cause(AuditEvent::SessionRevoked, &user), "revoked");
        assert_eq!(cause(AuditEvent::SessionRevoked, &admin), "admin");
        assert_eq!(cause(AuditEvent::AccountDeleted, &admin), "deleted");
        assert_eq!(cause(AuditEvent::UserUpdated, &admin), "disabled");
        assert_eq!(cause(AuditEvent::Revoke, &user), "logout");
    }
}
