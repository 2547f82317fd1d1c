//! Metrics, request ids and logs, as an operator reads them.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, fresh_database_url, spawn_app, str_field};

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name_and_labels} missing from:\n{text}"))
}

#[tokio::test]
async fn metrics_count_requests_logins_refreshes_and_revocations() {
    let app = spawn_app().await;
    let (email, pair) = app.signed_in_user().await;
    assert_eq!(
        app.login(&email, "wrong password").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let spent = str_field(&pair, "refresh_token");
    let next: Value = app.refresh(&spent).await.json().await.unwrap();
    app.refresh(&spent).await; // inside the grace window
    app.revoke(&str_field(&next, "refresh_token")).await;

    let response = app.client.get(app.url("/metrics")).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    assert_eq!(metric(&text, r#"authgate_logins_total{outcome="ok"}"#), 1.0);
    assert_eq!(
        metric(
            &text,
            r#"authgate_logins_total{outcome="invalid_credentials"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&text, r#"authgate_refreshes_total{outcome="rotated"}"#),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"authgate_refreshes_total{outcome="spent_in_grace"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"authgate_session_revocations_total{cause="revoke"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"authgate_http_requests_total{method="POST",route="/v1/auth/login",status="200"}"#
        ),
        1.0
    );
    assert!(
        metric(
            &text,
            r#"authgate_http_request_duration_seconds_count{route="/v1/auth/refresh"}"#
        ) >= 2.0
    );
    for gauge in [
        "argon2\",state=\"running",
        "argon2\",state=\"queued",
        "database\",state=\"open",
    ] {
        metric(&text, &format!("authgate_pool{{pool=\"{gauge}\"}}"));
    }
}

#[tokio::test]
async fn unknown_paths_share_one_metric_label() {
    let app = spawn_app().await;
    for path in ["/a", "/b", "/c/d"] {
        app.client.get(app.url(path)).send().await.unwrap();
    }
    let text = app.metrics().await;
    assert_eq!(
        metric(
            &text,
            r#"authgate_http_requests_total{method="GET",route="unmatched",status="404"}"#
        ),
        3.0
    );
}

#[tokio::test]
async fn odd_methods_share_one_metric_label() {
    let app = spawn_app().await;
    let long = "A".repeat(2000);
    for method in [long.as_str(), "BREW", "PROPFIND"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = app
            .client
            .request(method, app.url("/v1/auth/me"))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    let text = app.metrics().await;
    assert!(!text.contains("AAAA") && !text.contains("BREW") && !text.contains("PROPFIND"));
    let odd: f64 = text
        .lines()
        .filter(|line| line.starts_with(r#"authgate_http_requests_total{method="other""#))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(odd, 3.0, "{text}");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_given_one_is_kept() {
    let app = spawn_app().await;
    let made = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    uuid::Uuid::parse_str(made.headers()["x-request-id"].to_str().unwrap()).unwrap();

    let kept = app
        .client
        .get(app.url("/nowhere"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "trace-abc-123");
}

/// Runs the real binary with debug JSON logs through a whole flow, then reads its logs.
#[tokio::test]
async fn logs_of_a_full_flow_hold_no_secret_and_one_json_line_per_request() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .env("AUTHGATE_LISTEN", "127.0.0.1:0")
        .env("AUTHGATE_DATABASE_URL", fresh_database_url().await)
        .env(
            "AUTHGATE_MASTER_KEY_FILE",
            crate::helpers::new_master_key_file(),
        )
        .env("AUTHGATE_LOG", "debug")
        .env("AUTHGATE_LOG_FORMAT", "json")
        .env("AUTHGATE_ARGON2_MEMORY_KIB", "1024")
        .env("AUTHGATE_ARGON2_ITERATIONS", "1")
        .env("AUTHGATE_RATE_LIMIT_PER_IP", "0")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut logs = Vec::new();
    let address = loop {
        let line = lines_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("authgate starts");
        let parsed: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        logs.push(line);
        if parsed["message"] == "serving" {
            break str_field(&parsed, "addr");
        }
    };
    let base = format!("http://{address}");
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| client.post(format!("{base}{path}")).json(&body).send();
    let email = "secret-keeper@example.com";
    post(
        "/v1/auth/register",
        json!({"email": email, "password": PASSWORD}),
    )
    .await
    .unwrap();
    post(
        "/v1/auth/login",
        json!({"email": email, "password": "the wrong one"}),
    )
    .await
    .unwrap();
    let pair: Value = post(
        "/v1/auth/login",
        json!({"email": email, "password": PASSWORD}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let (access, refresh) = (
        str_field(&pair, "access_token"),
        str_field(&pair, "refresh_token"),
    );
    client
        .get(format!("{base}/v1/auth/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    let next: Value = post("/v1/auth/refresh", json!({"refresh_token": refresh}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    post("/v1/auth/refresh", json!({"refresh_token": refresh}))
        .await
        .unwrap();
    post(
        "/v1/auth/revoke",
        json!({"refresh_token": str_field(&next, "refresh_token")}),
    )
    .await
    .unwrap();
    client
        .get(format!("{base}/v1/auth/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    logs.extend(lines_rx.try_iter());

    let all = logs.join("\n");
    let secrets = [
        PASSWORD.to_owned(),
        "the wrong one".to_owned(),
        access.clone(),
        access.split('.').nth(2).unwrap().to_owned(),
        refresh.clone(),
        str_field(&next, "refresh_token"),
    ];
    for secret in &secrets {
        assert!(!all.contains(secret.as_str()), "a secret is in the logs");
    }
    let request_lines: Vec<Value> = logs
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["message"] == "request")
        .collect();
    assert_eq!(request_lines.len(), 8, "{all}");
    for line in &request_lines {
        for field in ["request_id", "method", "route", "status", "latency_ms"] {
            assert!(!line[field].is_null(), "{field} missing in {line}");
        }
    }
}
