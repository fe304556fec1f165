//! The lookup runtime: where the requests of every worker's lookups run.
//! One thread drives a tokio runtime (the only async part of the hot path);
//! a worker hands it a request and goes on, and the answer comes back on
//! the worker's own channel, which it reads between batches. A request is
//! bounded in time: a timeout per attempt and quick retries with a doubling
//! backoff; past them the table counts as unavailable for that request, and
//! the table's [`Unavailable`] policy decides: try on (the events wait, and
//! the worker's bound on waiting events turns that into backpressure) or
//! give up after a while (the events follow the step's miss policy).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::backend::{within, LookupError};
use super::table::Table;

/// The longest wait between two attempts of a request the table cannot answer.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How one request is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The longest an attempt may take.
    pub timeout: Duration,
    /// Quick attempts after the first.
    pub retries: u32,
    /// The wait before the first retry, doubled before each next one (up to
    /// [`MAX_BACKOFF`]).
    pub backoff: Duration,
    /// What happens once the retries are spent.
    pub unavailable: Unavailable,
}

/// What a request does when its retries are spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// Tries on (every [`MAX_BACKOFF`] at most) until the table answers.
    Wait,
    /// Tries on until this long after the first attempt, then fails.
    GiveUpAfter(Duration),
}

/// One request: keys of one table, and a tag the worker knows it by.
pub struct Request {
    pub tag: u64,
    pub keys: Vec<Vec<u8>>,
}

/// A table's answer for one key: its value, or `None` (no such key).
pub type Value = Option<Vec<u8>>;

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
}

impl LookupService {
    /// Starts the runtime's thread.
    pub fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("lookup-io".into()).spawn(move || {
            // Drives every spawned request until the service is dropped.
            let _ = runtime.block_on(stopped);
        })?;
        Ok(LookupService { runtime: handle, stop: Some(stop), thread: Some(thread) })
    }

    /// Enters the runtime's context (to make what spawns tasks on it).
    pub fn enter(&self) -> tokio::runtime::EnterGuard<'_> {
        self.runtime.enter()
    }

    /// Runs `f` on the runtime and waits for its result (from a plain
    /// thread, never from a task): connecting at build time, tests.
    pub fn block_on<T: Send + 'static>(&self, f: impl std::future::Future<Output = T> + Send + 'static) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.runtime.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().ok()
    }

    /// Sends `request` to `table`; its [`Reply`] comes on `reply`. Never
    /// waits (the callers bound what they send).
    pub fn submit(&self, table: &Arc<Table>, request: Request, reply: Sender<Reply>) {
        let table = table.clone();
        self.runtime.spawn(async move {
            let started = Instant::now();
            let (result, attempts) = attempt(&table, &request.keys).await;
            // A worker that is gone wants no answer.
            let _ = reply.send(Reply { tag: request.tag, keys: request.keys, result, attempts, latency: started.elapsed() });
        });
    }
}

/// Tries `keys` on `table` as its policy says: the answer, or the last error.
async fn attempt(table: &Table, keys: &[Vec<u8>]) -> (Result<Vec<Value>, LookupError>, u32) {
    let policy = table.policy;
    let started = Instant::now();
    let mut wait = policy.backoff;
    let mut attempts = 0;
    let mut waiting = None;
    loop {
        attempts += 1;
        let result = within(table.backend.as_ref(), keys, table.request_timeout()).await;
        let spent = attempts > policy.retries;
        let give_up = match policy.unavailable {
            Unavailable::Wait => false,
            Unavailable::GiveUpAfter(d) => started.elapsed() >= d,
        };
        if result.is_ok() || (spent && give_up) {
            drop(waiting);
            return (result, attempts);
        }
        if spent && waiting.is_none() {
            waiting = Some(table.stats.start_waiting(&table.name, result.as_ref().err()));
        }
        table.stats.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(wait).await;
        wait = wait.saturating_mul(2).min(MAX_BACKOFF);
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
