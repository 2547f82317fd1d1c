//! Tokens a verifier has already verified. A client sends the same access token with
//! every request for its whole lifetime, so a token seen again costs a SHA-256 and a
//! lookup instead of an Ed25519 signature check (about 40 µs); Envoy's `jwt_authn`
//! keeps such a cache for the same reason.
//!
//! An entry is only ever made from a token that passed every check, and it is keyed by
//! the digest of the exact token text, so no other text can hit it. What can change
//! after that first check is checked again on every hit: the clock (`exp`, `nbf`), the
//! trusted keys (an entry counts only while the key set it was verified with is current)
//! and the revocation feed (the caller checks `sid`).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// How many verified tokens a verifier remembers by default. An entry holds at most
/// 2 KiB of claims (an authgate token's are about 400 bytes), so the cache stays under
/// 10 MB.
pub const DEFAULT_VERIFIED_CACHE: usize = 4096;

/// A token whose claims are longer is verified afresh every time.
pub(crate) const MAX_REMEMBERED_CLAIMS: usize = 2048;

pub(crate) type TokenDigest = [u8; 32];

/// What the checks of a token seen again need.
#[derive(Clone)]
pub(crate) struct Verified {
    /// The [`crate::verifier::KeySet`] generation that verified the signature.
    pub(crate) keys_generation: u64,
    pub(crate) exp: u64,
    pub(crate) nbf: u64,
    pub(crate) sid: Option<Uuid>,
    /// The revocation feed's version when `sid` was last found not listed (`None`: no
    /// feed, or not checked yet).
    pub(crate) feed_version: Option<u64>,
    /// The payload's JSON, deserialized again into the caller's claims type.
    pub(crate) claims: Arc<[u8]>,
}

pub(crate) struct VerifiedTokens {
    entries: Mutex<LruCache<TokenDigest, Verified>>,
}

impl VerifiedTokens {
    /// `None` for a capacity of 0: no cache.
    pub(crate) fn new(capacity: usize) -> Option<Self> {
        let capacity = NonZeroUsize::new(capacity)?;
        Some(Self {
            entries: Mutex::new(LruCache::new(capacity)),
        })
    }

    pub(crate) fn digest(token: &str) -> TokenDigest {
        Sha256::digest(token.as_bytes()).into()
    }

    pub(crate) fn get(&self, digest: &TokenDigest) -> Option<Verified> {
        self.lock().get(digest).cloned()
    }

    pub(crate) fn insert(&self, digest: TokenDigest, verified: Verified) {
        self.lock().put(digest, verified);
    }

    /// The token's session was found not listed at this feed version.
    pub(crate) fn feed_checked(&self, digest: &TokenDigest, feed_version: Option<u64>) {
        if let Some(verified) = self.lock().get_mut(digest) {
            verified.feed_version = feed_version;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<TokenDigest, Verified>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}
