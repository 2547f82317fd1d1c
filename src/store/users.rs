//! Accounts.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use uuid::Uuid;

use super::sessions::revoke_user_sessions;

use super::entities::users;
use super::{Result, Store, UserRow};
use crate::domain::types::{Account, AuditEntry, UnixMillis, User};

impl Store {
    pub async fn insert_user(&self, account: &Account, audit: &AuditEntry<'_>) -> Result<()> {
        let work = self.begin().await?;
        users::Entity::insert(users::ActiveModel {
            id: Set(account.user.id),
            email: Set(account.user.email.clone()),
            password_hash: Set(account.password_hash.clone()),
            created_at: Set(account.user.created_at.millis()),
        })
        .exec_without_returning(work.db())
        .await?;
        work.commit(Some(audit)).await?;
        Ok(())
    }

    pub async fn find_account_by_email(&self, email: &str) -> Result<Option<Account>> {
        Ok(users::Entity::find()
            .filter(users::Column::Email.eq(email))
            .one(&self.db)
            .await?
            .map(Account::from))
    }
}

impl Store {
    /// Stores a new password hash and ends every session of the user but `kept`, in one
    /// transaction. Returns how many sessions ended.
    pub async fn change_password(
        &self,
        user_id: Uuid,
        password_hash: &str,
        kept: Uuid,
        audit: &AuditEntry<'_>,
    ) -> Result<u64> {
        let work = self.begin().await?;
        users::Entity::update_many()
            .col_expr(users::Column::PasswordHash, Expr::value(password_hash))
            .filter(users::Column::Id.eq(user_id))
            .exec(work.db())
            .await?;
        let ended = revoke_user_sessions(work.db(), user_id, Some(kept), audit.at).await?;
        work.commit(Some(audit)).await?;
        Ok(ended)
    }

    /// Deletes a user; its sessions and refresh tokens go by cascade. The audit trail
    /// keeps its events.
    pub async fn delete_user(&self, user_id: Uuid, audit: &AuditEntry<'_>) -> Result<()> {
        let work = self.begin().await?;
        users::Entity::delete_by_id(user_id).exec(work.db()).await?;
        work.commit(Some(audit)).await?;
        Ok(())
    }
}

impl From<UserRow> for Account {
    fn from(row: UserRow) -> Self {
        Self {
            user: User {
                id: row.id,
                email: row.email,
                created_at: UnixMillis::from_millis(row.created_at),
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
