//! Signing keys get a lifecycle (when a key starts signing, when it was revoked) and
//! their private halves move to a sealed column: `private_key_pem` is emptied by the
//! first start that has a master key, which seals each key into `sealed_private_key`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    SealedPrivateKey,
    ActivatesAt,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        for column in [
            text_null(SigningKeys::SealedPrivateKey),
            big_integer_null(SigningKeys::ActivatesAt),
            big_integer_null(SigningKeys::RevokedAt),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(SigningKeys::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            SigningKeys::SealedPrivateKey,
            SigningKeys::ActivatesAt,
            SigningKeys::RevokedAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(SigningKeys::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
