//! Aggregator plugins (user-defined aggregate functions, UDAFs): a state
//! type and three plain functions over it.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use streamhost_sdk::aggregator::Aggregate;
//! use streamhost_sdk::{Error, Event};
//!
//! /// Clicks and impressions of a group.
//! pub struct Ctr;
//!
//! #[derive(Default, Serialize, Deserialize)]
//! pub struct Counts { clicks: u64, impressions: u64 }
//!
//! impl Aggregate for Ctr {
//!     type State = Counts;
//!     fn add(state: &mut Counts, event: &Event) -> Result<(), Error> {
//!         let v: serde_json::Value = event.json()?;
//!         if v["type"] == "click" { state.clicks += 1 } else { state.impressions += 1 }
//!         Ok(())
//!     }
//!     fn merge(into: &mut Counts, other: Counts) {
//!         into.clicks += other.clicks;
//!         into.impressions += other.impressions;
//!     }
//!     fn finish(state: &Counts) -> serde_json::Value {
//!         serde_json::json!({"clicks": state.clicks, "impressions": state.impressions})
//!     }
//! }
//! streamhost_sdk::aggregator!(Ctr);
//! # fn main() {}
//! ```
//!
//! The host owns the accumulators: it stores the bytes of each state (here
//! JSON, via serde: readable, and stable across a hot swap that keeps the
//! state's fields) and hands them back with every batch. In a call, each
//! group's state is decoded once, every event of the batch folded into it,
//! and encoded once. [`add_batch`], [`merge_batch`] and [`finish_batch`] run
//! that same path natively, for unit tests.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bindings::types::{AddOutput, ByteColumn, EventBatch, EventError};
use crate::{Error, Event};

/// A user-defined aggregate: its accumulator type and how to fold, merge
/// and read it. Every function is plain and native: unit-test it directly.
pub trait Aggregate {
    /// The accumulator. `Default` is the empty one (`create`); it travels
    /// to and from the host as JSON (serde_json).
    type State: Serialize + DeserializeOwned + Default;

    /// Folds one event into `state`. An error fails (dead-letters) this
    /// event alone and must leave `state` unchanged: return it before
    /// changing anything.
    fn add(state: &mut Self::State, event: &Event) -> Result<(), Error>;

    /// Merges `other` into `into` (panes of a sliding window, sessions,
    /// skew buckets): the result must be what adding both states' events
    /// to one accumulator gives.
    fn merge(into: &mut Self::State, other: Self::State);

    /// The aggregate's value, as it appears in the output record.
    fn finish(state: &Self::State) -> serde_json::Value;

    /// The value for an early (partial) firing of a window that will fire
    /// again; [`Aggregate::finish`] unless overridden.
    fn finish_partial(state: &Self::State) -> serde_json::Value {
        Self::finish(state)
    }
}

/// The bytes of an accumulator.
fn encode<S: Serialize>(state: &S) -> Vec<u8> {
    // A derived Serialize into a Vec cannot fail except for maps with
    // non-string keys; report that in the state rather than panic.
    serde_json::to_vec(state).unwrap_or_else(|e| format!("{{\"unencodable\": {:?}}}", e.to_string()).into_bytes())
}

fn decode<S: DeserializeOwned>(bytes: &[u8]) -> Result<S, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("cannot decode the accumulator: {e}"))
}

/// The items of a byte column (offsets out of range read as empty: the
/// host never sends them).
fn items(column: &ByteColumn) -> impl Iterator<Item = &[u8]> + '_ {
    let mut start = 0usize;
    column.ends.iter().map(move |&end| {
        let end = (end as usize).min(column.data.len());
        let item = column.data.get(start..end).unwrap_or(&[]);
        start = end;
        item
    })
}

fn column<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> ByteColumn {
    let mut c = ByteColumn { data: Vec::new(), ends: Vec::new() };
    for item in items {
        c.data.extend_from_slice(item);
        c.ends.push(c.data.len() as u32);
    }
    c
}

/// Calls `f` with every event of a columnar batch, in order, through one
/// reused [`Event`] (no allocation per event once its buffers have grown).
/// Tolerates a malformed batch (the host never sends one): missing items
/// are empty, headers out of order are skipped.
fn each_event(batch: &EventBatch, mut f: impl FnMut(usize, &Event)) {
    let EventBatch { values, keys, keyless, timestamps, headers } = batch;
    let mut event = Event { key: None, value: Vec::new(), timestamp: 0, headers: Vec::new() };
    let mut key = Vec::new();
    let (mut value_start, mut key_start, mut header) = (0usize, 0usize, 0usize);
    let mut keyless = keyless.iter().copied().peekable();
    for (i, &timestamp) in timestamps.iter().enumerate() {
        let value_end = values.ends.get(i).map_or(value_start, |&e| e as usize);
        let key_end = keys.ends.get(i).map_or(key_start, |&e| e as usize);
        event.value.clear();
        event.value.extend_from_slice(values.data.get(value_start..value_end).unwrap_or_default());
        if keyless.next_if_eq(&(i as u32)).is_none() {
            key.clear();
            key.extend_from_slice(keys.data.get(key_start..key_end).unwrap_or_default());
            event.key = Some(std::mem::take(&mut key));
        }
        event.timestamp = timestamp;
        event.headers.clear();
        while header < headers.len() && headers[header].event as usize <= i {
            let h = &headers[header];
            if h.event as usize == i {
                event.headers.push(crate::Header { name: h.name.clone(), value: h.value.clone() });
            }
            header += 1;
        }
        f(i, &event);
        if let Some(k) = event.key.take() {
            key = k;
        }
        (value_start, key_start) = (value_end, key_end);
    }
}

/// The empty accumulator's bytes (what the `create` export returns).
pub fn create_state<A: Aggregate>() -> Vec<u8> {
    encode(&A::State::default())
}

/// The `add` export: folds event `i` into group `groups[i]`. A group whose
/// bytes do not decode fails its events and comes back unchanged; an event
/// naming no group fails alone.
#[doc(hidden)]
pub fn add_columns<A: Aggregate>(states: ByteColumn, events: EventBatch, groups: &[u32]) -> AddOutput {
    let mut decoded: Vec<Result<A::State, String>> = items(&states).map(decode::<A::State>).collect();
    let mut errors = Vec::new();
    each_event(&events, |i, event| {
        let result = match groups.get(i).and_then(|&g| decoded.get_mut(g as usize)) {
            Some(Ok(state)) => A::add(state, event).map_err(Error::into_message),
            Some(Err(message)) => Err(message.clone()),
            None => Err(format!("event {i} names no accumulator")),
        };
        if let Err(message) = result {
            errors.push(EventError { event: i as u32, message });
        }
    });
    let encoded: Vec<Vec<u8>> = decoded
        .iter()
        .zip(items(&states))
        .map(|(state, old)| state.as_ref().map_or_else(|_| old.to_vec(), encode))
        .collect();
    AddOutput { states: column(encoded.iter().map(Vec::as_slice)), errors }
}

/// The `merge` export: input `i` merged into output `into[i]`, in input
/// order; an output no input names is the empty accumulator.
#[doc(hidden)]
pub fn merge_columns<A: Aggregate>(states: ByteColumn, into: &[u32], outputs: u32) -> Result<ByteColumn, String> {
    let mut out: Vec<Option<A::State>> = (0..outputs).map(|_| None).collect();
    for (i, bytes) in items(&states).enumerate() {
        let target = into.get(i).and_then(|&o| out.get_mut(o as usize)).ok_or_else(|| format!("accumulator {i} names no output"))?;
        let state = decode::<A::State>(bytes).map_err(|e| format!("accumulator {i}: {e}"))?;
        match target {
            Some(acc) => A::merge(acc, state),
            None => *target = Some(state),
        }
    }
    let encoded: Vec<Vec<u8>> = out.into_iter().map(|s| encode(&s.unwrap_or_default())).collect();
    Ok(column(encoded.iter().map(Vec::as_slice)))
}

/// The `finish` export: each accumulator's value as JSON bytes.
#[doc(hidden)]
pub fn finish_columns<A: Aggregate>(states: ByteColumn, partial: bool) -> Vec<Result<Vec<u8>, String>> {
    items(&states)
        .map(|bytes| {
            let state = decode::<A::State>(bytes)?;
            let value = if partial { A::finish_partial(&state) } else { A::finish(&state) };
            serde_json::to_vec(&value).map_err(|e| e.to_string())
        })
        .collect()
}

/// Folds `events` (event `i` into `states[groups[i]]`) through the same
/// path as the component export: the new states, and the failed events as
/// `(index, message)`. For native unit tests.
pub fn add_batch<A: Aggregate>(states: Vec<Vec<u8>>, events: Vec<Event>, groups: &[u32]) -> (Vec<Vec<u8>>, Vec<(u32, String)>) {
    let output = add_columns::<A>(column(states.iter().map(Vec::as_slice)), crate::columns::pack(events), groups);
    let states = items(&output.states).map(<[u8]>::to_vec).collect();
    (states, output.errors.into_iter().map(|e| (e.event, e.message)).collect())
}

/// Merges `states` as the `merge` export does (`into`, `outputs`). For
/// native unit tests.
pub fn merge_batch<A: Aggregate>(states: Vec<Vec<u8>>, into: &[u32], outputs: u32) -> Result<Vec<Vec<u8>>, String> {
    let merged = merge_columns::<A>(column(states.iter().map(Vec::as_slice)), into, outputs)?;
    Ok(items(&merged).map(<[u8]>::to_vec).collect())
}

/// Each state's value as the `finish` export gives it. For native unit tests.
pub fn finish_batch<A: Aggregate>(states: Vec<Vec<u8>>, partial: bool) -> Vec<Result<serde_json::Value, String>> {
    finish_columns::<A>(column(states.iter().map(Vec::as_slice)), partial)
        .into_iter()
        .map(|r| r.and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string())))
        .collect()
}

/// Exports a type implementing [`Aggregate`] as the plugin's `aggregator`
/// world (a user-defined aggregate of a `window-aggregate` step). An
/// optional `init` receives the plugin's config from pipeline.json,
/// deserialised into any `serde` type (keep it in a `static`, e.g. a
/// `OnceLock`, for the functions to read):
/// `streamhost_sdk::aggregator!(Ctr, init = setup);`.
#[macro_export]
macro_rules! aggregator {
    ($agg:ty $(,)?) => {
        $crate::aggregator!($agg, init = $crate::transform::no_init);
    };
    ($agg:ty, init = $init:path $(,)?) => {
        const _: () = {
            #[allow(dead_code)]
            struct StreamhostAggregator;

            impl $crate::bindings::aggregator::Guest for StreamhostAggregator {
                fn init(config: ::std::string::String) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::transform::run_init(&config, $init)
                }

                fn create() -> ::std::vec::Vec<u8> {
                    $crate::aggregator::create_state::<$agg>()
                }

                fn add(
                    states: $crate::bindings::types::ByteColumn,
                    events: $crate::bindings::types::EventBatch,
                    groups: ::std::vec::Vec<u32>,
                ) -> $crate::bindings::types::AddOutput {
                    $crate::aggregator::add_columns::<$agg>(states, events, &groups)
                }

                fn merge(
                    states: $crate::bindings::types::ByteColumn,
                    into: ::std::vec::Vec<u32>,
                    outputs: u32,
                ) -> ::core::result::Result<$crate::bindings::types::ByteColumn, ::std::string::String> {
                    $crate::aggregator::merge_columns::<$agg>(states, &into, outputs)
                }

                fn finish(
                    states: $crate::bindings::types::ByteColumn,
                    partial: bool,
                ) -> ::std::vec::Vec<::core::result::Result<::std::vec::Vec<u8>, ::std::string::String>> {
                    $crate::aggregator::finish_columns::<$agg>(states, partial)
                }
            }

            #[cfg(target_arch = "wasm32")]
            $crate::__export_aggregator_impl!(StreamhostAggregator with_types_in $crate::bindings::aggregator);

            // Natively nothing calls the exports: mark the functions used.
            let _ = (
                $init,
                $crate::aggregator::create_state::<$agg>,
                $crate::aggregator::add_columns::<$agg>,
                $crate::aggregator::merge_columns::<$agg>,
                $crate::aggregator::finish_columns::<$agg>,
            );
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    /// Sums `"n"`; refuses a missing `n`; remembers the order it saw values in.
    struct Sum;

    #[derive(Default, Serialize, Deserialize, Debug, PartialEq)]
    struct State {
        sum: i64,
        seen: Vec<i64>,
    }

    impl Aggregate for Sum {
        type State = State;
        fn add(state: &mut State, event: &Event) -> Result<(), Error> {
            let v: serde_json::Value = event.json()?;
            let n = v["n"].as_i64().ok_or_else(|| Error::new("no n"))?;
            state.sum += n;
            state.seen.push(n);
            Ok(())
        }
        fn merge(into: &mut State, other: State) {
            into.sum += other.sum;
            into.seen.extend(other.seen);
        }
        fn finish(state: &State) -> serde_json::Value {
            json!(state.sum)
        }
        fn finish_partial(state: &State) -> serde_json::Value {
            json!({"partial": state.sum})
        }
    }

    fn ev(n: serde_json::Value) -> Event {
        Event::new(json!({ "n": n }).to_string())
    }

    #[test]
    fn add_folds_each_group_in_order_and_fails_events_alone() {
        let empty = create_state::<Sum>();
        let states = vec![empty.clone(), encode(&State { sum: 10, seen: vec![10] }), b"not json".to_vec(), empty];
        let events = vec![ev(json!(1)), ev(json!(2)), ev(json!("x")), ev(json!(3)), ev(json!(4)), ev(json!(5))];
        let (states, errors) = add_batch::<Sum>(states, events, &[0, 1, 1, 0, 2, 7]);
        let decoded: Vec<Result<State, String>> = states.iter().map(|s| decode(s)).collect();
        assert_eq!(decoded[0], Ok(State { sum: 4, seen: vec![1, 3] }));
        assert_eq!(decoded[1], Ok(State { sum: 12, seen: vec![10, 2] }));
        assert_eq!(states[2], b"not json", "an undecodable accumulator comes back as it was");
        assert_eq!(decoded[3], Ok(State::default()), "an untouched group stays empty");
        let failed: Vec<u32> = errors.iter().map(|(i, _)| *i).collect();
        assert_eq!(failed, vec![2, 4, 5]);
        assert_eq!(errors[0].1, "no n");
        assert!(errors[1].1.starts_with("cannot decode the accumulator"), "{}", errors[1].1);
        assert_eq!(errors[2].1, "event 5 names no accumulator");
    }

    #[test]
    fn each_event_gives_keys_headers_and_times() {
        let mut with_key = Event::new("a");
        with_key.key = Some(b"k1".to_vec());
        with_key.timestamp = 5;
        with_key.headers.push(crate::Header { name: "h".into(), value: b"v".to_vec() });
        let events = vec![with_key.clone(), Event::new("bb"), Event { key: Some(Vec::new()), ..Event::new("") }];
        let mut seen = Vec::new();
        each_event(&crate::columns::pack(events.clone()), |i, e| seen.push((i, e.clone())));
        assert_eq!(seen, events.into_iter().enumerate().collect::<Vec<_>>());
    }

    #[test]
    fn merge_follows_into_in_input_order() {
        let s = |sum: i64| encode(&State { sum, seen: vec![sum] });
        let merged = merge_batch::<Sum>(vec![s(1), s(2), s(3)], &[1, 0, 1], 3).unwrap();
        let decoded: Vec<State> = merged.iter().map(|m| decode(m).unwrap()).collect();
        assert_eq!(decoded, vec![State { sum: 2, seen: vec![2] }, State { sum: 4, seen: vec![1, 3] }, State::default()]);
        assert!(merge_batch::<Sum>(vec![s(1)], &[3], 2).unwrap_err().contains("names no output"));
        assert!(merge_batch::<Sum>(vec![b"?".to_vec()], &[0], 1).unwrap_err().contains("accumulator 0: cannot decode"));
    }

    #[test]
    fn finish_gives_json_and_partial_reaches_the_plugin() {
        let states = vec![encode(&State { sum: 7, seen: vec![] }), b"{".to_vec()];
        let done = finish_batch::<Sum>(states.clone(), false);
        assert_eq!(done[0], Ok(json!(7)));
        assert!(done[1].as_ref().unwrap_err().contains("cannot decode"));
        assert_eq!(finish_batch::<Sum>(states, true)[0], Ok(json!({"partial": 7})));
    }
}
