//! Shared by the verify crate's test binaries.
#![allow(dead_code)]

pub mod corpus;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// RFC 8037 appendix A.1 Ed25519 key pair: a public test vector.
pub const ISSUER_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
pub const ISSUER_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";
pub const ISSUER_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "api";

pub fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

pub fn claims() -> Value {
    let now = now();
    json!({
        "iss": ISSUER, "sub": uuid::Uuid::new_v4(), "aud": AUDIENCE,
        "exp": now + 300, "iat": now, "nbf": now,
        "jti": uuid::Uuid::new_v4(), "sid": uuid::Uuid::new_v4(),
        "email_verified": true, "roles": ["support"],
    })
}

pub fn jwk(kid: &str, x: &str) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"})
}

/// A token signed by `private_pem` under `kid`, as authgate makes them.
pub fn token_signed_by(private_pem: &str, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid.into());
    let key = EncodingKey::from_ed_pem(private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

pub fn issuer_token(kid: &str, claims: &Value) -> String {
    token_signed_by(ISSUER_PRIVATE_PEM, kid, claims)
}
