//! Master keys: the keys that seal secrets kept in the database (private signing keys,
//! and later the tokens of pending messages). A sealed value is bound to its row by the
//! associated data, so it cannot be copied into another row and opened there.
//!
//! The file holds one key per line (32 random bytes, base64); the first seals, every
//! line opens, so a master key is rotated by prepending a line, running
//! `authgate keys rewrap`, then dropping the old line.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// The format tag of a sealed value, so a later scheme can be told apart.
const SEALED_PREFIX: &str = "v1.";
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot create {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: not 32 bytes in base64")]
    Malformed { path: String, line: usize },
    #[error("{path} holds no key")]
    Empty { path: String },
}

/// One or more master keys; the first seals. `Debug` shows only how many there are.
#[derive(Clone)]
pub struct MasterKeys {
    keys: Vec<ChaCha20Poly1305>,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeys")
            .field("count", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl MasterKeys {
    /// Reads a master key file: one base64 key of 32 bytes per line, blank lines and
    /// `#` comments ignored.
    pub fn from_file(path: &Path) -> Result<Self, MasterKeyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| MasterKeyError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bytes = STANDARD
                .decode(line)
                .ok()
                .filter(|bytes| bytes.len() == 32)
                .ok_or_else(|| MasterKeyError::Malformed {
                    path: shown.clone(),
                    line: index + 1,
                })?;
            keys.push(ChaCha20Poly1305::new(Key::from_slice(&bytes)));
        }
        if keys.is_empty() {
            return Err(MasterKeyError::Empty { path: shown });
        }
        Ok(Self { keys })
    }

    /// Reads `path`, first creating it (mode 0600) with one fresh key if it does not
    /// exist. The key is written to a private temporary file and linked into place, so
    /// two processes starting at once agree on one key and a crash never leaves an empty
    /// file behind.
    pub fn load_or_generate(path: &Path) -> Result<Self, MasterKeyError> {
        if !path.exists() {
            let create_error = |source| MasterKeyError::Create {
                path: path.display().to_string(),
                source,
            };
            let mut temporary = path.as_os_str().to_owned();
            temporary.push(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
            let temporary = std::path::PathBuf::from(temporary);
            let line = format!("{}\n", STANDARD.encode(super::random_bytes::<32>()));
            create_private_file(&temporary, line.as_bytes()).map_err(create_error)?;
            let linked = std::fs::hard_link(&temporary, path);
            let _ = std::fs::remove_file(&temporary);
            match linked {
                Ok(()) => {}
                // Another process made it first: use theirs.
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(create_error(err)),
            }
        }
        Self::from_file(path)
    }

    /// A single fresh key held only in memory (an in-memory database dies with it).
    pub fn ephemeral() -> Self {
        let bytes = super::random_bytes::<32>();
        Self {
            keys: vec![ChaCha20Poly1305::new(Key::from_slice(&bytes))],
        }
    }

    /// Seals `secret` under the first key, bound to `binding` (e.g. the row's id).
    pub fn seal(&self, secret: &[u8], binding: &str) -> String {
        let nonce = super::random_bytes::<NONCE_LEN>();
        let payload = Payload {
            msg: secret,
            aad: binding.as_bytes(),
        };
        // Encryption with a valid key and nonce cannot fail for in-memory data.
        let sealed = self.keys[0]
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Opens a value sealed by [`MasterKeys::seal`] with any of the keys, if it was
    /// sealed for `binding`.
    pub fn open(&self, sealed: &str, binding: &str) -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed.strip_prefix(SEALED_PREFIX)?)
            .ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        self.keys.iter().find_map(|key| {
            key.decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: binding.as_bytes(),
                },
            )
            .ok()
        })
    }

    /// Whether the first key (the one that seals) opens `sealed`: false means
    /// `keys rewrap` has work to do.
    pub fn is_current(&self, sealed: &str, binding: &str) -> bool {
        Self {
            keys: vec![self.keys[0].clone()],
        }
        .open(sealed, binding)
        .is_some()
    }
}

/// Creates a new file readable and writable by its owner only (0600 on Unix).
pub fn create_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("authgate-{name}-{}", uuid::Uuid::new_v4()))
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_binding_and_never_shows_the_secret() {
        let keys = MasterKeys::ephemeral();
        let sealed = keys.seal(b"private key bytes", "kid-1");
        assert!(!sealed.contains("private"));
        assert_eq!(
            keys.open(&sealed, "kid-1").as_deref(),
            Some(&b"private key bytes"[..])
        );
        assert_eq!(keys.open(&sealed, "kid-2"), None);
        assert_eq!(MasterKeys::ephemeral().open(&sealed, "kid-1"), None);
    }

    #[test]
    fn every_line_opens_and_the_first_seals() {
        let (old, new) = (STANDARD.encode([1u8; 32]), STANDARD.encode([2u8; 32]));
        let path = temp_path("master");
        std::fs::write(&path, format!("{old}\n")).unwrap();
        let before = MasterKeys::from_file(&path).unwrap();
        let sealed = before.seal(b"secret", "row");
        std::fs::write(&path, format!("# rotated\n{new}\n\n{old}\n")).unwrap();
        let after = MasterKeys::from_file(&path).unwrap();
        assert_eq!(after.open(&sealed, "row").as_deref(), Some(&b"secret"[..]));
        assert!(!after.is_current(&sealed, "row"));
        assert!(after.is_current(&after.seal(b"secret", "row"), "row"));
    }

    #[test]
    fn a_generated_file_is_private_and_malformed_lines_are_refused() {
        let path = temp_path("generated");
        let generated = MasterKeys::load_or_generate(&path).unwrap();
        let again = MasterKeys::load_or_generate(&path).unwrap();
        let sealed = generated.seal(b"secret", "row");
        assert!(again.open(&sealed, "row").is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not base64 at all\n").unwrap();
        let err = MasterKeys::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
