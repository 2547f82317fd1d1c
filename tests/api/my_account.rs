//! What a signed-in user does with their own account: change the password, see and end
//! their sessions, delete the account.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_problem, jwt_part, spawn_app, str_field};

const NEW_PASSWORD: &str = "a new and longer passphrase";

async fn change_password(
    app: &TestApp,
    token: &str,
    current: &str,
    new: &str,
) -> reqwest::Response {
    let body = json!({"current_password": current, "new_password": new});
    app.send_as(Method::POST, "/v1/auth/password", token, Some(&body))
        .await
}

async fn my_sessions(app: &TestApp, token: &str) -> Vec<Value> {
    let response = app
        .send_as(Method::GET, "/v1/auth/sessions", token, None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    body["sessions"].as_array().unwrap().clone()
}

fn sid_of(pair: &Value) -> String {
    jwt_part(&str_field(pair, "access_token"), 1)["sid"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn events(app: &TestApp) -> Vec<Value> {
    app.run_async(&["audit", "--json"])
        .await
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn changing_the_password_ends_every_other_session_and_keeps_the_callers() {
    let app = spawn_app().await;
    let (email, mine) = app.signed_in_user().await;
    let other = app.login_ok(&email).await;
    let token = str_field(&mine, "access_token");

    let response = change_password(&app, &token, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
    let refreshed = app.refresh(&str_field(&mine, "refresh_token")).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    assert_problem(
        app.refresh(&str_field(&other, "refresh_token")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let other_token = str_field(&other, "access_token");
    assert_eq!(
        app.me(&other_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login(&email, NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
    assert!(
        events(&app)
            .await
            .iter()
            .any(|event| event["event"] == "password_changed")
    );
}

#[tokio::test]
async fn a_wrong_current_password_is_403_and_counts_as_a_failed_login() {
    let app = spawn_app().await;
    let (email, pair) = app.signed_in_user().await;
    let token = str_field(&pair, "access_token");
    // The test configuration allows 5 failures per (account, address).
    for _ in 0..5 {
        let problem = assert_problem(
            change_password(&app, &token, "not the password", NEW_PASSWORD).await,
            StatusCode::FORBIDDEN,
        )
        .await;
        assert_eq!(problem["type"], "urn:authgate:problem:wrong-password");
    }
    let throttled = change_password(&app, &token, PASSWORD, NEW_PASSWORD).await;
    assert!(throttled.headers().contains_key("retry-after"));
    assert_problem(throttled, StatusCode::TOO_MANY_REQUESTS).await;
    assert_problem(
        app.login(&email, PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
}

#[tokio::test]
async fn a_new_password_that_breaks_the_rules_or_repeats_the_current_one_is_422() {
    let app = spawn_app().await;
    let (email, pair) = app.signed_in_user().await;
    let token = str_field(&pair, "access_token");
    for new in ["short", PASSWORD] {
        let problem = assert_problem(
            change_password(&app, &token, PASSWORD, new).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(problem["type"], "urn:authgate:problem:invalid-password");
    }
    let missing = app
        .send_as(
            Method::POST,
            "/v1/auth/password",
            &token,
            Some(&json!({"new_password": NEW_PASSWORD})),
        )
        .await;
    assert_problem(missing, StatusCode::BAD_REQUEST).await;
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn my_sessions_lists_the_live_ones_most_recently_used_first() {
    let app = spawn_app().await;
    let (email, first) = app.signed_in_user().await;
    let second = app.login_ok(&email).await;
    let third = app.login_ok(&email).await;
    let ended = app.login_ok(&email).await;
    let revoked = app.revoke(&str_field(&ended, "refresh_token")).await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    // Refreshing the second session makes it the most recently used: neither the order
    // of creation nor its reverse.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let refreshed = app.refresh(&str_field(&second, "refresh_token")).await;
    assert_eq!(refreshed.status(), StatusCode::OK);

    let sessions = my_sessions(&app, &str_field(&third, "access_token")).await;
    let ids: Vec<&str> = sessions.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [sid_of(&second), sid_of(&third), sid_of(&first)]);
    let current: Vec<bool> = sessions.iter().map(|s| s["current"] == true).collect();
    assert_eq!(current, [false, true, false]);
    for session in &sessions {
        assert_eq!(session["ip"], "127.0.0.1");
        // reqwest sends no User-Agent unless told to.
        assert!(session["user_agent"].is_null(), "{session}");
        for field in ["created_at", "last_used_at", "expires_at"] {
            assert!(session[field].is_string(), "{session}");
        }
    }
}

#[tokio::test]
async fn a_session_remembers_the_user_agent_of_its_latest_refresh() {
    let app = spawn_app().await;
    let (email, _) = app.signed_in_user().await;
    let client = reqwest::Client::new();
    let login = client
        .post(app.url("/v1/auth/login"))
        .header("user-agent", "phone/1.0")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let pair: Value = login.json().await.unwrap();
    let token = str_field(&pair, "access_token");
    let sessions = my_sessions(&app, &token).await;
    let mine = sessions.iter().find(|s| s["current"] == true).unwrap();
    assert_eq!(mine["user_agent"], "phone/1.0");

    let long_agent = "x".repeat(300);
    let refreshed = client
        .post(app.url("/v1/auth/refresh"))
        .header("user-agent", &long_agent)
        .json(&json!({"refresh_token": str_field(&pair, "refresh_token")}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    let sessions = my_sessions(&app, &token).await;
    let mine = sessions.iter().find(|s| s["current"] == true).unwrap();
    assert_eq!(mine["user_agent"], "x".repeat(256));
}

#[tokio::test]
async fn ending_one_of_my_sessions_revokes_it_and_nothing_else() {
    let app = spawn_app().await;
    let (email, mine) = app.signed_in_user().await;
    let other = app.login_ok(&email).await;
    let (_, stranger) = app.signed_in_user().await;
    let token = str_field(&mine, "access_token");
    let path = |pair: &Value| format!("/v1/auth/sessions/{}", sid_of(pair));

    // Another user's session is not the caller's to end.
    let response = app
        .send_as(Method::DELETE, &path(&stranger), &token, None)
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
    let response = app
        .send_as(Method::DELETE, &path(&other), &token, None)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.refresh(&str_field(&other, "refresh_token")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // Ended: not a live session any more.
    let again = app
        .send_as(Method::DELETE, &path(&other), &token, None)
        .await;
    assert_problem(again, StatusCode::NOT_FOUND).await;
    let malformed = app
        .send_as(Method::DELETE, "/v1/auth/sessions/not-a-uuid", &token, None)
        .await;
    assert_problem(malformed, StatusCode::BAD_REQUEST).await;

    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
    // The caller may end its own session too: its token stops working at once.
    let own = app
        .send_as(Method::DELETE, &path(&mine), &token, None)
        .await;
    assert_eq!(own.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.me(&token).await.status(), StatusCode::UNAUTHORIZED);
    let stranger_token = str_field(&stranger, "access_token");
    assert_eq!(app.me(&stranger_token).await.status(), StatusCode::OK);
    let revoked: Vec<Value> = events(&app)
        .await
        .into_iter()
        .filter(|event| event["event"] == "session_revoked")
        .collect();
    assert_eq!(revoked.len(), 2);
    assert_eq!(revoked[0]["session_id"], sid_of(&other));
    assert_eq!(revoked[1]["session_id"], sid_of(&mine));
}

#[tokio::test]
async fn logout_others_keeps_only_the_callers_session() {
    let app = spawn_app().await;
    let (email, mine) = app.signed_in_user().await;
    let others = [app.login_ok(&email).await, app.login_ok(&email).await];
    let token = str_field(&mine, "access_token");

    let response = app
        .send_as(Method::POST, "/v1/auth/logout-others", &token, None)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    for other in &others {
        let refreshed = app.refresh(&str_field(other, "refresh_token")).await;
        assert_eq!(refreshed.status(), StatusCode::UNAUTHORIZED);
    }
    let sessions = my_sessions(&app, &token).await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["id"], sid_of(&mine));
    assert_eq!(
        app.refresh(&str_field(&mine, "refresh_token"))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn deleting_my_account_removes_it_and_ends_its_tokens_at_once() {
    let app = spawn_app().await;
    let (email, pair) = app.signed_in_user().await;
    let token = str_field(&pair, "access_token");
    let user_id = jwt_part(&token, 1)["sub"].as_str().unwrap().to_owned();
    let delete = |password: &'static str| {
        let body = json!({"password": password});
        let (app, token) = (&app, token.clone());
        async move {
            app.send_as(Method::POST, "/v1/auth/me/delete", &token, Some(&body))
                .await
        }
    };

    let problem = assert_problem(delete("not the password").await, StatusCode::FORBIDDEN).await;
    assert_eq!(problem["type"], "urn:authgate:problem:wrong-password");
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);

    assert_eq!(delete(PASSWORD).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.me(&token).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.refresh(&str_field(&pair, "refresh_token"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.register(&email, PASSWORD).await.status(),
        StatusCode::CREATED
    );
    assert!(
        events(&app)
            .await
            .iter()
            .any(|event| event["event"] == "account_deleted" && event["user_id"] == user_id)
    );
}

#[tokio::test]
async fn wrong_passwords_for_deletion_count_toward_the_login_throttle() {
    let app = spawn_app().await;
    let (email, pair) = app.signed_in_user().await;
    let token = str_field(&pair, "access_token");
    let body = json!({"password": "not the password"});
    for _ in 0..5 {
        let response = app
            .send_as(Method::POST, "/v1/auth/me/delete", &token, Some(&body))
            .await;
        assert_problem(response, StatusCode::FORBIDDEN).await;
    }
    let right = json!({"password": PASSWORD});
    let response = app
        .send_as(Method::POST, "/v1/auth/me/delete", &token, Some(&right))
        .await;
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
    assert_problem(
        app.login(&email, PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
}

#[tokio::test]
async fn concurrent_password_changes_leave_exactly_one_password_in_force() {
    let app = spawn_app().await;
    let (email, pair) = app.signed_in_user().await;
    let token = str_field(&pair, "access_token");
    let candidates: Vec<String> = (0..4).map(|i| format!("{NEW_PASSWORD} {i}")).collect();
    let mut changes = tokio::task::JoinSet::new();
    for new in candidates.clone() {
        let (client, url, token) = (
            reqwest::Client::new(),
            app.url("/v1/auth/password"),
            token.clone(),
        );
        changes.spawn(async move {
            let body = json!({"current_password": PASSWORD, "new_password": new});
            let response = client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (new, response.status())
        });
    }
    let answers = changes.join_all().await;
    // Every other answer saw the password it checked replaced meanwhile: 403, nothing
    // stored.
    for (_, status) in &answers {
        assert!(
            [StatusCode::NO_CONTENT, StatusCode::FORBIDDEN].contains(status),
            "{answers:?}"
        );
    }
    let changed: Vec<&String> = answers
        .iter()
        .filter(|(_, status)| *status == StatusCode::NO_CONTENT)
        .map(|(new, _)| new)
        .collect();
    assert_eq!(changed.len(), 1, "{answers:?}");
    assert_eq!(app.login(&email, changed[0]).await.status(), StatusCode::OK);
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
}
