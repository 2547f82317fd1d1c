//! Event webhooks: a background worker that claims due deliveries from the event outbox
//! and posts each to its subscriber, signed per Standard Webhooks with the subscriber's
//! secret, at least once. A failed attempt is retried with exponential backoff and
//! jitter (about 5 s, doubling, at most [`MAX_RETRY_DELAY`] apart) until the delivery
//! has been tried for [`RETRY_PERIOD`]; then it is marked failed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::channel::sign_webhook;
use super::{ATTEMPT_TIMEOUT, LEASE, POLL_INTERVAL, next_attempt};
use crate::domain::UnixMillis;
use crate::domain::events::{AttemptOutcome, Event, PendingDelivery, Subscriber};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// Deliveries claimed (and sent concurrently) per round.
const BATCH: u32 = 128;
/// A delivery is retried for at least this long, then marked failed.
pub const RETRY_PERIOD: Duration = Duration::from_secs(24 * 3600);
/// Retries never wait longer than this between them, so that a subscriber back up
/// after hours gets its events within this time.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(6 * 3600);

/// The background worker; see the module documentation.
pub struct EventDeliverer {
    store: Store,
    /// Subscribers by URL, the name their deliveries carry.
    subscribers: HashMap<String, Subscriber>,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    written: Arc<Notify>,
}

impl EventDeliverer {
    pub fn new(
        store: Store,
        subscribers: Vec<Subscriber>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            written: store.events_written_signal(),
            store,
            subscribers: subscribers
                .into_iter()
                .map(|subscriber| (subscriber.url.clone(), subscriber))
                .collect(),
            client,
            metrics,
        })
    }

    /// Delivers due events until `stop` turns true; a round under way is finished first,
    /// so no delivery is left claimed by a stopped instance.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        while !*stop.borrow() {
            loop {
                match Arc::clone(&this).deliver_due().await {
                    Ok(claimed) if claimed == BATCH as usize => continue,
                    Ok(_) => break,
                    Err(err) => {
                        tracing::warn!(error = %err, "claiming due event deliveries failed");
                        break;
                    }
                }
            }
            match this.store.outbox_pending().await {
                Ok(pending) => this.metrics.set_outbox_pending(pending),
                Err(err) => tracing::warn!(error = %err, "counting pending deliveries failed"),
            }
            tokio::select! {
                () = this.written.notified() => {}
                () = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// One round: claims due deliveries, attempts each concurrently, then records the
    /// outcomes. Returns how many were claimed.
    async fn deliver_due(self: Arc<Self>) -> Result<usize, StoreError> {
        let now = UnixMillis::now();
        let claimed = self
            .store
            .claim_due_deliveries(now, now.plus_secs(LEASE.as_secs()), BATCH)
            .await?;
        let count = claimed.len();
        let mut attempts = tokio::task::JoinSet::new();
        for delivery in claimed {
            let this = Arc::clone(&self);
            attempts.spawn(async move {
                let answer = this.attempt(&delivery).await;
                (delivery, answer)
            });
        }
        let mut outcomes = Vec::with_capacity(count);
        while let Some(joined) = attempts.join_next().await {
            let Ok((delivery, answer)) = joined else {
                continue;
            };
            let outcome = match &answer {
                Ok(status) if (200..300).contains(status) => AttemptOutcome::Delivered,
                _ => self.after_failure(&delivery, UnixMillis::now()),
            };
            let status = answer.as_ref().ok().copied();
            let label = match outcome {
                AttemptOutcome::Delivered => "delivered",
                AttemptOutcome::Retry(_) => "retrying",
                AttemptOutcome::Failed => "failed",
            };
            self.metrics.webhook_delivery(label);
            if outcome != AttemptOutcome::Delivered {
                let reason = match &answer {
                    Ok(status) => format!("answered {status}"),
                    Err(reason) => reason.clone(),
                };
                tracing::warn!(id = %delivery.id, event = %delivery.event_type,
                    attempts = delivery.attempts, outcome = label, reason,
                    "event delivery failed");
            }
            outcomes.push((delivery.id, status, outcome));
        }
        self.store
            .record_attempts(&outcomes, UnixMillis::now())
            .await?;
        Ok(count)
    }

    /// Retried while the retry period lasts, failed after.
    fn after_failure(&self, delivery: &PendingDelivery, now: UnixMillis) -> AttemptOutcome {
        let deadline = delivery.created_at.plus_secs(RETRY_PERIOD.as_secs());
        if now >= deadline || !self.subscribers.contains_key(&delivery.subscriber) {
            return AttemptOutcome::Failed;
        }
        let next = next_attempt(now, delivery.attempts);
        let latest = now.plus_secs(MAX_RETRY_DELAY.as_secs());
        AttemptOutcome::Retry(next.min(latest))
    }

    /// Posts the delivery; the HTTP status, or why there was none.
    async fn attempt(&self, delivery: &PendingDelivery) -> Result<u16, String> {
        let Some(subscriber) = self.subscribers.get(&delivery.subscriber) else {
            return Err("the subscriber is no longer configured".into());
        };
        let id = Event::webhook_id(delivery.event_id);
        let timestamp = UnixMillis::now().secs().to_string();
        let signature = sign_webhook(&subscriber.secret, &id, &timestamp, &delivery.body);
        let sent = self
            .client
            .post(&subscriber.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", &timestamp)
            .header("webhook-signature", signature)
            .body(delivery.body.clone())
            .send();
        match tokio::time::timeout(ATTEMPT_TIMEOUT, sent).await {
            Ok(Ok(response)) => Ok(response.status().as_u16()),
            Ok(Err(err)) => Err(err.without_url().to_string()),
            Err(_) => Err(format!(
                "no answer within {} seconds",
                ATTEMPT_TIMEOUT.as_secs()
            )),
        }
    }
}
