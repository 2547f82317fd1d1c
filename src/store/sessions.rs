//! Sessions and their refresh tokens: login, rotation (batched on SQLite), revocation and
//! the batched lookups behind Bearer authentication.

use sea_orm::sea_query::{Cond, Expr, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter,
};
use uuid::Uuid;

use super::audit::{recorded_ip, recorded_user_agent};
use super::entities::{refresh_tokens, sessions, users};
use super::passwords::{PasswordSwap, swap_password_hash};
use super::{RefreshTokenRow, Result, SessionRow, Store, UnitOfWork, millis};
use crate::domain::events::{EndCause, Event, EventType};
use crate::domain::types::{
    Actor, AuditEntry, AuditEvent, NewRefreshToken, RefreshToken, Session, Subject, UnixMillis,
    User,
};

/// Who `/me` asks about: a session, its user, and the time it must still be live at.
pub(super) type SessionUserQuery = (Uuid, Uuid, UnixMillis);

impl Store {
    /// Starts a session with its first refresh token, and stores the password hash of
    /// `password` (the checked one, or its upgrade). One transaction; nothing happens
    /// (`None`) if the password changed, or the account went or was disabled, since it
    /// was checked. Returns what the access token states, read in the transaction.
    pub async fn start_session(
        &self,
        session: &Session,
        token: NewRefreshToken,
        password: PasswordSwap<'_>,
        audit: &AuditEntry<'_>,
    ) -> Result<Option<Subject>> {
        let mut work = self.begin().await?;
        if !swap_password_hash(work.db(), password).await? {
            return Ok(None);
        }
        // Read after the swap locked the row: a role change that committed meanwhile
        // is in this token.
        let Some(user) = users::Entity::find_by_id(session.user_id)
            .one(work.db())
            .await?
        else {
            return Ok(None);
        };
        let now = session.created_at;
        sessions::Entity::insert(sessions::ActiveModel {
            id: Set(session.id),
            user_id: Set(session.user_id),
            created_at: Set(session.created_at.millis()),
            expires_at: Set(session.expires_at.millis()),
            refreshed_at: Set(session.refreshed_at.map(UnixMillis::millis)),
            revoked_at: Set(session.revoked_at.map(UnixMillis::millis)),
            client_ip: Set(recorded_ip(&session.client)),
            user_agent: Set(recorded_user_agent(&session.client)),
        })
        .exec_without_returning(work.db())
        .await?;
        insert_refresh_token(work.db(), session.id, token, now).await?;
        work.emit(EventType::SessionCreated, || {
            Event::session_created(session.id, session.user_id, &session.client)
        });
        work.commit(Some(audit)).await?;
        Ok(Some(User::from(user).subject()))
    }

    /// The refresh token with this hash and its session.
    pub async fn find_refresh_token(&self, hash: &[u8]) -> Result<Option<(RefreshToken, Session)>> {
        let found = refresh_tokens::Entity::find()
            .filter(refresh_tokens::Column::TokenHash.eq(hash.to_vec()))
            .find_also_related(sessions::Entity)
            .one(&self.db)
            .await?;
        Ok(found.and_then(|(token, session)| Some((token.into(), session?.into()))))
    }

    pub async fn find_refresh_token_by_id(&self, id: Uuid) -> Result<Option<RefreshToken>> {
        Ok(refresh_tokens::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(RefreshToken::from))
    }

    /// Records a refresh on a live session; false if it has been revoked or has expired.
    pub async fn touch_live_session(
        &self,
        session_id: Uuid,
        client: &Actor,
        now: UnixMillis,
    ) -> Result<bool> {
        let work = self.begin().await?;
        let touched = sessions::Entity::update_many()
            .col_expr(sessions::Column::RefreshedAt, Expr::value(now))
            .col_expr(sessions::Column::ClientIp, Expr::value(recorded_ip(client)))
            .col_expr(
                sessions::Column::UserAgent,
                Expr::value(recorded_user_agent(client)),
            )
            .filter(sessions::Column::Id.eq(session_id))
            .filter(sessions::Column::RevokedAt.is_null())
            .filter(sessions::Column::ExpiresAt.gt(now))
            .exec(work.db())
            .await?;
        work.commit(None).await?;
        Ok(touched.rows_affected == 1)
    }

    /// Ends one session and records why. Returns whether it was live (nothing is
    /// recorded if it was not).
    pub async fn revoke_session(&self, session_id: Uuid, audit: &AuditEntry<'_>) -> Result<bool> {
        let mut work = self.begin().await?;
        let which = Cond::all().add(sessions::Column::Id.eq(session_id));
        let ended = end_sessions(&mut work, which, audit).await?;
        if audit.event == AuditEvent::ReuseDetected
            && let Some(&(session_id, user_id)) = ended.first()
        {
            work.emit(EventType::RefreshReuseDetected, || {
                Event::refresh_reuse_detected(session_id, user_id, audit.actor)
            });
        }
        let live = ended.len() == 1;
        work.commit(live.then_some(audit)).await?;
        Ok(live)
    }

    /// Ends every session of a user (`except` the caller's, if given) and records it.
    /// Returns how many were live.
    pub async fn revoke_user_sessions(
        &self,
        user_id: Uuid,
        except: Option<Uuid>,
        audit: &AuditEntry<'_>,
    ) -> Result<u64> {
        let mut work = self.begin().await?;
        let ended = end_user_sessions(&mut work, user_id, except, audit).await?;
        let audit = audit.clone().detail(format!("{ended} sessions ended"));
        work.commit(Some(&audit)).await?;
        Ok(ended)
    }

    /// Ends one live session of a user and records it; false if the user has no such
    /// live session.
    pub async fn revoke_live_session_of(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        audit: &AuditEntry<'_>,
    ) -> Result<bool> {
        let mut work = self.begin().await?;
        let which = Cond::all()
            .add(sessions::Column::Id.eq(session_id))
            .add(sessions::Column::UserId.eq(user_id))
            .add(sessions::Column::ExpiresAt.gt(audit.at));
        let live = end_sessions(&mut work, which, audit).await?.len() == 1;
        work.commit(live.then_some(audit)).await?;
        Ok(live)
    }

    /// A user's sessions that are neither revoked nor past their end.
    pub async fn live_sessions_of(&self, user_id: Uuid, now: UnixMillis) -> Result<Vec<Session>> {
        Ok(sessions::Entity::find()
            .filter(sessions::Column::UserId.eq(user_id))
            .filter(sessions::Column::RevokedAt.is_null())
            .filter(sessions::Column::ExpiresAt.gt(now))
            .all(&self.db)
            .await?
            .into_iter()
            .map(Session::from)
            .collect())
    }

    /// The user of a session that is neither revoked nor past its end. Concurrent calls
    /// share one query.
    pub async fn live_session_user(
        &self,
        session_id: Uuid,
        user_id: Uuid,
        now: UnixMillis,
    ) -> Result<Option<User>> {
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
) -> Result<Vec<Option<User>>, DbErr> {
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
                        && session.expires_at > now.millis()
                })
                .and_then(|(_, user)| user.clone().filter(|user| !user.disabled).map(User::from))
        })
        .collect())
}

impl From<SessionRow> for Session {
    fn from(row: SessionRow) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            created_at: UnixMillis::from_millis(row.created_at),
            expires_at: UnixMillis::from_millis(row.expires_at),
            refreshed_at: millis(row.refreshed_at),
            revoked_at: millis(row.revoked_at),
            client: Actor {
                client_ip: row.client_ip,
                user_agent: row.user_agent,
                name: None,
            },
        }
    }
}

impl From<RefreshTokenRow> for RefreshToken {
    fn from(row: RefreshTokenRow) -> Self {
        Self {
            id: row.id,
            session_id: row.session_id,
            token_hash: row.token_hash,
            expires_at: UnixMillis::from_millis(row.expires_at),
            spent_at: millis(row.spent_at),
            successor_id: row.successor_id,
            sealed_successor: row.sealed_successor,
        }
    }
}

async fn insert_refresh_token(
    txn: &impl sea_orm::ConnectionTrait,
    session_id: Uuid,
    token: NewRefreshToken,
    now: UnixMillis,
) -> Result<(), DbErr> {
    refresh_tokens::Entity::insert(refresh_tokens::ActiveModel {
        id: Set(token.id),
        session_id: Set(session_id),
        token_hash: Set(token.hash),
        created_at: Set(now.millis()),
        expires_at: Set(token.expires_at.millis()),
        spent_at: Set(None),
        successor_id: Set(None),
        sealed_successor: Set(None),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Ends every live session of a user (but `except`) as `audit` records. Returns how
/// many ended.
pub(super) async fn end_user_sessions(
    work: &mut UnitOfWork<'_>,
    user_id: Uuid,
    except: Option<Uuid>,
    audit: &AuditEntry<'_>,
) -> Result<u64, DbErr> {
    let mut which = Cond::all()
        .add(sessions::Column::UserId.eq(user_id))
        .add(sessions::Column::ExpiresAt.gt(audit.at));
    if let Some(kept) = except {
        which = which.add(sessions::Column::Id.ne(kept));
    }
    Ok(end_sessions(work, which, audit).await?.len() as u64)
}

/// Ends the sessions `which` selects that have not ended yet, as `audit` records, with a
/// `session.ended` event for each. Returns them (id, user).
pub(super) async fn end_sessions(
    work: &mut UnitOfWork<'_>,
    which: Cond,
    audit: &AuditEntry<'_>,
) -> Result<Vec<(Uuid, Uuid)>, DbErr> {
    let update = Query::update()
        .table(sessions::Entity)
        .value(sessions::Column::RevokedAt, Expr::value(audit.at))
        .cond_where(which.add(sessions::Column::RevokedAt.is_null()))
        .returning(Query::returning().columns([sessions::Column::Id, sessions::Column::UserId]))
        .to_owned();
    let ended = work
        .db()
        .query_all(&update)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("", "id")?, row.try_get("", "user_id")?)))
        .collect::<Result<Vec<(Uuid, Uuid)>, DbErr>>()?;
    let cause = EndCause::of(audit);
    for &(session_id, user_id) in &ended {
        work.emit(EventType::SessionEnded, || {
            Event::session_ended(session_id, user_id, cause)
        });
    }
    Ok(ended)
}
