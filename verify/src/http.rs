//! The HTTP client behind remote keys and its policy: `https://` unless the host is
//! loopback (or plain http was explicitly allowed), no redirect to another origin,
//! responses capped at [`MAX_KEYS_RESPONSE_LEN`].

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Url, redirect};

use crate::MAX_KEYS_RESPONSE_LEN;
use crate::verifier::InitError;

/// Same-origin redirects followed per request, at most.
const MAX_REDIRECTS: usize = 3;

/// Checks a key source URL (JWKS, discovery document, discovered `jwks_uri`): http or
/// https only, plain http only for a loopback host unless `allow_insecure_http`, and
/// https only when this build has TLS.
pub(crate) fn check_url(url: &str, allow_insecure_http: bool) -> Result<Url, InitError> {
    let bad = |reason: &str| InitError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    match parsed.scheme() {
        "https" if cfg!(feature = "rustls") => Ok(parsed),
        "https" => Err(InitError::TlsUnavailable(url.to_owned())),
        "http" if allow_insecure_http || is_loopback(&parsed) => Ok(parsed),
        "http" => Err(InitError::InsecureHttp(url.to_owned())),
        _ => Err(bad(
            "the scheme must be https (or http for a loopback host)",
        )),
    }
}

/// 127.0.0.0/8, ::1 and `localhost`.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => Ipv4Addr::is_loopback(&ip),
        Some(url::Host::Ipv6(ip)) => Ipv6Addr::is_loopback(&ip),
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// `scheme://host[:port]` of an http(s) URL, the default port left out.
pub(crate) fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Parses an origin given to `allow_jwks_origin` (`scheme://host[:port]`, nothing else).
pub(crate) fn parse_origin(origin: &str, allow_insecure_http: bool) -> Result<String, InitError> {
    let url = check_url(origin, allow_insecure_http)?;
    let bare = url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !bare {
        return Err(InitError::BadUrl {
            url: origin.to_owned(),
            reason: "an origin is scheme://host[:port], without path, query or credentials"
                .to_owned(),
        });
    }
    Ok(self::origin(&url))
}

/// A reqwest client that keeps redirects on the origin first asked.
pub(crate) struct HttpClient {
    client: reqwest::Client,
}

impl HttpClient {
    pub(crate) fn new(timeout: Duration) -> Result<Self, InitError> {
        let redirects = redirect::Policy::custom(|attempt| {
            let first = attempt.previous().first().map(origin);
            let next = origin(attempt.url());
            if first.as_ref().is_some_and(|first| *first != next) {
                let refused = format!("a redirect to another origin ({next}) is not followed");
                attempt.error(refused)
            } else if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(redirects)
            .build()
            .map_err(InitError::HttpClient)?;
        Ok(Self { client })
    }

    /// GETs `url` and reads the body, refusing a non-success status and a body over
    /// [`MAX_KEYS_RESPONSE_LEN`] (announced or actual: reading stops at the cap).
    pub(crate) async fn get(&self, url: &Url) -> Result<(HeaderMap, Vec<u8>), String> {
        self.get_at_most(url, MAX_KEYS_RESPONSE_LEN).await
    }

    /// [`HttpClient::get`] with another cap.
    pub(crate) async fn get_at_most(
        &self,
        url: &Url,
        cap: usize,
    ) -> Result<(HeaderMap, Vec<u8>), String> {
        let fail = |e: reqwest::Error| format!("GET {url}: {}", error_chain(&e));
        let mut response = self
            .client
            .get(url.clone())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(fail)?;
        let too_large = || {
            format!(
                "GET {url}: the response is over {} KiB; refused",
                cap / 1024
            )
        };
        if response
            .content_length()
            .is_some_and(|len| len > cap as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fail)? {
            if body.len() + chunk.len() > cap {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((response.headers().clone(), body))
    }
}

/// An error and its causes, `: `-separated (reqwest's own message leaves them out).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
