//! Event subscribers: `AUTHGATE_EVENTS_WEBHOOK_URL` + `_SECRET` (every event type) and
//! the `[[webhooks]]` tables of the configuration file, together.

use super::messages::webhook_secret;
use super::{Config, SecretText, SecretUrl};
use crate::domain::events::{EventFilter, EventType, Subscriber};

/// A `[[webhooks]]` table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTable {
    pub url: SecretUrl,
    pub secret: SecretText,
    /// `["*"]` (the default) or event types.
    #[serde(default = "every_event")]
    pub events: Vec<String>,
}

fn every_event() -> Vec<String> {
    vec!["*".into()]
}

impl Config {
    /// Every subscriber, checked: an http(s) URL named once, a `whsec_` secret, known
    /// event types.
    pub fn event_subscribers(&self) -> Result<Vec<Subscriber>, String> {
        let mut subscribers = Vec::new();
        match (&self.events_webhook_url, &self.events_webhook_secret) {
            (Some(url), Some(secret)) => subscribers.push(subscriber(
                "AUTHGATE_EVENTS_WEBHOOK_URL",
                url,
                "AUTHGATE_EVENTS_WEBHOOK_SECRET",
                secret,
                EventFilter::All,
            )?),
            (Some(_), None) => {
                return Err(
                    "AUTHGATE_EVENTS_WEBHOOK_SECRET: required with AUTHGATE_EVENTS_WEBHOOK_URL"
                        .into(),
                );
            }
            (None, Some(_)) => {
                return Err(
                    "AUTHGATE_EVENTS_WEBHOOK_SECRET: set without AUTHGATE_EVENTS_WEBHOOK_URL"
                        .into(),
                );
            }
            (None, None) => {}
        }
        for (index, table) in self.webhooks.iter().enumerate() {
            let name = format!("AUTHGATE_CONFIG: [[webhooks]] #{}", index + 1);
            let filter = event_filter(&table.events).map_err(|err| format!("{name}: {err}"))?;
            subscribers.push(subscriber(
                &format!("{name}: url"),
                &table.url,
                &format!("{name}: secret"),
                &table.secret,
                filter,
            )?);
        }
        for (index, subscriber) in subscribers.iter().enumerate() {
            if subscribers[..index]
                .iter()
                .any(|earlier| earlier.url == subscriber.url)
            {
                return Err(format!(
                    "AUTHGATE_CONFIG: [[webhooks]]: {} is named twice (a URL names its subscriber)",
                    SecretUrl::from(subscriber.url.as_str())
                ));
            }
        }
        Ok(subscribers)
    }
}

fn subscriber(
    url_name: &str,
    url: &SecretUrl,
    secret_name: &str,
    secret: &SecretText,
    filter: EventFilter,
) -> Result<Subscriber, String> {
    let parsed = url::Url::parse(url.expose())
        .ok()
        .filter(|parsed| matches!(parsed.scheme(), "http" | "https"));
    if parsed.is_none() {
        return Err(format!("{url_name}: not an http(s) URL: {url}"));
    }
    Ok(Subscriber {
        url: url.expose().to_owned(),
        secret: webhook_secret(secret_name, secret)?,
        filter,
    })
}

fn event_filter(events: &[String]) -> Result<EventFilter, String> {
    if events.iter().any(|event| event == "*") {
        return Ok(EventFilter::All);
    }
    if events.is_empty() {
        return Err("events: empty (use [\"*\"] for every type)".into());
    }
    let types = events
        .iter()
        .map(|event| {
            EventType::parse(event).ok_or_else(|| {
                let known: Vec<&str> = EventType::ALL.iter().map(|kind| kind.as_str()).collect();
                format!(
                    "events: unknown type {event:?} (known: {})",
                    known.join(", ")
                )
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(EventFilter::Only(types))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn subscribers_come_from_the_environment_and_the_file_checked() {
        let secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode([3u8; 24])
        );
        let mut config = Config::from_env().unwrap();
        assert!(config.event_subscribers().unwrap().is_empty());
        config.events_webhook_url = Some("https://hooks.example.com/all".into());
        assert!(
            config
                .event_subscribers()
                .unwrap_err()
                .contains("AUTHGATE_EVENTS_WEBHOOK_SECRET")
        );
        config.events_webhook_secret = Some(secret.clone().into());
        config.webhooks = vec![WebhookTable {
            url: "http://127.0.0.1:9000/sessions".into(),
            secret: secret.clone().into(),
            events: vec!["session.ended".into(), "refresh.reuse_detected".into()],
        }];
        let subscribers = config.event_subscribers().unwrap();
        assert_eq!(subscribers.len(), 2);
        assert_eq!(subscribers[0].filter, EventFilter::All);
        assert!(subscribers[1].filter.wants(EventType::SessionEnded));
        assert!(!subscribers[1].filter.wants(EventType::UserCreated));
        assert_eq!(subscribers[1].secret, [3u8; 24]);

        config.webhooks[0].events = vec!["session.over".into()];
        let err = config.event_subscribers().unwrap_err();
        assert!(
            err.contains("[[webhooks]] #1") && err.contains("session.over"),
            "{err}"
        );
        config.webhooks[0].events = every_event();
        config.webhooks[0].secret = "whsec_c2hvcnQ=".into();
        assert!(config.event_subscribers().unwrap_err().contains("secret"));
        config.webhooks[0].secret = secret.into();
        config.webhooks[0].url = "https://hooks.example.com/all".into();
        assert!(config.event_subscribers().unwrap_err().contains("twice"));
        config.webhooks[0].url = "ftp://hooks.example.com".into();
        assert!(config.event_subscribers().unwrap_err().contains("http(s)"));
    }
}
