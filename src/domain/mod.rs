//! The use cases, one file per family: [`accounts`] (register; email and password
//! rules), [`credentials`] (log in, change password, delete account), [`sessions`]
//! (refresh, revoke, logout, Bearer authentication), [`recovery`] (forgot / reset
//! password, email verification) and [`keys`] (the signing key ring).
//! Knows nothing of HTTP.

/// Each use case returns its own error enum, declared beside it and holding only what
/// can go wrong in it (plus `Fault`), so the HTTP layer's match over it is exhaustive
/// and checked by the compiler. Store and key failures convert into its `Fault`.
macro_rules! faults_convert {
    ($($error:ident),* $(,)?) => {$(
        impl From<$crate::store::StoreError> for $error {
            fn from(err: $crate::store::StoreError) -> Self {
                Self::Fault($crate::domain::Fault::Store(err))
            }
        }
        impl From<$crate::crypto::signing::KeyError> for $error {
            fn from(err: $crate::crypto::signing::KeyError) -> Self {
                Self::Fault($crate::domain::Fault::Key(err))
            }
        }
    )*};
}

/// Password hashing is shed under load (`Overloaded`); any other hashing failure is a
/// fault.
macro_rules! hashing_converts {
    ($($error:ident),* $(,)?) => {$(
        impl From<$crate::crypto::password::PasswordError> for $error {
            fn from(err: $crate::crypto::password::PasswordError) -> Self {
                match err {
                    $crate::crypto::password::PasswordError::Overloaded => Self::Overloaded,
                    other => Self::Fault($crate::domain::Fault::Password(other)),
                }
            }
        }
    )*};
}

/// The use cases that check a password take its failures as their own.
macro_rules! password_check_converts {
    ($($error:ident),* $(,)?) => {$(
        impl From<$crate::domain::credentials::PasswordCheckError> for $error {
            fn from(err: $crate::domain::credentials::PasswordCheckError) -> Self {
                use $crate::domain::credentials::PasswordCheckError as Check;
                match err {
                    Check::Throttled(retry) => Self::Throttled(retry),
                    Check::Overloaded => Self::Overloaded,
                    Check::Fault(fault) => Self::Fault(fault),
                }
            }
        }
    )*};
}

pub mod accounts;
pub mod admin;
pub mod admin_keys;
pub mod clients;
pub mod credentials;
pub mod events;
pub mod keys;
pub mod recovery;
pub mod revocations;
pub mod roles;
pub mod sessions;
pub mod types;

use std::net::IpAddr;
use std::sync::Arc;

use authgate_verify::{AccessClaims, Audience, Verifier};
use uuid::Uuid;

use crate::crypto::password::{PasswordError, PasswordHasher};
use crate::crypto::refresh;
use crate::crypto::signing::KeyError;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::throttle::Throttle;
use keys::KeyRing;

pub use accounts::{RegisterError, normalize_email, normalize_password};
pub use credentials::{ChangePasswordError, DeleteAccountError, LoginError};
pub use recovery::{
    ForgotPasswordError, Messaging, RequestVerificationError, ResetPasswordError, VerifyEmailError,
};
pub use sessions::{AuthenticateError, EndSessionError, RefreshError};
use types::NewRefreshToken;
pub use types::{Actor, Session, Subject, UnixMillis, User};

/// A failure of the server, not of the request: logged in full, answered with an
/// opaque 500.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Password(PasswordError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Who is calling: the client address (for throttling and the audit trail) and its
/// user agent (for the audit trail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    pub user_agent: Option<String>,
}

impl Client {
    pub(crate) fn actor(&self) -> Actor {
        Actor {
            client_ip: Some(self.ip.to_string()),
            user_agent: self.user_agent.clone(),
            name: None,
        }
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
    /// Lifetime of reset tokens (also those an admin hands out).
    pub reset_ttl_secs: u64,
    /// Lifetime of client-credentials access tokens.
    pub client_token_ttl_secs: u64,
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

/// The use cases and what they run on; built once at start-up.
pub struct AuthService {
    pub(crate) store: Store,
    pub(crate) hasher: PasswordHasher,
    pub(crate) keys: Arc<KeyRing>,
    pub(crate) verifier: Arc<Verifier>,
    pub(crate) throttle: Arc<Throttle>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) policy: TokenPolicy,
    /// `None` without a delivery channel: nothing can be sent.
    pub(crate) messaging: Option<Messaging>,
    /// Login with the right password is refused until the email is verified.
    pub(crate) require_verified_email: bool,
    pub(crate) roles: roles::RolePolicy,
}

impl AuthService {
    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }
    pub(crate) fn new_refresh_token(
        &self,
        hash: refresh::TokenHash,
        session: &Session,
        now: UnixMillis,
    ) -> NewRefreshToken {
        NewRefreshToken {
            id: Uuid::now_v7(),
            hash: hash.to_vec(),
            expires_at: now
                .plus_secs(self.policy.refresh_ttl_secs)
                .min(session.expires_at),
        }
    }

    pub(crate) fn token_pair(
        &self,
        session: &Session,
        subject: &Subject,
        refresh_token: String,
        refresh_expires_at: UnixMillis,
        now: UnixMillis,
    ) -> Result<TokenPair, KeyError> {
        let now_secs = now.secs();
        let exp = now
            .plus_secs(self.policy.access_ttl_secs)
            .min(session.expires_at)
            .secs();
        let claims = AccessClaims {
            iss: self.policy.issuer.clone(),
            sub: session.user_id,
            aud: Audience::One(self.policy.audience.clone()),
            exp,
            iat: now_secs,
            nbf: now_secs,
            jti: Uuid::new_v4(),
            sid: session.id,
            email_verified: subject.email_verified,
            scope: self.roles.scope_of(&subject.roles),
            roles: subject.roles.clone(),
        };
        let access_token = self.keys.signer()?.sign_access_token(&claims)?;
        Ok(TokenPair {
            access_token,
            expires_in: (exp - now_secs).max(0) as u64,
            refresh_token,
            refresh_expires_in: now.secs_until(refresh_expires_at),
        })
    }
}

/// How long a delivered or failed event delivery is kept after its last attempt.
pub const FINISHED_DELIVERY_RETENTION_SECS: u64 = 7 * 86_400;

/// Rows deleted per statement by [`cleanup`]: small enough not to hold locks long. On
/// SQLite every write waits for a batch to commit, and a batch's commit costs about the
/// pages it dirties (each ended session and its two refresh tokens touch some 14 index
/// pages): on 200,000 ended sessions, refreshes during cleanup took p50 89 / p99 120 ms
/// behind batches of 200, and 41 / 75 ms behind batches of 50 (`bench/cleanup.sh`).
pub const CLEANUP_BATCH: u64 = 50;
/// A bound on the batches of one cleanup run (2 million ended sessions), so that it ends
/// even if rows keep expiring as fast as it deletes them.
const CLEANUP_MAX_BATCHES: usize = 40_000;

/// Deletes sessions that ended longer than the revocation feed lists them (an access
/// token lifetime and a minute), expired sessions, idle-expired refresh tokens, event
/// deliveries finished a week ago and audit events older than `audit_retention_days` (0: none) in bounded batches, until none are
/// left (or a bounded number of batches ran). Returns the rows deleted.
pub async fn cleanup(
    store: &Store,
    access_ttl_secs: u64,
    audit_retention_days: u64,
) -> Result<u64, StoreError> {
    let mut total = 0;
    for _ in 0..CLEANUP_MAX_BATCHES {
        let now = UnixMillis::now();
        let ended_before = now.minus_secs(revocations::feed_window_secs(access_ttl_secs));
        let deleted = store
            .delete_expired(now, ended_before, CLEANUP_BATCH)
            .await?;
        total += deleted;
        if deleted < CLEANUP_BATCH {
            break;
        }
    }
    // Delivered and failed event deliveries stay a week for the admin API to show, and so
    // do pending ones of a removed subscriber after their retry period.
    let cutoff = UnixMillis::now().minus_secs(FINISHED_DELIVERY_RETENTION_SECS);
    let abandoned_before = cutoff.minus_secs(events::RETRY_PERIOD_SECS);
    for _ in 0..CLEANUP_MAX_BATCHES {
        let deleted = store
            .delete_finished_deliveries(cutoff, abandoned_before, CLEANUP_BATCH)
            .await?;
        total += deleted;
        if deleted < CLEANUP_BATCH {
            break;
        }
    }
    if audit_retention_days > 0 {
        let cutoff = UnixMillis::now().minus_secs(audit_retention_days.saturating_mul(86_400));
        for _ in 0..CLEANUP_MAX_BATCHES {
            let deleted = store.delete_audit_before(cutoff, CLEANUP_BATCH).await?;
            total += deleted;
            if deleted < CLEANUP_BATCH {
                break;
            }
        }
    }
    Ok(total)
}
