//! The TOML configuration file named by `--config` / `AUTHGATE_CONFIG`: its values become
//! the defaults under flags and environment variables.

use clap::Parser;

use super::Cli;

/// Why the command line or the configuration file was refused; one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Cli(#[from] clap::Error),
    #[error("AUTHGATE_CONFIG: {0}")]
    File(String),
}

impl Cli {
    /// Parses flags and environment, with the values of the TOML file named by
    /// `--config` / `AUTHGATE_CONFIG` as defaults under them.
    pub fn parse_with_file<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let first_pass = Self::try_parse_from(&args)?;
        let mut command = Self::command();
        let mut roles = std::collections::BTreeMap::new();
        let mut webhooks = Vec::new();
        if let Some(path) = &first_pass.config_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::File(format!("cannot read {}: {e}", path.display())))?;
            let table: toml::Table = toml::from_str(&text)
                .map_err(|e| ConfigError::File(format!("{}: {}", path.display(), e.message())))?;
            for (key, value) in table {
                // Tables only the file can hold.
                if key == "roles" {
                    roles = value.try_into().map_err(|e: toml::de::Error| {
                        ConfigError::File(format!("{}: [roles]: {}", path.display(), e.message()))
                    })?;
                    continue;
                }
                if key == "webhooks" {
                    webhooks = value.try_into().map_err(|e: toml::de::Error| {
                        ConfigError::File(format!(
                            "{}: [[webhooks]]: {}",
                            path.display(),
                            e.message()
                        ))
                    })?;
                    continue;
                }
                let known = command
                    .get_arguments()
                    .any(|arg| arg.get_id() == key.as_str() && key != "config_file");
                if !known {
                    return Err(ConfigError::File(format!(
                        "{}: unknown key {key:?}",
                        path.display()
                    )));
                }
                let value = match value {
                    toml::Value::String(text) => text,
                    toml::Value::Integer(n) => n.to_string(),
                    toml::Value::Float(n) => n.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    _ => {
                        return Err(ConfigError::File(format!(
                            "{}: {key:?} must be a string, number or boolean",
                            path.display()
                        )));
                    }
                };
                // Defaults live as long as the process; this runs once at start.
                let value: &'static str = Box::leak(value.into_boxed_str());
                command = command.mut_arg(key, |arg| arg.default_value(value));
            }
        }
        let matches = command.try_get_matches_from(&args)?;
        let mut cli = Self::from_arg_matches(&matches)?;
        cli.config.roles = roles;
        cli.config.webhooks = webhooks;
        Ok(cli)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_sets_defaults_under_flags_and_environment() {
        let path = std::env::temp_dir().join(format!("authgate-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, "access_ttl = 60\naudience = \"from-file\"\n").unwrap();
        let file = path.to_str().unwrap();
        let cli = Cli::parse_with_file(["authgate", "--config", file]).unwrap();
        assert_eq!(cli.config.access_ttl, 60);
        assert_eq!(cli.config.audience, "from-file");
        let cli =
            Cli::parse_with_file(["authgate", "--config", file, "--access-ttl", "30"]).unwrap();
        assert_eq!(cli.config.access_ttl, 30);

        std::fs::write(&path, "acess_ttl = 60\n").unwrap();
        let err = Cli::parse_with_file(["authgate", "--config", file]).unwrap_err();
        assert!(
            err.to_string().contains("unknown key \"acess_ttl\""),
            "{err}"
        );
        std::fs::write(
            &path,
            "[roles.editor]\nscopes = [\"articles:read\", \"articles:write\"]\n",
        )
        .unwrap();
        let cli = Cli::parse_with_file(["authgate", "--config", file]).unwrap();
        assert_eq!(
            cli.config.roles["editor"].scopes,
            ["articles:read", "articles:write"]
        );
        assert!(cli.config.validate().is_ok());
        std::fs::write(&path, "[roles.Editor]\nscopes = [\"a\"]\n").unwrap();
        let cli = Cli::parse_with_file(["authgate", "--config", file]).unwrap();
        assert!(cli.config.validate().unwrap_err().contains("[roles]"));
        std::fs::write(&path, "access_ttl = \"soon\"\n").unwrap();
        let err = Cli::parse_with_file(["authgate", "--config", file]).unwrap_err();
        assert!(err.to_string().contains("AUTHGATE_ACCESS_TTL"), "{err}");
        std::fs::write(
            &path,
            "[[webhooks]]\nurl = \"http://127.0.0.1:9000/all\"\nsecret = \"whsec_AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMD\"\nevents = [\"*\"]\n\n\
             [[webhooks]]\nurl = \"http://127.0.0.1:9000/sessions\"\nsecret = \"whsec_AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMD\"\nevents = [\"session.ended\"]\n",
        )
        .unwrap();
        let cli = Cli::parse_with_file(["authgate", "--config", file]).unwrap();
        let subscribers = cli.config.event_subscribers().unwrap();
        assert_eq!(subscribers.len(), 2);
        assert_eq!(
            subscribers[1].url.as_str(),
            "http://127.0.0.1:9000/sessions"
        );
        assert!(
            subscribers[1]
                .filter
                .wants(crate::domain::events::EventType::SessionEnded)
        );
        assert!(
            !subscribers[1]
                .filter
                .wants(crate::domain::events::EventType::UserCreated)
        );
        std::fs::write(&path, "[[webhooks]]\nurl = \"http://127.0.0.1:9000/all\"\n").unwrap();
        let err = Cli::parse_with_file(["authgate", "--config", file]).unwrap_err();
        assert!(err.to_string().contains("[[webhooks]]"), "{err}");
    }
}
