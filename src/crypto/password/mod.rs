//! argon2id password hashing on a fixed pool of one thread per core, fed by a bounded
//! queue: a login flood can neither starve the async runtime nor grow memory. Each pool
//! thread owns one argon2 block buffer (19 MiB at the default cost), allocated at its
//! first hash and reused by every later one: letting the argon2 crate allocate and free
//! it per hash left glibc's arenas fragmented (~240 MB RSS under 500 logins on 2 cores).

mod phc;
mod pool;

use std::sync::Arc;

use argon2::Params;

use phc::{Memory, hash_blocking, verify_blocking};
use pool::HashPool;
pub use pool::QUEUE_PER_CORE;

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

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    pool: Arc<HashPool>,
    /// Verified against when the account does not exist, so that case costs the same.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// Checks the parameters, prepares the dummy hash (one hash, blocking) and starts
    /// one hashing thread per core.
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, PasswordError> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| PasswordError::Params(e.to_string()))?;
        let dummy_hash = hash_blocking(&mut Memory::new(), &params, "authgate dummy password")?;
        let pool = HashPool::start()?;
        Ok(Self {
            params,
            pool,
            dummy_hash: dummy_hash.into(),
        })
    }

    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let params = self.params.clone();
        self.pool
            .run(move |memory| hash_blocking(memory, &params, &password))
            .await?
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
            .pool
            .run(move |memory| verify_blocking(memory, &params, &password, &stored))
            .await??;
        Ok(if known { verified } else { Verified::Wrong })
    }

    /// Hashes waiting for a core.
    pub fn queued(&self) -> usize {
        self.pool.queued()
    }

    /// Cores busy hashing.
    pub fn running(&self) -> usize {
        self.pool.running()
    }
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

    #[tokio::test]
    async fn a_hash_of_a_higher_cost_than_configured_still_verifies() {
        let old = PasswordHasher::new(4096, 1, 2).unwrap();
        let hash = old.hash("correct horse".into()).await.unwrap();
        let new = PasswordHasher::new(1024, 1, 1).unwrap();
        let ok = new.verify("correct horse".into(), Some(hash.clone()));
        assert_eq!(ok.await.unwrap(), Verified::CorrectNeedsRehash);
        let wrong = new.verify("battery staple".into(), Some(hash));
        assert_eq!(wrong.await.unwrap(), Verified::Wrong);
    }
}
