//! Service clients of the client-credentials grant: an id, the SHA-256 of a secret, a
//! name and the scopes it may ask for.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Clients {
    Table,
    ClientId,
    SecretHash,
    Name,
    Scopes,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Clients::Table)
                    .if_not_exists()
                    .col(string_len(Clients::ClientId, 64).primary_key())
                    .col(binary(Clients::SecretHash))
                    .col(string_len(Clients::Name, 64))
                    .col(text(Clients::Scopes))
                    .col(big_integer(Clients::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Clients::Table).to_owned())
            .await
    }
}
