use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, assert_problem, spawn_app, spawn_app_with, str_field};

#[tokio::test]
async fn register_returns_201_with_the_trimmed_lower_cased_user() {
    let app = spawn_app().await;

    let response = app.register("  Ann.Lee@Example.COM ", PASSWORD).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["email"], "ann.lee@example.com");
    uuid::Uuid::parse_str(&str_field(&user, "id")).expect("id is a UUID");
    let created_at = str_field(&user, "created_at");
    time::OffsetDateTime::parse(&created_at, &time::format_description::well_known::Rfc3339)
        .expect("created_at is RFC 3339");
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());
}

#[tokio::test]
async fn register_returns_409_when_the_email_is_taken_in_any_case() {
    let app = spawn_app().await;
    assert_eq!(
        app.register("bob@example.com", PASSWORD).await.status(),
        StatusCode::CREATED
    );

    let response = app.register(" BOB@example.com", "another password").await;

    let problem = assert_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(problem["type"], "urn:authgate:problem:email-taken");
}

#[tokio::test]
async fn register_returns_422_for_an_invalid_email_or_password() {
    let app = spawn_app().await;
    let long_email = format!("{}@{}.com", "a".repeat(64), "b".repeat(186));
    let cases = [
        ("not-an-email", PASSWORD, "invalid-email"),
        ("", PASSWORD, "invalid-email"),
        (long_email.as_str(), PASSWORD, "invalid-email"),
        ("carol@example.com", "short", "invalid-password"),
        // 7 characters although 14 bytes: lengths count characters.
        ("carol@example.com", "ééééééé", "invalid-password"),
    ];
    let too_long_password = "p".repeat(1025);
    for (email, password, kind) in cases.into_iter().chain([(
        "carol@example.com",
        too_long_password.as_str(),
        "invalid-password",
    )]) {
        let problem = assert_problem(
            app.register(email, password).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(
            problem["type"],
            format!("urn:authgate:problem:{kind}"),
            "{email:?}"
        );
    }
    // The limits themselves are accepted.
    let response = app.register("dave@example.com", &"é".repeat(1024)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = app.register("erin@example.com", "éééééééé").await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn register_and_login_return_400_for_malformed_bodies() {
    let app = spawn_app().await;
    for path in ["/v1/auth/register", "/v1/auth/login"] {
        for body in [
            "{not json",
            r#"{"email":"x@example.com"}"#,
            r#"{"email":1,"password":"correct horse"}"#,
            r#"[]"#,
            "",
        ] {
            let response = app
                .client
                .post(app.url(path))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path} {body}");
            let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
            assert_eq!(
                problem["type"], "urn:authgate:problem:malformed-request",
                "{body}"
            );
        }
    }
}

#[tokio::test]
async fn login_returns_the_same_401_for_an_unknown_email_and_a_wrong_password() {
    let app = spawn_app().await;
    assert_eq!(
        app.register("fay@example.com", PASSWORD).await.status(),
        StatusCode::CREATED
    );

    let wrong_password = app.login("fay@example.com", "wrong password").await;
    let unknown_email = app.login("nobody@example.com", PASSWORD).await;

    let a = assert_problem(wrong_password, StatusCode::UNAUTHORIZED).await;
    let b = assert_problem(unknown_email, StatusCode::UNAUTHORIZED).await;
    assert_eq!(a, b);
    // Emails that could not have registered (a NUL byte, 300 characters) answer the same.
    let long = format!("{}@example.com", "f".repeat(300));
    for email in ["fay\u{0}@example.com", long.as_str()] {
        let c = assert_problem(app.login(email, PASSWORD).await, StatusCode::UNAUTHORIZED).await;
        assert_eq!(a, c);
    }
}

#[tokio::test]
async fn login_is_case_insensitive_and_returns_a_token_pair_that_is_not_cached() {
    let app = spawn_app().await;
    assert_eq!(
        app.register("gus@example.com", PASSWORD).await.status(),
        StatusCode::CREATED
    );

    let response = app.login("  GUS@Example.com", PASSWORD).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let pair: Value = response.json().await.unwrap();
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    assert_eq!(pair["refresh_expires_in"], 1_209_600);
    let refresh = str_field(&pair, "refresh_token");
    assert!(refresh.len() >= 43, "{refresh}");
    assert!(
        refresh
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    let me: Value = app
        .me(&str_field(&pair, "access_token"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "gus@example.com");
}

#[tokio::test]
async fn login_upgrades_a_hash_made_with_older_argon2_parameters() {
    use authgate::store::entities::users;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    let app = spawn_app().await;
    assert_eq!(
        app.register("hal@example.com", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    let stored_hash = || async {
        users::Entity::find()
            .filter(users::Column::Email.eq("hal@example.com"))
            .one(&app.db().await)
            .await
            .unwrap()
            .unwrap()
            .password_hash
    };
    assert!(stored_hash().await.contains("m=1024,t=1,p=1"));

    let mut config = app.config.clone();
    config.argon2_memory_kib = 2048;
    config.argon2_iterations = 2;
    let upgraded = crate::helpers::TestApp::start(config).await;
    upgraded.login_ok("hal@example.com").await;

    let hash = users::Entity::find()
        .filter(users::Column::Email.eq("hal@example.com"))
        .one(&upgraded.db().await)
        .await
        .unwrap()
        .unwrap()
        .password_hash;
    assert!(hash.starts_with("$argon2id$v=19$m=2048,t=2,p=1$"), "{hash}");
    upgraded.login_ok("hal@example.com").await;
}

#[tokio::test]
async fn me_returns_the_user_of_the_access_token() {
    let app = spawn_app().await;
    let (email, pair) = app.signed_in_user().await;

    let response = app.me(&str_field(&pair, "access_token")).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["email"], email.as_str());
    assert_eq!(
        user.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["created_at", "email", "email_verified", "id", "roles"]
    );
}

#[tokio::test]
async fn passwords_are_stored_as_argon2id_phc_strings_only() {
    use authgate::store::entities::users;
    use sea_orm::EntityTrait;

    let app = spawn_app_with(|_| {}).await;
    app.post_json(
        "/v1/auth/register",
        &json!({"email": "ida@example.com", "password": PASSWORD}),
    )
    .await;
    let user = users::Entity::find()
        .one(&app.db().await)
        .await
        .unwrap()
        .unwrap();
    assert!(user.password_hash.starts_with("$argon2id$"));
    assert!(!user.password_hash.contains(PASSWORD));
}

#[tokio::test]
async fn passwords_and_emails_typed_in_another_unicode_form_are_the_same() {
    let app = spawn_app().await;
    // "é" as one code point and as "e" + combining acute; "ﬁ" as a ligature.
    let registered = app
        .register("jos\u{e9}@example.com", "caf\u{e9} \u{FB01}ne password")
        .await;
    assert_eq!(registered.status(), StatusCode::CREATED);

    let login = app
        .login("Jose\u{301}@Example.com", "cafe\u{301} fine password")
        .await;

    assert_eq!(login.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_email_with_an_invisible_character_is_invalid() {
    let app = spawn_app().await;
    let response = app.register("ann\u{200b}@example.com", PASSWORD).await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test]
async fn a_password_hashed_before_normalization_still_logs_in_and_is_rehashed() {
    use authgate::store::entities::users;
    use sea_orm::{ActiveValue::Set, EntityTrait};

    let app = spawn_app().await;
    // As an older authgate stored it: the hash of the password as typed (decomposed é).
    let typed = "cafe\u{301} au lait";
    let hasher = authgate::crypto::password::PasswordHasher::new(1024, 1, 1).unwrap();
    let legacy_hash = hasher.hash(typed.to_owned()).await.unwrap();
    let id = uuid::Uuid::new_v4();
    users::Entity::insert(users::ActiveModel {
        id: Set(id),
        email: Set("legacy@example.com".to_owned()),
        password_hash: Set(legacy_hash.clone()),
        created_at: Set(0),
        ..Default::default()
    })
    .exec_without_returning(&app.db().await)
    .await
    .unwrap();

    assert_eq!(
        app.login("legacy@example.com", typed).await.status(),
        StatusCode::OK
    );

    let stored = users::Entity::find_by_id(id)
        .one(&app.db().await)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stored.password_hash, legacy_hash);
    // From now on both forms are the one normalized password.
    assert_eq!(
        app.login("legacy@example.com", "caf\u{e9} au lait")
            .await
            .status(),
        StatusCode::OK
    );
}
