//! Password reset and email verification: whether an account's email is verified, the
//! single-use tokens sent to it, and the outbox their messages wait in until delivered.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    EmailVerified,
    /// When a message of each kind was last queued: at most one per account per minute.
    ResetSentAt,
    VerificationSentAt,
}

#[derive(DeriveIden)]
enum AccountTokens {
    Table,
    Id,
    UserId,
    Kind,
    /// The address the token was sent to: a verification token proves only that one.
    Email,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    Kind,
    UserId,
    Email,
    /// The token, sealed under the master key with the row id as associated data.
    SealedToken,
    CreatedAt,
    ExpiresAt,
    DueAt,
    Attempts,
    /// An instance delivering the message holds it until then.
    ClaimedUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        for column in [
            boolean(Users::EmailVerified).default(false).to_owned(),
            big_integer_null(Users::ResetSentAt),
            big_integer_null(Users::VerificationSentAt),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(AccountTokens::Table)
                    .if_not_exists()
                    .col(uuid(AccountTokens::Id).primary_key())
                    .col(uuid(AccountTokens::UserId))
                    .col(string_len(AccountTokens::Kind, 32))
                    .col(string_len(AccountTokens::Email, 254))
                    .col(var_binary_uniq(AccountTokens::TokenHash, 32))
                    .col(big_integer(AccountTokens::CreatedAt))
                    .col(big_integer(AccountTokens::ExpiresAt))
                    .col(big_integer_null(AccountTokens::UsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(AccountTokens::Table, AccountTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_account_tokens_user_id")
                    .table(AccountTokens::Table)
                    .col(AccountTokens::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .if_not_exists()
                    .col(uuid(Outbox::Id).primary_key())
                    .col(string_len(Outbox::Kind, 32))
                    .col(uuid(Outbox::UserId))
                    .col(string_len(Outbox::Email, 254))
                    .col(text(Outbox::SealedToken))
                    .col(big_integer(Outbox::CreatedAt))
                    .col(big_integer(Outbox::ExpiresAt))
                    .col(big_integer(Outbox::DueAt))
                    .col(integer(Outbox::Attempts).default(0))
                    .col(big_integer(Outbox::ClaimedUntil).default(0))
                    // A deleted account's pending messages go with it.
                    .foreign_key(
                        ForeignKey::create()
                            .from(Outbox::Table, Outbox::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("idx_outbox_due_at", Outbox::DueAt),
            ("idx_outbox_user_id", Outbox::UserId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .if_not_exists()
                        .name(name)
                        .table(Outbox::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Outbox::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AccountTokens::Table).to_owned())
            .await?;
        for column in [
            Users::EmailVerified,
            Users::ResetSentAt,
            Users::VerificationSentAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
