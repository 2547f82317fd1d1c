use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::DeserializeOwned;

use crate::jwks::{JwksOptions, RemoteKeys};
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
}

/// The keys a verifier trusts: by `kid`, or one key for every token (static PEM).
#[derive(Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, DecodingKey>,
    any_kid: Option<DecodingKey>,
}

impl KeySet {
    /// The usable signing keys of `jwks` that carry a `kid` and fit `algorithms`.
    pub(crate) fn from_jwks(jwks: &JwkSet, algorithms: &[Algorithm]) -> Self {
        let by_kid =
            jwks.keys
                .iter()
                .filter(|jwk| {
                    let for_signing =
                        jwk.common.public_key_use.as_ref().is_none_or(|usage| {
                            *usage == jsonwebtoken::jwk::PublicKeyUse::Signature
                        });
                    let alg_allowed = jwk
                        .common
                        .key_algorithm
                        .and_then(|alg| serde_json::to_value(alg).ok())
                        .and_then(|alg| alg.as_str()?.parse::<Algorithm>().ok())
                        .is_none_or(|alg| algorithms.contains(&alg));
                    for_signing && alg_allowed
                })
                .filter_map(|jwk| {
                    let kid = jwk.common.key_id.clone()?;
                    Some((kid, DecodingKey::from_jwk(jwk).ok()?))
                })
                .collect();
        Self {
            by_kid,
            any_kid: None,
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

    fn get(&self, kid: Option<&str>) -> Option<&DecodingKey> {
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

/// Builds a [`Verifier`]; see [`Verifier::builder`].
pub struct VerifierBuilder {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    typ: Option<String>,
    source: Option<Source>,
    jwks_options: JwksOptions,
}

impl VerifierBuilder {
    /// Accept any of these audiences (replaces the one given to `builder`).
    pub fn audiences(mut self, audiences: &[&str]) -> Self {
        self.audiences = audiences.iter().map(|aud| (*aud).to_owned()).collect();
        self
    }

    /// The algorithm allow-list (default: EdDSA only). The token's `alg` must be in it
    /// and fit the key; the header alone never decides.
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

    /// Trust the keys of a JWKS document, fetched and cached.
    pub fn jwks_url(mut self, url: &str) -> Self {
        self.source = Some(Source::JwksUrl(url.to_owned()));
        self
    }

    /// Trust the keys of the JWKS named by the issuer's OpenID discovery document
    /// (`{issuer}/.well-known/openid-configuration`).
    pub fn discovery(mut self) -> Self {
        self.source = Some(Source::Discovery);
        self
    }

    /// Timeouts, cache bounds and refetch rate for remote keys.
    pub fn jwks_options(mut self, options: JwksOptions) -> Self {
        self.jwks_options = options;
        self
    }

    /// Builds the verifier. Remote keys are fetched once now; if that fails the failure
    /// is logged and the keys are fetched again when a token needs them, so a service
    /// can start before its issuer.
    pub async fn build(self) -> Result<Verifier, InitError> {
        if self.algorithms.is_empty() {
            return Err(InitError::NoAlgorithms);
        }
        let mut validation = Validation::new(self.algorithms[0]);
        validation.algorithms = self.algorithms.clone();
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway;

        let (keys, remote) = match self.source.ok_or(InitError::NoKeySource)? {
            Source::Pem(pem) => {
                let key = DecodingKey::from_ed_pem(pem.as_bytes()).map_err(InitError::BadPem)?;
                let keys = KeySet {
                    by_kid: HashMap::new(),
                    any_kid: Some(key),
                };
                (keys, None)
            }
            Source::JwksUrl(url) => (
                KeySet::default(),
                Some(RemoteKeys::new(
                    Some(url),
                    self.issuer.clone(),
                    self.jwks_options,
                )?),
            ),
            Source::Discovery => (
                KeySet::default(),
                Some(RemoteKeys::new(
                    None,
                    self.issuer.clone(),
                    self.jwks_options,
                )?),
            ),
        };
        let verifier = Verifier {
            validation,
            typ: self.typ,
            keys: RwLock::new(Arc::new(keys)),
            remote,
        };
        if let Some(remote) = &verifier.remote {
            remote
                .refresh_initial(&verifier.keys, &verifier.validation.algorithms)
                .await;
        }
        Ok(verifier)
    }
}

/// Validates access tokens of one issuer for one or more audiences.
pub struct Verifier {
    validation: Validation,
    typ: Option<String>,
    keys: SharedKeys,
    remote: Option<RemoteKeys>,
}

impl Verifier {
    /// A builder for tokens of `issuer` meant for `audience`, with the defaults: EdDSA
    /// only, `typ: at+jwt`, 60 seconds of leeway.
    pub fn builder(issuer: &str, audience: &str) -> VerifierBuilder {
        VerifierBuilder {
            issuer: issuer.to_owned(),
            audiences: vec![audience.to_owned()],
            algorithms: vec![Algorithm::EdDSA],
            leeway: 60,
            typ: Some(ACCESS_TOKEN_TYPE.to_owned()),
            source: None,
            jwks_options: JwksOptions::default(),
        }
    }

    /// A verifier with the defaults and no keys yet; hand it keys with
    /// [`Verifier::set_keys`] (authgate does, from its own key ring).
    pub fn new(issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 60;
        Self {
            validation,
            typ: Some(ACCESS_TOKEN_TYPE.to_owned()),
            keys: RwLock::default(),
            remote: None,
        }
    }

    /// Clock leeway in seconds for `exp` and `nbf`.
    pub fn with_leeway(mut self, seconds: u64) -> Self {
        self.validation.leeway = seconds;
        self
    }

    /// Replaces the trusted keys with the signing keys of `jwks` that carry a `kid`.
    pub fn set_keys(&self, jwks: &JwkSet) {
        let keys = KeySet::from_jwks(jwks, &self.validation.algorithms);
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
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
        let kid = self.check_header(token)?;
        self.decode(token, kid.as_deref())
    }

    /// Verifies a token, fetching keys first when the remote key cache has expired or
    /// the token names a `kid` not seen yet (at a bounded rate).
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        self.verify_as(token).await
    }

    /// [`Verifier::verify`] into a claims type of your own, e.g. [`crate::Claims`].
    pub async fn verify_as<T: DeserializeOwned>(&self, token: &str) -> Result<T, VerifyError> {
        let kid = self.check_header(token)?;
        let Some(remote) = &self.remote else {
            return self.decode(token, kid.as_deref());
        };
        remote
            .refresh_if_stale(&self.keys, &self.validation.algorithms)
            .await;
        match self.decode(token, kid.as_deref()) {
            Err(VerifyError::UnknownKey) => {
                let kid = kid.ok_or(VerifyError::UnknownKey)?;
                remote
                    .refresh_for_unknown_kid(&kid, &self.keys, &self.validation.algorithms)
                    .await;
                if self.current_keys().is_empty() {
                    return Err(VerifyError::KeysUnavailable);
                }
                self.decode(token, Some(&kid))
            }
            other => other,
        }
    }

    /// Size, `typ` and algorithm checks that need no key; returns the `kid`.
    fn check_header(&self, token: &str) -> Result<Option<String>, VerifyError> {
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
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(VerifyError::AlgorithmNotAllowed);
        }
        Ok(header.kid)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        token: &str,
        kid: Option<&str>,
    ) -> Result<T, VerifyError> {
        let keys = self.current_keys();
        let key = keys.get(kid).ok_or(VerifyError::UnknownKey)?;
        jsonwebtoken::decode::<T>(token, key, &self.validation)
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
