//! Roles, disabled accounts and the admin API: each account's roles (space-separated,
//! sorted, so a token's claims are read with the account's row), whether it is disabled,
//! its latest login; the admin keys (stored as SHA-256); and who (which admin key) made a
//! change recorded in the audit trail.

use sea_orm_migration::sea_orm::DbBackend;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Roles,
    Disabled,
    LastLoginAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Actor,
}

#[derive(DeriveIden)]
enum AdminKeys {
    Table,
    Id,
    Name,
    KeyHash,
    CreatedAt,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        for column in [
            string(Users::Roles).default("").to_owned(),
            boolean(Users::Disabled).default(false).to_owned(),
            big_integer_null(Users::LastLoginAt),
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
            .alter_table(
                Table::alter()
                    .table(AuditEvents::Table)
                    .add_column(string_len_null(AuditEvents::Actor, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AdminKeys::Table)
                    .if_not_exists()
                    .col(uuid(AdminKeys::Id).primary_key())
                    .col(string_len_uniq(AdminKeys::Name, 64))
                    .col(var_binary_uniq(AdminKeys::KeyHash, 32))
                    .col(big_integer(AdminKeys::CreatedAt))
                    .col(big_integer_null(AdminKeys::RevokedAt))
                    .to_owned(),
            )
            .await?;
        // The admin search walks emails in byte order (a prefix is a contiguous range
        // of it); PostgreSQL's default collation may order otherwise.
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    r#"CREATE INDEX IF NOT EXISTS idx_users_email_bytes ON users (email COLLATE "C")"#,
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("DROP INDEX IF EXISTS idx_users_email_bytes")
                .await?;
        }
        manager
            .drop_table(Table::drop().table(AdminKeys::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvents::Table)
                    .drop_column(AuditEvents::Actor)
                    .to_owned(),
            )
            .await?;
        for column in [Users::Roles, Users::Disabled, Users::LastLoginAt] {
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
