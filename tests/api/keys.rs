use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, jwt_part, spawn_app, spawn_app_with, str_field};

async fn published_kids(app: &TestApp) -> Vec<String> {
    app.jwks()
        .await
        .keys
        .iter()
        .map(|key| key.common.key_id.clone().unwrap())
        .collect()
}

fn kid_of(pair: &Value) -> String {
    str_field(&jwt_part(&str_field(pair, "access_token"), 0), "kid")
}

#[tokio::test]
async fn a_restart_keeps_the_key_sessions_and_tokens_valid() {
    let app = spawn_app().await;
    let (_, pair) = app.signed_in_user().await;
    let kids_before = published_kids(&app).await;

    let app = app.restart().await;

    assert_eq!(published_kids(&app).await, kids_before);
    assert_eq!(
        app.me(&str_field(&pair, "access_token")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.refresh(&str_field(&pair, "refresh_token"))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_rotated_key_signs_new_tokens_while_the_old_key_stays_published() {
    let app = spawn_app_with(|config| config.key_reload_interval = 1).await;
    let (email, before) = app.signed_in_user().await;
    let old_kid = kid_of(&before);

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["keys", "rotate"])
        .env("AUTHGATE_DATABASE_URL", &app.config.database_url)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let new_kid = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert_ne!(new_kid, old_kid);

    // The running instance picks the key up without a restart.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let after = app.login_ok(&email).await;
    assert_eq!(kid_of(&after), new_kid);
    let kids = published_kids(&app).await;
    assert!(
        kids.contains(&old_kid) && kids.contains(&new_kid),
        "{kids:?}"
    );
    // Tokens signed by the old key keep working until they expire.
    assert_eq!(
        app.me(&str_field(&before, "access_token")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.me(&str_field(&after, "access_token")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_key_file_is_used_to_sign_and_is_published() {
    let key = authgate::crypto::signing::SigningKey::generate();
    let path = std::env::temp_dir().join(format!("authgate-key-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&path, key.private_pem()).unwrap();

    let app = spawn_app_with(|config| config.signing_key_file = Some(path.clone())).await;
    let (_, pair) = app.signed_in_user().await;

    assert_eq!(kid_of(&pair), key.kid());
    assert!(published_kids(&app).await.contains(&key.kid().to_owned()));
    assert_eq!(
        app.me(&str_field(&pair, "access_token")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn switching_to_a_key_file_retires_the_keys_kept_in_the_database() {
    use authgate::store::entities::signing_keys;
    use sea_orm::EntityTrait;

    let app = spawn_app().await;
    let (_, before) = app.signed_in_user().await;
    let key = authgate::crypto::signing::SigningKey::generate();
    let path = std::env::temp_dir().join(format!("authgate-key-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&path, key.private_pem()).unwrap();
    let mut config = app.config.clone();
    config.signing_key_file = Some(path);

    let app = TestApp::start(config).await;

    let stored = signing_keys::Entity::find()
        .all(&app.db().await)
        .await
        .unwrap();
    assert!(
        stored.iter().all(|row| row.retired_at.is_some()),
        "{stored:?}"
    );
    // Retired keys still verify the tokens they signed until those expire.
    assert_eq!(
        app.me(&str_field(&before, "access_token")).await.status(),
        StatusCode::OK
    );
    let (_, after) = app.signed_in_user().await;
    assert_eq!(kid_of(&after), key.kid());
}

#[tokio::test]
async fn a_missing_or_unparsable_key_file_is_a_configuration_error() {
    let url = crate::helpers::fresh_database_url().await;
    let garbage = std::env::temp_dir().join(format!("authgate-key-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&garbage, "not a key").unwrap();
    for path in [std::path::PathBuf::from("/nonexistent/key.pem"), garbage] {
        let mut config = crate::helpers::test_config(url.clone());
        config.signing_key_file = Some(path);
        let error = authgate::startup::Application::build(&config)
            .await
            .err()
            .expect("build fails");
        assert!(
            format!("{error:#}").contains("AUTHGATE_SIGNING_KEY_FILE"),
            "{error:#}"
        );
    }
}

#[tokio::test]
async fn two_instances_on_one_database_both_serve_a_rotated_key() {
    let first = spawn_app_with(|config| config.key_reload_interval = 1).await;
    let second = TestApp::start(first.config.clone()).await;
    let (email, _) = first.signed_in_user().await;

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["keys", "rotate"])
        .env("AUTHGATE_DATABASE_URL", &first.config.database_url)
        .env("AUTHGATE_LOG", "error")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let new_kid = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    for app in [&first, &second] {
        assert!(published_kids(app).await.contains(&new_kid));
        let pair = app.login_ok(&email).await;
        assert_eq!(kid_of(&pair), new_kid);
        // Each instance accepts the other's tokens.
        for other in [&first, &second] {
            assert_eq!(
                other.me(&str_field(&pair, "access_token")).await.status(),
                StatusCode::OK
            );
        }
    }
}
