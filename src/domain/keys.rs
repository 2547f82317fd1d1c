//! The signing key ring: which key signs new access tokens and which public keys the
//! JWKS publishes. Every instance reloads it from the database periodically, so a key
//! made by `authgate keys rotate` is used everywhere without a restart. A new key is
//! published at once but signs only one reload interval after its creation, so every
//! instance (and every verifier that refetches on an unknown `kid`) knows it first.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use authgate_verify::{JwkSet, Verifier};

use crate::crypto::signing::{self, KeyError, SigningKey};
use crate::store::{SigningKeyRow, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored signing key {kid}: {source}")]
    Key { kid: String, source: KeyError },
    #[error("the signing key comes from AUTHGATE_SIGNING_KEY_FILE; replace that file to rotate")]
    KeyFromFile,
}

struct Keys {
    signer: Arc<SigningKey>,
    jwks: Arc<JwkSet>,
}

pub struct KeyRing {
    store: Store,
    file_key: Option<Arc<SigningKey>>,
    verifier: Arc<Verifier>,
    /// A key signs this long after its creation: one reload interval.
    activation_delay_ms: i64,
    /// Retired keys stay published this long: until their successor signs everywhere,
    /// plus the lifetime of the last token they signed and clock leeway.
    retired_key_lifetime_ms: i64,
    keys: RwLock<Keys>,
}

impl KeyRing {
    /// Loads the keys, generating and storing the first one if there is none (and no
    /// key file), and hands the public keys to `verifier`. With a key file, keys kept
    /// in the database are retired: they age out of the JWKS.
    pub async fn load(
        store: Store,
        file_key: Option<SigningKey>,
        verifier: Arc<Verifier>,
        access_ttl_secs: u64,
        reload_interval: Duration,
    ) -> Result<Self, KeyRingError> {
        let file_key = file_key.map(Arc::new);
        if file_key.is_some() {
            store.retire_signing_keys(super::now_ms()).await?;
        } else if !store
            .signing_keys()
            .await?
            .iter()
            .any(|row| row.retired_at.is_none())
        {
            store
                .add_signing_key(new_row(&SigningKey::generate()), false, None)
                .await?;
        }
        let activation_delay_ms = reload_interval.as_millis() as i64;
        let retired_key_lifetime_ms =
            2 * activation_delay_ms + (access_ttl_secs as i64 + 60) * 1000;
        let placeholder = Arc::new(SigningKey::generate());
        let ring = Self {
            store,
            file_key,
            verifier,
            activation_delay_ms,
            retired_key_lifetime_ms,
            keys: RwLock::new(Keys {
                signer: placeholder,
                jwks: Arc::default(),
            }),
        };
        ring.reload().await?;
        Ok(ring)
    }

    /// Rereads the keys from the database.
    pub async fn reload(&self) -> Result<(), KeyRingError> {
        let rows = self.store.signing_keys().await?;
        let now = super::now_ms();
        let published: Vec<&SigningKeyRow> = rows
            .iter()
            .filter(|row| {
                row.retired_at
                    .is_none_or(|retired| retired + self.retired_key_lifetime_ms > now)
            })
            .collect();
        let mut jwks: Vec<_> = published
            .iter()
            .map(|row| signing::public_jwk(&row.kid, &row.public_key))
            .collect();

        let signer = match &self.file_key {
            Some(key) => {
                jwks.insert(0, signing::public_jwk(key.kid(), key.public_x()));
                key.clone()
            }
            // The newest key whose activation time has passed, or before any has (first
            // start) the oldest; rows come newest first, so every instance picks the same.
            None => match rows
                .iter()
                .find(|row| row.created_at + self.activation_delay_ms <= now)
                .or(rows.last())
            {
                Some(row) if row.kid == self.signer().kid() => self.signer(),
                Some(row) => Arc::new(SigningKey::from_pem(&row.private_key_pem).map_err(
                    |source| KeyRingError::Key {
                        kid: row.kid.clone(),
                        source,
                    },
                )?),
                None => self.signer(),
            },
        };
        let jwks = JwkSet { keys: jwks };
        self.verifier.set_keys(&jwks);
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        keys.signer = signer;
        keys.jwks = Arc::new(jwks);
        Ok(())
    }

    /// Makes a new key the active one and retires the others. Returns its `kid`.
    pub async fn rotate(store: &Store, has_key_file: bool) -> Result<String, KeyRingError> {
        if has_key_file {
            return Err(KeyRingError::KeyFromFile);
        }
        let key = SigningKey::generate();
        let row = new_row(&key);
        let actor = crate::store::Actor {
            client_ip: None,
            user_agent: Some("authgate keys rotate".to_owned()),
        };
        let audit = crate::store::Audit {
            event: "key_rotated",
            actor: &actor,
            user_id: None,
            session_id: None,
            detail: Some(format!("kid {}", key.kid())),
            at: row.created_at,
        };
        store.add_signing_key(row, true, Some(&audit)).await?;
        Ok(key.kid().to_owned())
    }

    pub fn signer(&self) -> Arc<SigningKey> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .signer
            .clone()
    }

    pub fn jwks(&self) -> Arc<JwkSet> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .jwks
            .clone()
    }
}

/// One line per stored key: kid, state, created and retired times (RFC 3339).
pub async fn describe_keys(
    store: &Store,
    config: &crate::config::Config,
) -> Result<String, KeyRingError> {
    let rows = store.signing_keys().await?;
    let now = super::now_ms();
    let activation = (config.key_reload_interval * 1000) as i64;
    let lifetime = 2 * activation + (config.access_ttl as i64 + 60) * 1000;
    let signer = rows
        .iter()
        .find(|row| row.created_at + activation <= now)
        .or(rows.last())
        .map(|row| row.kid.clone());
    let mut out = String::from("kid\tstate\tcreated_at\tretired_at\n");
    for row in &rows {
        let state = if config.signing_key_file.is_none() && signer.as_deref() == Some(&row.kid) {
            "signing"
        } else if row
            .retired_at
            .is_none_or(|retired| retired + lifetime > now)
        {
            "published"
        } else {
            "expired"
        };
        out.push_str(&format!(
            "{}\t{state}\t{}\t{}\n",
            row.kid,
            super::rfc3339(row.created_at),
            row.retired_at
                .map(super::rfc3339)
                .unwrap_or_else(|| "-".to_owned())
        ));
    }
    Ok(out)
}

fn new_row(key: &SigningKey) -> SigningKeyRow {
    SigningKeyRow {
        kid: key.kid().to_owned(),
        private_key_pem: key.private_pem().to_owned(),
        public_key: key.public_x().to_owned(),
        created_at: super::now_ms(),
        retired_at: None,
    }
}
