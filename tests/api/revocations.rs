//! The revocation feed: ended sessions for services that verify offline.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{TestApp, assert_problem, jwt_part, spawn_app, str_field};

pub(crate) async fn feed(app: &TestApp, after: Option<&str>) -> Value {
    let url = match after {
        Some(cursor) => app.url(&format!("/v1/auth/revocations?after={cursor}")),
        None => app.url("/v1/auth/revocations"),
    };
    let response = app.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

pub(crate) fn sids(feed: &Value) -> Vec<String> {
    feed["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| str_field(entry, "sid"))
        .collect()
}

fn sid_of(pair: &Value) -> String {
    jwt_part(&str_field(pair, "access_token"), 1)["sid"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn ended_sessions_are_listed_and_a_cursor_returns_only_what_is_new() {
    let app = spawn_app().await;
    let (email, first) = app.signed_in_user().await;
    let second = app.login_ok(&email).await;
    let start = feed(&app, None).await;
    assert!(sids(&start).is_empty());
    let cursor = str_field(&start, "cursor");

    app.revoke(&str_field(&first, "refresh_token")).await;
    let listed = feed(&app, None).await;
    assert_eq!(sids(&listed), [sid_of(&first)]);
    assert!(str_field(&listed["revoked"][0], "ended_at").ends_with('Z'));
    let since = feed(&app, Some(&cursor)).await;
    assert_eq!(sids(&since), [sid_of(&first)]);

    // A deleted account's sessions are listed too, though their rows are gone.
    let response = app
        .send_as(
            Method::POST,
            "/v1/auth/me/delete",
            &str_field(&second, "access_token"),
            Some(&serde_json::json!({"password": crate::helpers::PASSWORD})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let listed = sids(&feed(&app, Some(&cursor)).await);
    assert!(listed.contains(&sid_of(&second)), "{listed:?}");

    // Cleanup keeps them while their access tokens may be unexpired.
    app.run_async(&["cleanup"]).await;
    assert_eq!(sids(&feed(&app, None).await).len(), 2);

    for bad in ["nope", "%00", "cjEueA"] {
        let response = app
            .client
            .get(app.url(&format!("/v1/auth/revocations?after={bad}")))
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
    let discovery: Value = app
        .client
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["revocation_feed_endpoint"],
        format!("{}/v1/auth/revocations", app.config.issuer)
    );
}
