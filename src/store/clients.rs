//! Service clients of the client-credentials grant.

use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::entities::clients;
use super::{Result, Store};
use crate::domain::types::{AuditEntry, UnixMillis};

/// A client as stored (its secret only as a hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub client_id: String,
    pub secret_hash: Vec<u8>,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: UnixMillis,
}

impl From<clients::Model> for ClientRecord {
    fn from(row: clients::Model) -> Self {
        Self {
            client_id: row.client_id,
            secret_hash: row.secret_hash,
            name: row.name,
            scopes: row.scopes.split_whitespace().map(str::to_owned).collect(),
            created_at: UnixMillis::from_millis(row.created_at),
        }
    }
}

impl Store {
    /// Inserts a client (and records who made it, when an admin did).
    pub async fn insert_client(
        &self,
        client: &ClientRecord,
        audit: Option<&AuditEntry<'_>>,
    ) -> Result<()> {
        let work = self.begin().await?;
        clients::Entity::insert(clients::ActiveModel {
            client_id: Set(client.client_id.clone()),
            secret_hash: Set(client.secret_hash.clone()),
            name: Set(client.name.clone()),
            scopes: Set(client.scopes.join(" ")),
            created_at: Set(client.created_at.millis()),
        })
        .exec_without_returning(work.db())
        .await?;
        work.commit(audit).await?;
        Ok(())
    }

    /// Every client, oldest first.
    pub async fn clients(&self) -> Result<Vec<ClientRecord>> {
        Ok(clients::Entity::find()
            .order_by_asc(clients::Column::CreatedAt)
            .all(&self.db)
            .await?
            .into_iter()
            .map(ClientRecord::from)
            .collect())
    }

    /// Read at every request, so a deleted client is refused on every instance at once.
    /// Concurrent lookups share one query.
    pub async fn find_client(&self, client_id: &str) -> Result<Option<ClientRecord>> {
        Ok(self.client_lookups.submit(client_id.to_owned()).await?)
    }

    /// Deletes a client; false if there was none.
    pub async fn delete_client(
        &self,
        client_id: &str,
        audit: Option<&AuditEntry<'_>>,
    ) -> Result<bool> {
        let work = self.begin().await?;
        let deleted = clients::Entity::delete_many()
            .filter(clients::Column::ClientId.eq(client_id))
            .exec(work.db())
            .await?
            .rows_affected;
        work.commit(audit.filter(|_| deleted == 1)).await?;
        Ok(deleted == 1)
    }
}

/// One answer per id, one statement for the whole batch.
pub(super) async fn clients_by_id(
    db: &sea_orm::DatabaseConnection,
    ids: &[String],
) -> Result<Vec<Option<ClientRecord>>, sea_orm::DbErr> {
    let found = clients::Entity::find()
        .filter(clients::Column::ClientId.is_in(ids.iter().cloned()))
        .all(db)
        .await?;
    Ok(ids
        .iter()
        .map(|id| {
            found
                .iter()
                .find(|row| row.client_id == *id)
                .cloned()
                .map(ClientRecord::from)
        })
        .collect())
}
