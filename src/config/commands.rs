//! The subcommands: what authgate is asked to do (`serve` when none is given).

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum AdminKeysCommand {
    /// Make a key named NAME and print it, once, as the only line on stdout.
    Create {
        /// 1 to 64 of A-Z a-z 0-9 . _ - (recorded as the actor of what the key does).
        name: String,
    },
    /// Each key's name, state and dates.
    List,
    /// Revoke the key named NAME (every instance refuses it within 5 seconds).
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Make a service client and print `{client_id, client_secret, name, scopes}` as one
    /// JSON object (the secret is shown only here).
    Create {
        /// What the client is (1 to 64 characters; the actor of what it does).
        name: String,
        /// The scopes it may ask for, space-separated (`authgate:admin` opens the admin API).
        #[arg(long, default_value = "")]
        scopes: String,
    },
    /// Each client's id, name, scopes and creation time (never a secret).
    List,
    /// Delete the client with this id: its tokens stop working with authgate at once.
    Delete {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Migrate the database up, then serve until SIGINT or SIGTERM (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI 3 spec as YAML (with `--admin`: the admin API's).
    Openapi {
        /// The admin API's spec (`openapi-admin.yaml`).
        #[arg(long)]
        admin: bool,
    },
    /// Manage the keys of the admin API.
    AdminKeys {
        #[command(subcommand)]
        command: AdminKeysCommand,
    },
    /// Manage the service clients of the client-credentials grant.
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Manage the access-token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Delete ended sessions and expired refresh tokens now (serve also does this
    /// every few minutes), and print how many rows went.
    Cleanup,
    /// Print the audit trail, oldest first: time, event, user, session, client IP,
    /// user agent, detail (tab-separated, control characters escaped; or `--json`).
    Audit {
        /// Only this user's events.
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        /// Only events from this time on: RFC 3339, or an age like `30m`, `12h`, `7d`.
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 1000)]
        limit: u64,
        /// One JSON object per line instead of tab-separated text.
        #[arg(long)]
        json: bool,
    },
    /// Configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it, secrets redacted.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a signing key: published at once (state `next`), signing once
    /// AUTHGATE_KEY_ACTIVATION_DELAY has passed; the key it replaces stays published
    /// until the tokens it signed have expired. Prints the new key's kid.
    Rotate {
        /// Sign with the new key at once (within the reload interval), e.g. before
        /// revoking a compromised key.
        #[arg(long)]
        now: bool,
    },
    /// Withdraw a key at once (compromise): out of the JWKS and out of signing on every
    /// instance within the reload interval; its tokens are rejected from then on.
    Revoke {
        /// The key's `kid`, as `keys list` shows it. A thumbprint may begin with `-`,
        /// so a leading hyphen is part of the value, not an option.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// List the signing keys with their state (next, signing, retiring, revoked).
    List,
    /// Re-encrypt every stored private key under the first master key.
    Rewrap,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cli;
    use clap::Parser;

    #[test]
    fn a_kid_that_begins_with_a_hyphen_can_be_revoked() {
        let cli = Cli::try_parse_from(["authgate", "keys", "revoke", "-9Xb_q"]).unwrap();
        match cli.command {
            Some(Command::Keys {
                command: KeysCommand::Revoke { kid },
            }) => assert_eq!(kid, "-9Xb_q"),
            other => panic!("parsed as {other:?}"),
        }
    }
}
