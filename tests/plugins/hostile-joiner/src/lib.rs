//! A joiner plugin that misbehaves on request, to test the host's isolation
//! of joiner calls. Each main event's value is JSON `{"do": "<behaviour>", ...}`:
//! - `panic`: panic (a trap in the host);
//! - `loop`: spin forever (the host's timeout must stop it);
//! - `error`: return an error for this main event;
//! - anything else: one output, the main event's object plus `"matches"`,
//!   the number of its matches over every input.

use streamhost_sdk::joiner::Matches;
use streamhost_sdk::{Error, Event};

fn join(main: Event, matches: &Matches) -> Result<Event, Error> {
    let mut v: serde_json::Value = main.json()?;
    match v.get("do").and_then(|d| d.as_str()) {
        Some("panic") => panic!("the joiner panics on request"),
        Some("loop") => spin_forever(),
        Some("error") => return Err(Error::new("the joiner refuses on request")),
        _ => {}
    }
    v["matches"] = serde_json::Value::from(matches.len());
    main.with_json(&v)
}

#[allow(clippy::empty_loop)]
fn spin_forever() -> ! {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

streamhost_sdk::joiner!(join);
