//! The command line and the one typed configuration, read from flags and `AUTHGATE_*`
//! environment variables. Each value's name is also its placeholder in error messages,
//! so a bad value names the variable to fix.

mod commands;
mod events;
mod file;
mod messages;
mod redact;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser};

pub use commands::{AdminKeysCommand, ClientsCommand, Command, ConfigCommand, KeysCommand};
pub use events::WebhookTable;
pub use file::ConfigError;
pub use messages::{DeliverySettings, MessageConfig};
pub use redact::{SecretText, SecretUrl};

use crate::domain::roles::{RolePolicy, is_scope_token, normalize_roles, validate_role};

#[derive(Debug, Parser)]
#[command(name = "authgate", version, about = "JWT authentication service")]
pub struct Cli {
    /// A TOML file whose keys mirror the variables without the prefix, lower-cased
    /// (`access_ttl = 900`); environment variables and flags take precedence.
    #[arg(
        long = "config",
        env = "AUTHGATE_CONFIG",
        value_name = "AUTHGATE_CONFIG",
        global = true
    )]
    pub config_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

/// `config check` prints every setting as the TOML file would hold it (derived, so a new
/// one cannot be left out); secrets are types that hide themselves ([`SecretUrl`]).
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct Config {
    /// Address to bind.
    #[arg(
        long,
        env = "AUTHGATE_LISTEN",
        value_name = "AUTHGATE_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// Database URL: `sqlite://…` or `postgres://…`.
    #[arg(
        long,
        env = "AUTHGATE_DATABASE_URL",
        value_name = "AUTHGATE_DATABASE_URL",
        default_value = "sqlite://authgate.db?mode=rwc"
    )]
    pub database_url: SecretUrl,

    /// `iss` of issued tokens; OpenID discovery is served for it.
    #[arg(
        long,
        env = "AUTHGATE_ISSUER",
        value_name = "AUTHGATE_ISSUER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub issuer: String,

    /// `aud` of issued access tokens.
    #[arg(
        long,
        env = "AUTHGATE_AUDIENCE",
        value_name = "AUTHGATE_AUDIENCE",
        default_value = "authgate"
    )]
    pub audience: String,

    /// Access token lifetime, seconds.
    #[arg(long, env = "AUTHGATE_ACCESS_TTL", value_name = "AUTHGATE_ACCESS_TTL", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub access_ttl: u64,

    /// Refresh token idle lifetime, seconds.
    #[arg(long, env = "AUTHGATE_REFRESH_TTL", value_name = "AUTHGATE_REFRESH_TTL", default_value_t = 1_209_600,
          value_parser = clap::value_parser!(u64).range(1..=31_622_400))]
    pub refresh_ttl: u64,

    /// Lifetime of client-credentials access tokens, seconds.
    #[arg(long, env = "AUTHGATE_CLIENT_TOKEN_TTL", value_name = "AUTHGATE_CLIENT_TOKEN_TTL", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub client_token_ttl: u64,

    /// Absolute session lifetime, seconds; rotation never extends past it.
    #[arg(long, env = "AUTHGATE_SESSION_TTL", value_name = "AUTHGATE_SESSION_TTL", default_value_t = 7_776_000,
          value_parser = clap::value_parser!(u64).range(1..=315_360_000))]
    pub session_ttl: u64,

    /// Seconds after a rotation in which the rotated refresh token returns the same successor.
    #[arg(long, env = "AUTHGATE_REFRESH_REUSE_GRACE", value_name = "AUTHGATE_REFRESH_REUSE_GRACE", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=300))]
    pub refresh_reuse_grace: u64,

    /// argon2id memory cost, KiB.
    #[arg(
        long,
        env = "AUTHGATE_ARGON2_MEMORY_KIB",
        value_name = "AUTHGATE_ARGON2_MEMORY_KIB",
        default_value_t = 19_456
    )]
    pub argon2_memory_kib: u32,

    /// argon2id iterations.
    #[arg(
        long,
        env = "AUTHGATE_ARGON2_ITERATIONS",
        value_name = "AUTHGATE_ARGON2_ITERATIONS",
        default_value_t = 2
    )]
    pub argon2_iterations: u32,

    /// argon2id parallelism (lanes).
    #[arg(
        long,
        env = "AUTHGATE_ARGON2_PARALLELISM",
        value_name = "AUTHGATE_ARGON2_PARALLELISM",
        default_value_t = 1
    )]
    pub argon2_parallelism: u32,

    /// Failed logins per (account, client IP) per window before 429.
    #[arg(
        long,
        env = "AUTHGATE_LOGIN_MAX_FAILURES",
        value_name = "AUTHGATE_LOGIN_MAX_FAILURES",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub login_max_failures: u32,

    /// The failed-login window, seconds.
    #[arg(
        long,
        env = "AUTHGATE_LOGIN_FAILURE_WINDOW",
        value_name = "AUTHGATE_LOGIN_FAILURE_WINDOW",
        default_value_t = 900
    )]
    pub login_failure_window: u64,

    /// Requests per minute per client IP to `POST /v1/auth/*`; 0 disables.
    #[arg(
        long,
        env = "AUTHGATE_RATE_LIMIT_PER_IP",
        value_name = "AUTHGATE_RATE_LIMIT_PER_IP",
        default_value_t = 120
    )]
    pub rate_limit_per_ip: u32,

    /// Seconds a client has to send a request's headers (from its first byte, or from
    /// connecting); slower connections are closed.
    #[arg(long, env = "AUTHGATE_HEADER_TIMEOUT", value_name = "AUTHGATE_HEADER_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,

    /// Seconds an idle keep-alive connection stays open.
    #[arg(long, env = "AUTHGATE_IDLE_TIMEOUT", value_name = "AUTHGATE_IDLE_TIMEOUT", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout: u64,

    /// Open client connections at most; beyond it new ones wait until one closes.
    #[arg(long, env = "AUTHGATE_MAX_CONNECTIONS", value_name = "AUTHGATE_MAX_CONNECTIONS", default_value_t = 4096,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_connections: usize,

    /// Take the client IP from the rightmost `X-Forwarded-For` address (behind a trusted proxy only).
    #[arg(long, env = "AUTHGATE_TRUST_FORWARDED_FOR", value_name = "AUTHGATE_TRUST_FORWARDED_FOR",
          default_value = "false", action = ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub trust_forwarded_for: bool,

    /// Redis URL for throttling and rate-limit state shared by several instances.
    #[arg(long, env = "AUTHGATE_REDIS_URL", value_name = "AUTHGATE_REDIS_URL")]
    pub redis_url: Option<SecretUrl>,

    /// PKCS#8 PEM Ed25519 private key; unset: a key is generated and kept in the database.
    #[arg(
        long,
        env = "AUTHGATE_SIGNING_KEY_FILE",
        value_name = "AUTHGATE_SIGNING_KEY_FILE"
    )]
    pub signing_key_file: Option<PathBuf>,

    /// Seconds between reloads of the signing keys from the database (1–60).
    #[arg(long, env = "AUTHGATE_KEY_RELOAD_INTERVAL", value_name = "AUTHGATE_KEY_RELOAD_INTERVAL", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=60))]
    pub key_reload_interval: u64,

    /// Seconds from `keys rotate` until the new key signs: at least the reload interval
    /// plus 60 (the JWKS max-age), so every instance and every verifier caching the
    /// JWKS knows the key before any token carries it.
    #[arg(
        long,
        env = "AUTHGATE_KEY_ACTIVATION_DELAY",
        value_name = "AUTHGATE_KEY_ACTIVATION_DELAY",
        default_value_t = 120,
        value_parser = clap::value_parser!(u64).range(1..=2_592_000)
    )]
    pub key_activation_delay: u64,

    /// Master keys (one base64 32-byte key per line; the first encrypts) that seal the
    /// private keys kept in the database. Unset with SQLite: generated beside the
    /// database file (`<file>.key`); required with PostgreSQL.
    #[arg(
        long,
        env = "AUTHGATE_MASTER_KEY_FILE",
        value_name = "AUTHGATE_MASTER_KEY_FILE"
    )]
    pub master_key_file: Option<PathBuf>,

    /// Days the audit trail keeps an event; `cleanup` (and serve, every few minutes)
    /// removes older ones. 0 keeps every event.
    #[arg(
        long,
        env = "AUTHGATE_AUDIT_RETENTION",
        value_name = "AUTHGATE_AUDIT_RETENTION",
        default_value_t = 365,
        value_parser = clap::value_parser!(u64).range(0..=36_500)
    )]
    pub audit_retention: u64,

    #[command(flatten)]
    #[serde(flatten)]
    pub messages: MessageConfig,

    /// Comma-separated roles every account gets at registration.
    #[arg(
        long,
        env = "AUTHGATE_DEFAULT_ROLES",
        value_name = "AUTHGATE_DEFAULT_ROLES",
        default_value = ""
    )]
    pub default_roles: String,

    /// Address of the admin API; unset: no admin API.
    #[arg(
        long,
        env = "AUTHGATE_ADMIN_LISTEN",
        value_name = "AUTHGATE_ADMIN_LISTEN"
    )]
    pub admin_listen: Option<SocketAddr>,

    /// Webhook that receives every event type (signed per Standard Webhooks); more
    /// subscribers in the configuration file's `[[webhooks]]` tables.
    #[arg(
        long,
        env = "AUTHGATE_EVENTS_WEBHOOK_URL",
        value_name = "AUTHGATE_EVENTS_WEBHOOK_URL"
    )]
    pub events_webhook_url: Option<SecretUrl>,

    /// Its signing secret: `whsec_` + base64 of at least 24 random bytes.
    #[arg(
        long,
        env = "AUTHGATE_EVENTS_WEBHOOK_SECRET",
        value_name = "AUTHGATE_EVENTS_WEBHOOK_SECRET"
    )]
    pub events_webhook_secret: Option<SecretText>,

    /// OTLP/HTTP endpoint (e.g. `http://127.0.0.1:4318`) that receives a trace of every
    /// request, posted to `<endpoint>/v1/traces`; unset: no export.
    #[arg(long, env = "AUTHGATE_OTLP_ENDPOINT", value_name = "AUTHGATE_OTLP_ENDPOINT",
          value_parser = parse_otlp_endpoint)]
    pub otlp_endpoint: Option<String>,

    /// Add `Server-Timing` (db, hash-wait, hash, sign, total) to every response. Off by
    /// default: timings can reveal whether an account exists.
    #[arg(long, env = "AUTHGATE_SERVER_TIMING", value_name = "AUTHGATE_SERVER_TIMING",
          default_value = "false", action = ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub server_timing: bool,

    /// Log format: `pretty` (human) or `json` (one object per line).
    #[arg(
        long,
        env = "AUTHGATE_LOG_FORMAT",
        value_name = "AUTHGATE_LOG_FORMAT",
        default_value = "pretty"
    )]
    pub log_format: LogFormat,

    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(
        long,
        env = "AUTHGATE_LOG",
        value_name = "AUTHGATE_LOG",
        default_value = "info"
    )]
    pub log: String,

    /// `[roles.<name>] scopes = [...]` of the configuration file: the scopes each role
    /// grants in access tokens. (Last: TOML puts tables after plain values.)
    #[arg(skip)]
    pub roles: BTreeMap<String, RoleScopes>,

    /// `[[webhooks]]` of the configuration file: event subscribers, each with its
    /// secret and the event types it wants.
    #[arg(skip)]
    pub webhooks: Vec<WebhookTable>,
}

/// A `[roles.<name>]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleScopes {
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// An `http` or `https` URL with a host, and neither query nor fragment (`/v1/traces` is
/// appended to it).
fn parse_otlp_endpoint(value: &str) -> Result<String, String> {
    url::Url::parse(value)
        .ok()
        .filter(|url| {
            matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some()
                && url.query().is_none()
                && url.fragment().is_none()
        })
        .map(|_| value.to_owned())
        .ok_or_else(|| format!("`{value}` is not an http(s) URL without query or fragment"))
}

/// JWKS responses may be cached this long (`Cache-Control: max-age`).
pub const JWKS_MAX_AGE_SECS: u64 = 60;

impl Config {
    /// The configuration from the environment alone, for embedding and tests.
    pub fn from_env() -> Result<Self, clap::Error> {
        Cli::try_parse_from(["authgate"]).map(|cli| cli.config)
    }

    /// Checks what no single value's parser can: how values relate.
    pub fn validate(&self) -> Result<(), String> {
        let least_delay = self.key_reload_interval + JWKS_MAX_AGE_SECS;
        if self.key_activation_delay < least_delay {
            return Err(format!(
                "AUTHGATE_KEY_ACTIVATION_DELAY: {} is below AUTHGATE_KEY_RELOAD_INTERVAL + {JWKS_MAX_AGE_SECS} \
                 ({least_delay}): verifiers caching the JWKS could meet a new key before they know it",
                self.key_activation_delay
            ));
        }
        self.messages.delivery()?;
        self.role_policy()?;
        self.event_subscribers()?;
        Ok(())
    }

    /// The default roles and the role → scope map, checked.
    pub fn role_policy(&self) -> Result<RolePolicy, String> {
        let defaults: Vec<&str> = self
            .default_roles
            .split(',')
            .map(str::trim)
            .filter(|role| !role.is_empty())
            .collect();
        let default_roles =
            normalize_roles(&defaults).map_err(|err| format!("AUTHGATE_DEFAULT_ROLES: {err}"))?;
        let mut scopes = BTreeMap::new();
        for (role, table) in &self.roles {
            validate_role(role).map_err(|err| format!("AUTHGATE_CONFIG: [roles]: {err}"))?;
            if let Some(bad) = table.scopes.iter().find(|scope| !is_scope_token(scope)) {
                return Err(format!(
                    "AUTHGATE_CONFIG: [roles.{role}]: {bad:?} is not a scope (printable ASCII, no spaces or quotes)"
                ));
            }
            scopes.insert(role.clone(), table.scopes.iter().cloned().collect());
        }
        Ok(RolePolicy {
            default_roles,
            scopes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = Cli::try_parse_from(["authgate", "--access-ttl", "soon"]).unwrap_err();
        assert!(err.to_string().contains("AUTHGATE_ACCESS_TTL"), "{err}");
    }
}
