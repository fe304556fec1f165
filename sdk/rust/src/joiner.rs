//! Joiner plugins: one plain function per main event of a window join, over
//! the event and its matches.
//!
//! ```
//! use streamhost_sdk::joiner::Matches;
//! use streamhost_sdk::{Error, Event};
//!
//! /// The impression, labelled by whether it was clicked.
//! fn label(main: Event, matches: &Matches) -> Result<Event, Error> {
//!     let mut v: serde_json::Value = main.json()?;
//!     v["label"] = serde_json::json!(!matches.get("clicks").is_empty() as u8);
//!     main.with_json(&v)
//! }
//! streamhost_sdk::joiner!(label);
//! # fn main() {}
//! ```

use crate::bindings::types::{EventBatch, TransformOutput};
use crate::columns::{owned_events, ColumnWriter, Emitter};
use crate::transform::{IntoEvents, Outcome};
use crate::{Error, Event};

/// The matches of one main event, by other input (in the step's input
/// order), each input's in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct Matches<'a> {
    inputs: &'a [String],
    groups: Vec<Vec<Event>>,
}

impl<'a> Matches<'a> {
    /// Matches grouped by input: `groups[i]` are those of `inputs[i]`.
    /// (Missing groups are empty; extra ones are ignored.)
    pub fn new(inputs: &'a [String], mut groups: Vec<Vec<Event>>) -> Self {
        groups.resize_with(inputs.len(), Vec::new);
        Matches { inputs, groups }
    }

    /// The matches from input `input`, in time order; empty for an input
    /// without matches or not joined by this step.
    pub fn get(&self, input: &str) -> &[Event] {
        self.inputs.iter().position(|i| i == input).map_or(&[], |k| &self.groups[k])
    }

    /// The names of the other inputs, in the step's order (every one, with
    /// or without matches).
    pub fn inputs(&self) -> &'a [String] {
        self.inputs
    }

    /// `(input, its matches)` for every other input, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &[Event])> + '_ {
        self.inputs.iter().map(String::as_str).zip(self.groups.iter().map(Vec::as_slice))
    }

    /// The number of matches over every input.
    pub fn len(&self) -> usize {
        self.groups.iter().map(Vec::len).sum()
    }

    /// True when no input matched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A function `joiner!` can export: `fn(Event, &Matches) -> Result<R, Error>`
/// with `R` an [`Event`], an `Option<Event>` or a `Vec<Event>`.
pub trait JoinFn<R> {
    /// Joins one main event with its matches.
    fn call(&mut self, main: Event, matches: &Matches<'_>) -> Result<R, Error>;
}

impl<F, R> JoinFn<R> for F
where
    F: FnMut(Event, &Matches<'_>) -> Result<R, Error>,
    R: IntoEvents,
{
    fn call(&mut self, main: Event, matches: &Matches<'_>) -> Result<R, Error> {
        self(main, matches)
    }
}

/// Runs `f` over every main event of a columnar call (what the `joiner!`
/// export does). Matches pointing at a main event or an input out of range
/// are ignored (the host never sends them).
#[doc(hidden)]
pub fn join_columns<R: IntoEvents, F: JoinFn<R>>(
    inputs: &[String],
    mains: EventBatch,
    matches: EventBatch,
    match_mains: &[u32],
    match_inputs: &[u32],
    mut f: F,
) -> TransformOutput {
    let mains = owned_events(&mains);
    let mut groups: Vec<Vec<Vec<Event>>> = (0..mains.len()).map(|_| vec![Vec::new(); inputs.len()]).collect();
    for ((event, &m), &k) in owned_events(&matches).into_iter().zip(match_mains).zip(match_inputs) {
        if let Some(group) = groups.get_mut(m as usize).and_then(|g| g.get_mut(k as usize)) {
            group.push(event);
        }
    }
    let mut out = ColumnWriter::with_capacity(mains.len(), 0);
    for (i, (main, groups)) in mains.into_iter().zip(groups).enumerate() {
        let matches = Matches { inputs, groups };
        let mark = out.mark();
        match f.call(main, &matches) {
            Ok(outputs) => {
                let mut emitter = Emitter { out: &mut out, origin: i as u32 };
                for event in outputs.into_events() {
                    emitter.emit(event);
                }
            }
            Err(e) => {
                out.rewind(mark);
                out.error(i as u32, e.into_message());
            }
        }
    }
    out.finish()
}

/// Runs `f` over `cases` (each a main event and its matches as
/// `(input, event)` pairs) through the same columnar path the component
/// export takes; one outcome per case, in order. `inputs` are the step's
/// other inputs; a match from an input not listed is dropped. This is the
/// way to unit-test a joiner natively.
pub fn join_batch<R: IntoEvents, F: JoinFn<R>>(inputs: &[&str], cases: Vec<(Event, Vec<(&str, Event)>)>, f: F) -> Vec<Outcome> {
    let n = cases.len();
    let inputs: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
    let mut mains = Vec::with_capacity(n);
    let mut matches = Vec::new();
    let (mut match_mains, mut match_inputs) = (Vec::new(), Vec::new());
    for (i, (main, pairs)) in cases.into_iter().enumerate() {
        mains.push(main);
        // Grouped by input (stable: time order within an input is kept).
        let mut pairs: Vec<(usize, Event)> = pairs
            .into_iter()
            .filter_map(|(input, e)| inputs.iter().position(|x| x == input).map(|k| (k, e)))
            .collect();
        pairs.sort_by_key(|(k, _)| *k);
        for (k, e) in pairs {
            match_mains.push(i as u32);
            match_inputs.push(k as u32);
            matches.push(e);
        }
    }
    let output = join_columns(
        &inputs,
        crate::columns::pack(mains),
        crate::columns::pack(matches),
        &match_mains,
        &match_inputs,
        f,
    );
    crate::columns::unpack(output, n)
}

/// Exports a function as the plugin's `joiner` world (the output of a
/// `window-join` step whose `joiner` is `{"type": "plugin", ...}`).
///
/// The function takes the main [`Event`] and its [`Matches`] and returns
/// `Result<R, Error>` where `R` is an [`Event`], an `Option<Event>` (`None`:
/// no output for this main event) or a `Vec<Event>`. An error dead-letters
/// that main event alone. An optional `init` receives the plugin's config
/// from pipeline.json, deserialised into any `serde` type:
/// `streamhost_sdk::joiner!(f, init = setup);`.
#[macro_export]
macro_rules! joiner {
    ($join:path $(,)?) => {
        $crate::joiner!($join, init = $crate::transform::no_init);
    };
    ($join:path, init = $init:path $(,)?) => {
        const _: () = {
            #[allow(dead_code)]
            struct StreamhostJoiner;

            impl $crate::bindings::joiner::Guest for StreamhostJoiner {
                fn init(config: ::std::string::String) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::transform::run_init(&config, $init)
                }

                fn join(
                    inputs: ::std::vec::Vec<::std::string::String>,
                    mains: $crate::bindings::types::EventBatch,
                    matches: $crate::bindings::types::EventBatch,
                    match_mains: ::std::vec::Vec<u32>,
                    match_inputs: ::std::vec::Vec<u32>,
                ) -> $crate::bindings::types::TransformOutput {
                    $crate::joiner::join_columns(&inputs, mains, matches, &match_mains, &match_inputs, $join)
                }
            }

            #[cfg(target_arch = "wasm32")]
            $crate::__export_joiner_impl!(StreamhostJoiner with_types_in $crate::bindings::joiner);

            // Natively nothing calls the exports: mark the functions used.
            let _ = ($join, $init);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(v: &str, t: i64) -> Event {
        Event { key: Some(b"k".to_vec()), value: v.as_bytes().to_vec(), timestamp: t, headers: vec![] }
    }

    fn summary(main: Event, m: &Matches) -> Result<Option<Event>, Error> {
        if main.value == b"fail" {
            return Err(Error::new("failed on purpose"));
        }
        if main.value == b"drop" {
            return Ok(None);
        }
        let parts: Vec<String> = m
            .iter()
            .map(|(input, events)| {
                let values: Vec<&str> = events.iter().map(|e| std::str::from_utf8(&e.value).unwrap()).collect();
                format!("{input}={}", values.join("+"))
            })
            .collect();
        Ok(Some(Event { value: format!("{}|{}|{}", String::from_utf8_lossy(&main.value), parts.join(";"), m.len()).into_bytes(), ..main }))
    }

    #[test]
    fn each_main_gets_its_own_matches_grouped_by_input() {
        let cases = vec![
            (ev("a", 1), vec![("likes", ev("l1", 2)), ("clicks", ev("c1", 3)), ("clicks", ev("c2", 4))]),
            (ev("b", 5), vec![]),
            (ev("fail", 6), vec![("clicks", ev("c3", 7))]),
            (ev("drop", 8), vec![]),
            (ev("c", 9), vec![("clicks", ev("c4", 10)), ("other", ev("x", 11))]),
        ];
        let out = join_batch(&["clicks", "likes"], cases, summary);
        let values: Vec<Result<Vec<String>, String>> = out
            .into_iter()
            .map(|o| o.map(|es| es.into_iter().map(|e| String::from_utf8(e.value).unwrap()).collect()))
            .collect();
        assert_eq!(
            values,
            vec![
                Ok(vec!["a|clicks=c1+c2;likes=l1|3".to_string()]),
                Ok(vec!["b|clicks=;likes=|0".to_string()]),
                Err("failed on purpose".to_string()),
                Ok(vec![]),
                Ok(vec!["c|clicks=c4;likes=|1".to_string()]),
            ]
        );
    }

    #[test]
    fn matches_get_unknown_input_is_empty() {
        let inputs = vec!["clicks".to_string()];
        let m = Matches::new(&inputs, vec![]);
        assert!(m.get("clicks").is_empty() && m.get("nope").is_empty() && m.is_empty());
        assert_eq!(m.inputs(), &inputs[..]);
    }
}
