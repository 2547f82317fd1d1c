use authgate_verify::Verifier;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_problem, jwt_part, spawn_app, spawn_app_with, str_field};

#[tokio::test]
async fn access_tokens_follow_rfc_9068_and_verify_against_the_published_jwks() {
    let app = spawn_app().await;
    let (_, pair) = app.signed_in_user().await;
    let token = str_field(&pair, "access_token");
    let me: Value = app.me(&token).await.json().await.unwrap();

    let header = jwt_part(&token, 0);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    let claims = jwt_part(&token, 1);
    assert_eq!(claims["iss"], "http://authgate.test");
    assert_eq!(claims["aud"], "authgate");
    assert_eq!(claims["sub"], me["id"]);
    for claim in ["jti", "sid"] {
        uuid::Uuid::parse_str(&str_field(&claims, claim)).unwrap();
    }
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["nbf"].as_i64().unwrap(), iat);
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 900);

    let jwks = app.jwks().await;
    let published = jwks
        .find(&str_field(&header, "kid"))
        .expect("kid is published");
    assert_eq!(
        serde_json::to_value(published).unwrap()["use"],
        "sig",
        "{published:?}"
    );
    let verifier = Verifier::new("http://authgate.test", "authgate");
    verifier.set_keys(&jwks);
    let verified = verifier
        .verify_cached(&token)
        .expect("verifies with the JWKS");
    assert_eq!(verified.sid.to_string(), str_field(&claims, "sid"));
}

#[tokio::test]
async fn every_access_token_has_its_own_jti() {
    let app = spawn_app().await;
    let (email, first) = app.signed_in_user().await;
    let second = app.login_ok(&email).await;
    let refreshed: Value = app
        .refresh(&str_field(&second, "refresh_token"))
        .await
        .json()
        .await
        .unwrap();
    let jtis: std::collections::HashSet<String> = [first, second, refreshed]
        .iter()
        .map(|pair| str_field(&jwt_part(&str_field(pair, "access_token"), 1), "jti"))
        .collect();
    assert_eq!(jtis.len(), 3);
}

#[tokio::test]
async fn bearer_endpoints_answer_401_with_www_authenticate() {
    let app = spawn_app().await;
    let (_, pair) = app.signed_in_user().await;
    let token = str_field(&pair, "access_token");

    // No token at all: a bare challenge (RFC 6750 §3.1).
    for response in [
        app.client.get(app.url("/v1/auth/me")).send().await.unwrap(),
        app.client
            .post(app.url("/v1/auth/logout-all"))
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }

    // A presented but bad token: error="invalid_token".
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    let claims_only = token.rsplit_once('.').unwrap().0.to_owned() + ".";
    for bad in [
        "garbage",
        tampered.as_str(),
        claims_only.as_str(),
        &"x".repeat(9000),
    ] {
        for response in [app.me(bad).await, app.logout_all(bad).await] {
            let challenge = response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(
                challenge.starts_with("Bearer error=\"invalid_token\""),
                "{challenge}"
            );
            let problem = assert_problem(response, StatusCode::UNAUTHORIZED).await;
            assert_eq!(problem["type"], "urn:authgate:problem:invalid-token");
        }
    }
}

#[tokio::test]
async fn tokens_for_another_audience_or_from_another_issuer_are_rejected() {
    let app = spawn_app().await;
    let (email, _) = app.signed_in_user().await;
    // Same database, keys and session store; one claim differs each time.
    let mut other_audience = app.config.clone();
    other_audience.audience = "another-api".into();
    let mut other_issuer = app.config.clone();
    other_issuer.issuer = "http://other.test".into();
    for config in [other_audience, other_issuer] {
        let other = crate::helpers::TestApp::start(config).await;
        let foreign = other.login_ok(&email).await;
        let token = str_field(&foreign, "access_token");
        assert_eq!(other.me(&token).await.status(), StatusCode::OK);

        let response = app.me(&token).await;

        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
}

#[tokio::test]
async fn an_expired_access_token_is_rejected() {
    let app = spawn_app_with(|config| config.access_ttl = 1).await;
    let (_, pair) = app.signed_in_user().await;
    let token = str_field(&pair, "access_token");
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);

    // One second of lifetime plus the five seconds of leeway for clock skew.
    tokio::time::sleep(std::time::Duration::from_millis(7_100)).await;

    assert_problem(app.me(&token).await, StatusCode::UNAUTHORIZED).await;
}

#[path = "../../verify/tests/support/corpus.rs"]
mod corpus;

#[tokio::test]
async fn forged_and_broken_tokens_are_rejected_by_me() {
    use authgate::store::entities::signing_keys;
    use sea_orm::EntityTrait;

    let app = spawn_app().await;
    let (_, pair) = app.signed_in_user().await;
    let claims = jwt_part(&str_field(&pair, "access_token"), 1);
    let key = signing_keys::Entity::find()
        .one(&app.db().await)
        .await
        .unwrap()
        .unwrap();
    // The test holds the master key, as an operator would.
    let master = authgate::startup::master_keys(&app.config)
        .unwrap()
        .unwrap();
    let sealed = key.sealed_private_key.as_deref().unwrap();
    let private_pem = String::from_utf8(master.open(sealed, &key.kid).unwrap()).unwrap();
    let issuer = corpus::Issuer {
        kid: &key.kid,
        private_pem: &private_pem,
        public_x: &key.public_key,
    };

    for (attack, token) in corpus::forged_tokens(&issuer, &claims) {
        let response = app.me(&token).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "accepted: {attack}"
        );
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
}
