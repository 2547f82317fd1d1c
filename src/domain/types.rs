//! The domain's own types: what the store hands out and takes in. The store maps its
//! tables to these, so no database type reaches a use case.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

/// A point in time as Unix milliseconds, as every table stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMillis(i64);

impl UnixMillis {
    /// Before any time a clock can tell.
    pub const MIN: Self = Self(i64::MIN);

    pub fn now() -> Self {
        Self(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as i64),
        )
    }

    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Whole seconds, as JWT claims count time.
    pub const fn secs(self) -> i64 {
        self.0 / 1000
    }

    pub fn plus_secs(self, secs: u64) -> Self {
        Self(self.0.saturating_add(secs_to_ms(secs)))
    }

    pub fn plus(self, duration: std::time::Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    pub fn minus_secs(self, secs: u64) -> Self {
        Self(self.0.saturating_sub(secs_to_ms(secs)))
    }

    /// Whole seconds from `self` until `later`; 0 if `later` has passed.
    pub fn secs_until(self, later: Self) -> u64 {
        (later.0.saturating_sub(self.0) / 1000).max(0) as u64
    }

    /// An RFC 3339 time, if `text` is one.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .ok()?;
        i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
            .ok()
            .map(Self)
    }

    /// RFC 3339 in UTC, with milliseconds when there are any.
    pub fn rfc3339(self) -> String {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .ok()
            .and_then(|at| {
                at.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    }
}

impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

pub(crate) fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000)
}

/// An account as everyone may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub created_at: UnixMillis,
    /// Proven by a verification or reset token sent to `email`.
    pub email_verified: bool,
    /// Valid role names, sorted, without duplicates.
    pub roles: Vec<String>,
    /// A disabled account cannot log in, refresh or use its access tokens.
    pub disabled: bool,
    pub last_login_at: Option<UnixMillis>,
}

impl User {
    /// What its access tokens state about it, read afresh at every login and refresh.
    pub fn subject(&self) -> Subject {
        Subject {
            email_verified: self.email_verified,
            roles: self.roles.clone(),
        }
    }
}

/// What an access token states about its user besides who it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub email_verified: bool,
    pub roles: Vec<String>,
}

/// An account with its password hash, as login needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: User,
    pub password_hash: String,
}

/// One login: the refresh tokens it issues belong to it, and it ends on logout,
/// revocation, theft detection or at `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
    pub refreshed_at: Option<UnixMillis>,
    pub revoked_at: Option<UnixMillis>,
    /// The client of the latest login or refresh.
    pub client: Actor,
}

impl Session {
    /// The latest login or refresh.
    pub fn last_used_at(&self) -> UnixMillis {
        self.refreshed_at.unwrap_or(self.created_at)
    }

    pub fn is_live_at(&self, now: UnixMillis) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// A stored refresh token (only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub id: Uuid,
    pub session_id: Uuid,
    pub token_hash: Vec<u8>,
    pub expires_at: UnixMillis,
    pub spent_at: Option<UnixMillis>,
    pub successor_id: Option<Uuid>,
    /// The successor sealed under this token, kept through the reuse grace window.
    pub sealed_successor: Option<Vec<u8>>,
}

/// A refresh token to insert: its id, hash and idle expiry.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub id: Uuid,
    pub hash: Vec<u8>,
    pub expires_at: UnixMillis,
}

/// A rotation that spent its token: the session, and when the successor expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub session: Session,
    pub successor_expires_at: UnixMillis,
    /// Read in the rotation, so the access token states it afresh.
    pub subject: Subject,
}

/// What a single-use account token proves, and the message that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    PasswordReset,
    EmailVerification,
}

impl MessageKind {
    /// The name stored, and the webhook body's `type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::EmailVerification => "email_verification",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Self::PasswordReset, Self::EmailVerification]
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// A message to queue with the token it carries: written to the outbox in the
/// transaction that stores the token's hash.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: Uuid,
    pub kind: MessageKind,
    pub user_id: Uuid,
    pub email: String,
    pub token_hash: Vec<u8>,
    /// The token sealed under the master key, bound to `id`.
    pub sealed_token: String,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
}

/// A queued message, claimed for one delivery attempt.
#[derive(Debug, Clone)]
pub struct PendingMessage {
    pub id: Uuid,
    pub kind: MessageKind,
    pub user_id: Uuid,
    pub email: String,
    pub sealed_token: Secret<String>,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
    /// Attempts made, this one included.
    pub attempts: u32,
}

/// Key material that `Debug` never prints.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(pub T);

impl<T> std::ops::Deref for Secret<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A signing key as stored: the public half, the private half sealed (or, in a
/// database from before sealing, in plain text) and its lifecycle times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    pub kid: String,
    /// Empty once sealed.
    pub private_key_pem: Secret<String>,
    pub public_key: String,
    pub sealed_private_key: Option<Secret<String>>,
    pub created_at: UnixMillis,
    pub activates_at: Option<UnixMillis>,
    pub retired_at: Option<UnixMillis>,
    pub revoked_at: Option<UnixMillis>,
}

/// Who did something, as the audit trail records it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The admin key that acted for the user; `None` when the user acted.
    pub name: Option<String>,
}

/// Every kind of security event the audit trail records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditEvent {
    Register,
    Login,
    LoginFailed,
    Refresh,
    ReuseDetected,
    Revoke,
    LogoutAll,
    KeyRotated,
    KeyRevoked,
    PasswordChanged,
    AccountDeleted,
    SessionRevoked,
    LogoutOthers,
    PasswordResetRequested,
    PasswordReset,
    EmailVerified,
    UserCreated,
    UserUpdated,
    WebhookRetried,
    ClientCreated,
    ClientDeleted,
}

impl AuditEvent {
    /// The name stored and printed; stable, as consumers of the trail match on it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Login => "login",
            Self::LoginFailed => "login_failed",
            Self::Refresh => "refresh",
            Self::ReuseDetected => "reuse_detected",
            Self::Revoke => "revoke",
            Self::LogoutAll => "logout_all",
            Self::KeyRotated => "key_rotated",
            Self::KeyRevoked => "key_revoked",
            Self::PasswordChanged => "password_changed",
            Self::AccountDeleted => "account_deleted",
            Self::SessionRevoked => "session_revoked",
            Self::LogoutOthers => "logout_others",
            Self::PasswordResetRequested => "password_reset_requested",
            Self::PasswordReset => "password_reset",
            Self::EmailVerified => "email_verified",
            Self::UserCreated => "user_created",
            Self::UserUpdated => "user_updated",
            Self::WebhookRetried => "webhook_retried",
            Self::ClientCreated => "client_created",
            Self::ClientDeleted => "client_deleted",
        }
    }
}

/// A security event to record, in the transaction of the change it describes.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub event: AuditEvent,
    pub actor: &'a Actor,
    pub user_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub detail: Option<String>,
    pub at: UnixMillis,
}

impl<'a> AuditEntry<'a> {
    pub fn new(event: AuditEvent, actor: &'a Actor, at: UnixMillis) -> Self {
        Self {
            event,
            actor,
            user_id: None,
            session_id: None,
            detail: None,
            at,
        }
    }

    pub fn user(mut self, user_id: impl Into<Option<Uuid>>) -> Self {
        self.user_id = user_id.into();
        self
    }

    pub fn session(mut self, session_id: Uuid) -> Self {
        self.session_id = Some(session_id);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// A recorded event as read back. `event` stays text: a trail written by a newer
/// version may hold events this one does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: Uuid,
    pub at: UnixMillis,
    pub event: String,
    pub user_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
    pub actor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_convert_to_seconds_and_rfc3339() {
        let at = UnixMillis::from_millis(1_700_000_000_250);
        assert_eq!(at.secs(), 1_700_000_000);
        assert_eq!(at.rfc3339(), "2023-11-14T22:13:20.25Z");
        assert_eq!(at.plus_secs(2).millis(), 1_700_000_002_250);
        assert_eq!(at.secs_until(at.plus_secs(90)), 90);
        assert_eq!(at.plus_secs(90).secs_until(at), 0);
        assert_eq!(
            UnixMillis::from_millis(i64::MAX)
                .plus_secs(u64::MAX)
                .millis(),
            i64::MAX
        );
    }
}
