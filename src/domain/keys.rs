//! The signing key ring: which key signs new access tokens and which public keys the
//! JWKS publishes. Every instance reloads it from the database periodically, so a key
//! made by `authgate keys rotate` or withdrawn by `authgate keys revoke` reaches every
//! instance without a restart.
//!
//! A key is `next` (published, not signing yet), `signing`, `retiring` (published for
//! the tokens it signed) or `revoked` (gone). The times at which a key starts and stops
//! signing are stored with it and the signer is chosen at each signature from them, so
//! every instance switches at the same moment, and a key past its retirement never
//! signs again, whatever the restart order or configuration.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use authgate_verify::{JwkSet, Verifier};

use super::types::{Actor, AuditEntry, AuditEvent, Secret, StoredSigningKey, UnixMillis};
use crate::crypto::master::MasterKeys;
use crate::crypto::signing::{self, KeyError, SigningKey};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored signing key {kid}: {source}")]
    Key { kid: String, source: KeyError },
    #[error(
        "AUTHGATE_MASTER_KEY_FILE: no master key opens the stored signing key {kid} \
         (a wrong or missing master key file?)"
    )]
    WrongMasterKey { kid: String },
    #[error("the signing key comes from AUTHGATE_SIGNING_KEY_FILE; replace that file to rotate")]
    KeyFromFile,
    #[error("no signing key {0}")]
    UnknownKey(String),
    #[error("{0} was already revoked")]
    AlreadyRevoked(String),
    #[error(
        "no other key signs now and from then on, so revoking {0} would stop signing; \
         run `authgate keys rotate --now` first, then revoke it"
    )]
    LastSigner(String),
}

/// Where a key stands in its lifecycle at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Next,
    Signing,
    Retiring,
    Revoked,
}

impl KeyState {
    pub fn of(row: &StoredSigningKey, now: UnixMillis) -> Self {
        if row.revoked_at.is_some() {
            Self::Revoked
        } else if row.retired_at.is_some_and(|retired| retired <= now) {
            Self::Retiring
        } else if activates_at(row) > now {
            Self::Next
        } else {
            Self::Signing
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Signing => "signing",
            Self::Retiring => "retiring",
            Self::Revoked => "revoked",
        }
    }
}

pub fn activates_at(row: &StoredSigningKey) -> UnixMillis {
    row.activates_at.unwrap_or(row.created_at)
}

/// A key that signs from `activates_at` until `retires_at`.
struct Candidate {
    activates_at: UnixMillis,
    retires_at: Option<UnixMillis>,
    key: Arc<SigningKey>,
}

impl Candidate {
    fn signs_at(&self, now: UnixMillis) -> bool {
        self.activates_at <= now && self.retires_at.is_none_or(|retired| now < retired)
    }
}

#[derive(Default)]
struct Keys {
    /// Newest activation first.
    candidates: Vec<Candidate>,
    jwks: Arc<JwkSet>,
}

pub struct KeyRing {
    store: Store,
    master: Option<MasterKeys>,
    file_key: Option<Arc<SigningKey>>,
    verifier: Arc<Verifier>,
    /// Retired keys stay published this long: the lifetime of the last token they
    /// signed, plus clock leeway between instances and one reload interval.
    retired_key_lifetime: Duration,
    keys: RwLock<Keys>,
}

impl KeyRing {
    /// Loads the keys and hands the public keys to `verifier`. Stored keys still in
    /// plain text are sealed under the master key first; a key no master key opens
    /// refuses the start. Without a key file and no key that may sign, a new one is
    /// made. With a key file, keys kept in the database are retired: they age out of
    /// the JWKS. `master` may be `None` only with a key file.
    pub async fn load(
        store: Store,
        file_key: Option<SigningKey>,
        master: Option<MasterKeys>,
        verifier: Arc<Verifier>,
        access_ttl_secs: u64,
        reload_interval: Duration,
    ) -> Result<Self, KeyRingError> {
        let now = UnixMillis::now();
        if file_key.is_some() {
            store.retire_signing_keys(now).await?;
        }
        match &master {
            Some(master) => {
                // The master key must open what is sealed before it seals anything more.
                for row in store.signing_keys().await? {
                    if row.revoked_at.is_none() && row.sealed_private_key.is_some() {
                        open_key(master, &row)?;
                    }
                }
                seal_plaintext_keys(&store, master).await?;
                let may_sign = |row: &StoredSigningKey| {
                    row.revoked_at.is_none() && row.retired_at.is_none_or(|retired| retired > now)
                };
                if file_key.is_none() && !store.signing_keys().await?.iter().any(may_sign) {
                    let row = new_row(&SigningKey::generate(), master, now, now);
                    store.add_signing_key(&row, None, None).await?;
                }
            }
            // Only with a key file, which has just retired every stored key: their
            // private halves are of no more use, so none stays in clear.
            None => {
                store.erase_plaintext_keys().await?;
            }
        }
        let ring = Self {
            store,
            master,
            file_key: file_key.map(Arc::new),
            verifier,
            retired_key_lifetime: Duration::from_secs(access_ttl_secs.saturating_add(60))
                .saturating_add(reload_interval),
            keys: RwLock::default(),
        };
        ring.reload().await?;
        Ok(ring)
    }

    /// Rereads the keys from the database.
    pub async fn reload(&self) -> Result<(), KeyRingError> {
        let rows = self.store.signing_keys().await?;
        let now = UnixMillis::now();
        let mut jwks: Vec<_> = rows
            .iter()
            .filter(|row| {
                row.revoked_at.is_none()
                    && row
                        .retired_at
                        .is_none_or(|retired| retired.plus(self.retired_key_lifetime) > now)
            })
            .map(|row| signing::public_jwk(&row.kid, &row.public_key))
            .collect();

        let mut candidates = Vec::new();
        if let Some(key) = &self.file_key {
            jwks.insert(0, signing::public_jwk(key.kid(), key.public_x()));
            candidates.push(Candidate {
                activates_at: UnixMillis::MIN,
                retires_at: None,
                key: key.clone(),
            });
        } else if let Some(master) = &self.master {
            let known: HashMap<String, Arc<SigningKey>> = self
                .read()
                .candidates
                .iter()
                .map(|candidate| (candidate.key.kid().to_owned(), candidate.key.clone()))
                .collect();
            for row in &rows {
                let state = KeyState::of(row, now);
                if !matches!(state, KeyState::Next | KeyState::Signing) {
                    continue;
                }
                let key = match known.get(&row.kid) {
                    Some(key) => key.clone(),
                    None => match open_key(master, row) {
                        Ok(key) => Arc::new(key),
                        // Still published and still honouring revocations; only this
                        // key is left out of signing.
                        Err(err) => {
                            tracing::error!(error = %err, "a stored signing key cannot be opened; not signing with it");
                            continue;
                        }
                    },
                };
                candidates.push(Candidate {
                    activates_at: activates_at(row),
                    retires_at: row.retired_at,
                    key,
                });
            }
            candidates.sort_by_key(|candidate| std::cmp::Reverse(candidate.activates_at));
        }
        let jwks = JwkSet { keys: jwks };
        self.verifier.set_keys(&jwks);
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        keys.candidates = candidates;
        keys.jwks = Arc::new(jwks);
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The key that signs now: the newest whose signing window holds `now`.
    pub fn signer(&self) -> Result<Arc<SigningKey>, KeyError> {
        let now = UnixMillis::now();
        self.read()
            .candidates
            .iter()
            .find(|candidate| candidate.signs_at(now))
            .map(|candidate| candidate.key.clone())
            .ok_or(KeyError::NoSigner)
    }

    pub fn jwks(&self) -> Arc<JwkSet> {
        self.read().jwks.clone()
    }
}

/// `authgate keys rotate`: adds a key that signs `activation_delay` from now (or at
/// once), and retires the keys that sign until then at that moment. Returns its `kid`.
pub async fn rotate(
    store: &Store,
    master: &MasterKeys,
    activation_delay: Duration,
) -> Result<String, KeyRingError> {
    let now = UnixMillis::now();
    // A new key sealed under another master key than the instances have would leave
    // them nothing to sign with once the current key retires.
    for row in store.signing_keys().await? {
        if matches!(KeyState::of(&row, now), KeyState::Next | KeyState::Signing) {
            open_key(master, &row)?;
        }
    }
    let key = SigningKey::generate();
    let activates_at = now.plus(activation_delay);
    let actor = cli_actor("authgate keys rotate");
    let audit = AuditEntry::new(AuditEvent::KeyRotated, &actor, now)
        .detail(format!("kid {} signs from {activates_at}", key.kid()));
    let row = new_row(&key, master, now, activates_at);
    store
        .add_signing_key(&row, Some(activates_at), Some(&audit))
        .await?;
    Ok(key.kid().to_owned())
}

/// `authgate keys revoke KID`: withdraws a key at once; refused when no other key could
/// sign (unless `has_key_file`: then the file's key signs).
pub async fn revoke(store: &Store, kid: &str, has_key_file: bool) -> Result<(), KeyRingError> {
    let rows = store.signing_keys().await?;
    let now = UnixMillis::now();
    if !rows.iter().any(|row| row.kid == kid) {
        return Err(KeyRingError::UnknownKey(kid.to_owned()));
    }
    // Another key must sign now and from then on: one that signs only until a pending
    // rotation (whose `next` key this may be) would leave a gap.
    let another_signs_for_good = rows.iter().any(|row| {
        row.kid != kid && KeyState::of(row, now) == KeyState::Signing && row.retired_at.is_none()
    });
    if !has_key_file && !another_signs_for_good {
        return Err(KeyRingError::LastSigner(kid.to_owned()));
    }
    let actor = cli_actor("authgate keys revoke");
    let audit = AuditEntry::new(AuditEvent::KeyRevoked, &actor, now).detail(format!("kid {kid}"));
    if !store.revoke_signing_key(kid, &audit).await? {
        return Err(KeyRingError::AlreadyRevoked(kid.to_owned()));
    }
    Ok(())
}

/// `authgate keys rewrap`: seals every stored private key, and every token of a pending
/// message, under the first master key. Returns how many of each were sealed anew.
pub async fn rewrap(store: &Store, master: &MasterKeys) -> Result<(usize, usize), KeyRingError> {
    let keys = rewrap_keys(store, master).await?;
    let mut tokens = Vec::new();
    for (id, sealed) in store.sealed_message_tokens().await? {
        let binding = id.to_string();
        if master.is_current(&sealed, &binding) {
            continue;
        }
        // A token no master key opens cannot be delivered; it expires in the outbox.
        if let Some(token) = master.open(&sealed, &binding) {
            tokens.push((id, master.seal(&token, &binding)));
        }
    }
    store.store_sealed_message_tokens(&tokens).await?;
    Ok((keys, tokens.len()))
}

async fn rewrap_keys(store: &Store, master: &MasterKeys) -> Result<usize, KeyRingError> {
    seal_plaintext_keys(store, master).await?;
    let mut rewrapped = Vec::new();
    for row in store.signing_keys().await? {
        let Some(sealed) = &row.sealed_private_key else {
            continue;
        };
        if row.revoked_at.is_some() || master.is_current(sealed, &row.kid) {
            continue;
        }
        let pem = open_pem(master, &row)?;
        rewrapped.push((row.kid.clone(), master.seal(pem.as_bytes(), &row.kid)));
    }
    store.store_sealed_keys(&rewrapped).await?;
    Ok(rewrapped.len())
}

/// Seals the keys a database written before sealing keeps in plain text.
async fn seal_plaintext_keys(store: &Store, master: &MasterKeys) -> Result<(), KeyRingError> {
    let plaintext: Vec<(String, String)> = store
        .signing_keys()
        .await?
        .into_iter()
        .filter(|row| row.sealed_private_key.is_none() && !row.private_key_pem.is_empty())
        .map(|row| {
            let sealed = master.seal(row.private_key_pem.as_bytes(), &row.kid);
            (row.kid, sealed)
        })
        .collect();
    if !plaintext.is_empty() {
        store.store_sealed_keys(&plaintext).await?;
        tracing::info!(
            keys = plaintext.len(),
            "sealed stored signing keys under the master key"
        );
    }
    Ok(())
}

fn open_pem(master: &MasterKeys, row: &StoredSigningKey) -> Result<String, KeyRingError> {
    row.sealed_private_key
        .as_deref()
        .and_then(|sealed| master.open(sealed, &row.kid))
        .and_then(|pem| String::from_utf8(pem).ok())
        .ok_or_else(|| KeyRingError::WrongMasterKey {
            kid: row.kid.clone(),
        })
}

fn open_key(master: &MasterKeys, row: &StoredSigningKey) -> Result<SigningKey, KeyRingError> {
    let key =
        SigningKey::from_pem(&open_pem(master, row)?).map_err(|source| KeyRingError::Key {
            kid: row.kid.clone(),
            source,
        })?;
    // The sealed key must be the one the row publishes.
    if key.kid() != row.kid {
        return Err(KeyRingError::WrongMasterKey {
            kid: row.kid.clone(),
        });
    }
    Ok(key)
}

fn new_row(
    key: &SigningKey,
    master: &MasterKeys,
    now: UnixMillis,
    activates_at: UnixMillis,
) -> StoredSigningKey {
    StoredSigningKey {
        kid: key.kid().to_owned(),
        private_key_pem: Secret::default(),
        public_key: key.public_x().to_owned(),
        created_at: now,
        retired_at: None,
        sealed_private_key: Some(Secret(master.seal(key.private_pem().as_bytes(), key.kid()))),
        activates_at: Some(activates_at),
        revoked_at: None,
    }
}

fn cli_actor(command: &str) -> Actor {
    Actor {
        client_ip: None,
        user_agent: Some(command.to_owned()),
        name: None,
    }
}
