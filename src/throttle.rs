//! Abuse limits: requests per client IP (GCRA, a burst up to the quota) and failed
//! logins per (account, client IP) in a fixed window. In-process by default (governor
//! for the rate, a bounded map for failures); in Redis when `AUTHGATE_REDIS_URL` is set,
//! so that every instance enforces one shared limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
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

/// The in-process failure map never grows past this many (account, IP) pairs; beyond
/// it new pairs are not counted (the per-IP rate limit still bounds them).
const MAX_TRACKED_FAILURES: usize = 100_000;

pub struct Throttle {
    backend: Backend,
    per_ip_per_minute: u32,
    max_failures: u32,
    failure_window: Duration,
}

enum Backend {
    Local {
        rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
        failures: Mutex<HashMap<[u8; 32], (u32, Instant)>>,
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

/// Counts a failure in a window that starts with the first one.
const COUNT_FAILURE: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
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
                failures: Mutex::new(HashMap::new()),
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
            } => Ok(rate.check_key(&ip).map_err(|not_until| {
                RetryAfter(not_until.wait_time_from(DefaultClock::default().now()))
            })),
            Backend::Local { rate: None, .. } => Ok(Ok(())),
            Backend::Redis(redis) => {
                let interval_ms = 60_000 / u64::from(self.per_ip_per_minute);
                let wait_ms: u64 = redis::Script::new(GCRA)
                    .key(format!("authgate:rate:{ip}"))
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

    /// Whether logins for (account, ip) are refused, and for how long.
    pub async fn login_blocked(
        &self,
        account: &str,
        ip: IpAddr,
    ) -> Result<Option<RetryAfter>, ThrottleError> {
        let key = failure_key(account, ip);
        match &self.backend {
            Backend::Local { failures, .. } => {
                let failures = failures.lock().unwrap_or_else(|e| e.into_inner());
                Ok(failures.get(&key).and_then(|(count, started)| {
                    let left = self.failure_window.checked_sub(started.elapsed())?;
                    (*count >= self.max_failures).then_some(RetryAfter(left))
                }))
            }
            Backend::Redis(redis) => {
                let key = redis_failure_key(&key);
                let (count, ttl_ms): (Option<u32>, i64) = redis::pipe()
                    .get(&key)
                    .pttl(&key)
                    .query_async(&mut redis.clone())
                    .await?;
                Ok((count.unwrap_or(0) >= self.max_failures && ttl_ms > 0)
                    .then(|| RetryAfter(Duration::from_millis(ttl_ms as u64))))
            }
        }
    }

    pub async fn record_login_failure(
        &self,
        account: &str,
        ip: IpAddr,
    ) -> Result<(), ThrottleError> {
        let key = failure_key(account, ip);
        match &self.backend {
            Backend::Local { failures, .. } => {
                let mut failures = failures.lock().unwrap_or_else(|e| e.into_inner());
                if failures.len() >= MAX_TRACKED_FAILURES {
                    failures.retain(|_, (_, started)| started.elapsed() < self.failure_window);
                }
                let full = failures.len() >= MAX_TRACKED_FAILURES;
                match failures.get_mut(&key) {
                    Some(entry) if entry.1.elapsed() < self.failure_window => entry.0 += 1,
                    Some(entry) => *entry = (1, Instant::now()),
                    None if !full => {
                        failures.insert(key, (1, Instant::now()));
                    }
                    None => tracing::warn!("login failure map is full; not counting a failure"),
                }
                Ok(())
            }
            Backend::Redis(redis) => {
                let _: u32 = redis::Script::new(COUNT_FAILURE)
                    .key(redis_failure_key(&key))
                    .arg(self.failure_window.as_millis() as u64)
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
                failures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
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
            failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, (_, started)| started.elapsed() < self.failure_window);
        }
    }
}

/// Accounts and addresses are hashed, so neither sits in memory or Redis as such.
fn failure_key(account: &str, ip: IpAddr) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(account.as_bytes());
    hasher.update([0]);
    hasher.update(ip.to_string().as_bytes());
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
    async fn failures_block_one_account_and_ip_until_the_window_ends() {
        let throttle = Throttle::new(None, 0, 2, Duration::from_secs(900))
            .await
            .unwrap();
        throttle
            .record_login_failure("ann@example.com", IP)
            .await
            .unwrap();
        assert_eq!(
            throttle.login_blocked("ann@example.com", IP).await.unwrap(),
            None
        );
        throttle
            .record_login_failure("ann@example.com", IP)
            .await
            .unwrap();
        let blocked = throttle
            .login_blocked("ann@example.com", IP)
            .await
            .unwrap()
            .unwrap();
        assert!((899..=900).contains(&blocked.secs()), "{blocked:?}");
        assert_eq!(
            throttle.login_blocked("bob@example.com", IP).await.unwrap(),
            None
        );
        throttle
            .clear_login_failures("ann@example.com", IP)
            .await
            .unwrap();
        assert_eq!(
            throttle.login_blocked("ann@example.com", IP).await.unwrap(),
            None
        );
    }
}
