//! The use cases: register, login, refresh, revoke, logout-all and Bearer
//! authentication. Knows nothing of HTTP.

pub mod keys;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use authgate_verify::{AccessClaims, Audience, Verifier, VerifyError};
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use uuid::Uuid;

use crate::crypto::password::{PasswordError, PasswordHasher, Verified};
use crate::crypto::refresh;
use crate::crypto::signing::KeyError;
use crate::metrics::{Metrics, RefreshOutcome};
use crate::store::{
    Actor, Audit, NewRefreshToken, RefreshTokenRow, Rotation, SessionRow, Store, StoreError,
    UserRow,
};
use crate::throttle::{RetryAfter, Throttle};
use keys::KeyRing;

pub const EMAIL_MAX_CHARS: usize = 254;
pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("invalid email: {0}")]
    InvalidEmail(&'static str),
    #[error("invalid password: {0}")]
    InvalidPassword(&'static str),
    #[error("email is already registered")]
    EmailTaken,
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("refresh token is unknown, expired, spent or revoked")]
    InvalidRefreshToken,
    #[error("access token rejected: {0}")]
    InvalidAccessToken(#[from] VerifyError),
    #[error("the session of this access token has ended")]
    SessionEnded,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Password(PasswordError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("too many failed logins for this account from this address")]
    Throttled(RetryAfter),
    #[error("the server is busy hashing passwords; retry shortly")]
    Overloaded,
}

impl DomainError {
    /// Seconds to put in `Retry-After`, for errors that have one.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Throttled(retry) => Some(retry.secs()),
            Self::Overloaded => Some(1),
            _ => None,
        }
    }
}

impl From<PasswordError> for DomainError {
    fn from(err: PasswordError) -> Self {
        match err {
            PasswordError::Overloaded => Self::Overloaded,
            other => Self::Password(other),
        }
    }
}

pub type Result<T, E = DomainError> = std::result::Result<T, E>;

/// Who is calling: the client address (for throttling and the audit trail) and its
/// user agent (for the audit trail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    pub user_agent: Option<String>,
}

impl Client {
    fn actor(&self) -> Actor {
        Actor {
            client_ip: Some(self.ip.to_string()),
            user_agent: self.user_agent.clone(),
        }
    }
}

fn audit<'a>(
    event: &'static str,
    actor: &'a Actor,
    user_id: Option<Uuid>,
    session_id: Option<Uuid>,
    at: i64,
) -> Audit<'a> {
    Audit {
        event,
        actor,
        user_id,
        session_id,
        detail: None,
        at,
    }
}

/// Token lifetimes and identities, from the configuration.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    pub session_ttl_secs: u64,
    pub reuse_grace_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            email: row.email,
            created_at: row.created_at,
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct TokenPair {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
}

/// A Bearer token that verified and whose session is live.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub claims: AccessClaims,
}

pub struct AuthService {
    store: Store,
    hasher: PasswordHasher,
    keys: Arc<KeyRing>,
    verifier: Arc<Verifier>,
    throttle: Arc<Throttle>,
    metrics: Arc<Metrics>,
    policy: TokenPolicy,
}

impl AuthService {
    pub fn new(
        store: Store,
        hasher: PasswordHasher,
        keys: Arc<KeyRing>,
        verifier: Arc<Verifier>,
        throttle: Arc<Throttle>,
        metrics: Arc<Metrics>,
        policy: TokenPolicy,
    ) -> Self {
        Self {
            store,
            hasher,
            keys,
            verifier,
            throttle,
            metrics,
            policy,
        }
    }

    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    pub async fn register(&self, email: &str, password: String, client: &Client) -> Result<User> {
        let email = normalize_email(email);
        validate_email(&email)?;
        let password = normalize_password(&password);
        validate_password(&password)?;
        let password_hash = self.hasher.hash(password).await?;
        let user = UserRow {
            id: Uuid::new_v4(),
            email,
            password_hash,
            created_at: now_ms(),
        };
        let actor = client.actor();
        let audit = audit("register", &actor, Some(user.id), None, user.created_at);
        match self.store.insert_user(user.clone(), &audit).await {
            Ok(()) => Ok(user.into()),
            Err(StoreError::Duplicate) => Err(DomainError::EmailTaken),
            Err(err) => Err(err.into()),
        }
    }

    /// Unknown accounts and wrong passwords take the same path: one argon2 verification
    /// (against a dummy hash for the former) and the same error.
    /// A throttled (account, address) is refused before any hashing.
    pub async fn login(&self, email: &str, password: String, client: &Client) -> Result<TokenPair> {
        let result = self.login_unmetered(email, password, client).await;
        self.metrics.login(match &result {
            Ok(_) => "ok",
            Err(DomainError::InvalidCredentials) => "invalid_credentials",
            Err(DomainError::Throttled(_)) => "throttled",
            Err(DomainError::Overloaded) => "overloaded",
            Err(_) => "error",
        });
        result
    }

    async fn login_unmetered(
        &self,
        email: &str,
        password: String,
        client: &Client,
    ) -> Result<TokenPair> {
        let email = normalize_email(email);
        let actor = client.actor();
        // The check is reserved before any hashing, so concurrent guesses cannot all slip
        // past the limit while the first ones are still being hashed.
        let reserved = match self.throttle.reserve_login_attempt(&email, client.ip).await {
            Ok(Ok(())) => true,
            Ok(Err(retry)) => return Err(DomainError::Throttled(retry)),
            // Availability over strictness: the per-IP rate limit still applies.
            Err(err) => {
                tracing::error!(error = %err, "login throttle unavailable; not enforced");
                false
            }
        };
        let checked = self.check_password(&email, &password).await;
        let password = normalize_password(&password);
        let (user, verified) = match checked {
            Ok(checked) => checked,
            Err(err) => {
                if reserved
                    && let Err(err) = self.throttle.release_login_attempt(&email, client.ip).await
                {
                    tracing::error!(error = %err, "cannot release a login attempt");
                }
                return Err(err);
            }
        };
        let user = match (user, verified) {
            (Some(user), Verified::Correct | Verified::CorrectNeedsRehash) => user,
            (user, _) => {
                let mut failed = audit("login_failed", &actor, user.map(|u| u.id), None, now_ms());
                failed.detail = failed
                    .user_id
                    .is_none()
                    .then(|| "unknown account".to_owned());
                self.store.record(&failed).await?;
                return Err(DomainError::InvalidCredentials);
            }
        };
        if let Err(err) = self.throttle.clear_login_failures(&email, client.ip).await {
            tracing::error!(error = %err, "cannot clear failed logins");
        }
        let upgraded_hash = match verified {
            Verified::CorrectNeedsRehash => Some(self.hasher.hash(password).await?),
            _ => None,
        };

        let now = now_ms();
        let session = SessionRow {
            id: Uuid::new_v4(),
            user_id: user.id,
            created_at: now,
            expires_at: now.saturating_add(secs_to_ms(self.policy.session_ttl_secs)),
            refreshed_at: None,
            revoked_at: None,
        };
        let (refresh_token, hash) = refresh::generate();
        let new_token = self.new_refresh_token(hash, &session, now);
        let refresh_expires_at = new_token.expires_at;
        let started = audit("login", &actor, Some(user.id), Some(session.id), now);
        self.store
            .start_session(session.clone(), new_token, upgraded_hash, &started)
            .await?;
        self.token_pair(&session, refresh_token, refresh_expires_at, now)
    }

    /// The account of `email` and whether `password` (NFKC-normalized here) is its
    /// password. An email that could never have registered is not looked up (PostgreSQL
    /// refuses NUL bytes, for one), but still costs one hash, like an unknown account.
    async fn check_password(
        &self,
        email: &str,
        password: &str,
    ) -> Result<(Option<UserRow>, Verified)> {
        let user = match validate_email(email) {
            Ok(()) => self.store.find_user_by_email(email).await?,
            Err(_) => None,
        };
        let stored_hash = user.as_ref().map(|user| user.password_hash.clone());
        let normalized = normalize_password(password);
        let verified = self
            .hasher
            .verify(normalized.clone(), stored_hash.clone())
            .await?;
        // A hash made before passwords were normalized holds the password as it was
        // typed; the next login stores the normalized one. Unknown accounts take the
        // second hash too, so the timing tells nothing.
        if verified == Verified::Wrong && normalized != password {
            let legacy = self.hasher.verify(password.to_owned(), stored_hash).await?;
            if legacy != Verified::Wrong {
                return Ok((user, Verified::CorrectNeedsRehash));
            }
        }
        Ok((user, verified))
    }

    /// Rotates a refresh token; see CONTRACT.md "Sessions and refresh rotation".
    pub async fn refresh(&self, presented: &str, client: &Client) -> Result<TokenPair> {
        let hash = refresh::hash(presented);
        let actor = client.actor();
        let now = now_ms();
        let (successor, successor_hash) = refresh::generate();
        // The successor is kept (sealed) only when a grace window can return it.
        let sealed_successor =
            (self.policy.reuse_grace_secs > 0).then(|| refresh::seal(presented, &successor));
        let rotation = Rotation {
            presented_hash: &hash,
            successor_id: Uuid::new_v4(),
            successor_hash: &successor_hash,
            successor_ttl_ms: secs_to_ms(self.policy.refresh_ttl_secs),
            sealed_successor,
            actor: &actor,
            at: now,
        };
        // The common case first, in one round trip: an unspent token of a live session.
        if let Some((session, expires_at)) = self.store.rotate(&rotation).await? {
            self.metrics.refresh(RefreshOutcome::Rotated);
            return self.token_pair(&session, successor, expires_at, now);
        }

        // Nothing was spent: find out why.
        let reject = || {
            self.metrics.refresh(RefreshOutcome::Rejected);
            DomainError::InvalidRefreshToken
        };
        let (row, session) = self
            .store
            .find_refresh_token(&hash)
            .await?
            .ok_or_else(reject)?;
        if row.spent_at.is_none() || session.revoked_at.is_some() || session.expires_at <= now {
            // Unspent yet not rotated: the token or its session has expired or ended.
            return Err(reject());
        }
        if let Some((successor, expires_at)) = self.successor_in_grace(presented, &row, now).await?
        {
            // Re-checked as one write, so a revoke that has committed is never outrun.
            if !self.store.touch_live_session(session.id, now).await? {
                return Err(reject());
            }
            self.metrics.refresh(RefreshOutcome::SpentInGrace);
            return self.token_pair(&session, successor, expires_at, now);
        }
        // Reuse outside the grace window: assume theft and end the whole session.
        self.metrics.refresh(RefreshOutcome::ReuseDetected);
        let theft = audit(
            "reuse_detected",
            &actor,
            Some(session.user_id),
            Some(session.id),
            now,
        );
        if self.store.revoke_session(session.id, &theft).await? {
            self.metrics.revoked("reuse_detected", 1);
            tracing::warn!(session_id = %session.id, user_id = %session.user_id,
                "refresh token reuse detected; session revoked");
        }
        Err(DomainError::InvalidRefreshToken)
    }

    /// The successor of a spent token, if the token was spent within the grace window
    /// and its successor is still unspent.
    async fn successor_in_grace(
        &self,
        presented: &str,
        row: &RefreshTokenRow,
        now: i64,
    ) -> Result<Option<(String, i64)>> {
        let grace_ms = secs_to_ms(self.policy.reuse_grace_secs);
        let (Some(spent_at), Some(successor_id), Some(sealed)) = (
            row.spent_at,
            row.successor_id,
            row.sealed_successor.as_deref(),
        ) else {
            return Ok(None);
        };
        if grace_ms == 0 || now > spent_at.saturating_add(grace_ms) {
            return Ok(None);
        }
        let Some(successor_row) = self.store.find_refresh_token_by_id(successor_id).await? else {
            return Ok(None);
        };
        if successor_row.spent_at.is_some() || successor_row.expires_at <= now {
            return Ok(None);
        }
        Ok(refresh::open(presented, sealed)
            .filter(|successor| refresh::hash(successor)[..] == successor_row.token_hash[..])
            .map(|successor| (successor, successor_row.expires_at)))
    }

    /// Ends the session of a refresh token, spent or not. Unknown tokens are ignored
    /// (RFC 7009).
    pub async fn revoke(&self, presented: &str, client: &Client) -> Result<()> {
        let found = self
            .store
            .find_refresh_token(&refresh::hash(presented))
            .await?;
        let actor = client.actor();
        if let Some((_, session)) = found
            && self
                .store
                .revoke_session(
                    session.id,
                    &audit(
                        "revoke",
                        &actor,
                        Some(session.user_id),
                        Some(session.id),
                        now_ms(),
                    ),
                )
                .await?
        {
            self.metrics.revoked("revoke", 1);
        }
        Ok(())
    }

    pub async fn logout_all(&self, user_id: Uuid, client: &Client) -> Result<()> {
        let actor = client.actor();
        let ended = self
            .store
            .revoke_user_sessions(
                user_id,
                &audit("logout_all", &actor, Some(user_id), None, now_ms()),
            )
            .await?;
        self.metrics.revoked("logout_all", ended);
        Ok(())
    }

    /// Verifies an access token and checks that its session is still live.
    pub async fn authenticate(&self, bearer: &str) -> Result<Authenticated> {
        let claims = self.verifier.verify_cached(bearer)?;
        let user = self
            .store
            .live_session_user(claims.sid, claims.sub, now_ms())
            .await?
            .ok_or(DomainError::SessionEnded)?;
        Ok(Authenticated {
            user: user.into(),
            claims,
        })
    }

    fn new_refresh_token(
        &self,
        hash: refresh::TokenHash,
        session: &SessionRow,
        now: i64,
    ) -> NewRefreshToken {
        NewRefreshToken {
            id: Uuid::new_v4(),
            hash: hash.to_vec(),
            expires_at: now
                .saturating_add(secs_to_ms(self.policy.refresh_ttl_secs))
                .min(session.expires_at),
        }
    }

    fn token_pair(
        &self,
        session: &SessionRow,
        refresh_token: String,
        refresh_expires_at: i64,
        now: i64,
    ) -> Result<TokenPair> {
        let now_secs = now / 1000;
        let exp = (now_secs + self.policy.access_ttl_secs as i64).min(session.expires_at / 1000);
        let claims = AccessClaims {
            iss: self.policy.issuer.clone(),
            sub: session.user_id,
            aud: Audience::One(self.policy.audience.clone()),
            exp,
            iat: now_secs,
            nbf: now_secs,
            jti: Uuid::new_v4(),
            sid: session.id,
            scope: None,
        };
        let access_token = self.keys.signer()?.sign_access_token(&claims)?;
        Ok(TokenPair {
            access_token,
            expires_in: (exp - now_secs).max(0) as u64,
            refresh_token,
            refresh_expires_in: ((refresh_expires_at - now) / 1000).max(0) as u64,
        })
    }
}

/// Rows deleted per statement by [`cleanup`]: small enough not to hold locks long.
pub const CLEANUP_BATCH: u64 = 1000;

/// Deletes ended sessions, idle-expired refresh tokens and audit events older than
/// `audit_retention_days` (0: none) in bounded batches, until none are left (or a
/// bounded number of batches ran). Returns the rows deleted.
pub async fn cleanup(store: &Store, audit_retention_days: u64) -> Result<u64, StoreError> {
    let mut total = 0;
    for _ in 0..1000 {
        let deleted = store.delete_expired(now_ms(), CLEANUP_BATCH).await?;
        total += deleted;
        if deleted < CLEANUP_BATCH {
            break;
        }
    }
    if audit_retention_days > 0 {
        let cutoff = now_ms().saturating_sub(secs_to_ms(audit_retention_days * 86_400));
        for _ in 0..1000 {
            let deleted = store.delete_audit_before(cutoff, CLEANUP_BATCH).await?;
            total += deleted;
            if deleted < CLEANUP_BATCH {
                break;
            }
        }
    }
    Ok(total)
}

/// The audit trail for `authgate audit`: one event per line, tab-separated with every
/// control character of the stored text escaped, or as JSON lines.
pub async fn audit_trail(
    store: &Store,
    email: Option<&str>,
    since: Option<i64>,
    limit: u64,
    json: bool,
) -> Result<String, StoreError> {
    let user_id = match email {
        Some(email) => match store.find_user_by_email(&normalize_email(email)).await? {
            Some(user) => Some(user.id),
            None => return Ok(String::new()),
        },
        None => None,
    };
    let mut out = String::new();
    for event in store.audit_events(user_id, since, limit).await? {
        let at = rfc3339(event.at);
        let ids = [event.user_id, event.session_id].map(|id| id.map(|id| id.to_string()));
        let [user_id, session_id] = ids;
        if json {
            let line = serde_json::json!({
                "at": at,
                "event": event.event,
                "user_id": user_id,
                "session_id": session_id,
                "client_ip": event.client_ip,
                "user_agent": event.user_agent,
                "detail": event.detail,
            });
            out.push_str(&line.to_string());
            out.push('\n');
            continue;
        }
        let fields = [
            Some(at),
            Some(event.event),
            user_id,
            session_id,
            event.client_ip,
            event.user_agent,
            event.detail,
        ];
        let fields: Vec<String> = fields
            .iter()
            .map(|field| {
                field
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), escape_control)
            })
            .collect();
        out.push_str(&fields.join("\t"));
        out.push('\n');
    }
    Ok(out)
}

/// Stored text as one field of one line: control characters (a tab or newline a client
/// put in its user agent, a terminal escape) and backslashes escaped.
fn escape_control(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\t' => escaped.push_str("\\t"),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            c if c.is_control() => escaped.push_str(&c.escape_unicode().to_string()),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Emails are trimmed, lower-cased and NFC-normalized before they are stored or
/// compared, so one address typed on two keyboards is one account.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase().nfc().collect()
}

/// Passwords are NFKC-normalized before hashing and verifying: the same characters
/// typed as precomposed or combining sequences, or as compatibility forms, are one
/// password (NIST SP 800-63B §5.1.1.2).
pub fn normalize_password(password: &str) -> String {
    password.nfkc().collect()
}

fn validate_email(email: &str) -> Result<()> {
    let invalid = DomainError::InvalidEmail;
    if email.chars().count() > EMAIL_MAX_CHARS {
        return Err(invalid("longer than 254 characters"));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains whitespace or control characters"));
    }
    // Invisible characters (U+200B and the like) would let two accounts look alike.
    if email
        .chars()
        .any(|c| c.general_category() == GeneralCategory::Format)
    {
        return Err(invalid("contains invisible format characters"));
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(invalid("missing @"));
    };
    if local.is_empty() || local.chars().count() > 64 || local.contains('@') {
        return Err(invalid(
            "the part before @ must be 1 to 64 characters, without @",
        ));
    }
    let labels_ok = domain.split('.').count() >= 2
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
    if !labels_ok {
        return Err(invalid("the domain must be a dotted name like example.com"));
    }
    Ok(())
}

fn validate_password(password: &str) -> Result<()> {
    let chars = password.chars().count();
    if chars < PASSWORD_MIN_CHARS {
        return Err(DomainError::InvalidPassword("shorter than 8 characters"));
    }
    if chars > PASSWORD_MAX_CHARS {
        return Err(DomainError::InvalidPassword("longer than 1024 characters"));
    }
    Ok(())
}

/// Unix milliseconds as RFC 3339 (UTC).
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn secs_to_ms(secs: u64) -> i64 {
    (secs as i64).saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(normalize_email("  Ann@Example.COM \n"), "ann@example.com");
    }

    #[test]
    fn malformed_emails_are_invalid() {
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@",
            "ann@example",
            "a b@example.com",
            "ann@exa..mple.com",
        ] {
            assert!(validate_email(bad).is_err(), "{bad:?} passed");
        }
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(186));
        assert_eq!(long.len(), 255);
        assert!(validate_email(&long).is_err());
        assert!(validate_email("ann.lee+tag@mail.example.com").is_ok());
    }

    #[test]
    fn emails_are_nfc_and_invisible_characters_are_invalid() {
        assert_eq!(
            normalize_email("Jose\u{301}@example.com"),
            "jos\u{e9}@example.com"
        );
        assert!(validate_email("ann\u{200b}@example.com").is_err());
        assert!(validate_email("ann@exam\u{feff}ple.com").is_err());
        assert!(validate_email("jos\u{e9}@example.com").is_ok());
    }

    #[test]
    fn audit_fields_escape_control_characters() {
        assert_eq!(
            escape_control("curl\t1\nevil\u{1b}[2J\\"),
            "curl\\t1\\nevil\\u{1b}[2J\\\\"
        );
    }

    #[test]
    fn passwords_are_nfkc() {
        assert_eq!(
            normalize_password("cafe\u{301} \u{FB01}ne"),
            "caf\u{e9} fine"
        );
    }

    #[test]
    fn password_length_counts_unicode_characters() {
        assert!(validate_password("ééééééé").is_err()); // 7 characters, 14 bytes
        assert!(validate_password("éééééééé").is_ok());
        assert!(validate_password(&"x".repeat(1024)).is_ok());
        assert!(validate_password(&"x".repeat(1025)).is_err());
    }
}
