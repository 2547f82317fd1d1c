//! Proving an email address: forgot / reset password and email verification. Each sends
//! a single-use token (256 random bits, stored as its SHA-256) through the outbox,
//! written in the transaction that stores the token.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;

use tokio::sync::{Notify, mpsc, watch};
use uuid::Uuid;

use super::accounts::{normalize_email, normalize_password, validate_email, validate_password};
use super::types::{AuditEntry, AuditEvent, MessageKind, NewMessage, UnixMillis, User};
use super::{Actor, AuthService, Authenticated, Client, Fault};
use crate::crypto::master::MasterKeys;
use crate::crypto::refresh;
use crate::store::{LiveAccountToken, MESSAGE_INTERVAL_SECS};

/// Forgot-password requests waiting to be looked up, at most this many.
pub const FORGOT_QUEUE: usize = 1024;
/// Addresses whose forgot-password request was answered in the last minute, remembered
/// (least recently asked first out) up to this many.
const RECENT_FORGOT_ADDRESSES: NonZeroUsize = NonZeroUsize::new(65_536).unwrap();

/// How messages are made, when a delivery channel is configured.
#[derive(Clone)]
pub struct Messaging {
    pub master: MasterKeys,
    pub reset_ttl_secs: u64,
    pub verification_ttl_secs: u64,
    /// Wakes the deliverer when a message is queued here.
    pub queued: Arc<Notify>,
    /// Forgot-password requests, looked up and answered off the request path.
    pub forgot: mpsc::Sender<(String, Actor)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ForgotPasswordError {
    #[error("invalid email: {0}")]
    InvalidEmail(&'static str),
    #[error("no delivery channel is configured")]
    DeliveryNotConfigured,
    #[error("too many password reset requests are waiting; retry shortly")]
    Busy,
}

#[derive(Debug, thiserror::Error)]
pub enum ResetPasswordError {
    #[error("the reset token is unknown, expired or used")]
    InvalidToken,
    #[error("invalid new password: {0}")]
    InvalidPassword(&'static str),
    #[error("the server is busy hashing passwords; retry shortly")]
    Overloaded,
    #[error(transparent)]
    Fault(Fault),
}

#[derive(Debug, thiserror::Error)]
pub enum RequestVerificationError {
    #[error("no delivery channel is configured")]
    DeliveryNotConfigured,
    #[error(transparent)]
    Fault(Fault),
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyEmailError {
    #[error("the verification token is unknown, expired or used")]
    InvalidToken,
    #[error(transparent)]
    Fault(Fault),
}

faults_convert!(
    ResetPasswordError,
    RequestVerificationError,
    VerifyEmailError
);
hashing_converts!(ResetPasswordError);

impl AuthService {
    /// Accepts a forgot-password request. The answer is the same whatever the account:
    /// the lookup and the queueing happen later, off the request path, so neither the
    /// response nor its timing tells whether the email is registered.
    pub fn forgot_password(&self, email: &str, client: &Client) -> Result<(), ForgotPasswordError> {
        let messaging = self
            .messaging
            .as_ref()
            .ok_or(ForgotPasswordError::DeliveryNotConfigured)?;
        let email = normalize_email(email);
        validate_email(&email).map_err(ForgotPasswordError::InvalidEmail)?;
        messaging
            .forgot
            .try_send((email, client.actor()))
            .map_err(|_| ForgotPasswordError::Busy)
    }

    /// Answers accepted forgot-password requests, one at a time. When `stop` turns true,
    /// takes no more and answers those already accepted, then returns.
    /// An address asked for in the last minute is skipped without a lookup: the store
    /// would queue nothing for it anyway, and a flood of one address costs nothing.
    pub async fn answer_forgot_requests(
        self: Arc<Self>,
        mut requests: mpsc::Receiver<(String, Actor)>,
        mut stop: watch::Receiver<bool>,
    ) {
        let interval = Duration::from_secs(MESSAGE_INTERVAL_SECS);
        let mut recent = LruCache::new(RECENT_FORGOT_ADDRESSES);
        loop {
            let request = tokio::select! {
                request = requests.recv() => request,
                _ = stop.changed() => {
                    requests.close();
                    continue;
                }
            };
            let Some((email, actor)) = request else {
                return;
            };
            let now = Instant::now();
            if recent
                .get(&email)
                .is_some_and(|asked: &Instant| now.duration_since(*asked) < interval)
            {
                continue;
            }
            let result = self.queue_password_reset(&email, &actor).await;
            // A failed lookup does not count: the user's next request tries again.
            if result.is_ok() {
                recent.put(email, now);
            }
            if let Err(err) = result {
                tracing::error!(error = %err, "queueing a password reset failed");
            }
        }
    }

    async fn queue_password_reset(&self, email: &str, actor: &Actor) -> Result<(), Fault> {
        let Some(account) = self.store.find_account_by_email(email).await? else {
            return Ok(());
        };
        let now = UnixMillis::now();
        let requested =
            AuditEntry::new(AuditEvent::PasswordResetRequested, actor, now).user(account.user.id);
        let Some(message) = self.new_message(MessageKind::PasswordReset, &account.user, now) else {
            return Ok(());
        };
        if self.store.queue_message(&message, Some(&requested)).await? {
            self.message_queued(MessageKind::PasswordReset);
        }
        Ok(())
    }

    /// Sets a new password with a reset token: ends every session of the user, spends
    /// every outstanding reset token and marks the email verified. A new password that
    /// breaks the rules leaves the token usable.
    pub async fn reset_password(
        &self,
        token: &str,
        new_password: &str,
        client: &Client,
    ) -> Result<(), ResetPasswordError> {
        let now = UnixMillis::now();
        let token = self
            .live_token(MessageKind::PasswordReset, token, now)
            .await?
            .ok_or(ResetPasswordError::InvalidToken)?;
        let new_password = normalize_password(new_password);
        validate_password(&new_password).map_err(ResetPasswordError::InvalidPassword)?;
        let new_hash = self.hasher.hash(new_password).await?;
        let actor = client.actor();
        let reset = AuditEntry::new(AuditEvent::PasswordReset, &actor, UnixMillis::now())
            .user(token.user_id);
        let ended = self
            .store
            .reset_password(&token, &new_hash, &reset)
            .await?
            .ok_or(ResetPasswordError::InvalidToken)?;
        self.metrics.revoked("password_reset", ended);
        Ok(())
    }

    /// Queues a verification message to the caller's email, unless it is verified or
    /// one was queued in the last minute.
    pub async fn request_verification(
        &self,
        caller: &Authenticated,
    ) -> Result<(), RequestVerificationError> {
        if self.messaging.is_none() {
            return Err(RequestVerificationError::DeliveryNotConfigured);
        }
        if caller.user.email_verified {
            return Ok(());
        }
        let now = UnixMillis::now();
        if let Some(message) = self.new_message(MessageKind::EmailVerification, &caller.user, now)
            && self.store.queue_message(&message, None).await?
        {
            self.message_queued(MessageKind::EmailVerification);
        }
        Ok(())
    }

    /// Marks the email a verification token was sent to as verified.
    pub async fn verify_email(&self, token: &str, client: &Client) -> Result<(), VerifyEmailError> {
        let now = UnixMillis::now();
        let token = self
            .live_token(MessageKind::EmailVerification, token, now)
            .await?
            .ok_or(VerifyEmailError::InvalidToken)?;
        let actor = client.actor();
        let verified = AuditEntry::new(AuditEvent::EmailVerified, &actor, now).user(token.user_id);
        if !self.store.verify_email(&token, &verified).await? {
            return Err(VerifyEmailError::InvalidToken);
        }
        Ok(())
    }

    /// A new token of `kind` for `user`, sealed into its message; `None` without a
    /// delivery channel.
    pub(super) fn new_message(
        &self,
        kind: MessageKind,
        user: &User,
        now: UnixMillis,
    ) -> Option<NewMessage> {
        let messaging = self.messaging.as_ref()?;
        let ttl = match kind {
            MessageKind::PasswordReset => messaging.reset_ttl_secs,
            MessageKind::EmailVerification => messaging.verification_ttl_secs,
        };
        let (token, token_hash) = refresh::generate();
        let id = Uuid::new_v4();
        Some(NewMessage {
            id,
            kind,
            user_id: user.id,
            email: user.email.clone(),
            token_hash: token_hash.to_vec(),
            sealed_token: messaging.master.seal(token.as_bytes(), &id.to_string()),
            created_at: now,
            expires_at: now.plus_secs(ttl),
        })
    }

    pub(super) fn message_queued(&self, kind: MessageKind) {
        self.metrics.message(kind.as_str(), "queued");
        if let Some(messaging) = &self.messaging {
            messaging.queued.notify_one();
        }
    }

    /// The live token of `kind` that `presented` is, if any. Anything that is not a
    /// token's shape is simply not found.
    async fn live_token(
        &self,
        kind: MessageKind,
        presented: &str,
        now: UnixMillis,
    ) -> Result<Option<LiveAccountToken>, crate::store::StoreError> {
        if presented.len() != 43 {
            return Ok(None);
        }
        self.store
            .find_account_token(kind, &refresh::hash(presented), now)
            .await
    }
}
