//! Sessions and their refresh tokens: login, rotation (batched on SQLite), revocation and
//! the batched lookups behind Bearer authentication.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr,
    EntityTrait, FromQueryResult, QueryFilter, Statement, TransactionTrait,
};
use uuid::Uuid;

use super::audit::{recorded_ip, recorded_user_agent};
use super::batch::Batcher;
use super::entities::{refresh_tokens, sessions, users};
use super::{Actor, Audit, RefreshTokenRow, Result, SessionRow, Store, UserRow};

/// A refresh token to insert: its id, hash and idle expiry.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub id: Uuid,
    pub hash: Vec<u8>,
    pub expires_at: i64,
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
pub(super) type RotationBatcher = Batcher<(Uuid, RotationValues), Option<Rotated>>;

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

/// Who `/me` asks about: a session, its user, and the time it must still be live at.
pub(super) type SessionUserQuery = (Uuid, Uuid, i64);

impl Store {
    /// Starts a session with its first refresh token; also stores an upgraded password
    /// hash when there is one. One transaction.
    pub async fn start_session(
        &self,
        session: SessionRow,
        token: NewRefreshToken,
        upgraded_password_hash: Option<String>,
        audit: &Audit<'_>,
    ) -> Result<()> {
        let work = self.begin().await?;
        let now = session.created_at;
        let user_id = session.user_id;
        sessions::Entity::insert(sessions::ActiveModel::from(session.clone()))
            .exec_without_returning(work.db())
            .await?;
        insert_refresh_token(work.db(), session.id, token, now).await?;
        if let Some(hash) = upgraded_password_hash {
            users::Entity::update_many()
                .col_expr(users::Column::PasswordHash, Expr::value(hash))
                .filter(users::Column::Id.eq(user_id))
                .exec(work.db())
                .await?;
        }
        work.commit(Some(audit)).await?;
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
        let work = self.begin().await?;
        let live = touch_live_session(work.db(), session_id, now).await?;
        work.commit(None).await?;
        Ok(live)
    }

    /// Ends one session and records why. Returns whether it was live (nothing is
    /// recorded if it was not).
    pub async fn revoke_session(&self, session_id: Uuid, audit: &Audit<'_>) -> Result<bool> {
        let work = self.begin().await?;
        let revoked = sessions::Entity::update_many()
            .col_expr(sessions::Column::RevokedAt, Expr::value(audit.at))
            .filter(sessions::Column::Id.eq(session_id))
            .filter(sessions::Column::RevokedAt.is_null())
            .exec(work.db())
            .await?;
        let live = revoked.rows_affected == 1;
        work.commit(live.then_some(audit)).await?;
        Ok(live)
    }

    /// Ends every session of a user and records it. Returns how many were live.
    pub async fn revoke_user_sessions(&self, user_id: Uuid, audit: &Audit<'_>) -> Result<u64> {
        let work = self.begin().await?;
        let revoked = sessions::Entity::update_many()
            .col_expr(sessions::Column::RevokedAt, Expr::value(audit.at))
            .filter(sessions::Column::UserId.eq(user_id))
            .filter(sessions::Column::RevokedAt.is_null())
            .exec(work.db())
            .await?;
        let mut audit = audit.clone();
        audit.detail = Some(format!("{} sessions ended", revoked.rows_affected));
        work.commit(Some(&audit)).await?;
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
}

/// One answer per query: the user, if the session is live at the latest of the queries'
/// times and belongs to that user. One statement for the whole batch.
pub(super) async fn live_session_users(
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
pub(super) async fn rotate_on_sqlite(
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
