//! The ceiling the load harness compares authgate with: a bare poem server on the same
//! building blocks, with nothing of authgate's own.
//!
//! - `GET /static` returns a fixed text;
//! - `GET /jwt` validates an EdDSA Bearer token with jsonwebtoken alone (the key is the
//!   PKCS#8 PEM in `CEILING_KEY_FILE`; the token's claims must fit `iss`/`aud` below).
//!
//! `CEILING_LISTEN=127.0.0.1:8090 CEILING_KEY_FILE=key.pem cargo run --release --example ceiling`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a measuring tool: a failure should stop it loudly"
)]

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use poem::http::StatusCode;
use poem::listener::TcpListener;
use poem::web::Data;
use poem::{EndpointExt, Request, Route, Server, get, handler};

#[handler]
fn static_text() -> &'static str {
    "ok"
}

#[handler]
fn jwt(req: &Request, keys: Data<&Arc<(DecodingKey, Validation)>>) -> StatusCode {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let (key, validation) = &***keys;
    match token.map(|token| jsonwebtoken::decode::<serde_json::Value>(token, key, validation)) {
        Some(Ok(_)) => StatusCode::OK,
        _ => StatusCode::UNAUTHORIZED,
    }
}

fn main() -> std::io::Result<()> {
    let listen = std::env::var("CEILING_LISTEN").unwrap_or_else(|_| "127.0.0.1:8090".into());
    let pem = std::fs::read_to_string(std::env::var("CEILING_KEY_FILE").unwrap_or_default())
        .unwrap_or_default();
    let key = authgate::crypto::signing::SigningKey::from_pem(&pem)
        .map(|key| DecodingKey::from_ed_components(key.public_x()))
        .ok()
        .and_then(Result::ok)
        .unwrap_or_else(|| DecodingKey::from_ed_der(&[0; 32]));
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[
        std::env::var("CEILING_ISSUER").unwrap_or_else(|_| "http://127.0.0.1:8080".into())
    ]);
    validation.set_audience(&["authgate"]);
    let app = Route::new()
        .at("/static", get(static_text))
        .at("/jwt", get(jwt))
        .data(Arc::new((key, validation)));
    // One worker thread, like the server under test when pinned to one core.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(Server::new(TcpListener::bind(listen)).run(app))
}
