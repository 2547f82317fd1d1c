//! Service clients: the client-credentials grant and introspection as OAuth 2.0 client
//! libraries and gateways use them, and client tokens on the admin API.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::admin::{admin, admin_app, json_of};
use crate::helpers::{TestApp, jwt_part, str_field};

/// `authgate clients create NAME --scopes SCOPES`: (client_id, client_secret).
async fn new_client(app: &TestApp, name: &str, scopes: &str) -> (String, String) {
    let printed = app
        .run_async(&["clients", "create", name, "--scopes", scopes])
        .await;
    let made: Value = serde_json::from_str(printed.trim()).unwrap();
    assert_eq!(made["name"], name);
    let id = str_field(&made, "client_id");
    let secret = str_field(&made, "client_secret");
    let unreserved = |text: &str| {
        text.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    };
    assert!(unreserved(&id) && unreserved(&secret), "{id} {secret}");
    assert!(secret.len() >= 43, "at least 256 bits: {secret}");
    (id, secret)
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

async fn token_request(
    app: &TestApp,
    authorization: Option<String>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app.client.post(app.url("/v1/oauth/token")).form(form);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    request.send().await.unwrap()
}

async fn oauth_error(response: reqwest::Response, status: StatusCode, error: &str) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    assert!(body.get("access_token").is_none());
    body
}

async fn introspect(app: &TestApp, (id, secret): (&str, &str), token: &str) -> Value {
    let response = app
        .client
        .post(app.url("/v1/oauth/introspect"))
        .header("authorization", basic(id, secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_client_gets_a_token_with_either_authentication_and_narrowed_scopes() {
    let (app, _) = admin_app(|config| config.client_token_ttl = 120).await;
    let (id, secret) = new_client(&app, "billing", "orders:read orders:write").await;

    let response = token_request(
        &app,
        Some(basic(&id, &secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 120);
    assert_eq!(body["scope"], "orders:read orders:write");
    assert!(body.get("refresh_token").is_none());
    let token = str_field(&body, "access_token");
    let header = jwt_part(&token, 0);
    assert_eq!(header["typ"], "at+jwt");
    let claims = jwt_part(&token, 1);
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["client_id"], id.as_str());
    assert!(claims.get("sid").is_none());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );
    for claim in ["iss", "aud", "jti"] {
        assert!(claims.get(claim).is_some(), "{claim} in {claims}");
    }

    // client_secret_post, a narrower scope.
    let response = token_request(
        &app,
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", "orders:read"),
        ],
    )
    .await;
    let narrowed: Value = response.json().await.unwrap();
    assert_eq!(narrowed["scope"], "orders:read");
    assert_eq!(
        jwt_part(&str_field(&narrowed, "access_token"), 1)["scope"],
        "orders:read"
    );

    // A client token is not a user: authgate's user endpoints refuse it.
    let me = app.me(&token).await;
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);

    // Discovery names the endpoints and methods.
    let discovery: Value = app
        .client
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        discovery["token_endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/v1/oauth/token")
    );
    assert!(
        discovery["introspection_endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/v1/oauth/introspect")
    );
    assert_eq!(
        discovery["grant_types_supported"],
        json!(["client_credentials"])
    );
    assert_eq!(
        discovery["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert!(discovery["revocation_feed_endpoint"].is_string());
}

#[tokio::test]
async fn bad_token_requests_get_the_rfc_6749_error_and_no_token() {
    let (app, _) = admin_app(|_| {}).await;
    let (id, secret) = new_client(&app, "reports", "reports:read").await;
    let good = Some(basic(&id, &secret));
    let grant = ("grant_type", "client_credentials");

    let wrong = token_request(&app, Some(basic(&id, "wrong")), &[grant]).await;
    assert_eq!(
        wrong.headers()["www-authenticate"].to_str().unwrap(),
        r#"Basic realm="authgate", charset="UTF-8""#
    );
    oauth_error(wrong, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let unknown = token_request(&app, Some(basic("cl_nobody", &secret)), &[grant]).await;
    oauth_error(unknown, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let none = token_request(&app, None, &[grant]).await;
    oauth_error(none, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let both = token_request(
        &app,
        good.clone(),
        &[grant, ("client_id", &id), ("client_secret", &secret)],
    )
    .await;
    oauth_error(both, StatusCode::BAD_REQUEST, "invalid_request").await;

    let missing = token_request(&app, good.clone(), &[("scope", "reports:read")]).await;
    oauth_error(missing, StatusCode::BAD_REQUEST, "invalid_request").await;
    let other = token_request(&app, good.clone(), &[("grant_type", "password")]).await;
    oauth_error(other, StatusCode::BAD_REQUEST, "unsupported_grant_type").await;
    let repeated = token_request(&app, good.clone(), &[grant, grant]).await;
    oauth_error(repeated, StatusCode::BAD_REQUEST, "invalid_request").await;
    let not_allowed = token_request(&app, good.clone(), &[grant, ("scope", "reports:write")]).await;
    oauth_error(not_allowed, StatusCode::BAD_REQUEST, "invalid_scope").await;
    let json = app
        .client
        .post(app.url("/v1/oauth/token"))
        .header("authorization", good.clone().unwrap())
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    oauth_error(json, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn introspection_says_which_tokens_are_live() {
    let (app, key) = admin_app(|_| {}).await;
    let gateway = new_client(&app, "gateway", "").await;
    let gateway = (gateway.0.as_str(), gateway.1.as_str());
    let (id, secret) = new_client(&app, "worker", "jobs:run").await;

    // A user's access and refresh tokens.
    let (_, pair) = app.signed_in_user().await;
    let access = str_field(&pair, "access_token");
    let refresh = str_field(&pair, "refresh_token");
    let sid = str_field(&jwt_part(&access, 1), "sid");
    let found = introspect(&app, gateway, &access).await;
    assert_eq!(found["active"], true, "{found}");
    assert_eq!(found["token_type"], "access_token");
    assert_eq!(found["sid"], sid.as_str());
    assert_eq!(found["sub"], jwt_part(&access, 1)["sub"]);
    for field in ["exp", "iat", "iss", "aud"] {
        assert!(found.get(field).is_some(), "{field} in {found}");
    }
    let found = introspect(&app, gateway, &refresh).await;
    assert_eq!(found["active"], true, "{found}");
    assert_eq!(found["token_type"], "refresh_token");
    assert_eq!(found["sid"], sid.as_str());

    // A client's token.
    let response = token_request(
        &app,
        Some(basic(&id, &secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let client_token = str_field(&response.json::<Value>().await.unwrap(), "access_token");
    let found = introspect(&app, gateway, &client_token).await;
    assert_eq!(found["active"], true);
    assert_eq!(found["client_id"], id.as_str());
    assert_eq!(found["scope"], "jobs:run");
    assert!(found.get("sid").is_none());

    // Ended, rotated, tampered, unknown: inactive, and nothing else said.
    let rotated = app.refresh(&refresh).await;
    assert_eq!(rotated.status(), StatusCode::OK);
    assert_eq!(
        introspect(&app, gateway, &refresh).await,
        json!({"active": false})
    );
    app.logout_all(&access).await;
    assert_eq!(
        introspect(&app, gateway, &access).await,
        json!({"active": false})
    );
    let tampered = format!("{client_token}x");
    assert_eq!(
        introspect(&app, gateway, &tampered).await,
        json!({"active": false})
    );
    assert_eq!(
        introspect(&app, gateway, "not-a-token").await,
        json!({"active": false})
    );

    // A deleted client's token.
    let deleted = admin(
        &app,
        &key,
        Method::DELETE,
        &format!("/admin/v1/clients/{id}"),
        None,
    )
    .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        introspect(&app, gateway, &client_token).await,
        json!({"active": false})
    );

    // Introspection needs a client.
    let anonymous = app
        .client
        .post(app.url("/v1/oauth/introspect"))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    oauth_error(anonymous, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn tokens_of_disabled_or_deleted_accounts_and_expired_ones_are_inactive() {
    let (app, key) = admin_app(|config| config.access_ttl = 1).await;
    let gateway = new_client(&app, "gateway", "").await;
    let gateway = (gateway.0.as_str(), gateway.1.as_str());
    let mut accounts = Vec::new();
    for _ in 0..3 {
        let (_, pair) = app.signed_in_user().await;
        let access = str_field(&pair, "access_token");
        let refresh = str_field(&pair, "refresh_token");
        let user_id = str_field(&jwt_part(&access, 1), "sub");
        assert_eq!(introspect(&app, gateway, &access).await["active"], true);
        assert_eq!(introspect(&app, gateway, &refresh).await["active"], true);
        accounts.push((user_id, access, refresh));
    }
    let [disabled, deleted, expiring] = <[_; 3]>::try_from(accounts).unwrap();

    let answer = admin(
        &app,
        &key,
        Method::PATCH,
        &format!("/admin/v1/users/{}", disabled.0),
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(answer.status(), StatusCode::OK);
    let answer = admin(
        &app,
        &key,
        Method::DELETE,
        &format!("/admin/v1/users/{}", deleted.0),
        None,
    )
    .await;
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    for (_, access, refresh) in [&disabled, &deleted] {
        assert_eq!(
            introspect(&app, gateway, access).await,
            json!({"active": false})
        );
        assert_eq!(
            introspect(&app, gateway, refresh).await,
            json!({"active": false})
        );
    }

    // One second of lifetime plus the verifier's leeway for clock skew.
    tokio::time::sleep(std::time::Duration::from_millis(7_100)).await;
    assert_eq!(
        introspect(&app, gateway, &expiring.1).await,
        json!({"active": false}),
        "an expired access token"
    );
    assert_eq!(
        introspect(&app, gateway, &expiring.2).await["active"],
        true,
        "its refresh token lives on"
    );
}

#[tokio::test]
async fn tokens_signed_by_a_revoked_key_are_inactive() {
    let (app, _) = admin_app(|config| config.key_reload_interval = 1).await;
    let gateway = new_client(&app, "gateway", "").await;
    let (_, pair) = app.signed_in_user().await;
    let access = str_field(&pair, "access_token");
    let kid = str_field(&jwt_part(&access, 0), "kid");
    app.run_async(&["keys", "rotate", "--now"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    app.run_async(&["keys", "revoke", &kid]).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let found = introspect(&app, (&gateway.0, &gateway.1), &access).await;
    assert_eq!(found, json!({"active": false}));
}

#[tokio::test]
async fn clients_are_managed_by_the_admin_api_and_admin_scoped_tokens_open_it() {
    let (app, key) = admin_app(|_| {}).await;
    let created = admin(
        &app,
        &key,
        Method::POST,
        "/admin/v1/clients",
        Some(json!({"name": "ops-robot", "scopes": ["authgate:admin"]})),
    )
    .await;
    let created = json_of(created, StatusCode::CREATED).await;
    let (id, secret) = (
        str_field(&created, "client_id"),
        str_field(&created, "client_secret"),
    );
    assert_eq!(created["scopes"], json!(["authgate:admin"]));
    let listed = json_of(
        admin(&app, &key, Method::GET, "/admin/v1/clients", None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed["clients"][0]["client_id"], id.as_str());
    assert!(listed["clients"][0].get("client_secret").is_none());
    assert!(
        !listed.to_string().contains(&secret),
        "a secret is shown once"
    );
    let bad = admin(
        &app,
        &key,
        Method::POST,
        "/admin/v1/clients",
        Some(json!({"name": "x", "scopes": ["has space\"quote"]})),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Its token works on the admin API and is the actor of what it does.
    let response = token_request(
        &app,
        Some(basic(&id, &secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let token = str_field(&response.json::<Value>().await.unwrap(), "access_token");
    let made = admin(
        &app,
        &token,
        Method::POST,
        "/admin/v1/users",
        Some(json!({"email": "by-robot@example.com"})),
    )
    .await;
    json_of(made, StatusCode::CREATED).await;
    let audit = json_of(
        admin(
            &app,
            &key,
            Method::GET,
            "/admin/v1/audit?event=user_created",
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(audit["events"][0]["actor"], "client:ops-robot");

    // Without the admin scope, or once deleted: 401.
    let (plain_id, plain_secret) = new_client(&app, "plain", "reports:read").await;
    let response = token_request(
        &app,
        Some(basic(&plain_id, &plain_secret)),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let plain_token = str_field(&response.json::<Value>().await.unwrap(), "access_token");
    let refused = admin(&app, &plain_token, Method::GET, "/admin/v1/users", None).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let deleted = admin(
        &app,
        &key,
        Method::DELETE,
        &format!("/admin/v1/clients/{id}"),
        None,
    )
    .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let refused = admin(&app, &token, Method::GET, "/admin/v1/users", None).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let again = admin(
        &app,
        &key,
        Method::DELETE,
        &format!("/admin/v1/clients/{id}"),
        None,
    )
    .await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    // The CLI sees the same clients.
    let listed = app.run_async(&["clients", "list"]).await;
    assert!(
        listed.contains(&plain_id) && !listed.contains(&id),
        "{listed}"
    );
    app.run_async(&["clients", "delete", &plain_id]).await;
    assert!(
        !app.run_async(&["clients", "list"])
            .await
            .contains(&plain_id)
    );
}
