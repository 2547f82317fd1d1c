use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, assert_problem, jwt_part, spawn_app, spawn_app_with, str_field};

fn claims_of(pair: &Value) -> Value {
    jwt_part(&str_field(pair, "access_token"), 1)
}

async fn pair_from(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn assert_session_ended(app: &TestApp, pair: &Value) {
    assert_problem(
        app.refresh(&str_field(pair, "refresh_token")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_problem(
        app.me(&str_field(pair, "access_token")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn refresh_returns_a_new_pair_in_the_same_session() {
    let app = spawn_app().await;
    let (_, pair) = app.signed_in_user().await;

    let next = pair_from(app.refresh(&str_field(&pair, "refresh_token")).await).await;

    assert_ne!(next["refresh_token"], pair["refresh_token"]);
    assert_ne!(next["access_token"], pair["access_token"]);
    assert_eq!(
        app.me(&str_field(&next, "access_token")).await.status(),
        StatusCode::OK
    );
    let next_again = pair_from(app.refresh(&str_field(&next, "refresh_token")).await).await;
    assert_ne!(next_again["refresh_token"], next["refresh_token"]);
}

#[tokio::test]
async fn refresh_returns_401_for_an_unknown_token() {
    let app = spawn_app().await;
    let problem = assert_problem(
        app.refresh("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        problem["type"],
        "urn:authgate:problem:invalid-refresh-token"
    );
    assert_problem(app.refresh("").await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn refresh_within_the_grace_window_returns_the_same_successor() {
    let app = spawn_app().await;
    let (_, pair) = app.signed_in_user().await;
    let spent = str_field(&pair, "refresh_token");
    let successor = pair_from(app.refresh(&spent).await).await;

    // A retry after a lost response, or a second tab, presents the spent token again.
    let retried = pair_from(app.refresh(&spent).await).await;

    assert_eq!(retried["refresh_token"], successor["refresh_token"]);
    assert_eq!(
        app.me(&str_field(&retried, "access_token")).await.status(),
        StatusCode::OK
    );
    // The converged successor still works, once.
    pair_from(app.refresh(&str_field(&successor, "refresh_token")).await).await;
}

#[tokio::test]
async fn refresh_after_the_grace_window_revokes_the_whole_session() {
    let app = spawn_app_with(|config| config.refresh_reuse_grace = 1).await;
    let (email, pair) = app.signed_in_user().await;
    let other_session = app.login_ok(&email).await;
    let spent = str_field(&pair, "refresh_token");
    let successor = pair_from(app.refresh(&spent).await).await;

    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_problem(app.refresh(&spent).await, StatusCode::UNAUTHORIZED).await;

    // The newest token of that session is dead too; other sessions are not touched.
    assert_session_ended(&app, &successor).await;
    pair_from(
        app.refresh(&str_field(&other_session, "refresh_token"))
            .await,
    )
    .await;
}

#[tokio::test]
async fn reuse_after_the_successor_was_spent_revokes_the_session() {
    let app = spawn_app().await;
    let (_, pair) = app.signed_in_user().await;
    let first = str_field(&pair, "refresh_token");
    let second = pair_from(app.refresh(&first).await).await;
    let third = pair_from(app.refresh(&str_field(&second, "refresh_token")).await).await;

    // Still inside the grace window, but the successor has been spent.
    assert_problem(app.refresh(&first).await, StatusCode::UNAUTHORIZED).await;

    assert_session_ended(&app, &third).await;
}

#[tokio::test]
async fn with_a_grace_of_zero_every_reuse_is_theft() {
    let app = spawn_app_with(|config| config.refresh_reuse_grace = 0).await;
    let (_, pair) = app.signed_in_user().await;
    let spent = str_field(&pair, "refresh_token");
    let successor = pair_from(app.refresh(&spent).await).await;

    assert_problem(app.refresh(&spent).await, StatusCode::UNAUTHORIZED).await;

    assert_session_ended(&app, &successor).await;
}

async fn refresh_concurrently(
    app: &TestApp,
    token: &str,
    requests: usize,
) -> Vec<(StatusCode, Value)> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..requests {
        let client = app.client.clone();
        let url = app.url("/v1/auth/refresh");
        let body = serde_json::json!({ "refresh_token": token });
        tasks.spawn(async move {
            let response = client.post(url).json(&body).send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        });
    }
    tasks.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_parallel_refreshes_of_one_token_rotate_it_exactly_once() {
    let app = spawn_app().await;
    let (_, pair) = app.signed_in_user().await;
    let mut token = str_field(&pair, "refresh_token");

    for round in 0..10 {
        let results = refresh_concurrently(&app, &token, 20).await;

        let successors: HashSet<String> = results
            .iter()
            .filter(|(status, _)| *status == StatusCode::OK)
            .map(|(_, pair)| str_field(pair, "refresh_token"))
            .collect();
        assert_eq!(successors.len(), 1, "round {round}: {results:?}");
        // Inside the grace window every request converges on that one successor.
        assert!(
            results.iter().all(|(status, _)| *status == StatusCode::OK),
            "round {round}: {results:?}"
        );
        token = successors.into_iter().next().unwrap();
    }
    // The last successor is live and works.
    pair_from(app.refresh(&token).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_grace_of_zero_parallel_refreshes_yield_exactly_one_200() {
    let app = spawn_app_with(|config| config.refresh_reuse_grace = 0).await;
    for round in 0..10 {
        let (_, pair) = app.signed_in_user().await;

        let results = refresh_concurrently(&app, &str_field(&pair, "refresh_token"), 20).await;

        let winners: Vec<&Value> = results
            .iter()
            .filter(|(status, _)| *status == StatusCode::OK)
            .map(|(_, pair)| pair)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .all(|(status, _)| *status == StatusCode::OK || *status == StatusCode::UNAUTHORIZED),
            "round {round}: {results:?}"
        );
        // Each loser presented a spent token with no grace: theft, so the session ended,
        // taking the winner's successor with it.
        assert_session_ended(&app, winners[0]).await;
    }
}

#[tokio::test]
async fn revoke_ends_the_session_for_a_current_or_spent_token() {
    let app = spawn_app().await;

    let (email, pair) = app.signed_in_user().await;
    let response = app.revoke(&str_field(&pair, "refresh_token")).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_session_ended(&app, &pair).await;

    let pair = app.login_ok(&email).await;
    let spent = str_field(&pair, "refresh_token");
    let successor = pair_from(app.refresh(&spent).await).await;
    assert_eq!(app.revoke(&spent).await.status(), StatusCode::NO_CONTENT);
    assert_session_ended(&app, &successor).await;
}

#[tokio::test]
async fn revoke_answers_204_for_an_unknown_token_and_400_for_a_malformed_body() {
    let app = spawn_app().await;
    assert_eq!(
        app.revoke("never-issued").await.status(),
        StatusCode::NO_CONTENT
    );
    let response = app
        .post_json("/v1/auth/revoke", &serde_json::json!({"token": "x"}))
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn logout_all_ends_every_session_of_the_user_only() {
    let app = spawn_app().await;
    let (email, first) = app.signed_in_user().await;
    let second = app.login_ok(&email).await;
    let (_, someone_else) = app.signed_in_user().await;

    let response = app.logout_all(&str_field(&second, "access_token")).await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_session_ended(&app, &first).await;
    assert_session_ended(&app, &second).await;
    assert_eq!(
        app.me(&str_field(&someone_else, "access_token"))
            .await
            .status(),
        StatusCode::OK
    );
    // The user can log in again.
    let again = app.login_ok(&email).await;
    assert_eq!(
        app.me(&str_field(&again, "access_token")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_racing_a_revoke_never_outlives_it() {
    let app = spawn_app().await;
    for _ in 0..10 {
        let (_, pair) = app.signed_in_user().await;
        let token = str_field(&pair, "refresh_token");

        let (refreshed, revoked) = tokio::join!(app.refresh(&token), app.revoke(&token));

        assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
        if refreshed.status() == StatusCode::OK {
            let successor: Value = refreshed.json().await.unwrap();
            assert_session_ended(&app, &successor).await;
        } else {
            assert_eq!(refreshed.status(), StatusCode::UNAUTHORIZED);
        }
        assert_session_ended(&app, &pair).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_racing_logout_all_never_outlives_it() {
    let app = spawn_app().await;
    for _ in 0..10 {
        let (_, pair) = app.signed_in_user().await;

        let (refresh, access) = (
            str_field(&pair, "refresh_token"),
            str_field(&pair, "access_token"),
        );

        let (refreshed, logged_out) = tokio::join!(app.refresh(&refresh), app.logout_all(&access));

        assert_eq!(logged_out.status(), StatusCode::NO_CONTENT);
        if refreshed.status() == StatusCode::OK {
            let successor: Value = refreshed.json().await.unwrap();
            assert_session_ended(&app, &successor).await;
        } else {
            assert_eq!(refreshed.status(), StatusCode::UNAUTHORIZED);
        }
    }
}

#[tokio::test]
async fn a_rotation_that_comes_after_a_committed_revoke_changes_nothing() {
    use authgate::crypto::refresh;
    use authgate::domain::{Actor, UnixMillis};
    use authgate::store::{Rotation, Store};

    let app = spawn_app().await;
    let (_, pair) = app.signed_in_user().await;
    let token = str_field(&pair, "refresh_token");
    let store = Store::connect(app.config.database_url.expose())
        .await
        .unwrap();
    let presented_hash = refresh::hash(&token);
    let (_, successor_hash) = refresh::generate();
    let rotation = Rotation {
        presented_hash: &presented_hash,
        successor_id: uuid::Uuid::new_v4(),
        successor_hash: &successor_hash,
        successor_ttl: Duration::from_secs(60),
        sealed_successor: None,
        actor: &Actor::default(),
        at: UnixMillis::now(),
    };

    // The revoke commits just before the rotation's statement runs.
    assert_eq!(app.revoke(&token).await.status(), StatusCode::NO_CONTENT);
    let rotated = store.rotate(&rotation).await.unwrap();

    assert!(rotated.is_none());
    assert!(
        store
            .find_refresh_token(&successor_hash)
            .await
            .unwrap()
            .is_none()
    );
    let (row, _) = store
        .find_refresh_token(&presented_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.spent_at, None);
}

#[tokio::test]
async fn the_session_lifetime_caps_every_token() {
    let app = spawn_app_with(|config| {
        config.session_ttl = 3;
        config.refresh_reuse_grace = 0;
    })
    .await;
    let (_, pair) = app.signed_in_user().await;
    let session_end = claims_of(&pair)["iat"].as_i64().unwrap() + 3;
    assert!(claims_of(&pair)["exp"].as_i64().unwrap() <= session_end);
    assert!(pair["expires_in"].as_u64().unwrap() <= 3, "{pair}");
    assert!(pair["refresh_expires_in"].as_u64().unwrap() <= 3, "{pair}");

    let next = pair_from(app.refresh(&str_field(&pair, "refresh_token")).await).await;
    assert!(claims_of(&next)["exp"].as_i64().unwrap() <= session_end);
    assert!(next["expires_in"].as_u64().unwrap() <= 3, "{next}");
    assert!(next["refresh_expires_in"].as_u64().unwrap() <= 3, "{next}");

    tokio::time::sleep(Duration::from_millis(3_200)).await;
    assert_session_ended(&app, &next).await;
}

#[tokio::test]
async fn an_idle_refresh_token_expires() {
    let app = spawn_app_with(|config| config.refresh_ttl = 1).await;
    let (_, pair) = app.signed_in_user().await;
    assert_eq!(pair["refresh_expires_in"], 1);

    tokio::time::sleep(Duration::from_millis(1_200)).await;

    assert_problem(
        app.refresh(&str_field(&pair, "refresh_token")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn refresh_tokens_are_stored_as_hashes_and_successors_are_erased_after_the_grace_window() {
    use authgate::store::entities::refresh_tokens;
    use sea_orm::EntityTrait;
    use sha2::Digest;

    let app = spawn_app_with(|config| config.refresh_reuse_grace = 1).await;
    let (_, pair) = app.signed_in_user().await;
    let first = str_field(&pair, "refresh_token");
    let second = str_field(&pair_from(app.refresh(&first).await).await, "refresh_token");

    let rows = refresh_tokens::Entity::find()
        .all(&app.db().await)
        .await
        .unwrap();
    let hashes: HashSet<Vec<u8>> = rows.iter().map(|row| row.token_hash.clone()).collect();
    for token in [&first, &second] {
        assert!(hashes.contains(&sha2::Sha256::digest(token.as_bytes()).to_vec()));
        for row in &rows {
            let sealed = row.sealed_successor.clone().unwrap_or_default();
            assert!(
                !sealed.windows(token.len()).any(|w| w == token.as_bytes()),
                "a successor is stored in clear"
            );
        }
    }
    assert!(rows.iter().any(|row| row.sealed_successor.is_some()));

    tokio::time::sleep(Duration::from_millis(3_500)).await;

    let rows = refresh_tokens::Entity::find()
        .all(&app.db().await)
        .await
        .unwrap();
    assert!(
        rows.iter().all(|row| row.sealed_successor.is_none()),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_me_requests_each_get_their_own_user_and_ended_sessions_are_refused() {
    let app = spawn_app().await;
    let mut users = Vec::new();
    for _ in 0..6 {
        users.push(app.signed_in_user().await);
    }
    // One session of the lot ends; its access token must be refused while the others,
    // answered in the same batches, are not.
    let ended = str_field(&users[2].1, "refresh_token");
    assert_eq!(app.revoke(&ended).await.status(), StatusCode::NO_CONTENT);

    let mut requests = tokio::task::JoinSet::new();
    for (email, pair) in users.iter().cycle().take(120) {
        let (client, url) = (app.client.clone(), app.url("/v1/auth/me"));
        let (email, access) = (email.clone(), str_field(pair, "access_token"));
        requests.spawn(async move {
            let response = client.get(url).bearer_auth(access).send().await.unwrap();
            (email, response.status(), response.text().await.unwrap())
        });
    }
    for (email, status, body) in requests.join_all().await {
        if email == users[2].0 {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        } else {
            assert_eq!(status, StatusCode::OK, "{body}");
            let user: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(user["email"], email);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_different_sessions_each_rotate_their_own_token() {
    let app = spawn_app().await;
    let mut pairs = Vec::new();
    for _ in 0..16 {
        pairs.push(app.signed_in_user().await);
    }
    let mut requests = tokio::task::JoinSet::new();
    for (email, pair) in &pairs {
        let (client, url) = (app.client.clone(), app.url("/v1/auth/refresh"));
        let body = serde_json::json!({ "refresh_token": str_field(pair, "refresh_token") });
        let email = email.clone();
        requests.spawn(async move {
            let response = client.post(url).json(&body).send().await.unwrap();
            (
                email,
                response.status(),
                response.json::<Value>().await.unwrap(),
            )
        });
    }
    let mut successors = HashSet::new();
    for (email, status, successor) in requests.join_all().await {
        assert_eq!(status, StatusCode::OK, "{successor}");
        // Each answer belongs to the session whose token was presented.
        let me = app.me(&str_field(&successor, "access_token")).await;
        let user: Value = me.json().await.unwrap();
        assert_eq!(user["email"], email);
        assert!(successors.insert(str_field(&successor, "refresh_token")));
    }
    for token in successors {
        assert_eq!(app.refresh(&token).await.status(), StatusCode::OK);
    }
}
