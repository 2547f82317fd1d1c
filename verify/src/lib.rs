//! Offline validation of authgate access tokens (RFC 9068 JWT profile, EdDSA).
//!
//! A [`Verifier`] holds the issuer's public keys by `kid` and an explicit algorithm
//! allow-list; the token's own header never chooses the algorithm or the key source
//! (`jku`, `x5u`, `jwk` and `x5c` are ignored). It depends on no database or
//! password-hashing code, so downstream services can use it alone.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

pub use jsonwebtoken::Algorithm;
pub use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{DecodingKey, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The `typ` header of an RFC 9068 access token.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Tokens longer than this are refused before any parsing: ours are ~400 bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Claims of an authgate access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// The user id.
    pub sub: Uuid,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    /// Unique per token.
    pub jti: Uuid,
    /// The session the token was issued in; it ends on logout, revocation or theft detection.
    pub sid: Uuid,
}

/// `aud` is a single string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Why a token was refused; meant for logs, not for the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token type is not {ACCESS_TOKEN_TYPE}")]
    WrongType,
    #[error("algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("token has no kid or an unknown kid")]
    UnknownKey,
    #[error("signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("missing or malformed claim: {0}")]
    BadClaims(String),
}

/// Validates access tokens of one issuer for one audience.
///
/// Keys can be replaced while the verifier is shared ([`Verifier::set_keys`]), so a key
/// rotation is picked up without a restart.
pub struct Verifier {
    keys: RwLock<Arc<HashMap<String, DecodingKey>>>,
    validation: Validation,
}

impl Verifier {
    /// A verifier for tokens of `issuer` meant for `audience`, allowing EdDSA only and
    /// 60 seconds of clock leeway on `exp` and `nbf`.
    pub fn new(issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 60;
        Self {
            keys: RwLock::new(Arc::default()),
            validation,
        }
    }

    /// Clock leeway in seconds for `exp` and `nbf`.
    pub fn with_leeway(mut self, seconds: u64) -> Self {
        self.validation.leeway = seconds;
        self
    }

    /// Replaces the algorithm allow-list.
    pub fn with_algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.validation.algorithms = algorithms.to_vec();
        self
    }

    /// Replaces the trusted keys with the signing keys of `jwks` that carry a `kid`.
    /// Keys this verifier cannot use are skipped.
    pub fn set_keys(&self, jwks: &JwkSet) {
        let keys: HashMap<String, DecodingKey> = jwks
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((kid, key))
            })
            .collect();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }

    /// The `kid`s currently trusted.
    pub fn key_ids(&self) -> HashSet<String> {
        self.current_keys().keys().cloned().collect()
    }

    fn current_keys(&self) -> Arc<HashMap<String, DecodingKey>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Checks signature, algorithm, `typ`, `iss`, `aud`, `exp` and `nbf`, and returns the claims.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::TooLong);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        let typ_ok = header.typ.as_deref().is_some_and(|typ| {
            typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)
                || typ.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(VerifyError::WrongType);
        }
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(VerifyError::AlgorithmNotAllowed);
        }
        let keys = self.current_keys();
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| keys.get(kid))
            .ok_or(VerifyError::UnknownKey)?;
        jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => VerifyError::BadSignature,
                ErrorKind::InvalidAlgorithm => VerifyError::AlgorithmNotAllowed,
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

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    // A fixed Ed25519 test key pair (RFC 8037 appendix A.1).
    const PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
    const PUBLIC_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn verifier() -> Verifier {
        let verifier = Verifier::new("https://issuer.test", "api");
        let jwks: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": PUBLIC_X, "kid": "k1", "alg": "EdDSA", "use": "sig"}
        ]}))
        .unwrap();
        verifier.set_keys(&jwks);
        verifier
    }

    fn claims() -> serde_json::Value {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        serde_json::json!({
            "iss": "https://issuer.test", "sub": Uuid::new_v4(), "aud": "api",
            "exp": now + 300, "iat": now, "nbf": now, "jti": Uuid::new_v4(), "sid": Uuid::new_v4(),
        })
    }

    fn sign(header: Header, claims: &serde_json::Value) -> String {
        let key = EncodingKey::from_ed_pem(PRIVATE_PEM.as_bytes()).unwrap();
        encode(&header, claims, &key).unwrap()
    }

    fn good_header() -> Header {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYPE.into());
        header.kid = Some("k1".into());
        header
    }

    #[test]
    fn a_signed_token_verifies_and_yields_its_claims() {
        let claims = claims();
        let verified = verifier().verify(&sign(good_header(), &claims)).unwrap();
        assert_eq!(serde_json::to_value(verified).unwrap(), claims);
    }

    #[test]
    fn a_token_with_the_wrong_typ_is_refused() {
        let mut header = good_header();
        header.typ = Some("JWT".into());
        assert_eq!(
            verifier().verify(&sign(header, &claims())),
            Err(VerifyError::WrongType)
        );
    }

    #[test]
    fn a_token_with_an_unknown_kid_is_refused() {
        let mut header = good_header();
        header.kid = Some("other".into());
        assert_eq!(
            verifier().verify(&sign(header, &claims())),
            Err(VerifyError::UnknownKey)
        );
    }

    #[test]
    fn expired_wrong_issuer_and_wrong_audience_are_refused() {
        let verifier = verifier();
        let mut expired = claims();
        expired["exp"] = serde_json::json!(expired["iat"].as_i64().unwrap() - 3600);
        assert_eq!(
            verifier.verify(&sign(good_header(), &expired)),
            Err(VerifyError::Expired)
        );
        let mut issuer = claims();
        issuer["iss"] = "https://evil.test".into();
        assert_eq!(
            verifier.verify(&sign(good_header(), &issuer)),
            Err(VerifyError::WrongIssuer)
        );
        let mut audience = claims();
        audience["aud"] = "other".into();
        assert_eq!(
            verifier.verify(&sign(good_header(), &audience)),
            Err(VerifyError::WrongAudience)
        );
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let token = sign(good_header(), &claims());
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut other = claims();
        other["sub"] = serde_json::json!(Uuid::new_v4());
        let forged = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&other).unwrap(),
        );
        parts[1] = &forged;
        assert_eq!(
            verifier().verify(&parts.join(".")),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn alg_none_and_oversized_tokens_are_refused() {
        let unsigned = format!(
            "{}.{}.",
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                r#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#
            ),
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                serde_json::to_vec(&claims()).unwrap()
            ),
        );
        assert_eq!(verifier().verify(&unsigned), Err(VerifyError::Malformed));
        assert_eq!(
            verifier().verify(&"a".repeat(MAX_TOKEN_LEN + 1)),
            Err(VerifyError::TooLong)
        );
    }
}
