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
        let ended = self.store.ended_sessions_since(since).await?;
        Ok(RevocationPage {
            ended,
            cursor: encode_cursor(now),
        })
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
    fn cursors_round_trip_and_anything_else_is_refused() {
        let at = UnixMillis::from_millis(1_700_000_000_123);
        assert_eq!(decode_cursor(&encode_cursor(at)), Some(at));
        for bad in ["", "nope", "cjEueA", "%%"] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }
}
