//! authgate: a JWT authentication service.
//!
//! Layout: [`api`] (HTTP) → [`domain`] (use cases) → [`store`] (sea-orm), with
//! [`crypto`] for hashing and keys and [`config`] for the one typed configuration.
//! Access-token validation lives in the `authgate-verify` crate, shared with
//! downstream services.

#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod api;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod metrics;
pub mod startup;
pub mod store;
pub mod throttle;

use config::{Cli, Command, ConfigCommand, KeysCommand};

/// Runs one command of the CLI.
pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            startup::Application::build(&config)
                .await?
                .run_until_stopped()
                .await
        }
        Command::Migrate => {
            let store = startup::connect(&config.database_url).await?;
            store.migrate().await?;
            Ok(())
        }
        Command::Openapi => {
            print!("{}", api::spec_yaml());
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Rotate,
        } => {
            let store = startup::connect(&config.database_url).await?;
            store.migrate().await?;
            let kid =
                domain::keys::KeyRing::rotate(&store, config.signing_key_file.is_some()).await?;
            println!("{kid}");
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::List,
        } => {
            let store = startup::connect(&config.database_url).await?;
            store.migrate().await?;
            print!("{}", domain::keys::describe_keys(&store, &config).await?);
            Ok(())
        }
        Command::Cleanup => {
            let store = startup::connect(&config.database_url).await?;
            store.migrate().await?;
            let deleted = domain::cleanup(&store).await?;
            println!("deleted {deleted} rows");
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            println!("{config:#?}");
            Ok(())
        }
    }
}
