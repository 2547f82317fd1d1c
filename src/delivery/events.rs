//! Event webhooks: a background worker that claims due deliveries from the event outbox
//! and posts each to its subscriber, signed per Standard Webhooks with the subscriber's
//! secret, at least once. A failed attempt is retried with exponential backoff and
//! jitter (about 5 s, doubling, at most [`MAX_RETRY_DELAY`] apart) until the delivery
//! has been tried for a day ([`RETRY_PERIOD_SECS`]); then it is marked failed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, watch};
use uuid::Uuid;

use super::channel::sign_webhook;
use super::{ATTEMPT_TIMEOUT, LEASE, POLL_INTERVAL, next_attempt};
use crate::domain::UnixMillis;
use crate::domain::events::{
    AttemptOutcome, Event, PendingDelivery, RETRY_PERIOD_SECS, Subscriber,
};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// Deliveries claimed at most per query.
const BATCH: usize = 128;
/// Attempts under way at once.
const IN_FLIGHT: usize = 512;
/// Fewer free slots than this wait for more attempts to finish.
const MIN_CLAIM: usize = 64;
/// Events written on this instance are claimed this long after the first of them, and
/// outcomes recorded this long after the first: under load, one claim and one record
/// per many events instead of two extra writes per login (well within the 2 s the
/// first attempt is promised in).
const GATHER: Duration = Duration::from_millis(100);
/// Retries never wait longer than this between them, so that a subscriber back up
/// after hours gets its events within this time.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(6 * 3600);

/// The background worker; see the module documentation.
pub struct EventDeliverer {
    store: Store,
    /// Subscribers by URL, the name their deliveries carry.
    subscribers: HashMap<String, Subscriber>,
    /// Their URLs, the deliveries this instance claims.
    urls: Vec<String>,
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
            urls: subscribers.iter().map(|s| s.url.clone()).collect(),
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

    /// Delivers due events until `stop` turns true, then waits for the attempts under
    /// way and records them, so no delivery is left claimed by a stopped instance.
    /// Attempts run independently (up to 512 at once) and their outcomes are
    /// recorded in batches, so a subscriber that hangs for the full timeout holds up
    /// only its own deliveries.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let slot_freed = Arc::new(Notify::new());
        let (outcomes, recorded) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(record_outcomes(this.store.clone(), recorded));
        // The pending count is a gauge for dashboards: once a poll interval is enough.
        let mut last_counted: Option<std::time::Instant> = None;
        while !*stop.borrow() {
            loop {
                // Claims of a useful size: a claim is a write, not one per finished attempt.
                let free = slots.available_permits().min(BATCH);
                if free < MIN_CLAIM {
                    break;
                }
                match this.claim(free).await {
                    Ok(claimed) => {
                        let full = claimed.len() == free;
                        for delivery in claimed {
                            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                                break; // cannot happen: no more claimed than free slots
                            };
                            let (this, outcomes) = (Arc::clone(&this), outcomes.clone());
                            let slot_freed = Arc::clone(&slot_freed);
                            tokio::spawn(async move {
                                let outcome = this.deliver(&delivery).await;
                                let _ = outcomes.send(outcome);
                                drop(slot);
                                slot_freed.notify_one();
                            });
                        }
                        if !full {
                            break;
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "claiming due event deliveries failed");
                        break;
                    }
                }
            }
            if last_counted.is_none_or(|at| at.elapsed() >= POLL_INTERVAL) {
                last_counted = Some(std::time::Instant::now());
                match this.store.outbox_pending().await {
                    Ok(pending) => this.metrics.set_outbox_pending(pending),
                    Err(err) => tracing::warn!(error = %err, "counting pending deliveries failed"),
                }
            }
            tokio::select! {
                () = this.written.notified() => tokio::time::sleep(GATHER).await,
                () = slot_freed.notified(), if slots.available_permits() < IN_FLIGHT => {}
                () = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = stop.changed() => {}
            }
        }
        // Every slot back: every attempt has ended and sent its outcome.
        let _ = slots.acquire_many(IN_FLIGHT as u32).await;
        drop(outcomes);
        let _ = recorder.await;
    }

    async fn claim(&self, limit: usize) -> Result<Vec<PendingDelivery>, StoreError> {
        let now = UnixMillis::now();
        self.store
            .claim_due_deliveries(
                &self.urls,
                now,
                now.plus_secs(LEASE.as_secs()),
                u32::try_from(limit).unwrap_or(u32::MAX),
            )
            .await
    }

    /// One attempt and what became of it: (id, HTTP status, outcome).
    async fn deliver(&self, delivery: &PendingDelivery) -> Attempted {
        let answer = self.attempt(delivery).await;
        let outcome = match &answer {
            Ok(status) if (200..300).contains(status) => AttemptOutcome::Delivered,
            _ => self.after_failure(delivery, UnixMillis::now()),
        };
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
        (delivery.id, answer.ok(), outcome)
    }

    /// Retried while the retry period lasts, failed after.
    fn after_failure(&self, delivery: &PendingDelivery, now: UnixMillis) -> AttemptOutcome {
        let deadline = delivery.created_at.plus_secs(RETRY_PERIOD_SECS);
        if now >= deadline {
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

/// An attempt's delivery, HTTP status (if any) and outcome.
type Attempted = (Uuid, Option<u16>, AttemptOutcome);

/// Records outcomes as they come, all those waiting in one transaction.
async fn record_outcomes(store: Store, mut outcomes: mpsc::UnboundedReceiver<Attempted>) {
    let mut batch = Vec::new();
    while outcomes.recv_many(&mut batch, 512).await > 0 {
        tokio::time::sleep(GATHER).await;
        while batch.len() < 512 {
            let Ok(outcome) = outcomes.try_recv() else {
                break;
            };
            batch.push(outcome);
        }
        if let Err(err) = store.record_attempts(&batch, UnixMillis::now()).await {
            // The claims lapse and the deliveries are attempted again: at least once.
            tracing::warn!(error = %err, count = batch.len(), "recording delivery outcomes failed");
        }
        batch.clear();
    }
}
