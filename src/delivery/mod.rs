//! Message delivery: a background worker that claims due messages from the outbox and
//! sends each through the configured [`Channel`], at least once. A failed attempt is
//! retried with exponential backoff and jitter until the message's token expires; a
//! message survives restarts because it lives in the database until delivered.

mod channel;
mod events;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use uuid::Uuid;

pub use channel::{Channel, ChannelError, Links};
pub use events::EventDeliverer;

use crate::crypto::master::MasterKeys;
use crate::domain::types::{PendingMessage, UnixMillis};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// Messages claimed (and sent concurrently) per round.
const BATCH: u32 = 64;
/// How often the outbox is looked at when nothing wakes the worker (messages queued by
/// another instance, retries coming due).
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// An attempt that has not answered by then has failed.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// A claimed message is left to its claimer this long (longer than an attempt), then
/// any instance may try it again: the claimer was stopped mid-attempt.
pub(crate) const LEASE: Duration = Duration::from_secs(15);
/// The first retry comes about this long after the first failure; each one doubles it.
const FIRST_RETRY_SECS: u64 = 5;

/// The background worker; see the module documentation.
pub struct Deliverer {
    pub store: Store,
    pub channel: Channel,
    pub master: MasterKeys,
    pub links: Links,
    pub metrics: Arc<Metrics>,
    /// Woken when this instance queues a message, so it goes out at once.
    pub queued: Arc<Notify>,
}

impl Deliverer {
    /// Delivers due messages until `stop` turns true; a round under way is finished
    /// first, so no message is left claimed by a stopped instance.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        while !*stop.borrow() {
            loop {
                match Arc::clone(&this).deliver_due().await {
                    Ok(claimed) if claimed == BATCH as usize => continue,
                    Ok(_) => break,
                    Err(err) => {
                        tracing::warn!(error = %err, "claiming due messages failed");
                        break;
                    }
                }
            }
            tokio::select! {
                () = this.queued.notified() => {}
                () = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// One round: claims due messages, attempts each concurrently, then records the
    /// outcomes. Returns how many were claimed.
    async fn deliver_due(self: Arc<Self>) -> Result<usize, StoreError> {
        let now = UnixMillis::now();
        let lease_until = now.plus_secs(LEASE.as_secs());
        let claimed = self
            .store
            .claim_due_messages(now, lease_until, BATCH)
            .await?;
        let count = claimed.len();
        let mut attempts = tokio::task::JoinSet::new();
        for message in claimed {
            let this = Arc::clone(&self);
            attempts.spawn(async move {
                let outcome = this.attempt(&message).await;
                (message, outcome)
            });
        }
        let (mut done, mut retries) = (Vec::new(), Vec::new());
        while let Some(joined) = attempts.join_next().await {
            let Ok((message, outcome)) = joined else {
                continue;
            };
            let kind = message.kind.as_str();
            match outcome {
                Ok(()) => {
                    self.metrics.message(kind, "delivered");
                    done.push(message.id);
                }
                Err(err) => {
                    let retry_at = next_attempt(UnixMillis::now(), message.attempts);
                    if retry_at >= message.expires_at {
                        tracing::warn!(id = %message.id, kind, attempts = message.attempts, error = %err,
                            "message not delivered before its token expired; dropped");
                        self.metrics.message(kind, "expired");
                        done.push(message.id);
                    } else {
                        tracing::warn!(id = %message.id, kind, attempts = message.attempts, error = %err,
                            "message delivery failed; will retry");
                        self.metrics.message(kind, "failed");
                        retries.push((message.id, retry_at));
                    }
                }
            }
        }
        self.store.remove_messages(&done).await?;
        self.store.retry_messages(&retries).await?;
        Ok(count)
    }

    async fn attempt(&self, message: &PendingMessage) -> Result<(), ChannelError> {
        let token = self
            .master
            .open(&message.sealed_token, &message.id.to_string())
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or(ChannelError::Sealed)?;
        let body = self.links.body(message, &token);
        match tokio::time::timeout(ATTEMPT_TIMEOUT, self.channel.send(message, &body)).await {
            Ok(sent) => sent,
            Err(_) => Err(ChannelError::Timeout),
        }
    }
}

/// When attempt `attempts + 1` is due after `attempts` failed: about 5 s after the first
/// failure, doubling each time, each delay spread by ±20 % so that messages that failed
/// together do not all retry together.
fn next_attempt(now: UnixMillis, attempts: u32) -> UnixMillis {
    let doublings = attempts.saturating_sub(1).min(20);
    let base_ms = FIRST_RETRY_SECS * 1000 * (1u64 << doublings);
    let [a, b] = crate::crypto::random_bytes::<2>();
    let jitter = f64::from(u16::from_le_bytes([a, b])) / f64::from(u16::MAX); // 0..=1
    let delay_ms = (base_ms as f64 * (0.8 + 0.4 * jitter)) as u64;
    UnixMillis::from_millis(now.millis().saturating_add(delay_ms as i64))
}

/// Ids that name a message to its receivers: the same on every attempt.
pub fn webhook_id(id: Uuid) -> String {
    format!("msg_{}", id.simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_start_near_five_seconds_and_double() {
        let now = UnixMillis::from_millis(1_000_000);
        for attempts in 1..=4u32 {
            let base = 5000 * (1i64 << (attempts - 1));
            for _ in 0..50 {
                let delay = next_attempt(now, attempts).millis() - now.millis();
                assert!(
                    (base * 8 / 10..=base * 12 / 10).contains(&delay),
                    "attempt {attempts}: {delay} ms"
                );
            }
        }
        assert!(next_attempt(now, u32::MAX).millis() > now.millis());
    }
}
