//! Accounts.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use sea_orm::ActiveValue::Set;

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
