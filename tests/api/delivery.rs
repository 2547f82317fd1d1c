//! Message delivery as operators rely on it: retries with the same id, messages that
//! survive `kill -9`, one delivery per message across instances, SMTP, and tokens
//! kept sealed while they wait.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::helpers::{TestApp, spawn_app_with, str_field};
use crate::receivers::{SmtpReceiver, WebhookReceiver};
use crate::recovery::app_with_webhook;

#[tokio::test]
async fn a_failed_attempt_is_retried_after_about_five_seconds_with_the_same_id() {
    let receiver = WebhookReceiver::start().await;
    receiver.fail_next(1);
    let app = app_with_webhook(&receiver, |_| {}).await;
    app.signed_in_user().await;
    let delivered = receiver.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(delivered.len(), 1);
    let attempts = receiver.attempts();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(
        attempts[0].0, attempts[1].0,
        "webhook-id changed between attempts"
    );
    assert_eq!(delivered[0].id, attempts[0].0);
    let waited = attempts[1].1 - attempts[0].1;
    assert!(
        (Duration::from_millis(3500)..Duration::from_millis(9000)).contains(&waited),
        "retried after {waited:?}"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics
            .contains(r#"authgate_messages_total{kind="email_verification",outcome="failed"} 1"#)
    );
    assert!(
        metrics.contains(
            r#"authgate_messages_total{kind="email_verification",outcome="delivered"} 1"#
        )
    );
}

#[tokio::test]
async fn a_waiting_token_is_sealed_and_gone_once_delivered() {
    let receiver = WebhookReceiver::start().await;
    receiver.set_down(true);
    let app = app_with_webhook(&receiver, |_| {}).await;
    app.signed_in_user().await;
    receiver.wait_for_attempts(1, Duration::from_secs(5)).await;
    let db = app.db().await;
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT sealed_token FROM outbox",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let sealed: String = rows[0].try_get("", "sealed_token").unwrap();
    assert!(sealed.starts_with("v1."), "{sealed}");

    receiver.set_down(false);
    let delivered = receiver.wait_for(1, Duration::from_secs(10)).await;
    let token = str_field(&delivered[0].body["data"], "token");
    assert!(!sealed.contains(&token));
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let rows = db
            .query_all_raw(Statement::from_string(backend, "SELECT id FROM outbox"))
            .await
            .unwrap();
        if rows.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "delivered message still in the outbox"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `authgate serve` as a child process on a free port, ready to answer.
pub struct Served {
    pub child: std::process::Child,
    pub url: String,
}

impl Served {
    async fn start(app: &TestApp, receiver: &WebhookReceiver) -> Self {
        Self::start_with(
            app,
            &[
                ("AUTHGATE_DELIVERY_WEBHOOK_URL", receiver.url.as_str()),
                ("AUTHGATE_DELIVERY_WEBHOOK_SECRET", receiver.secret.as_str()),
            ],
        )
        .await
    }

    /// With these variables set besides fast hashing and no rate limit.
    pub async fn start_with(app: &TestApp, variables: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = app
            .command(&["serve"])
            .env("AUTHGATE_LISTEN", format!("127.0.0.1:{port}"))
            .envs(variables.iter().copied())
            .env("AUTHGATE_ARGON2_MEMORY_KIB", "1024")
            .env("AUTHGATE_ARGON2_ITERATIONS", "1")
            .env("AUTHGATE_RATE_LIMIT_PER_IP", "0")
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{url}/health/ready"))
            .await
            .map(|r| r.status())
            .ok()
            != Some(StatusCode::OK)
        {
            assert!(Instant::now() < deadline, "authgate serve did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, url }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn pending_messages_survive_kill_9_and_go_out_after_a_restart() {
    let receiver = WebhookReceiver::start().await;
    receiver.set_down(true);
    // The in-process app only creates the database; the child process serves it.
    let mut app = spawn_app_with(|_| {}).await;
    app.stop().await;
    let mut served = Served::start(&app, &receiver).await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/v1/auth/register", served.url))
        .json(&json!({"email": "survivor@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    receiver.wait_for_attempts(1, Duration::from_secs(5)).await;

    served.child.kill().unwrap(); // SIGKILL: no graceful anything
    served.child.wait().unwrap();
    receiver.set_down(false);
    let _restarted = Served::start(&app, &receiver).await;
    let delivered = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].body["type"], "email_verification");
    assert_eq!(
        delivered[0].body["data"]["user"]["email"],
        "survivor@example.com"
    );
    assert_eq!(delivered[0].id, receiver.attempts()[0].0);
}

#[tokio::test]
async fn two_instances_on_one_database_deliver_each_message_once() {
    let receiver = WebhookReceiver::start().await;
    let first = app_with_webhook(&receiver, |_| {}).await;
    let second = TestApp::start(first.config.clone()).await;
    let count = 40;
    let mut registrations = tokio::task::JoinSet::new();
    for n in 0..count {
        let app = if n % 2 == 0 { &first } else { &second };
        let request = app.client.post(app.url("/v1/auth/register")).json(
            &json!({"email": format!("user{n}@example.com"), "password": "correct horse battery"}),
        );
        registrations.spawn(async move { request.send().await.unwrap().status() });
    }
    while let Some(status) = registrations.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::CREATED);
    }
    let delivered = receiver.wait_for(count, Duration::from_secs(15)).await;
    // Anything more would arrive within a poll interval.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let attempts = receiver.attempts();
    let mut ids: Vec<&str> = attempts.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count);
    assert_eq!(attempts.len(), count, "a message was attempted twice");
    assert_eq!(delivered.len(), count);
}

#[tokio::test]
async fn a_mail_reaches_the_smtp_server_with_the_link() {
    let smtp = SmtpReceiver::start().await;
    let port = smtp.port;
    let app = spawn_app_with(move |config| {
        config.messages.smtp_url = Some(format!("smtp://127.0.0.1:{port}?tls=none").into());
        config.messages.mail_from = Some("Example <no-reply@example.com>".into());
        config.messages.verify_url = Some("https://app.example.com/verify?token={token}".into());
    })
    .await;
    let (email, _) = app.signed_in_user().await;
    let mails = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.to, [format!("<{email}>")]);
    assert!(mail.from.contains("no-reply@example.com"));
    assert!(
        mail.data.contains("Subject: Verify your email address"),
        "{}",
        mail.data
    );
    // Undo quoted-printable soft line breaks, should the mail use them.
    let text = mail.data.replace("=\n", "").replace("=3D", "=");
    let link_start = text
        .find("https://app.example.com/verify?token=")
        .expect("the link is in the mail");
    let token: String = text[link_start..]
        .trim_start_matches("https://app.example.com/verify?token=")
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let response = app
        .post_json("/v1/auth/email/verify", &json!({"token": token}))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}
