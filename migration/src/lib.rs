//! Schema of authgate. `authgate serve` and `authgate migrate` apply it; both databases
//! (SQLite and PostgreSQL) get the same schema from portable sea-query builders.

pub use sea_orm_migration::prelude::*;

mod m20261127_000001_create_schema;
mod m20261202_000001_signing_key_lifecycle;
mod m20261202_000002_session_client;
mod m20261202_000003_account_messages;
mod m20261202_000004_roles_admin;
mod m20261202_000005_ended_sessions;
mod m20261202_000006_event_deliveries;
mod m20261202_000007_clients;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_create_schema::Migration),
            Box::new(m20261202_000001_signing_key_lifecycle::Migration),
            Box::new(m20261202_000002_session_client::Migration),
            Box::new(m20261202_000003_account_messages::Migration),
            Box::new(m20261202_000004_roles_admin::Migration),
            Box::new(m20261202_000005_ended_sessions::Migration),
            Box::new(m20261202_000006_event_deliveries::Migration),
            Box::new(m20261202_000007_clients::Migration),
        ]
    }
}
