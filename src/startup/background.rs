//! The periodic tasks every instance runs beside serving: key reloads, erasing sealed
//! refresh successors, cleanup and throttle pruning.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::UnixMillis;
use crate::domain::keys::KeyRing;
use crate::store::Store;
use crate::throttle::Throttle;

pub(super) async fn reload_keys(keys: Arc<KeyRing>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(err) = keys.reload().await {
            tracing::error!(error = %err, "reloading signing keys failed; keeping the current ones");
        }
    }
}

/// Sealed successors only serve the reuse grace window; erase them soon after it.
pub(super) async fn erase_sealed_successors(store: Store, grace_secs: u64) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first sweep covers everything (left over by a stopped process); later ones
    // only what was spent since, with a margin for slow transactions.
    let mut since = UnixMillis::MIN;
    loop {
        ticks.tick().await;
        let cutoff = UnixMillis::now().minus_secs(grace_secs);
        match store.erase_sealed_successors(since, cutoff).await {
            Ok(_) => since = cutoff.minus_secs(60),
            Err(err) => tracing::warn!(error = %err, "erasing sealed refresh successors failed"),
        }
    }
}

/// Every instance cleans up; the deletes are batched single statements, so running
/// them at once is safe.
pub(super) async fn clean_up_periodically(
    store: Store,
    access_ttl_secs: u64,
    audit_retention_days: u64,
) {
    let mut ticks = tokio::time::interval(Duration::from_secs(300));
    loop {
        ticks.tick().await;
        match crate::domain::cleanup(&store, access_ttl_secs, audit_retention_days).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted ended sessions and expired tokens"),
            Err(err) => tracing::warn!(error = %err, "cleanup failed"),
        }
    }
}

pub(super) async fn prune_throttle(throttle: Arc<Throttle>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(60));
    loop {
        ticks.tick().await;
        throttle.prune();
    }
}
