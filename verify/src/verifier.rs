use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use uuid::Uuid;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::DeserializeOwned;

use crate::http::{self, HttpClient};
use crate::jwks::{FetchError, JwksOptions, KeySource, RemoteKeys};
use crate::revocations::{self, RevokedSessions};
use crate::verified::{DEFAULT_VERIFIED_CACHE, MAX_REMEMBERED_CLAIMS, Verified, VerifiedTokens};
use crate::{ACCESS_TOKEN_TYPE, AccessClaims, JwkSet, MAX_TOKEN_LEN, VerifyError};

/// A configuration mistake, found when the verifier is built.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("no key source: call .pem(), .jwks_url() or .discovery()")]
    NoKeySource,
    #[error("the algorithm allow-list is empty")]
    NoAlgorithms,
    #[error("the PEM is not an Ed25519 public key: {0}")]
    BadPem(jsonwebtoken::errors::Error),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(reqwest::Error),
    #[error("{url:?} is not a usable key source URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "{0:?} is plain http to a host that is not loopback, so its keys could be swapped \
         in transit: use https, or call .allow_insecure_http() to opt out"
    )]
    InsecureHttp(String),
    #[error(
        "{0:?} needs TLS, which this build lacks: enable the `rustls` feature of \
         authgate-verify (on by default)"
    )]
    TlsUnavailable(String),
    /// The issuer given to the builder is not the one its discovery document names
    /// (it must be the `iss` of the tokens, e.g. authgate's `AUTHGATE_ISSUER`).
    #[error(
        "the issuer is configured as {configured:?} but its discovery document names \
         {discovered:?}: use the issuer exactly as authgate's AUTHGATE_ISSUER"
    )]
    IssuerMismatch {
        configured: String,
        discovered: String,
    },
}

/// A trusted key, and the one algorithm it may be used with when its JWK names one.
pub(crate) struct Key {
    key: DecodingKey,
    alg: Option<Algorithm>,
}

impl Key {
    /// A signing key of `jwk` that fits `algorithms`: a key of another family, or one
    /// whose `alg` is not in the list (or not a signature algorithm), is left out.
    fn from_jwk(jwk: &jsonwebtoken::jwk::Jwk, algorithms: &[Algorithm]) -> Option<Self> {
        let for_signing = jwk
            .common
            .public_key_use
            .as_ref()
            .is_none_or(|usage| *usage == jsonwebtoken::jwk::PublicKeyUse::Signature);
        if !for_signing {
            return None;
        }
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(alg) => {
                let alg: Algorithm = serde_json::to_value(alg).ok()?.as_str()?.parse().ok()?;
                if !algorithms.contains(&alg) {
                    return None;
                }
                Some(alg)
            }
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        let family = key.family();
        let fits = match alg {
            Some(alg) => alg.family() == family,
            None => algorithms.iter().any(|alg| alg.family() == family),
        };
        fits.then_some(Self { key, alg })
    }
}

/// The keys a verifier trusts: by `kid`, or one key for every token (static PEM).
#[derive(Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, Key>,
    any_kid: Option<Key>,
    /// Unique to this set (0: the empty set, which verifies nothing): a token remembered
    /// as verified counts only while the set that verified it is current.
    generation: u64,
    /// The JWKS it was made from, so that reloading the same keys keeps this set.
    jwks: Option<JwkSet>,
}

fn next_generation() -> u64 {
    static GENERATIONS: AtomicU64 = AtomicU64::new(1);
    GENERATIONS.fetch_add(1, Ordering::Relaxed)
}

impl KeySet {
    /// The usable signing keys of `jwks` that carry a `kid` and fit `algorithms`.
    pub(crate) fn from_jwks(jwks: &JwkSet, algorithms: &[Algorithm]) -> Self {
        let by_kid = jwks
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                Some((kid, Key::from_jwk(jwk, algorithms)?))
            })
            .collect();
        Self {
            by_kid,
            any_kid: None,
            generation: next_generation(),
            jwks: Some(jwks.clone()),
        }
    }

    /// Makes `keys` the trusted set, unless it holds the very keys trusted already.
    pub(crate) fn install(shared: &SharedKeys, keys: Self) {
        let mut current = shared.write().unwrap_or_else(|e| e.into_inner());
        if keys.jwks.is_none() || current.jwks != keys.jwks {
            *current = Arc::new(keys);
        }
    }

    pub(crate) fn contains(&self, kid: &str) -> bool {
        self.any_kid.is_some() || self.by_kid.contains_key(kid)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_kid.len() + usize::from(self.any_kid.is_some())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.any_kid.is_none() && self.by_kid.is_empty()
    }

    fn get(&self, kid: Option<&str>) -> Option<&Key> {
        kid.and_then(|kid| self.by_kid.get(kid))
            .or(self.any_kid.as_ref())
    }
}

pub(crate) type SharedKeys = RwLock<Arc<KeySet>>;

enum Source {
    Pem(String),
    JwksUrl(String),
    Discovery,
}

/// A [`Validation`] per key family of the allow-list: jsonwebtoken refuses a key when
/// the validation's algorithms span several families, so EdDSA and ES256 together need
/// one validation each.
fn validations(
    algorithms: &[Algorithm],
    issuer: &str,
    audiences: &[String],
    leeway: u64,
) -> Vec<Validation> {
    let mut validations: Vec<Validation> = Vec::new();
    for &alg in algorithms {
        if let Some(same_family) = validations
            .iter_mut()
            .find(|v| v.algorithms[0].family() == alg.family())
        {
            if !same_family.algorithms.contains(&alg) {
                same_family.algorithms.push(alg);
            }
            continue;
        }
        let mut validation = Validation::new(alg);
        // `https://id.example.com` and `https://id.example.com/` name one issuer.
        let other_spelling = match issuer.strip_suffix('/') {
            Some(trimmed) => trimmed.to_owned(),
            None => format!("{issuer}/"),
        };
        validation.set_issuer(&[issuer, other_spelling.as_str()]);
        validation.set_audience(audiences);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = leeway;
        validations.push(validation);
    }
    validations
}

/// How often [`VerifierBuilder::revocation_feed`] polls when given no interval.
pub const DEFAULT_REVOCATION_INTERVAL: Duration = Duration::from_secs(10);

/// Builds a [`Verifier`]; see [`Verifier::builder`].
pub struct VerifierBuilder {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    typ: Option<String>,
    source: Option<Source>,
    jwks_options: JwksOptions,
    allow_insecure_http: bool,
    allowed_jwks_origins: Vec<String>,
    revocation_interval: Option<Duration>,
    verified_cache: usize,
}

impl VerifierBuilder {
    /// Remember up to `capacity` tokens that passed verification (default
    /// [`DEFAULT_VERIFIED_CACHE`], 4096; 0 turns it off), so a token presented again
    /// skips its signature check: a SHA-256 and a lookup instead of about 40 µs of
    /// Ed25519. Expiry, `nbf`, the revocation feed and the trusted keys are checked again
    /// on every use, so a remembered token stops passing exactly when it would have.
    pub fn verified_cache(mut self, capacity: usize) -> Self {
        self.verified_cache = capacity;
        self
    }

    /// Also poll the issuer's revocation feed (`{issuer}/v1/auth/revocations`) every
    /// `interval` (`None`: [`DEFAULT_REVOCATION_INTERVAL`], 10 s) in the background, and
    /// refuse tokens of the sessions it lists (`VerifyError::SessionEnded`, a 401
    /// `invalid_token`), so a logout reaches this service within about `interval` while it
    /// still verifies offline. A failed poll keeps the last good list and logs a warning.
    /// The feed URL follows the rules of [`jwks_url`](Self::jwks_url). Needs a tokio
    /// runtime.
    pub fn revocation_feed(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.revocation_interval = Some(interval.into().unwrap_or(DEFAULT_REVOCATION_INTERVAL));
        self
    }

    /// Accept any of these audiences (replaces the one given to `builder`).
    pub fn audiences(mut self, audiences: &[&str]) -> Self {
        self.audiences = audiences.iter().map(|aud| (*aud).to_owned()).collect();
        self
    }

    /// The algorithm allow-list (default: EdDSA only). The token's `alg` must be in it
    /// and fit the key (its family, and the JWK's own `alg` when it has one); the header
    /// alone never decides. Key families may be mixed, e.g. `&[EdDSA, ES256]` with a
    /// JWKS holding an Ed25519 and a P-256 key.
    pub fn algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = algorithms.to_vec();
        self
    }

    /// Clock leeway for `exp` and `nbf`, seconds (default 60).
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.leeway = seconds;
        self
    }

    /// The required `typ` header (default `at+jwt`); `None` accepts any.
    pub fn typ(mut self, typ: Option<&str>) -> Self {
        self.typ = typ.map(str::to_owned);
        self
    }

    /// Trust one Ed25519 public key (PEM `PUBLIC KEY`), whatever the token's `kid`.
    pub fn pem(mut self, pem: &str) -> Self {
        self.source = Some(Source::Pem(pem.to_owned()));
        self
    }

    /// Trust the keys of a JWKS document, fetched and cached. The URL must be
    /// `https://`, or `http://` to a loopback host (127.0.0.0/8, `::1`, `localhost`)
    /// unless [`allow_insecure_http`](Self::allow_insecure_http) is called; redirects are
    /// followed only on the same origin, and a response over
    /// [`MAX_KEYS_RESPONSE_LEN`](crate::MAX_KEYS_RESPONSE_LEN) is refused.
    pub fn jwks_url(mut self, url: &str) -> Self {
        self.source = Some(Source::JwksUrl(url.to_owned()));
        self
    }

    /// Trust the keys of the JWKS named by the issuer's OpenID discovery document
    /// (`{issuer}/.well-known/openid-configuration`). The issuer URL follows the rules
    /// of [`jwks_url`](Self::jwks_url), and so does the document's `jwks_uri`, which
    /// must also be on the issuer's origin unless
    /// [`allow_jwks_origin`](Self::allow_jwks_origin) allows its own.
    pub fn discovery(mut self) -> Self {
        self.source = Some(Source::Discovery);
        self
    }

    /// Accept a discovered `jwks_uri` on this origin (`scheme://host[:port]`, e.g.
    /// `"https://keys.example.com"`) besides the issuer's own; call once per origin.
    /// By default a `jwks_uri` on another origin is refused (logged as a warning; requests
    /// then get [`VerifyError::KeysUnavailable`], a 503 from the extractors).
    pub fn allow_jwks_origin(mut self, origin: &str) -> Self {
        self.allowed_jwks_origins.push(origin.to_owned());
        self
    }

    /// Opt out of the https requirement: allow plain `http://` JWKS, discovery and
    /// `jwks_uri` URLs on any host, not only loopback ones. Anyone on the network path
    /// can then substitute their own keys; for tests and trusted private networks only.
    pub fn allow_insecure_http(mut self) -> Self {
        self.allow_insecure_http = true;
        self
    }

    /// Timeouts, cache bounds and refetch rate for remote keys.
    pub fn jwks_options(mut self, options: JwksOptions) -> Self {
        self.jwks_options = options;
        self
    }

    /// Builds the verifier. Key source URLs are checked first (see
    /// [`jwks_url`](Self::jwks_url)). Remote keys are fetched once now; if that fails the
    /// failure is logged and the keys are fetched again when a token needs them, so a
    /// service can start before its issuer.
    pub async fn build(self) -> Result<Verifier, InitError> {
        if self.algorithms.is_empty() {
            return Err(InitError::NoAlgorithms);
        }
        let validations = validations(&self.algorithms, &self.issuer, &self.audiences, self.leeway);
        let insecure = self.allow_insecure_http;
        let remote =
            |source| RemoteKeys::new(source, insecure, self.issuer.clone(), self.jwks_options);

        let (keys, remote) = match self.source.as_ref().ok_or(InitError::NoKeySource)? {
            Source::Pem(pem) => {
                let key = DecodingKey::from_ed_pem(pem.as_bytes()).map_err(InitError::BadPem)?;
                let keys = KeySet {
                    by_kid: HashMap::new(),
                    any_kid: Some(Key { key, alg: None }),
                    generation: next_generation(),
                    jwks: None,
                };
                (keys, None)
            }
            Source::JwksUrl(url) => {
                let url = http::check_url(url, insecure)?;
                (KeySet::default(), Some(remote(KeySource::JwksUrl(url))?))
            }
            Source::Discovery => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                let url = http::check_url(&url, insecure)?;
                let allowed_jwks_origins = self
                    .allowed_jwks_origins
                    .iter()
                    .map(|origin| http::parse_origin(origin, insecure))
                    .collect::<Result<_, _>>()?;
                let source = KeySource::Discovery {
                    url,
                    allowed_jwks_origins,
                };
                (KeySet::default(), Some(remote(source)?))
            }
        };
        let revoked = match self.revocation_interval {
            Some(interval) => {
                let url = format!("{}/v1/auth/revocations", self.issuer.trim_end_matches('/'));
                let url = http::check_url(&url, insecure)?;
                let http = HttpClient::new(self.jwks_options.timeout)?;
                let revoked = revocations::shared();
                tokio::spawn(revocations::poll(
                    http,
                    url,
                    interval.max(Duration::from_millis(100)),
                    Arc::downgrade(&revoked),
                ));
                Some(revoked)
            }
            None => None,
        };
        let verifier = Verifier {
            validations,
            algorithms: self.algorithms,
            typ: self.typ,
            keys: RwLock::new(Arc::new(keys)),
            remote,
            revoked,
            verified: VerifiedTokens::new(self.verified_cache),
        };
        if let Some(remote) = &verifier.remote
            && let Err(FetchError::IssuerMismatch {
                configured,
                discovered,
            }) = remote
                .refresh_initial(&verifier.keys, &verifier.algorithms)
                .await
        {
            return Err(InitError::IssuerMismatch {
                configured,
                discovered,
            });
        }
        Ok(verifier)
    }
}

/// Validates access tokens of one issuer for one or more audiences.
pub struct Verifier {
    /// One per key family of `algorithms`.
    validations: Vec<Validation>,
    /// The allow-list.
    algorithms: Vec<Algorithm>,
    typ: Option<String>,
    keys: SharedKeys,
    remote: Option<RemoteKeys>,
    /// With [`VerifierBuilder::revocation_feed`]: the sessions known to have ended.
    revoked: Option<Arc<RevokedSessions>>,
    /// Tokens already verified; see [`VerifierBuilder::verified_cache`].
    verified: Option<VerifiedTokens>,
}

impl Verifier {
    /// A builder for tokens of `issuer` meant for `audience`, with the defaults: EdDSA
    /// only, `typ: at+jwt`, 60 seconds of leeway.
    ///
    /// - `issuer` is authgate's `AUTHGATE_ISSUER`, the `iss` of its tokens and the base
    ///   of its discovery document (`http://127.0.0.1:8080` by default); a trailing slash
    ///   makes no difference, any other difference fails [`VerifierBuilder::build`].
    /// - `audience` is authgate's `AUTHGATE_AUDIENCE` (default `authgate`), the `aud` of
    ///   every token it issues, not the name of the service that verifies them.
    pub fn builder(issuer: &str, audience: &str) -> VerifierBuilder {
        VerifierBuilder {
            issuer: issuer.to_owned(),
            audiences: vec![audience.to_owned()],
            algorithms: vec![Algorithm::EdDSA],
            leeway: 60,
            typ: Some(ACCESS_TOKEN_TYPE.to_owned()),
            source: None,
            jwks_options: JwksOptions::default(),
            allow_insecure_http: false,
            allowed_jwks_origins: Vec::new(),
            revocation_interval: None,
            verified_cache: DEFAULT_VERIFIED_CACHE,
        }
    }

    /// A verifier with the defaults and no keys yet; hand it keys with
    /// [`Verifier::set_keys`] (authgate does, from its own key ring).
    pub fn new(issuer: &str, audience: &str) -> Self {
        let algorithms = vec![Algorithm::EdDSA];
        Self {
            validations: validations(&algorithms, issuer, &[audience.to_owned()], 60),
            algorithms,
            typ: Some(ACCESS_TOKEN_TYPE.to_owned()),
            keys: RwLock::default(),
            remote: None,
            revoked: None,
            verified: VerifiedTokens::new(DEFAULT_VERIFIED_CACHE),
        }
    }

    /// Clock leeway in seconds for `exp` and `nbf`.
    pub fn with_leeway(mut self, seconds: u64) -> Self {
        for validation in &mut self.validations {
            validation.leeway = seconds;
        }
        self
    }

    /// How many verified tokens to remember; see [`VerifierBuilder::verified_cache`].
    pub fn with_verified_cache(mut self, capacity: usize) -> Self {
        self.verified = VerifiedTokens::new(capacity);
        self
    }

    /// Replaces the trusted keys with the signing keys of `jwks` that carry a `kid`
    /// (the same keys again change nothing).
    pub fn set_keys(&self, jwks: &JwkSet) {
        KeySet::install(&self.keys, KeySet::from_jwks(jwks, &self.algorithms));
    }

    fn current_keys(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Verifies with the keys at hand, never fetching.
    pub fn verify_cached(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        self.verify_cached_as(token)
    }

    /// [`Verifier::verify_cached`] into a claims type of your own.
    pub fn verify_cached_as<T: DeserializeOwned>(&self, token: &str) -> Result<T, VerifyError> {
        let (alg, kid) = self.check_header(token)?;
        self.decode(token, alg, kid.as_deref())
    }

    /// Verifies a token, fetching keys first when the remote key cache has expired or
    /// the token names a `kid` not seen yet (at a bounded rate).
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        self.verify_as(token).await
    }

    /// [`Verifier::verify`] into a claims type of your own, e.g. [`crate::Claims`].
    pub async fn verify_as<T: DeserializeOwned>(&self, token: &str) -> Result<T, VerifyError> {
        let (alg, kid) = self.check_header(token)?;
        let Some(remote) = &self.remote else {
            return self.decode(token, alg, kid.as_deref());
        };
        remote.refresh_if_stale(&self.keys, &self.algorithms).await;
        match self.decode(token, alg, kid.as_deref()) {
            Err(VerifyError::UnknownKey) => {
                let kid = kid.ok_or(VerifyError::UnknownKey)?;
                remote
                    .refresh_for_unknown_kid(&kid, &self.keys, &self.algorithms)
                    .await;
                if self.current_keys().is_empty() {
                    return Err(VerifyError::KeysUnavailable);
                }
                self.decode(token, alg, Some(&kid))
            }
            other => other,
        }
    }

    /// Size, `typ` and algorithm checks that need no key; returns the `alg` and `kid`.
    fn check_header(&self, token: &str) -> Result<(Algorithm, Option<String>), VerifyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::TooLong);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if let Some(required) = &self.typ {
            let typ_ok = header.typ.as_deref().is_some_and(|typ| {
                let typ = typ.strip_prefix("application/").unwrap_or(typ);
                typ.eq_ignore_ascii_case(required)
            });
            if !typ_ok {
                return Err(VerifyError::WrongType);
            }
        }
        if !self.algorithms.contains(&header.alg) {
            return Err(VerifyError::AlgorithmNotAllowed);
        }
        Ok((header.alg, header.kid))
    }

    /// Verifies `token` (its header already checked) and checks its session against the
    /// revocation feed: from memory when this key set verified it before, else with
    /// [`Verifier::check_signature`].
    fn decode<T: DeserializeOwned>(
        &self,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<T, VerifyError> {
        let keys = self.current_keys();
        let feed_version = self.revoked.as_ref().map(|revoked| revoked.version());
        let Some(cache) = &self.verified else {
            let claims = self.check_signature(token, alg, kid, &keys)?;
            self.check_feed_of(token)?;
            return Ok(claims);
        };
        let digest = VerifiedTokens::digest(token);
        if let Some(known) = cache
            .get(&digest)
            .filter(|known| known.keys_generation == keys.generation)
        {
            // Claims before times, in jsonwebtoken's order, so each token gets the same
            // refusal either way.
            let claims = serde_json::from_slice::<T>(&known.claims)
                .map_err(|e| VerifyError::BadClaims(e.to_string()))?;
            self.check_times(known.exp, known.nbf)?;
            // The feed is looked at again only when it has listed sessions since.
            if known.feed_version != feed_version {
                self.check_feed(known.sid)?;
                cache.feed_checked(&digest, feed_version);
            }
            return Ok(claims);
        }
        let claims = self.check_signature(token, alg, kid, &keys)?;
        match Verified::of(token, keys.generation, feed_version) {
            Some(verified) => {
                self.check_feed(verified.sid)?;
                cache.insert(digest, verified);
            }
            None => self.check_feed_of(token)?,
        }
        Ok(claims)
    }

    /// [`Verifier::check_feed`] for a token not remembered: its `sid` read from the
    /// payload, only when there is a feed to look it up in.
    fn check_feed_of(&self, token: &str) -> Result<(), VerifyError> {
        self.check_feed(self.revoked.as_ref().and_then(|_| session_of(token)))
    }

    /// Refuses a token of a session the revocation feed lists.
    fn check_feed(&self, sid: Option<Uuid>) -> Result<(), VerifyError> {
        match (&self.revoked, sid) {
            (Some(revoked), Some(sid)) if revoked.contains(&sid) => Err(VerifyError::SessionEnded),
            _ => Ok(()),
        }
    }

    /// `exp` and `nbf` of a token verified before, against the clock now, with the
    /// leeway and comparisons jsonwebtoken's own validation uses. Every validation has
    /// the same leeway and checks both (see [`validations`]).
    fn check_times(&self, exp: u64, nbf: u64) -> Result<(), VerifyError> {
        let leeway = self
            .validations
            .first()
            .map_or(0, |validation| validation.leeway);
        let now = jsonwebtoken::get_current_timestamp();
        if exp < now.saturating_sub(leeway) {
            return Err(VerifyError::Expired);
        }
        if nbf > now.saturating_add(leeway) {
            return Err(VerifyError::NotYetValid);
        }
        Ok(())
    }

    /// Verifies with the key of `kid`, which must fit the header's `alg`: same family,
    /// and the JWK's own `alg` when it names one.
    fn check_signature<T: DeserializeOwned>(
        &self,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
        keys: &KeySet,
    ) -> Result<T, VerifyError> {
        let key = keys.get(kid).ok_or(VerifyError::UnknownKey)?;
        let family = key.key.family();
        if alg.family() != family || key.alg.is_some_and(|pinned| pinned != alg) {
            return Err(VerifyError::AlgorithmNotAllowed);
        }
        let validation = self
            .validations
            .iter()
            .find(|validation| validation.algorithms[0].family() == family)
            .ok_or(VerifyError::AlgorithmNotAllowed)?;
        jsonwebtoken::decode::<T>(token, &key.key, validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => VerifyError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    VerifyError::AlgorithmNotAllowed
                }
                ErrorKind::ExpiredSignature => VerifyError::Expired,
                ErrorKind::ImmatureSignature => VerifyError::NotYetValid,
                ErrorKind::InvalidIssuer => VerifyError::WrongIssuer,
                ErrorKind::InvalidAudience => VerifyError::WrongAudience,
                ErrorKind::MissingRequiredClaim(claim) => VerifyError::BadClaims(claim.clone()),
                ErrorKind::Json(e) => VerifyError::BadClaims(e.to_string()),
                _ => VerifyError::Malformed,
            })
    }
}

/// The payload's JSON of a token whose signature has been checked.
fn payload_of(token: &str) -> Option<Vec<u8>> {
    let payload = token.split('.').nth(1)?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
}

impl Verified {
    /// What to remember of a token that has just passed every check: `None` if its
    /// claims are over [`MAX_REMEMBERED_CLAIMS`] (authgate's are about 400 bytes) or its
    /// `exp` or `nbf` is not a whole number, which jsonwebtoken accepts but this shortcut
    /// does not need to.
    fn of(token: &str, keys_generation: u64, feed_version: Option<u64>) -> Option<Self> {
        #[derive(serde::Deserialize)]
        struct Checked {
            exp: u64,
            nbf: u64,
            sid: Option<Uuid>,
        }
        let payload = payload_of(token).filter(|claims| claims.len() <= MAX_REMEMBERED_CLAIMS)?;
        let checked = serde_json::from_slice::<Checked>(&payload).ok()?;
        Some(Self {
            keys_generation,
            exp: checked.exp,
            nbf: checked.nbf,
            sid: checked.sid,
            feed_version,
            claims: payload.into(),
        })
    }
}

/// The `sid` claim of a token whose signature has been checked (the payload is read a
/// second time, as a tiny struct, so any claims type `T` works with the feed).
fn session_of(token: &str) -> Option<Uuid> {
    #[derive(serde::Deserialize)]
    struct Sid {
        sid: Option<Uuid>,
    }
    serde_json::from_slice::<Sid>(&payload_of(token)?).ok()?.sid
}
