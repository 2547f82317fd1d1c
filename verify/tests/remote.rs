//! Remote key sources against local servers: the https rule and its opt-out, TLS in
//! the default build, the 64 KiB response cap, same-origin redirects only, discovered
//! `jwks_uri`s on the issuer's origin only, and an allow-list mixing key families.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed step should fail the test"
)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authgate_verify::poem::Jwt;
use authgate_verify::{
    AccessClaims, Algorithm, InitError, JwksOptions, MAX_KEYS_RESPONSE_LEN, Verifier,
    VerifierBuilder, VerifyError,
};
use jsonwebtoken::{EncodingKey, Header};
use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::test::TestClient;
use poem::web::Data;
use poem::{Body, EndpointExt, Request, Response, Route, get, handler};
use serde_json::{Value, json};
use support::corpus::{ATTACKER_ED25519_PEM, ATTACKER_ED25519_X};
use support::*;

/// A P-256 key pair generated with openssl for these tests only.
const P256_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgoMaSVIjJlFX5ZCr6\n+BFKeC531WM/9sZuamTKMgwF48OhRANCAAQev3bAYrURqjdcESp5S7HMwyGr3nrY\nabGZcKpdMGdDxFM0PCX4L2nKkJ5aR+K38iWu+v+7EIvl82ANydka4MjS\n-----END PRIVATE KEY-----\n";
const P256_X: &str = "Hr92wGK1Eao3XBEqeUuxzMMhq9562GmxmXCqXTBnQ8Q";
const P256_Y: &str = "UzQ8JfgvacqQnlpH4rfyJa76_7sQi-XzYA3J2RrgyNI";

/// What the server answers on a path.
#[derive(Clone)]
enum Reply {
    /// 200 with a JSON body (and a `Content-Length`).
    Json(String),
    /// 200 with a chunked JSON body (no `Content-Length`).
    Chunked(String),
    /// 302 to this location.
    Redirect(String),
}

#[derive(Default)]
struct Mock {
    routes: Mutex<HashMap<String, Reply>>,
    hits: Mutex<HashMap<String, usize>>,
}

struct Server {
    mock: Arc<Mock>,
    /// `http://127.0.0.1:port`
    base: String,
}

impl Server {
    fn reply(&self, path: &str, reply: Reply) {
        self.mock
            .routes
            .lock()
            .unwrap()
            .insert(path.to_owned(), reply);
    }
    fn json(&self, path: &str, body: &Value) {
        self.reply(path, Reply::Json(body.to_string()));
    }
    fn hits(&self, path: &str) -> usize {
        self.mock
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

#[handler]
async fn serve(req: &Request, Data(mock): Data<&Arc<Mock>>) -> Response {
    let path = req.uri().path().to_owned();
    *mock.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let reply = mock.routes.lock().unwrap().get(&path).cloned();
    let json = Response::builder().header("content-type", "application/json");
    match reply {
        Some(Reply::Json(body)) => json.body(body),
        Some(Reply::Chunked(body)) => json.body(Body::from_async_read(std::io::Cursor::new(
            body.into_bytes(),
        ))),
        Some(Reply::Redirect(location)) => Response::builder()
            .status(StatusCode::FOUND)
            .header("location", location)
            .finish(),
        None => Response::builder().status(StatusCode::NOT_FOUND).finish(),
    }
}

async fn spawn_server() -> Server {
    let mock = Arc::new(Mock::default());
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    let app = Route::new().at("/*path", get(serve)).data(mock.clone());
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    Server {
        mock,
        base: format!("http://{addr}"),
    }
}

fn fast_options() -> JwksOptions {
    JwksOptions {
        timeout: Duration::from_millis(500),
        ..JwksOptions::default()
    }
}

fn builder(issuer: &str) -> VerifierBuilder {
    Verifier::builder(issuer, AUDIENCE).jwks_options(fast_options())
}

fn issuer_jwks() -> Value {
    json!({"keys": [jwk("k1", ISSUER_X)]})
}

/// Claims for tokens of `issuer` (discovery tests use the server as the issuer).
fn claims_of(issuer: &str) -> Value {
    let mut claims = claims();
    claims["iss"] = json!(issuer);
    claims
}

#[handler]
fn whoami(Jwt(claims): Jwt<AccessClaims>) -> String {
    claims.sub.to_string()
}

/// The status a poem service protected by `verifier` answers for `token`.
async fn status(verifier: &Arc<Verifier>, token: &str) -> StatusCode {
    let app = Route::new()
        .at("/whoami", get(whoami))
        .data(verifier.clone());
    TestClient::new(app)
        .get("/whoami")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .0
        .status()
}

// --- https required, except for loopback hosts (explicit opt-out) ---

#[tokio::test]
async fn plain_http_to_a_host_that_is_not_loopback_is_refused_at_build() {
    for url in [
        "http://keys.example.com/jwks.json",
        "http://192.0.2.1/jwks.json",
        "http://[2001:db8::1]/jwks.json",
        "http://localhost.example.com/jwks.json",
    ] {
        let result = builder(ISSUER).jwks_url(url).build().await;
        let Err(error) = result else {
            panic!("{url}: accepted");
        };
        assert!(
            matches!(error, InitError::InsecureHttp(_)),
            "{url}: {error}"
        );
        assert!(
            error.to_string().contains(".allow_insecure_http()"),
            "{error}"
        );
    }
    // The discovery document of a plain-http issuer likewise.
    let discovery = builder("http://issuer.example.com")
        .discovery()
        .build()
        .await;
    assert!(matches!(discovery, Err(InitError::InsecureHttp(_))));
}

#[tokio::test]
async fn plain_http_is_accepted_with_the_opt_out() {
    for url in [
        "http://keys.invalid/jwks.json",
        "http://192.0.2.1/jwks.json",
        "http://[2001:db8::1]/jwks.json",
    ] {
        let result = builder(ISSUER)
            .jwks_url(url)
            .allow_insecure_http()
            .build()
            .await;
        assert!(result.is_ok(), "{url}: {:?}", result.err());
    }
    let discovery = builder("http://issuer.invalid")
        .discovery()
        .allow_insecure_http()
        .build()
        .await;
    assert!(discovery.is_ok(), "{:?}", discovery.err());
}

#[tokio::test]
async fn plain_http_to_a_loopback_host_needs_no_opt_out() {
    for url in [
        "http://127.0.0.1:1/jwks.json",
        "http://127.0.0.2:1/jwks.json",
        "http://[::1]:1/jwks.json",
        "http://localhost:1/jwks.json",
    ] {
        let result = builder(ISSUER).jwks_url(url).build().await;
        assert!(result.is_ok(), "{url}: {:?}", result.err());
    }
    // And keys are really fetched from one.
    let server = spawn_server().await;
    server.json("/jwks.json", &issuer_jwks());
    let verifier = builder(ISSUER)
        .jwks_url(&server.url("/jwks.json"))
        .build()
        .await
        .map(Arc::new)
        .unwrap();
    assert_eq!(
        status(&verifier, &issuer_token("k1", &claims())).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn schemes_other_than_http_and_https_are_refused_even_with_the_opt_out() {
    for url in [
        "ftp://127.0.0.1/jwks.json",
        "file:///etc/jwks.json",
        "ws://127.0.0.1/jwks.json",
        "127.0.0.1/jwks.json",
        "not a url",
    ] {
        for insecure in [false, true] {
            let mut builder = builder(ISSUER).jwks_url(url);
            if insecure {
                builder = builder.allow_insecure_http();
            }
            let result = builder.build().await;
            assert!(
                matches!(result, Err(InitError::BadUrl { .. })),
                "{url}: {:?}",
                result.err()
            );
        }
    }
}

// --- TLS in the default build ---

/// An `https://` key source speaks TLS: the server receives a ClientHello.
#[cfg(feature = "rustls")]
#[tokio::test]
async fn an_https_key_source_is_fetched_over_tls() {
    use tokio::io::AsyncReadExt;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let first_bytes = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut record = [0u8; 3];
        stream.read_exact(&mut record).await.unwrap();
        record
    });

    let verifier = builder(ISSUER)
        .jwks_url(&format!("https://127.0.0.1:{port}/jwks.json"))
        .build()
        .await;

    assert!(verifier.is_ok(), "{:?}", verifier.err());
    let record = tokio::time::timeout(Duration::from_secs(2), first_bytes)
        .await
        .expect("no connection: https is not supported by this build")
        .unwrap();
    // A TLS handshake record (22), protocol version 3.x.
    assert_eq!(record[..2], [0x16, 0x03], "not a TLS handshake: {record:?}");
}

#[cfg(not(feature = "rustls"))]
#[tokio::test]
async fn without_tls_an_https_key_source_is_refused_at_build() {
    let result = builder(ISSUER)
        .jwks_url("https://127.0.0.1:1/jwks.json")
        .build()
        .await;
    assert!(matches!(result, Err(InitError::TlsUnavailable(_))));
}

// --- 64 KiB response cap ---

/// The issuer's JWKS padded with an ignored member to exactly `len` bytes.
fn padded_jwks(len: usize) -> String {
    let unpadded = json!({"keys": [jwk("k1", ISSUER_X)], "padding": ""}).to_string();
    let padded =
        json!({"keys": [jwk("k1", ISSUER_X)], "padding": "x".repeat(len - unpadded.len())})
            .to_string();
    assert_eq!(padded.len(), len);
    padded
}

#[tokio::test]
async fn a_jwks_over_64_kib_is_refused_with_or_without_a_content_length() {
    let token = issuer_token("k1", &claims());
    for (case, reply, expected) in [
        (
            "exactly 64 KiB",
            Reply::Json(padded_jwks(MAX_KEYS_RESPONSE_LEN)),
            StatusCode::OK,
        ),
        (
            "exactly 64 KiB, chunked",
            Reply::Chunked(padded_jwks(MAX_KEYS_RESPONSE_LEN)),
            StatusCode::OK,
        ),
        (
            "one byte over",
            Reply::Json(padded_jwks(MAX_KEYS_RESPONSE_LEN + 1)),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            "one byte over, chunked",
            Reply::Chunked(padded_jwks(MAX_KEYS_RESPONSE_LEN + 1)),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            "a megabyte, chunked",
            Reply::Chunked(padded_jwks(1 << 20)),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    ] {
        let server = spawn_server().await;
        server.reply("/jwks.json", reply);
        let verifier = builder(ISSUER)
            .jwks_url(&server.url("/jwks.json"))
            .build()
            .await
            .map(Arc::new)
            .unwrap();

        assert_eq!(status(&verifier, &token).await, expected, "{case}");
        assert!(server.hits("/jwks.json") >= 1, "{case}: fetched");
    }
}

#[tokio::test]
async fn a_discovery_document_over_64_kib_is_refused() {
    let server = spawn_server().await;
    let document = json!({"issuer": server.base, "jwks_uri": server.url("/jwks.json"),
        "padding": "x".repeat(MAX_KEYS_RESPONSE_LEN)});
    server.json("/.well-known/openid-configuration", &document);
    server.json("/jwks.json", &issuer_jwks());
    let verifier = builder(&server.base)
        .discovery()
        .build()
        .await
        .map(Arc::new)
        .unwrap();

    let token = issuer_token("k1", &claims_of(&server.base));
    assert_eq!(
        status(&verifier, &token).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(server.hits("/jwks.json"), 0);
}

#[tokio::test]
async fn an_oversized_refetch_keeps_the_last_good_keys() {
    let server = spawn_server().await;
    server.json("/jwks.json", &issuer_jwks());
    let options = JwksOptions {
        min_refetch_interval: Duration::ZERO,
        ..fast_options()
    };
    let verifier = builder(ISSUER)
        .jwks_url(&server.url("/jwks.json"))
        .jwks_options(options)
        .build()
        .await
        .map(Arc::new)
        .unwrap();
    // The JWKS grows past the cap and would bring a new key.
    let grown = json!({"keys": [jwk("k1", ISSUER_X), jwk("k2", ATTACKER_ED25519_X)],
        "padding": "x".repeat(MAX_KEYS_RESPONSE_LEN)});
    server.json("/jwks.json", &grown);

    let new_key_token = token_signed_by(ATTACKER_ED25519_PEM, "k2", &claims());
    assert_eq!(
        verifier.verify(&new_key_token).await.map(|_| ()),
        Err(VerifyError::UnknownKey)
    );
    assert_eq!(
        server.hits("/jwks.json"),
        2,
        "the unknown kid was refetched"
    );
    assert_eq!(
        status(&verifier, &issuer_token("k1", &claims())).await,
        StatusCode::OK
    );
}

// --- redirects stay on the origin ---

#[tokio::test]
async fn a_redirect_to_another_origin_is_not_followed() {
    let issuer = spawn_server().await;
    // Another port is another origin; it serves an attacker's key under the real kid.
    let elsewhere = spawn_server().await;
    elsewhere.json(
        "/jwks.json",
        &json!({"keys": [jwk("k1", ATTACKER_ED25519_X)]}),
    );
    issuer.reply("/jwks.json", Reply::Redirect(elsewhere.url("/jwks.json")));
    let verifier = builder(ISSUER)
        .jwks_url(&issuer.url("/jwks.json"))
        .build()
        .await
        .map(Arc::new)
        .unwrap();

    let forged = token_signed_by(ATTACKER_ED25519_PEM, "k1", &claims());
    assert_eq!(
        status(&verifier, &forged).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(elsewhere.hits("/jwks.json"), 0, "the redirect was followed");
}

#[tokio::test]
async fn a_redirect_on_the_same_origin_is_followed() {
    let server = spawn_server().await;
    server.reply("/old/jwks.json", Reply::Redirect("/v2/jwks.json".into()));
    server.reply("/v2/jwks.json", Reply::Redirect(server.url("/jwks.json")));
    server.json("/jwks.json", &issuer_jwks());
    let verifier = builder(ISSUER)
        .jwks_url(&server.url("/old/jwks.json"))
        .build()
        .await
        .map(Arc::new)
        .unwrap();

    assert_eq!(
        status(&verifier, &issuer_token("k1", &claims())).await,
        StatusCode::OK
    );
    assert_eq!(server.hits("/jwks.json"), 1);
}

#[tokio::test]
async fn a_redirect_loop_is_cut_short() {
    let server = spawn_server().await;
    server.reply("/jwks.json", Reply::Redirect("/jwks.json".into()));
    let verifier = builder(ISSUER)
        .jwks_url(&server.url("/jwks.json"))
        .build()
        .await
        .map(Arc::new)
        .unwrap();

    assert_eq!(server.hits("/jwks.json"), 4, "the request and 3 redirects");
    assert_eq!(
        status(&verifier, &issuer_token("k1", &claims())).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

// --- a discovered jwks_uri stays on the issuer's origin unless allowed ---

/// An issuer whose discovery document names a JWKS served by another server.
async fn issuer_with_keys_elsewhere() -> (Server, Server) {
    let issuer = spawn_server().await;
    let keys = spawn_server().await;
    keys.json("/jwks.json", &issuer_jwks());
    let document = json!({"issuer": issuer.base, "jwks_uri": keys.url("/jwks.json")});
    issuer.json("/.well-known/openid-configuration", &document);
    (issuer, keys)
}

#[tokio::test]
async fn a_discovered_jwks_uri_on_another_origin_is_refused() {
    let (issuer, keys) = issuer_with_keys_elsewhere().await;
    let verifier = builder(&issuer.base)
        .discovery()
        .build()
        .await
        .map(Arc::new)
        .unwrap();

    let token = issuer_token("k1", &claims_of(&issuer.base));
    assert_eq!(
        status(&verifier, &token).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(issuer.hits("/.well-known/openid-configuration") >= 1);
    assert_eq!(keys.hits("/jwks.json"), 0);
}

#[tokio::test]
async fn a_discovered_jwks_uri_on_an_allowed_origin_is_used() {
    let (issuer, keys) = issuer_with_keys_elsewhere().await;
    let other = spawn_server().await;
    let verifier = builder(&issuer.base)
        .discovery()
        .allow_jwks_origin(&other.base)
        .allow_jwks_origin(&format!("{}/", keys.base))
        .build()
        .await
        .map(Arc::new)
        .unwrap();

    let token = issuer_token("k1", &claims_of(&issuer.base));
    assert_eq!(status(&verifier, &token).await, StatusCode::OK);
    assert_eq!(keys.hits("/jwks.json"), 1);
}

#[tokio::test]
async fn an_allowed_jwks_origin_must_be_a_bare_origin_and_obey_the_https_rule() {
    for origin in [
        "http://127.0.0.1:9/keys",
        "http://127.0.0.1:9/?q",
        "http://user@127.0.0.1:9",
        "keys.example.com",
        "ftp://127.0.0.1:9",
    ] {
        let result = builder("http://127.0.0.1:1")
            .discovery()
            .allow_jwks_origin(origin)
            .build()
            .await;
        assert!(
            matches!(result, Err(InitError::BadUrl { .. })),
            "{origin}: {:?}",
            result.err()
        );
    }
    let plain_http = builder("http://127.0.0.1:1")
        .discovery()
        .allow_jwks_origin("http://keys.example.com")
        .build()
        .await;
    assert!(matches!(plain_http, Err(InitError::InsecureHttp(_))));
    let insecure = builder("http://127.0.0.1:1")
        .discovery()
        .allow_insecure_http()
        .allow_jwks_origin("http://keys.example.com")
        .build()
        .await;
    assert!(insecure.is_ok(), "{:?}", insecure.err());
}

// --- an allow-list mixing key families ---

fn es256_token(kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid.into());
    let key = EncodingKey::from_ec_pem(P256_PRIVATE_PEM.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn ec_jwk(kid: &str) -> Value {
    json!({"kty": "EC", "crv": "P-256", "x": P256_X, "y": P256_Y, "kid": kid, "alg": "ES256", "use": "sig"})
}

#[tokio::test]
async fn an_allow_list_of_eddsa_and_es256_verifies_tokens_of_either_key() {
    let server = spawn_server().await;
    server.json(
        "/jwks.json",
        &json!({"keys": [jwk("ed", ISSUER_X), ec_jwk("ec")]}),
    );
    let verifier = builder(ISSUER)
        .algorithms(&[Algorithm::EdDSA, Algorithm::ES256])
        .jwks_url(&server.url("/jwks.json"))
        .build()
        .await
        .map(Arc::new)
        .unwrap();

    let eddsa = issuer_token("ed", &claims());
    let es256 = es256_token("ec", &claims());
    assert!(verifier.verify(&eddsa).await.is_ok());
    assert!(verifier.verify(&es256).await.is_ok());
    assert_eq!(status(&verifier, &eddsa).await, StatusCode::OK);
    assert_eq!(status(&verifier, &es256).await, StatusCode::OK);

    // A token whose alg does not fit its key's family is refused either way round.
    for (case, token) in [
        ("ES256 under the Ed25519 key", es256_token("ed", &claims())),
        ("EdDSA under the P-256 key", issuer_token("ec", &claims())),
    ] {
        assert_eq!(
            verifier.verify(&token).await.map(|_| ()),
            Err(VerifyError::AlgorithmNotAllowed),
            "{case}"
        );
        assert_eq!(
            status(&verifier, &token).await,
            StatusCode::UNAUTHORIZED,
            "{case}"
        );
    }
}
