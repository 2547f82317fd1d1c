//! Verification throughput of `Verifier` against a bare `jsonwebtoken::decode` of the
//! same token with the same checks: the verifier's own overhead.
//!
//! cargo bench -p authgate-verify --bench verify

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark set-up")]

use authgate_verify::{AccessClaims, JwkSet, Verifier};
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::json;
use std::hint::black_box;

const PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
const PUBLIC_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

fn bench(c: &mut Criterion) {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let claims = json!({
        "iss": "http://127.0.0.1:8080", "aud": "authgate", "sub": uuid::Uuid::new_v4(),
        "sid": uuid::Uuid::new_v4(), "jti": uuid::Uuid::new_v4(),
        "iat": now, "nbf": now, "exp": now + 3600,
    });
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some("k1".into());
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_ed_pem(PRIVATE_PEM.as_bytes()).unwrap(),
    )
    .unwrap();

    let key = DecodingKey::from_ed_components(PUBLIC_X).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["http://127.0.0.1:8080"]);
    validation.set_audience(&["authgate"]);
    validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
    validation.validate_nbf = true;

    let verifier = Verifier::new("http://127.0.0.1:8080", "authgate");
    let jwks: JwkSet = serde_json::from_value(json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "x": PUBLIC_X, "kid": "k1", "alg": "EdDSA", "use": "sig"}
    ]}))
    .unwrap();
    verifier.set_keys(&jwks);
    assert!(verifier.verify_cached(&token).is_ok());

    let mut group = c.benchmark_group("verify an EdDSA access token");
    group.bench_function("jsonwebtoken::decode (bare)", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<AccessClaims>(black_box(&token), &key, &validation).unwrap()
        })
    });
    group.bench_function("Verifier::verify_cached", |b| {
        b.iter(|| verifier.verify_cached(black_box(&token)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
