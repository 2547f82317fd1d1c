//! The commands besides `serve`, and what only they need: the audit trail and key list
//! as text.

use std::time::Duration;

use crate::config::{
    AdminKeysCommand, Cli, ClientsCommand, Command, Config, ConfigCommand, KeysCommand,
};
use crate::domain::keys::{self, KeyState};
use crate::domain::{self, UnixMillis, normalize_email};
use crate::domain::{admin_keys, clients};
use crate::store::{Store, StoreError};
use crate::{api, startup};

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
        Command::Migrate => open_store(&config).await.map(drop),
        Command::Openapi { admin } => {
            print!(
                "{}",
                match admin {
                    true => api::admin::spec_yaml(),
                    false => api::spec_yaml(),
                }
            );
            Ok(())
        }
        Command::AdminKeys { command } => {
            let store = open_store(&config).await?;
            match command {
                AdminKeysCommand::Create { name } => {
                    println!("{}", admin_keys::create_admin_key(&store, &name).await?);
                }
                AdminKeysCommand::List => {
                    for key in admin_keys::admin_keys(&store).await? {
                        let state = match key.revoked_at {
                            Some(_) => "revoked",
                            None => "active",
                        };
                        let revoked = key.revoked_at.map(UnixMillis::rfc3339).unwrap_or_default();
                        println!("{}\t{state}\t{}\t{revoked}", key.name, key.created_at);
                    }
                }
                AdminKeysCommand::Revoke { name } => {
                    admin_keys::revoke_admin_key(&store, &name).await?
                }
            }
            Ok(())
        }
        Command::Clients { command } => {
            let store = open_store(&config).await?;
            match command {
                ClientsCommand::Create { name, scopes } => {
                    let made = clients::create_client(&store, &name, &[scopes], None).await?;
                    let printed = serde_json::json!({
                        "client_id": made.info.client_id,
                        "client_secret": made.client_secret,
                        "name": made.info.name,
                        "scopes": made.info.scopes,
                    });
                    println!("{printed}");
                }
                ClientsCommand::List => {
                    for client in clients::clients(&store).await? {
                        println!(
                            "{}\t{}\t{}\t{}",
                            client.client_id,
                            client.name.escape_debug(),
                            client.scopes.join(" "),
                            client.created_at.rfc3339()
                        );
                    }
                }
                ClientsCommand::Delete { client_id } => {
                    if !clients::delete_client(&store, &client_id, None).await? {
                        anyhow::bail!("no client has the id {client_id:?}");
                    }
                }
            }
            Ok(())
        }
        Command::Keys { command } => {
            let store = open_store(&config).await?;
            match command {
                KeysCommand::Rotate { now } => {
                    config.validate().map_err(|e| anyhow::anyhow!(e))?;
                    if config.signing_key_file.is_some() {
                        return Err(keys::KeyRingError::KeyFromFile.into());
                    }
                    let master = startup::required_master_keys(&config)?;
                    let delay = if now { 0 } else { config.key_activation_delay };
                    let kid = keys::rotate(&store, &master, Duration::from_secs(delay)).await?;
                    println!("{kid}");
                }
                KeysCommand::Revoke { kid } => {
                    keys::revoke(&store, &kid, config.signing_key_file.is_some()).await?;
                }
                KeysCommand::List => print!("{}", describe_keys(&store).await?),
                KeysCommand::Rewrap => {
                    let master = startup::required_master_keys(&config)?;
                    let (keys, tokens) = keys::rewrap(&store, &master).await?;
                    println!("re-encrypted {keys} keys and {tokens} pending message tokens");
                }
            }
            Ok(())
        }
        Command::Cleanup => {
            let store = open_store(&config).await?;
            let deleted =
                domain::cleanup(&store, config.access_ttl, config.audit_retention).await?;
            println!("deleted {deleted} rows");
            Ok(())
        }
        Command::Audit {
            user,
            since,
            limit,
            json,
        } => {
            let store = open_store(&config).await?;
            let since = since.as_deref().map(parse_since).transpose()?;
            print!(
                "{}",
                audit_trail(&store, user.as_deref(), since, limit, json).await?
            );
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            config.validate().map_err(|e| anyhow::anyhow!(e))?;
            // As the TOML file would hold it; secrets print themselves redacted.
            print!("{}", toml::to_string(&config)?);
            Ok(())
        }
    }
}

/// `--since`: RFC 3339, or an age such as `90s`, `30m`, `12h`, `7d`.
fn parse_since(text: &str) -> anyhow::Result<UnixMillis> {
    if let Some(at) = UnixMillis::parse_rfc3339(text) {
        return Ok(at);
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
    match number.parse::<u64>() {
        Ok(n) if seconds > 0 => Ok(UnixMillis::now().minus_secs(n.saturating_mul(seconds))),
        _ => anyhow::bail!("--since: {text:?} is neither RFC 3339 nor an age like 12h"),
    }
}

/// The database of `config`, migrated up.
async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = startup::connect(&config.database_url).await?;
    store.migrate().await?;
    Ok(store)
}

/// One line per stored key: kid, state, created, activation, retirement and
/// revocation times (RFC 3339).
async fn describe_keys(store: &Store) -> Result<String, StoreError> {
    let rows = store.signing_keys().await?;
    let now = UnixMillis::now();
    let time = |at: Option<UnixMillis>| at.map_or_else(|| "-".to_owned(), UnixMillis::rfc3339);
    let mut out = String::from("kid\tstate\tcreated_at\tactivates_at\tretired_at\trevoked_at\n");
    for row in &rows {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            row.kid,
            KeyState::of(row, now).as_str(),
            row.created_at.rfc3339(),
            keys::activates_at(row).rfc3339(),
            time(row.retired_at),
            time(row.revoked_at),
        ));
    }
    Ok(out)
}

/// The audit trail for `authgate audit`: one event per line, tab-separated with every
/// control character of the stored text escaped, or as JSON lines.
async fn audit_trail(
    store: &Store,
    email: Option<&str>,
    since: Option<UnixMillis>,
    limit: u64,
    json: bool,
) -> Result<String, StoreError> {
    let user_id = match email {
        Some(email) => match store.find_account_by_email(&normalize_email(email)).await? {
            Some(account) => Some(account.user.id),
            None => return Ok(String::new()),
        },
        None => None,
    };
    let mut out = String::new();
    for event in store.audit_events(user_id, since, limit).await? {
        let at = event.at.rfc3339();
        let ids = [event.user_id, event.session_id].map(|id| id.map(|id| id.to_string()));
        let [user_id, session_id] = ids;
        if json {
            let line = serde_json::json!({
                "at": at,
                "event": event.event,
                "user_id": user_id,
                "session_id": session_id,
                "client_ip": event.client_ip,
                "user_agent": event.user_agent,
                "detail": event.detail,
            });
            out.push_str(&line.to_string());
            out.push('\n');
            continue;
        }
        let fields = [
            Some(at),
            Some(event.event),
            user_id,
            session_id,
            event.client_ip,
            event.user_agent,
            event.detail,
        ];
        let fields: Vec<String> = fields
            .iter()
            .map(|field| {
                field
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), escape_control)
            })
            .collect();
        out.push_str(&fields.join("\t"));
        out.push('\n');
    }
    Ok(out)
}

/// Stored text as one field of one line: control characters (a tab or newline a client
/// put in its user agent, a terminal escape) and backslashes escaped.
fn escape_control(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\t' => escaped.push_str("\\t"),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            c if c.is_control() => escaped.push_str(&c.escape_unicode().to_string()),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_fields_escape_control_characters() {
        assert_eq!(
            escape_control("curl\t1\nevil\u{1b}[2J\\"),
            "curl\\t1\\nevil\\u{1b}[2J\\\\"
        );
    }
}
