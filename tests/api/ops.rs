use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
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
    for path in ["/a", "/b", "/c/d"] {
        app.client.get(app.url(path)).send().await.unwrap();
    }
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(
            &text,
            r#"authgate_http_requests_total{method="GET",route="unmatched",status="404"}"#
        ),
        3.0
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
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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

/// Runs the real binary with debug JSON logs through a whole flow, then reads its logs.
#[tokio::test]
async fn logs_of_a_full_flow_hold_no_secret_and_one_json_line_per_request() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .env("AUTHGATE_LISTEN", "127.0.0.1:0")
        .env("AUTHGATE_DATABASE_URL", fresh_database_url().await)
        .env(
            "AUTHGATE_MASTER_KEY_FILE",
            crate::helpers::new_master_key_file(),
        )
        .env("AUTHGATE_LOG", "debug")
        .env("AUTHGATE_LOG_FORMAT", "json")
        .env("AUTHGATE_ARGON2_MEMORY_KIB", "1024")
        .env("AUTHGATE_ARGON2_ITERATIONS", "1")
        .env("AUTHGATE_RATE_LIMIT_PER_IP", "0")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut logs = Vec::new();
    let address = loop {
        let line = lines_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("authgate starts");
        let parsed: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        logs.push(line);
        if parsed["message"] == "serving" {
            break str_field(&parsed, "addr");
        }
    };
    let base = format!("http://{address}");
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    logs.extend(lines_rx.try_iter());

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

#[tokio::test]
async fn cleanup_deletes_ended_sessions_and_their_tokens_but_not_live_ones() {
    use authgate::store::entities::{refresh_tokens, sessions};
    use sea_orm::{EntityTrait, PaginatorTrait};

    let app = crate::helpers::spawn_app_with(|config| config.refresh_ttl = 1).await;
    let (email, revoked) = app.signed_in_user().await;
    app.revoke(&str_field(&revoked, "refresh_token")).await;
    let idle = app.login_ok(&email).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let live = app.login_ok(&email).await;
    let db = app.db().await;
    assert_eq!(sessions::Entity::find().count(&db).await.unwrap(), 3);

    let output = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .arg("cleanup")
        .env("AUTHGATE_DATABASE_URL", &app.config.database_url)
        .env("AUTHGATE_LOG", "error")
        .output()
        .unwrap();

    assert!(output.status.success(), "{output:?}");
    // The revoked session and its token; the idle session's expired token.
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "deleted 2 rows"
    );
    assert_eq!(sessions::Entity::find().count(&db).await.unwrap(), 2);
    assert_eq!(refresh_tokens::Entity::find().count(&db).await.unwrap(), 1);
    assert_eq!(
        app.refresh(&str_field(&live, "refresh_token"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.refresh(&str_field(&idle, "refresh_token"))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn cleanup_removes_audit_events_older_than_the_retention() {
    use authgate::store::entities::audit_events;
    use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

    let app = crate::helpers::spawn_app().await;
    app.signed_in_user().await; // register and login: two recent events
    let db = app.db().await;
    let day_ms = 86_400_000i64;
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    for age_days in [40, 400] {
        audit_events::Entity::insert(audit_events::ActiveModel {
            id: Set(uuid::Uuid::new_v4()),
            at: Set(now - age_days * day_ms),
            event: Set(format!("old_{age_days}")),
            user_id: Set(None),
            session_id: Set(None),
            client_ip: Set(None),
            user_agent: Set(None),
            detail: Set(None),
        })
        .exec_without_returning(&db)
        .await
        .unwrap();
    }
    let cleanup = |retention: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_authgate"))
            .arg("cleanup")
            .env("AUTHGATE_DATABASE_URL", &app.config.database_url)
            .env("AUTHGATE_AUDIT_RETENTION", retention)
            .env("AUTHGATE_LOG", "error")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
    };
    let remaining = || async {
        let mut events: Vec<String> = audit_events::Entity::find()
            .filter(audit_events::Column::Event.starts_with("old_"))
            .all(&db)
            .await
            .unwrap()
            .into_iter()
            .map(|event| event.event)
            .collect();
        events.sort();
        events
    };

    cleanup("365");
    assert_eq!(remaining().await, ["old_40"]);
    cleanup("30");
    assert!(remaining().await.is_empty());
    assert_eq!(audit_events::Entity::find().count(&db).await.unwrap(), 2);
}

#[tokio::test]
async fn keys_list_shows_which_key_signs_and_which_are_published() {
    let app = crate::helpers::spawn_app().await;
    let listed = app.run(&["keys", "list"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.lines().nth(1).unwrap().contains("\tsigning\t"),
        "{listed}"
    );

    let new_kid = app.run(&["keys", "rotate"]).trim().to_owned();
    let listed = app.run(&["keys", "list"]);

    // The new key is published at once (`next`) and signs after the activation delay.
    let states: Vec<(&str, &str)> = listed
        .lines()
        .skip(1)
        .map(|line| {
            let mut fields = line.split('\t');
            (fields.next().unwrap(), fields.next().unwrap())
        })
        .collect();
    assert_eq!(states.len(), 2, "{listed}");
    assert!(states.contains(&(new_kid.as_str(), "next")), "{listed}");
    assert!(
        states
            .iter()
            .any(|(kid, state)| *kid != new_kid && *state == "signing"),
        "{listed}"
    );
}

#[test]
fn config_check_prints_the_effective_configuration_without_secrets() {
    let path = std::env::temp_dir().join(format!("authgate-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(
        &path,
        "database_url = \"postgres://app:hunter2@db.internal/auth\"\naccess_ttl = 300\naudience = \"from-file\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["config", "check", "--config", path.to_str().unwrap()])
        .env_remove("AUTHGATE_DATABASE_URL")
        .env_remove("AUTHGATE_ACCESS_TTL")
        .env("AUTHGATE_AUDIENCE", "from-env")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(printed.contains("access_ttl: 300"), "{printed}");
    assert!(
        printed.contains("\"from-env\""),
        "the environment wins: {printed}"
    );
    assert!(
        printed.contains("postgres://app:***@db.internal/auth"),
        "{printed}"
    );
    assert!(!printed.contains("hunter2"));
}

#[tokio::test]
async fn the_audit_trail_records_each_security_event_with_its_client() {
    let app = crate::helpers::spawn_app().await;
    let post = |path: &str, body: Value| {
        app.client
            .post(app.url(path))
            .header("user-agent", "audit-test/1.0")
            .json(&body)
            .send()
    };
    let email = format!("audited-{}@example.com", uuid::Uuid::new_v4().simple());
    post(
        "/v1/auth/register",
        json!({"email": email, "password": PASSWORD}),
    )
    .await
    .unwrap();
    post(
        "/v1/auth/login",
        json!({"email": email, "password": "wrong password"}),
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
    let spent = str_field(&pair, "refresh_token");
    let next: Value = post("/v1/auth/refresh", json!({"refresh_token": spent}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    post(
        "/v1/auth/revoke",
        json!({"refresh_token": str_field(&next, "refresh_token")}),
    )
    .await
    .unwrap();
    let second: Value = post(
        "/v1/auth/login",
        json!({"email": email, "password": PASSWORD}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let third = post(
        "/v1/auth/refresh",
        json!({"refresh_token": str_field(&second, "refresh_token")}),
    )
    .await
    .unwrap();
    assert_eq!(third.status(), StatusCode::OK);
    // Reuse after the successor was spent: theft.
    let successor: Value = third.json().await.unwrap();
    post(
        "/v1/auth/refresh",
        json!({"refresh_token": str_field(&successor, "refresh_token")}),
    )
    .await
    .unwrap();
    post(
        "/v1/auth/refresh",
        json!({"refresh_token": str_field(&second, "refresh_token")}),
    )
    .await
    .unwrap();
    let last = app.login_ok(&email).await;
    app.logout_all(&str_field(&last, "access_token")).await;

    let output = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["audit", "--user", &email.to_uppercase(), "--since", "1h"])
        .env("AUTHGATE_DATABASE_URL", &app.config.database_url)
        .env("AUTHGATE_LOG", "error")
        .output()
        .unwrap();

    assert!(output.status.success(), "{output:?}");
    let trail = String::from_utf8(output.stdout).unwrap();
    let events: Vec<&str> = trail
        .lines()
        .map(|line| line.split('\t').nth(1).unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "register",
            "login_failed",
            "login",
            "refresh",
            "revoke",
            "login",
            "refresh",
            "refresh",
            "reuse_detected",
            "login",
            "logout_all"
        ],
        "{trail}"
    );
    let first_line: Vec<&str> = trail.lines().next().unwrap().split('\t').collect();
    assert_eq!(first_line[4], "127.0.0.1");
    assert_eq!(first_line[5], "audit-test/1.0");
    assert!(!trail.contains(PASSWORD) && !trail.contains(&spent));
}

#[tokio::test]
async fn the_audit_trail_prints_one_line_per_event_whatever_the_client_sent() {
    let app = crate::helpers::spawn_app().await;
    let email = format!("odd-{}@example.com", uuid::Uuid::new_v4().simple());
    let sneaky = "curl\t2026-01-01T00:00:00Z\tlogin\tforged";
    let registered = app
        .client
        .post(app.url("/v1/auth/register"))
        .header("user-agent", sneaky)
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    let audit = |extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_authgate"))
            .args(["audit", "--user", &email])
            .args(extra)
            .env("AUTHGATE_DATABASE_URL", &app.config.database_url)
            .env("AUTHGATE_LOG", "error")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };

    let text = audit(&[]);
    let fields: Vec<&str> = text.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 7, "{text}");
    assert_eq!(fields[5], sneaky.replace('\t', "\\t"));

    let json = audit(&["--json"]);
    assert_eq!(json.lines().count(), 1, "{json}");
    let event: Value = serde_json::from_str(json.trim_end()).unwrap();
    assert_eq!(event["event"], "register");
    assert_eq!(event["user_agent"], sneaky);
    assert_eq!(event["session_id"], Value::Null);
}

/// A TCP proxy to PostgreSQL that a test can cut and restore.
struct CuttableProxy {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

impl CuttableProxy {
    async fn start(upstream: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let generation = std::sync::Arc::new(generation);
        let (accept_cut, accept_generation) = (cut.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if accept_cut.load(Ordering::SeqCst) {
                    continue; // dropped: the database is "unreachable"
                }
                let upstream = upstream.clone();
                let mut cut_signal = accept_generation.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_signal.changed() => {}
                    }
                });
            }
        });
        Self {
            port,
            cut,
            generation,
        }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
        if cut {
            self.generation.send_modify(|generation| *generation += 1);
        }
    }
}

#[tokio::test]
async fn readiness_follows_the_database_without_a_restart() {
    // PostgreSQL runs on 127.0.0.1:5432 on the project's machines; .ci/run starts it.
    let admin = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
    let name = format!("authgate_test_{}", uuid::Uuid::new_v4().simple());
    {
        use sea_orm::ConnectionTrait;
        let db = sea_orm::Database::connect(&admin).await.unwrap();
        db.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
    }
    let (scheme, rest) = admin.split_once("://").unwrap();
    let host = rest.split(['/', '?']).next().unwrap();
    let (userinfo, address) = host.rsplit_once('@').map_or(("", host), |(u, a)| (u, a));
    let proxy = CuttableProxy::start(address.to_owned()).await;
    let at = if userinfo.is_empty() {
        String::new()
    } else {
        format!("{userinfo}@")
    };
    let url = format!("{scheme}://{at}127.0.0.1:{}/{name}", proxy.port);
    let app = crate::helpers::TestApp::start(crate::helpers::test_config(url)).await;
    let ready = || async {
        app.client
            .get(app.url("/health/ready"))
            .send()
            .await
            .unwrap()
            .status()
    };
    let wait_for = |wanted: StatusCode| async move {
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if ready().await == wanted {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("readiness did not become {wanted} within 10 s");
    };
    assert_eq!(ready().await, StatusCode::OK);

    proxy.set_cut(true);
    let down_after = wait_for(StatusCode::SERVICE_UNAVAILABLE).await;
    let live = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        live.status(),
        StatusCode::OK,
        "liveness does not depend on the database"
    );

    proxy.set_cut(false);
    let up_after = wait_for(StatusCode::OK).await;

    assert!(down_after < Duration::from_secs(5), "{down_after:?}");
    assert!(up_after < Duration::from_secs(5), "{up_after:?}");
    let (_, pair) = app.signed_in_user().await;
    assert_eq!(
        app.me(&str_field(&pair, "access_token")).await.status(),
        StatusCode::OK
    );
}
