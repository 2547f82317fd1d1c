//! The keys of the admin API, stored as their SHA-256.

use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::entities::admin_keys;
use super::{Result, Store};
use crate::domain::types::UnixMillis;

/// An admin key as listed (never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminKeyInfo {
    pub name: String,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
}

impl Store {
    pub async fn insert_admin_key(&self, name: &str, hash: &[u8], at: UnixMillis) -> Result<()> {
        let work = self.begin().await?;
        admin_keys::Entity::insert(admin_keys::ActiveModel {
            id: Set(Uuid::new_v4()),
            name: Set(name.to_owned()),
            key_hash: Set(hash.to_vec()),
            created_at: Set(at.millis()),
            revoked_at: Set(None),
        })
        .exec_without_returning(work.db())
        .await?;
        work.commit(None).await?;
        Ok(())
    }

    pub async fn admin_keys(&self) -> Result<Vec<AdminKeyInfo>> {
        Ok(admin_keys::Entity::find()
            .order_by_asc(admin_keys::Column::CreatedAt)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| AdminKeyInfo {
                name: row.name,
                created_at: UnixMillis::from_millis(row.created_at),
                revoked_at: super::millis(row.revoked_at),
            })
            .collect())
    }

    /// Revokes the live key of this name; false if there is none.
    pub async fn revoke_admin_key(&self, name: &str, at: UnixMillis) -> Result<bool> {
        let work = self.begin().await?;
        let revoked = admin_keys::Entity::update_many()
            .col_expr(admin_keys::Column::RevokedAt, Expr::value(at))
            .filter(admin_keys::Column::Name.eq(name))
            .filter(admin_keys::Column::RevokedAt.is_null())
            .exec(work.db())
            .await?
            .rows_affected;
        work.commit(None).await?;
        Ok(revoked == 1)
    }

    /// The name of the live admin key with this hash. Read at every request, so a
    /// revocation holds on every instance at once.
    pub async fn admin_key_name(&self, hash: &[u8]) -> Result<Option<String>> {
        Ok(admin_keys::Entity::find()
            .filter(admin_keys::Column::KeyHash.eq(hash.to_vec()))
            .filter(admin_keys::Column::RevokedAt.is_null())
            .one(&self.db)
            .await?
            .map(|row| row.name))
    }
}
