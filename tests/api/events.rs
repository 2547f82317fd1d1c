//! Event webhooks as the services around authgate rely on them: every change reaches the
//! subscribers that asked for it, signed, at least once and with a stable id; retries;
//! a hanging subscriber; `kill -9`; two instances; giving up; the admin's view.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::admin::{admin, admin_app, json_of};
use crate::delivery::Served;
use crate::helpers::{PASSWORD, TestApp, assert_problem, spawn_app_with, str_field};
use crate::receivers::{Delivery, WebhookReceiver};

/// An app whose one event subscriber (from the environment's variables) is `receiver`.
async fn app_with_subscriber(
    receiver: &WebhookReceiver,
    adjust: impl FnOnce(&mut authgate::config::Config),
) -> TestApp {
    spawn_app_with(|config| {
        config.events_webhook_url = Some(receiver.url.as_str().into());
        config.events_webhook_secret = Some(receiver.secret.as_str().into());
        adjust(config);
    })
    .await
}

/// The deliveries of one event type.
fn of_type<'a>(delivered: &'a [Delivery], event_type: &str) -> Vec<&'a Delivery> {
    delivered
        .iter()
        .filter(|delivery| delivery.body["type"] == event_type)
        .collect()
}

/// Waits until the receiver holds a delivery matching `found`; returns them all.
async fn wait_until(
    receiver: &WebhookReceiver,
    found: impl Fn(&[Delivery]) -> bool,
) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let delivered = receiver.wait_for(0, Duration::ZERO).await;
        if found(&delivered) {
            return delivered;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered in time: {delivered:#?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn ended_with(delivered: &[Delivery], session_id: &str, cause: &str) -> bool {
    of_type(delivered, "session.ended").iter().any(|delivery| {
        delivery.body["data"]["session"]["id"] == session_id
            && delivery.body["data"]["cause"] == cause
    })
}

fn sid_of(pair: &Value) -> String {
    str_field(
        &crate::helpers::jwt_part(&str_field(pair, "access_token"), 1),
        "sid",
    )
}

#[tokio::test]
async fn a_users_changes_reach_the_subscriber_as_signed_events() {
    let receiver = WebhookReceiver::start().await;
    let app = app_with_subscriber(&receiver, |config| config.refresh_reuse_grace = 0).await;
    let email = "events@example.com";
    let registered: Value = app.register(email, PASSWORD).await.json().await.unwrap();
    let user_id = str_field(&registered, "id");
    let started = Instant::now();
    let delivered = wait_until(&receiver, |d| !of_type(d, "user.created").is_empty()).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "first attempt took {:?}",
        started.elapsed()
    );
    let created = &of_type(&delivered, "user.created")[0].body;
    assert_eq!(
        created["data"],
        json!({"user": {"id": user_id, "email": email}})
    );
    let timestamp = created["timestamp"].as_str().unwrap();
    assert!(chrono_like(timestamp), "{timestamp}");

    // Logging in starts a session; revoking its refresh token ends it.
    let first = app.login_ok(email).await;
    let first_sid = sid_of(&first);
    let delivered = wait_until(&receiver, |d| !of_type(d, "session.created").is_empty()).await;
    let session = &of_type(&delivered, "session.created")[0].body["data"]["session"];
    assert_eq!(session["id"], first_sid.as_str());
    assert_eq!(session["user_id"], user_id.as_str());
    assert_eq!(session["ip"], "127.0.0.1");
    assert_eq!(
        app.revoke(&str_field(&first, "refresh_token"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    wait_until(&receiver, |d| ended_with(d, &first_sid, "logout")).await;

    // A reused refresh token: the theft and the session it ends.
    let second = app.login_ok(email).await;
    let second_sid = sid_of(&second);
    let spent = str_field(&second, "refresh_token");
    assert_eq!(app.refresh(&spent).await.status(), StatusCode::OK);
    assert_eq!(app.refresh(&spent).await.status(), StatusCode::UNAUTHORIZED);
    let delivered = wait_until(&receiver, |d| ended_with(d, &second_sid, "reuse_detected")).await;
    let theft = &of_type(&delivered, "refresh.reuse_detected")[0].body["data"];
    assert_eq!(
        theft,
        &json!({"session": {"id": second_sid, "user_id": user_id}, "ip": "127.0.0.1"})
    );

    // A password change ends the other sessions and updates the user.
    let kept = app.login_ok(email).await;
    let other = app.login_ok(email).await;
    let other_sid = sid_of(&other);
    let changed = app
        .send_as(
            Method::POST,
            "/v1/auth/password",
            &str_field(&kept, "access_token"),
            Some(&json!({"current_password": PASSWORD, "new_password": "another long password"})),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    let delivered = wait_until(&receiver, |d| ended_with(d, &other_sid, "password_changed")).await;
    let updated = &of_type(&delivered, "user.updated")[0].body["data"];
    assert_eq!(updated["changed"], json!(["password"]));
    assert_eq!(updated["user"]["email"], email);
    assert!(!ended_with(&delivered, &sid_of(&kept), "password_changed"));

    // Logout of the others, then of all, then deletion.
    let login = || async {
        let response = app.login(email, "another long password").await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.unwrap()
    };
    let third = login().await;
    let logout_others = app
        .send_as(
            Method::POST,
            "/v1/auth/logout-others",
            &str_field(&kept, "access_token"),
            None,
        )
        .await;
    assert_eq!(logout_others.status(), StatusCode::NO_CONTENT);
    wait_until(&receiver, |d| {
        ended_with(d, &sid_of(&third), "logout_others")
    })
    .await;
    let fourth = login().await;
    assert_eq!(
        app.logout_all(&str_field(&fourth, "access_token"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let delivered = wait_until(&receiver, |d| ended_with(d, &sid_of(&fourth), "logout_all")).await;
    assert!(
        ended_with(&delivered, &sid_of(&kept), "logout_all"),
        "one event per session"
    );
    let fifth = login().await;
    let deleted = app
        .send_as(
            Method::POST,
            "/v1/auth/me/delete",
            &str_field(&fifth, "access_token"),
            Some(&json!({"password": "another long password"})),
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let delivered = wait_until(&receiver, |d| !of_type(d, "user.deleted").is_empty()).await;
    assert!(ended_with(&delivered, &sid_of(&fifth), "deleted"));
    assert_eq!(
        of_type(&delivered, "user.deleted")[0].body["data"],
        json!({"user": {"id": user_id}})
    );

    // Every event its own id, the same the receiver deduplicates by.
    let mut ids: Vec<&str> = delivered.iter().map(|d| d.id.as_str()).collect();
    assert!(ids.iter().all(|id| id.starts_with("evt_")), "{ids:?}");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), delivered.len());
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"authgate_webhook_deliveries_total{outcome="delivered"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("authgate_outbox_pending "), "{metrics}");
}

/// `2026-12-02T17:38:06Z`-like: RFC 3339 in UTC.
fn chrono_like(text: &str) -> bool {
    text.len() >= 20 && text.as_bytes()[10] == b'T' && text.ends_with('Z')
}

#[tokio::test]
async fn admin_changes_are_events_and_the_admin_sees_and_retries_deliveries() {
    let receiver = WebhookReceiver::start().await;
    let (app, key) = admin_app(|config| {
        config.events_webhook_url = Some(receiver.url.as_str().into());
        config.events_webhook_secret = Some(receiver.secret.as_str().into());
    })
    .await;
    let created = admin(
        &app,
        &key,
        Method::POST,
        "/admin/v1/users",
        Some(json!({"email": "managed@example.com", "password": PASSWORD})),
    )
    .await;
    let created = json_of(created, StatusCode::CREATED).await;
    let id = str_field(&created, "id");
    let pair = app.login_ok("managed@example.com").await;
    let sid = sid_of(&pair);
    let patched = admin(
        &app,
        &key,
        Method::PATCH,
        &format!("/admin/v1/users/{id}"),
        Some(json!({"disabled": true, "roles": ["editor"]})),
    )
    .await;
    json_of(patched, StatusCode::OK).await;
    let delivered = wait_until(&receiver, |d| ended_with(d, &sid, "disabled")).await;
    assert_eq!(
        of_type(&delivered, "user.created")[0].body["data"]["user"]["id"],
        id.as_str()
    );
    let updated = &of_type(&delivered, "user.updated")[0].body["data"];
    assert_eq!(updated["changed"], json!(["roles", "disabled"]));

    let enabled = admin(
        &app,
        &key,
        Method::PATCH,
        &format!("/admin/v1/users/{id}"),
        Some(json!({"disabled": false})),
    )
    .await;
    json_of(enabled, StatusCode::OK).await;
    let again = app.login_ok("managed@example.com").await;
    let logout = admin(
        &app,
        &key,
        Method::POST,
        &format!("/admin/v1/users/{id}/logout"),
        None,
    )
    .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    wait_until(&receiver, |d| ended_with(d, &sid_of(&again), "admin")).await;

    // The admin's view: delivered ones, pages, a bad status, a retry.
    let page = admin(
        &app,
        &key,
        Method::GET,
        "/admin/v1/webhook-deliveries?status=delivered&limit=2",
        None,
    )
    .await;
    let page = json_of(page, StatusCode::OK).await;
    let deliveries = page["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2);
    let first = &deliveries[0];
    assert_eq!(first["event_type"], "user.created");
    assert_eq!(first["status"], "delivered");
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["last_status"], 204);
    assert_eq!(first["subscriber"], receiver.url.as_str());
    assert!(first["next_attempt_at"].is_null());
    let cursor = str_field(&page, "next_cursor");
    let next = admin(
        &app,
        &key,
        Method::GET,
        &format!("/admin/v1/webhook-deliveries?status=delivered&limit=2&cursor={cursor}"),
        None,
    )
    .await;
    let next = json_of(next, StatusCode::OK).await;
    assert_ne!(next["deliveries"][0]["id"], first["id"]);
    let bad = admin(
        &app,
        &key,
        Method::GET,
        "/admin/v1/webhook-deliveries?status=lost",
        None,
    )
    .await;
    assert_problem(bad, StatusCode::BAD_REQUEST).await;
    let unknown = admin(
        &app,
        &key,
        Method::POST,
        &format!(
            "/admin/v1/webhook-deliveries/{}/retry",
            uuid::Uuid::new_v4()
        ),
        None,
    )
    .await;
    assert_problem(unknown, StatusCode::NOT_FOUND).await;

    let before = receiver.attempts().len();
    let retry = admin(
        &app,
        &key,
        Method::POST,
        &format!(
            "/admin/v1/webhook-deliveries/{}/retry",
            str_field(first, "id")
        ),
        None,
    )
    .await;
    assert_eq!(retry.status(), StatusCode::ACCEPTED);
    receiver
        .wait_for_attempts(before + 1, Duration::from_secs(5))
        .await;
    let resent = receiver.attempts().last().unwrap().0.clone();
    assert_eq!(
        resent,
        str_field(first, "event_id"),
        "a retry keeps the event's id"
    );
    let audit = admin(
        &app,
        &key,
        Method::GET,
        "/admin/v1/audit?event=webhook_retried",
        None,
    )
    .await;
    let audit = json_of(audit, StatusCode::OK).await;
    assert_eq!(audit["events"][0]["actor"], "ops");
}

#[tokio::test]
async fn each_subscriber_gets_the_event_types_it_asked_for() {
    let everything = WebhookReceiver::start().await;
    let sessions_only = WebhookReceiver::start().await;
    let app = app_with_subscriber(&everything, |config| {
        config.webhooks = vec![authgate::config::WebhookTable {
            url: sessions_only.url.as_str().into(),
            secret: sessions_only.secret.as_str().into(),
            events: vec!["session.ended".into()],
        }];
    })
    .await;
    let (_, pair) = app.signed_in_user().await;
    app.logout_all(&str_field(&pair, "access_token")).await;
    let sid = sid_of(&pair);
    let ended = wait_until(&sessions_only, |d| ended_with(d, &sid, "logout_all")).await;
    wait_until(&everything, |d| ended_with(d, &sid, "logout_all")).await;
    let all = everything.wait_for(0, Duration::ZERO).await;
    assert!(
        !of_type(&all, "user.created").is_empty() && !of_type(&all, "session.created").is_empty()
    );
    assert_eq!(ended.len(), 1, "only session.ended: {ended:#?}");
    assert_eq!(
        ended[0].id,
        of_type(&all, "session.ended")[0].id,
        "one event, one id for every subscriber"
    );
}

#[tokio::test]
async fn a_failing_subscriber_is_retried_with_the_same_id_and_a_hanging_one_times_out() {
    let receiver = WebhookReceiver::start().await;
    // Down for a while: two attempts answered 500, the third 200.
    receiver.fail_next(2);
    let app = app_with_subscriber(&receiver, |_| {}).await;
    app.register("retried@example.com", PASSWORD).await;
    let delivered = receiver.wait_for(1, Duration::from_secs(30)).await;
    let attempts = receiver.attempts();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(
        attempts.iter().all(|(id, _)| *id == attempts[0].0),
        "webhook-id changed between attempts: {attempts:?}"
    );
    assert_eq!(delivered[0].id, attempts[0].0);
    // About 5 s, then about 10 s (±20 % jitter).
    let first_wait = attempts[1].1 - attempts[0].1;
    let second_wait = attempts[2].1 - attempts[1].1;
    assert!(
        (Duration::from_millis(3500)..Duration::from_millis(9000)).contains(&first_wait),
        "first retry after {first_wait:?}"
    );
    assert!(
        (Duration::from_millis(7500)..Duration::from_millis(14_000)).contains(&second_wait),
        "second retry after {second_wait:?}"
    );
    assert!(
        app.metrics()
            .await
            .contains(r#"authgate_webhook_deliveries_total{outcome="retrying"} 2"#)
    );

    receiver.set_hanging(true);
    let started = Instant::now();
    app.register("hung@example.com", PASSWORD).await;
    receiver.wait_for_attempts(4, Duration::from_secs(3)).await;
    let db = app.db().await;
    let backend = db.get_database_backend();
    // The hung event's delivery (the earlier one's success may be recorded a moment late).
    let query = "SELECT attempts, status, last_status, last_attempt_at FROM event_deliveries \
                 WHERE last_attempt_at IS NOT NULL AND status = 'pending' \
                 AND body LIKE '%hung@example.com%'";
    let row = loop {
        if let Some(row) = db
            .query_one_raw(Statement::from_string(backend, query))
            .await
            .unwrap()
        {
            break row;
        }
        assert!(
            started.elapsed() < Duration::from_secs(9),
            "the attempt did not time out"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let gave_up_after = started.elapsed();
    assert!(
        gave_up_after > Duration::from_millis(4500),
        "gave up after {gave_up_after:?}"
    );
    assert_eq!(row.try_get::<i32>("", "attempts").unwrap(), 1);
    assert_eq!(
        row.try_get::<Option<i32>>("", "last_status").unwrap(),
        None,
        "no answer, no status"
    );
    receiver.set_hanging(false);
    wait_until(&receiver, |d| {
        d.iter()
            .any(|d| d.body["data"]["user"]["email"] == "hung@example.com")
    })
    .await;
}

#[tokio::test]
async fn a_delivery_failing_for_a_day_is_marked_failed() {
    let receiver = WebhookReceiver::start().await;
    receiver.set_down(true);
    let app = app_with_subscriber(&receiver, |_| {}).await;
    app.register("unlucky@example.com", PASSWORD).await;
    receiver.wait_for_attempts(1, Duration::from_secs(5)).await;
    // As if the first attempt had been made a day ago: the next failure is the last.
    let db = app.db().await;
    let backend = db.get_database_backend();
    // Once the first attempt's outcome is recorded (outcomes are written in batches).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let row = db
            .query_one_raw(Statement::from_string(
                backend,
                "SELECT last_attempt_at FROM event_deliveries",
            ))
            .await
            .unwrap()
            .unwrap();
        if row
            .try_get::<Option<i64>>("", "last_attempt_at")
            .unwrap()
            .is_some()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the attempt was not recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let day_ago = authgate::domain::UnixMillis::now()
        .minus_secs(24 * 3600 + 60)
        .millis();
    db.execute_raw(Statement::from_string(
        backend,
        format!("UPDATE event_deliveries SET created_at = {day_ago}, next_attempt_at = 0"),
    ))
    .await
    .unwrap();
    receiver.wait_for_attempts(2, Duration::from_secs(5)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let row = db
            .query_one_raw(Statement::from_string(
                backend,
                "SELECT status, last_status FROM event_deliveries",
            ))
            .await
            .unwrap()
            .unwrap();
        if row.try_get::<String>("", "status").unwrap() == "failed" {
            assert_eq!(
                row.try_get::<Option<i32>>("", "last_status").unwrap(),
                Some(500)
            );
            break;
        }
        assert!(Instant::now() < deadline, "not marked failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.attempts().len(),
        2,
        "a failed delivery is not retried"
    );
    assert!(
        app.metrics()
            .await
            .contains(r#"authgate_webhook_deliveries_total{outcome="failed"} 1"#)
    );
}

#[tokio::test]
async fn pending_events_survive_kill_9_and_go_out_after_a_restart() {
    let receiver = WebhookReceiver::start().await;
    receiver.set_down(true);
    let mut app = spawn_app_with(|_| {}).await;
    app.stop().await;
    let subscriber = [
        ("AUTHGATE_EVENTS_WEBHOOK_URL", receiver.url.as_str()),
        ("AUTHGATE_EVENTS_WEBHOOK_SECRET", receiver.secret.as_str()),
    ];
    let mut served = Served::start_with(&app, &subscriber).await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/auth/register", served.url))
        .json(&json!({"email": "survivor@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    receiver.wait_for_attempts(1, Duration::from_secs(5)).await;
    served.child.kill().unwrap(); // SIGKILL
    served.child.wait().unwrap();
    receiver.set_down(false);
    let _restarted = Served::start_with(&app, &subscriber).await;
    let delivered = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(delivered[0].body["type"], "user.created");
    assert_eq!(
        delivered[0].body["data"]["user"]["email"],
        "survivor@example.com"
    );
    assert_eq!(delivered[0].id, receiver.attempts()[0].0);
}

#[tokio::test]
async fn two_instances_on_one_database_deliver_each_event_once() {
    let receiver = WebhookReceiver::start().await;
    let first = app_with_subscriber(&receiver, |_| {}).await;
    let second = TestApp::start(first.config.clone()).await;
    let count = 40;
    let mut registrations = tokio::task::JoinSet::new();
    for n in 0..count {
        let app = if n % 2 == 0 { &first } else { &second };
        let request = app
            .client
            .post(app.url("/v1/auth/register"))
            .json(&json!({"email": format!("user{n}@example.com"), "password": PASSWORD}));
        registrations.spawn(async move { request.send().await.unwrap().status() });
    }
    while let Some(status) = registrations.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::CREATED);
    }
    let delivered = receiver.wait_for(count, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let attempts = receiver.attempts();
    assert_eq!(attempts.len(), count, "an event was attempted twice");
    let mut ids: Vec<&str> = delivered.iter().map(|d| d.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count);
}

#[tokio::test]
async fn without_subscribers_no_event_is_written() {
    let app = spawn_app_with(|_| {}).await;
    let (_, pair) = app.signed_in_user().await;
    app.logout_all(&str_field(&pair, "access_token")).await;
    let db = app.db().await;
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT COUNT(*) AS n FROM event_deliveries",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), 0);
}

#[tokio::test]
async fn a_hanging_subscriber_does_not_hold_up_the_others() {
    let hanging = WebhookReceiver::start().await;
    hanging.set_hanging(true);
    let healthy = WebhookReceiver::start().await;
    let app = app_with_subscriber(&hanging, |config| {
        config.webhooks = vec![authgate::config::WebhookTable {
            url: healthy.url.as_str().into(),
            secret: healthy.secret.as_str().into(),
            events: vec!["*".into()],
        }];
    })
    .await;
    app.register("first@example.com", PASSWORD).await;
    hanging.wait_for_attempts(1, Duration::from_secs(3)).await;
    // The hanging attempt has seconds to run; the next event reaches the other at once.
    let started = Instant::now();
    app.register("second@example.com", PASSWORD).await;
    wait_until(&healthy, |d| {
        d.iter()
            .any(|d| d.body["data"]["user"]["email"] == "second@example.com")
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "held up for {:?}",
        started.elapsed()
    );
}
