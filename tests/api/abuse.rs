use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, assert_problem, spawn_app_with, str_field};

/// A random address in 10.0.0.0/8, so tests sharing a Redis never share a limit.
fn random_ip() -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    format!("10.{}.{}.{}", bytes[0], bytes[1], bytes[2])
}

async fn post_from(
    app: &TestApp,
    path: &str,
    body: &serde_json::Value,
    forwarded_for: &str,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("x-forwarded-for", forwarded_for)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn login_from(app: &TestApp, email: &str, password: &str, ip: &str) -> reqwest::Response {
    post_from(
        app,
        "/v1/auth/login",
        &json!({"email": email, "password": password}),
        ip,
    )
    .await
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn post_auth_requests_beyond_the_per_ip_quota_get_429_with_retry_after() {
    let app = spawn_app_with(|config| config.rate_limit_per_ip = 3).await;
    let unknown = json!({"refresh_token": "never-issued"});
    for _ in 0..3 {
        assert_eq!(
            app.post_json("/v1/auth/revoke", &unknown).await.status(),
            StatusCode::NO_CONTENT
        );
    }

    let refused = app
        .post_json(
            "/v1/auth/login",
            &json!({"email": "a@example.com", "password": PASSWORD}),
        )
        .await;

    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // One request every 20 s refills a quota of 3 per minute.
    assert!(
        (19..=20).contains(&retry_after(&refused)),
        "{}",
        retry_after(&refused)
    );
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS).await;
    // Reads are not limited.
    let ok = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn x_forwarded_for_is_ignored_unless_trusted() {
    let app = spawn_app_with(|config| config.rate_limit_per_ip = 2).await;
    let unknown = json!({"refresh_token": "never-issued"});
    for _ in 0..2 {
        let response = post_from(&app, "/v1/auth/revoke", &unknown, &random_ip()).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    // A forged header does not buy a new quota.
    let forged = post_from(&app, "/v1/auth/revoke", &unknown, &random_ip()).await;
    assert_eq!(forged.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_trusted_proxy_address_is_the_rightmost_forwarded_one() {
    let app = spawn_app_with(|config| {
        config.rate_limit_per_ip = 2;
        config.trust_forwarded_for = true;
    })
    .await;
    let unknown = json!({"refresh_token": "never-issued"});
    let client = random_ip();
    for _ in 0..2 {
        // The client forges the leftmost entry each time; the proxy appends the real one.
        let chain = format!("{}, {client}", random_ip());
        assert_eq!(
            post_from(&app, "/v1/auth/revoke", &unknown, &chain)
                .await
                .status(),
            StatusCode::NO_CONTENT
        );
    }
    let chain = format!("{}, {client}", random_ip());
    assert_eq!(
        post_from(&app, "/v1/auth/revoke", &unknown, &chain)
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxy has its own quota.
    assert_eq!(
        post_from(&app, "/v1/auth/revoke", &unknown, &random_ip())
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn failed_logins_throttle_that_account_from_that_address_before_any_hashing() {
    let app = spawn_app_with(|config| {
        config.login_max_failures = 3;
        config.trust_forwarded_for = true;
        // A hash slow enough to tell a refused request from a hashed one.
        config.argon2_memory_kib = 8192;
    })
    .await;
    let (email, _) = app.signed_in_user().await;
    let attacker = random_ip();

    let started = Instant::now();
    for _ in 0..3 {
        let response = login_from(&app, &email, "wrong password", &attacker).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let hashed = started.elapsed() / 3;

    let started = Instant::now();
    let refused = login_from(&app, &email, PASSWORD, &attacker).await;
    let refused_in = started.elapsed();

    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        (899..=900).contains(&retry_after(&refused)),
        "{}",
        retry_after(&refused)
    );
    assert!(
        refused_in * 3 < hashed,
        "refused in {refused_in:?}, a hash takes {hashed:?}"
    );
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS).await;
    // The owner from another address, and other accounts from this one, are unaffected.
    assert_eq!(
        login_from(&app, &email, PASSWORD, &random_ip())
            .await
            .status(),
        StatusCode::OK
    );
    let (other, _) = app.signed_in_user().await;
    assert_eq!(
        login_from(&app, &other, PASSWORD, &attacker).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_successful_login_clears_the_failure_count() {
    let app = spawn_app_with(|config| {
        config.login_max_failures = 2;
        config.trust_forwarded_for = true;
    })
    .await;
    let (email, _) = app.signed_in_user().await;
    let ip = random_ip();
    assert_eq!(
        login_from(&app, &email, "wrong password", &ip)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_from(&app, &email, PASSWORD, &ip).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        login_from(&app, &email, "wrong password", &ip)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_from(&app, &email, PASSWORD, &ip).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_is_shed_with_503_while_other_endpoints_keep_answering() {
    let app = spawn_app_with(|config| {
        config.argon2_memory_kib = 8192;
        config.login_max_failures = 1_000_000;
    })
    .await;
    let (email, pair) = app.signed_in_user().await;
    let access = str_field(&pair, "access_token");

    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..300 {
        let client = app.client.clone();
        let url = app.url("/v1/auth/login");
        let body = json!({"email": email, "password": "wrong password"});
        flood.spawn(async move {
            let response = client.post(url).json(&body).send().await.unwrap();
            let retry = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (response.status(), retry)
        });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let me = app.me(&access).await;
    let me_took = started.elapsed();
    let results = flood.join_all().await;

    assert_eq!(me.status(), StatusCode::OK);
    assert!(
        me_took < Duration::from_secs(1),
        "GET /me took {me_took:?} during the flood"
    );
    let shed = results
        .iter()
        .filter(|(status, _)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert!(shed > 0, "nothing was shed");
    for (status, retry) in &results {
        assert!(
            *status == StatusCode::UNAUTHORIZED || *status == StatusCode::SERVICE_UNAVAILABLE,
            "{status}"
        );
        if *status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(retry.as_deref(), Some("1"));
        }
    }
}

#[tokio::test]
async fn unknown_email_and_wrong_password_take_the_same_time() {
    let app = spawn_app_with(|config| {
        config.argon2_memory_kib = 4096;
        config.login_max_failures = 1_000_000;
    })
    .await;
    let (email, _) = app.signed_in_user().await;
    let median = |samples: &mut Vec<Duration>| {
        samples.sort();
        samples[samples.len() / 2]
    };
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for round in 0..15 {
        // Interleaved, so drift in machine load hits both alike.
        for (target, samples) in [
            ("nobody@example.com", &mut unknown),
            (email.as_str(), &mut wrong),
        ] {
            let started = Instant::now();
            let response = app.login(target, &format!("wrong password {round}")).await;
            samples.push(started.elapsed());
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
    }
    let (unknown, wrong) = (median(&mut unknown), median(&mut wrong));
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
    assert!(
        (0.75..=1.33).contains(&ratio),
        "unknown {unknown:?} vs wrong {wrong:?}"
    );
}

#[tokio::test]
async fn two_instances_sharing_redis_enforce_one_limit() {
    // Redis runs on 127.0.0.1:6379 on the project's machines; .ci/run starts it.
    let redis_url =
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let first = spawn_app_with(|config| {
        config.redis_url = Some(redis_url.clone().into());
        config.rate_limit_per_ip = 4;
        config.login_max_failures = 2;
        config.trust_forwarded_for = true;
    })
    .await;
    // A second instance on the same database and the same Redis.
    let second = TestApp::start(first.config.clone()).await;
    let unknown = json!({"refresh_token": "never-issued"});
    let ip = random_ip();
    for app in [&first, &second, &first, &second] {
        assert_eq!(
            post_from(app, "/v1/auth/revoke", &unknown, &ip)
                .await
                .status(),
            StatusCode::NO_CONTENT
        );
    }
    for app in [&first, &second] {
        let refused = post_from(app, "/v1/auth/revoke", &unknown, &ip).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(
            (14..=15).contains(&retry_after(&refused)),
            "{}",
            retry_after(&refused)
        );
    }

    // Every request names a fresh address: Redis outlives this test run.
    let email = format!("user-{}@example.com", uuid::Uuid::new_v4().simple());
    let credentials = json!({"email": email, "password": PASSWORD});
    let registered = post_from(&first, "/v1/auth/register", &credentials, &random_ip()).await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let attacker = random_ip();
    assert_eq!(
        login_from(&first, &email, "wrong password", &attacker)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_from(&second, &email, "wrong password", &attacker)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    for app in [&first, &second] {
        let refused = login_from(app, &email, PASSWORD, &attacker).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!((899..=900).contains(&retry_after(&refused)));
    }
}

/// Sends `count` logins for `email` from `ip` at once, spread over `apps`; the statuses.
async fn concurrent_logins(
    apps: &[&TestApp],
    count: usize,
    email: &str,
    password: &str,
    ip: &str,
) -> Vec<StatusCode> {
    let mut logins = tokio::task::JoinSet::new();
    for n in 0..count {
        let app = apps[n % apps.len()];
        let request = app
            .client
            .post(app.url("/v1/auth/login"))
            .header("x-forwarded-for", ip)
            .json(&json!({"email": email, "password": password}));
        logins.spawn(async move { request.send().await.unwrap().status() });
    }
    logins.join_all().await
}

fn assert_at_most_checked(statuses: &[StatusCode], max_checked: usize) {
    let checked = statuses
        .iter()
        .filter(|status| **status == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|status| **status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(
        checked <= max_checked,
        "{checked} of {} concurrent guesses were checked: {statuses:?}",
        statuses.len()
    );
    assert_eq!(checked + refused, statuses.len(), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_passwords_get_at_most_the_allowed_checks_and_the_rest_429() {
    let app = spawn_app_with(|config| {
        config.login_max_failures = 5;
        config.trust_forwarded_for = true;
    })
    .await;
    let (email, _) = app.signed_in_user().await;
    let attacker = random_ip();

    let statuses = concurrent_logins(&[&app], 40, &email, "wrong password", &attacker).await;

    assert_at_most_checked(&statuses, 5);
    // The owner, from another address, still logs in.
    assert_eq!(
        login_from(&app, &email, PASSWORD, &random_ip())
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_passwords_on_two_instances_sharing_redis_share_one_limit() {
    let redis_url =
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let first = spawn_app_with(|config| {
        config.redis_url = Some(redis_url.clone().into());
        config.login_max_failures = 5;
        config.trust_forwarded_for = true;
    })
    .await;
    let second = TestApp::start(first.config.clone()).await;
    let email = format!("user-{}@example.com", uuid::Uuid::new_v4().simple());
    let credentials = json!({"email": email, "password": PASSWORD});
    let registered = post_from(&first, "/v1/auth/register", &credentials, &random_ip()).await;
    assert_eq!(registered.status(), StatusCode::CREATED);

    let statuses = concurrent_logins(
        &[&first, &second],
        40,
        &email,
        "wrong password",
        &random_ip(),
    )
    .await;

    assert_at_most_checked(&statuses, 5);
}

#[tokio::test]
async fn ipv6_addresses_of_one_64_share_a_rate_limit() {
    let app = spawn_app_with(|config| {
        config.rate_limit_per_ip = 2;
        config.trust_forwarded_for = true;
    })
    .await;
    let unknown = json!({"refresh_token": "never-issued"});
    let prefix = {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        format!("2001:db8:{:x}:{:x}", bytes[0], bytes[1])
    };
    for host in ["1", "2"] {
        let response = post_from(
            &app,
            "/v1/auth/revoke",
            &unknown,
            &format!("{prefix}::{host}"),
        )
        .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    let same_64 = post_from(&app, "/v1/auth/revoke", &unknown, &format!("{prefix}::3")).await;
    assert_eq!(same_64.status(), StatusCode::TOO_MANY_REQUESTS);
    let other_64 = post_from(&app, "/v1/auth/revoke", &unknown, "2001:db8:ffff:ffff::1").await;
    assert_eq!(other_64.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn wrong_passwords_from_one_ipv6_64_share_one_lockout() {
    let app = spawn_app_with(|config| {
        config.login_max_failures = 2;
        config.trust_forwarded_for = true;
    })
    .await;
    let (email, _) = app.signed_in_user().await;
    for host in ["1", "2"] {
        let response = login_from(
            &app,
            &email,
            "wrong password",
            &format!("2001:db8:7:7::{host}"),
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let same_64 = login_from(&app, &email, PASSWORD, "2001:db8:7:7:ffff::3").await;
    assert_eq!(same_64.status(), StatusCode::TOO_MANY_REQUESTS);
    let other_64 = login_from(&app, &email, PASSWORD, "2001:db8:7:8::1").await;
    assert_eq!(other_64.status(), StatusCode::OK);
}
