//! What lookups count: per table (requests, their sizes, retries, time
//! unavailable, request latency) and per `lookup-join` step (cache hits,
//! keys asked, outcomes, the latency each event gained). Atomics shared by
//! every worker, read live and at the end of a run.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::backend::LookupError;
use super::failover::FailoverBackend;

/// Sub-buckets per power of two: a recorded value is known within 9 %.
const SUB: f64 = 8.0;
const BUCKETS: usize = 8 * 40;

/// Durations counted in logarithmic buckets of microseconds: cheap to record
/// from any thread, quantiles within 9 %.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect() }
    }
}

impl Histogram {
    fn bucket(us: u64) -> usize {
        if us <= 1 {
            return 0;
        }
        ((us as f64).log2() * SUB).ceil().min((BUCKETS - 1) as f64) as usize
    }

    pub fn record(&self, d: Duration) {
        self.record_n(d, 1);
    }

    /// Records `n` values of `d`.
    pub fn record_n(&self, d: Duration, n: u64) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        self.buckets[Self::bucket(us)].fetch_add(n, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    /// The counts of its buckets now (for the quantiles of an interval:
    /// [`Histogram::quantile_between`]).
    pub fn counts(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Relaxed)).collect()
    }

    /// The `q` quantile (0..=1), as its bucket's upper bound; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        Self::quantile_of(&self.counts(), q)
    }

    /// The `q` quantile of the values recorded since `earlier` ([`Histogram::counts`]).
    pub fn quantile_between(&self, earlier: &[u64], q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self.counts().iter().zip(earlier).map(|(now, then)| now.saturating_sub(*then)).collect();
        Self::quantile_of(&counts, q)
    }

    fn quantile_of(counts: &[u64], q: f64) -> Option<Duration> {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_micros(2f64.powf(i as f64 / SUB).round() as u64));
            }
        }
        None
    }
}

/// Counters of one table (every step and worker reading it).
#[derive(Default)]
pub struct TableStats {
    /// Requests sent.
    pub requests: AtomicU64,
    /// Keys in them.
    pub keys: AtomicU64,
    /// The most keys in one request.
    pub max_keys: AtomicU64,
    /// Attempts after a request's first.
    pub retries: AtomicU64,
    /// Requests given up (`miss_after_ms` passed): their events followed the miss policy.
    pub failed: AtomicU64,
    /// From sending a request to its answer, retries included.
    pub latency: Histogram,
    /// Requests past their quick retries and still trying.
    waiting: AtomicUsize,
    /// When the table last became unavailable (for the log line when it is back).
    since: Mutex<Option<Instant>>,
}

impl TableStats {
    pub(crate) fn sent(&self, keys: usize) {
        self.requests.fetch_add(1, Relaxed);
        self.keys.fetch_add(keys as u64, Relaxed);
        self.max_keys.fetch_max(keys as u64, Relaxed);
    }

    /// A request spent its quick retries: logged when it is the first such
    /// one; the guard logs when the last one is answered.
    pub(crate) fn start_waiting<'a>(&'a self, table: &'a str, error: Option<&LookupError>) -> Waiting<'a> {
        if self.waiting.fetch_add(1, Relaxed) == 0 {
            *self.since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            let error = error.map(ToString::to_string).unwrap_or_default();
            tracing::warn!(table, %error, "lookup table unavailable: its requests are retried every second at most, their events wait");
        }
        Waiting { stats: self, table }
    }

    /// Requests past their quick retries now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Relaxed)
    }
}

/// A request that is past its quick retries (see [`TableStats::start_waiting`]).
pub(crate) struct Waiting<'a> {
    stats: &'a TableStats,
    table: &'a str,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.stats.waiting.fetch_sub(1, Relaxed) == 1 {
            let since = self.stats.since.lock().unwrap_or_else(|e| e.into_inner()).take();
            let after = since.map(|s| format!("{:.1?}", s.elapsed())).unwrap_or_default();
            tracing::info!(table = self.table, after, "lookup table answers again");
        }
    }
}

/// Counters of one `lookup-join` step (all its workers).
#[derive(Default)]
pub struct StepStats {
    /// Events that came in.
    pub events: AtomicU64,
    /// Events without a key (they follow the miss policy).
    pub no_key: AtomicU64,
    /// Keys answered by the worker's cache (a cached miss included).
    pub cache_hits: AtomicU64,
    /// Keys already asked for by another event still waiting (single flight).
    pub joined: AtomicU64,
    /// Keys answered by the request of an earlier step of a chain on the same table.
    pub prefetched: AtomicU64,
    /// Keys this step put into requests (each once per worker while in flight).
    pub asked: AtomicU64,
    /// Events whose key the table holds.
    pub found: AtomicU64,
    /// Events whose key the table lacks.
    pub missing: AtomicU64,
    /// Events whose request was given up (`miss_after_ms`).
    pub unavailable: AtomicU64,
    /// From an event's arrival at the step to its leaving it.
    pub latency: Histogram,
}

/// A `lookup-join` step's figures at one moment, with its table's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LookupSnapshot {
    pub table: String,
    pub events: u64,
    pub no_key: u64,
    pub cache_hits: u64,
    pub joined: u64,
    pub prefetched: u64,
    pub asked: u64,
    pub found: u64,
    pub missing: u64,
    pub unavailable: u64,
    pub latency_p50: Option<Duration>,
    pub latency_p99: Option<Duration>,
    pub latency_max: Option<Duration>,
    /// The table's (shared by every step reading it).
    pub requests: u64,
    pub request_keys: u64,
    pub max_request_keys: u64,
    pub retries: u64,
    pub failed_requests: u64,
    pub request_p99: Option<Duration>,
    /// Per copy of the table (A, B, ...), in the order of `backends`.
    pub copies: Vec<CopySnapshot>,
    /// Requests answered by another copy than the first asked.
    pub failovers: u64,
}

impl LookupSnapshot {
    /// Keys answered without a request of their own, of all keys the step needed.
    pub fn cache_hit_rate(&self) -> f64 {
        let all = self.cache_hits + self.joined + self.prefetched + self.asked;
        if all == 0 {
            0.0
        } else {
            self.cache_hits as f64 / all as f64
        }
    }
}

/// One copy of a table at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CopySnapshot {
    pub name: String,
    pub requests: u64,
    pub failures: u64,
    /// Times its circuit breaker opened, and closed again.
    pub opened: u64,
    pub closed: u64,
    /// Whether its breaker is open (or half open) now.
    pub open: bool,
}

/// A step's stats and its table's, as the run's summary reads them.
pub struct LookupStats {
    pub table: Arc<super::Table>,
    pub step: Arc<StepStats>,
}

impl LookupStats {
    pub fn snapshot(&self) -> LookupSnapshot {
        let (s, t) = (&self.step, &self.table.stats);
        let copies = self.table.failover.as_ref().map_or_else(Vec::new, |f| copies_of(f));
        LookupSnapshot {
            table: self.table.name.clone(),
            events: s.events.load(Relaxed),
            no_key: s.no_key.load(Relaxed),
            cache_hits: s.cache_hits.load(Relaxed),
            joined: s.joined.load(Relaxed),
            prefetched: s.prefetched.load(Relaxed),
            asked: s.asked.load(Relaxed),
            found: s.found.load(Relaxed),
            missing: s.missing.load(Relaxed),
            unavailable: s.unavailable.load(Relaxed),
            latency_p50: s.latency.quantile(0.5),
            latency_p99: s.latency.quantile(0.99),
            latency_max: s.latency.quantile(1.0),
            requests: t.requests.load(Relaxed),
            request_keys: t.keys.load(Relaxed),
            max_request_keys: t.max_keys.load(Relaxed),
            retries: t.retries.load(Relaxed),
            failed_requests: t.failed.load(Relaxed),
            request_p99: t.latency.quantile(0.99),
            failovers: self.table.failover.as_ref().map_or(0, |f| f.failovers.load(Relaxed)),
            copies,
        }
    }
}

fn copies_of(f: &FailoverBackend) -> Vec<CopySnapshot> {
    (0..f.copies())
        .map(|i| {
            let c = f.stats(i);
            CopySnapshot {
                name: f.copy_name(i).to_string(),
                requests: c.requests.load(Relaxed),
                failures: c.failures.load(Relaxed),
                opened: c.opened.load(Relaxed),
                closed: c.closed.load(Relaxed),
                open: f.is_open(i),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_bucket_of_the_truth() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).unwrap().as_micros() as f64;
        let p99 = h.quantile(0.99).unwrap().as_micros() as f64;
        assert!((500.0..=500.0 * 1.1).contains(&p50), "{p50}");
        assert!((990.0..=990.0 * 1.1).contains(&p99), "{p99}");
        h.record_n(Duration::from_secs(3), 10_000);
        assert!(h.quantile(0.5).unwrap() >= Duration::from_secs(3), "most values are now 3 s");
        assert_eq!(h.count(), 11_000);
    }
}

impl std::fmt::Debug for LookupStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupStats").field("table", &self.table.name).finish_non_exhaustive()
    }
}
