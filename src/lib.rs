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
pub mod server;
pub mod startup;
pub mod store;
pub mod throttle;

use std::time::Duration;

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
        Command::Keys { command } => {
            let store = startup::connect(&config.database_url).await?;
            store.migrate().await?;
            match command {
                KeysCommand::Rotate { now } => {
                    config.validate().map_err(|e| anyhow::anyhow!(e))?;
                    if config.signing_key_file.is_some() {
                        return Err(domain::keys::KeyRingError::KeyFromFile.into());
                    }
                    let master = startup::required_master_keys(&config)?;
                    let delay = if now { 0 } else { config.key_activation_delay };
                    let kid =
                        domain::keys::rotate(&store, &master, Duration::from_secs(delay)).await?;
                    println!("{kid}");
                }
                KeysCommand::Revoke { kid } => {
                    domain::keys::revoke(&store, &kid, config.signing_key_file.is_some()).await?;
                }
                KeysCommand::List => print!("{}", domain::keys::describe_keys(&store).await?),
                KeysCommand::Rewrap => {
                    let master = startup::required_master_keys(&config)?;
                    let rewrapped = domain::keys::rewrap(&store, &master).await?;
                    println!("re-encrypted {rewrapped} keys");
                }
            }
            Ok(())
        }
        Command::Cleanup => {
            let store = startup::connect(&config.database_url).await?;
            store.migrate().await?;
            let deleted = domain::cleanup(&store, config.audit_retention).await?;
            println!("deleted {deleted} rows");
            Ok(())
        }
        Command::Audit {
            user,
            since,
            limit,
            json,
        } => {
            let store = startup::connect(&config.database_url).await?;
            store.migrate().await?;
            let since = since.as_deref().map(parse_since).transpose()?;
            print!(
                "{}",
                domain::audit_trail(&store, user.as_deref(), since, limit, json).await?
            );
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            config.validate().map_err(|e| anyhow::anyhow!(e))?;
            println!("{config:#?}");
            Ok(())
        }
    }
}

/// `--since`: RFC 3339, or an age such as `90s`, `30m`, `12h`, `7d` (Unix ms).
fn parse_since(text: &str) -> anyhow::Result<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(at) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok((at.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match number.parse::<i64>() {
        Ok(n) if seconds > 0 => Ok(domain::now_ms() - n * seconds * 1000),
        _ => anyhow::bail!("--since: {text:?} is neither RFC 3339 nor an age like 12h"),
    }
}
