//! The per-request building blocks, on one core: issuing and verifying an access token,
//! making a refresh token, and one argon2id hash at the default (OWASP) cost.
//!
//! cargo bench --bench building_blocks

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark set-up")]

use std::hint::black_box;

use authgate::crypto::password::PasswordHasher;
use authgate::crypto::refresh;
use authgate::crypto::signing::{SigningKey, public_jwk};
use authgate_verify::{AccessClaims, Audience, JwkSet, Verifier};
use criterion::{Criterion, criterion_group, criterion_main};
use uuid::Uuid;

fn claims() -> AccessClaims {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    AccessClaims {
        iss: "http://127.0.0.1:8080".into(),
        sub: Uuid::new_v4(),
        aud: Audience::One("authgate".into()),
        exp: now + 900,
        iat: now,
        nbf: now,
        jti: Uuid::new_v4(),
        sid: Uuid::new_v4(),
        email_verified: false,
        roles: Vec::new(),
        scope: None,
    }
}

fn tokens(c: &mut Criterion) {
    let key = SigningKey::generate();
    let claims = claims();
    c.bench_function("issue an access token (EdDSA sign)", |b| {
        b.iter(|| key.sign_access_token(black_box(&claims)).unwrap())
    });

    let token = key.sign_access_token(&claims).unwrap();
    let verifier = Verifier::new("http://127.0.0.1:8080", "authgate");
    verifier.set_keys(&JwkSet {
        keys: vec![public_jwk(key.kid(), key.public_x())],
    });
    c.bench_function("verify an access token (authgate-verify)", |b| {
        b.iter(|| verifier.verify_cached(black_box(&token)).unwrap())
    });

    c.bench_function("make a refresh token (256 random bits + SHA-256)", |b| {
        b.iter(refresh::generate)
    });
}

fn argon2(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let hasher = PasswordHasher::new(19_456, 2, 1).unwrap();
    let hash = runtime
        .block_on(hasher.hash("correct horse battery".into()))
        .unwrap();
    let mut group = c.benchmark_group("argon2id m=19456 t=2 p=1");
    group.sample_size(20);
    group.bench_function("verify a password", |b| {
        b.iter(|| {
            runtime
                .block_on(hasher.verify("correct horse battery".into(), Some(hash.clone())))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, tokens, argon2);
criterion_main!(benches);
