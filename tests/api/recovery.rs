//! Forgot / reset password and email verification, with messages delivered to a real
//! webhook receiver (or a file).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::{
    PASSWORD, TestApp, assert_problem, jwt_part, spawn_app, spawn_app_with, str_field,
};
use crate::receivers::{Delivery, WebhookReceiver};

const NEW_PASSWORD: &str = "a brand new passphrase";

pub async fn app_with_webhook(
    receiver: &WebhookReceiver,
    adjust: impl FnOnce(&mut authgate::config::Config),
) -> TestApp {
    spawn_app_with(|config| {
        config.messages.delivery_webhook_url = Some(receiver.url.as_str().into());
        config.messages.delivery_webhook_secret = Some(receiver.secret.as_str().into());
        adjust(config);
    })
    .await
}

async fn forgot(app: &TestApp, email: &str) -> reqwest::Response {
    app.post_json("/v1/auth/password/forgot", &json!({"email": email}))
        .await
}

async fn reset(app: &TestApp, token: &str, new_password: &str) -> reqwest::Response {
    app.post_json(
        "/v1/auth/password/reset",
        &json!({"token": token, "new_password": new_password}),
    )
    .await
}

async fn verify(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_json("/v1/auth/email/verify", &json!({"token": token}))
        .await
}

/// The deliveries of one kind, in order.
fn of_type(deliveries: &[Delivery], kind: &str) -> Vec<Delivery> {
    deliveries
        .iter()
        .filter(|d| d.body["type"] == kind)
        .cloned()
        .collect()
}

fn token_of(delivery: &Delivery) -> String {
    str_field(&delivery.body["data"], "token")
}

#[tokio::test]
async fn a_reset_message_sets_a_new_password_and_ends_every_session() {
    let receiver = WebhookReceiver::start().await;
    let app = app_with_webhook(&receiver, |config| {
        config.messages.reset_url = Some("https://app.example.com/reset?token={token}".into());
    })
    .await;
    let (email, pair) = app.signed_in_user().await;
    // Registration queued a verification message first.
    receiver.wait_for(1, Duration::from_secs(5)).await;

    let started = std::time::Instant::now();
    let response = forgot(&app, &email.to_uppercase()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let deliveries = receiver.wait_for(2, Duration::from_secs(5)).await;
    let resets = of_type(&deliveries, "password_reset");
    assert_eq!(resets.len(), 1, "{deliveries:?}");
    assert!(resets[0].at - started < Duration::from_secs(3));
    let body = &resets[0].body;
    let data = &body["data"];
    assert_eq!(data["user"]["email"], email);
    let user_id = app.me(&str_field(&pair, "access_token")).await;
    let user: Value = user_id.json().await.unwrap();
    assert_eq!(data["user"]["id"], user["id"]);
    let token = token_of(&resets[0]);
    assert!(token.len() >= 43);
    assert_eq!(
        data["link"],
        format!("https://app.example.com/reset?token={token}")
    );
    assert!(str_field(data, "expires_at").ends_with('Z'));
    assert!(str_field(body, "timestamp").ends_with('Z'));
    assert_eq!(user["email_verified"], false);

    // A new password that breaks the rules leaves the token usable.
    let problem = assert_problem(
        reset(&app, &token, "short").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(problem["type"], "urn:authgate:problem:invalid-password");

    assert_eq!(
        reset(&app, &token, NEW_PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );
    // Every session ended, and the token is spent.
    assert_eq!(
        app.refresh(&str_field(&pair, "refresh_token"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.me(&str_field(&pair, "access_token")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let problem = assert_problem(
        reset(&app, &token, "yet another passphrase").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(problem["type"], "urn:authgate:problem:invalid-reset-token");
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let pair = app.login(&email, NEW_PASSWORD).await;
    assert_eq!(pair.status(), StatusCode::OK);
    let pair: Value = pair.json().await.unwrap();
    // The reset proved the address.
    let access_token = str_field(&pair, "access_token");
    assert_eq!(jwt_part(&access_token, 1)["email_verified"], true);
    let me: Value = app.me(&access_token).await.json().await.unwrap();
    assert_eq!(me["email_verified"], true);

    let events = app.run_async(&["audit", "--json"]).await;
    for event in ["password_reset_requested", "password_reset"] {
        assert!(
            events.contains(&format!("\"event\":\"{event}\"")),
            "{event} missing: {events}"
        );
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"authgate_messages_total{kind="password_reset",outcome="delivered"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn forgot_answers_alike_for_every_account_and_queues_one_message_a_minute() {
    let receiver = WebhookReceiver::start().await;
    let app = app_with_webhook(&receiver, |_| {}).await;
    let (email, _) = app.signed_in_user().await;
    receiver.wait_for(1, Duration::from_secs(5)).await;

    let mut answers = Vec::new();
    for address in [email.as_str(), "nobody@example.com", email.as_str()] {
        let response = forgot(&app, address).await;
        let headers: Vec<String> = response
            .headers()
            .iter()
            .filter(|(name, _)| *name != "date" && *name != "x-request-id")
            .map(|(name, value)| format!("{name}: {value:?}"))
            .collect();
        answers.push((response.status(), headers, response.bytes().await.unwrap()));
    }
    assert_eq!(answers[0].0, StatusCode::ACCEPTED);
    assert!(
        answers.iter().all(|answer| *answer == answers[0]),
        "{answers:?}"
    );

    receiver.wait_for(2, Duration::from_secs(5)).await;
    // Give the queue time to deliver anything more it would.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let resets = of_type(&receiver.accepted(), "password_reset");
    assert_eq!(resets.len(), 1, "one per account per minute: {resets:?}");
    assert_eq!(resets[0].body["data"]["user"]["email"], email);

    let problem = assert_problem(
        forgot(&app, "not an email").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(problem["type"], "urn:authgate:problem:invalid-email");
    assert_problem(
        app.post_json("/v1/auth/password/forgot", &json!({"mail": email}))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test]
async fn without_a_delivery_channel_nothing_can_be_sent() {
    let app = spawn_app().await;
    let (email, pair) = app.signed_in_user().await;
    for address in [email.as_str(), "nobody@example.com", "not an email"] {
        let problem =
            assert_problem(forgot(&app, address).await, StatusCode::NOT_IMPLEMENTED).await;
        assert_eq!(
            problem["type"],
            "urn:authgate:problem:delivery-not-configured"
        );
    }
    let access_token = str_field(&pair, "access_token");
    let response = app
        .send_as(
            Method::POST,
            "/v1/auth/email/verification",
            &access_token,
            None,
        )
        .await;
    assert_problem(response, StatusCode::NOT_IMPLEMENTED).await;
    // Nothing was stored to be sent.
    let db = app.db().await;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM outbox",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), 0);
}

#[tokio::test]
async fn verification_marks_the_email_verified_in_user_and_tokens() {
    let receiver = WebhookReceiver::start().await;
    let app = app_with_webhook(&receiver, |config| {
        config.messages.verify_url = Some("https://app.example.com/verify#{token}".into());
    })
    .await;
    let (email, pair) = app.signed_in_user().await;
    let deliveries = receiver.wait_for(1, Duration::from_secs(5)).await;
    let verification = of_type(&deliveries, "email_verification");
    assert_eq!(verification.len(), 1);
    assert_eq!(verification[0].body["data"]["user"]["email"], email);
    let token = token_of(&verification[0]);
    assert_eq!(
        verification[0].body["data"]["link"],
        format!("https://app.example.com/verify#{token}")
    );
    let access_token = str_field(&pair, "access_token");
    assert_eq!(jwt_part(&access_token, 1)["email_verified"], false);

    // Asking again within the minute queues nothing more.
    let response = app
        .send_as(
            Method::POST,
            "/v1/auth/email/verification",
            &access_token,
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    // A verification token does not reset a password.
    let problem = assert_problem(
        reset(&app, &token, NEW_PASSWORD).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(problem["type"], "urn:authgate:problem:invalid-reset-token");

    assert_eq!(verify(&app, &token).await.status(), StatusCode::NO_CONTENT);
    let problem = assert_problem(verify(&app, &token).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        problem["type"],
        "urn:authgate:problem:invalid-verification-token"
    );
    let me: Value = app.me(&access_token).await.json().await.unwrap();
    assert_eq!(me["email_verified"], true);
    // The next refresh states it in the access token.
    let refreshed: Value = app
        .refresh(&str_field(&pair, "refresh_token"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        jwt_part(&str_field(&refreshed, "access_token"), 1)["email_verified"],
        true
    );
    // Verified: nothing more is queued, even once the minute has passed.
    let db = app.db().await;
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        "UPDATE users SET verification_sent_at = 1",
    ))
    .await
    .unwrap();
    let response = app
        .send_as(
            Method::POST,
            "/v1/auth/email/verification",
            &access_token,
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(receiver.accepted().len(), 1);
    assert!(
        app.run_async(&["audit", "--json"])
            .await
            .contains("\"event\":\"email_verified\"")
    );
}

#[tokio::test]
async fn bad_tokens_are_refused_and_change_nothing() {
    let receiver = WebhookReceiver::start().await;
    let app = app_with_webhook(&receiver, |_| {}).await;
    let (email, pair) = app.signed_in_user().await;
    receiver.wait_for(1, Duration::from_secs(5)).await;
    forgot(&app, &email).await;
    let deliveries = receiver.wait_for(2, Duration::from_secs(5)).await;
    let reset_token = token_of(&of_type(&deliveries, "password_reset")[0]);

    for token in [
        "",
        "malformed",
        "A".repeat(43).as_str(),
        &format!("{reset_token}x"),
        &"é".repeat(40),
    ] {
        let problem = assert_problem(
            reset(&app, token, NEW_PASSWORD).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(problem["type"], "urn:authgate:problem:invalid-reset-token");
        let problem = assert_problem(verify(&app, token).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(
            problem["type"],
            "urn:authgate:problem:invalid-verification-token"
        );
    }
    // A reset token does not verify an email.
    assert_problem(verify(&app, &reset_token).await, StatusCode::BAD_REQUEST).await;

    // An expired token.
    let db = app.db().await;
    let backend = db.get_database_backend();
    db.execute_raw(Statement::from_string(
        backend,
        "UPDATE account_tokens SET expires_at = 1",
    ))
    .await
    .unwrap();
    assert_problem(
        reset(&app, &reset_token, NEW_PASSWORD).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    // Nothing changed: the old password and session still work.
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
    assert_eq!(
        app.me(&str_field(&pair, "access_token")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_unverified_email_is_refused_at_login_when_required() {
    let receiver = WebhookReceiver::start().await;
    let app = app_with_webhook(&receiver, |config| {
        config.messages.require_verified_email = true;
    })
    .await;
    let email = "unverified@example.com";
    assert_eq!(
        app.register(email, PASSWORD).await.status(),
        StatusCode::CREATED
    );
    let problem = assert_problem(app.login(email, PASSWORD).await, StatusCode::FORBIDDEN).await;
    assert_eq!(problem["type"], "urn:authgate:problem:email-not-verified");
    assert_problem(
        app.login(email, "a wrong password").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    let deliveries = receiver.wait_for(1, Duration::from_secs(5)).await;
    let token = token_of(&deliveries[0]);
    assert_eq!(verify(&app, &token).await.status(), StatusCode::NO_CONTENT);
    let pair = app.login_ok(email).await;
    assert_eq!(
        jwt_part(&str_field(&pair, "access_token"), 1)["email_verified"],
        true
    );
}

#[tokio::test]
async fn the_file_channel_appends_one_json_line_per_message() {
    let path =
        std::env::temp_dir().join(format!("authgate-messages-{}.jsonl", uuid::Uuid::new_v4()));
    let file = path.clone();
    let app = spawn_app_with(move |config| config.messages.delivery_file = Some(file)).await;
    let (email, _) = app.signed_in_user().await;
    forgot(&app, &email).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        if lines.len() >= 2 || std::time::Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Messages of one round are sent concurrently: in any order.
    let mut kinds: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["email_verification", "password_reset"]);
    assert!(lines.iter().all(|l| l["data"]["user"]["email"] == email));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the file holds live tokens");
    }
    let token = str_field(&lines[1]["data"], "token");
    assert_eq!(
        reset(&app, &token, NEW_PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn concurrent_resets_with_one_token_set_one_password() {
    let receiver = WebhookReceiver::start().await;
    let app = app_with_webhook(&receiver, |_| {}).await;
    let (email, _) = app.signed_in_user().await;
    forgot(&app, &email).await;
    let deliveries = receiver.wait_for(2, Duration::from_secs(5)).await;
    let token = token_of(&of_type(&deliveries, "password_reset")[0]);
    let passwords = ["first new passphrase", "second new passphrase"];
    let (a, b) = tokio::join!(
        reset(&app, &token, passwords[0]),
        reset(&app, &token, passwords[1])
    );
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::NO_CONTENT, StatusCode::BAD_REQUEST]);
    let mut logins = 0;
    for password in passwords {
        if app.login(&email, password).await.status() == StatusCode::OK {
            logins += 1;
        }
    }
    assert_eq!(logins, 1, "exactly one new password was set");
}
