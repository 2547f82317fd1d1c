//! argon2id password hashing on a fixed pool of one thread per core, fed by a bounded
//! queue: a login flood can neither starve the async runtime nor grow memory. A fixed
//! pool also keeps argon2's 19 MiB working memory to one buffer per core (with tokio's
//! elastic blocking pool every new thread kept its own: ~400 MB RSS under 500 logins).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use tokio::sync::oneshot;

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

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    jobs: SyncSender<Job>,
    queued: AtomicUsize,
    running: AtomicUsize,
}

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    pool: Arc<Pool>,
    /// Verified against when the account does not exist, so that case costs the same.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// Checks the parameters, prepares the dummy hash (one hash, blocking) and starts
    /// one hashing thread per core.
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, PasswordError> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| PasswordError::Params(e.to_string()))?;
        let dummy_hash = hash_blocking(&params, "authgate dummy password")?.into();
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let (jobs, receiver) = sync_channel::<Job>(cores * QUEUE_PER_CORE);
        let pool = Arc::new(Pool {
            jobs,
            queued: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
        });
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..cores {
            let (receiver, pool) = (receiver.clone(), Arc::downgrade(&pool));
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || work_loop(&receiver, &pool))
                .map_err(|_| PasswordError::Task)?;
        }
        Ok(Self {
            params,
            pool,
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

    /// Hashes waiting for a core.
    pub fn queued(&self) -> usize {
        self.pool.queued.load(Ordering::Acquire)
    }

    /// Cores busy hashing.
    pub fn running(&self) -> usize {
        self.pool.running.load(Ordering::Acquire)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The client hung up while this waited: its hash is not worth a core.
            if !reply.is_closed() {
                let _ = reply.send(work());
            }
        });
        self.pool.queued.fetch_add(1, Ordering::AcqRel);
        match self.pool.jobs.try_send(job) {
            Ok(()) => answer.await.map_err(|_| PasswordError::Task),
            Err(TrySendError::Full(_)) => {
                self.pool.queued.fetch_sub(1, Ordering::AcqRel);
                Err(PasswordError::Overloaded)
            }
            Err(TrySendError::Disconnected(_)) => {
                self.pool.queued.fetch_sub(1, Ordering::AcqRel);
                Err(PasswordError::Task)
            }
        }
    }
}

fn work_loop(receiver: &Mutex<Receiver<Job>>, pool: &std::sync::Weak<Pool>) {
    loop {
        let job = match receiver.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return, // every hasher is gone
        };
        let Some(pool) = pool.upgrade() else { return };
        pool.queued.fetch_sub(1, Ordering::AcqRel);
        pool.running.fetch_add(1, Ordering::AcqRel);
        job();
        pool.running.fetch_sub(1, Ordering::AcqRel);
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
