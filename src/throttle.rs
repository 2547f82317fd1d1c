//! Abuse limits: requests per client IP (GCRA, a burst up to the quota) and failed
//! logins per (account, client IP) in a fixed window. In-process by default (governor
//! for the rate, a bounded map for failures); in Redis when `AUTHGATE_REDIS_URL` is set,
//! so that every instance enforces one shared limit.

use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use lru::LruCache;
use sha2::{Digest, Sha256};

/// How long to wait before trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, rounded up, at least 1 (the `Retry-After` header value).
    pub fn secs(self) -> u64 {
        self.0.as_millis().div_ceil(1000).max(1) as u64
    }
}

#[derive(Debug, thiserror::Error)]
#[error("throttling store: {0}")]
pub struct ThrottleError(#[from] redis::RedisError);

/// The in-process failure map never holds more than this many (account, IP) pairs; a new
/// pair beyond it pushes out the least recently updated one.
const MAX_TRACKED_FAILURES: NonZeroUsize = NonZeroUsize::MIN.saturating_add(99_999);

pub struct Throttle {
    backend: Backend,
    per_ip_per_minute: u32,
    max_failures: u32,
    failure_window: Duration,
}

enum Backend {
    Local {
        rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
        /// Checks reserved per (account, IP) and when their window started.
        failures: Mutex<LruCache<[u8; 32], (u32, Instant)>>,
    },
    Redis(redis::aio::ConnectionManager),
}

/// GCRA on Redis time: each request moves the theoretical arrival time (TAT) on by one
/// emission interval; a request is refused while that would put the TAT more than a
/// whole period (the burst) ahead. Returns 0, or the milliseconds to wait.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > period then return new_tat - now - period end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return 0
";

/// Reserves a password check in a window that starts with the first one: 0, or the
/// milliseconds left in a window whose checks are used up. One script, so concurrent
/// attempts on every instance sharing Redis are counted one at a time.
const RESERVE_ATTEMPT: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[2]) then
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then return left end
end
n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 0
";

/// Gives a reservation back, never below zero.
const RELEASE_ATTEMPT: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then return redis.call('DECR', KEYS[1]) end
return 0
";

impl Throttle {
    pub async fn new(
        redis_url: Option<&str>,
        per_ip_per_minute: u32,
        max_failures: u32,
        failure_window: Duration,
    ) -> Result<Self, ThrottleError> {
        let backend = match redis_url {
            Some(url) => {
                let client = redis::Client::open(url)?;
                Backend::Redis(redis::aio::ConnectionManager::new(client).await?)
            }
            None => Backend::Local {
                rate: NonZeroU32::new(per_ip_per_minute)
                    .map(|quota| DefaultKeyedRateLimiter::keyed(Quota::per_minute(quota))),
                failures: Mutex::new(LruCache::new(MAX_TRACKED_FAILURES)),
            },
        };
        Ok(Self {
            backend,
            per_ip_per_minute,
            max_failures,
            failure_window,
        })
    }

    /// Counts one request from `ip`; refused once it exceeds the per-minute quota.
    pub async fn check_rate(&self, ip: IpAddr) -> Result<Result<(), RetryAfter>, ThrottleError> {
        if self.per_ip_per_minute == 0 {
            return Ok(Ok(()));
        }
        match &self.backend {
            Backend::Local {
                rate: Some(rate), ..
            } => Ok(rate.check_key(&client_key(ip)).map_err(|not_until| {
                RetryAfter(not_until.wait_time_from(DefaultClock::default().now()))
            })),
            Backend::Local { rate: None, .. } => Ok(Ok(())),
            Backend::Redis(redis) => {
                let interval_ms = 60_000 / u64::from(self.per_ip_per_minute);
                let wait_ms: u64 = redis::Script::new(GCRA)
                    .key(format!("authgate:rate:{}", client_key(ip)))
                    .arg(interval_ms.max(1))
                    .arg(60_000)
                    .invoke_async(&mut redis.clone())
                    .await?;
                Ok(if wait_ms == 0 {
                    Ok(())
                } else {
                    Err(RetryAfter(Duration::from_millis(wait_ms)))
                })
            }
        }
    }

    /// Reserves one password check for (account, ip): counted as a failure at once, so
    /// that of any number of concurrent attempts at most `max_failures` per window get
    /// one; the rest are refused with the time left in the window. A check that
    /// succeeds clears the count ([`Throttle::clear_login_failures`]); one that could
    /// not run gives its reservation back ([`Throttle::release_login_attempt`]).
    pub async fn reserve_login_attempt(
        &self,
        account: &str,
        ip: IpAddr,
    ) -> Result<Result<(), RetryAfter>, ThrottleError> {
        let key = failure_key(account, ip);
        match &self.backend {
            Backend::Local { failures, .. } => {
                let mut failures = failures.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let window = self.failure_window;
                // `get_or_insert_mut` marks the entry most recently updated; when the map
                // is full the least recently updated pair goes, and counting goes on.
                let entry = failures.get_or_insert_mut(key, || (0, now));
                if now.duration_since(entry.1) >= window {
                    *entry = (0, now);
                }
                if entry.0 >= self.max_failures {
                    let left = window.saturating_sub(now.duration_since(entry.1));
                    return Ok(Err(RetryAfter(left)));
                }
                entry.0 += 1;
                Ok(Ok(()))
            }
            Backend::Redis(redis) => {
                let wait_ms: i64 = redis::Script::new(RESERVE_ATTEMPT)
                    .key(redis_failure_key(&key))
                    .arg(self.failure_window.as_millis() as u64)
                    .arg(self.max_failures)
                    .invoke_async(&mut redis.clone())
                    .await?;
                Ok(if wait_ms == 0 {
                    Ok(())
                } else {
                    Err(RetryAfter(Duration::from_millis(wait_ms.max(1) as u64)))
                })
            }
        }
    }

    /// Gives back a reservation whose password check did not run (the hashing pool was
    /// full, the database failed).
    pub async fn release_login_attempt(
        &self,
        account: &str,
        ip: IpAddr,
    ) -> Result<(), ThrottleError> {
        let key = failure_key(account, ip);
        match &self.backend {
            Backend::Local { failures, .. } => {
                let mut failures = failures.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(entry) = failures.peek_mut(&key) {
                    entry.0 = entry.0.saturating_sub(1);
                }
                Ok(())
            }
            Backend::Redis(redis) => {
                let _: i64 = redis::Script::new(RELEASE_ATTEMPT)
                    .key(redis_failure_key(&key))
                    .invoke_async(&mut redis.clone())
                    .await?;
                Ok(())
            }
        }
    }

    /// A successful login forgets the failures of that (account, ip).
    pub async fn clear_login_failures(
        &self,
        account: &str,
        ip: IpAddr,
    ) -> Result<(), ThrottleError> {
        let key = failure_key(account, ip);
        match &self.backend {
            Backend::Local { failures, .. } => {
                failures.lock().unwrap_or_else(|e| e.into_inner()).pop(&key);
                Ok(())
            }
            Backend::Redis(redis) => {
                let _: () = redis::cmd("DEL")
                    .arg(redis_failure_key(&key))
                    .query_async(&mut redis.clone())
                    .await?;
                Ok(())
            }
        }
    }

    /// Drops idle per-IP state; run periodically so the map does not grow without bound.
    pub fn prune(&self) {
        if let Backend::Local { rate, failures } = &self.backend {
            if let Some(rate) = rate {
                rate.retain_recent();
            }
            let mut failures = failures.lock().unwrap_or_else(|e| e.into_inner());
            // Oldest updates first: stop at the first pair still inside its window.
            while failures
                .peek_lru()
                .is_some_and(|(_, (_, started))| started.elapsed() >= self.failure_window)
            {
                failures.pop_lru();
            }
        }
    }
}

/// The address a client is limited by: an IPv4 address as it is (also when written as
/// IPv4-mapped IPv6), an IPv6 address by its /64, since one subscriber usually holds a
/// whole /64 and could otherwise take a fresh address for every request.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from_bits(
            v6.to_bits() & !u128::from(u64::MAX),
        )),
        v4 => v4,
    }
}

/// Accounts and addresses are hashed, so neither sits in memory or Redis as such.
fn failure_key(account: &str, ip: IpAddr) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(account.as_bytes());
    hasher.update([0]);
    hasher.update(client_key(ip).to_string().as_bytes());
    hasher.finalize().into()
}

fn redis_failure_key(key: &[u8; 32]) -> String {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    format!("authgate:login-failures:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn the_rate_allows_a_burst_of_the_quota_then_refuses() {
        let throttle = Throttle::new(None, 3, 5, Duration::from_secs(60))
            .await
            .unwrap();
        for _ in 0..3 {
            assert_eq!(throttle.check_rate(IP).await.unwrap(), Ok(()));
        }
        let refused = throttle.check_rate(IP).await.unwrap().unwrap_err();
        assert!((19..=20).contains(&refused.secs()), "{refused:?}");
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(throttle.check_rate(other).await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn reservations_run_out_for_one_account_and_ip_until_the_window_ends() {
        let throttle = Throttle::new(None, 0, 2, Duration::from_secs(900))
            .await
            .unwrap();
        let reserve = |account: &'static str| throttle.reserve_login_attempt(account, IP);
        assert_eq!(reserve("ann@example.com").await.unwrap(), Ok(()));
        assert_eq!(reserve("ann@example.com").await.unwrap(), Ok(()));
        let refused = reserve("ann@example.com").await.unwrap().unwrap_err();
        assert!((899..=900).contains(&refused.secs()), "{refused:?}");
        assert_eq!(reserve("bob@example.com").await.unwrap(), Ok(()));

        // A check that could not run gives its reservation back; a success clears all.
        throttle
            .release_login_attempt("ann@example.com", IP)
            .await
            .unwrap();
        assert_eq!(reserve("ann@example.com").await.unwrap(), Ok(()));
        assert!(reserve("ann@example.com").await.unwrap().is_err());
        throttle
            .clear_login_failures("ann@example.com", IP)
            .await
            .unwrap();
        assert_eq!(reserve("ann@example.com").await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn a_full_failure_map_evicts_the_least_recently_updated_pair_and_keeps_counting() {
        let throttle = Throttle::new(None, 0, 1, Duration::from_secs(900))
            .await
            .unwrap();
        let Backend::Local { failures, .. } = &throttle.backend else {
            unreachable!()
        };
        failures
            .lock()
            .unwrap()
            .resize(NonZeroUsize::new(2).unwrap());
        let reserve = |account: &'static str| throttle.reserve_login_attempt(account, IP);
        assert!(reserve("old@example.com").await.unwrap().is_ok());
        assert!(reserve("ann@example.com").await.unwrap().is_ok());
        assert!(reserve("bob@example.com").await.unwrap().is_ok());
        // The newest pairs are still counted; the oldest made room.
        assert!(reserve("ann@example.com").await.unwrap().is_err());
        assert!(reserve("bob@example.com").await.unwrap().is_err());
        assert!(reserve("old@example.com").await.unwrap().is_ok());
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
