//! Storage on sea-orm: the only module that knows tables and queries, one file per
//! aggregate (`users`, `sessions` with the batched rotation and lookups, `keys`,
//! `audit`, `maintenance`). Each state change is one `UnitOfWork`; spending a
//! refresh token is one conditional UPDATE, so among concurrent requests presenting the
//! same token exactly one spends it.

mod admin;
mod admin_keys;
mod audit;
mod batch;
mod clients;
mod deliveries;
/// The tables, public for tests that inspect rows; nothing outside the store uses them.
#[doc(hidden)]
pub mod entities;
mod keys;
mod maintenance;
mod messages;
mod passwords;
mod revocations;
mod rotation;
mod sessions;
mod sql;
mod users;

use std::sync::Arc;
use std::time::Duration;

use batch::Batcher;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, EntityTrait, QueryResult, SqlErr, Statement, TransactionTrait,
};

use crate::domain::events::{Event, EventFilter, EventType, Subscriber};
use crate::domain::types::{AuditEntry, UnixMillis, User};
use crate::telemetry::{self, Phase};
pub use admin::{AuditQuery, UserChange, UserSearch};
pub use admin_keys::AdminKeyInfo;
pub use clients::ClientRecord;
use entities::refresh_tokens::Model as RefreshTokenRow;
use entities::sessions::Model as SessionRow;
use entities::signing_keys::Model as SigningKeyRow;
use entities::users::Model as UserRow;
pub use messages::{LiveAccountToken, MESSAGE_INTERVAL_SECS};
pub use passwords::PasswordSwap;
pub use rotation::Rotation;
pub use users::PasswordChange;

use rotation::{RotationBatcher, rotate_on_postgres, rotate_on_sqlite};
use sessions::{SessionUserQuery, live_session_users};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a row with this unique value already exists")]
    Duplicate,
    #[error(transparent)]
    Db(DbErr),
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Self::Duplicate,
            _ => Self::Db(err),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<UnixMillis> for sea_orm::Value {
    fn from(at: UnixMillis) -> Self {
        at.millis().into()
    }
}

fn millis(at: Option<i64>) -> Option<UnixMillis> {
    at.map(UnixMillis::from_millis)
}

/// How much of a SQLite database is mapped into memory (address space, not memory used:
/// the OS pages it in as it is read).
const SQLITE_MMAP_BYTES: u64 = 1 << 30;
/// Each SQLite connection's own page cache.
const SQLITE_CACHE_KIB: u64 = 16 * 1024;

/// The pool authgate uses. SQLite gets WAL with `synchronous=FULL`, so a committed
/// change survives a power cut, and a busy timeout so concurrent writers queue instead of
/// failing. Public so that the load harness's rotation ceiling runs on the same settings.
pub fn connect_options(url: &str) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        // A ping on every checkout costs a round trip per query (a thread hop on SQLite);
        // only a connection idle long enough to have been dropped is checked first.
        .test_before_acquire_if_idle_for(Duration::from_secs(1))
        // Every connection to an in-memory SQLite database is a database of its own.
        .max_connections(if url.contains(":memory:") || url.contains("mode=memory") {
            1
        } else {
            16
        })
        .map_sqlx_sqlite_opts(|sqlite| {
            sqlite
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // SQLite's default page cache is 2 MiB per connection: once the database
                // outgrows it, every lookup of a token or session reads pages back from
                // the OS. Reads go through a shared memory map instead (the OS caches it
                // once for all connections), with a larger private cache for the pages
                // a connection writes.
                .pragma("mmap_size", SQLITE_MMAP_BYTES.to_string())
                .pragma("cache_size", format!("-{}", SQLITE_CACHE_KIB))
        });
    options
}

/// Where a SQLite database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqliteLocation {
    File(std::path::PathBuf),
    Memory,
}

/// Where the SQLite database of `url` lives; `None` for another database.
pub fn sqlite_location(url: &str) -> Option<SqliteLocation> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory =
        path.is_empty() || path == ":memory:" || query.split('&').any(|pair| pair == "mode=memory");
    Some(if in_memory {
        SqliteLocation::Memory
    } else {
        SqliteLocation::File(path.into())
    })
}

/// Creates a SQLite database file readable by its owner only, before SQLite would
/// create it with the process's umask (0644 as a rule); SQLite gives its WAL and
/// shared-memory files the same mode as the database.
fn create_private_sqlite_file(url: &str) -> std::io::Result<()> {
    let creates = url
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|pair| pair == "mode=rwc"));
    match sqlite_location(url) {
        Some(SqliteLocation::File(path)) if creates && !path.exists() => {
            match crate::crypto::master::create_private_file(&path, b"") {
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                other => other,
            }
        }
        _ => Ok(()),
    }
}

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// Concurrent [`Store::live_session_user`] lookups, answered by one query per batch.
    session_users: Arc<Batcher<SessionUserQuery, Option<User>>>,
    /// Concurrent [`Store::find_client`] lookups, likewise.
    client_lookups: Arc<Batcher<String, Option<ClientRecord>>>,
    /// SQLite takes one writer at a time; queueing writers here, in order, avoids its
    /// busy-wait back-off (which gave refresh a p99 of ~900 ms under load).
    sqlite_writer: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Concurrent rotations, committed together (one commit per batch).
    rotations: Arc<RotationBatcher>,
    /// Who receives which events: each change writes a delivery per subscriber that
    /// wants its event. Empty: no event is even built.
    event_routes: Arc<[(String, EventFilter)]>,
    /// Woken when this instance writes events, so its deliverer sends them at once.
    events_written: Arc<tokio::sync::Notify>,
}

impl Store {
    /// Connects with [`connect_options`].
    pub async fn connect(url: &str) -> Result<Self, DbErr> {
        create_private_sqlite_file(url)
            .map_err(|err| DbErr::Custom(format!("cannot create the database file: {err}")))?;
        let mut db = Database::connect(connect_options(url)).await?;
        let backend = match db.get_database_backend() {
            DbBackend::Sqlite => "sqlite",
            DbBackend::Postgres => "postgresql",
            _ => "other",
        };
        db.set_metric_callback(move |run| {
            telemetry::statement(backend, &run.statement.sql, run.elapsed, run.failed);
        });
        let sqlite_writer = (db.get_database_backend() == DbBackend::Sqlite)
            .then(|| Arc::new(tokio::sync::Mutex::new(())));
        let rotation_db = db.clone();
        let rotations = match &sqlite_writer {
            Some(writer) => {
                let writer = Arc::clone(writer);
                Batcher::new("rotation batch", 32, move |batch| {
                    let (db, writer) = (rotation_db.clone(), Arc::clone(&writer));
                    async move { rotate_on_sqlite(&db, &writer, batch).await }
                })
            }
            None => Batcher::new("rotation batch", 32, move |batch| {
                let db = rotation_db.clone();
                async move { rotate_on_postgres(&db, batch).await }
            }),
        };
        let lookup_db = db.clone();
        let session_users = Batcher::new("session lookup batch", 64, move |queries| {
            let db = lookup_db.clone();
            async move { live_session_users(&db, &queries).await }
        });
        let clients_db = db.clone();
        let client_lookups = Batcher::new("client lookup batch", 64, move |ids: Vec<String>| {
            let db = clients_db.clone();
            async move { clients::clients_by_id(&db, &ids).await }
        });
        Ok(Self {
            db,
            session_users,
            client_lookups,
            sqlite_writer,
            rotations,
            event_routes: Arc::from([]),
            events_written: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Routes the events of every later change to these subscribers.
    pub fn route_events(&mut self, subscribers: &[Subscriber]) {
        self.event_routes = subscribers
            .iter()
            .map(|subscriber| (subscriber.url.clone(), subscriber.filter.clone()))
            .collect();
    }

    /// Wakes this instance's event deliverer.
    pub fn events_written(&self) {
        self.events_written.notify_one();
    }

    /// What the event deliverer waits on besides its poll interval.
    pub fn events_written_signal(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.events_written)
    }

    async fn writer(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.sqlite_writer {
            Some(lock) => {
                Some(telemetry::timed(Phase::Db, "SQLite writer queue", lock.lock()).await)
            }
            None => None,
        }
    }

    /// Starts a state change: see [`UnitOfWork`].
    async fn begin(&self) -> Result<UnitOfWork<'_>, DbErr> {
        let writer = self.writer().await;
        let txn = telemetry::timed(Phase::Db, "BEGIN", self.db.begin()).await?;
        Ok(UnitOfWork {
            _writer: writer,
            txn,
            store: self,
            events: Vec::new(),
        })
    }

    /// One statement that changes rows, as a transaction of its own (no `BEGIN` and
    /// `COMMIT` round trips), queued for the SQLite writer as a unit of work is.
    async fn write_alone(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let _writer = self.writer().await;
        self.db.query_all_raw(statement).await
    }

    pub async fn migrate(&self) -> Result<(), DbErr> {
        use migration::MigratorTrait;
        migration::Migrator::up(&self.db, None).await
    }

    /// Connections open and idle in the pool.
    pub fn pool_stats(&self) -> (usize, usize) {
        match self.db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (pool.size() as usize, pool.num_idle())
            }
            DbBackend::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                (pool.size() as usize, pool.num_idle())
            }
            _ => (0, 0),
        }
    }

    pub async fn ping(&self) -> Result<(), DbErr> {
        self.db.ping().await
    }
}

/// One state change: the SQLite writer lock (taken first, so writers queue in order
/// instead of busy-waiting), a transaction, and at `commit` the audit event and the
/// subscribers' events recorded in that same transaction. Every write goes through one,
/// so none can skip the lock, and each says which audit event it records (`None`: a
/// change that is not a security event).
struct UnitOfWork<'a> {
    _writer: Option<tokio::sync::MutexGuard<'a, ()>>,
    txn: DatabaseTransaction,
    store: &'a Store,
    /// Events of this change, delivered to their subscribers once it commits.
    events: Vec<Event>,
}

impl UnitOfWork<'_> {
    fn db(&self) -> &DatabaseTransaction {
        &self.txn
    }

    /// Whether any subscriber wants events of this type (if not, none is built).
    fn wants(&self, event_type: EventType) -> bool {
        self.store
            .event_routes
            .iter()
            .any(|(_, filter)| filter.wants(event_type))
    }

    /// Adds an event to this change, if anyone wants its type.
    fn emit(&mut self, event_type: EventType, event: impl FnOnce() -> Event) {
        if self.wants(event_type) {
            self.events.push(event());
        }
    }

    /// Adds `user.updated` with the user's email as it now is.
    async fn emit_user_updated(
        &mut self,
        user_id: uuid::Uuid,
        changed: &[&str],
    ) -> Result<(), DbErr> {
        if !self.wants(EventType::UserUpdated) {
            return Ok(());
        }
        if let Some(user) = entities::users::Entity::find_by_id(user_id)
            .one(&self.txn)
            .await?
        {
            self.events
                .push(Event::user_updated(user_id, &user.email, changed));
        }
        Ok(())
    }

    async fn commit(self, audit: Option<&AuditEntry<'_>>) -> Result<(), DbErr> {
        let backend = self.txn.get_database_backend();
        let audit = audit.map(|audit| audit::audit_insert(audit, backend));
        let outbox = deliveries::deliveries_insert(&self.store.event_routes, &self.events, backend);
        let wrote_events = outbox.is_some();
        match (audit, outbox) {
            (audit, Some(outbox)) => {
                // With the audit event in the same statement: the outbox costs a change
                // its rows, not another round trip (a thread hop on SQLite) while it
                // holds the writer.
                let write = match audit {
                    Some(audit) => sql::together(audit, outbox),
                    None => outbox,
                };
                telemetry::timed(Phase::Outbox, "outbox write", self.txn.execute_raw(write))
                    .await?;
            }
            (Some(audit), None) => {
                self.txn.execute_raw(audit).await?;
            }
            (None, None) => {}
        }
        telemetry::timed(Phase::Db, "COMMIT", self.txn.commit()).await?;
        if wrote_events {
            self.store.events_written();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_a_file_or_memory() {
        let file = |path: &str| Some(SqliteLocation::File(path.into()));
        assert_eq!(
            sqlite_location("sqlite://authgate.db?mode=rwc"),
            file("authgate.db")
        );
        assert_eq!(
            sqlite_location("sqlite:///var/lib/a.db"),
            file("/var/lib/a.db")
        );
        assert_eq!(sqlite_location("sqlite:a.db"), file("a.db"));
        assert_eq!(
            sqlite_location("sqlite::memory:"),
            Some(SqliteLocation::Memory)
        );
        assert_eq!(
            sqlite_location("sqlite://x?mode=memory&cache=shared"),
            Some(SqliteLocation::Memory)
        );
        assert_eq!(sqlite_location("postgres://db/authgate"), None);
    }
}
