//! Roles, scopes and the admin API on its own listener.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_problem, jwt_part, spawn_app_with, str_field};

/// An app with the admin API on a random port, and an admin key named `ops`.
pub(crate) async fn admin_app(
    adjust: impl FnOnce(&mut authgate::config::Config),
) -> (TestApp, String) {
    let app = spawn_app_with(|config| {
        config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
        adjust(config);
    })
    .await;
    let printed = app.run_async(&["admin-keys", "create", "ops"]).await;
    assert_eq!(printed.lines().count(), 1, "only the key: {printed:?}");
    let key = printed.trim().to_owned();
    (app, key)
}

pub(crate) async fn admin(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let url = format!("{}{path}", app.admin_address.as_deref().unwrap());
    let mut request = app.client.request(method, url).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

pub(crate) async fn json_of(response: reqwest::Response, status: StatusCode) -> Value {
    let status_was = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status_was, status, "{body}");
    body
}

#[tokio::test]
async fn the_admin_api_is_only_on_its_listener_and_only_with_a_live_key() {
    let (app, key) = admin_app(|_| {}).await;
    let public = app
        .client
        .get(app.url("/admin/v1/users"))
        .send()
        .await
        .unwrap();
    assert_problem(public, StatusCode::NOT_FOUND).await;

    let admin_url = app.admin_address.clone().unwrap();
    let anonymous = app
        .client
        .get(format!("{admin_url}/admin/v1/users"))
        .send()
        .await
        .unwrap();
    assert!(
        anonymous.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
    let wrong = admin(&app, "agk_not-a-key", Method::GET, "/admin/v1/users", None).await;
    assert_problem(wrong, StatusCode::UNAUTHORIZED).await;
    let ok = admin(&app, &key, Method::GET, "/admin/v1/users", None).await;
    assert_eq!(ok.status(), StatusCode::OK);

    for path in ["/docs", "/openapi.json"] {
        let response = app
            .client
            .get(format!("{admin_url}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let spec: Value = app
        .client
        .get(format!("{admin_url}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["paths"]["/admin/v1/users/{id}"]["patch"].is_object());

    // Listed without the key itself; revoked, it fails on every instance at once.
    let listed = app.run_async(&["admin-keys", "list"]).await;
    assert!(
        listed.contains("ops\tactive") && !listed.contains(&key),
        "{listed}"
    );
    let second = TestApp::start(app.config.clone()).await;
    assert_eq!(
        admin(&second, &key, Method::GET, "/admin/v1/users", None)
            .await
            .status(),
        StatusCode::OK
    );
    app.run_async(&["admin-keys", "revoke", "ops"]).await;
    for instance in [&app, &second] {
        let refused = admin(instance, &key, Method::GET, "/admin/v1/users", None).await;
        assert_problem(refused, StatusCode::UNAUTHORIZED).await;
    }
    let again = app
        .command(&["admin-keys", "create", "ops"])
        .output()
        .unwrap();
    assert!(!again.status.success(), "a name is used once");
}

#[tokio::test]
async fn an_admin_creates_reads_changes_and_deletes_accounts() {
    let (app, key) = admin_app(|config| config.default_roles = "member".into()).await;
    let created = json_of(
        admin(
            &app,
            &key,
            Method::POST,
            "/admin/v1/users",
            Some(json!({"email": "Ann@Example.com", "password": PASSWORD})),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["email"], "ann@example.com");
    assert_eq!(created["roles"], json!(["member"]));
    assert_eq!(created["email_verified"], false);
    assert_eq!(created["disabled"], false);
    assert_eq!(created["last_login_at"], Value::Null);
    let id = str_field(&created, "id");

    let taken = admin(
        &app,
        &key,
        Method::POST,
        "/admin/v1/users",
        Some(json!({"email": "ann@example.com"})),
    )
    .await;
    assert_problem(taken, StatusCode::CONFLICT).await;
    let bad_roles = admin(
        &app,
        &key,
        Method::POST,
        "/admin/v1/users",
        Some(json!({"email": "bob@example.com", "roles": ["Admin"]})),
    )
    .await;
    assert_problem(bad_roles, StatusCode::UNPROCESSABLE_ENTITY).await;
    let bad_email = admin(
        &app,
        &key,
        Method::POST,
        "/admin/v1/users",
        Some(json!({"email": "bob"})),
    )
    .await;
    assert_problem(bad_email, StatusCode::UNPROCESSABLE_ENTITY).await;

    // Without a password, login fails like a wrong one.
    let passwordless = json_of(
        admin(&app, &key, Method::POST, "/admin/v1/users",
            Some(json!({"email": "carol@example.com", "roles": ["ops", "admin"], "email_verified": true}))).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(passwordless["roles"], json!(["admin", "ops"]));
    assert_problem(
        app.login("carol@example.com", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    let pair = app.login_ok("ann@example.com").await;
    let read = json_of(
        admin(
            &app,
            &key,
            Method::GET,
            &format!("/admin/v1/users/{id}"),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert!(read["last_login_at"].is_string());
    assert_problem(
        admin(
            &app,
            &key,
            Method::GET,
            &format!("/admin/v1/users/{}", uuid::Uuid::new_v4()),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        admin(&app, &key, Method::GET, "/admin/v1/users/not-a-uuid", None).await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    // An email change: unverified; a taken one: 409, nothing changed.
    let taken = admin(
        &app,
        &key,
        Method::PATCH,
        &format!("/admin/v1/users/{id}"),
        Some(json!({"email": "carol@example.com", "roles": ["x"]})),
    )
    .await;
    assert_problem(taken, StatusCode::CONFLICT).await;
    let user_path = format!("/admin/v1/users/{id}");
    let patch = |body: Value| admin(&app, &key, Method::PATCH, &user_path, Some(body));
    let verified = json_of(patch(json!({"email_verified": true})).await, StatusCode::OK).await;
    assert_eq!(verified["email_verified"], true);
    // The same address keeps its state; a new one is unproven, unless said otherwise.
    let same = json_of(
        patch(json!({"email": "ANN@example.com"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(same["email_verified"], true);
    let changed = json_of(
        patch(json!({"email": "ann.lee@example.com"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(changed["email"], "ann.lee@example.com");
    assert_eq!(changed["roles"], json!(["member"]));
    assert_eq!(changed["email_verified"], false);
    let vouched = json_of(
        patch(json!({"email": "ann.l@example.com", "email_verified": true})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(vouched["email_verified"], true);

    // Deleting: 204, the user's tokens stop working, then 404.
    let access_token = str_field(&pair, "access_token");
    assert_eq!(
        admin(
            &app,
            &key,
            Method::DELETE,
            &format!("/admin/v1/users/{id}"),
            None
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.me(&access_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_problem(
        admin(
            &app,
            &key,
            Method::DELETE,
            &format!("/admin/v1/users/{id}"),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn roles_and_scopes_are_read_afresh_at_every_login_and_refresh() {
    let (app, key) = admin_app(|config| {
        config.default_roles = "reader".into();
        config.roles = BTreeMap::from([
            (
                "editor".to_owned(),
                authgate::config::RoleScopes {
                    scopes: vec!["articles:write".into(), "articles:read".into()],
                },
            ),
            (
                "reader".to_owned(),
                authgate::config::RoleScopes {
                    scopes: vec!["articles:read".into()],
                },
            ),
        ]);
    })
    .await;
    let (_, pair) = app.signed_in_user().await;
    let claims = jwt_part(&str_field(&pair, "access_token"), 1);
    assert_eq!(claims["roles"], json!(["reader"]));
    assert_eq!(claims["scope"], "articles:read");
    let me: Value = app
        .me(&str_field(&pair, "access_token"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["roles"], json!(["reader"]));
    let id = str_field(&me, "id");

    admin(
        &app,
        &key,
        Method::PATCH,
        &format!("/admin/v1/users/{id}"),
        Some(json!({"roles": ["editor"]})),
    )
    .await;
    // At once in /me, and in the next refreshed token.
    let me: Value = app
        .me(&str_field(&pair, "access_token"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["roles"], json!(["editor"]));
    let refreshed: Value = app
        .refresh(&str_field(&pair, "refresh_token"))
        .await
        .json()
        .await
        .unwrap();
    let claims = jwt_part(&str_field(&refreshed, "access_token"), 1);
    assert_eq!(claims["roles"], json!(["editor"]));
    assert_eq!(claims["scope"], "articles:read articles:write");

    admin(
        &app,
        &key,
        Method::PATCH,
        &format!("/admin/v1/users/{id}"),
        Some(json!({"roles": []})),
    )
    .await;
    let refreshed: Value = app
        .refresh(&str_field(&refreshed, "refresh_token"))
        .await
        .json()
        .await
        .unwrap();
    let claims = jwt_part(&str_field(&refreshed, "access_token"), 1);
    assert!(
        claims.get("roles").is_none() && claims.get("scope").is_none(),
        "{claims}"
    );
}

#[tokio::test]
async fn a_disabled_account_is_shut_out_at_once() {
    let (app, key) = admin_app(|_| {}).await;
    let (email, pair) = app.signed_in_user().await;
    let me: Value = app
        .me(&str_field(&pair, "access_token"))
        .await
        .json()
        .await
        .unwrap();
    let id = str_field(&me, "id");
    let disabled = json_of(
        admin(
            &app,
            &key,
            Method::PATCH,
            &format!("/admin/v1/users/{id}"),
            Some(json!({"disabled": true})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(disabled["disabled"], true);
    assert_eq!(
        app.refresh(&str_field(&pair, "refresh_token"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.me(&str_field(&pair, "access_token")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let problem = assert_problem(app.login(&email, PASSWORD).await, StatusCode::FORBIDDEN).await;
    assert_eq!(problem["type"], "urn:authgate:problem:account-disabled");
    assert_problem(
        app.login(&email, "a wrong password").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    let listed = json_of(
        admin(
            &app,
            &key,
            Method::GET,
            "/admin/v1/users?disabled=true",
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed["users"].as_array().unwrap().len(), 1);
    admin(
        &app,
        &key,
        Method::PATCH,
        &format!("/admin/v1/users/{id}"),
        Some(json!({"disabled": false})),
    )
    .await;
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_user_search_pages_through_every_match_in_a_stable_order() {
    let (app, key) = admin_app(|_| {}).await;
    for name in ["amy", "anna", "anne", "annika", "bob", "an_x"] {
        let body = json!({"email": format!("{name}@example.com"), "roles": if name == "bob" { json!(["ops"]) } else { json!([]) }});
        json_of(
            admin(&app, &key, Method::POST, "/admin/v1/users", Some(body)).await,
            StatusCode::CREATED,
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/admin/v1/users?q=ann&limit=2&cursor={cursor}"),
            None => "/admin/v1/users?q=ann&limit=2".to_owned(),
        };
        let page = json_of(
            admin(&app, &key, Method::GET, &path, None).await,
            StatusCode::OK,
        )
        .await;
        for user in page["users"].as_array().unwrap() {
            seen.push(str_field(user, "email"));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["anna@example.com", "anne@example.com", "annika@example.com"]
    );

    let exact = json_of(
        admin(
            &app,
            &key,
            Method::GET,
            "/admin/v1/users?email=BOB@example.com",
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(exact["users"].as_array().unwrap().len(), 1);
    let ops = json_of(
        admin(&app, &key, Method::GET, "/admin/v1/users?role=ops", None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(ops["users"][0]["email"], "bob@example.com");
    assert_eq!(ops["users"].as_array().unwrap().len(), 1);
    let all = json_of(
        admin(&app, &key, Method::GET, "/admin/v1/users", None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(all["users"].as_array().unwrap().len(), 6);
    assert_eq!(all["next_cursor"], Value::Null);

    for bad in [
        "limit=0",
        "limit=201",
        "limit=ten",
        "cursor=%%%",
        "disabled=maybe",
        "role=Not%20A%20Role",
    ] {
        let response = admin(
            &app,
            &key,
            Method::GET,
            &format!("/admin/v1/users?{bad}"),
            None,
        )
        .await;
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn an_admin_ends_sessions_and_hands_out_a_reset_token() {
    let (app, key) = admin_app(|_| {}).await;
    let (email, first) = app.signed_in_user().await;
    let second = app.login_ok(&email).await;
    let me: Value = app
        .me(&str_field(&first, "access_token"))
        .await
        .json()
        .await
        .unwrap();
    let id = str_field(&me, "id");
    let sessions = json_of(
        admin(
            &app,
            &key,
            Method::GET,
            &format!("/admin/v1/users/{id}/sessions"),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let sessions = sessions["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2);
    assert!(sessions.iter().all(|s| s["current"] == false));

    let sid = jwt_part(&str_field(&first, "access_token"), 1)["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        admin(
            &app,
            &key,
            Method::DELETE,
            &format!("/admin/v1/sessions/{sid}"),
            None
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.me(&str_field(&first, "access_token")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.me(&str_field(&second, "access_token")).await.status(),
        StatusCode::OK
    );
    assert_problem(
        admin(
            &app,
            &key,
            Method::DELETE,
            &format!("/admin/v1/sessions/{sid}"),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;

    assert_eq!(
        admin(
            &app,
            &key,
            Method::POST,
            &format!("/admin/v1/users/{id}/logout"),
            None
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.refresh(&str_field(&second, "refresh_token"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let unknown = uuid::Uuid::new_v4();
    assert_problem(
        admin(
            &app,
            &key,
            Method::POST,
            &format!("/admin/v1/users/{unknown}/logout"),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        admin(
            &app,
            &key,
            Method::GET,
            &format!("/admin/v1/users/{unknown}/sessions"),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;

    let reset = json_of(
        admin(
            &app,
            &key,
            Method::POST,
            &format!("/admin/v1/users/{id}/password-reset"),
            None,
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let token = str_field(&reset, "token");
    assert!(str_field(&reset, "expires_at").ends_with('Z'));
    let response = app
        .post_json(
            "/v1/auth/password/reset",
            &json!({"token": token, "new_password": "set by the support desk"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.login(&email, "set by the support desk").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn every_admin_change_is_audited_with_the_key_name() {
    let (app, key) = admin_app(|_| {}).await;
    let created = json_of(
        admin(
            &app,
            &key,
            Method::POST,
            "/admin/v1/users",
            Some(json!({"email": "dan@example.com"})),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let id = str_field(&created, "id");
    admin(
        &app,
        &key,
        Method::PATCH,
        &format!("/admin/v1/users/{id}"),
        Some(json!({"roles": ["ops"]})),
    )
    .await;
    admin(
        &app,
        &key,
        Method::POST,
        &format!("/admin/v1/users/{id}/logout"),
        None,
    )
    .await;

    let page = json_of(
        admin(
            &app,
            &key,
            Method::GET,
            &format!("/admin/v1/audit?user_id={id}&limit=2"),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let events = page["events"].as_array().unwrap();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["logout_all", "user_updated"], "newest first");
    assert!(events.iter().all(|e| e["actor"] == "ops"));
    let cursor = str_field(&page, "next_cursor");
    let rest = json_of(
        admin(
            &app,
            &key,
            Method::GET,
            &format!("/admin/v1/audit?user_id={id}&cursor={cursor}"),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(rest["events"][0]["event"], "user_created");
    assert_eq!(rest["next_cursor"], Value::Null);

    let filtered = json_of(
        admin(
            &app,
            &key,
            Method::GET,
            "/admin/v1/audit?event=user_created&since=2000-01-01T00:00:00Z",
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(filtered["events"].as_array().unwrap().len(), 1);
    for bad in [
        "since=yesterday",
        "limit=500",
        "user_id=nope",
        "cursor=bm9wZQ",
    ] {
        assert_problem(
            admin(
                &app,
                &key,
                Method::GET,
                &format!("/admin/v1/audit?{bad}"),
                None,
            )
            .await,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
}

#[test]
fn openapi_admin_yaml_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi-admin.yaml");
    let generated = authgate::api::admin::spec_yaml();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi-admin.yaml is stale: run `cargo run -- openapi --admin > openapi-admin.yaml`"
    );
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["openapi", "--admin"])
        .output()
        .unwrap();
    assert!(String::from_utf8(printed.stdout).unwrap() == committed);
}

#[tokio::test]
async fn tokens_sent_to_a_former_address_or_a_disabled_account_do_nothing() {
    let path = std::env::temp_dir().join(format!("authgate-admin-{}.jsonl", uuid::Uuid::new_v4()));
    let file = path.clone();
    let (app, key) = admin_app(move |config| config.messages.delivery_file = Some(file)).await;
    let (_, pair) = app.signed_in_user().await;
    let me: Value = app
        .me(&str_field(&pair, "access_token"))
        .await
        .json()
        .await
        .unwrap();
    let id = str_field(&me, "id");
    let reset = json_of(
        admin(
            &app,
            &key,
            Method::POST,
            &format!("/admin/v1/users/{id}/password-reset"),
            None,
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let token = str_field(&reset, "token");

    // The address changes: the token sent to the old one resets nothing.
    json_of(
        admin(
            &app,
            &key,
            Method::PATCH,
            &format!("/admin/v1/users/{id}"),
            Some(json!({"email": "moved@example.com"})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let refused = app
        .post_json(
            "/v1/auth/password/reset",
            &json!({"token": token, "new_password": "an attacker's choice"}),
        )
        .await;
    assert_problem(refused, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        app.login("moved@example.com", PASSWORD).await.status(),
        StatusCode::OK
    );

    // Disabled: forgot-password queues nothing.
    json_of(
        admin(
            &app,
            &key,
            Method::PATCH,
            &format!("/admin/v1/users/{id}"),
            Some(json!({"disabled": true})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let before = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .count();
    let response = app
        .post_json(
            "/v1/auth/password/forgot",
            &json!({"email": "moved@example.com"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let lines = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(lines.lines().count(), before, "{lines}");
    assert!(!lines.contains("password_reset"), "{lines}");
}
