//! The audit trail as `authgate audit` prints it.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, str_field};

#[tokio::test]
async fn the_audit_trail_records_each_security_event_with_its_client() {
    let app = crate::helpers::spawn_app().await;
    let post = |path: &str, body: Value| {
        app.client
            .post(app.url(path))
            .header("user-agent", "audit-test/1.0")
            .json(&body)
            .send()
    };
    let email = format!("audited-{}@example.com", uuid::Uuid::new_v4().simple());
    post(
        "/v1/auth/register",
        json!({"email": email, "password": PASSWORD}),
    )
    .await
    .unwrap();
    post(
        "/v1/auth/login",
        json!({"email": email, "password": "wrong password"}),
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
    let spent = str_field(&pair, "refresh_token");
    let next: Value = post("/v1/auth/refresh", json!({"refresh_token": spent}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    post(
        "/v1/auth/revoke",
        json!({"refresh_token": str_field(&next, "refresh_token")}),
    )
    .await
    .unwrap();
    let second: Value = post(
        "/v1/auth/login",
        json!({"email": email, "password": PASSWORD}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let third = post(
        "/v1/auth/refresh",
        json!({"refresh_token": str_field(&second, "refresh_token")}),
    )
    .await
    .unwrap();
    assert_eq!(third.status(), StatusCode::OK);
    // Reuse after the successor was spent: theft.
    let successor: Value = third.json().await.unwrap();
    post(
        "/v1/auth/refresh",
        json!({"refresh_token": str_field(&successor, "refresh_token")}),
    )
    .await
    .unwrap();
    post(
        "/v1/auth/refresh",
        json!({"refresh_token": str_field(&second, "refresh_token")}),
    )
    .await
    .unwrap();
    let last = app.login_ok(&email).await;
    app.logout_all(&str_field(&last, "access_token")).await;

    let output = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["audit", "--user", &email.to_uppercase(), "--since", "1h"])
        .env("AUTHGATE_DATABASE_URL", app.config.database_url.expose())
        .env("AUTHGATE_LOG", "error")
        .output()
        .unwrap();

    assert!(output.status.success(), "{output:?}");
    let trail = String::from_utf8(output.stdout).unwrap();
    let events: Vec<&str> = trail
        .lines()
        .map(|line| line.split('\t').nth(1).unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "register",
            "login_failed",
            "login",
            "refresh",
            "revoke",
            "login",
            "refresh",
            "refresh",
            "reuse_detected",
            "login",
            "logout_all"
        ],
        "{trail}"
    );
    let first_line: Vec<&str> = trail.lines().next().unwrap().split('\t').collect();
    assert_eq!(first_line[4], "127.0.0.1");
    assert_eq!(first_line[5], "audit-test/1.0");
    assert!(!trail.contains(PASSWORD) && !trail.contains(&spent));
}

#[tokio::test]
async fn the_audit_trail_prints_one_line_per_event_whatever_the_client_sent() {
    let app = crate::helpers::spawn_app().await;
    let email = format!("odd-{}@example.com", uuid::Uuid::new_v4().simple());
    let sneaky = "curl\t2026-01-01T00:00:00Z\tlogin\tforged";
    let registered = app
        .client
        .post(app.url("/v1/auth/register"))
        .header("user-agent", sneaky)
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    let audit = |extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_authgate"))
            .args(["audit", "--user", &email])
            .args(extra)
            .env("AUTHGATE_DATABASE_URL", app.config.database_url.expose())
            .env("AUTHGATE_LOG", "error")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };

    let text = audit(&[]);
    let fields: Vec<&str> = text.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 7, "{text}");
    assert_eq!(fields[5], sneaky.replace('\t', "\\t"));

    let json = audit(&["--json"]);
    assert_eq!(json.lines().count(), 1, "{json}");
    let event: Value = serde_json::from_str(json.trim_end()).unwrap();
    assert_eq!(event["event"], "register");
    assert_eq!(event["user_agent"], sneaky);
    assert_eq!(event["session_id"], Value::Null);
}
