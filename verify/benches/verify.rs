//! Verification throughput of `Verifier` against a bare `jsonwebtoken::decode` of the
//! same token with the same checks: the verifier's own overhead on a token's first
//! verification (the verified-token cache off) and on a token seen again (the cache on,
//! the default); and the cost of a revocation feed of 100,000 ended sessions, served by a
//! local HTTP server and loaded by the verifier's own poller, in both cases.
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
    let first_time = Verifier::new("http://127.0.0.1:8080", "authgate").with_verified_cache(0);
    first_time.set_keys(&jwks);

    let mut group = c.benchmark_group("verify an EdDSA access token");
    group.bench_function("jsonwebtoken::decode (bare)", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<AccessClaims>(black_box(&token), &key, &validation).unwrap()
        })
    });
    group.bench_function("Verifier::verify_cached, first verification", |b| {
        b.iter(|| first_time.verify_cached(black_box(&token)).unwrap())
    });
    group.bench_function("Verifier::verify_cached, token seen before", |b| {
        b.iter(|| verifier.verify_cached(black_box(&token)).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("revocation feed");
    for (cache, case) in [(0, "first verification"), (4096, "token seen before")] {
        let (issuer, with_feed) = verifier_with_feed(100_000, cache);
        let without_feed = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(
                Verifier::builder(&issuer, "authgate")
                    .pem(PUBLIC_PEM)
                    .verified_cache(cache)
                    .build(),
            )
            .unwrap();
        let mut claims = claims.clone();
        claims["iss"] = issuer.into();
        let token = jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_ed_pem(PRIVATE_PEM.as_bytes()).unwrap(),
        )
        .unwrap();
        group.bench_function(format!("Verifier::verify_cached, {case}, no feed"), |b| {
            b.iter(|| without_feed.verify_cached(black_box(&token)).unwrap())
        });
        group.bench_function(
            format!("Verifier::verify_cached, {case}, 100,000 revoked sessions loaded"),
            |b| b.iter(|| with_feed.verify_cached(black_box(&token)).unwrap()),
        );
    }
    group.finish();
}

const PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";

/// A verifier (remembering up to `cache` verified tokens) whose feed poller has loaded
/// `count` revoked sessions from a local issuer, and that issuer.
fn verifier_with_feed(count: usize, cache: usize) -> (String, Verifier) {
    use poem::{Route, Server, get, handler, listener::TcpListener, web::Json};
    let runtime = Box::leak(Box::new(tokio::runtime::Runtime::new().unwrap()));
    let revoked: Vec<_> = (0..count)
        .map(|_| json!({"sid": uuid::Uuid::new_v4(), "ended_at": "2026-12-02T00:00:00Z"}))
        .collect();
    let first = revoked[0]["sid"]
        .as_str()
        .unwrap()
        .parse::<uuid::Uuid>()
        .unwrap();
    let feed = json!({"revoked": revoked, "cursor": "c"});
    // The whole list first, then (with `after`) only what is new: nothing, as authgate
    // answers when no session ended since.
    #[handler]
    fn revocations(
        feed: poem::web::Data<&serde_json::Value>,
        query: poem::web::Query<std::collections::HashMap<String, String>>,
    ) -> Json<serde_json::Value> {
        if query.contains_key("after") {
            return Json(json!({"revoked": [], "cursor": "c"}));
        }
        Json(feed.0.clone())
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let app = poem::EndpointExt::data(
        Route::new().at("/v1/auth/revocations", get(revocations)),
        feed,
    );
    runtime.spawn(Server::new(TcpListener::bind(format!("127.0.0.1:{port}"))).run(app));
    let issuer = format!("http://127.0.0.1:{port}");
    runtime.block_on(async {
        let verifier = Verifier::builder(&issuer, "authgate")
            .pem(PUBLIC_PEM)
            .allow_insecure_http()
            .revocation_feed(std::time::Duration::from_millis(100))
            .verified_cache(cache)
            .build()
            .await
            .unwrap();
        // Loaded once a token of a listed session is refused.
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let listed = json!({"iss": issuer, "aud": "authgate", "sub": uuid::Uuid::new_v4(),
            "sid": first, "jti": uuid::Uuid::new_v4(), "iat": now, "nbf": now, "exp": now + 3600});
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        let token = jsonwebtoken::encode(
            &header,
            &listed,
            &EncodingKey::from_ed_pem(PRIVATE_PEM.as_bytes()).unwrap(),
        )
        .unwrap();
        for _ in 0..600 {
            if verifier.verify_cached(&token).is_err() {
                return (issuer.clone(), verifier);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the feed was not loaded");
    })
}

criterion_group!(benches, bench);
criterion_main!(benches);
