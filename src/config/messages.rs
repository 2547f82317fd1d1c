//! Settings of password reset, email verification and message delivery.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args};
use lettre::message::Mailbox;
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::{AsyncSmtpTransport, Tokio1Executor};

use super::{SecretText, SecretUrl};

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct MessageConfig {
    /// Refuse login (403) until the account's email is verified.
    #[arg(long, env = "AUTHGATE_REQUIRE_VERIFIED_EMAIL", value_name = "AUTHGATE_REQUIRE_VERIFIED_EMAIL",
          default_value = "false", action = ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub require_verified_email: bool,

    /// Lifetime of password-reset tokens, seconds.
    #[arg(long, env = "AUTHGATE_RESET_TOKEN_TTL", value_name = "AUTHGATE_RESET_TOKEN_TTL", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(60..=604_800))]
    pub reset_token_ttl: u64,

    /// Lifetime of email-verification tokens, seconds.
    #[arg(long, env = "AUTHGATE_VERIFICATION_TOKEN_TTL", value_name = "AUTHGATE_VERIFICATION_TOKEN_TTL",
          default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(60..=2_592_000))]
    pub verification_token_ttl: u64,

    /// Webhook that receives messages (signed per Standard Webhooks).
    #[arg(
        long,
        env = "AUTHGATE_DELIVERY_WEBHOOK_URL",
        value_name = "AUTHGATE_DELIVERY_WEBHOOK_URL"
    )]
    pub delivery_webhook_url: Option<SecretUrl>,

    /// Its signing secret: `whsec_` + base64 of at least 24 random bytes.
    #[arg(
        long,
        env = "AUTHGATE_DELIVERY_WEBHOOK_SECRET",
        value_name = "AUTHGATE_DELIVERY_WEBHOOK_SECRET"
    )]
    pub delivery_webhook_secret: Option<SecretText>,

    /// SMTP server: `smtp://[user:pass@]host[:port][?tls=required|opportunistic|none]` or `smtps://…`.
    #[arg(long, env = "AUTHGATE_SMTP_URL", value_name = "AUTHGATE_SMTP_URL")]
    pub smtp_url: Option<SecretUrl>,

    /// Sender of the mails, e.g. `Example <no-reply@example.com>`.
    #[arg(long, env = "AUTHGATE_MAIL_FROM", value_name = "AUTHGATE_MAIL_FROM")]
    pub mail_from: Option<String>,

    /// Development: append each message as one JSON line to this file.
    #[arg(
        long,
        env = "AUTHGATE_DELIVERY_FILE",
        value_name = "AUTHGATE_DELIVERY_FILE"
    )]
    pub delivery_file: Option<PathBuf>,

    /// Link template of reset messages; `{token}` is replaced by the token.
    #[arg(long, env = "AUTHGATE_RESET_URL", value_name = "AUTHGATE_RESET_URL")]
    pub reset_url: Option<String>,

    /// Link template of verification messages; `{token}` is replaced by the token.
    #[arg(long, env = "AUTHGATE_VERIFY_URL", value_name = "AUTHGATE_VERIFY_URL")]
    pub verify_url: Option<String>,
}

/// The delivery channel the settings name, checked.
pub enum DeliverySettings {
    Webhook {
        url: String,
        secret: Vec<u8>,
    },
    Smtp {
        transport: AsyncSmtpTransportBuilder,
        from: Mailbox,
    },
    File(PathBuf),
}

impl std::fmt::Debug for DeliverySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Webhook { url, .. } => write!(f, "Webhook({})", SecretUrl::from(url.as_str())),
            Self::Smtp { from, .. } => write!(f, "Smtp(from {from})"),
            Self::File(path) => write!(f, "File({})", path.display()),
        }
    }
}

impl MessageConfig {
    /// The one configured channel, `None` without one, or the one-line reason the
    /// settings are refused (naming the variable).
    pub fn delivery(&self) -> Result<Option<DeliverySettings>, String> {
        let configured = [
            self.delivery_webhook_url.is_some(),
            self.smtp_url.is_some(),
            self.delivery_file.is_some(),
        ];
        if self.delivery_webhook_secret.is_some() && self.delivery_webhook_url.is_none() {
            return Err(
                "AUTHGATE_DELIVERY_WEBHOOK_SECRET: set without AUTHGATE_DELIVERY_WEBHOOK_URL"
                    .into(),
            );
        }
        if self.mail_from.is_some() && self.smtp_url.is_none() {
            return Err("AUTHGATE_MAIL_FROM: set without AUTHGATE_SMTP_URL".into());
        }
        if configured.iter().filter(|&&set| set).count() > 1 {
            return Err(
                "AUTHGATE_DELIVERY_WEBHOOK_URL, AUTHGATE_SMTP_URL, AUTHGATE_DELIVERY_FILE: \
                        configure one delivery channel, not several"
                    .into(),
            );
        }
        for (name, template) in [
            ("AUTHGATE_RESET_URL", &self.reset_url),
            ("AUTHGATE_VERIFY_URL", &self.verify_url),
        ] {
            if let Some(template) = template
                && !template.contains("{token}")
            {
                return Err(format!("{name}: the template has no {{token}}"));
            }
        }
        if let Some(url) = &self.delivery_webhook_url {
            let parsed = url::Url::parse(url.expose())
                .ok()
                .filter(|url| matches!(url.scheme(), "http" | "https"));
            if parsed.is_none() {
                return Err(format!(
                    "AUTHGATE_DELIVERY_WEBHOOK_URL: not an http(s) URL: {url}"
                ));
            }
            let secret = self.delivery_webhook_secret.as_ref().ok_or(
                "AUTHGATE_DELIVERY_WEBHOOK_SECRET: required with AUTHGATE_DELIVERY_WEBHOOK_URL",
            )?;
            let secret = webhook_secret("AUTHGATE_DELIVERY_WEBHOOK_SECRET", secret)?;
            return Ok(Some(DeliverySettings::Webhook {
                url: url.expose().to_owned(),
                secret,
            }));
        }
        if let Some(url) = &self.smtp_url {
            let transport = smtp_transport(url.expose())
                .map_err(|reason| format!("AUTHGATE_SMTP_URL: {reason}: {url}"))?;
            let from = self
                .mail_from
                .as_deref()
                .ok_or("AUTHGATE_MAIL_FROM: required with AUTHGATE_SMTP_URL")?
                .parse()
                .map_err(|err| format!("AUTHGATE_MAIL_FROM: not a mail address: {err}"))?;
            return Ok(Some(DeliverySettings::Smtp { transport, from }));
        }
        Ok(self.delivery_file.clone().map(DeliverySettings::File))
    }
}

/// The bytes of a Standard Webhooks secret: `whsec_` + base64 of at least 24 bytes.
pub(super) fn webhook_secret(name: &str, secret: &SecretText) -> Result<Vec<u8>, String> {
    secret
        .expose()
        .strip_prefix("whsec_")
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .filter(|bytes| bytes.len() >= 24)
        .ok_or_else(|| {
            format!("{name}: must be whsec_ followed by the base64 of at least 24 random bytes")
        })
}

/// The SMTP transport of `smtp://[user:pass@]host[:port][?tls=required|opportunistic|none]`
/// or `smtps://…`. lettre reads a plain `smtp://` as no TLS; `tls=none` says so explicitly.
fn smtp_transport(url: &str) -> Result<AsyncSmtpTransportBuilder, String> {
    let mut parsed = url::Url::parse(url).map_err(|err| err.to_string())?;
    if !matches!(parsed.scheme(), "smtp" | "smtps") || parsed.host_str().is_none() {
        return Err("not smtp://host[:port] or smtps://host[:port]".into());
    }
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(key, value)| !(key == "tls" && value == "none"))
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    match pairs.as_slice() {
        [] => parsed.set_query(None),
        pairs => {
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
        }
    }
    AsyncSmtpTransport::<Tokio1Executor>::from_url(parsed.as_str()).map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MessageConfig {
        super::super::Config::from_env().unwrap().messages
    }

    #[test]
    fn one_channel_at_most_each_complete() {
        let mut both = config();
        both.delivery_file = Some("messages.jsonl".into());
        both.smtp_url = Some("smtp://relay:25".into());
        both.mail_from = Some("a@example.com".into());
        assert!(
            both.delivery()
                .unwrap_err()
                .contains("one delivery channel")
        );

        let mut webhook = config();
        webhook.delivery_webhook_url = Some("https://hooks.example.com/authgate".into());
        assert!(
            webhook
                .delivery()
                .unwrap_err()
                .contains("AUTHGATE_DELIVERY_WEBHOOK_SECRET")
        );
        webhook.delivery_webhook_secret = Some("whsec_c2hvcnQ=".into());
        assert!(webhook.delivery().unwrap_err().contains("24 random bytes"));
        let secret = STANDARD.encode([7u8; 24]);
        webhook.delivery_webhook_secret = Some(format!("whsec_{secret}").into());
        assert!(matches!(
            webhook.delivery().unwrap(),
            Some(DeliverySettings::Webhook { secret, .. }) if secret == [7u8; 24]
        ));
        let mut orphan = config();
        orphan.delivery_webhook_secret = Some(format!("whsec_{secret}").into());
        assert!(
            orphan
                .delivery()
                .unwrap_err()
                .contains("without AUTHGATE_DELIVERY_WEBHOOK_URL")
        );

        let mut smtp = config();
        smtp.smtp_url = Some("smtp://relay:25".into());
        assert!(smtp.delivery().unwrap_err().contains("AUTHGATE_MAIL_FROM"));
        smtp.reset_url = Some("https://app.example.com/reset".into());
        smtp.mail_from = Some("a@example.com".into());
        assert!(smtp.delivery().unwrap_err().contains("AUTHGATE_RESET_URL"));
        smtp.reset_url = None;
        for good in [
            "smtp://relay:25",
            "smtp://relay:25?tls=none",
            "smtps://u:p@relay",
            "smtp://relay?tls=required",
        ] {
            smtp.smtp_url = Some(good.into());
            assert!(smtp.delivery().is_ok(), "{good}");
        }
        for bad in ["http://relay", "smtp://relay?tls=sometimes", "smtp:relay"] {
            smtp.smtp_url = Some(bad.into());
            assert!(
                smtp.delivery().unwrap_err().contains("AUTHGATE_SMTP_URL"),
                "{bad}"
            );
        }
        smtp.smtp_url = Some("smtp://relay".into());
        smtp.mail_from = Some("not an address".into());
        assert!(smtp.delivery().unwrap_err().contains("AUTHGATE_MAIL_FROM"));
        assert!(config().delivery().unwrap().is_none());
    }
}
