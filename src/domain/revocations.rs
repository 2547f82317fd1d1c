//! The revocation feed (a CRL for sessions): every session that ended while access tokens
//! of it may still be unexpired, so that services verifying offline can reject them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use super::types::UnixMillis;
use super::{AuthService, Fault};

/// Entries are listed this long after their session ended: an access token lifetime
/// and a minute of clock skew.
pub fn feed_window_secs(access_ttl_secs: u64) -> u64 {
    access_ttl_secs + 60
}

/// An `after` cursor also returns what ended this long before it was handed out: an
/// ending is timed when its transaction starts and seen when it commits.
const LATE_COMMIT_MARGIN_SECS: u64 = 10;

/// At most this many entries per answer (about 8 MiB of JSON). More sessions than this
/// cannot end within one late-commit margin (it would take 10,000 endings a second), so
/// a full page's cursor always moves on.
const PAGE_LIMIT: u64 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum RevocationFeedError {
    #[error("the cursor is not one this feed handed out")]
    BadCursor,
    #[error(transparent)]
    Fault(Fault),
}

faults_convert!(RevocationFeedError);

/// One answer of the feed.
#[derive(Debug, Clone)]
pub struct RevocationPage {
    pub ended: Vec<(Uuid, UnixMillis)>,
    /// Pass back as `after` to get only what ends from now on.
    pub cursor: String,
}

impl AuthService {
    pub async fn revocation_feed(
        &self,
        after: Option<&str>,
    ) -> Result<RevocationPage, RevocationFeedError> {
        let now = UnixMillis::now();
        let window_start = now.minus_secs(feed_window_secs(self.policy.access_ttl_secs));
        let since = match after {
            Some(cursor) => {
                let handed_out = decode_cursor(cursor).ok_or(RevocationFeedError::BadCursor)?;
                handed_out
                    .minus_secs(LATE_COMMIT_MARGIN_SECS)
                    .max(window_start)
            }
            None => window_start,
        };
        let ended = self.store.ended_sessions_since(since, PAGE_LIMIT).await?;
        let cursor = encode_cursor(cursor_after(&ended, PAGE_LIMIT, now));
        Ok(RevocationPage { ended, cursor })
    }
}

/// When the cursor handed out with `page` is dated. A full page may have left entries
/// out: its cursor is dated so that the next answer starts at its last entry (repeating
/// those of that millisecond, which a consumer merges); otherwise it is `now`.
fn cursor_after(page: &[(Uuid, UnixMillis)], limit: u64, now: UnixMillis) -> UnixMillis {
    match page.last() {
        Some(&(_, last)) if page.len() as u64 >= limit => {
            now.min(last.plus_secs(LATE_COMMIT_MARGIN_SECS))
        }
        _ => now,
    }
}

fn encode_cursor(at: UnixMillis) -> String {
    URL_SAFE_NO_PAD.encode(format!("r1.{}", at.millis()))
}

fn decode_cursor(cursor: &str) -> Option<UnixMillis> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let millis: i64 = text.strip_prefix("r1.")?.parse().ok()?;
    Some(UnixMillis::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_page_continues_from_its_last_entry_and_a_short_one_from_now() {
        let now = UnixMillis::from_millis(1_700_000_100_000);
        let first = UnixMillis::from_millis(1_700_000_000_000);
        let last = UnixMillis::from_millis(1_700_000_050_000);
        let page = [(Uuid::now_v7(), first), (Uuid::now_v7(), last)];
        let next_since = cursor_after(&page, 2, now).minus_secs(LATE_COMMIT_MARGIN_SECS);
        assert_eq!(
            next_since, last,
            "the next answer starts at the last entry given"
        );
        assert_eq!(cursor_after(&page, 3, now), now);
        assert_eq!(cursor_after(&[], 3, now), now);
        // A last entry within the margin: the cursor is never dated after the answer.
        let recent = [(Uuid::now_v7(), now.minus_secs(1))];
        assert_eq!(cursor_after(&recent, 1, now), now);
    }

    #[test]
    fn cursors_round_trip_and_anything_else_is_refused() {
        let at = UnixMillis::from_millis(1_700_000_000_123);
        assert_eq!(decode_cursor(&encode_cursor(at)), Some(at));
        for bad in ["", "nope", "cjEueA", "%%"] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }
}
