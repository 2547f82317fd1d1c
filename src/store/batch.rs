//! Opportunistic batching: while one batch of queries is at the database, the requests
//! that arrive queue up, and the next batch takes them all (up to a cap). An idle server
//! runs each request as a batch of one at once, so batching adds no delay; a busy one pays
//! the per-query overhead (a thread hop on SQLite, a round trip on PostgreSQL, an fsync for
//! a commit) once per batch instead of once per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use sea_orm::DbErr;
use tokio::sync::oneshot;

use crate::telemetry::Phase;

type Reply<O> = oneshot::Sender<Result<O, DbErr>>;
type RunBatch<I, O> =
    dyn Fn(Vec<I>) -> Pin<Box<dyn Future<Output = Result<Vec<O>, DbErr>> + Send>> + Send + Sync;

pub(crate) struct Batcher<I, O> {
    /// What a batch does, as a request's trace shows its wait for one.
    name: &'static str,
    queue: Mutex<Queue<I, O>>,
    max_batch: usize,
    /// Runs one batch; returns one output per input, in order.
    run: Box<RunBatch<I, O>>,
}

struct Queue<I, O> {
    waiting: Vec<(I, Reply<O>)>,
    draining: bool,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    pub(crate) fn new<F, Fut>(name: &'static str, max_batch: usize, run: F) -> Arc<Self>
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, DbErr>> + Send + 'static,
    {
        Arc::new(Self {
            name,
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                draining: false,
            }),
            max_batch,
            run: Box::new(move |inputs| Box::pin(run(inputs))),
        })
    }

    pub(crate) async fn submit(self: &Arc<Self>, input: I) -> Result<O, DbErr> {
        let (reply, answer) = oneshot::channel();
        let start_draining = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.waiting.push((input, reply));
            !std::mem::replace(&mut queue.draining, true)
        };
        if start_draining {
            // A task of its own, so that a request whose client hangs up (and whose future
            // is dropped) never strands the requests queued behind it.
            tokio::spawn(Arc::clone(self).drain());
        }
        // The batch's statements run in its own task, for several requests: each request
        // counts its wait for the batch as its database time.
        crate::telemetry::timed(Phase::Db, self.name, answer)
            .await
            .unwrap_or_else(|_| Err(DbErr::Custom("a query batch was abandoned".into())))
    }

    async fn drain(self: Arc<Self>) {
        let _guard = DrainGuard(&self);
        loop {
            // Let the runtime first run the other tasks that are ready (requests about to
            // join the queue): an idle server loses nothing, a busy one fills the batch.
            tokio::task::yield_now().await;
            let batch: Vec<_> = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                if queue.waiting.is_empty() {
                    queue.draining = false;
                    return;
                }
                let take = queue.waiting.len().min(self.max_batch);
                queue.waiting.drain(..take).collect()
            };
            let (inputs, replies): (Vec<I>, Vec<Reply<O>>) = batch.into_iter().unzip();
            match (self.run)(inputs).await {
                Ok(outputs) if outputs.len() == replies.len() => {
                    for (reply, output) in replies.into_iter().zip(outputs) {
                        let _ = reply.send(Ok(output));
                    }
                }
                Ok(_) => {
                    for reply in replies {
                        let _ = reply.send(Err(DbErr::Custom("a query batch lost a row".into())));
                    }
                }
                Err(err) => {
                    let message = err.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(DbErr::Custom(message.clone())));
                    }
                }
            }
        }
    }
}

/// If a batch panics, the requests still queued are answered with an error (their
/// senders are dropped) and the next request starts a new drain, instead of every later
/// request waiting forever for a drain that is gone.
struct DrainGuard<'a, I, O>(&'a Batcher<I, O>);

impl<I, O> Drop for DrainGuard<'_, I, O> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queue = self.0.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.waiting.clear();
            queue.draining = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queued_requests_share_a_batch_and_each_gets_its_own_answer() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&sizes);
        let batcher = Batcher::new("test batch", 64, move |inputs: Vec<u32>| {
            recorded.lock().unwrap().push(inputs.len());
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok(inputs.into_iter().map(|n| n * 2).collect())
            }
        });
        let requests: Vec<_> = (0..100u32)
            .map(|n| {
                let batcher = Arc::clone(&batcher);
                tokio::spawn(async move { (n, batcher.submit(n).await) })
            })
            .collect();
        for request in requests {
            let (n, answer) = request.await.unwrap();
            assert_eq!(answer.unwrap(), n * 2);
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert!(
            sizes.len() < 100 && sizes.iter().all(|&size| size <= 64),
            "{sizes:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_batch_fails_every_request_in_it_and_the_next_batch_runs() {
        let batcher = Batcher::new("test batch", 64, |inputs: Vec<u32>| async move {
            if inputs.contains(&0) {
                Err(DbErr::Custom("boom".into()))
            } else {
                Ok(inputs)
            }
        });
        assert!(batcher.submit(0).await.is_err());
        assert_eq!(batcher.submit(7).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_panicking_batch_fails_its_requests_and_does_not_stop_later_ones() {
        let batcher = Batcher::new("test batch", 64, |inputs: Vec<u32>| async move {
            assert!(!inputs.contains(&0), "a bug in a batch");
            Ok(inputs)
        });
        assert!(batcher.submit(0).await.is_err());
        assert_eq!(batcher.submit(7).await.unwrap(), 7);
    }
}
