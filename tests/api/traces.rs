//! Finding what makes a request slow: traces exported over OTLP/HTTP to a real collector
//! (decoded with the OpenTelemetry protocol definitions), and `Server-Timing`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{PASSWORD, spawn_app, spawn_app_with, str_field};
use crate::observability::LoggedBinary;
use crate::receivers::{OtlpCollector, ReceivedSpan, WebhookReceiver};

const SERVER: i32 = 2;

/// The real binary exporting to `endpoint`, its batches sent every 100 ms.
async fn traced_binary(endpoint: &str, more: &[(&str, &str)]) -> LoggedBinary {
    let mut env = vec![
        ("AUTHGATE_OTLP_ENDPOINT", endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    env.extend_from_slice(more);
    LoggedBinary::start("info", "json", &env).await
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand_byte()))
        .collect::<String>()
}

fn rand_byte() -> u8 {
    authgate::crypto::random_bytes::<1>()[0]
}

fn children_of<'a>(spans: &'a [ReceivedSpan], parent: &ReceivedSpan) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|span| span.parent_span_id == parent.span_id && span.trace_id == parent.trace_id)
        .collect()
}

#[tokio::test]
async fn a_request_is_a_server_span_in_the_callers_trace_with_a_child_span_per_phase() {
    let collector = OtlpCollector::start().await;
    // A subscriber, so that a login writes its event to the outbox, and a message channel,
    // so that registering writes a verification message to the outbox.
    let webhook = WebhookReceiver::start().await;
    let messages = std::env::temp_dir().join(format!("authgate-traced-{}.jsonl", Uuid::new_v4()));
    let binary = traced_binary(
        &collector.endpoint,
        &[
            ("AUTHGATE_EVENTS_WEBHOOK_URL", webhook.url.as_str()),
            ("AUTHGATE_EVENTS_WEBHOOK_SECRET", webhook.secret.as_str()),
            ("AUTHGATE_DELIVERY_FILE", messages.to_str().unwrap()),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let email = format!("traced-{}@example.com", Uuid::new_v4().simple());
    let registered = client
        .post(binary.url("/v1/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);

    let (trace_id, caller_span) = (random_hex(16), random_hex(8));
    let request_id = format!("req-{}", Uuid::new_v4().simple());
    let login = client
        .post(binary.url("/v1/auth/login"))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .header("x-request-id", &request_id)
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let pair: Value = login.json().await.unwrap();
    let (access, refresh) = (
        str_field(&pair, "access_token"),
        str_field(&pair, "refresh_token"),
    );
    let me = client
        .get(binary.url("/v1/auth/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);

    let is_login = |span: &ReceivedSpan| span.kind == SERVER && span.trace_id == trace_id;
    let is_me = |span: &ReceivedSpan| span.kind == SERVER && span.name == "GET /v1/auth/me";
    let is_register =
        |span: &ReceivedSpan| span.kind == SERVER && span.name == "POST /v1/auth/register";
    collector
        .wait_for(Duration::from_secs(10), is_register)
        .await;
    collector.wait_for(Duration::from_secs(10), is_me).await;
    let spans = collector
        .wait_for(Duration::from_secs(10), |span| {
            is_login(span) && span.name == "POST /v1/auth/login"
        })
        .await;

    // The server span: named after the route template, a child of the caller's span.
    let server = spans.iter().find(|span| is_login(span)).unwrap();
    assert_eq!(server.name, "POST /v1/auth/login");
    assert_eq!(server.parent_span_id, caller_span);
    assert_eq!(server.attribute("http.route"), Some("/v1/auth/login"));
    assert_eq!(server.attribute("request_id"), Some(request_id.as_str()));
    assert_eq!(server.attribute("http.response.status_code"), Some("200"));

    // Its children: statements, the hash wait and run, signing and the outbox write,
    // each within the request's own time.
    let children = children_of(&spans, server);
    let phases: BTreeSet<&str> = children
        .iter()
        .filter_map(|span| span.attribute("authgate.phase"))
        .collect();
    for phase in ["db", "hash-wait", "hash", "sign", "outbox"] {
        assert!(phases.contains(phase), "no {phase} span in {children:#?}");
    }
    assert!(
        children.iter().any(|span| span.name == "SELECT users"),
        "{children:#?}"
    );
    for child in &children {
        assert!(
            child.start_nanos >= server.start_nanos && child.end_nanos <= server.end_nanos,
            "{child:?} outside {server:?}"
        );
    }

    // A request without a caller starts a trace of its own; /me's session lookup runs
    // in a batch, which is its database span.
    let me = spans.iter().find(|span| is_me(span)).unwrap();
    assert!(me.parent_span_id.is_empty());
    assert_ne!(me.trace_id, trace_id);
    assert_eq!(me.attribute("http.response.status_code"), Some("200"));
    let me_children = children_of(&spans, me);
    assert!(
        me_children
            .iter()
            .any(|span| span.name == "session lookup batch"
                && span.attribute("authgate.phase") == Some("db")),
        "{me_children:#?}"
    );

    // Registering wrote its verification message to the outbox.
    let register = spans.iter().find(|span| is_register(span)).unwrap();
    let register_children = children_of(&spans, register);
    assert!(
        register_children
            .iter()
            .any(|span| span.attribute("authgate.phase") == Some("outbox")),
        "{register_children:#?}"
    );

    // Nothing exported holds a secret or an email: not the password, its hash, the
    // tokens, a key or the verification token that was sent.
    let sent = std::fs::read_to_string(&messages).unwrap();
    let sent: Value = serde_json::from_str(sent.lines().next().unwrap()).unwrap();
    let verification = str_field(&sent["data"], "token");
    let everything = format!("{spans:?}");
    for secret in [
        PASSWORD,
        email.as_str(),
        access.as_str(),
        refresh.as_str(),
        verification.as_str(),
        "$argon2",
        "PRIVATE KEY",
    ] {
        assert!(!everything.contains(secret), "exported: {secret}");
    }
    assert!(!everything.contains(&webhook.secret));
    binary.stop().await;
    std::fs::remove_file(&messages).ok();
}

#[tokio::test]
async fn spans_are_named_by_route_template_never_by_the_raw_path() {
    let collector = OtlpCollector::start().await;
    let binary = traced_binary(&collector.endpoint, &[]).await;
    let client = reqwest::Client::new();
    let session = Uuid::new_v4();
    let templated = client
        .delete(binary.url(&format!("/v1/auth/sessions/{session}")))
        .send()
        .await
        .unwrap();
    assert_eq!(templated.status(), StatusCode::UNAUTHORIZED);
    let unknown = client
        .get(binary.url("/no/such/place-a1b2"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    let spans = collector
        .wait_for(Duration::from_secs(10), |span| {
            span.kind == SERVER && span.attribute("http.response.status_code") == Some("404")
        })
        .await;
    let spans = collector
        .wait_for(Duration::from_secs(10), |span| {
            span.name == "DELETE /v1/auth/sessions/{id}"
        })
        .await
        .into_iter()
        .chain(spans)
        .collect::<Vec<_>>();
    let everything = format!("{spans:?}");
    assert!(!everything.contains(&session.to_string()), "{everything}");
    assert!(!everything.contains("place-a1b2"), "{everything}");
    binary.stop().await;
}

/// Requests through `binary` for a while: every one answered, none slower than a second.
async fn requests_stay_fast(binary: &LoggedBinary, requests: usize) {
    let client = reqwest::Client::new();
    let mut slowest = Duration::ZERO;
    for n in 0..requests {
        let started = Instant::now();
        let response = if n % 10 == 0 {
            let email = format!("fast-{}@example.com", Uuid::new_v4().simple());
            client
                .post(binary.url("/v1/auth/register"))
                .json(&json!({"email": email, "password": PASSWORD}))
                .send()
                .await
                .unwrap()
        } else {
            client.get(binary.url("/health/live")).send().await.unwrap()
        };
        assert!(response.status().is_success(), "{:?}", response.status());
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_secs(1),
        "slowest request: {slowest:?}"
    );
}

#[tokio::test]
async fn a_collector_that_is_down_or_slow_never_slows_or_fails_a_request() {
    // Down: nothing listens on the endpoint's port.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut down = traced_binary(&format!("http://127.0.0.1:{port}"), &[]).await;
    requests_stay_fast(&down, 300).await;
    // The operator learns why no trace arrives.
    down.wait_for(|line| line.contains("exporting traces failed"));
    down.stop().await;

    // Slow: the collector holds every export for 20 seconds, and a queue of 32 spans
    // fills at once: spans are dropped, requests do not wait.
    let collector = OtlpCollector::start().await;
    collector.set_delay(Duration::from_secs(20));
    let queue = [
        ("OTEL_BSP_MAX_QUEUE_SIZE", "32"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "16"),
    ];
    let slow = traced_binary(&collector.endpoint, &queue).await;
    requests_stay_fast(&slow, 300).await;
    assert!(collector.exports() >= 1, "the exporter never tried");
    slow.stop().await;
}

/// The `Server-Timing` phases of a response, in order, in milliseconds.
fn server_timing(response: &reqwest::Response) -> Vec<(String, f64)> {
    let header = response
        .headers()
        .get("server-timing")
        .expect("a Server-Timing header")
        .to_str()
        .unwrap();
    header
        .split(',')
        .map(|metric| {
            let (name, duration) = metric.trim().split_once(";dur=").unwrap();
            (name.to_owned(), duration.parse().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn server_timing_tells_how_long_each_phase_of_a_request_took() {
    let app = spawn_app_with(|config| config.server_timing = true).await;
    let email = format!("timed-{}@example.com", Uuid::new_v4().simple());
    let registered = app.register(&email, PASSWORD).await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let login = app.login(&email, PASSWORD).await;
    assert_eq!(login.status(), StatusCode::OK);
    let phases = server_timing(&login);
    let names: Vec<&str> = phases.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["db", "hash-wait", "hash", "sign", "total"]);
    let of = |name: &str| phases.iter().find(|(n, _)| n == name).unwrap().1;
    assert!(
        of("db") > 0.0 && of("hash") > 0.0 && of("sign") > 0.0,
        "{phases:?}"
    );
    assert!(
        of("total") >= of("db") + of("hash-wait") + of("hash") + of("sign"),
        "{phases:?}"
    );

    let pair: Value = login.json().await.unwrap();
    let me = app.me(&str_field(&pair, "access_token")).await;
    assert_eq!(me.status(), StatusCode::OK);
    let phases = server_timing(&me);
    let of = |name: &str| phases.iter().find(|(n, _)| n == name).unwrap().1;
    assert_eq!((of("hash"), of("hash-wait"), of("sign")), (0.0, 0.0, 0.0));
    assert!(of("db") > 0.0 && of("total") >= of("db"), "{phases:?}");
}

#[tokio::test]
async fn server_timing_is_off_unless_enabled() {
    let app = spawn_app().await;
    let (_, pair) = app.signed_in_user().await;
    let me = app.me(&str_field(&pair, "access_token")).await;
    assert_eq!(me.status(), StatusCode::OK);
    assert!(me.headers().get("server-timing").is_none());
}
