//! Accounts.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::entities::users;
use super::{Audit, Result, Store, UserRow};

impl Store {
    pub async fn insert_user(&self, user: UserRow, audit: &Audit<'_>) -> Result<()> {
        let work = self.begin().await?;
        users::Entity::insert(users::ActiveModel::from(user))
            .exec_without_returning(work.db())
            .await?;
        work.commit(Some(audit)).await?;
        Ok(())
    }

    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        Ok(users::Entity::find()
            .filter(users::Column::Email.eq(email))
            .one(&self.db)
            .await?)
    }
}
