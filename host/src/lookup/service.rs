//! The lookup runtime: where the requests of every worker's lookups run.
//! One thread drives a tokio runtime (the only async part of the hot path);
//! a worker hands it a request and goes on, and the answer comes back on
//! the worker's own channel, which it reads between batches. A request is
//! bounded in time (a timeout per attempt, retries with a doubling
//! backoff), and the requests out at once are bounded too: past the bound
//! `submit` hands the request back, and the worker holds it (backpressure
//! without blocking a thread).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::backend::{within, Backend, LookupError, RedisBackend, RedisValues};
use super::flight::Value;

/// How one request is tried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// The longest an attempt may take.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// The wait before the first retry, doubled before each next one.
    pub backoff: Duration,
}

/// One request: the keys of one table, and a tag the worker knows it by.
pub struct Request {
    pub tag: u64,
    pub keys: Vec<Vec<u8>>,
}

/// The outcome of a request, on the worker's channel.
pub struct Reply {
    pub tag: u64,
    pub keys: Vec<Vec<u8>>,
    /// A value per key, in order; or the last attempt's error.
    pub result: Result<Vec<Value>, LookupError>,
    pub attempts: u32,
    /// From the submit to the answer, retries included.
    pub latency: Duration,
}

pub struct LookupService {
    runtime: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    out: Arc<AtomicUsize>,
    max_out: usize,
}

impl LookupService {
    /// Starts the runtime's thread; at most `max_out` requests out at once.
    pub fn start(max_out: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("lookup-io".into()).spawn(move || {
            // Drives every spawned request until the service is dropped.
            let _ = runtime.block_on(stopped);
        })?;
        Ok(LookupService { runtime: handle, stop: Some(stop), thread: Some(thread), out: Arc::new(AtomicUsize::new(0)), max_out: max_out.max(1) })
    }

    /// A Redis backend connected on the runtime (called from a plain
    /// thread while a pipeline is built, never from a task).
    pub fn connect_redis(&self, url: &str, values: RedisValues) -> Result<Arc<dyn Backend>, LookupError> {
        let url = url.to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        self.runtime.spawn(async move {
            let _ = tx.send(RedisBackend::connect(&url, values).await);
        });
        let backend = rx.recv().map_err(|_| LookupError::Connect { backend: "redis".into(), error: "the lookup runtime stopped".into() })??;
        Ok(Arc::new(backend))
    }

    /// Requests out now.
    pub fn out(&self) -> usize {
        self.out.load(Ordering::Relaxed)
    }

    /// Sends `request` to `backend`; its [`Reply`] comes on `reply`. Never
    /// waits: with `max_out` requests out it hands `request` back.
    pub fn submit(&self, backend: Arc<dyn Backend>, policy: RetryPolicy, request: Request, reply: Sender<Reply>) -> Result<(), Request> {
        if self.out.fetch_add(1, Ordering::AcqRel) >= self.max_out {
            self.out.fetch_sub(1, Ordering::AcqRel);
            return Err(request);
        }
        let out = self.out.clone();
        self.runtime.spawn(async move {
            let started = Instant::now();
            let (result, attempts) = attempt(backend.as_ref(), &request.keys, policy).await;
            out.fetch_sub(1, Ordering::AcqRel);
            // A worker that is gone wants no answer.
            let _ = reply.send(Reply { tag: request.tag, keys: request.keys, result, attempts, latency: started.elapsed() });
        });
        Ok(())
    }
}

/// Tries `keys` on `backend` as `policy` says: the answer, or the last error.
async fn attempt(backend: &dyn Backend, keys: &[Vec<u8>], policy: RetryPolicy) -> (Result<Vec<Value>, LookupError>, u32) {
    let mut wait = policy.backoff;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = within(backend, keys, policy.timeout).await;
        if result.is_ok() || attempts > policy.retries {
            return (result, attempts);
        }
        tokio::time::sleep(wait).await;
        wait = wait.saturating_mul(2);
    }
}

impl Drop for LookupService {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
