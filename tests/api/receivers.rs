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
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let app = Route::new().at("/hook", receive).data(state.clone());
        tokio::spawn(Server::new(TcpListener::bind(format!("127.0.0.1:{port}"))).run(app));
        // Wait until it listens.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
