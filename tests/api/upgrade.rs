//! The upgrade path: a database made by wave 1 (its schema only, with its data) is
//! migrated by a current authgate at start, and what it held keeps working.

use argon2::PasswordHasher;
use migration::{Migrator, MigratorTrait};
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, Value as DbValue};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{TestApp, fresh_database_url, jwt_part, str_field, test_config};
use crate::revocations::{feed, sids};

const PASSWORD: &str = "correct horse battery staple";

/// `sql` with `?` placeholders, numbered for PostgreSQL.
fn statement(backend: DbBackend, sql: &str, values: Vec<DbValue>) -> Statement {
    let sql = match backend {
        DbBackend::Postgres => {
            let mut numbered = String::new();
            for (n, part) in sql.split('?').enumerate() {
                if n > 0 {
                    numbered.push_str(&format!("${n}"));
                }
                numbered.push_str(part);
            }
            numbered
        }
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

#[tokio::test]
async fn a_wave_one_database_with_its_data_is_migrated_at_start_and_served() {
    let config = test_config(fresh_database_url().await);
    let db = Database::connect(config.database_url.expose())
        .await
        .unwrap();
    // Wave 1 shipped the first migration alone.
    Migrator::up(&db, Some(1)).await.unwrap();
    let backend = db.get_database_backend();

    let now = now_millis();
    let (user_id, session_id) = (Uuid::new_v4(), Uuid::new_v4());
    let params = argon2::Params::new(1024, 1, 1, None).unwrap();
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let password_hash = hasher
        .hash_password_with_salt(PASSWORD.as_bytes(), b"sixteen byte slt")
        .unwrap()
        .to_string();
    let (refresh_token, token_hash) = authgate::crypto::refresh::generate();
    let rows = [
        statement(
            backend,
            "INSERT INTO users (id, email, password_hash, created_at) VALUES (?, ?, ?, ?)",
            vec![
                user_id.into(),
                "wave1@example.com".into(),
                password_hash.into(),
                now.into(),
            ],
        ),
        statement(
            backend,
            "INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
            vec![
                session_id.into(),
                user_id.into(),
                now.into(),
                (now + 86_400_000).into(),
            ],
        ),
        statement(
            backend,
            "INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?)",
            vec![
                Uuid::new_v4().into(),
                session_id.into(),
                token_hash.to_vec().into(),
                now.into(),
                (now + 86_400_000).into(),
            ],
        ),
    ];
    for row in rows {
        db.execute_raw(row).await.unwrap();
    }
    db.close().await.unwrap();

    // A current authgate migrates the rest at start.
    let app = TestApp::start(config).await;

    // The wave-1 session refreshes: its token rotates, the session keeps its id.
    let rotated = app.refresh(&refresh_token).await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let pair: Value = rotated.json().await.unwrap();
    let claims = jwt_part(&str_field(&pair, "access_token"), 1);
    assert_eq!(claims["sid"], session_id.to_string());
    assert_eq!(claims["sub"], user_id.to_string());
    assert_eq!(claims["email_verified"], false);
    assert!(claims.get("roles").is_none(), "no roles: none in the token");

    // The wave-1 account logs in with its password and reads itself.
    let login = app.login("wave1@example.com", PASSWORD).await;
    assert_eq!(login.status(), StatusCode::OK);
    let login: Value = login.json().await.unwrap();
    let access = str_field(&login, "access_token");
    let me = app.me(&access).await;
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["email"], "wave1@example.com");
    assert_eq!(me["email_verified"], false);

    // Both sessions are listed, the wave-1 one without the client details it never had.
    let sessions = app
        .send_as(Method::GET, "/v1/auth/sessions", &access, None)
        .await;
    assert_eq!(sessions.status(), StatusCode::OK);
    let sessions: Value = sessions.json().await.unwrap();
    let sessions = sessions["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert!(
        sessions
            .iter()
            .any(|session| session["id"] == session_id.to_string()),
        "{sessions:?}"
    );

    // Ending it reaches the revocation feed like any other.
    assert_eq!(
        app.logout_all(&access).await.status(),
        StatusCode::NO_CONTENT
    );
    let feed = feed(&app, None).await;
    assert!(sids(&feed).contains(&session_id.to_string()), "{feed}");
}

fn now_millis() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since_epoch.as_millis()).unwrap()
}
