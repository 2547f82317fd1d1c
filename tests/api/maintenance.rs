//! Cleanup of ended sessions, expired tokens and old audit events.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::str_field;

#[tokio::test]
async fn cleanup_deletes_ended_sessions_and_their_tokens_but_not_live_ones() {
    use authgate::store::entities::{refresh_tokens, sessions};
    use sea_orm::{EntityTrait, PaginatorTrait};

    let app = crate::helpers::spawn_app_with(|config| config.refresh_ttl = 1).await;
    let (email, revoked) = app.signed_in_user().await;
    app.revoke(&str_field(&revoked, "refresh_token")).await;
    let idle = app.login_ok(&email).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let live = app.login_ok(&email).await;
    let db = app.db().await;
    assert_eq!(sessions::Entity::find().count(&db).await.unwrap(), 3);
    // Ended longer ago than the revocation feed lists sessions (an access token
    // lifetime and a minute): until then its row stays.
    use sea_orm::{ColumnTrait, QueryFilter, sea_query::Expr};
    sessions::Entity::update_many()
        .col_expr(sessions::Column::RevokedAt, Expr::value(1_000i64))
        .filter(sessions::Column::RevokedAt.is_not_null())
        .exec(&db)
        .await
        .unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .arg("cleanup")
        .env("AUTHGATE_DATABASE_URL", app.config.database_url.expose())
        .env("AUTHGATE_LOG", "error")
        .output()
        .unwrap();

    assert!(output.status.success(), "{output:?}");
    // The revoked session and its token; the idle session's expired token.
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "deleted 2 rows"
    );
    assert_eq!(sessions::Entity::find().count(&db).await.unwrap(), 2);
    assert_eq!(refresh_tokens::Entity::find().count(&db).await.unwrap(), 1);
    assert_eq!(
        app.refresh(&str_field(&live, "refresh_token"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.refresh(&str_field(&idle, "refresh_token"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn cleanup_removes_audit_events_older_than_the_retention() {
    use authgate::store::entities::audit_events;
    use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

    let app = crate::helpers::spawn_app().await;
    app.signed_in_user().await; // register and login: two recent events
    let db = app.db().await;
    let day_ms = 86_400_000i64;
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    for age_days in [40, 400] {
        audit_events::Entity::insert(audit_events::ActiveModel {
            id: Set(uuid::Uuid::new_v4()),
            at: Set(now - age_days * day_ms),
            event: Set(format!("old_{age_days}")),
            user_id: Set(None),
            session_id: Set(None),
            client_ip: Set(None),
            user_agent: Set(None),
            detail: Set(None),
            actor: Set(None),
        })
        .exec_without_returning(&db)
        .await
        .unwrap();
    }
    let cleanup = |retention: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_authgate"))
            .arg("cleanup")
            .env("AUTHGATE_DATABASE_URL", app.config.database_url.expose())
            .env("AUTHGATE_AUDIT_RETENTION", retention)
            .env("AUTHGATE_LOG", "error")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
    };
    let remaining = || async {
        let mut events: Vec<String> = audit_events::Entity::find()
            .filter(audit_events::Column::Event.starts_with("old_"))
            .all(&db)
            .await
            .unwrap()
            .into_iter()
            .map(|event| event.event)
            .collect();
        events.sort();
        events
    };

    cleanup("365");
    assert_eq!(remaining().await, ["old_40"]);
    cleanup("30");
    assert!(remaining().await.is_empty());
    assert_eq!(audit_events::Entity::find().count(&db).await.unwrap(), 2);
}
