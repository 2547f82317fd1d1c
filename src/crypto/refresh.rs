//! Opaque refresh tokens: 256 random bits, base64url. The database keeps only their
//! SHA-256, and for the reuse grace window the successor of a spent token, sealed with a
//! key derived from the spent token itself, so the database alone cannot open it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

/// SHA-256 of a refresh token, the only form in which tokens are stored.
pub type TokenHash = [u8; 32];

/// Makes a new refresh token and its hash.
pub fn generate() -> (String, TokenHash) {
    let token = URL_SAFE_NO_PAD.encode(super::random_bytes::<32>());
    let hash = hash(&token);
    (token, hash)
}

pub fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

fn sealing_cipher(predecessor: &str) -> ChaCha20Poly1305 {
    let mut hasher = Sha256::new();
    hasher.update(b"authgate refresh successor sealing key v1\0");
    hasher.update(predecessor.as_bytes());
    let key: [u8; 32] = hasher.finalize().into();
    ChaCha20Poly1305::new(&Key::from(key))
}

/// Each predecessor seals exactly one successor, so its derived key is used once and a
/// fixed nonce is safe.
const NONCE: [u8; 12] = [0; 12];

/// Encrypts `successor` under a key only the holder of `predecessor` can derive.
pub fn seal(predecessor: &str, successor: &str) -> Vec<u8> {
    sealing_cipher(predecessor)
        .encrypt(&Nonce::from(NONCE), successor.as_bytes())
        .unwrap_or_default()
}

/// Opens what [`seal`] made; `None` if it was sealed for another token or altered.
pub fn open(predecessor: &str, sealed: &[u8]) -> Option<String> {
    let plain = sealing_cipher(predecessor)
        .decrypt(&Nonce::from(NONCE), sealed)
        .ok()?;
    String::from_utf8(plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_43_url_safe_characters_and_unique() {
        let (a, hash_a) = generate();
        let (b, _) = generate();
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a, b);
        assert_eq!(hash(&a), hash_a);
    }

    #[test]
    fn only_the_predecessor_opens_the_sealed_successor() {
        let (predecessor, _) = generate();
        let (successor, _) = generate();
        let (stranger, _) = generate();
        let sealed = seal(&predecessor, &successor);
        assert_eq!(
            open(&predecessor, &sealed).as_deref(),
            Some(successor.as_str())
        );
        assert_eq!(open(&stranger, &sealed), None);
        let mut altered = sealed.clone();
        altered[0] ^= 1;
        assert_eq!(open(&predecessor, &altered), None);
    }
}
