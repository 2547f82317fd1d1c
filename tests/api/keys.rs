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
async fn a_key_rotated_now_signs_new_tokens_while_the_old_key_stays_published() {
    let app = spawn_app_with(|config| config.key_reload_interval = 1).await;
    let (email, before) = app.signed_in_user().await;
    let old_kid = kid_of(&before);

    let new_kid = app
        .run_async(&["keys", "rotate", "--now"])
        .await
        .trim()
        .to_owned();
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

    let new_kid = first
        .run_async(&["keys", "rotate", "--now"])
        .await
        .trim()
        .to_owned();
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

/// The state `keys list` shows for each kid.
async fn key_states(app: &TestApp) -> Vec<(String, String)> {
    app.run_async(&["keys", "list"])
        .await
        .lines()
        .skip(1)
        .map(|line| {
            let mut fields = line.split('\t');
            let kid = fields.next().unwrap().to_owned();
            (kid, fields.next().unwrap().to_owned())
        })
        .collect()
}

async fn state_of(app: &TestApp, kid: &str) -> String {
    key_states(app)
        .await
        .into_iter()
        .find(|(listed, _)| listed == kid)
        .unwrap_or_else(|| panic!("{kid} not listed"))
        .1
}

#[tokio::test]
async fn a_rotated_key_is_published_at_once_and_signs_only_after_the_activation_delay() {
    use authgate::store::entities::signing_keys;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

    let app = spawn_app_with(|config| config.key_reload_interval = 1).await;
    let (email, before) = app.signed_in_user().await;
    let old_kid = kid_of(&before);

    let new_kid = app.run_async(&["keys", "rotate"]).await.trim().to_owned();
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    // Published (verifiers learn it), not signing yet: the default delay is 120 s.
    assert!(published_kids(&app).await.contains(&new_kid));
    assert_eq!(kid_of(&app.login_ok(&email).await), old_kid);
    assert_eq!(state_of(&app, &new_kid).await, "next");
    assert_eq!(state_of(&app, &old_kid).await, "signing");

    // Once the activation time has passed, the new key signs and the old one retires.
    let past = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 - 1000;
    let db = app.db().await;
    signing_keys::Entity::update_many()
        .col_expr(signing_keys::Column::ActivatesAt, Expr::value(past))
        .filter(signing_keys::Column::Kid.eq(new_kid.as_str()))
        .exec(&db)
        .await
        .unwrap();
    signing_keys::Entity::update_many()
        .col_expr(signing_keys::Column::RetiredAt, Expr::value(past))
        .filter(signing_keys::Column::Kid.eq(old_kid.as_str()))
        .exec(&db)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(kid_of(&app.login_ok(&email).await), new_kid);
    assert_eq!(state_of(&app, &new_kid).await, "signing");
    assert_eq!(state_of(&app, &old_kid).await, "retiring");
    assert!(published_kids(&app).await.contains(&old_kid));
}

#[tokio::test]
async fn an_activation_delay_shorter_than_reload_plus_jwks_max_age_is_bad_configuration() {
    let app = spawn_app().await;
    let output = app
        .command(&["keys", "rotate"])
        .env("AUTHGATE_KEY_RELOAD_INTERVAL", "30")
        .env("AUTHGATE_KEY_ACTIVATION_DELAY", "60")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("AUTHGATE_KEY_ACTIVATION_DELAY"), "{stderr}");
    assert_eq!(key_states(&app).await.len(), 1);
}

#[tokio::test]
async fn a_revoked_key_leaves_the_jwks_and_its_tokens_are_rejected() {
    let app = spawn_app_with(|config| config.key_reload_interval = 1).await;
    let (email, before) = app.signed_in_user().await;
    let old_kid = kid_of(&before);

    // The only key that signs cannot be revoked...
    let refused = app.command(&["keys", "revoke", &old_kid]).output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("rotate --now"), "{stderr}");

    // ...until another signs in its place.
    let new_kid = app
        .run_async(&["keys", "rotate", "--now"])
        .await
        .trim()
        .to_owned();
    app.run_async(&["keys", "revoke", &old_kid]).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    let kids = published_kids(&app).await;
    assert!(
        !kids.contains(&old_kid) && kids.contains(&new_kid),
        "{kids:?}"
    );
    assert_eq!(state_of(&app, &old_kid).await, "revoked");
    let me = app.me(&str_field(&before, "access_token")).await;
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    let after = app.login_ok(&email).await;
    assert_eq!(kid_of(&after), new_kid);
    assert_eq!(
        app.me(&str_field(&after, "access_token")).await.status(),
        StatusCode::OK
    );
    // Revoked is for good: a restart does not bring it back.
    let app = app.restart().await;
    assert!(!published_kids(&app).await.contains(&old_kid));
    assert_eq!(kid_of(&app.login_ok(&email).await), new_kid);
}

#[tokio::test]
async fn a_retired_key_never_signs_again_after_a_key_file_comes_and_goes() {
    let app = spawn_app().await;
    let (email, before) = app.signed_in_user().await;
    let database_key = kid_of(&before);
    let file_key = authgate::crypto::signing::SigningKey::generate();
    let path = std::env::temp_dir().join(format!("authgate-key-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&path, file_key.private_pem()).unwrap();
    let mut with_file = app.config.clone();
    with_file.signing_key_file = Some(path);
    drop(app);

    let app = TestApp::start(with_file.clone()).await;
    assert_eq!(kid_of(&app.login_ok(&email).await), file_key.kid());
    let mut without_file = with_file;
    without_file.signing_key_file = None;
    let app = TestApp::start(without_file).await;

    let signer = kid_of(&app.login_ok(&email).await);
    assert_ne!(signer, database_key);
    assert_ne!(signer, file_key.kid());
    assert_eq!(state_of(&app, &database_key).await, "retiring");
    assert_eq!(state_of(&app, &signer).await, "signing");
}

#[tokio::test]
async fn private_keys_are_stored_only_sealed() {
    use authgate::store::entities::signing_keys;
    use sea_orm::EntityTrait;

    let app = spawn_app().await;
    app.run_async(&["keys", "rotate"]).await;
    let rows = signing_keys::Entity::find()
        .all(&app.db().await)
        .await
        .unwrap();

    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_eq!(row.private_key_pem, "");
        let sealed = row.sealed_private_key.unwrap();
        assert!(!sealed.contains("PRIVATE KEY") && !sealed.contains("MC4CAQAwBQYDK2Vw"));
        assert!(authgate::crypto::signing::SigningKey::from_pem(&sealed).is_err());
    }
}

#[tokio::test]
async fn keys_stored_in_plain_text_are_sealed_at_the_next_start() {
    use authgate::store::entities::signing_keys;
    use sea_orm::{ActiveValue::Set, EntityTrait};

    let app = spawn_app_with(|config| config.key_reload_interval = 1).await;
    let (email, _) = app.signed_in_user().await;
    // A key as an older authgate stored it: plain PEM, no lifecycle columns.
    let legacy = authgate::crypto::signing::SigningKey::generate();
    let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64 + 1;
    signing_keys::Entity::insert(signing_keys::ActiveModel {
        kid: Set(legacy.kid().to_owned()),
        private_key_pem: Set(legacy.private_pem().to_owned()),
        public_key: Set(legacy.public_x().to_owned()),
        created_at: Set(now),
        retired_at: Set(None),
        sealed_private_key: Set(None),
        activates_at: Set(None),
        revoked_at: Set(None),
    })
    .exec_without_returning(&app.db().await)
    .await
    .unwrap();

    let app = app.restart().await;

    let row = signing_keys::Entity::find_by_id(legacy.kid().to_owned())
        .one(&app.db().await)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.private_key_pem, "");
    assert!(row.sealed_private_key.is_some());
    // The upgraded key still signs (the newest active key).
    assert_eq!(kid_of(&app.login_ok(&email).await), legacy.kid());
}

#[tokio::test]
async fn a_master_key_that_opens_no_stored_key_refuses_to_start() {
    let app = spawn_app().await;
    let mut config = app.config.clone();
    drop(app);
    config.master_key_file = Some(crate::helpers::new_master_key_file());

    let error = match authgate::startup::Application::build(&config).await {
        Ok(_) => panic!("started with a wrong master key"),
        Err(error) => format!("{error:#}"),
    };

    assert!(error.contains("AUTHGATE_MASTER_KEY_FILE"), "{error}");
}

#[tokio::test]
async fn rewrap_moves_every_key_to_a_new_first_master_key() {
    let app = spawn_app().await;
    let (email, _) = app.signed_in_user().await;
    let old_file = match &app.config.master_key_file {
        Some(path) => path.clone(),
        None => {
            let mut path = authgate::store::sqlite_location(app.config.database_url.expose())
                .map(|location| match location {
                    authgate::store::SqliteLocation::File(path) => path.into_os_string(),
                    authgate::store::SqliteLocation::Memory => unreachable!(),
                })
                .unwrap();
            path.push(".key");
            path.into()
        }
    };
    let old_key = std::fs::read_to_string(&old_file).unwrap();
    let new_file = crate::helpers::new_master_key_file();
    let new_key = std::fs::read_to_string(&new_file).unwrap();
    // Rotation: the new key first, the old one after it.
    std::fs::write(&new_file, format!("{new_key}{old_key}")).unwrap();
    let mut config = app.config.clone();
    config.master_key_file = Some(new_file.clone());
    let mut app = TestApp::start(config).await;
    assert!(
        app.run_async(&["keys", "rewrap"])
            .await
            .contains("re-encrypted 1 keys")
    );
    app.stop().await;

    // The old line dropped: the keys still open.
    std::fs::write(&new_file, new_key).unwrap();
    let app = TestApp::start(app.config.clone()).await;
    assert_eq!(
        app.login(&email, crate::helpers::PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn sqlite_files_and_the_generated_master_key_are_private() {
    use std::os::unix::fs::PermissionsExt;

    let app = spawn_app().await;
    let Some(authgate::store::SqliteLocation::File(path)) =
        authgate::store::sqlite_location(app.config.database_url.expose())
    else {
        return; // PostgreSQL: no files of ours
    };
    app.signed_in_user().await;
    let mut key = path.clone().into_os_string();
    key.push(".key");
    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    for file in [path.into_os_string(), key, wal] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file:?}");
    }
}

#[tokio::test]
async fn postgres_without_a_master_key_file_refuses_to_start() {
    let mut config = crate::helpers::test_config("postgres://postgres@127.0.0.1:1/none".into());
    config.master_key_file = None;

    let error = match authgate::startup::Application::build(&config).await {
        Ok(_) => panic!("started without a master key"),
        Err(error) => format!("{error:#}"),
    };

    assert!(error.contains("AUTHGATE_MASTER_KEY_FILE"), "{error}");
    assert_eq!(error.lines().count(), 1);
}

#[tokio::test]
async fn revoking_a_next_key_while_the_current_one_is_due_to_retire_is_refused() {
    let app = spawn_app().await;
    let (_, before) = app.signed_in_user().await;
    let next = app.run_async(&["keys", "rotate"]).await.trim().to_owned();

    // The current key retires when `next` activates: without `next`, nothing would sign.
    let refused = app.command(&["keys", "revoke", &next]).output().unwrap();

    assert!(!refused.status.success());
    assert_eq!(state_of(&app, &next).await, "next");
    // The current key, due to retire, cannot be revoked either: `next` does not sign yet.
    let current = kid_of(&before);
    assert!(
        !app.command(&["keys", "revoke", &current])
            .output()
            .unwrap()
            .status
            .success()
    );
}

#[tokio::test]
async fn keys_list_shows_which_key_signs_and_which_are_published() {
    let app = spawn_app().await;
    let listed = app.run_async(&["keys", "list"]).await;
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.lines().nth(1).unwrap().contains("\tsigning\t"),
        "{listed}"
    );

    let new_kid = app.run_async(&["keys", "rotate"]).await.trim().to_owned();
    let listed = app.run_async(&["keys", "list"]).await;

    // The new key is published at once (`next`) and signs after the activation delay.
    let states: Vec<(&str, &str)> = listed
        .lines()
        .skip(1)
        .map(|line| {
            let mut fields = line.split('\t');
            (fields.next().unwrap(), fields.next().unwrap())
        })
        .collect();
    assert_eq!(states.len(), 2, "{listed}");
    assert!(states.contains(&(new_kid.as_str(), "next")), "{listed}");
    assert!(
        states
            .iter()
            .any(|(kid, state)| *kid != new_kid && *state == "signing"),
        "{listed}"
    );
}
