//! Ed25519 signing keys for access tokens: generation, PKCS#8 PEM, the public JWK and
//! its RFC 7638 thumbprint as `kid`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PKCS#8 PEM Ed25519 private key")]
    Unparsable,
    #[error("signing failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    #[error("no key may sign now (every key is next, retired or revoked)")]
    NoSigner,
}

/// One Ed25519 key pair. `Debug` never shows the private half.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    private_pem: String,
    public_x: String,
    encoding: EncodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn generate() -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(&super::random_bytes::<32>());
        #[allow(clippy::expect_used)] // encoding a valid in-memory key cannot fail
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8 encoding of an Ed25519 key");
        Self::from_dalek(&key, pem.to_string())
    }

    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let key =
            ed25519_dalek::SigningKey::from_pkcs8_pem(pem).map_err(|_| KeyError::Unparsable)?;
        Ok(Self::from_dalek(&key, pem.to_owned()))
    }

    fn from_dalek(key: &ed25519_dalek::SigningKey, private_pem: String) -> Self {
        let public_x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        // The same bytes as the PEM, so from_ed_der cannot disagree with it.
        let encoding = EncodingKey::from_ed_der(
            &key.to_pkcs8_der()
                .map(|d| d.as_bytes().to_vec())
                .unwrap_or_default(),
        );
        let kid = public_jwk_without_kid(&public_x)
            .thumbprint(ThumbprintHash::SHA256)
            .unwrap_or_else(|_| public_x.clone());
        Self {
            kid,
            private_pem,
            public_x,
            encoding,
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn private_pem(&self) -> &str {
        &self.private_pem
    }

    /// The public key, base64url (the JWK `x` member).
    pub fn public_x(&self) -> &str {
        &self.public_x
    }

    /// Signs `claims` as an RFC 9068 access token (`typ: at+jwt`, `alg: EdDSA`, `kid`).
    pub fn sign_access_token(&self, claims: &impl Serialize) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(authgate_verify::ACCESS_TOKEN_TYPE.to_owned());
        header.kid = Some(self.kid.clone());
        let started = std::time::Instant::now();
        let token = jsonwebtoken::encode(&header, claims, &self.encoding);
        crate::telemetry::record_since(crate::telemetry::Phase::Sign, "sign access token", started);
        Ok(token?)
    }
}

fn public_jwk_without_kid(x: &str) -> Jwk {
    Jwk {
        common: CommonParameters::default(),
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: x.to_owned(),
        }),
    }
}

/// The public JWK for a key published under `kid`.
pub fn public_jwk(kid: &str, x: &str) -> Jwk {
    let mut jwk = public_jwk_without_kid(x);
    jwk.common = CommonParameters {
        public_key_use: Some(PublicKeyUse::Signature),
        key_algorithm: Some(KeyAlgorithm::EdDSA),
        key_id: Some(kid.to_owned()),
        ..CommonParameters::default()
    };
    jwk
}

#[cfg(test)]
mod tests {
    use super::*;
    use authgate_verify::{JwkSet, Verifier};

    #[test]
    fn a_signed_token_verifies_against_the_published_jwk() {
        let key = SigningKey::generate();
        let reloaded = SigningKey::from_pem(key.private_pem()).unwrap();
        assert_eq!(reloaded.kid(), key.kid());

        let now = jsonwebtoken::get_current_timestamp() as i64;
        let claims = serde_json::json!({
            "iss": "iss", "aud": "aud", "sub": uuid::Uuid::new_v4(), "sid": uuid::Uuid::new_v4(),
            "jti": uuid::Uuid::new_v4(), "iat": now, "nbf": now, "exp": now + 60,
        });
        let token = reloaded.sign_access_token(&claims).unwrap();
        let verifier = Verifier::new("iss", "aud");
        verifier.set_keys(&JwkSet {
            keys: vec![public_jwk(key.kid(), key.public_x())],
        });
        assert!(verifier.verify_cached(&token).is_ok());
    }

    #[test]
    fn garbage_is_not_a_key() {
        assert!(
            SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
    }
}
