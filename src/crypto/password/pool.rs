//! The hashing pool: one thread per core, fed by a bounded queue that sheds a hash at
//! once when full, each thread keeping its own argon2 working memory for its lifetime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use tokio::sync::oneshot;

use super::PasswordError;
use super::phc::Memory;
use crate::telemetry::{self, Phase};

/// Hashes that may wait for a core, per core; beyond that requests are shed at once
/// rather than queueing memory and latency.
pub const QUEUE_PER_CORE: usize = 16;

type Job = Box<dyn FnOnce(&mut Memory) + Send>;

pub(super) struct HashPool {
    jobs: SyncSender<Job>,
    queued: AtomicUsize,
    running: AtomicUsize,
}

impl HashPool {
    /// Starts one hashing thread per core; they end when the last handle is dropped.
    pub(super) fn start() -> Result<Arc<Self>, PasswordError> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let (jobs, receiver) = sync_channel::<Job>(cores * QUEUE_PER_CORE);
        let pool = Arc::new(Self {
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
        Ok(pool)
    }

    /// Hashes waiting for a core.
    pub(super) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Cores busy hashing.
    pub(super) fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Runs `work` on a pool thread with that thread's memory, or fails at once with
    /// [`PasswordError::Overloaded`] when the queue is full.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (reply, answer) = oneshot::channel();
        let queued_at = Instant::now();
        let job: Job = Box::new(move |memory| {
            // The client hung up while this waited: its hash is not worth a core.
            if !reply.is_closed() {
                let started = Instant::now();
                let output = work(memory);
                let _ = reply.send((output, started, Instant::now()));
            }
        });
        self.queued.fetch_add(1, Ordering::AcqRel);
        match self.jobs.try_send(job) {
            Ok(()) => {
                let (output, started, ended) = answer.await.map_err(|_| PasswordError::Task)?;
                telemetry::record(Phase::HashWait, "password hash wait", queued_at, started);
                telemetry::record(Phase::Hash, "password hash", started, ended);
                Ok(output)
            }
            Err(TrySendError::Full(_)) => {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                Err(PasswordError::Overloaded)
            }
            Err(TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                Err(PasswordError::Task)
            }
        }
    }
}

fn work_loop(receiver: &Mutex<Receiver<Job>>, pool: &Weak<HashPool>) {
    // This thread's argon2 memory: sized at the first hash, then kept for its lifetime.
    let mut memory = Memory::new();
    loop {
        let job = match receiver.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return, // every hasher is gone
        };
        let Some(pool) = pool.upgrade() else { return };
        pool.queued.fetch_sub(1, Ordering::AcqRel);
        pool.running.fetch_add(1, Ordering::AcqRel);
        job(&mut memory);
        pool.running.fetch_sub(1, Ordering::AcqRel);
    }
}
