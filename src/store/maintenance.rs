//! Maintenance: what periodic cleanup deletes or erases.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::entities::{account_tokens, ended_sessions, outbox, refresh_tokens, sessions};
use super::{Result, Store};
use crate::domain::types::UnixMillis;

impl Store {
    /// Erases sealed successors of tokens spent in `[since, cutoff)`; the range keeps
    /// each periodic sweep to the few rows spent since the previous one.
    pub async fn erase_sealed_successors(
        &self,
        since: UnixMillis,
        cutoff: UnixMillis,
    ) -> Result<u64> {
        let work = self.begin().await?;
        let erased = refresh_tokens::Entity::update_many()
            .col_expr(
                refresh_tokens::Column::SealedSuccessor,
                Expr::value(Option::<Vec<u8>>::None),
            )
            .filter(refresh_tokens::Column::SpentAt.gte(since))
            .filter(refresh_tokens::Column::SpentAt.lt(cutoff))
            .filter(refresh_tokens::Column::SealedSuccessor.is_not_null())
            .exec(work.db())
            .await?;
        work.commit(None).await?;
        Ok(erased.rows_affected)
    }

    /// Deletes up to `batch` ended sessions (revoked, or past their end; their refresh
    /// tokens go by cascade) and up to `batch` refresh tokens past their idle expiry.
    /// Each is one statement, so instances running it at once just share the work.
    /// `ended_before`: ended sessions stay (for the revocation feed) until then.
    pub async fn delete_expired(
        &self,
        now: UnixMillis,
        ended_before: UnixMillis,
        batch: u64,
    ) -> Result<u64> {
        let work = self.begin().await?;
        use sea_orm::sea_query::{Cond, Query};
        let ended = Query::select()
            .column(sessions::Column::Id)
            .from(sessions::Entity)
            .cond_where(
                Cond::any()
                    .add(sessions::Column::RevokedAt.lt(ended_before))
                    .add(
                        Cond::all()
                            .add(sessions::Column::ExpiresAt.lte(now))
                            .add(sessions::Column::RevokedAt.is_null()),
                    ),
            )
            .limit(batch)
            .to_owned();
        let sessions = sessions::Entity::delete_many()
            .filter(sessions::Column::Id.in_subquery(ended))
            .exec(work.db())
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
            .exec(work.db())
            .await?
            .rows_affected;
        // Used or expired reset and verification tokens: gone, they are refused the same.
        let finished = Query::select()
            .column(account_tokens::Column::Id)
            .from(account_tokens::Entity)
            .cond_where(
                Cond::any()
                    .add(account_tokens::Column::UsedAt.is_not_null())
                    .add(account_tokens::Column::ExpiresAt.lte(now)),
            )
            .limit(batch)
            .to_owned();
        let account_tokens = account_tokens::Entity::delete_many()
            .filter(account_tokens::Column::Id.in_subquery(finished))
            .exec(work.db())
            .await?
            .rows_affected;
        // Messages whose token expired undelivered (their sealed token with them).
        let undeliverable = Query::select()
            .column(outbox::Column::Id)
            .from(outbox::Entity)
            .and_where(outbox::Column::ExpiresAt.lte(now))
            .limit(batch)
            .to_owned();
        let messages = outbox::Entity::delete_many()
            .filter(outbox::Column::Id.in_subquery(undeliverable))
            .exec(work.db())
            .await?
            .rows_affected;
        let forgotten = Query::select()
            .column(ended_sessions::Column::Sid)
            .from(ended_sessions::Entity)
            .and_where(ended_sessions::Column::EndedAt.lt(ended_before))
            .limit(batch)
            .to_owned();
        let forgotten = ended_sessions::Entity::delete_many()
            .filter(ended_sessions::Column::Sid.in_subquery(forgotten))
            .exec(work.db())
            .await?
            .rows_affected;
        work.commit(None).await?;
        Ok(sessions + tokens + account_tokens + messages + forgotten)
    }
}
