//! Two (or more) copies of a table, A and B: each request goes to one of
//! them, chosen by observed latency and error rate (the faster and sounder
//! gets more of the traffic), and to the next when it fails or is too slow. A circuit breaker per copy
//! (failsafe's) stops sending to one that keeps failing, then lets one
//! request through after a while and closes again if it is answered.
//! Breaker changes are logged and counted.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use failsafe::failure_policy::{consecutive_failures, ConsecutiveFailures};
use failsafe::{Instrument, StateMachine};

use super::backend::{within, Answer, Backend, LookupError};

/// The part of the traffic spread evenly over the copies whatever their
/// latency (the rest goes by latency).
const MIN_SHARE: f64 = 0.2;

/// When a copy's breaker opens, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct BreakerConfig {
    /// Consecutive failed requests that open it.
    pub failures: u32,
    /// How long it stays open the first time (doubling, up to `open_max`,
    /// each time a trial request fails).
    pub open_for: Duration,
    pub open_max: Duration,
}

/// Counters of one copy.
#[derive(Debug, Default)]
pub struct CopyStats {
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    pub opened: AtomicU64,
    pub closed: AtomicU64,
    /// Requests it was skipped for, its breaker open.
    pub rejected: AtomicU64,
}

const NO_TRIAL: u8 = 0;
const TRIAL_DUE: u8 = 1;
const TRIAL_OUT: u8 = 2;

/// The breaker's events: logged, counted, and whether a trial is due.
struct Events {
    name: String,
    stats: Arc<CopyStats>,
    open: AtomicBool,
    /// Half open: [`TRIAL_DUE`] until one request claims the trial, then
    /// [`TRIAL_OUT`] until it is answered; [`NO_TRIAL`] otherwise.
    trial: AtomicU8,
    /// Latency (µs, moving average) and error rate (ppm) reset when the
    /// breaker closes: the copy is tried again as if fresh.
    latency_us: Arc<AtomicU64>,
    error_ppm: Arc<AtomicU64>,
}

/// The breaker's hooks into a copy's [`Events`] (which the copy reads too).
struct Hooks(Arc<Events>);

impl Instrument for Hooks {
    fn on_call_rejected(&self) {
        self.0.stats.rejected.fetch_add(1, Relaxed);
    }

    fn on_open(&self) {
        self.0.trial.store(NO_TRIAL, Relaxed);
        self.0.open.store(true, Relaxed);
        self.0.stats.opened.fetch_add(1, Relaxed);
        tracing::warn!(backend = %self.0.name, "circuit breaker open: requests go to the other copies");
    }

    fn on_half_open(&self) {
        self.0.trial.store(TRIAL_DUE, Relaxed);
        tracing::info!(backend = %self.0.name, "circuit breaker half open: one trial request");
    }

    fn on_closed(&self) {
        self.0.trial.store(NO_TRIAL, Relaxed);
        // The breaker reports itself closed when it is made, too.
        if !self.0.open.swap(false, Relaxed) {
            return;
        }
        self.0.latency_us.store(0, Relaxed);
        self.0.error_ppm.store(0, Relaxed);
        self.0.stats.closed.fetch_add(1, Relaxed);
        tracing::info!(backend = %self.0.name, "circuit breaker closed: the copy takes requests again");
    }
}

/// How long an open breaker stays open: `open_for`, doubled each time until
/// `max` (failsafe's own exponential backoff refuses starts under 1 s).
#[derive(Clone)]
struct Doubling {
    next: Duration,
    max: Duration,
}

impl Iterator for Doubling {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        Some(now)
    }
}

struct Copy {
    backend: Arc<dyn Backend>,
    breaker: StateMachine<ConsecutiveFailures<Doubling>, Hooks>,
    events: Arc<Events>,
    latency_us: Arc<AtomicU64>,
    /// The share of recent requests that failed, in millionths (moving average).
    error_ppm: Arc<AtomicU64>,
    stats: Arc<CopyStats>,
}

/// A table on several copies, itself a [`Backend`].
pub struct FailoverBackend {
    name: String,
    copies: Vec<Copy>,
    /// The longest a copy may take before the next is asked.
    attempt_timeout: Duration,
    /// Requests answered by another copy than the first one asked.
    pub failovers: AtomicU64,
    picks: AtomicU64,
}

impl FailoverBackend {
    pub fn new(copies: Vec<Arc<dyn Backend>>, attempt_timeout: Duration, breaker: BreakerConfig) -> Self {
        let name = copies.iter().map(|c| c.name()).collect::<Vec<_>>().join(" | ");
        let copies = copies
            .into_iter()
            .map(|backend| {
                let stats = Arc::new(CopyStats::default());
                let (latency_us, error_ppm) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
                let events = Arc::new(Events {
                    name: backend.name().to_string(),
                    stats: stats.clone(),
                    open: false.into(),
                    trial: AtomicU8::new(NO_TRIAL),
                    latency_us: latency_us.clone(),
                    error_ppm: error_ppm.clone(),
                });
                let policy = consecutive_failures(breaker.failures.max(1), Doubling { next: breaker.open_for, max: breaker.open_max.max(breaker.open_for) });
                let breaker = StateMachine::new(policy, Hooks(events.clone()));
                Copy { backend, breaker, events, latency_us, error_ppm, stats }
            })
            .collect();
        FailoverBackend { name, copies, attempt_timeout, failovers: AtomicU64::new(0), picks: AtomicU64::new(0) }
    }

    /// The counters of copy `i`, in the order given.
    pub fn stats(&self, i: usize) -> &CopyStats {
        &self.copies[i].stats
    }

    /// Whether copy `i`'s breaker is open now (half open counts as open).
    pub fn is_open(&self, i: usize) -> bool {
        self.copies[i].events.open.load(Relaxed)
    }

    /// How many copies there are.
    pub fn copies(&self) -> usize {
        self.copies.len()
    }

    /// The name of copy `i`.
    pub fn copy_name(&self, i: usize) -> &str {
        self.copies[i].backend.name()
    }

    /// The copies to ask, in order: one due a trial first (for the one
    /// request that claims it), then the others whose breaker lets requests
    /// through, the first of them drawn with weights inverse to their
    /// latency; copies with an open breaker, or whose trial is out, not at
    /// all (unless nothing else is left).
    fn order(&self) -> Vec<usize> {
        let permitted: Vec<usize> = (0..self.copies.len()).filter(|&i| self.copies[i].breaker.is_call_permitted()).collect();
        let trial = |i: usize| &self.copies[i].events.trial;
        if let Some(&claimed) = permitted.iter().find(|&&i| trial(i).compare_exchange(TRIAL_DUE, TRIAL_OUT, Relaxed, Relaxed).is_ok()) {
            let mut order = vec![claimed];
            order.extend(permitted.iter().filter(|&&i| i != claimed && trial(i).load(Relaxed) == NO_TRIAL));
            return order;
        }
        let settled: Vec<usize> = permitted.iter().copied().filter(|&i| trial(i).load(Relaxed) == NO_TRIAL).collect();
        let permitted = if settled.is_empty() { permitted } else { settled };
        // Shares by (1 - error rate) / (latency + 100 µs) (a copy not
        // measured yet counts as fast and sound), each copy kept at least
        // MIN_SHARE of its fair share so that its figures stay known and a
        // failing one meets its breaker.
        let inverse: Vec<f64> = permitted
            .iter()
            .map(|&i| {
                let c = &self.copies[i];
                let sound = 1.0 - c.error_ppm.load(Relaxed) as f64 / 1e6;
                sound.max(0.0) / (c.latency_us.load(Relaxed) as f64 + 100.0)
            })
            .collect();
        let total: f64 = inverse.iter().sum();
        let fair = 1.0 / permitted.len().max(1) as f64;
        let weights: Vec<f64> = inverse.iter().map(|w| if total > 0.0 { (1.0 - MIN_SHARE) * w / total + MIN_SHARE * fair } else { fair }).collect();
        // A cheap spread of draws over [0, 1): the golden ratio's steps.
        let n = self.picks.fetch_add(1, Relaxed);
        let mut draw = (n as f64 * 0.618_033_988_75).fract();
        let first = weights.iter().position(|w| {
            draw -= w;
            draw < 0.0
        });
        let mut order = permitted.clone();
        if let Some(f) = first {
            order.swap(0, f);
        }
        order
    }
}

fn record_latency(cell: &AtomicU64, took: Duration) {
    let us = took.as_micros().min(u64::MAX as u128) as u64;
    let old = cell.load(Relaxed);
    cell.store(if old == 0 { us } else { (old * 7 + us) / 8 }, Relaxed);
}

/// A request's outcome in a copy's error rate (a moving average over about
/// the last eight requests).
fn record_outcome(cell: &AtomicU64, failed: bool) {
    let old = cell.load(Relaxed);
    cell.store((old * 7 + if failed { 1_000_000 } else { 0 }) / 8, Relaxed);
}

impl Backend for FailoverBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> Answer<'a> {
        Box::pin(async move {
            let order = self.order();
            let mut last = None;
            for (n, &i) in order.iter().enumerate() {
                let copy = &self.copies[i];
                copy.stats.requests.fetch_add(1, Relaxed);
                let started = Instant::now();
                let result = within(copy.backend.as_ref(), keys, self.attempt_timeout).await;
                record_latency(&copy.latency_us, started.elapsed());
                record_outcome(&copy.error_ppm, result.is_err());
                match result {
                    Ok(values) => {
                        copy.breaker.on_success();
                        if n > 0 {
                            self.failovers.fetch_add(1, Relaxed);
                        }
                        return Ok(values);
                    }
                    Err(e) => {
                        copy.breaker.on_error();
                        copy.stats.failures.fetch_add(1, Relaxed);
                        tracing::debug!(backend = copy.backend.name(), error = %e, "lookup failed on this copy; trying the next");
                        last = Some(e);
                    }
                }
            }
            Err(LookupError::AllDown {
                table: self.name.clone(),
                last: last.map_or_else(|| "every copy's circuit breaker is open".to_string(), |e| e.to_string()),
            })
        })
    }
}
