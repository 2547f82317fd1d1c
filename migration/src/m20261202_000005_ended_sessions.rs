//! The revocation feed lists sessions that ended while their access tokens may still be
//! unexpired. Ended sessions keep their row (with `revoked_at`) for that long; the
//! sessions of a deleted account go with it, so their ids are kept here instead.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum EndedSessions {
    Table,
    Sid,
    EndedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EndedSessions::Table)
                    .if_not_exists()
                    .col(uuid(EndedSessions::Sid).primary_key())
                    .col(big_integer(EndedSessions::EndedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_ended_sessions_ended_at")
                    .table(EndedSessions::Table)
                    .col(EndedSessions::EndedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(EndedSessions::Table).to_owned())
            .await
    }
}
