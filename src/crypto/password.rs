//! argon2id password hashing on the blocking pool, with at most one hash per core at a
//! time so a login flood cannot starve the async runtime or exhaust memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password hashing task failed")]
    Task,
    #[error("too many password hashes queued")]
    Overloaded,
}

/// Outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    Wrong,
    Correct,
    /// Correct, but the hash used other parameters than the configured ones.
    CorrectNeedsRehash,
}

/// Hashes that may wait for a core, per core; beyond that requests are shed at once
/// rather than queueing memory and latency.
pub const QUEUE_PER_CORE: usize = 16;

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// Hashes running or waiting; at most `capacity`.
    queued: Arc<AtomicUsize>,
    capacity: usize,
    /// Verified against when the account does not exist, so that case costs the same.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// Checks the parameters and prepares the dummy hash (one hash, blocking).
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, PasswordError> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| PasswordError::Params(e.to_string()))?;
        let dummy_hash = hash_blocking(&params, "authgate dummy password")?.into();
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(cores)),
            queued: Arc::new(AtomicUsize::new(0)),
            capacity: cores * (1 + QUEUE_PER_CORE),
            dummy_hash,
        })
    }

    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let params = self.params.clone();
        self.run(move || hash_blocking(&params, &password)).await?
    }

    /// Verifies `password` against `stored`, or against the dummy hash when `stored` is
    /// `None` (unknown account: always [`Verified::Wrong`], in the same time).
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<Verified, PasswordError> {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let params = self.params.clone();
        let verified = self
            .run(move || verify_blocking(&params, &password, &stored))
            .await??;
        Ok(if known { verified } else { Verified::Wrong })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let admitted = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued < self.capacity).then_some(queued + 1)
            });
        if admitted.is_err() {
            return Err(PasswordError::Overloaded);
        }
        let _slot = QueueSlot(&self.queued);
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Task)?;
        // The permit moves into the task: a client that hangs up does not free a core
        // that is still hashing.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|_| PasswordError::Task)
    }
}

/// Frees a queue place when the hash is done or the request went away.
struct QueueSlot<'a>(&'a AtomicUsize);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PasswordHasher {
    /// Hashes running or waiting for a core.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Cores busy hashing.
    pub fn running(&self) -> usize {
        (self.capacity / (1 + QUEUE_PER_CORE)).saturating_sub(self.permits.available_permits())
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_blocking(params: &Params, password: &str) -> Result<String, PasswordError> {
    argon2(params)
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

fn verify_blocking(
    params: &Params,
    password: &str,
    stored: &str,
) -> Result<Verified, PasswordError> {
    let parsed = PasswordHash::new(stored).map_err(|e| PasswordError::Hash(e.to_string()))?;
    // Verification uses the parameters recorded in the hash itself.
    match argon2(params).verify_password(password.as_bytes(), &parsed) {
        Ok(()) => {}
        Err(argon2::password_hash::Error::PasswordInvalid) => return Ok(Verified::Wrong),
        Err(e) => return Err(PasswordError::Hash(e.to_string())),
    }
    let current = parsed.algorithm.as_str() == "argon2id"
        && Params::try_from(&parsed).is_ok_and(|used| {
            used.m_cost() == params.m_cost()
                && used.t_cost() == params.t_cost()
                && used.p_cost() == params.p_cost()
        });
    Ok(if current {
        Verified::Correct
    } else {
        Verified::CorrectNeedsRehash
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = PasswordHasher::new(1024, 1, 1).unwrap();
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        let ok = hasher.verify("correct horse".into(), Some(hash.clone()));
        assert_eq!(ok.await.unwrap(), Verified::Correct);
        let wrong = hasher.verify("battery staple".into(), Some(hash));
        assert_eq!(wrong.await.unwrap(), Verified::Wrong);
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() {
        let hasher = PasswordHasher::new(1024, 1, 1).unwrap();
        let verified = hasher.verify("authgate dummy password".into(), None);
        assert_eq!(verified.await.unwrap(), Verified::Wrong);
    }

    #[tokio::test]
    async fn a_hash_with_other_parameters_asks_for_a_rehash() {
        let old = PasswordHasher::new(1024, 1, 1).unwrap();
        let hash = old.hash("correct horse".into()).await.unwrap();
        let new = PasswordHasher::new(2048, 1, 1).unwrap();
        let verified = new.verify("correct horse".into(), Some(hash));
        assert_eq!(verified.await.unwrap(), Verified::CorrectNeedsRehash);
    }
}
