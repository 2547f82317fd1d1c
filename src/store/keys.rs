//! Signing keys: public halves, sealed private halves and their lifecycle times.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

use sea_orm::ActiveValue::Set;

use super::entities::signing_keys;
use super::{Result, SigningKeyRow, Store, millis};
use crate::domain::types::{AuditEntry, Secret, StoredSigningKey, UnixMillis};

impl Store {
    /// Signing keys, newest first.
    pub async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>> {
        Ok(signing_keys::Entity::find()
            .order_by_desc(signing_keys::Column::CreatedAt)
            .order_by_desc(signing_keys::Column::Kid)
            .all(&self.db)
            .await?
            .into_iter()
            .map(StoredSigningKey::from)
            .collect())
    }

    /// Adds a key; with `retire_others_at`, every other key that may still sign then
    /// is retired at that time, in the same transaction.
    pub async fn add_signing_key(
        &self,
        key: &StoredSigningKey,
        retire_others_at: Option<UnixMillis>,
        audit: Option<&AuditEntry<'_>>,
    ) -> Result<()> {
        let work = self.begin().await?;
        let kid = key.kid.clone();
        signing_keys::Entity::insert(signing_keys::ActiveModel {
            kid: Set(key.kid.clone()),
            private_key_pem: Set(key.private_key_pem.0.clone()),
            public_key: Set(key.public_key.clone()),
            created_at: Set(key.created_at.millis()),
            retired_at: Set(key.retired_at.map(UnixMillis::millis)),
            sealed_private_key: Set(key.sealed_private_key.clone().map(|sealed| sealed.0)),
            activates_at: Set(key.activates_at.map(UnixMillis::millis)),
            revoked_at: Set(key.revoked_at.map(UnixMillis::millis)),
        })
        .exec_without_returning(work.db())
        .await?;
        if let Some(at) = retire_others_at {
            retire_signing_keys(work.db(), Some(&kid), at).await?;
        }
        work.commit(audit).await?;
        Ok(())
    }

    /// Retires every key that may still sign at `now`.
    pub async fn retire_signing_keys(&self, now: UnixMillis) -> Result<u64> {
        let work = self.begin().await?;
        let retired = retire_signing_keys(work.db(), None, now).await?;
        work.commit(None).await?;
        Ok(retired)
    }

    /// Withdraws a key for good and records it.
    pub async fn revoke_signing_key(&self, kid: &str, audit: &AuditEntry<'_>) -> Result<bool> {
        let work = self.begin().await?;
        let revoked = signing_keys::Entity::update_many()
            .col_expr(signing_keys::Column::RevokedAt, Expr::value(audit.at))
            .filter(signing_keys::Column::Kid.eq(kid))
            .filter(signing_keys::Column::RevokedAt.is_null())
            .exec(work.db())
            .await?
            .rows_affected
            == 1;
        work.commit(revoked.then_some(audit)).await?;
        Ok(revoked)
    }

    /// Erases every private key kept in plain text (a database written before keys were
    /// sealed, served with a key file and no master key).
    pub async fn erase_plaintext_keys(&self) -> Result<u64> {
        let work = self.begin().await?;
        let erased = signing_keys::Entity::update_many()
            .col_expr(signing_keys::Column::PrivateKeyPem, Expr::value(""))
            .filter(signing_keys::Column::PrivateKeyPem.ne(""))
            .exec(work.db())
            .await?
            .rows_affected;
        work.commit(None).await?;
        Ok(erased)
    }

    /// Stores sealed private keys by kid and erases any plaintext copy, in one
    /// transaction.
    pub async fn store_sealed_keys(&self, sealed: &[(String, String)]) -> Result<()> {
        let work = self.begin().await?;
        for (kid, sealed) in sealed {
            signing_keys::Entity::update_many()
                .col_expr(
                    signing_keys::Column::SealedPrivateKey,
                    Expr::value(sealed.clone()),
                )
                .col_expr(signing_keys::Column::PrivateKeyPem, Expr::value(""))
                .filter(signing_keys::Column::Kid.eq(kid.as_str()))
                .exec(work.db())
                .await?;
        }
        work.commit(None).await?;
        Ok(())
    }
}

async fn retire_signing_keys(
    db: &impl sea_orm::ConnectionTrait,
    except: Option<&str>,
    at: UnixMillis,
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

impl From<SigningKeyRow> for StoredSigningKey {
    fn from(row: SigningKeyRow) -> Self {
        Self {
            kid: row.kid,
            private_key_pem: Secret(row.private_key_pem),
            public_key: row.public_key,
            sealed_private_key: row.sealed_private_key.map(Secret),
            created_at: UnixMillis::from_millis(row.created_at),
            activates_at: millis(row.activates_at),
            retired_at: millis(row.retired_at),
            revoked_at: millis(row.revoked_at),
        }
    }
}
