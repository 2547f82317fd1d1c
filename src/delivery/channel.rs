//! The three ways a message reaches its user: a webhook signed per Standard Webhooks, an
//! SMTP mail, or a line in a file (development). Exactly one is configured.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use sha2::Sha256;

use super::{ATTEMPT_TIMEOUT, webhook_id};
use crate::config::DeliverySettings;
use crate::domain::types::{MessageKind, PendingMessage, UnixMillis};

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("the token cannot be opened with the master keys (was the master key file replaced?)")]
    Sealed,
    #[error("no answer within {} seconds", ATTEMPT_TIMEOUT.as_secs())]
    Timeout,
    #[error("webhook: {0}")]
    Webhook(String),
    #[error("smtp: {0}")]
    Smtp(String),
    #[error("file: {0}")]
    File(#[from] std::io::Error),
}

/// Link templates (`{token}` is replaced by the URL-encoded token).
#[derive(Debug, Clone, Default)]
pub struct Links {
    pub reset: Option<String>,
    pub verify: Option<String>,
}

impl Links {
    /// The JSON body of a message: what the webhook posts and the file holds.
    pub fn body(&self, message: &PendingMessage, token: &str) -> serde_json::Value {
        let mut data = serde_json::json!({
            "user": {"id": message.user_id, "email": message.email},
            "token": token,
            "expires_at": message.expires_at.rfc3339(),
        });
        if let Some(link) = self.link(message.kind, token) {
            data["link"] = link.into();
        }
        serde_json::json!({
            "type": message.kind.as_str(),
            "timestamp": message.created_at.rfc3339(),
            "data": data,
        })
    }

    fn link(&self, kind: MessageKind, token: &str) -> Option<String> {
        let template = match kind {
            MessageKind::PasswordReset => self.reset.as_deref(),
            MessageKind::EmailVerification => self.verify.as_deref(),
        }?;
        // A token is base64url: every character is URL-unreserved, so it is its own
        // URL encoding; encoded anyway, should the token format ever change.
        let encoded: String = url_encode(token);
        Some(template.replace("{token}", &encoded))
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

pub enum Channel {
    Webhook {
        client: reqwest::Client,
        url: String,
        /// The bytes of the `whsec_` secret.
        secret: Vec<u8>,
    },
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    File {
        path: PathBuf,
        /// One writer at a time, so lines never interleave.
        lock: tokio::sync::Mutex<()>,
    },
}

impl Channel {
    /// The channel of the (checked) delivery settings.
    pub fn from_settings(settings: DeliverySettings) -> anyhow::Result<Self> {
        use anyhow::Context;
        Ok(match settings {
            DeliverySettings::Webhook { url, secret } => Self::Webhook {
                client: reqwest::Client::builder()
                    .timeout(ATTEMPT_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .context("AUTHGATE_DELIVERY_WEBHOOK_URL: cannot build an HTTP client")?,
                url,
                secret,
            },
            DeliverySettings::Smtp { transport, from } => Self::Smtp {
                transport: transport.timeout(Some(ATTEMPT_TIMEOUT)).build(),
                from,
            },
            DeliverySettings::File(path) => Self::File {
                path,
                lock: tokio::sync::Mutex::new(()),
            },
        })
    }

    pub async fn send(
        &self,
        message: &PendingMessage,
        body: &serde_json::Value,
    ) -> Result<(), ChannelError> {
        match self {
            Self::Webhook {
                client,
                url,
                secret,
            } => {
                let body = body.to_string();
                let id = webhook_id(message.id);
                let timestamp = UnixMillis::now().secs().to_string();
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("webhook-id", &id)
                    .header("webhook-timestamp", &timestamp)
                    .header(
                        "webhook-signature",
                        sign_webhook(secret, &id, &timestamp, &body),
                    )
                    .body(body)
                    .send()
                    .await
                    .map_err(|err| ChannelError::Webhook(err.without_url().to_string()))?;
                match response.status() {
                    status if status.is_success() => Ok(()),
                    status => Err(ChannelError::Webhook(format!("answered {status}"))),
                }
            }
            Self::Smtp { transport, from } => {
                let token = body["data"]["token"].as_str().unwrap_or_default();
                let link = body["data"]["link"].as_str();
                let mail = mail(message, from.clone(), token, link)?;
                transport
                    .send(mail)
                    .await
                    .map(drop)
                    .map_err(|err| ChannelError::Smtp(err.to_string()))
            }
            Self::File { path, lock } => {
                let _one_writer = lock.lock().await;
                let (path, line) = (path.clone(), format!("{body}\n"));
                tokio::task::spawn_blocking(move || append_private(&path, line.as_bytes()))
                    .await
                    .map_err(|err| ChannelError::File(std::io::Error::other(err)))?
                    .map_err(ChannelError::File)
            }
        }
    }
}

/// `v1,` + base64(HMAC-SHA256(secret, `id.timestamp.body`)), the Standard Webhooks
/// signature.
pub fn sign_webhook(secret: &[u8], id: &str, timestamp: &str, body: &str) -> String {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

fn mail(
    message: &PendingMessage,
    from: Mailbox,
    token: &str,
    link: Option<&str>,
) -> Result<lettre::Message, ChannelError> {
    let to: Mailbox = message
        .email
        .parse()
        .map_err(|err| ChannelError::Smtp(format!("the recipient address: {err}")))?;
    let (subject, what) = match message.kind {
        MessageKind::PasswordReset => ("Reset your password", "reset your password"),
        MessageKind::EmailVerification => {
            ("Verify your email address", "verify your email address")
        }
    };
    let action = match link {
        Some(link) => format!("To {what}, open this link:\n\n{link}\n"),
        None => format!("To {what}, use this code:\n\n{token}\n"),
    };
    let text = format!(
        "{action}\nIt works once, until {}.\nIf you did not ask for this, ignore this message.\n",
        message.expires_at.rfc3339()
    );
    lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(text)
        .map_err(|err| ChannelError::Smtp(err.to_string()))
}

/// Appends to a file readable by its owner only: its lines hold live tokens.
fn append_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (its reference libraries'
    /// test vector).
    #[test]
    fn signatures_follow_standard_webhooks() {
        let secret = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = sign_webhook(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn links_carry_the_url_encoded_token() {
        let links = Links {
            reset: Some("https://app.example.com/reset?token={token}".into()),
            verify: None,
        };
        assert_eq!(
            links.link(MessageKind::PasswordReset, "a-b_c+d").as_deref(),
            Some("https://app.example.com/reset?token=a-b_c%2Bd")
        );
        assert_eq!(links.link(MessageKind::EmailVerification, "x"), None);
    }
}
