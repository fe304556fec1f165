//! A transform plugin that misbehaves on request, to test the host's sandbox.
//!
//! Each event's value is JSON `{"do": "<behaviour>", ...}`:
//! - `ok`: echo the event unchanged (also the benchmark path);
//! - `error`: return an error for this event;
//! - `panic`: panic (a trap in the host);
//! - `loop`: spin forever (the host's timeout must stop it);
//! - `oom`: allocate 1 GiB (the host's memory limit must stop it);
//! - `huge`: return 100 000 output events (`"count"` overrides);
//! - `big`: return one value of 300 MiB (`"mb"` or `"bytes"` override);
//! - `state`: return one event whose value is how many events this instance
//!   processed since `init` (shows whether the instance was rebuilt);
//! - `log`: call the host's `log` and echo.
//! - `contract`: answer the whole batch with a broken layout (an output
//!   whose origin is past the batch), which the host must refuse.
//!
//! It uses the raw wit-bindgen bindings (not the SDK), so it can break the
//! contract.
//!
//! Anything else (including non-JSON values) is echoed. `init` takes
//! `{"init": "error"|"panic"|"loop"}` to misbehave at load time,
//! `{"always": "<behaviour>"}` to behave so for every event whatever it
//! asks, and `{"tag": "<text>"}` to add `"tag": "<text>"` to every JSON
//! object it outputs (the hot-swap tests tell versions apart by it).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "transform",
});

use std::cell::{Cell, RefCell};

use streamhost::plugin::host::{log, Level};
// `EventBatch` and `TransformOutput` come from generate! (the world uses them).
use streamhost::plugin::types::{BatchHeader, ByteColumn, EventError};

/// One event, owned (the WIT moves them as columns).
#[derive(Clone)]
struct Event {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    timestamp: i64,
    headers: Vec<(String, Vec<u8>)>,
}

type EventOutcome = Result<Vec<Event>, String>;

thread_local! {
    /// Events seen by this instance since `init`.
    static SEEN: Cell<u64> = const { Cell::new(0) };
    /// `always` and `tag` from the init config.
    static CONFIG: RefCell<(Option<String>, Option<String>)> = const { RefCell::new((None, None)) };
}

struct Hostile;

impl Guest for Hostile {
    fn init(config: String) -> Result<(), String> {
        SEEN.with(|s| s.set(0));
        let config: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        let text = |field: &str| config.get(field).and_then(|v| v.as_str()).map(String::from);
        CONFIG.with(|c| *c.borrow_mut() = (text("always"), text("tag")));
        match config.get("init").and_then(|v| v.as_str()) {
            Some("error") => Err("init refused on request".into()),
            Some("panic") => panic!("init panics on request"),
            Some("loop") => spin_forever(),
            _ => Ok(()),
        }
    }

    fn process(batch: EventBatch) -> TransformOutput {
        let events = unpack(batch);
        let n = events.len() as u32;
        let broken = events.iter().any(|e| e.value.starts_with(br#"{"do":"contract"#));
        let (always, tag) = CONFIG.with(|c| c.borrow().clone());
        let mut out = pack(
            events
                .into_iter()
                .map(|e| behave(e, always.as_deref()))
                .map(|o| match &tag {
                    Some(tag) => o.map(|events| events.into_iter().map(|e| Event { value: tagged(e.value, tag), ..e }).collect()),
                    None => o,
                })
                .collect(),
        );
        if broken {
            out.origins.push(n);
            let ends = &mut out.events.values.ends;
            ends.push(ends.last().copied().unwrap_or(0));
            out.events.keys.ends.push(out.events.keys.data.len() as u32);
            out.events.timestamps.push(0);
        }
        out
    }
}

fn unpack(batch: EventBatch) -> Vec<Event> {
    let item = |c: &ByteColumn, i: usize| {
        let start = if i == 0 { 0 } else { c.ends[i - 1] as usize };
        c.data[start..c.ends[i] as usize].to_vec()
    };
    (0..batch.timestamps.len())
        .map(|i| Event {
            key: (!batch.keyless.contains(&(i as u32))).then(|| item(&batch.keys, i)),
            value: item(&batch.values, i),
            timestamp: batch.timestamps[i],
            headers: batch
                .headers
                .iter()
                .filter(|h| h.event == i as u32)
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        })
        .collect()
}

fn pack(outcomes: Vec<EventOutcome>) -> TransformOutput {
    let column = || ByteColumn { data: Vec::new(), ends: Vec::new() };
    let mut events =
        EventBatch { values: column(), keys: column(), keyless: Vec::new(), timestamps: Vec::new(), headers: Vec::new() };
    let (mut origins, mut errors) = (Vec::new(), Vec::new());
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(outputs) => {
                for e in outputs {
                    let index = events.timestamps.len() as u32;
                    events.values.data.extend_from_slice(&e.value);
                    events.values.ends.push(events.values.data.len() as u32);
                    match e.key {
                        Some(k) => events.keys.data.extend_from_slice(&k),
                        None => events.keyless.push(index),
                    }
                    events.keys.ends.push(events.keys.data.len() as u32);
                    events.timestamps.push(e.timestamp);
                    events.headers.extend(e.headers.into_iter().map(|(name, value)| BatchHeader { event: index, name, value }));
                    origins.push(i as u32);
                }
            }
            Err(message) => errors.push(EventError { event: i as u32, message }),
        }
    }
    TransformOutput { events, origins, errors }
}

/// `{...}` with `"tag": tag` first; other values unchanged.
fn tagged(mut value: Vec<u8>, tag: &str) -> Vec<u8> {
    if value.first() == Some(&b'{') {
        let empty = value[1..].trim_ascii_start().starts_with(b"}");
        let field = format!("\"tag\":{}{}", serde_json::Value::from(tag), if empty { "" } else { "," });
        value.splice(1..1, field.into_bytes());
    }
    value
}

fn behave(event: Event, always: Option<&str>) -> EventOutcome {
    let seen = SEEN.with(|s| {
        s.set(s.get() + 1);
        s.get()
    });
    let request: serde_json::Value = serde_json::from_slice(&event.value).unwrap_or(serde_json::Value::Null);
    let number = |field: &str, default: u64| request.get(field).and_then(|v| v.as_u64()).unwrap_or(default);
    match always.or_else(|| request.get("do").and_then(|v| v.as_str())).unwrap_or("ok") {
        "error" => Err("error on request".into()),
        "panic" => panic!("panic on request"),
        "loop" => spin_forever(),
        "oom" => {
            // black_box: at opt-level 3 the optimiser would otherwise shrink
            // the bomb to the 16 bytes used.
            let bomb = std::hint::black_box(vec![1u8; 1 << 30]);
            Ok(vec![Event { value: bomb[..16].to_vec(), ..event }])
        }
        "huge" => Ok((0..number("count", 100_000)).map(|_| Event { value: b"{}".to_vec(), ..event.clone() }).collect()),
        "big" => {
            let size = request.get("bytes").and_then(|v| v.as_u64()).unwrap_or(number("mb", 300) << 20) as usize;
            Ok(vec![Event { value: vec![b'x'; size], ..event }])
        }
        "state" => Ok(vec![Event { value: seen.to_string().into_bytes(), ..event }]),
        "log" => {
            log(Level::Info, "hostile plugin logs", &[("seen".to_string(), seen.to_string())]);
            Ok(vec![event])
        }
        _ => Ok(vec![event]),
    }
}

fn spin_forever() -> ! {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

export!(Hostile);
