//! Metrics, request ids and logs, as an operator reads them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, fresh_database_url, spawn_app, str_field};

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name_and_labels} missing from:\n{text}"))
}

#[tokio::test]
async fn metrics_count_requests_logins_refreshes_and_revocations() {
    let app = spawn_app().await;
    let (email, pair) = app.signed_in_user().await;
    assert_eq!(
        app.login(&email, "wrong password").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let spent = str_field(&pair, "refresh_token");
    let next: Value = app.refresh(&spent).await.json().await.unwrap();
    app.refresh(&spent).await; // inside the grace window
    app.revoke(&str_field(&next, "refresh_token")).await;

    let response = app.client.get(app.url("/metrics")).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    assert_eq!(metric(&text, r#"authgate_logins_total{outcome="ok"}"#), 1.0);
    assert_eq!(
        metric(
            &text,
            r#"authgate_logins_total{outcome="invalid_credentials"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&text, r#"authgate_refreshes_total{outcome="rotated"}"#),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"authgate_refreshes_total{outcome="spent_in_grace"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"authgate_session_revocations_total{cause="revoke"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"authgate_http_requests_total{method="POST",route="/v1/auth/login",status="200"}"#
        ),
        1.0
    );
    assert!(
        metric(
            &text,
            r#"authgate_http_request_duration_seconds_count{route="/v1/auth/refresh"}"#
        ) >= 2.0
    );
    for gauge in [
        "argon2\",state=\"running",
        "argon2\",state=\"queued",
        "database\",state=\"open",
    ] {
        metric(&text, &format!("authgate_pool{{pool=\"{gauge}\"}}"));
    }
}

#[tokio::test]
async fn unknown_paths_share_one_metric_label() {
    let app = spawn_app().await;
    for path in ["/a", "/b", "/c/d", "/v1/auth/me/", "/docsx"] {
        app.client.get(app.url(path)).send().await.unwrap();
    }
    let text = app.metrics().await;
    assert_eq!(
        metric(
            &text,
            r#"authgate_http_requests_total{method="GET",route="unmatched",status="404"}"#
        ),
        5.0
    );
}

#[tokio::test]
async fn odd_methods_share_one_metric_label() {
    let app = spawn_app().await;
    let long = "A".repeat(2000);
    for method in [long.as_str(), "BREW", "PROPFIND"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = app
            .client
            .request(method, app.url("/v1/auth/me"))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    let text = app.metrics().await;
    assert!(!text.contains("AAAA") && !text.contains("BREW") && !text.contains("PROPFIND"));
    let odd: f64 = text
        .lines()
        .filter(|line| line.starts_with(r#"authgate_http_requests_total{method="other""#))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(odd, 3.0, "{text}");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_given_one_is_kept() {
    let app = spawn_app().await;
    let made = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    uuid::Uuid::parse_str(made.headers()["x-request-id"].to_str().unwrap()).unwrap();

    let kept = app
        .client
        .get(app.url("/nowhere"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "trace-abc-123");
}

/// The real binary on a fresh database, its logs (stderr) read line by line.
pub(crate) struct LoggedBinary {
    child: Child,
    base: String,
    lines: Receiver<String>,
    logs: Vec<String>,
}

impl LoggedBinary {
    pub(crate) async fn start(log: &str, format: &str, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_authgate"))
            .env("AUTHGATE_LISTEN", "127.0.0.1:0")
            .env("AUTHGATE_DATABASE_URL", fresh_database_url().await)
            .env(
                "AUTHGATE_MASTER_KEY_FILE",
                crate::helpers::new_master_key_file(),
            )
            .env("AUTHGATE_LOG", log)
            .env("AUTHGATE_LOG_FORMAT", format)
            .env("AUTHGATE_ARGON2_MEMORY_KIB", "1024")
            .env("AUTHGATE_ARGON2_ITERATIONS", "1")
            .env("AUTHGATE_RATE_LIMIT_PER_IP", "0")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut binary = Self {
            child,
            base: String::new(),
            lines,
            logs: Vec::new(),
        };
        let serving = binary.wait_for(|line| line.contains("serving") && line.contains("addr"));
        let address = match serde_json::from_str::<Value>(&serving) {
            Ok(parsed) => str_field(&parsed, "addr"),
            Err(_) => serving.rsplit("addr=").next().unwrap().trim().to_owned(),
        };
        binary.base = format!("http://{address}");
        binary
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The next log line that satisfies `wanted`, keeping every line read.
    pub(crate) fn wait_for(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .expect("the awaited log line");
            self.logs.push(line.clone());
            if wanted(&line) {
                return line;
            }
        }
    }

    /// Stops the binary; every line it logged.
    pub(crate) async fn stop(mut self) -> Vec<String> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let rest: Vec<String> = self.lines.try_iter().collect();
        self.logs.extend(rest);
        std::mem::take(&mut self.logs)
    }
}

/// A failed assertion must not leave the binary running.
impl Drop for LoggedBinary {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Runs the real binary with debug JSON logs through a whole flow, then reads its logs.
#[tokio::test]
async fn logs_of_a_full_flow_hold_no_secret_and_one_json_line_per_request() {
    let binary = LoggedBinary::start("debug", "json", &[]).await;
    let base = binary.base.clone();
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| client.post(format!("{base}{path}")).json(&body).send();
    let email = "secret-keeper@example.com";
    post(
        "/v1/auth/register",
        json!({"email": email, "password": PASSWORD}),
    )
    .await
    .unwrap();
    post(
        "/v1/auth/login",
        json!({"email": email, "password": "the wrong one"}),
    )
    .await
    .unwrap();
    let pair: Value = post(
        "/v1/auth/login",
        json!({"email": email, "password": PASSWORD}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let (access, refresh) = (
        str_field(&pair, "access_token"),
        str_field(&pair, "refresh_token"),
    );
    client
        .get(format!("{base}/v1/auth/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    let next: Value = post("/v1/auth/refresh", json!({"refresh_token": refresh}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    post("/v1/auth/refresh", json!({"refresh_token": refresh}))
        .await
        .unwrap();
    post(
        "/v1/auth/revoke",
        json!({"refresh_token": str_field(&next, "refresh_token")}),
    )
    .await
    .unwrap();
    client
        .get(format!("{base}/v1/auth/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    let logs = binary.stop().await;

    let all = logs.join("\n");
    let secrets = [
        PASSWORD.to_owned(),
        "the wrong one".to_owned(),
        access.clone(),
        access.split('.').nth(2).unwrap().to_owned(),
        refresh.clone(),
        str_field(&next, "refresh_token"),
    ];
    for secret in &secrets {
        assert!(!all.contains(secret.as_str()), "a secret is in the logs");
    }
    let request_lines: Vec<Value> = logs
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["message"] == "request")
        .collect();
    assert_eq!(request_lines.len(), 8, "{all}");
    for line in &request_lines {
        for field in ["request_id", "method", "route", "status", "latency_ms"] {
            assert!(!line[field].is_null(), "{field} missing in {line}");
        }
    }
}

/// Warnings only (and the `serving` line, for the port): the request id must reach a
/// warning when INFO, the level of the per-request line, is filtered out.
#[tokio::test]
async fn a_warning_logged_while_handling_a_request_carries_its_request_id() {
    for format in ["json", "pretty"] {
        let mut binary = LoggedBinary::start(
            "warn,authgate::startup=info",
            format,
            &[("AUTHGATE_REFRESH_REUSE_GRACE", "0")],
        )
        .await;
        let client = reqwest::Client::new();
        let post = |path: &str, body: Value| client.post(binary.url(path)).json(&body);
        let credentials = json!({"email": "reused@example.com", "password": PASSWORD});
        post("/v1/auth/register", credentials.clone())
            .send()
            .await
            .unwrap();
        let pair: Value = post("/v1/auth/login", credentials)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let spent = json!({"refresh_token": str_field(&pair, "refresh_token")});
        post("/v1/auth/refresh", spent.clone())
            .send()
            .await
            .unwrap();
        let request_id = format!("reuse-{format}-{}", uuid::Uuid::new_v4().simple());

        let reused = post("/v1/auth/refresh", spent)
            .header("x-request-id", &request_id)
            .send()
            .await
            .unwrap();

        assert_eq!(reused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(reused.headers()["x-request-id"], request_id.as_str());
        let warning = binary.wait_for(|line| line.contains("refresh token reuse detected"));
        if format == "json" {
            let warning: Value = serde_json::from_str(&warning).unwrap();
            assert_eq!(
                warning["span"]["request_id"],
                request_id.as_str(),
                "{warning}"
            );
            assert_eq!(warning["span"]["route"], "/v1/auth/refresh", "{warning}");
        } else {
            assert!(
                warning.contains(&format!("request_id={request_id} ")),
                "{warning}"
            );
        }
        binary.stop().await;
    }
}

#[tokio::test]
async fn every_operation_of_the_spec_is_labelled_by_its_path_template() {
    let app = spawn_app().await;
    let spec: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut expected = Vec::new();
    for (template, operations) in spec["paths"].as_object().unwrap() {
        let path = template
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    uuid::Uuid::new_v4().to_string()
                } else {
                    segment.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in operations.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            app.client
                .request(method.clone(), app.url(&path))
                .send()
                .await
                .unwrap();
            expected.push(format!(
                r#"authgate_http_requests_total{{method="{method}",route="{template}",status="#
            ));
        }
    }
    assert!(!expected.is_empty(), "{spec}");
    for mounted in ["/docs", "/openapi.yaml", "/metrics"] {
        app.client.get(app.url(mounted)).send().await.unwrap();
    }
    expected.extend(
        ["/docs", "/openapi.json", "/openapi.yaml", "/metrics"].map(|route| {
            format!(r#"authgate_http_requests_total{{method="GET",route="{route}",status="#)
        }),
    );

    let text = app.metrics().await;

    for series in &expected {
        assert!(
            text.lines().any(|line| line.starts_with(series.as_str())),
            "{series} missing from:\n{text}"
        );
    }
}
