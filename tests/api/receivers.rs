//! Real receivers of authgate's messages, run inside the test: an HTTP webhook endpoint
//! that checks every Standard Webhooks signature itself, and a minimal SMTP server.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use poem::http::StatusCode;
use poem::{Body, EndpointExt, Request, Response, Route, Server, handler, listener::TcpListener};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One request the webhook receiver accepted.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub body: Value,
    pub at: Instant,
}

#[derive(Default)]
struct WebhookState {
    secret: Vec<u8>,
    accepted: Mutex<Vec<Delivery>>,
    /// Every attempt's `webhook-id`, accepted or not.
    attempts: Mutex<Vec<(String, Instant)>>,
    /// Answer 500 to this many attempts first.
    failures_left: AtomicUsize,
    /// Answer 500 to everything while set.
    down: AtomicBool,
    /// Answer nothing for 10 seconds while set.
    hanging: AtomicBool,
    bad_signatures: AtomicUsize,
}

/// A webhook endpoint on a random local port.
pub struct WebhookReceiver {
    pub url: String,
    /// The `whsec_…` secret authgate signs with.
    pub secret: String,
    state: Arc<WebhookState>,
}

impl WebhookReceiver {
    pub async fn start() -> Self {
        let secret_bytes = authgate::crypto::random_bytes::<32>().to_vec();
        let secret = format!("whsec_{}", STANDARD.encode(&secret_bytes));
        let state = Arc::new(WebhookState {
            secret: secret_bytes,
            ..WebhookState::default()
        });
        let port = serve_locally(Route::new().at("/hook", receive).data(state.clone())).await;
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            secret,
            state,
        }
    }

    pub fn fail_next(&self, attempts: usize) {
        self.state.failures_left.store(attempts, Ordering::SeqCst);
    }

    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Holds every request 10 seconds without an answer while set.
    pub fn set_hanging(&self, hanging: bool) {
        self.state.hanging.store(hanging, Ordering::SeqCst);
    }

    pub fn accepted(&self) -> Vec<Delivery> {
        self.state.accepted.lock().unwrap().clone()
    }

    pub fn attempts(&self) -> Vec<(String, Instant)> {
        self.state.attempts.lock().unwrap().clone()
    }

    /// Waits up to `within` until `count` deliveries were accepted; returns them all.
    pub async fn wait_for(&self, count: usize, within: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + within;
        loop {
            let accepted = self.accepted();
            if accepted.len() >= count || Instant::now() > deadline {
                assert_eq!(
                    self.state.bad_signatures.load(Ordering::SeqCst),
                    0,
                    "a request had a bad signature"
                );
                return accepted;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until `count` attempts (accepted or failed) were made.
    pub async fn wait_for_attempts(&self, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.attempts().len() < count {
            assert!(Instant::now() < deadline, "no attempt arrived in time");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Serves `app` on a free local port, once it accepts connections; the port.
async fn serve_locally(app: impl poem::Endpoint + 'static) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    tokio::spawn(Server::new(TcpListener::bind(format!("127.0.0.1:{port}"))).run(app));
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    port
}

/// Checks the request the way a Standard Webhooks consumer does: the HMAC-SHA256 of
/// `id.timestamp.body` under the secret, one of the space-separated `v1,` signatures,
/// and a timestamp within five minutes.
fn signature_is_valid(secret: &[u8], request: &Request, body: &[u8]) -> bool {
    let header = |name| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signatures) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let Ok(sent_at) = timestamp.parse::<i64>() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - sent_at).abs() > 300 || id.is_empty() {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    signatures
        .split(' ')
        .filter_map(|signature| signature.strip_prefix("v1,"))
        .any(|signature| signature == expected)
}

#[handler]
async fn receive(
    request: &Request,
    body: Body,
    state: poem::web::Data<&Arc<WebhookState>>,
) -> Response {
    let body = body.into_bytes().await.unwrap_or_default();
    let id = request
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    state
        .attempts
        .lock()
        .unwrap()
        .push((id.clone(), Instant::now()));
    if !signature_is_valid(&state.secret, request, &body) {
        state.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED.into();
    }
    if state.hanging.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(10)).await;
        return StatusCode::SERVICE_UNAVAILABLE.into();
    }
    let failing = state.down.load(Ordering::SeqCst)
        || state
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
    if failing {
        return StatusCode::INTERNAL_SERVER_ERROR.into();
    }
    state.accepted.lock().unwrap().push(Delivery {
        id,
        body: serde_json::from_slice(&body).unwrap(),
        at: Instant::now(),
    });
    StatusCode::NO_CONTENT.into()
}

/// One mail the SMTP server accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// A plain-text SMTP server (no TLS) on a random local port that accepts every mail.
pub struct SmtpReceiver {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpReceiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let store = mails.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(smtp_session(stream, store.clone()));
            }
        });
        Self { port, mails }
    }

    pub async fn wait_for(&self, count: usize, within: Duration) -> Vec<Mail> {
        let deadline = Instant::now() + within;
        loop {
            let mails = self.mails.lock().unwrap().clone();
            if mails.len() >= count || Instant::now() > deadline {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// The `<address>` of `MAIL FROM:<…>` or `RCPT TO:<…>`.
fn address_of(line: &str) -> String {
    line.split_once(':')
        .map(|(_, address)| address.trim().to_owned())
        .unwrap_or_default()
}

async fn smtp_session(stream: tokio::net::TcpStream, mails: Arc<Mutex<Vec<Mail>>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut reply = async |text: &str| write.write_all(format!("{text}\r\n").as_bytes()).await;
    if reply("220 localhost test SMTP").await.is_err() {
        return;
    }
    let mut mail = Mail {
        from: String::new(),
        to: Vec::new(),
        data: String::new(),
    };
    while let Ok(Some(line)) = lines.next_line().await {
        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
        let answer = match verb.as_str() {
            "EHLO" | "HELO" => "250 localhost",
            "MAIL" => {
                mail.from = address_of(&line);
                "250 OK"
            }
            "RCPT" => {
                mail.to.push(address_of(&line));
                "250 OK"
            }
            "DATA" => {
                if reply("354 end with <CRLF>.<CRLF>").await.is_err() {
                    return;
                }
                while let Ok(Some(data_line)) = lines.next_line().await {
                    if data_line == "." {
                        break;
                    }
                    mail.data.push_str(&data_line);
                    mail.data.push('\n');
                }
                mails.lock().unwrap().push(mail.clone());
                mail.to.clear();
                mail.data.clear();
                "250 OK queued"
            }
            "QUIT" => {
                let _ = reply("221 bye").await;
                return;
            }
            _ => "250 OK",
        };
        if reply(answer).await.is_err() {
            return;
        }
    }
}

/// One span as an OpenTelemetry collector received it over OTLP/HTTP.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// `SpanKind` as the protocol numbers it: 1 internal, 2 server, 3 client.
    pub kind: i32,
    pub start_nanos: u64,
    pub end_nanos: u64,
    /// Every attribute, its value as text.
    pub attributes: Vec<(String, String)>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct CollectorState {
    spans: Mutex<Vec<ReceivedSpan>>,
    /// Every export request, decoded or not.
    exports: AtomicUsize,
    /// Hold every export this long before answering.
    delay_ms: AtomicUsize,
}

/// A trace collector on a random local port: it takes OTLP/HTTP protobuf exports at
/// `/v1/traces` and decodes them with the OpenTelemetry protocol's own definitions.
pub struct OtlpCollector {
    /// The endpoint to configure (`/v1/traces` is appended by the exporter).
    pub endpoint: String,
    state: Arc<CollectorState>,
}

impl OtlpCollector {
    pub async fn start() -> Self {
        let state = Arc::new(CollectorState::default());
        let app = Route::new()
            .at("/v1/traces", poem::post(collect))
            .data(state.clone());
        let port = serve_locally(app).await;
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            state,
        }
    }

    /// Answers every export only after `delay`.
    pub fn set_delay(&self, delay: Duration) {
        let ms = usize::try_from(delay.as_millis()).unwrap();
        self.state.delay_ms.store(ms, Ordering::SeqCst);
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.state.spans.lock().unwrap().clone()
    }

    pub fn exports(&self) -> usize {
        self.state.exports.load(Ordering::SeqCst)
    }

    /// Waits up to `within` for a span that satisfies `wanted`; then every span so far.
    pub async fn wait_for(
        &self,
        within: Duration,
        wanted: impl Fn(&ReceivedSpan) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + within;
        loop {
            let spans = self.spans();
            if spans.iter().any(&wanted) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "no such span arrived; received: {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[handler]
async fn collect(
    request: &Request,
    body: Body,
    state: poem::web::Data<&Arc<CollectorState>>,
) -> Response {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message;

    state.exports.fetch_add(1, Ordering::SeqCst);
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
    }
    if request.content_type() != Some("application/x-protobuf") {
        return Response::builder()
            .status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
            .finish();
    }
    let bytes = body.into_vec().await.unwrap_or_default();
    let Ok(export) = ExportTraceServiceRequest::decode(bytes.as_slice()) else {
        return Response::builder().status(StatusCode::BAD_REQUEST).finish();
    };
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let text = |value: Option<Any>| match value {
        Some(Any::StringValue(s)) => s,
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    };
    let mut received = Vec::new();
    for resource in export.resource_spans {
        for scope in resource.scope_spans {
            for span in scope.spans {
                received.push(ReceivedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    start_nanos: span.start_time_unix_nano,
                    end_nanos: span.end_time_unix_nano,
                    attributes: span
                        .attributes
                        .into_iter()
                        .map(|kv| (kv.key, text(kv.value.and_then(|v| v.value))))
                        .chain(span.events.into_iter().map(|e| ("event".into(), e.name)))
                        .collect(),
                });
            }
        }
    }
    state.spans.lock().unwrap().extend(received);
    Response::builder()
        .status(StatusCode::OK)
        .content_type("application/x-protobuf")
        .body(Vec::new())
}
