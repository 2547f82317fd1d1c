//! Remote keys: a JWKS fetched from a URL (or found through discovery), cached for the
//! server's `Cache-Control: max-age` within bounds, refetched at most once at a time
//! and at most once per interval, and kept when a fetch fails. The HTTP policy (https,
//! redirects, size cap) is in [`crate::http`].

use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use reqwest::Url;
use tokio::sync::{Mutex, OnceCell};

use crate::JwkSet;
use crate::http::{self, HttpClient};
use crate::verifier::{InitError, KeySet, SharedKeys};

/// How remote keys are fetched and cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksOptions {
    /// Timeout of every fetch (connect and read), default 5 s.
    pub timeout: Duration,
    /// Fetches triggered by unknown `kid`s or expiry happen at most this often, default 30 s.
    pub min_refetch_interval: Duration,
    /// `max-age` is clamped to at least this, default 60 s.
    pub min_cache: Duration,
    /// `max-age` is clamped to at most this, default 1 h.
    pub max_cache: Duration,
    /// Cache lifetime without a `max-age`, default 5 min.
    pub default_cache: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            min_refetch_interval: Duration::from_secs(30),
            min_cache: Duration::from_secs(60),
            max_cache: Duration::from_secs(3600),
            default_cache: Duration::from_secs(300),
        }
    }
}

/// How soon a verifier that has no keys at all tries again (whatever the refetch
/// interval); the extractors' 503 says so in `Retry-After`.
pub(crate) const NO_KEYS_RETRY_INTERVAL: Duration = Duration::from_secs(1);

struct FetchState {
    last_attempt: Option<Instant>,
    /// When the cached keys should be refreshed.
    stale_at: Instant,
}

/// Where remote keys come from, checked when the verifier is built.
pub(crate) enum KeySource {
    JwksUrl(Url),
    /// The issuer's discovery document; its `jwks_uri` must be on the issuer's origin
    /// or on one of `allowed_jwks_origins`.
    Discovery {
        url: Url,
        allowed_jwks_origins: Vec<String>,
    },
}

pub(crate) struct RemoteKeys {
    http: HttpClient,
    issuer: String,
    source: KeySource,
    allow_insecure_http: bool,
    /// Given, or resolved once from discovery.
    jwks_url: OnceCell<Url>,
    options: JwksOptions,
    /// Held for the whole fetch: one fetch at a time, and waiters see its result.
    state: Mutex<FetchState>,
}

impl RemoteKeys {
    pub(crate) fn new(
        source: KeySource,
        allow_insecure_http: bool,
        issuer: String,
        options: JwksOptions,
    ) -> Result<Self, InitError> {
        let jwks_url = match &source {
            KeySource::JwksUrl(url) => Some(url.clone()),
            KeySource::Discovery { .. } => None,
        };
        Ok(Self {
            http: HttpClient::new(options.timeout)?,
            issuer,
            source,
            allow_insecure_http,
            jwks_url: OnceCell::new_with(jwks_url),
            options,
            state: Mutex::new(FetchState {
                last_attempt: None,
                stale_at: Instant::now(),
            }),
        })
    }

    /// The first fetch, at build time. An issuer that is down is retried later; a
    /// discovery document naming another issuer is a configuration error, returned.
    pub(crate) async fn refresh_initial(
        &self,
        keys: &SharedKeys,
        algorithms: &[Algorithm],
    ) -> Result<(), FetchError> {
        let mut state = self.state.lock().await;
        match self.fetch_into(&mut state, keys, algorithms).await {
            Err(mismatch @ FetchError::IssuerMismatch { .. }) => Err(mismatch),
            _ => Ok(()),
        }
    }

    /// Refreshes expired keys; a request that finds a fetch under way goes on with the
    /// keys at hand instead of waiting.
    pub(crate) async fn refresh_if_stale(&self, keys: &SharedKeys, algorithms: &[Algorithm]) {
        let Ok(mut state) = self.state.try_lock() else {
            return;
        };
        if Instant::now() >= state.stale_at && self.may_fetch(&state, keys) {
            // Logged where it happened; the last good keys stay.
            let _ = self.fetch_into(&mut state, keys, algorithms).await;
        }
    }

    /// Fetches once for a `kid` not in the cache, unless a fetch just ran: concurrent
    /// requests wait for one fetch, and random `kid`s cannot make the service hammer
    /// its issuer.
    pub(crate) async fn refresh_for_unknown_kid(
        &self,
        kid: &str,
        keys: &SharedKeys,
        algorithms: &[Algorithm],
    ) {
        let mut state = self.state.lock().await;
        let known = keys.read().unwrap_or_else(|e| e.into_inner()).contains(kid);
        if !known && self.may_fetch(&state, keys) {
            // Logged where it happened; the last good keys stay.
            let _ = self.fetch_into(&mut state, keys, algorithms).await;
        }
    }

    /// At most one fetch per interval; while no key was ever loaded (the issuer was
    /// down when this service started), at most one per second, so service resumes
    /// promptly once the issuer is up.
    fn may_fetch(&self, state: &FetchState, keys: &SharedKeys) -> bool {
        let mut interval = self.options.min_refetch_interval;
        if keys.read().unwrap_or_else(|e| e.into_inner()).is_empty() {
            interval = interval.min(NO_KEYS_RETRY_INTERVAL);
        }
        state.last_attempt.is_none_or(|at| at.elapsed() >= interval)
    }

    async fn fetch_into(
        &self,
        state: &mut FetchState,
        keys: &SharedKeys,
        algorithms: &[Algorithm],
    ) -> Result<(), FetchError> {
        state.last_attempt = Some(Instant::now());
        match self.fetch(algorithms).await {
            Ok((fetched, max_age)) => {
                tracing::debug!(keys = fetched.len(), "fetched JWKS");
                KeySet::install(keys, fetched);
                state.stale_at = Instant::now() + max_age;
                Ok(())
            }
            Err(reason) => {
                // The last good keys stay; try again after the refetch interval.
                tracing::warn!(%reason, issuer = %self.issuer, "JWKS fetch failed; keeping the last good keys");
                state.stale_at = Instant::now() + self.options.min_refetch_interval;
                Err(reason)
            }
        }
    }

    async fn fetch(&self, algorithms: &[Algorithm]) -> Result<(KeySet, Duration), FetchError> {
        let url = self.jwks_url.get_or_try_init(|| self.discover()).await?;
        let (headers, body) = self.http.get(url).await?;
        let max_age = headers
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|value| value.to_str().ok())
            .and_then(max_age)
            .map_or(self.options.default_cache, |age| {
                age.clamp(self.options.min_cache, self.options.max_cache)
            });
        let jwks: JwkSet =
            serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not a JWKS: {e}"))?;
        let keys = KeySet::from_jwks(&jwks, algorithms);
        if keys.is_empty() {
            return Err(format!("GET {url}: no usable signing key").into());
        }
        Ok((keys, max_age))
    }

    async fn discover(&self) -> Result<Url, FetchError> {
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let KeySource::Discovery {
            url,
            allowed_jwks_origins,
        } = &self.source
        else {
            unreachable!("a JWKS URL is known from the start");
        };
        let (_, body) = self.http.get(url).await?;
        let document: Discovery = serde_json::from_slice(&body)
            .map_err(|e| format!("GET {url}: not a discovery document: {e}"))?;
        // OpenID Connect Discovery §4.3: the document must name the issuer we asked
        // (a trailing slash apart: tokens are checked against both spellings).
        if document.issuer.trim_end_matches('/') != self.issuer.trim_end_matches('/') {
            return Err(FetchError::IssuerMismatch {
                configured: self.issuer.clone(),
                discovered: document.issuer,
            });
        }
        let jwks_url = http::check_url(&document.jwks_uri, self.allow_insecure_http)
            .map_err(|e| format!("GET {url}: jwks_uri refused: {e}"))?;
        // Whoever can alter the discovery document must not be able to point the
        // verifier at keys on a host of their choosing.
        let jwks_origin = http::origin(&jwks_url);
        if jwks_origin != http::origin(url) && !allowed_jwks_origins.contains(&jwks_origin) {
            return Err(format!(
                "GET {url}: jwks_uri {jwks_url} is on another origin than the issuer; \
                 refused (allow it with .allow_jwks_origin(\"{jwks_origin}\"))"
            )
            .into());
        }
        Ok(jwks_url)
    }
}

/// Why keys could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FetchError {
    /// The discovery document is another issuer's: the configuration is wrong.
    IssuerMismatch {
        configured: String,
        discovered: String,
    },
    Other(String),
}

impl From<String> for FetchError {
    fn from(reason: String) -> Self {
        Self::Other(reason)
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::IssuerMismatch {
                configured,
                discovered,
            } => write!(
                f,
                "the discovery document names the issuer {discovered:?}, not the configured {configured:?}"
            ),
            Self::Other(reason) => f.write_str(reason),
        }
    }
}

/// `max-age` of a `Cache-Control` header value (`no-cache`/`no-store` count as 0).
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let directive = directive.trim();
        if directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("no-store")
        {
            return Some(Duration::ZERO);
        }
        let (name, value) = directive.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| value.trim().trim_matches('"').parse().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("MAX-AGE = 60"), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }
}
