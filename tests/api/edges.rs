use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{PASSWORD, assert_problem, spawn_app};

#[tokio::test]
async fn unknown_paths_and_methods_get_problem_json() {
    let app = spawn_app().await;

    let response = app
        .client
        .get(app.url("/no/such/path"))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::NOT_FOUND).await;

    let response = app
        .client
        .get(app.url("/v1/auth/login"))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn a_body_over_16_kib_gets_413_with_a_content_length() {
    let app = spawn_app().await;
    let body = json!({"email": "x@example.com", "password": "p".repeat(17 * 1024)});

    let response = app.post_json("/v1/auth/register", &body).await;

    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
}

#[tokio::test]
async fn a_chunked_body_over_16_kib_gets_413() {
    let app = spawn_app().await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let chunk = "a".repeat(4096);
    let mut request = format!(
        "POST /v1/auth/login HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for _ in 0..5 {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\n\r\n");

    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();

    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json")
    );
}

#[tokio::test]
async fn a_body_just_under_the_limit_is_parsed() {
    let app = spawn_app().await;
    let body = json!({"email": "x@example.com", "password": "p".repeat(16 * 1024 - 60)});
    let response = app.post_json("/v1/auth/login", &body).await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn a_body_not_declared_as_json_gets_400() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("content-type", "text/plain")
        .body(format!(
            "{{\"email\":\"x@example.com\",\"password\":\"{PASSWORD}\"}}"
        ))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST).await;
    let no_content_type = app
        .client
        .post(app.url("/v1/auth/refresh"))
        .send()
        .await
        .unwrap();
    assert_problem(no_content_type, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn health_endpoints_answer_200() {
    let app = spawn_app().await;
    for path in ["/health/live", "/health/ready"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "ok");
    }
}

#[tokio::test]
async fn discovery_names_the_issuer_and_its_jwks() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["issuer"], "http://authgate.test");
    assert_eq!(
        document["jwks_uri"],
        "http://authgate.test/.well-known/jwks.json"
    );
}

#[tokio::test]
async fn the_served_spec_is_the_committed_one_and_swagger_ui_is_served() {
    let app = spawn_app().await;
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();

    let yaml = app
        .client
        .get(app.url("/openapi.yaml"))
        .send()
        .await
        .unwrap();
    assert_eq!(yaml.status(), StatusCode::OK);
    assert_eq!(yaml.text().await.unwrap(), committed);

    let json: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/revoke",
        "/v1/auth/logout-all",
        "/v1/auth/me",
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/health/live",
        "/health/ready",
    ] {
        assert!(
            json["paths"][path].is_object(),
            "{path} missing from the spec"
        );
    }

    let docs = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(
        docs.text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("swagger")
    );
}

#[test]
fn openapi_yaml_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    let generated = authgate::api::spec_yaml();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.yaml is stale: run `UPDATE_OPENAPI=1 cargo test openapi_yaml_is_up_to_date` \
         or `cargo run -- openapi > openapi.yaml`"
    );
}
