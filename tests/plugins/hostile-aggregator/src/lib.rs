//! An aggregator plugin that misbehaves on request, to test the host's
//! isolation of aggregator calls. Each event's value is JSON
//! `{"n": <int>, "do": "<behaviour>"}`:
//! - `panic`: panic (a trap in the host);
//! - `loop`: spin forever (the host's timeout must stop it);
//! - `error`: return an error for this event;
//! - `grow`: add 100 KiB of padding to the accumulator (past the default
//!   `max_state_bytes` of 64 KiB);
//! - anything else: append `n` to the accumulator (arrival order kept).
//!
//! `finish` gives `{"ns": [...], "partial": <bool>}` and panics on an
//! accumulator holding the value 666.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use streamhost_sdk::aggregator::Aggregate;
use streamhost_sdk::{Error, Event};

struct Hostile;

#[derive(Default, Serialize, Deserialize)]
struct State {
    ns: Vec<i64>,
    #[serde(default)]
    padding: String,
}

impl Aggregate for Hostile {
    type State = State;

    fn add(state: &mut State, event: &Event) -> Result<(), Error> {
        let v: Value = event.json()?;
        match v.get("do").and_then(Value::as_str) {
            Some("panic") => panic!("the aggregator panics on request"),
            Some("loop") => spin_forever(),
            Some("error") => return Err(Error::new("the aggregator refuses on request")),
            Some("grow") => state.padding.push_str(&"x".repeat(100 << 10)),
            _ => {}
        }
        state.ns.push(v.get("n").and_then(Value::as_i64).unwrap_or(0));
        Ok(())
    }

    fn merge(into: &mut State, other: State) {
        into.ns.extend(other.ns);
        into.padding.push_str(&other.padding);
    }

    fn finish(state: &State) -> Value {
        Self::value(state, false)
    }

    fn finish_partial(state: &State) -> Value {
        Self::value(state, true)
    }
}

impl Hostile {
    fn value(state: &State, partial: bool) -> Value {
        if state.ns.contains(&666) {
            panic!("finish panics on 666");
        }
        json!({"ns": state.ns, "partial": partial})
    }
}

#[allow(clippy::empty_loop)]
fn spin_forever() -> ! {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

streamhost_sdk::aggregator!(Hostile);
