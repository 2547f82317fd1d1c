//! Secrets in the configuration: a URL that may hold a password is a [`SecretUrl`],
//! whose `Debug`, `Display` and serialization hide it, so neither `Debug` of the config
//! nor `config check` can print one, whatever new setting holds it.

use std::fmt;

/// A URL that may hold a password (database, Redis, SMTP). Every way of printing it
/// hides its secrets; [`SecretUrl::expose`] is the one way to the real text.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL with its secrets, for connecting; never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&redact_url(&self.0), f)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl serde::Serialize for SecretUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&redact_url(&self.0))
    }
}

impl<'de> serde::Deserialize<'de> for SecretUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// A secret setting (a webhook signing secret): printed as `***` everywhere;
/// [`SecretText::expose`] is the one way to the real text.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretText {
    fn from(text: String) -> Self {
        Self(text)
    }
}

impl From<&str> for SecretText {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl serde::Serialize for SecretText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

impl<'de> serde::Deserialize<'de> for SecretText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// Hides the secrets of a URL: the password of `postgres://user:secret@host/db` (an
/// `@` inside it included) and the values of `password=`-like query parameters.
fn redact_url(url: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_database_passwords() {
        let mut config = super::super::Config::from_env().unwrap();
        config.database_url = "postgres://app:hunter2@db:5432/auth".into();
        config.redis_url = Some("redis://:hunter2@cache:6379/0".into());
        config.messages.delivery_webhook_secret = Some("whsec_hunter2".into());
        config.messages.smtp_url = Some("smtp://mail:hunter2@relay:587".into());
        for printed in [
            format!("{config:?}"),
            format!("{config:#?}"),
            toml::to_string(&config).unwrap(),
        ] {
            assert!(!printed.contains("hunter2"), "{printed}");
            assert!(printed.contains("postgres://app:***@db:5432/auth"));
        }
        assert_eq!(
            config.database_url.expose(),
            "postgres://app:hunter2@db:5432/auth"
        );
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
