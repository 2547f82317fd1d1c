//! Printing the configuration without its secrets: `Debug` (and `config check`) write
//! it as TOML, with the passwords of URLs hidden.

use std::fmt;

use super::Config;

/// Hides the secrets of a URL: the password of `postgres://user:secret@host/db` (an
/// `@` inside it included) and the values of `password=`-like query parameters.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    // The userinfo ends at the last `@`: a password may hold `?`, `/` or `@` unescaped.
    // (An `@` later in the URL hides more than the password; never less.)
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => rest.to_owned(),
    };
    let rest = match rest.split_once('?') {
        Some((before, query)) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if is_secret_parameter(key) => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{before}?{}", pairs.join("&"))
        }
        None => rest,
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest,
    }
}

fn is_secret_parameter(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "pwd",
        "pass",
        "secret",
        "token",
        "sslpassword",
    ]
    .iter()
    .any(|secret| key == *secret || key.ends_with(&format!("_{secret}")))
}

pub(super) fn redacted<S: serde::Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redact_url(url))
}

pub(super) fn redacted_option<S: serde::Serializer>(
    url: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => redacted(url, serializer),
        None => serializer.serialize_none(),
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match toml::to_string(self) {
            Ok(text) => f.write_str(&text),
            Err(err) => write!(f, "Config {{ unprintable: {err} }}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_database_passwords() {
        let mut config = Config::from_env().unwrap();
        config.database_url = "postgres://app:hunter2@db:5432/auth".into();
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("postgres://app:***@db:5432/auth"));
    }

    #[test]
    fn redaction_hides_passwords_in_userinfo_and_query_parameters() {
        for (url, shown) in [
            (
                "postgres://app:p@ss:w0rd@db/auth",
                "postgres://app:***@db/auth",
            ),
            (
                "postgres://app:hunter2?/x@db/auth",
                "postgres://app:***@db/auth",
            ),
            (
                "postgres://db/auth?user=app&password=hunter2&sslmode=require",
                "postgres://db/auth?user=app&password=***&sslmode=require",
            ),
            ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
            (
                "sqlite://authgate.db?mode=rwc",
                "sqlite://authgate.db?mode=rwc",
            ),
            ("smtp://mail@relay:25", "smtp://mail@relay:25"),
        ] {
            assert_eq!(redact_url(url), shown);
            assert!(!redact_url(url).contains("hunter2"));
        }
    }
}
