//! `spawn_app()`: the real application on a random port against a fresh database:
//! a new SQLite file, or a new PostgreSQL database when `TEST_DATABASE_URL` is set
//! (e.g. `postgres://postgres@127.0.0.1:5432`).

use std::time::Duration;

use authgate::config::Config;
use authgate::startup::Application;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub address: String,
    /// The admin listener's base URL, when `admin_listen` is set.
    pub admin_address: Option<String>,
    pub config: Config,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A fresh database URL for one test.
pub async fn fresh_database_url() -> String {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(admin_url) if !admin_url.is_empty() => {
            let name = format!("authgate_test_{}", Uuid::new_v4().simple());
            let admin = Database::connect(&admin_url)
                .await
                .expect("TEST_DATABASE_URL must reach a PostgreSQL server");
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .expect("create the test database");
            admin.close().await.ok();
            let (scheme, rest) = admin_url.split_once("://").expect("a URL");
            let host = rest.split(['/', '?']).next().unwrap_or(rest);
            format!("{scheme}://{host}/{name}")
        }
        _ => {
            let path = std::env::temp_dir().join(format!("authgate-test-{}.db", Uuid::new_v4()));
            format!("sqlite://{}?mode=rwc", path.display())
        }
    }
}

/// The configuration tests start from: defaults, a cheap argon2 cost, port 0.
pub fn test_config(database_url: String) -> Config {
    let mut config = Config::from_env().expect("default configuration");
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database_url = database_url.into();
    config.issuer = "http://authgate.test".into();
    config.audience = "authgate".into();
    config.access_ttl = 900;
    config.refresh_ttl = 1_209_600;
    config.session_ttl = 7_776_000;
    config.refresh_reuse_grace = 10;
    config.argon2_memory_kib = 1024;
    config.argon2_iterations = 1;
    config.argon2_parallelism = 1;
    config.signing_key_file = None;
    config.key_reload_interval = 30;
    // Limits are off unless a test is about them: the suite sends many requests from
    // one address.
    config.rate_limit_per_ip = 0;
    config.login_max_failures = 5;
    config.login_failure_window = 900;
    config.trust_forwarded_for = false;
    config.redis_url = None;
    // PostgreSQL needs a master key file; SQLite makes one beside the database.
    config.master_key_file = config
        .database_url
        .expose()
        .starts_with("postgres")
        .then(new_master_key_file);
    config
}

/// A fresh master key file (one key, mode 0600).
pub fn new_master_key_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("authgate-master-{}.key", Uuid::new_v4()));
    let key =
        base64::engine::general_purpose::STANDARD.encode(authgate::crypto::random_bytes::<32>());
    authgate::crypto::master::create_private_file(&path, format!("{key}\n").as_bytes()).unwrap();
    path
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(fresh_database_url().await);
    adjust(&mut config);
    TestApp::start(config).await
}

impl TestApp {
    pub async fn start(config: Config) -> Self {
        let app = Application::build(&config)
            .await
            .expect("application builds");
        let address = format!("http://{}", app.local_addr());
        let admin_address = app.admin_addr().map(|addr| format!("http://{addr}"));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            stopped.await.ok();
        }));
        Self {
            address,
            admin_address,
            config,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Stops the server gracefully and starts a new one on the same database.
    pub async fn restart(mut self) -> Self {
        self.stop().await;
        Self::start(self.config.clone()).await
    }

    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    pub async fn db(&self) -> DatabaseConnection {
        Database::connect(self.config.database_url.expose())
            .await
            .unwrap()
    }

    /// The `authgate` binary with this app's database and master key file.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_authgate"));
        command
            .args(args)
            .env("AUTHGATE_DATABASE_URL", self.config.database_url.expose())
            .env("AUTHGATE_LOG", "error");
        if let Some(path) = &self.config.master_key_file {
            command.env("AUTHGATE_MASTER_KEY_FILE", path);
        }
        command
    }

    /// Runs `authgate ARGS…` against this app's database; its stdout, or a panic with
    /// its stderr. Off the runtime's thread: the servers keep running meanwhile, so none
    /// of their transactions can hold the database while the command waits for it.
    pub async fn run_async(&self, args: &[&str]) -> String {
        let mut command = self.command(args);
        let shown = format!("{args:?}");
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        assert!(output.status.success(), "authgate {shown}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn register(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/v1/auth/register",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/v1/auth/login",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// Registers a new random account and logs it in; returns (email, token pair).
    pub async fn signed_in_user(&self) -> (String, Value) {
        let email = format!("user-{}@example.com", Uuid::new_v4().simple());
        assert_eq!(
            self.register(&email, PASSWORD).await.status(),
            StatusCode::CREATED
        );
        let pair = self.login_ok(&email).await;
        (email, pair)
    }

    pub async fn login_ok(&self, email: &str) -> Value {
        let response = self.login(email, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.post_json("/v1/auth/refresh", &json!({"refresh_token": refresh_token}))
            .await
    }

    pub async fn revoke(&self, refresh_token: &str) -> reqwest::Response {
        self.post_json("/v1/auth/revoke", &json!({"refresh_token": refresh_token}))
            .await
    }

    pub async fn me(&self, access_token: &str) -> reqwest::Response {
        self.client
            .get(self.url("/v1/auth/me"))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
    }

    /// The published JSON Web Key Set.
    pub async fn jwks(&self) -> authgate_verify::JwkSet {
        let response = self
            .client
            .get(self.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    /// `method path` with a Bearer token and, if given, a JSON body.
    pub async fn send_as(
        &self,
        method: reqwest::Method,
        path: &str,
        access_token: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(access_token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.unwrap()
    }

    pub async fn logout_all(&self, access_token: &str) -> reqwest::Response {
        self.client
            .post(self.url("/v1/auth/logout-all"))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Asserts an RFC 9457 problem with `status` and returns it.
pub async fn assert_problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/problem+json"),
        "content-type was {content_type:?}"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], status.as_u16(), "{problem}");
    for field in ["type", "title", "detail"] {
        assert!(
            problem[field].is_string(),
            "problem lacks {field}: {problem}"
        );
    }
    problem
}

pub fn str_field(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing in {value}"))
        .to_owned()
}

/// Part `index` of a JWT (0 header, 1 claims), decoded without verification.
pub fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}
