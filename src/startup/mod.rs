//! Wiring: configuration in, a bound server with its background tasks out. Tests build
//! the same `Application` on port 0 against a fresh database.

mod background;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use authgate_verify::Verifier;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};

use crate::api;
use crate::config::{Config, SecretUrl};
use crate::crypto::master::MasterKeys;
use crate::crypto::password::PasswordHasher;
use crate::crypto::signing::SigningKey;
use crate::delivery::{Channel, Deliverer, EventDeliverer, Links};
use crate::domain::keys::KeyRing;
use crate::domain::recovery::{self, Messaging};
use crate::domain::{Actor, AuthService, TokenPolicy};
use crate::metrics::Metrics;
use crate::server::{self, ConnectionLimits};
use crate::store::{self, SqliteLocation, Store};
use crate::throttle::Throttle;

/// Clock leeway for authgate's own Bearer endpoints: only clock skew between instances.
const OWN_TOKEN_LEEWAY_SECS: u64 = 5;
/// In-flight requests get this long to finish after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Then the message deliverer and the forgot-password queue get this long to finish
/// what they hold (longer than one delivery attempt).
const DRAIN_GRACE: Duration = Duration::from_secs(7);

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    limits: ConnectionLimits,
    state: api::State,
    store: Store,
    reuse_grace_secs: u64,
    key_reload_interval: Duration,
    access_ttl_secs: u64,
    audit_retention_days: u64,
    /// With a delivery channel: the outbox worker and the forgot-password queue.
    deliverer: Option<Deliverer>,
    /// With event subscribers: the event outbox worker.
    event_deliverer: Option<EventDeliverer>,
    forgot_requests: Option<mpsc::Receiver<(String, Actor)>>,
    /// `AUTHGATE_ADMIN_LISTEN`, bound.
    admin_listener: Option<(TcpListener, SocketAddr)>,
}

impl Application {
    /// Connects and migrates the database, loads keys and binds the listener.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        config.validate().map_err(|e| anyhow!(e))?;
        let file_key = match &config.signing_key_file {
            Some(path) => Some(load_key_file(path)?),
            None => None,
        };
        let master = master_keys(config)?;
        let delivery = config.messages.delivery().map_err(|e| anyhow!(e))?;
        if delivery.is_none() && config.messages.require_verified_email {
            tracing::warn!(
                "AUTHGATE_REQUIRE_VERIFIED_EMAIL is set but no delivery channel is: \
                 new accounts cannot verify their email by themselves"
            );
        }
        if delivery.is_some() && master.is_none() {
            anyhow::bail!(
                "AUTHGATE_MASTER_KEY_FILE is required with PostgreSQL and a delivery channel: \
                 the tokens of pending messages are encrypted under it"
            );
        }
        if master.is_none() && file_key.is_none() {
            anyhow::bail!(
                "AUTHGATE_MASTER_KEY_FILE is required with PostgreSQL: the signing keys kept \
                 in the database are encrypted under it (make one with `openssl rand -base64 32`)"
            );
        }
        let (memory, iterations, parallelism) = (
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
        );
        let hasher = tokio::task::spawn_blocking(move || {
            PasswordHasher::new(memory, iterations, parallelism)
        });

        let subscribers = config.event_subscribers().map_err(|e| anyhow!(e))?;
        let mut store = connect(&config.database_url).await?;
        store.migrate().await.context("migrating the database")?;
        store.route_events(&subscribers);

        let verifier = Arc::new(
            Verifier::new(&config.issuer, &config.audience).with_leeway(OWN_TOKEN_LEEWAY_SECS),
        );
        let keys = Arc::new(
            KeyRing::load(
                store.clone(),
                file_key,
                master.clone(),
                verifier.clone(),
                config.access_ttl,
                Duration::from_secs(config.key_reload_interval),
            )
            .await
            .context("loading signing keys")?,
        );
        let hasher = hasher
            .await?
            .map_err(|e| anyhow!("AUTHGATE_ARGON2_MEMORY_KIB / _ITERATIONS / _PARALLELISM: {e}"))?;
        let policy = TokenPolicy {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            access_ttl_secs: config.access_ttl,
            refresh_ttl_secs: config.refresh_ttl,
            session_ttl_secs: config.session_ttl,
            reuse_grace_secs: config.refresh_reuse_grace,
            reset_ttl_secs: config.messages.reset_token_ttl,
            client_token_ttl_secs: config.client_token_ttl,
        };
        let throttle = Arc::new(
            Throttle::new(
                config.redis_url.as_ref().map(SecretUrl::expose),
                config.rate_limit_per_ip,
                config.login_max_failures,
                Duration::from_secs(config.login_failure_window),
            )
            .await
            .context("AUTHGATE_REDIS_URL: cannot connect")?,
        );
        let metrics = Arc::new(Metrics::new());
        let event_deliverer = match subscribers.is_empty() {
            true => None,
            false => Some(EventDeliverer::new(
                store.clone(),
                subscribers,
                metrics.clone(),
            )?),
        };
        let (mut deliverer, mut forgot_requests, mut messaging) = (None, None, None);
        if let (Some(settings), Some(master)) = (delivery, master) {
            let queued = Arc::new(Notify::new());
            let (forgot, requests) = mpsc::channel(recovery::FORGOT_QUEUE);
            deliverer = Some(Deliverer {
                store: store.clone(),
                channel: Channel::from_settings(settings)?,
                master: master.clone(),
                links: Links {
                    reset: config.messages.reset_url.clone(),
                    verify: config.messages.verify_url.clone(),
                },
                metrics: metrics.clone(),
                queued: queued.clone(),
            });
            forgot_requests = Some(requests);
            messaging = Some(Messaging {
                master,
                reset_ttl_secs: config.messages.reset_token_ttl,
                verification_ttl_secs: config.messages.verification_token_ttl,
                queued,
                forgot,
            });
        }
        let service = Arc::new(AuthService {
            store: store.clone(),
            hasher,
            keys: keys.clone(),
            verifier,
            throttle: throttle.clone(),
            metrics: metrics.clone(),
            policy,
            messaging,
            require_verified_email: config.messages.require_verified_email,
            roles: config.role_policy().map_err(|e| anyhow!(e))?,
        });

        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("AUTHGATE_LISTEN: cannot bind {}", config.listen))?;
        let local_addr = listener
            .local_addr()
            .context("AUTHGATE_LISTEN: no local address")?;
        let admin_listener = match config.admin_listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("AUTHGATE_ADMIN_LISTEN: cannot bind {addr}"))?;
                let local = listener
                    .local_addr()
                    .context("AUTHGATE_ADMIN_LISTEN: no local address")?;
                Some((listener, local))
            }
            None => None,
        };

        Ok(Self {
            listener,
            local_addr,
            limits: ConnectionLimits {
                header_timeout: Duration::from_secs(config.header_timeout),
                idle_timeout: Duration::from_secs(config.idle_timeout),
                max_connections: config.max_connections,
            },
            state: api::State {
                service,
                keys,
                store: store.clone(),
                issuer: config.issuer.clone(),
                throttle,
                trust_forwarded_for: config.trust_forwarded_for,
                server_timing: config.server_timing,
                metrics,
            },
            store,
            reuse_grace_secs: config.refresh_reuse_grace,
            key_reload_interval: Duration::from_secs(config.key_reload_interval),
            access_ttl_secs: config.access_ttl,
            audit_retention_days: config.audit_retention,
            deliverer,
            event_deliverer,
            forgot_requests,
            admin_listener,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where the admin API listens, if it does.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener.as_ref().map(|(_, addr)| *addr)
    }

    /// The HTTP application alone, for in-process clients (the fuzz targets).
    pub fn endpoint(&self) -> poem::endpoint::BoxEndpoint<'static> {
        use poem::EndpointExt;
        api::app(self.state.clone()).boxed()
    }

    /// Serves until SIGINT or SIGTERM, then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    pub async fn run_until(self, stop: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let background = [
            tokio::spawn(background::reload_keys(
                self.state.keys.clone(),
                self.key_reload_interval,
            )),
            tokio::spawn(background::prune_throttle(self.state.throttle.clone())),
            tokio::spawn(background::clean_up_periodically(
                self.store.clone(),
                self.access_ttl_secs,
                self.audit_retention_days,
            )),
            tokio::spawn(background::erase_sealed_successors(
                self.store.clone(),
                self.reuse_grace_secs,
            )),
        ];
        // Tasks that finish what they have accepted before the process exits.
        let (stopping, drain) = watch::channel(false);
        let mut draining = Vec::new();
        if let Some(deliverer) = self.deliverer {
            draining.push(tokio::spawn(deliverer.run(drain.clone())));
        }
        if let Some(deliverer) = self.event_deliverer {
            draining.push(tokio::spawn(deliverer.run(drain.clone())));
        }
        if let Some(requests) = self.forgot_requests {
            let service = self.state.service.clone();
            draining.push(tokio::spawn(
                service.answer_forgot_requests(requests, drain.clone()),
            ));
        }
        tracing::info!(addr = %self.local_addr, "serving");
        // One stop signal for both listeners.
        let (stop_all, stopped) = watch::channel(false);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }
        };
        let admin = self.admin_listener.map(|(listener, addr)| {
            tracing::info!(%addr, "serving the admin API");
            let app = api::admin::app(
                self.state.service.clone(),
                self.state.metrics.clone(),
                self.state.server_timing,
            );
            tokio::spawn(server::serve(
                listener,
                app,
                self.limits,
                until_stopped(),
                SHUTDOWN_GRACE,
            ))
        });
        let public = server::serve(
            self.listener,
            api::app(self.state),
            self.limits,
            until_stopped(),
            SHUTDOWN_GRACE,
        );
        let served = {
            tokio::pin!(public);
            tokio::select! {
                served = &mut public => served,
                () = stop => {
                    stop_all.send_replace(true);
                    public.await
                }
            }
        };
        if let Some(admin) = admin {
            stop_all.send_replace(true);
            match admin.await {
                Ok(Err(err)) => tracing::error!(error = %err, "the admin listener failed"),
                Err(err) => tracing::error!(error = %err, "the admin listener panicked"),
                Ok(Ok(())) => {}
            }
        }
        for task in background {
            task.abort();
        }
        stopping.send_replace(true);
        for task in draining {
            // An attempt under way ends within its timeout; then give up waiting.
            let abort = task.abort_handle();
            if tokio::time::timeout(DRAIN_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
        served.context("serving HTTP")
    }
}

/// The master keys: from `AUTHGATE_MASTER_KEY_FILE`, or for a SQLite file from
/// `<file>.key` (made on first use), or for an in-memory database a key that dies with
/// it. `None` for PostgreSQL without a master key file.
pub fn master_keys(config: &Config) -> anyhow::Result<Option<MasterKeys>> {
    if let Some(path) = &config.master_key_file {
        return MasterKeys::from_file(path)
            .map(Some)
            .map_err(|e| anyhow!("AUTHGATE_MASTER_KEY_FILE: {e}"));
    }
    match store::sqlite_location(config.database_url.expose()) {
        Some(SqliteLocation::File(path)) => {
            let mut key_path = path.into_os_string();
            key_path.push(".key");
            MasterKeys::load_or_generate(std::path::Path::new(&key_path))
                .map(Some)
                .map_err(|e| {
                    anyhow!("AUTHGATE_MASTER_KEY_FILE (generated beside the database): {e}")
                })
        }
        Some(SqliteLocation::Memory) => Ok(Some(MasterKeys::ephemeral())),
        None => Ok(None),
    }
}

/// The master keys a command that seals needs.
pub fn required_master_keys(config: &Config) -> anyhow::Result<MasterKeys> {
    master_keys(config)?.ok_or_else(|| {
        anyhow!("AUTHGATE_MASTER_KEY_FILE is required with PostgreSQL to seal signing keys")
    })
}

pub async fn connect(database_url: &SecretUrl) -> anyhow::Result<Store> {
    Store::connect(database_url.expose())
        .await
        .with_context(|| format!("AUTHGATE_DATABASE_URL: cannot connect to {database_url}"))
}

fn load_key_file(path: &std::path::Path) -> anyhow::Result<SigningKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("AUTHGATE_SIGNING_KEY_FILE: cannot read {}", path.display()))?;
    SigningKey::from_pem(&pem)
        .map_err(|e| anyhow!("AUTHGATE_SIGNING_KEY_FILE: {}: {e}", path.display()))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down; finishing in-flight requests");
}
