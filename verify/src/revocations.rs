//! The issuer's revocation feed, polled in the background: the sessions that ended
//! recently, whose tokens are then refused although their signature and `exp` are good.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use reqwest::Url;
use uuid::Uuid;

use crate::http::HttpClient;

/// A feed answer may be this large (100,000 entries take about 8 MiB).
const MAX_FEED_LEN: usize = 16 * 1024 * 1024;

/// An ended session is remembered this long: longer than any access token lives.
const REMEMBERED_FOR: Duration = Duration::from_secs(24 * 3600);

/// The sessions known to have ended, shared by the verifier and its poller.
#[derive(Default)]
pub(crate) struct RevokedSessions {
    sessions: RwLock<HashMap<Uuid, Instant>>,
    /// Counts the polls that added sessions: a session not listed at one value of it is
    /// not listed while it stays the same (entries only leave, a day later).
    additions: AtomicU64,
}

impl RevokedSessions {
    /// Read before [`RevokedSessions::contains`], so that a session listed later is
    /// listed under a later version.
    pub(crate) fn version(&self) -> u64 {
        self.additions.load(Ordering::Acquire)
    }

    pub(crate) fn contains(&self, sid: &Uuid) -> bool {
        self.sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(sid)
    }

    fn add(&self, sids: impl IntoIterator<Item = Uuid>) {
        let mut sids = sids.into_iter().peekable();
        // Most polls bring nothing new: then verifications never wait for a write lock.
        if sids.peek().is_none() {
            return;
        }
        let now = Instant::now();
        let mut sessions = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        for sid in sids {
            sessions.entry(sid).or_insert(now);
        }
        self.additions.fetch_add(1, Ordering::Release);
        sessions.retain(|_, seen| now.duration_since(*seen) < REMEMBERED_FOR);
    }

    /// How many are known (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        self.sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

#[derive(serde::Deserialize)]
struct Feed {
    revoked: Vec<Entry>,
    cursor: String,
}

#[derive(serde::Deserialize)]
struct Entry {
    sid: Uuid,
}

/// Polls `url` every `interval` until `revoked` is dropped (with its verifier). A failed
/// poll keeps the last good list and says so in the log.
pub(crate) async fn poll(
    http: HttpClient,
    url: Url,
    interval: Duration,
    revoked: Weak<RevokedSessions>,
) {
    let mut cursor: Option<String> = None;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(revoked) = revoked.upgrade() else {
            return;
        };
        let mut request = url.clone();
        if let Some(cursor) = &cursor {
            request.query_pairs_mut().append_pair("after", cursor);
        }
        match fetch(&http, &request).await {
            Ok(feed) => {
                revoked.add(feed.revoked.into_iter().map(|entry| entry.sid));
                cursor = Some(feed.cursor);
            }
            Err(reason) => tracing::warn!(
                %reason,
                known = revoked.len(),
                "revocation feed unavailable; keeping the last good list"
            ),
        }
    }
}

async fn fetch(http: &HttpClient, url: &Url) -> Result<Feed, String> {
    let (_, body) = http.get_at_most(url, MAX_FEED_LEN).await?;
    serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not a revocation feed: {e}"))
}

/// The poller's handle on the set.
pub(crate) fn shared() -> Arc<RevokedSessions> {
    Arc::new(RevokedSessions::default())
}
