//! Event webhooks: each change writes one row per (event, subscriber) in its own
//! transaction; the deliverer sends them and keeps their outcome for the admin API.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum EventDeliveries {
    Table,
    Id,
    EventId,
    EventType,
    Subscriber,
    Body,
    Status,
    Attempts,
    CreatedAt,
    NextAttemptAt,
    ClaimedUntil,
    LastAttemptAt,
    LastStatus,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EventDeliveries::Table)
                    .if_not_exists()
                    .col(uuid(EventDeliveries::Id).primary_key())
                    .col(uuid(EventDeliveries::EventId))
                    .col(string_len(EventDeliveries::EventType, 64))
                    .col(text(EventDeliveries::Subscriber))
                    .col(text(EventDeliveries::Body))
                    .col(string_len(EventDeliveries::Status, 16))
                    .col(integer(EventDeliveries::Attempts))
                    .col(big_integer(EventDeliveries::CreatedAt))
                    .col(big_integer(EventDeliveries::NextAttemptAt))
                    .col(big_integer(EventDeliveries::ClaimedUntil))
                    .col(big_integer_null(EventDeliveries::LastAttemptAt))
                    .col(integer_null(EventDeliveries::LastStatus))
                    .to_owned(),
            )
            .await?;
        // The deliverer's claim: pending rows by due time.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_event_deliveries_due")
                    .table(EventDeliveries::Table)
                    .col(EventDeliveries::Status)
                    .col(EventDeliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        // The admin's listing by status, in id (time) order.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_event_deliveries_status_id")
                    .table(EventDeliveries::Table)
                    .col(EventDeliveries::Status)
                    .col(EventDeliveries::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(EventDeliveries::Table).to_owned())
            .await
    }
}
