//! Remote keys against a local mock JWKS server that counts its fetches.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed step should fail the test"
)]

mod support;

use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authgate_verify::{JwksOptions, Verifier, VerifyError};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Response, Route, get, handler};
use serde_json::{Value, json};
use support::corpus::{ATTACKER_ED25519_PEM, ATTACKER_ED25519_X};
use support::*;

struct Mock {
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    jwks: Mutex<Value>,
    status: AtomicU16,
    delay_ms: AtomicU64,
    cache_control: Mutex<String>,
    issuer: Mutex<String>,
    base: Mutex<String>,
    /// The revocation feed: its sids, and whether it answers.
    revoked: Mutex<Vec<String>>,
    feed_down: std::sync::atomic::AtomicBool,
}

impl Mock {
    fn serve_keys(&self, keys: &[Value]) {
        *self.jwks.lock().unwrap() = json!({ "keys": keys });
    }
    fn fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }
}

#[handler]
async fn jwks(Data(mock): Data<&Arc<Mock>>) -> Response {
    mock.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let delay = mock.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = mock.status.load(Ordering::SeqCst);
    Response::builder()
        .status(poem::http::StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .header("cache-control", mock.cache_control.lock().unwrap().clone())
        .body(mock.jwks.lock().unwrap().to_string())
}

#[handler]
async fn discovery(Data(mock): Data<&Arc<Mock>>) -> Response {
    mock.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    let base = mock.base.lock().unwrap().clone();
    let issuer = mock.issuer.lock().unwrap().clone();
    let document = json!({"issuer": issuer, "jwks_uri": format!("{base}/jwks.json")});
    Response::builder()
        .header("content-type", "application/json")
        .body(document.to_string())
}

#[handler]
async fn revocations(Data(mock): Data<&Arc<Mock>>) -> Response {
    if mock.feed_down.load(Ordering::SeqCst) {
        return Response::builder()
            .status(poem::http::StatusCode::SERVICE_UNAVAILABLE)
            .finish();
    }
    let revoked: Vec<Value> = mock
        .revoked
        .lock()
        .unwrap()
        .iter()
        .map(|sid| json!({"sid": sid, "ended_at": "2026-12-02T15:00:00Z"}))
        .collect();
    Response::builder()
        .header("content-type", "application/json")
        .body(json!({"revoked": revoked, "cursor": "c1"}).to_string())
}

async fn spawn_mock() -> (Arc<Mock>, String) {
    let mock = Arc::new(Mock {
        jwks_fetches: AtomicUsize::new(0),
        discovery_fetches: AtomicUsize::new(0),
        jwks: Mutex::new(json!({"keys": [jwk("k1", ISSUER_X)]})),
        status: AtomicU16::new(200),
        delay_ms: AtomicU64::new(0),
        cache_control: Mutex::new("public, max-age=600".into()),
        issuer: Mutex::new(String::new()),
        base: Mutex::new(String::new()),
        revoked: Mutex::new(Vec::new()),
        feed_down: std::sync::atomic::AtomicBool::new(false),
    });
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    let base = format!("http://{addr}");
    *mock.base.lock().unwrap() = base.clone();
    *mock.issuer.lock().unwrap() = base.clone();
    let app = Route::new()
        .at("/jwks.json", get(jwks))
        .at("/.well-known/openid-configuration", get(discovery))
        .at("/v1/auth/revocations", get(revocations))
        .data(mock.clone());
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    (mock, base)
}

fn fast_options() -> JwksOptions {
    JwksOptions {
        timeout: Duration::from_millis(300),
        min_refetch_interval: Duration::from_secs(30),
        min_cache: Duration::ZERO,
        max_cache: Duration::from_secs(3600),
        default_cache: Duration::from_secs(300),
    }
}

async fn jwks_verifier(base: &str, options: JwksOptions) -> Verifier {
    Verifier::builder(ISSUER, AUDIENCE)
        .jwks_url(&format!("{base}/jwks.json"))
        .jwks_options(options)
        .build()
        .await
        .unwrap()
}

async fn verify_concurrently(
    verifier: &Arc<Verifier>,
    token: &str,
    requests: usize,
) -> Vec<Result<(), VerifyError>> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..requests {
        let verifier = verifier.clone();
        let token = token.to_owned();
        tasks.spawn(async move { verifier.verify(&token).await.map(|_| ()) });
    }
    tasks.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_with_an_unknown_kid_cause_at_most_one_fetch() {
    let (mock, base) = spawn_mock().await;
    let options = JwksOptions {
        min_refetch_interval: Duration::from_secs(1),
        ..fast_options()
    };
    let verifier = Arc::new(jwks_verifier(&base, options).await);
    assert_eq!(mock.fetches(), 1, "the initial fetch");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // A slow server, so that every request arrives while the fetch is under way.
    mock.delay_ms.store(100, Ordering::SeqCst);
    let token = token_signed_by(ATTACKER_ED25519_PEM, "random-kid", &claims());

    let results = verify_concurrently(&verifier, &token, 1000).await;

    assert!(results.iter().all(|r| *r == Err(VerifyError::UnknownKey)));
    assert_eq!(mock.fetches(), 2, "exactly one fetch for 1000 kid misses");
    // Within the refetch interval, more random kids cause no fetch at all.
    verify_concurrently(&verifier, &token, 100).await;
    assert_eq!(mock.fetches(), 2);
}

#[tokio::test]
async fn a_rotated_in_key_is_fetched_and_accepted_without_a_restart() {
    let (mock, base) = spawn_mock().await;
    let options = JwksOptions {
        min_refetch_interval: Duration::ZERO,
        ..fast_options()
    };
    let verifier = jwks_verifier(&base, options).await;
    let new_token = token_signed_by(ATTACKER_ED25519_PEM, "k2", &claims());
    assert_eq!(
        verifier.verify(&new_token).await.map(|_| ()),
        Err(VerifyError::UnknownKey)
    );

    // The issuer rotates: the new key joins the JWKS.
    mock.serve_keys(&[jwk("k1", ISSUER_X), jwk("k2", ATTACKER_ED25519_X)]);

    assert!(verifier.verify(&new_token).await.is_ok());
    assert!(
        verifier
            .verify(&issuer_token("k1", &claims()))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_last_good_keys_keep_working_when_a_fetch_fails() {
    let (mock, base) = spawn_mock().await;
    *mock.cache_control.lock().unwrap() = "max-age=0".into();
    let options = JwksOptions {
        min_refetch_interval: Duration::ZERO,
        ..fast_options()
    };
    let verifier = jwks_verifier(&base, options).await;
    let token = issuer_token("k1", &claims());
    assert!(verifier.verify(&token).await.is_ok());

    for failure in ["500", "garbage", "empty", "slow"] {
        match failure {
            "500" => mock.status.store(500, Ordering::SeqCst),
            "garbage" => {
                mock.status.store(200, Ordering::SeqCst);
                *mock.jwks.lock().unwrap() = json!("not a jwks");
            }
            "empty" => mock.serve_keys(&[]),
            _ => mock.delay_ms.store(2_000, Ordering::SeqCst),
        }
        let fetches = mock.fetches();
        let started = Instant::now();

        let result = verifier.verify(&token).await;

        assert!(result.is_ok(), "{failure}: {result:?}");
        assert!(
            mock.fetches() > fetches,
            "{failure}: the expired cache was refetched"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{failure}: bounded by the timeout"
        );
    }
}

#[tokio::test]
async fn cache_control_max_age_decides_when_keys_are_refetched() {
    let (mock, base) = spawn_mock().await;
    *mock.cache_control.lock().unwrap() = "max-age=1".into();
    let options = JwksOptions {
        min_refetch_interval: Duration::ZERO,
        ..fast_options()
    };
    let verifier = jwks_verifier(&base, options).await;
    let token = issuer_token("k1", &claims());

    verifier.verify(&token).await.unwrap();
    assert_eq!(mock.fetches(), 1, "fresh keys are not refetched");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    verifier.verify(&token).await.unwrap();
    assert_eq!(mock.fetches(), 2, "stale keys are refetched");

    // A max-age above the configured maximum is clamped to it.
    *mock.cache_control.lock().unwrap() = "max-age=86400".into();
    let clamped = JwksOptions {
        max_cache: Duration::from_secs(1),
        ..options
    };
    let verifier = jwks_verifier(&base, clamped).await;
    let fetches = mock.fetches();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    verifier.verify(&token).await.unwrap();
    assert_eq!(mock.fetches(), fetches + 1);
}

#[tokio::test]
async fn keys_are_found_through_the_issuers_discovery_document() {
    let (mock, base) = spawn_mock().await;
    let claims = json!({"iss": base, "aud": AUDIENCE, "sub": uuid::Uuid::new_v4(), "sid": uuid::Uuid::new_v4(),
        "jti": uuid::Uuid::new_v4(), "iat": now(), "nbf": now(), "exp": now() + 60});
    let verifier = Verifier::builder(&base, AUDIENCE)
        .discovery()
        .build()
        .await
        .unwrap();

    assert!(verifier.verify(&issuer_token("k1", &claims)).await.is_ok());
    assert_eq!(mock.discovery_fetches.load(Ordering::SeqCst), 1);
    assert_eq!(mock.fetches(), 1);
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_fails_the_build_naming_both() {
    let (mock, base) = spawn_mock().await;
    *mock.issuer.lock().unwrap() = "https://someone-else.test".into();
    let refused = Verifier::builder(&base, AUDIENCE)
        .discovery()
        .build()
        .await
        .err()
        .expect("a verifier for another issuer's keys");
    let message = refused.to_string();
    assert!(
        message.contains("https://someone-else.test") && message.contains(&base),
        "{message}"
    );
    assert_eq!(mock.fetches(), 0);
}

#[tokio::test]
async fn an_issuer_configured_with_a_trailing_slash_still_verifies() {
    let (_mock, base) = spawn_mock().await;
    let claims = json!({"iss": base, "aud": AUDIENCE, "sub": uuid::Uuid::new_v4(), "sid": uuid::Uuid::new_v4(),
        "jti": uuid::Uuid::new_v4(), "iat": now(), "nbf": now(), "exp": now() + 60});
    let verifier = Verifier::builder(&format!("{base}/"), AUDIENCE)
        .discovery()
        .build()
        .await
        .unwrap();
    assert!(verifier.verify(&issuer_token("k1", &claims)).await.is_ok());
}

#[tokio::test]
async fn an_issuer_that_was_down_at_start_is_retried_within_a_second() {
    let (mock, base) = spawn_mock().await;
    mock.status.store(503, Ordering::SeqCst);
    // The default 30 s refetch interval does not delay recovery from having no keys.
    let verifier = jwks_verifier(&base, JwksOptions::default()).await;
    let token = issuer_token("k1", &claims());
    assert_eq!(
        verifier.verify(&token).await.map(|_| ()),
        Err(VerifyError::KeysUnavailable)
    );

    mock.status.store(200, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1_050)).await;

    assert!(verifier.verify(&token).await.is_ok());
}

#[tokio::test]
async fn tokens_of_sessions_in_the_revocation_feed_are_refused_and_a_failing_feed_keeps_the_list() {
    let (mock, base) = spawn_mock().await;
    let token_of = |sid: uuid::Uuid| {
        let mut claims = claims();
        claims["iss"] = json!(base);
        claims["sid"] = json!(sid);
        issuer_token("k1", &claims)
    };
    let (ended, live) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let verifier = Verifier::builder(&base, AUDIENCE)
        .discovery()
        .revocation_feed(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    // Verified once, so remembered: the feed must still reach it.
    let seen_before = token_of(ended);
    assert!(verifier.verify(&seen_before).await.is_ok());

    mock.revoked.lock().unwrap().push(ended.to_string());
    let deadline = Instant::now() + Duration::from_secs(3);
    while verifier.verify(&seen_before).await.is_ok() {
        assert!(Instant::now() < deadline, "the feed was not applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        verifier.verify(&token_of(ended)).await.map(|_| ()),
        Err(VerifyError::SessionEnded),
        "a token of that session never seen before"
    );
    let mut fractional = claims();
    fractional["iss"] = json!(base);
    fractional["sid"] = json!(ended);
    fractional["exp"] = json!(now() as f64 + 300.5);
    assert_eq!(
        verifier
            .verify_as::<serde_json::Value>(&issuer_token("k1", &fractional))
            .await
            .map(|_| ()),
        Err(VerifyError::SessionEnded),
        "a token with a fractional exp (never remembered)"
    );
    assert!(verifier.verify(&token_of(live)).await.is_ok());

    mock.feed_down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        verifier.verify(&token_of(ended)).await.map(|_| ()),
        Err(VerifyError::SessionEnded),
        "the last good list is kept while the feed fails"
    );
}
