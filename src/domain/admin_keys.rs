//! The keys of the admin API: made, listed and revoked by the CLI, checked at every
//! admin request.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::admin::AdminCaller;
use super::types::UnixMillis;
use super::{AuthService, Fault};
use crate::crypto::refresh;
use crate::store::{AdminKeyInfo, Store, StoreError};

/// `authgate admin-keys create`: a new key (printed once, stored as SHA-256).
pub async fn create_admin_key(store: &Store, name: &str) -> anyhow::Result<String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        anyhow::bail!("NAME: 1 to 64 of A-Z a-z 0-9 . _ -");
    }
    let key = format!(
        "agk_{}",
        URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<32>())
    );
    match store
        .insert_admin_key(name, &refresh::hash(&key), UnixMillis::now())
        .await
    {
        Ok(()) => Ok(key),
        Err(StoreError::Duplicate) => anyhow::bail!("an admin key named {name:?} exists"),
        Err(err) => Err(err.into()),
    }
}

pub async fn admin_keys(store: &Store) -> Result<Vec<AdminKeyInfo>, StoreError> {
    store.admin_keys().await
}

pub async fn revoke_admin_key(store: &Store, name: &str) -> anyhow::Result<()> {
    if !store.revoke_admin_key(name, UnixMillis::now()).await? {
        anyhow::bail!("no live admin key is named {name:?}");
    }
    Ok(())
}

impl AuthService {
    /// The caller a presented admin key stands for, if it is a live key.
    pub async fn authenticate_admin(&self, key: &str) -> Result<Option<AdminCaller>, Fault> {
        Ok(self
            .store
            .admin_key_name(&refresh::hash(key))
            .await?
            .map(|key_name| AdminCaller { key_name }))
    }
}
