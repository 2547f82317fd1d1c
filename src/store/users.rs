//! Accounts.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use sea_orm::sea_query::Expr;
use uuid::Uuid;

use super::passwords::{PasswordSwap, swap_password_hash};
use super::sessions::end_user_sessions;

use sea_orm::sea_query::Query;

use super::entities::{refresh_tokens, sessions, users};
use super::{Result, Store, UnitOfWork, UserRow};
use crate::domain::events::{EndCause, Event, EventType};
use crate::domain::types::{Account, AuditEntry, UnixMillis, User};

impl Store {
    pub async fn find_account_by_email(&self, email: &str) -> Result<Option<Account>> {
        Ok(users::Entity::find()
            .filter(users::Column::Email.eq(email))
            .one(&self.db)
            .await?
            .map(Account::from))
    }

    pub async fn find_user(&self, id: Uuid) -> Result<Option<User>> {
        Ok(users::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(User::from))
    }
}

/// What became of a password change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordChange {
    /// Stored; this many other sessions ended.
    Changed { sessions_ended: u64 },
    /// The password changed (or the account went) since it was checked.
    Stale,
    /// The caller's own session ended since its token was checked.
    CallerSessionEnded,
}

impl Store {
    /// Stores a new password hash and ends every session of the user but `kept`, in one
    /// transaction; nothing changes unless the checked hash is still the stored one and
    /// `kept` is still live.
    pub async fn change_password(
        &self,
        swap: PasswordSwap<'_>,
        kept: Uuid,
        audit: &AuditEntry<'_>,
    ) -> Result<PasswordChange> {
        let mut work = self.begin().await?;
        if !swap_password_hash(work.db(), swap).await? {
            return Ok(PasswordChange::Stale);
        }
        let kept_is_live = sessions::Entity::update_many()
            .col_expr(
                sessions::Column::RevokedAt,
                Expr::col(sessions::Column::RevokedAt),
            )
            .filter(sessions::Column::Id.eq(kept))
            .filter(sessions::Column::UserId.eq(swap.user_id))
            .filter(sessions::Column::RevokedAt.is_null())
            .filter(sessions::Column::ExpiresAt.gt(audit.at))
            .exec(work.db())
            .await?
            .rows_affected
            == 1;
        if !kept_is_live {
            return Ok(PasswordChange::CallerSessionEnded);
        }
        let sessions_ended = end_user_sessions(&mut work, swap.user_id, Some(kept), audit).await?;
        work.emit_user_updated(swap.user_id, &["password"]).await?;
        work.commit(Some(audit)).await?;
        Ok(PasswordChange::Changed { sessions_ended })
    }

    /// Deletes a user, its sessions and refresh tokens, unless the checked password hash
    /// is no longer the stored one (then false). The audit trail keeps its events.
    pub async fn delete_user(
        &self,
        checked: PasswordSwap<'_>,
        audit: &AuditEntry<'_>,
    ) -> Result<bool> {
        let mut work = self.begin().await?;
        if !swap_password_hash(work.db(), checked).await? {
            return Ok(false);
        }
        delete_account_rows(&mut work, checked.user_id, audit).await?;
        work.commit(Some(audit)).await?;
        Ok(true)
    }
}

/// Deletes a user with its refresh tokens, and its sessions and account tokens by
/// cascade, keeping its sessions in the revocation feed. Returns whether there was one.
pub(super) async fn delete_account_rows(
    work: &mut UnitOfWork<'_>,
    user_id: Uuid,
    audit: &AuditEntry<'_>,
) -> Result<bool, sea_orm::DbErr> {
    let at = audit.at;
    if work.wants(EventType::SessionEnded) {
        let live: Vec<Uuid> = sessions::Entity::find()
            .select_only()
            .column(sessions::Column::Id)
            .filter(sessions::Column::UserId.eq(user_id))
            .filter(sessions::Column::RevokedAt.is_null())
            .filter(sessions::Column::ExpiresAt.gt(at))
            .into_tuple()
            .all(work.db())
            .await?;
        let cause = EndCause::of(audit);
        for session_id in live {
            work.emit(EventType::SessionEnded, || {
                Event::session_ended(session_id, user_id, cause)
            });
        }
    }
    let db = work.db();
    // Tokens before sessions, the order a rotation locks them in (no deadlock with a
    // refresh of the same session on PostgreSQL). A batch of rotations holding tokens of
    // two of this user's sessions can still deadlock with it; PostgreSQL then aborts one
    // of the two after `deadlock_timeout` (a failed batch reruns its rotations alone).
    let sessions_of_user = Query::select()
        .column(sessions::Column::Id)
        .from(sessions::Entity)
        .and_where(sessions::Column::UserId.eq(user_id))
        .to_owned();
    super::revocations::remember_sessions_of(db, user_id, at).await?;
    refresh_tokens::Entity::delete_many()
        .filter(refresh_tokens::Column::SessionId.in_subquery(sessions_of_user))
        .exec(db)
        .await?;
    let deleted = users::Entity::delete_by_id(user_id)
        .exec(db)
        .await?
        .rows_affected
        == 1;
    if deleted {
        work.emit(EventType::UserDeleted, || Event::user_deleted(user_id));
    }
    Ok(deleted)
}

impl From<UserRow> for Account {
    fn from(row: UserRow) -> Self {
        Self {
            user: User {
                id: row.id,
                email: row.email,
                created_at: UnixMillis::from_millis(row.created_at),
                email_verified: row.email_verified,
                roles: split_roles(&row.roles),
                disabled: row.disabled,
                last_login_at: super::millis(row.last_login_at),
            },
            password_hash: row.password_hash,
        }
    }
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Account::from(row).user
    }
}

/// The stored form of an account's roles: space-separated, as they are sorted.
pub(super) fn joined_roles(roles: &[String]) -> String {
    roles.join(" ")
}

pub(super) fn split_roles(stored: &str) -> Vec<String> {
    stored.split_whitespace().map(str::to_owned).collect()
}
