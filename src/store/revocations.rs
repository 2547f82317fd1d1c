//! The revocation feed: sessions that ended from a time on, whether their row is still
//! there (`sessions.revoked_at`) or went with a deleted account (`ended_sessions`).

use sea_orm::sea_query::{Cond, Expr, Func, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::entities::{ended_sessions, sessions};
use super::{Result, Store};
use crate::domain::types::UnixMillis;

impl Store {
    /// The first `limit` sessions that ended at or after `since`, oldest first.
    pub async fn ended_sessions_since(
        &self,
        since: UnixMillis,
        limit: u64,
    ) -> Result<Vec<(Uuid, UnixMillis)>> {
        let revoked: Vec<(Uuid, Option<i64>)> = sessions::Entity::find()
            .select_only()
            .column(sessions::Column::Id)
            .column(sessions::Column::RevokedAt)
            .filter(sessions::Column::RevokedAt.gte(since))
            .order_by_asc(sessions::Column::RevokedAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        let deleted: Vec<(Uuid, i64)> = ended_sessions::Entity::find()
            .select_only()
            .column(ended_sessions::Column::Sid)
            .column(ended_sessions::Column::EndedAt)
            .filter(ended_sessions::Column::EndedAt.gte(since))
            .order_by_asc(ended_sessions::Column::EndedAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut ended: Vec<(Uuid, UnixMillis)> = revoked
            .into_iter()
            .filter_map(|(sid, at)| Some((sid, UnixMillis::from_millis(at?))))
            .chain(
                deleted
                    .into_iter()
                    .map(|(sid, at)| (sid, UnixMillis::from_millis(at))),
            )
            .collect();
        ended.sort_by_key(|&(_, at)| at);
        ended.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(ended)
    }
}

/// Keeps the sessions of a user about to be deleted in the feed (their rows go with the
/// user's by cascade).
pub(super) async fn remember_sessions_of(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    at: UnixMillis,
) -> Result<(), DbErr> {
    // Live ones end now; ended ones keep their time (cleanup forgets them in turn).
    let ended_at = Func::coalesce([Expr::col(sessions::Column::RevokedAt), Expr::value(at)]);
    let live = Query::select()
        .column(sessions::Column::Id)
        .expr(ended_at)
        .from(sessions::Entity)
        .and_where(sessions::Column::UserId.eq(user_id))
        .cond_where(
            Cond::any()
                .add(sessions::Column::RevokedAt.is_not_null())
                .add(sessions::Column::ExpiresAt.gt(at)),
        )
        .to_owned();
    let insert = Query::insert()
        .into_table(ended_sessions::Entity)
        .columns([ended_sessions::Column::Sid, ended_sessions::Column::EndedAt])
        .select_from(live)
        .map_err(|err| DbErr::Custom(err.to_string()))?
        .to_owned();
    db.execute(&insert).await?;
    Ok(())
}
