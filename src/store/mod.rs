//! Storage on sea-orm: the only module that knows tables and queries. Each state change
//! is one transaction; spending a refresh token is one conditional UPDATE, so among
//! concurrent requests presenting the same token exactly one spends it.

mod batch;
pub mod entities;

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::Expr;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect, SqlErr,
    Statement, TransactionTrait,
};
use uuid::Uuid;

use batch::Batcher;
use entities::{audit_events, refresh_tokens, sessions, signing_keys, users};

pub use entities::audit_events::Model as AuditRow;

pub use entities::refresh_tokens::Model as RefreshTokenRow;
pub use entities::sessions::Model as SessionRow;
pub use entities::signing_keys::Model as SigningKeyRow;
pub use entities::users::Model as UserRow;

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

/// A refresh token to insert: its id, hash and idle expiry.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub id: Uuid,
    pub hash: Vec<u8>,
    pub expires_at: i64,
}

/// Who did something, as the audit trail records it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A security event to record.
#[derive(Debug, Clone)]
pub struct Audit<'a> {
    pub event: &'static str,
    pub actor: &'a Actor,
    pub user_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub detail: Option<String>,
    pub at: i64,
}

/// A refresh to carry out: spend the token whose hash was presented and store its
/// successor.
#[derive(Debug, Clone)]
pub struct Rotation<'a> {
    pub presented_hash: &'a [u8],
    pub successor_id: Uuid,
    pub successor_hash: &'a [u8],
    /// Idle lifetime of the successor; the session's end caps it.
    pub successor_ttl_ms: i64,
    /// The successor sealed under the presented token, for the reuse grace window.
    pub sealed_successor: Option<Vec<u8>>,
    pub actor: &'a Actor,
    pub at: i64,
}

/// A rotation on SQLite, as a batch of statements the connection's worker thread runs in
/// one go (several rotations' batches at once, see [`rotate_on_sqlite`]). Each statement
/// after the first finds the rows through the successor's fresh id, so it changes
/// nothing unless the first one spent the token.
const ROTATE_SQLITE: &str = "
UPDATE refresh_tokens SET spent_at = ?1, successor_id = ?3, sealed_successor = ?5
 WHERE token_hash = ?2 AND spent_at IS NULL AND expires_at > ?1
   AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = refresh_tokens.session_id
                  AND s.revoked_at IS NULL AND s.expires_at > ?1);
INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at)
SELECT ?3, s.id, ?4, ?1, MIN(?1 + ?6, s.expires_at)
  FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
 WHERE t.token_hash = ?2 AND t.successor_id = ?3;
UPDATE sessions SET refreshed_at = ?1
 WHERE id = (SELECT session_id FROM refresh_tokens WHERE id = ?3);
INSERT INTO audit_events (id, at, event, user_id, session_id, client_ip, user_agent)
SELECT ?7, ?1, 'refresh', s.user_id, s.id, ?8, ?9
  FROM refresh_tokens n JOIN sessions s ON s.id = n.session_id WHERE n.id = ?3;
SELECT s.*, n.id AS successor_id, n.expires_at AS successor_expires_at
  FROM refresh_tokens n JOIN sessions s ON s.id = n.session_id WHERE n.id = ?3;
";

/// A rotated token's session, and its successor's expiry.
pub type Rotated = (SessionRow, i64);

/// SQLite rotations waiting to be committed together, by successor id.
type RotationBatcher = Batcher<(Uuid, RotationValues), Option<Rotated>>;

/// The parameters of [`ROTATE_SQLITE`] and [`ROTATE_POSTGRES`], `?1`/`$1` first.
type RotationValues = [sea_orm::Value; 9];

/// A rotation on PostgreSQL: one statement, so one round trip and its own transaction.
/// Concurrent requests presenting the same token queue on its row; the later ones find
/// it spent and change nothing.
const ROTATE_POSTGRES: &str = "
WITH spent AS (
    UPDATE refresh_tokens t SET spent_at = $1, successor_id = $3, sealed_successor = $5
      FROM sessions s
     WHERE t.token_hash = $2 AND t.spent_at IS NULL AND t.expires_at > $1
       AND s.id = t.session_id AND s.revoked_at IS NULL AND s.expires_at > $1
    RETURNING s.id, s.user_id, s.created_at, s.expires_at, s.revoked_at
), successor AS (
    INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at)
    SELECT $3, id, $4, $1, LEAST($1 + $6, expires_at) FROM spent
    RETURNING expires_at
), touched AS (
    UPDATE sessions SET refreshed_at = $1 WHERE id = (SELECT id FROM spent)
    RETURNING refreshed_at
), audit AS (
    INSERT INTO audit_events (id, at, event, user_id, session_id, client_ip, user_agent)
    SELECT $7, $1, 'refresh', user_id, id, $8, $9 FROM spent
)
SELECT spent.*, touched.refreshed_at, successor.expires_at AS successor_expires_at
  FROM spent, successor, touched
";

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// The client address as the audit trail stores it (at most an IPv6 address's length).
fn recorded_ip(actor: &Actor) -> Option<String> {
    actor.client_ip.as_deref().map(|ip| truncate(ip, 45))
}

/// The user agent as the audit trail stores it (at most 256 characters).
fn recorded_user_agent(actor: &Actor) -> Option<String> {
    actor.user_agent.as_deref().map(|ua| truncate(ua, 256))
}

async fn insert_audit(db: &impl sea_orm::ConnectionTrait, audit: &Audit<'_>) -> Result<(), DbErr> {
    audit_events::Entity::insert(audit_events::ActiveModel {
        id: Set(Uuid::new_v4()),
        at: Set(audit.at),
        event: Set(audit.event.to_owned()),
        user_id: Set(audit.user_id),
        session_id: Set(audit.session_id),
        client_ip: Set(recorded_ip(audit.actor)),
        user_agent: Set(recorded_user_agent(audit.actor)),
        detail: Set(audit.detail.as_deref().map(|detail| truncate(detail, 512))),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

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

/// Who `/me` asks about: a session, its user, and the time it must still be live at.
type SessionUserQuery = (Uuid, Uuid, i64);

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// Concurrent [`Store::live_session_user`] lookups, answered by one query per batch.
    session_users: Arc<Batcher<SessionUserQuery, Option<UserRow>>>,
    /// SQLite takes one writer at a time; queueing writers here, in order, avoids its
    /// busy-wait back-off (which gave refresh a p99 of ~900 ms under load).
    sqlite_writer: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Concurrent rotations on SQLite, committed together (one fsync per batch).
    sqlite_rotations: Option<Arc<RotationBatcher>>,
}

impl Store {
    /// Connects with [`connect_options`].
    pub async fn connect(url: &str) -> Result<Self, DbErr> {
        create_private_sqlite_file(url)
            .map_err(|err| DbErr::Custom(format!("cannot create the database file: {err}")))?;
        let db = Database::connect(connect_options(url)).await?;
        let sqlite_writer = (db.get_database_backend() == DbBackend::Sqlite)
            .then(|| Arc::new(tokio::sync::Mutex::new(())));
        let sqlite_rotations = sqlite_writer.as_ref().map(|writer| {
            let (db, writer) = (db.clone(), Arc::clone(writer));
            Batcher::new(32, move |batch| {
                let (db, writer) = (db.clone(), Arc::clone(&writer));
                async move { rotate_on_sqlite(&db, &writer, batch).await }
            })
        });
        let lookup_db = db.clone();
        let session_users = Batcher::new(64, move |queries| {
            let db = lookup_db.clone();
            async move { live_session_users(&db, &queries).await }
        });
        Ok(Self {
            db,
            session_users,
            sqlite_writer,
            sqlite_rotations,
        })
    }

    async fn writer(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.sqlite_writer {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
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

    pub async fn insert_user(&self, user: UserRow, audit: &Audit<'_>) -> Result<()> {
        let _writer = self.writer().await;
        let txn = self.db.begin().await?;
        users::Entity::insert(users::ActiveModel::from(user))
            .exec_without_returning(&txn)
            .await?;
        insert_audit(&txn, audit).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Records an event that changes nothing else (a failed login).
    pub async fn record(&self, audit: &Audit<'_>) -> Result<()> {
        let _writer = self.writer().await;
        Ok(insert_audit(&self.db, audit).await?)
    }

    /// Events, oldest first, optionally of one user and from a time on.
    pub async fn audit_events(
        &self,
        user_id: Option<Uuid>,
        since: Option<i64>,
        limit: u64,
    ) -> Result<Vec<AuditRow>> {
        let mut query = audit_events::Entity::find()
            .order_by_asc(audit_events::Column::At)
            .limit(limit);
        if let Some(user_id) = user_id {
            query = query.filter(audit_events::Column::UserId.eq(user_id));
        }
        if let Some(since) = since {
            query = query.filter(audit_events::Column::At.gte(since));
        }
        Ok(query.all(&self.db).await?)
    }

    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        Ok(users::Entity::find()
            .filter(users::Column::Email.eq(email))
            .one(&self.db)
            .await?)
    }

    /// Starts a session with its first refresh token; also stores an upgraded password
    /// hash when there is one. One transaction.
    pub async fn start_session(
        &self,
        session: SessionRow,
        token: NewRefreshToken,
        upgraded_password_hash: Option<String>,
        audit: &Audit<'_>,
    ) -> Result<()> {
        let _writer = self.writer().await;
        let txn = self.db.begin().await?;
        let now = session.created_at;
        let user_id = session.user_id;
        sessions::Entity::insert(sessions::ActiveModel::from(session.clone()))
            .exec_without_returning(&txn)
            .await?;
        insert_refresh_token(&txn, session.id, token, now).await?;
        if let Some(hash) = upgraded_password_hash {
            users::Entity::update_many()
                .col_expr(users::Column::PasswordHash, Expr::value(hash))
                .filter(users::Column::Id.eq(user_id))
                .exec(&txn)
                .await?;
        }
        insert_audit(&txn, audit).await?;
        txn.commit().await?;
        Ok(())
    }

    /// The refresh token with this hash and its session.
    pub async fn find_refresh_token(
        &self,
        hash: &[u8],
    ) -> Result<Option<(RefreshTokenRow, SessionRow)>> {
        let found = refresh_tokens::Entity::find()
            .filter(refresh_tokens::Column::TokenHash.eq(hash.to_vec()))
            .find_also_related(sessions::Entity)
            .one(&self.db)
            .await?;
        Ok(found.and_then(|(token, session)| Some((token, session?))))
    }

    pub async fn find_refresh_token_by_id(&self, id: Uuid) -> Result<Option<RefreshTokenRow>> {
        Ok(refresh_tokens::Entity::find_by_id(id).one(&self.db).await?)
    }

    /// Spends the presented token if it is unspent and unexpired and its session is live,
    /// stores the successor and records the refresh, in one transaction. Returns the
    /// session and the successor's expiry, or `None` when nothing changed (unknown,
    /// expired or spent token, or ended session).
    pub async fn rotate(&self, rotation: &Rotation<'_>) -> Result<Option<Rotated>> {
        let values: RotationValues = [
            rotation.at.into(),
            rotation.presented_hash.to_vec().into(),
            rotation.successor_id.into(),
            rotation.successor_hash.to_vec().into(),
            rotation.sealed_successor.clone().into(),
            rotation.successor_ttl_ms.into(),
            Uuid::new_v4().into(),
            recorded_ip(rotation.actor).into(),
            recorded_user_agent(rotation.actor).into(),
        ];
        if let Some(sqlite_rotations) = &self.sqlite_rotations {
            return Ok(sqlite_rotations
                .submit((rotation.successor_id, values))
                .await?);
        }
        let statement =
            Statement::from_sql_and_values(DbBackend::Postgres, ROTATE_POSTGRES, values);
        match self.db.query_one_raw(statement).await? {
            Some(row) => Ok(Some(rotated(&row)?)),
            None => Ok(None),
        }
    }

    /// Records a refresh on a live session; false if it has been revoked or has expired.
    pub async fn touch_live_session(&self, session_id: Uuid, now: i64) -> Result<bool> {
        let _writer = self.writer().await;
        Ok(touch_live_session(&self.db, session_id, now).await?)
    }

    /// Ends one session and records why. Returns whether it was live (nothing is
    /// recorded if it was not).
    pub async fn revoke_session(&self, session_id: Uuid, audit: &Audit<'_>) -> Result<bool> {
        let _writer = self.writer().await;
        let txn = self.db.begin().await?;
        let revoked = sessions::Entity::update_many()
            .col_expr(sessions::Column::RevokedAt, Expr::value(audit.at))
            .filter(sessions::Column::Id.eq(session_id))
            .filter(sessions::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        let live = revoked.rows_affected == 1;
        if live {
            insert_audit(&txn, audit).await?;
        }
        txn.commit().await?;
        Ok(live)
    }

    /// Ends every session of a user and records it. Returns how many were live.
    pub async fn revoke_user_sessions(&self, user_id: Uuid, audit: &Audit<'_>) -> Result<u64> {
        let _writer = self.writer().await;
        let txn = self.db.begin().await?;
        let revoked = sessions::Entity::update_many()
            .col_expr(sessions::Column::RevokedAt, Expr::value(audit.at))
            .filter(sessions::Column::UserId.eq(user_id))
            .filter(sessions::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        let mut audit = audit.clone();
        audit.detail = Some(format!("{} sessions ended", revoked.rows_affected));
        insert_audit(&txn, &audit).await?;
        txn.commit().await?;
        Ok(revoked.rows_affected)
    }

    /// The user of a session that is neither revoked nor past its end. Concurrent calls
    /// share one query.
    pub async fn live_session_user(
        &self,
        session_id: Uuid,
        user_id: Uuid,
        now: i64,
    ) -> Result<Option<UserRow>> {
        Ok(self
            .session_users
            .submit((session_id, user_id, now))
            .await?)
    }

    /// Erases sealed successors of tokens spent in `[since, cutoff)`; the range keeps
    /// each periodic sweep to the few rows spent since the previous one.
    pub async fn erase_sealed_successors(&self, since: i64, cutoff: i64) -> Result<u64> {
        let _writer = self.writer().await;
        let erased = refresh_tokens::Entity::update_many()
            .col_expr(
                refresh_tokens::Column::SealedSuccessor,
                Expr::value(Option::<Vec<u8>>::None),
            )
            .filter(refresh_tokens::Column::SpentAt.gte(since))
            .filter(refresh_tokens::Column::SpentAt.lt(cutoff))
            .filter(refresh_tokens::Column::SealedSuccessor.is_not_null())
            .exec(&self.db)
            .await?;
        Ok(erased.rows_affected)
    }

    /// Deletes up to `batch` ended sessions (revoked, or past their end; their refresh
    /// tokens go by cascade) and up to `batch` refresh tokens past their idle expiry.
    /// Each is one statement, so instances running it at once just share the work.
    pub async fn delete_expired(&self, now: i64, batch: u64) -> Result<u64> {
        let _writer = self.writer().await;
        use sea_orm::sea_query::{Cond, Query};
        let ended = Query::select()
            .column(sessions::Column::Id)
            .from(sessions::Entity)
            .cond_where(
                Cond::any()
                    .add(sessions::Column::RevokedAt.is_not_null())
                    .add(sessions::Column::ExpiresAt.lte(now)),
            )
            .limit(batch)
            .to_owned();
        let sessions = sessions::Entity::delete_many()
            .filter(sessions::Column::Id.in_subquery(ended))
            .exec(&self.db)
            .await?
            .rows_affected;
        let idle = Query::select()
            .column(refresh_tokens::Column::Id)
            .from(refresh_tokens::Entity)
            .and_where(refresh_tokens::Column::ExpiresAt.lte(now))
            .limit(batch)
            .to_owned();
        let tokens = refresh_tokens::Entity::delete_many()
            .filter(refresh_tokens::Column::Id.in_subquery(idle))
            .exec(&self.db)
            .await?
            .rows_affected;
        Ok(sessions + tokens)
    }

    /// Deletes up to `batch` audit events recorded before `cutoff`.
    pub async fn delete_audit_before(&self, cutoff: i64, batch: u64) -> Result<u64> {
        let _writer = self.writer().await;
        use sea_orm::sea_query::Query;
        let old = Query::select()
            .column(audit_events::Column::Id)
            .from(audit_events::Entity)
            .and_where(audit_events::Column::At.lt(cutoff))
            .limit(batch)
            .to_owned();
        Ok(audit_events::Entity::delete_many()
            .filter(audit_events::Column::Id.in_subquery(old))
            .exec(&self.db)
            .await?
            .rows_affected)
    }

    /// Signing keys, newest first.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>> {
        Ok(signing_keys::Entity::find()
            .order_by_desc(signing_keys::Column::CreatedAt)
            .order_by_desc(signing_keys::Column::Kid)
            .all(&self.db)
            .await?)
    }

    /// Adds a key; with `retire_others_at`, every other key that may still sign then
    /// is retired at that time, in the same transaction.
    pub async fn add_signing_key(
        &self,
        key: SigningKeyRow,
        retire_others_at: Option<i64>,
        audit: Option<&Audit<'_>>,
    ) -> Result<()> {
        let _writer = self.writer().await;
        let txn = self.db.begin().await?;
        let kid = key.kid.clone();
        signing_keys::Entity::insert(signing_keys::ActiveModel::from(key))
            .exec_without_returning(&txn)
            .await?;
        if let Some(at) = retire_others_at {
            retire_signing_keys(&txn, Some(&kid), at).await?;
        }
        if let Some(audit) = audit {
            insert_audit(&txn, audit).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Retires every key that may still sign at `now`.
    pub async fn retire_signing_keys(&self, now: i64) -> Result<u64> {
        let _writer = self.writer().await;
        Ok(retire_signing_keys(&self.db, None, now).await?)
    }

    /// Withdraws a key for good and records it.
    pub async fn revoke_signing_key(&self, kid: &str, audit: &Audit<'_>) -> Result<bool> {
        let _writer = self.writer().await;
        let txn = self.db.begin().await?;
        let revoked = signing_keys::Entity::update_many()
            .col_expr(signing_keys::Column::RevokedAt, Expr::value(audit.at))
            .filter(signing_keys::Column::Kid.eq(kid))
            .filter(signing_keys::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        if revoked {
            insert_audit(&txn, audit).await?;
        }
        txn.commit().await?;
        Ok(revoked)
    }

    /// Erases every private key kept in plain text (a database written before keys were
    /// sealed, served with a key file and no master key).
    pub async fn erase_plaintext_keys(&self) -> Result<u64> {
        let _writer = self.writer().await;
        Ok(signing_keys::Entity::update_many()
            .col_expr(signing_keys::Column::PrivateKeyPem, Expr::value(""))
            .filter(signing_keys::Column::PrivateKeyPem.ne(""))
            .exec(&self.db)
            .await?
            .rows_affected)
    }

    /// Stores sealed private keys by kid and erases any plaintext copy, in one
    /// transaction.
    pub async fn store_sealed_keys(&self, sealed: &[(String, String)]) -> Result<()> {
        let _writer = self.writer().await;
        let txn = self.db.begin().await?;
        for (kid, sealed) in sealed {
            signing_keys::Entity::update_many()
                .col_expr(
                    signing_keys::Column::SealedPrivateKey,
                    Expr::value(sealed.clone()),
                )
                .col_expr(signing_keys::Column::PrivateKeyPem, Expr::value(""))
                .filter(signing_keys::Column::Kid.eq(kid.as_str()))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// One answer per query: the user, if the session is live at the latest of the queries'
/// times and belongs to that user. One statement for the whole batch.
async fn live_session_users(
    db: &DatabaseConnection,
    queries: &[SessionUserQuery],
) -> Result<Vec<Option<UserRow>>, DbErr> {
    let now = queries
        .iter()
        .map(|&(_, _, now)| now)
        .max()
        .unwrap_or_default();
    // Only the primary key in the WHERE clause, liveness checked below: given more terms,
    // SQLite's planner may pick the `revoked_at` index for a long IN list and scan every
    // live session (3 ms instead of 30 µs). No `one()`/LIMIT either: a bound LIMIT makes
    // SQLite re-prepare the statement every time it is bound.
    let found = sessions::Entity::find()
        .find_also_related(users::Entity)
        .filter(sessions::Column::Id.is_in(queries.iter().map(|&(session_id, _, _)| session_id)))
        .all(db)
        .await?;
    Ok(queries
        .iter()
        .map(|&(session_id, user_id, _)| {
            found
                .iter()
                .find(|(session, _)| {
                    session.id == session_id
                        && session.user_id == user_id
                        && session.revoked_at.is_none()
                        && session.expires_at > now
                })
                .and_then(|(_, user)| user.clone())
        })
        .collect())
}

fn rotated(row: &sea_orm::QueryResult) -> Result<Rotated, DbErr> {
    Ok((
        SessionRow::from_query_result(row, "")?,
        row.try_get("", "successor_expires_at")?,
    ))
}

/// Rotations on SQLite, keyed by successor id, all in one transaction: one round trip to
/// the connection's thread and one fsync for the whole batch, the group commit that lets
/// refresh outrun a transaction per request.
async fn rotate_on_sqlite(
    db: &DatabaseConnection,
    writer: &tokio::sync::Mutex<()>,
    batch: Vec<(Uuid, RotationValues)>,
) -> Result<Vec<Option<Rotated>>, DbErr> {
    let (mut sql, mut values) = (String::new(), Vec::new());
    for (_, numbered) in &batch {
        let (plain, in_order) = positional(ROTATE_SQLITE, numbered);
        sql.push_str(&plain);
        values.extend(in_order);
    }
    let successors: Vec<Uuid> = batch.iter().map(|(successor, _)| *successor).collect();
    let statement = Statement::from_sql_and_values(DbBackend::Sqlite, sql, values);
    let rows = {
        let _writer = writer.lock().await;
        let txn = db.begin().await?;
        let rows = txn.query_all_raw(statement).await?;
        txn.commit().await?;
        rows
    };
    let mut rotations = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        rotations.insert(row.try_get::<Uuid>("", "successor_id")?, rotated(row)?);
    }
    Ok(successors
        .iter()
        .map(|successor| rotations.remove(successor))
        .collect())
}

/// `sql` with every numbered parameter `?N` turned into a plain `?`, and the values in
/// the order the plain parameters take them. sqlx binds a multi-statement SQLite query
/// with one running count across statements, which skips numbered parameters that come
/// after a gap (a statement using `?3` but not `?2`); plain parameters have no gaps.
fn positional(sql: &str, numbered: &[sea_orm::Value]) -> (String, Vec<sea_orm::Value>) {
    let mut plain = String::with_capacity(sql.len());
    let mut values = Vec::new();
    let mut rest = sql;
    while let Some(at) = rest.find('?') {
        plain.push_str(&rest[..=at]);
        let digits = rest[at + 1..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        let number: usize = rest[at + 1..at + 1 + digits].parse().unwrap_or_default();
        values.extend(number.checked_sub(1).and_then(|i| numbered.get(i)).cloned());
        rest = &rest[at + 1 + digits..];
    }
    plain.push_str(rest);
    (plain, values)
}

async fn retire_signing_keys(
    db: &impl sea_orm::ConnectionTrait,
    except: Option<&str>,
    at: i64,
) -> Result<u64, DbErr> {
    use sea_orm::sea_query::Cond;
    let mut update = signing_keys::Entity::update_many()
        .col_expr(signing_keys::Column::RetiredAt, Expr::value(at))
        .filter(signing_keys::Column::RevokedAt.is_null())
        .filter(
            Cond::any()
                .add(signing_keys::Column::RetiredAt.is_null())
                .add(signing_keys::Column::RetiredAt.gt(at)),
        );
    if let Some(kid) = except {
        update = update.filter(signing_keys::Column::Kid.ne(kid));
    }
    Ok(update.exec(db).await?.rows_affected)
}

async fn touch_live_session(
    db: &impl sea_orm::ConnectionTrait,
    session_id: Uuid,
    now: i64,
) -> Result<bool, DbErr> {
    let touched = sessions::Entity::update_many()
        .col_expr(sessions::Column::RefreshedAt, Expr::value(now))
        .filter(sessions::Column::Id.eq(session_id))
        .filter(sessions::Column::RevokedAt.is_null())
        .filter(sessions::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?;
    Ok(touched.rows_affected == 1)
}

async fn insert_refresh_token(
    txn: &impl sea_orm::ConnectionTrait,
    session_id: Uuid,
    token: NewRefreshToken,
    now: i64,
) -> Result<(), DbErr> {
    refresh_tokens::Entity::insert(refresh_tokens::ActiveModel {
        id: Set(token.id),
        session_id: Set(session_id),
        token_hash: Set(token.hash),
        created_at: Set(now),
        expires_at: Set(token.expires_at),
        spent_at: Set(None),
        successor_id: Set(None),
        sealed_successor: Set(None),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
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

    #[test]
    fn numbered_parameters_become_plain_ones_taking_values_in_order() {
        let numbered: Vec<sea_orm::Value> = (1..=12i64).map(Into::into).collect();
        let (sql, values) = positional("UPDATE t SET a = ?1 WHERE b = ?12 AND c = ?1;", &numbered);
        assert_eq!(sql, "UPDATE t SET a = ? WHERE b = ? AND c = ?;");
        assert_eq!(values, [1i64.into(), 12i64.into(), 1i64.into()]);
        let (sql, values) = positional(ROTATE_SQLITE, &numbered[..9]);
        assert_eq!(sql.matches('?').count(), values.len());
        assert!(!sql.contains("?1"));
    }
}
