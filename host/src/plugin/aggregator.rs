//! Runs user-defined aggregate functions (the `aggregator` world) over
//! accumulators the host owns: the caller (a window-aggregate step) keeps
//! every accumulator's bytes, hands the touched ones in with a batch, and
//! stores what comes back. One call per batch, per merge of many windows,
//! per finish of many windows; never one per record.
//!
//! A failed `add` call (trap, timeout, out of memory, broken contract)
//! leaves the caller's accumulators as they were (they are the host's
//! bytes), so the batch is isolated as `isolation.rs` does for transforms:
//! the culprits are found by calls whose results are thrown away, then one
//! call folds the events left, in arrival order, into the old accumulators.
//! Only the culprits fail, each to be dead-lettered alone by the caller.

use std::ops::Range;
use std::sync::Arc;

use super::columns::{empty_batch, items, pack_iter, push_item};
use super::instance::Supervisor;
use super::isolation::isolate;
use super::loaded::LoadedPlugin;
use super::outcome::{Failure, FailureKind, PluginStats};
use super::registry::Watch;
use super::runner::Runner;
use super::wit::{AddOutput, Aggregator, ByteColumn, EventBatch};
use crate::event::Event;

/// What [`AggregatorRunner::add`] made of a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct AddResult {
    /// The accumulator of every group, in the order of the states handed
    /// in: the new bytes, or the old ones where nothing could be folded.
    pub states: Vec<Vec<u8>>,
    /// The events that failed, ascending by index in the batch, with why
    /// (`FailureKind::Error`: the plugin refused it; `Limit`: its group's
    /// accumulator would outgrow `max_state_bytes`; `Trap`, `Timeout`,
    /// `OutOfMemory`: found by isolation). A failed event changed no
    /// accumulator.
    pub failed: Vec<(usize, Failure)>,
}

/// One instance of an aggregator plugin (one `Store`). Not shared.
pub struct AggregatorRunner {
    runner: Runner<Aggregator>,
    /// `create`'s bytes for the version running (cleared by a hot swap).
    empty: Option<Vec<u8>>,
    /// The columns every `add` call is packed into (buffers reused).
    columns: AddColumns,
}

/// The WIT's columns of an `add` call.
struct AddColumns {
    states: ByteColumn,
    events: EventBatch,
    groups: Vec<u32>,
}

impl AddColumns {
    /// One `add` call; its output checked against the contract (one state
    /// per input state, errors ascending and in range).
    fn call<'a>(
        &mut self,
        supervisor: &mut Supervisor<Aggregator>,
        states: impl Iterator<Item = &'a [u8]>,
        events: impl Iterator<Item = &'a Event>,
        groups: impl Iterator<Item = u32>,
    ) -> Result<AddOutput, Failure> {
        self.states.data.clear();
        self.states.ends.clear();
        for state in states {
            push_item(&mut self.states, state);
        }
        pack_iter(&mut self.events, events);
        self.groups.clear();
        self.groups.extend(groups);
        let (states, events, groups) = (&self.states, &self.events, &self.groups);
        let output = supervisor.call(|plugin, store| plugin.call_add(store, states, events, groups))?;
        let n_states = self.states.ends.len();
        let n_events = self.groups.len();
        check_add_output(&output, n_states, n_events).map_err(contract)?;
        Ok(output)
    }
}

/// Why an `add` output breaks the contract, if it does.
fn check_add_output(output: &AddOutput, n_states: usize, n_events: usize) -> Result<(), String> {
    let _ = items(&output.states, n_states, "the accumulators")?;
    let mut previous: Option<u32> = None;
    for e in &output.errors {
        if e.event as usize >= n_events {
            return Err(format!("an error names event {} of a {n_events}-event batch", e.event));
        }
        if previous.is_some_and(|p| p >= e.event) {
            return Err(format!("errors are not in ascending order ({} after {})", e.event, previous.unwrap_or(0)));
        }
        previous = Some(e.event);
    }
    Ok(())
}

fn contract(message: String) -> Failure {
    Failure::new(FailureKind::Trap, format!("the plugin broke the contract: {message}"))
}

/// The accumulators a subset of a batch's events touches: `touched[j]` is
/// the caller's index of the call's state `j` (first-touch order), and
/// `local[i]` the call's group of the subset's event `i`.
struct Subset {
    touched: Vec<u32>,
    local: Vec<u32>,
}

impl Subset {
    fn of(events: &[usize], groups: &[u32], n_states: usize) -> Subset {
        let mut slot = vec![u32::MAX; n_states];
        let mut touched = Vec::new();
        let local = events
            .iter()
            .map(|&i| {
                let g = groups[i] as usize;
                if slot[g] == u32::MAX {
                    slot[g] = touched.len() as u32;
                    touched.push(g as u32);
                }
                slot[g]
            })
            .collect();
        Subset { touched, local }
    }
}

impl AggregatorRunner {
    pub(crate) fn new(supervisor: Supervisor<Aggregator>) -> Self {
        AggregatorRunner {
            runner: Runner::new(supervisor),
            empty: None,
            columns: AddColumns { states: ByteColumn { data: Vec::new(), ends: Vec::new() }, events: empty_batch(), groups: Vec::new() },
        }
    }

    pub(crate) fn watching(mut self, watch: Watch) -> Self {
        self.runner = self.runner.watching(watch);
        self
    }

    /// Counts its calls under step `step` (the metrics' `step` label).
    pub fn for_step(mut self, step: &str) -> Self {
        self.runner.supervisor.set_step(step);
        self
    }

    pub fn plugin(&self) -> &Arc<LoadedPlugin> {
        self.runner.plugin()
    }

    /// Switches to a swapped-in version between calls. The accumulators stay
    /// the caller's; the new version must read the old one's bytes.
    fn follow(&mut self) {
        if self.runner.follow_swaps() {
            self.empty = None;
        }
    }

    fn max_state_bytes(&self) -> usize {
        self.plugin().limits().max_state_bytes
    }

    /// The empty accumulator: asked of the plugin once per version, then
    /// the same bytes every time.
    pub fn create(&mut self) -> Result<Vec<u8>, Failure> {
        self.follow();
        if let Some(empty) = &self.empty {
            return Ok(empty.clone());
        }
        let supervisor = &mut self.runner.supervisor;
        supervisor.begin_batch();
        let bytes = supervisor.call(|plugin, store| plugin.call_create(store)).inspect_err(|f| supervisor.stats().count_failure(f.kind))?;
        let max = self.max_state_bytes();
        if bytes.len() > max {
            self.runner.supervisor.stats().count_failure(FailureKind::Limit);
            return Err(over_limit("the empty accumulator", bytes.len(), max));
        }
        self.empty = Some(bytes.clone());
        Ok(bytes)
    }

    /// Folds `events` into `states`: event `i` into `states[groups[i]]`,
    /// the events of one group in batch order. One call for the batch. On a
    /// failed call the batch is isolated (see the module doc); a plugin's
    /// error for one event fails that event; a group whose accumulator
    /// would outgrow `limits.max_state_bytes` keeps its old bytes and its
    /// events fail with `FailureKind::Limit`. `groups` must have one entry
    /// per event, each an index in `states` (otherwise every event fails:
    /// a bug of the caller, reported, not a panic).
    pub fn add(&mut self, mut states: Vec<Vec<u8>>, events: &[Event], groups: &[u32]) -> AddResult {
        let n = events.len();
        if n == 0 {
            return AddResult { states, failed: Vec::new() };
        }
        self.follow();
        let max = self.max_state_bytes();
        let stats_events = |runner: &Runner<Aggregator>| PluginStats::add(&runner.supervisor.stats().events_in, n as u64);
        stats_events(&self.runner);
        if let Some(message) = bad_groups(states.len(), n, groups) {
            let failure = Failure::new(FailureKind::Error, message);
            let failed: Vec<(usize, Failure)> = (0..n).map(|i| (i, failure.clone())).collect();
            self.count(&failed);
            return AddResult { states, failed };
        }
        let supervisor = &mut self.runner.supervisor;
        supervisor.begin_batch();
        let whole = self.columns.call(
            supervisor,
            states.iter().map(Vec::as_slice),
            events.iter(),
            groups.iter().copied(),
        );
        let failed = match whole {
            Ok(output) => apply(output, &mut states, None, None, groups, max),
            Err(first) => {
                tracing::debug!(plugin = self.plugin().name(), inputs = n, %first, "add call failed; isolating");
                self.isolate_add(&mut states, events, groups, first, max)
            }
        };
        self.count(&failed);
        AddResult { states, failed }
    }

    /// Finds the culprits of a failed `add` (calls on parts of the batch,
    /// each from the old accumulators, results thrown away), then folds the
    /// events left in one call, in order. Returns the failed events.
    fn isolate_add(&mut self, states: &mut [Vec<u8>], events: &[Event], groups: &[u32], first: Failure, max: usize) -> Vec<(usize, Failure)> {
        let supervisor = &mut self.runner.supervisor;
        PluginStats::add(&supervisor.stats().retried_batches, 1);
        let columns = &mut self.columns;
        let old: &[Vec<u8>] = states;
        let probe = |supervisor: &mut Supervisor<Aggregator>, range: Range<usize>| {
            let indices: Vec<usize> = range.clone().collect();
            let subset = Subset::of(&indices, groups, old.len());
            columns
                .call(
                    supervisor,
                    subset.touched.iter().map(|&g| old[g as usize].as_slice()),
                    events[range.clone()].iter(),
                    subset.local.iter().copied(),
                )
                .map(|_| vec![(); range.len()])
        };
        let isolated = isolate(supervisor, events.len(), first, probe);
        let mut failed = Vec::new();
        let mut left = Vec::new();
        for (i, r) in isolated.into_iter().enumerate() {
            match r {
                Ok(()) => left.push(i),
                Err(f) => failed.push((i, f)),
            }
        }
        if left.is_empty() {
            return failed;
        }
        let subset = Subset::of(&left, groups, states.len());
        let fold = self.columns.call(
            &mut self.runner.supervisor,
            subset.touched.iter().map(|&g| states[g as usize].as_slice()),
            left.iter().map(|&i| &events[i]),
            subset.local.iter().copied(),
        );
        match fold {
            Ok(output) => failed.extend(apply(output, states, Some(&subset.touched), Some(&left), groups, max)),
            Err(f) => {
                let failure = Failure::new(
                    f.kind,
                    format!("not isolated: the call over the {} events left after isolation failed too: {}", left.len(), f.message),
                );
                PluginStats::add(&self.runner.supervisor.stats().not_isolated, left.len() as u64);
                failed.extend(left.iter().map(|&i| (i, failure.clone())));
            }
        }
        failed.sort_by_key(|(i, _)| *i);
        failed
    }

    fn count(&self, failed: &[(usize, Failure)]) {
        let stats = self.runner.supervisor.stats();
        for (_, f) in failed {
            stats.count_failure(f.kind);
        }
    }

    /// Merges accumulators in one call: `states[i]` into output `into[i]`;
    /// `outputs` outputs, each the merge of the inputs naming it (input
    /// order), the empty accumulator for an output no input names. The
    /// call succeeds or fails as a whole (the inputs are still the
    /// caller's); an output over `max_state_bytes` fails it with `Limit`.
    pub fn merge(&mut self, states: Vec<Vec<u8>>, into: &[u32], outputs: u32) -> Result<Vec<Vec<u8>>, Failure> {
        self.follow();
        let result = self.merge_call(&states, into, outputs);
        if let Err(f) = &result {
            self.runner.supervisor.stats().count_failure(f.kind);
        }
        result
    }

    fn merge_call(&mut self, states: &[Vec<u8>], into: &[u32], outputs: u32) -> Result<Vec<Vec<u8>>, Failure> {
        if into.len() != states.len() {
            return Err(Failure::new(FailureKind::Error, format!("merge: {} targets for {} accumulators", into.len(), states.len())));
        }
        if let Some(bad) = into.iter().find(|&&o| o >= outputs) {
            return Err(Failure::new(FailureKind::Error, format!("merge: target {bad} of {outputs} outputs")));
        }
        let column = &mut self.columns.states;
        column.data.clear();
        column.ends.clear();
        for state in states {
            push_item(column, state);
        }
        let supervisor = &mut self.runner.supervisor;
        supervisor.begin_batch();
        let column = &self.columns.states;
        let merged = supervisor
            .call(|plugin, store| plugin.call_merge(store, column, into, outputs))?
            .map_err(|message| Failure::new(FailureKind::Error, format!("merge failed: {message}")))?;
        let max = self.max_state_bytes();
        let out: Vec<Vec<u8>> = items(&merged, outputs as usize, "the merged accumulators").map_err(contract)?.map(<[u8]>::to_vec).collect();
        if let Some(big) = out.iter().find(|s| s.len() > max) {
            return Err(over_limit("a merged accumulator", big.len(), max));
        }
        Ok(out)
    }

    /// The value of each accumulator, in order: its JSON, or why it has
    /// none (the plugin's error, invalid JSON, or a trap of the one
    /// accumulator the call was isolated to). `partial` (an early firing)
    /// is handed to the plugin. One call; a failed one is isolated.
    pub fn finish(&mut self, states: Vec<Vec<u8>>, partial: bool) -> Vec<Result<serde_json::Value, String>> {
        if states.is_empty() {
            return Vec::new();
        }
        self.follow();
        let supervisor = &mut self.runner.supervisor;
        supervisor.begin_batch();
        let column = &mut self.columns.states;
        let mut call = |supervisor: &mut Supervisor<Aggregator>, range: Range<usize>| {
            column.data.clear();
            column.ends.clear();
            for state in &states[range.clone()] {
                push_item(column, state);
            }
            let column = &*column;
            let raw = supervisor.call(|plugin, store| plugin.call_finish(store, column, partial))?;
            if raw.len() != range.len() {
                return Err(contract(format!("{} results for {} accumulators", raw.len(), range.len())));
            }
            Ok(raw)
        };
        let raw = match call(supervisor, 0..states.len()) {
            Ok(raw) => raw.into_iter().map(Ok).collect(),
            Err(first) => {
                PluginStats::add(&supervisor.stats().retried_batches, 1);
                isolate(supervisor, states.len(), first, call)
            }
        };
        let stats = self.runner.supervisor.stats();
        let mut ok = 0u64;
        let results = raw
            .into_iter()
            .map(|r| {
                let value = match r {
                    Ok(Ok(bytes)) => serde_json::from_slice(&bytes).map_err(|e| {
                        stats.count_failure(FailureKind::Error);
                        format!("finish returned invalid JSON: {e}")
                    }),
                    Ok(Err(message)) => {
                        stats.count_failure(FailureKind::Error);
                        Err(message)
                    }
                    Err(failure) => {
                        stats.count_failure(failure.kind);
                        Err(failure.to_string())
                    }
                };
                ok += value.is_ok() as u64;
                value
            })
            .collect();
        PluginStats::add(&stats.events_out, ok);
        results
    }
}

/// Why `groups` does not fit a batch of `n` events over `n_states`
/// accumulators, if it does not.
fn bad_groups(n_states: usize, n: usize, groups: &[u32]) -> Option<String> {
    if groups.len() != n {
        return Some(format!("add: {} groups for {n} events", groups.len()));
    }
    groups
        .iter()
        .find(|&&g| g as usize >= n_states)
        .map(|g| format!("add: group {g} of {n_states} accumulators"))
}

fn over_limit(what: &str, bytes: usize, max: usize) -> Failure {
    Failure::new(FailureKind::Limit, format!("{what} is {bytes} bytes, over limits.max_state_bytes = {max}"))
}

/// Stores a checked `add` output into the caller's accumulators and returns
/// the failed events (caller's indices, ascending). `touched` maps the
/// call's states to the caller's (`None`: the same), `events` the call's
/// events to the batch's (`None`: the same).
fn apply(
    output: AddOutput,
    states: &mut [Vec<u8>],
    touched: Option<&[u32]>,
    events: Option<&[usize]>,
    groups: &[u32],
    max: usize,
) -> Vec<(usize, Failure)> {
    let state_of = |j: usize| touched.map_or(j, |t| t[j] as usize);
    let event_of = |i: usize| events.map_or(i, |e| e[i]);
    let n_calls_states = touched.map_or(states.len(), <[u32]>::len);
    let n_call_events = events.map_or(groups.len(), <[usize]>::len);
    // Checked by `AddColumns::call`.
    let Ok(new) = items(&output.states, n_calls_states, "") else { return Vec::new() };
    let mut over: Vec<(usize, usize)> = Vec::new();
    for (j, bytes) in new.enumerate() {
        let state = &mut states[state_of(j)];
        if bytes.len() > max {
            over.push((state_of(j), bytes.len()));
        } else {
            state.clear();
            state.extend_from_slice(bytes);
        }
    }
    let mut failed: Vec<(usize, Failure)> = output
        .errors
        .into_iter()
        .map(|e| (event_of(e.event as usize), Failure::new(FailureKind::Error, e.message)))
        .collect();
    if !over.is_empty() {
        let refused: Vec<usize> = failed.iter().map(|(i, _)| *i).collect();
        for i in (0..n_call_events).map(event_of) {
            if let Some(&(_, bytes)) = over.iter().find(|(g, _)| *g == groups[i] as usize) {
                if refused.binary_search(&i).is_err() {
                    failed.push((i, over_limit("its group's accumulator", bytes, max)));
                }
            }
        }
        failed.sort_by_key(|(i, _)| *i);
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::wit::EventError;

    fn column(items: &[&[u8]]) -> ByteColumn {
        let mut c = ByteColumn { data: Vec::new(), ends: Vec::new() };
        for i in items {
            push_item(&mut c, i);
        }
        c
    }

    #[test]
    fn subset_maps_groups_in_first_touch_order() {
        let s = Subset::of(&[1, 2, 4], &[0, 3, 1, 0, 3], 4);
        assert_eq!(s.touched, vec![3, 1]);
        assert_eq!(s.local, vec![0, 1, 0]);
    }

    #[test]
    fn add_output_contract() {
        let ok = AddOutput { states: column(&[b"a", b"bc"]), errors: vec![EventError { event: 1, message: "x".into() }] };
        assert!(check_add_output(&ok, 2, 3).is_ok());
        assert!(check_add_output(&ok, 3, 3).unwrap_err().contains("accumulators"));
        assert!(check_add_output(&ok, 2, 1).unwrap_err().contains("names event 1"));
        let twice = AddOutput {
            states: column(&[]),
            errors: vec![EventError { event: 1, message: "x".into() }, EventError { event: 1, message: "y".into() }],
        };
        assert!(check_add_output(&twice, 0, 3).unwrap_err().contains("ascending"));
    }

    #[test]
    fn apply_maps_back_and_keeps_old_bytes_over_the_limit() {
        // Batch: events 0..5 in groups [0, 1, 0, 2, 1]; the call covered events 1, 3, 4
        // (states touched: 1, then 2) and returned a too-big state for group 1.
        let groups = [0, 1, 0, 2, 1];
        let mut states = vec![b"s0".to_vec(), b"s1".to_vec(), b"s2".to_vec()];
        let output = AddOutput { states: column(&[b"0123456789", b"new2"]), errors: vec![EventError { event: 2, message: "bad".into() }] };
        let failed = apply(output, &mut states, Some(&[1, 2]), Some(&[1, 3, 4]), &groups, 8);
        assert_eq!(states, vec![b"s0".to_vec(), b"s1".to_vec(), b"new2".to_vec()]);
        let summary: Vec<(usize, FailureKind)> = failed.iter().map(|(i, f)| (*i, f.kind)).collect();
        assert_eq!(summary, vec![(1, FailureKind::Limit), (4, FailureKind::Error)]);
        assert!(failed[0].1.message.contains("10 bytes, over limits.max_state_bytes = 8"), "{}", failed[0].1.message);
    }

    #[test]
    fn bad_groups_are_reported() {
        assert!(bad_groups(2, 3, &[0, 1]).unwrap().contains("2 groups for 3 events"));
        assert!(bad_groups(2, 2, &[0, 2]).unwrap().contains("group 2 of 2"));
        assert!(bad_groups(2, 2, &[1, 1]).is_none());
    }
}
