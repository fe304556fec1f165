//! Finding the culprits of a failed batch, within a budget. One policy for
//! the three runners (transform, udf, joiner).
//!
//! When a batch call fails as a whole (trap, timeout, out of memory, broken
//! contract), the batch is isolated:
//!
//! 1. **Probes.** The first, middle and last inputs are tried alone. If the
//!    batch and every probe failed, the plugin is taken to fail every input
//!    it gets: the rest of the batch is not isolated but failed with the
//!    reason `not isolated: the plugin failed every input tried (3 of 3) and
//!    the whole batch`, under the kind of the last failure. A plugin that
//!    times out on everything so costs 4 budgets per batch.
//! 2. **Bisection.** Otherwise the ranges between the probes are tried; a
//!    range that fails is split in halves, recursively, and an input that
//!    fails alone is a culprit. k culprits in n inputs cost O(k log n) calls.
//! 3. **Budget.** Failed calls of one batch of n inputs (the batch call
//!    included) may spend at most [`failed_budgets`]`(n)` = 4 + 2 ⌈log2 n⌉
//!    batch budgets (24 for 1024 inputs: enough to find two inputs that loop,
//!    each costing one failed call per level of the bisection). A timeout
//!    counts as one budget, any other failure as the time it took (with the
//!    rebuild of the instance). Past it, every input not yet decided is
//!    failed with `not isolated: isolating this batch used up its budget ...`.
//! 4. An instance that cannot be rebuilt ends the isolation at once: the
//!    inputs left fail with the rebuild's failure.
//!
//! Inputs of ranges that succeeded come out; the runner then applies its
//! output limits in input order, as for a batch that succeeded whole.

use std::ops::Range;
use std::time::Duration;

use super::outcome::{Failure, FailureKind};

/// How many batch budgets the failed calls of one batch of `n` inputs may
/// spend in all: 4 + 2 ⌈log2 n⌉.
pub fn failed_budgets(n: usize) -> u32 {
    4 + 2 * n.max(1).next_power_of_two().trailing_zeros()
}

/// What isolation needs to know of the supervisor between calls.
pub(crate) trait Metered {
    /// Time the failed calls of the current batch have spent (a timeout
    /// counts as one budget).
    fn failed_time(&self) -> Duration;
    /// The time budget of one call (`batch_timeout_ms`).
    fn call_budget(&self) -> Duration;
    /// Set when the instance cannot be rebuilt for the rest of the batch.
    fn broken(&self) -> bool;
    /// Counts inputs failed without being isolated.
    fn count_not_isolated(&self, n: usize);
}

/// Isolates the culprits of a batch of `n` inputs whose call failed with
/// `first`. `call(meter, range)` calls the plugin on the inputs of `range`
/// alone and returns exactly one result per input (or the call's failure).
/// Returns exactly one result per input, in order.
pub(crate) fn isolate<M: Metered, T>(
    meter: &mut M,
    n: usize,
    first: Failure,
    mut call: impl FnMut(&mut M, Range<usize>) -> Result<Vec<T>, Failure>,
) -> Vec<Result<T, Failure>> {
    let mut decided: Vec<Option<Result<T, Failure>>> = (0..n).map(|_| None).collect();
    if n == 1 {
        decided[0] = Some(Err(first));
        return finish(decided);
    }
    let mut last = first;
    let mut try_range = |meter: &mut M, range: Range<usize>, decided: &mut [Option<Result<T, Failure>>]| {
        let expected = range.len();
        let result = call(meter, range.clone()).and_then(|results| {
            if results.len() == expected {
                Ok(results)
            } else {
                Err(Failure::new(
                    FailureKind::Trap,
                    format!("the plugin broke the contract: {} results for {expected} inputs", results.len()),
                ))
            }
        });
        match result {
            Ok(results) => {
                for (slot, r) in decided[range].iter_mut().zip(results) {
                    *slot = Some(Ok(r));
                }
                None
            }
            Err(failure) => Some(failure),
        }
    };

    let probes = probe_positions(n);
    let mut failed_probes = 0;
    for &p in &probes {
        if let Some(stop) = stop_reason(meter, n, &last) {
            return give_up(meter, decided, stop);
        }
        if let Some(failure) = try_range(&mut *meter, p..p + 1, &mut decided[..]) {
            failed_probes += 1;
            decided[p] = Some(Err(failure.clone()));
            last = failure;
        }
    }
    if failed_probes == probes.len() {
        let k = probes.len();
        let reason = Failure::new(
            last.kind,
            format!(
                "not isolated: the plugin failed every input tried ({k} of {k}) and the whole batch; last failure: {}",
                last.message
            ),
        );
        return give_up(meter, decided, reason);
    }

    // Depth first, left first: the gaps between probes, then halves.
    let mut todo: Vec<Range<usize>> = gaps(n, &probes);
    todo.reverse();
    while let Some(range) = todo.pop() {
        if let Some(stop) = stop_reason(meter, n, &last) {
            return give_up(meter, decided, stop);
        }
        if let Some(failure) = try_range(&mut *meter, range.clone(), &mut decided[..]) {
            if range.len() == 1 {
                decided[range.start] = Some(Err(failure.clone()));
            } else {
                let mid = range.start + range.len() / 2;
                todo.push(mid..range.end);
                todo.push(range.start..mid);
            }
            last = failure;
        }
    }
    finish(decided)
}

/// The first, middle and last positions (distinct, ascending).
fn probe_positions(n: usize) -> Vec<usize> {
    let mut probes = vec![0, n / 2, n - 1];
    probes.dedup();
    probes
}

/// The ranges of `0..n` between the (ascending) probes.
fn gaps(n: usize, probes: &[usize]) -> Vec<Range<usize>> {
    let mut start = 0;
    let mut gaps = Vec::new();
    for &p in probes.iter().chain(std::iter::once(&n)) {
        if p > start {
            gaps.push(start..p);
        }
        start = p + 1;
    }
    gaps
}

/// Why isolation must stop before the next call, if it must.
fn stop_reason<M: Metered>(meter: &M, n: usize, last: &Failure) -> Option<Failure> {
    if meter.broken() {
        return Some(Failure::new(last.kind, format!("not isolated: {}", last.message)));
    }
    let budgets = failed_budgets(n);
    let budget = meter.call_budget() * budgets;
    (meter.failed_time() >= budget).then(|| {
        Failure::new(
            last.kind,
            format!(
                "not isolated: isolating this batch used up its budget ({budgets} x batch_timeout_ms \
                 = {} ms of failed calls); last failure: {}",
                budget.as_millis(),
                last.message
            ),
        )
    })
}

/// Fails every input not decided yet with `reason`.
fn give_up<M: Metered, T>(meter: &M, mut decided: Vec<Option<Result<T, Failure>>>, reason: Failure) -> Vec<Result<T, Failure>> {
    let left = decided.iter().filter(|d| d.is_none()).count();
    if left > 0 {
        tracing::warn!(inputs = left, reason = %reason, "the isolation of a failed batch gave up");
        meter.count_not_isolated(left);
    }
    for slot in decided.iter_mut().filter(|d| d.is_none()) {
        *slot = Some(Err(reason.clone()));
    }
    finish(decided)
}

fn finish<T>(decided: Vec<Option<Result<T, Failure>>>) -> Vec<Result<T, Failure>> {
    decided
        .into_iter()
        .map(|d| d.unwrap_or_else(|| Err(Failure::new(FailureKind::Trap, "not decided by isolation"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A fake plugin: inputs in `bad` fail any call that includes them;
    /// every failed call costs `cost` (a timeout costs the whole budget).
    struct Fake {
        bad: Vec<bool>,
        cost: Duration,
        spent: Duration,
        calls: usize,
        not_isolated: Cell<usize>,
    }

    impl Metered for Fake {
        fn failed_time(&self) -> Duration {
            self.spent
        }
        fn call_budget(&self) -> Duration {
            Duration::from_millis(100)
        }
        fn broken(&self) -> bool {
            false
        }
        fn count_not_isolated(&self, n: usize) {
            self.not_isolated.set(self.not_isolated.get() + n);
        }
    }

    fn run(bad: Vec<bool>, cost: Duration) -> (Vec<Result<usize, Failure>>, Fake) {
        let n = bad.len();
        let mut fake = Fake { bad, cost, spent: cost, calls: 1, not_isolated: Cell::new(0) };
        let out = isolate(&mut fake, n, Failure::new(FailureKind::Timeout, "batch"), |fake, range| {
            fake.calls += 1;
            if fake.bad[range.clone()].iter().any(|b| *b) {
                fake.spent += fake.cost;
                Err(Failure::new(FailureKind::Timeout, format!("call on {range:?}")))
            } else {
                Ok(range.collect())
            }
        });
        (out, fake)
    }

    #[test]
    fn bisection_finds_exactly_the_culprits_in_few_calls() {
        for culprits in [vec![0], vec![1023], vec![5, 700], vec![3, 4, 5, 600, 601, 1000]] {
            let mut bad = vec![false; 1024];
            culprits.iter().for_each(|&c| bad[c] = true);
            let (out, fake) = run(bad, Duration::ZERO);
            for (i, r) in out.iter().enumerate() {
                assert_eq!(r.is_err(), culprits.contains(&i), "input {i} with culprits {culprits:?}");
                if let Ok(v) = r {
                    assert_eq!(*v, i);
                }
            }
            let bound = 1 + 3 + 2 * culprits.len() * 11;
            assert!(fake.calls <= bound, "{} calls for {culprits:?} (bound {bound})", fake.calls);
            assert_eq!(fake.not_isolated.get(), 0);
        }
    }

    #[test]
    fn a_plugin_failing_everything_costs_the_batch_and_three_probes() {
        let (out, fake) = run(vec![true; 1024], Duration::from_millis(100));
        assert_eq!(fake.calls, 4);
        assert_eq!(fake.not_isolated.get(), 1021);
        let reason = out[1].as_ref().unwrap_err();
        assert_eq!(reason.kind, FailureKind::Timeout);
        assert!(reason.message.starts_with("not isolated: the plugin failed every input tried (3 of 3)"), "{reason}");
        assert!(out.iter().all(|r| r.is_err()));
    }

    #[test]
    fn the_budget_stops_a_plugin_failing_most_inputs() {
        // Every input but the probes fails, each failure a timeout.
        let mut bad = vec![true; 1024];
        for p in [0, 512, 1023] {
            bad[p] = false;
        }
        let (out, fake) = run(bad, Duration::from_millis(100));
        assert_eq!(failed_budgets(1024), 24);
        assert_eq!(fake.calls, 1 + 3 + 23, "the batch, 3 probes, then 23 failed calls fill the 24 budgets");
        assert!(out[0].is_ok() && out[512].is_ok() && out[1023].is_ok());
        assert_eq!(out.iter().filter(|r| r.is_err()).count(), 1021);
        // Depth first, those 23 calls isolated inputs 1..=8.
        assert_eq!(fake.not_isolated.get(), 1021 - 8);
        assert!((1..=8).all(|i| out[i].as_ref().unwrap_err().message.starts_with("call on")));
        let reason = out[1021].as_ref().unwrap_err();
        assert!(reason.message.contains("used up its budget (24 x batch_timeout_ms = 2400 ms"), "{reason}");
    }

    #[test]
    fn a_looping_culprit_is_isolated_within_the_budget() {
        // One input that times out costs a failed call per bisection level.
        for culprit in [1, 300, 511, 513, 1022] {
            let mut bad = vec![false; 1024];
            bad[culprit] = true;
            let (out, fake) = run(bad, Duration::from_millis(100));
            assert_eq!(fake.not_isolated.get(), 0, "culprit {culprit}");
            assert_eq!(out.iter().filter(|r| r.is_err()).count(), 1);
            assert!(out[culprit].is_err());
            assert!(fake.spent <= Duration::from_millis(100) * 12, "culprit {culprit}: {:?}", fake.spent);
        }
    }

    #[test]
    fn the_budget_grows_with_the_depth_of_the_bisection() {
        assert_eq!([1, 2, 3, 4, 1000, 1024, 1025].map(failed_budgets), [4, 6, 8, 8, 24, 24, 26]);
    }

    #[test]
    fn small_batches_are_decided_by_their_probes() {
        let (out, fake) = run(vec![true, false], Duration::ZERO);
        assert!(out[0].is_err() && out[1].is_ok());
        assert_eq!(fake.calls, 3);
        let (out, fake) = run(vec![true], Duration::ZERO);
        assert!(out[0].is_err());
        assert_eq!(fake.calls, 1);
    }
}
