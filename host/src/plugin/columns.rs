//! Packs events into the WIT's columnar `event-batch` and unpacks a
//! `transform-output`, checking every index and offset the plugin returned.
//!
//! Why columns: with a `list<event>` the canonical ABI makes one guest
//! allocation per value (a host-to-guest `cabi_realloc` call each), one free
//! per output in post-return and one host allocation per lifted list. A
//! batch of columns crosses as a handful of copies, whatever its length.

use super::wit::{BatchHeader, ByteColumn, EventBatch, TransformOutput};
use crate::event::{Event, Header};

/// The columns of `events`.
#[cfg(test)]
pub(crate) fn pack(events: &[Event]) -> EventBatch {
    let mut batch = empty_batch();
    pack_into(&mut batch, events);
    batch
}

/// A batch with no events, to [`pack_into`].
pub(crate) fn empty_batch() -> EventBatch {
    let column = || ByteColumn { data: Vec::new(), ends: Vec::new() };
    EventBatch { values: column(), keys: column(), keyless: Vec::new(), timestamps: Vec::new(), headers: Vec::new() }
}

/// Replaces the contents of `batch` with the columns of `events`, reusing
/// its buffers (a runner packs every batch into the same one).
pub(crate) fn pack_into(batch: &mut EventBatch, events: &[Event]) {
    pack_iter(batch, events);
}

/// [`pack_into`] for events that are not in one slice (a joiner's matches).
pub(crate) fn pack_iter<'a>(batch: &mut EventBatch, events: impl IntoIterator<Item = &'a Event>) {
    let EventBatch { values, keys, keyless, timestamps, headers } = batch;
    for column in [&mut *values, &mut *keys] {
        column.data.clear();
        column.ends.clear();
    }
    keyless.clear();
    timestamps.clear();
    headers.clear();
    for (i, event) in events.into_iter().enumerate() {
        push_item(values, &event.value);
        match &event.key {
            Some(key) => push_item(keys, key),
            None => {
                push_item(keys, &[]);
                keyless.push(i as u32);
            }
        }
        timestamps.push(event.timestamp);
        headers.extend(event.headers.iter().map(|h| BatchHeader {
            event: i as u32,
            name: h.name.clone(),
            value: h.value.clone(),
        }));
    }
}

pub(crate) fn push_item(column: &mut ByteColumn, item: &[u8]) {
    column.data.extend_from_slice(item);
    // Batches are bounded far below 4 GiB by the output byte limit and the
    // source's record size, so offsets fit in u32 (checked in `debug`).
    debug_assert!(column.data.len() <= u32::MAX as usize);
    column.ends.push(column.data.len() as u32);
}

/// One result per input event, in order: its output events or its error.
pub(crate) type RawOutcomes = Vec<Result<Vec<Event>, String>>;

/// Unpacks what a plugin made of `inputs` events. An `Err` means the plugin
/// broke the contract (an index or offset out of range or out of order); it
/// names the first violation.
pub(crate) fn unpack(output: TransformOutput, inputs: usize) -> Result<RawOutcomes, String> {
    let TransformOutput { events, origins, errors } = output;
    let outputs = unpack_events(events)?;
    if outputs.len() != origins.len() {
        return Err(format!("{} output events but {} origins", outputs.len(), origins.len()));
    }
    let mut outcomes: RawOutcomes = (0..inputs).map(|_| Ok(Vec::new())).collect();
    let mut last_origin = 0u32;
    for (event, origin) in outputs.into_iter().zip(origins) {
        if origin < last_origin || origin as usize >= inputs {
            return Err(format!("origin {origin} is out of order or beyond the {inputs} input events"));
        }
        last_origin = origin;
        if let Ok(list) = &mut outcomes[origin as usize] {
            list.push(event);
        }
    }
    let mut next_error = 0usize;
    for error in errors {
        let i = error.event as usize;
        if i < next_error || i >= inputs {
            return Err(format!("error for input {i} is out of order or beyond the {inputs} input events"));
        }
        next_error = i + 1;
        match &outcomes[i] {
            Ok(list) if list.is_empty() => outcomes[i] = Err(error.message),
            _ => return Err(format!("input {i} has both output events and an error")),
        }
    }
    Ok(outcomes)
}

/// The events of a batch, checking that its columns agree.
fn unpack_events(batch: EventBatch) -> Result<Vec<Event>, String> {
    let EventBatch { values, keys, keyless, timestamps, headers } = batch;
    let n = timestamps.len();
    let value_items = items(&values, n, "values")?;
    let key_items = items(&keys, n, "keys")?;
    let mut is_keyless = vec![false; n];
    let mut last = None;
    for i in keyless {
        if last.is_some_and(|l| i <= l) || i as usize >= n {
            return Err(format!("keyless index {i} is out of order or beyond the {n} events"));
        }
        last = Some(i);
        is_keyless[i as usize] = true;
    }
    let mut events: Vec<Event> = value_items
        .zip(key_items)
        .zip(timestamps)
        .zip(is_keyless)
        .map(|(((value, key), timestamp), keyless)| Event {
            key: (!keyless).then(|| key.to_vec()),
            value: value.to_vec(),
            timestamp,
            headers: Vec::new(),
        })
        .collect();
    let mut last_event = 0u32;
    for header in headers {
        if header.event < last_event || header.event as usize >= n {
            return Err(format!("header of event {} is out of order or beyond the {n} events", header.event));
        }
        last_event = header.event;
        events[header.event as usize].headers.push(Header { name: header.name, value: header.value });
    }
    Ok(events)
}

/// The `n` items of `column`, after checking its offsets.
pub(crate) fn items<'a>(column: &'a ByteColumn, n: usize, what: &str) -> Result<impl Iterator<Item = &'a [u8]> + 'a, String> {
    if column.ends.len() != n {
        return Err(format!("{what} has {} items for {n} events", column.ends.len()));
    }
    let mut start = 0u32;
    for &end in &column.ends {
        if end < start {
            return Err(format!("{what}: offsets go backwards ({end} after {start})"));
        }
        start = end;
    }
    if start as usize != column.data.len() {
        return Err(format!("{what}: the last offset is {start} but the data has {} bytes", column.data.len()));
    }
    let mut start = 0usize;
    Ok(column.ends.iter().map(move |&end| {
        let item = &column.data[start..end as usize];
        start = end as usize;
        item
    }))
}

#[cfg(test)]
mod tests {
    use super::super::wit::EventError;
    use super::*;

    fn event(value: &str, key: Option<&str>, ts: i64, headers: &[(&str, &str)]) -> Event {
        Event {
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.as_bytes().to_vec(),
            timestamp: ts,
            headers: headers.iter().map(|(n, v)| Header { name: n.to_string(), value: v.as_bytes().to_vec() }).collect(),
        }
    }

    fn sample() -> Vec<Event> {
        vec![
            event("{\"a\":1}", Some("k1"), 10, &[("h", "x"), ("h2", "")]),
            event("", None, -5, &[]),
            event("zz", Some(""), 0, &[("only", "y")]),
        ]
    }

    #[test]
    fn pack_lays_out_columns() {
        let b = pack(&sample());
        assert_eq!(b.values.data, b"{\"a\":1}zz");
        assert_eq!(b.values.ends, vec![7, 7, 9]);
        assert_eq!(b.keys.data, b"k1");
        assert_eq!(b.keys.ends, vec![2, 2, 2]);
        assert_eq!(b.keyless, vec![1]);
        assert_eq!(b.timestamps, vec![10, -5, 0]);
        assert_eq!(b.headers.iter().map(|h| (h.event, h.name.as_str())).collect::<Vec<_>>(), vec![(0, "h"), (0, "h2"), (2, "only")]);
    }

    #[test]
    fn pack_unpack_round_trip_keeps_empty_key_apart_from_no_key() {
        let events = sample();
        let output = TransformOutput { events: pack(&events), origins: vec![0, 1, 2], errors: vec![] };
        let outcomes = unpack(output, 3).unwrap();
        let back: Vec<Event> = outcomes.into_iter().flat_map(|o| o.unwrap()).collect();
        assert_eq!(back, events);
        assert_eq!(back[2].key, Some(Vec::new()));
        assert_eq!(back[1].key, None);
    }

    #[test]
    fn unpack_spreads_fan_out_drops_and_errors() {
        let outs = vec![event("a", None, 1, &[]), event("b", None, 2, &[]), event("c", None, 3, &[])];
        let output = TransformOutput {
            events: pack(&outs),
            origins: vec![0, 0, 3],
            errors: vec![EventError { event: 2, message: "bad".into() }],
        };
        let o = unpack(output, 4).unwrap();
        assert_eq!(o[0].as_ref().unwrap().iter().map(|e| e.value.clone()).collect::<Vec<_>>(), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(o[1], Ok(vec![]));
        assert_eq!(o[2], Err("bad".to_string()));
        assert_eq!(o[3].as_ref().unwrap()[0].timestamp, 3);
    }

    fn broken(mutate: impl FnOnce(&mut TransformOutput)) -> String {
        let mut output = TransformOutput { events: pack(&sample()), origins: vec![0, 1, 2], errors: vec![] };
        mutate(&mut output);
        unpack(output, 3).unwrap_err()
    }

    #[test]
    fn unpack_refuses_every_kind_of_broken_layout() {
        assert!(broken(|o| o.origins = vec![0, 1]).contains("origins"));
        assert!(broken(|o| o.origins = vec![1, 0, 2]).contains("origin 0"));
        assert!(broken(|o| o.origins = vec![0, 1, 3]).contains("origin 3"));
        assert!(broken(|o| o.events.values.ends = vec![7, 9]).contains("values has 2 items"));
        assert!(broken(|o| o.events.values.ends = vec![7, 6, 9]).contains("backwards"));
        assert!(broken(|o| o.events.values.ends = vec![7, 7, 8]).contains("last offset"));
        assert!(broken(|o| o.events.keys.ends = vec![2, 2, 3]).contains("keys"));
        assert!(broken(|o| o.events.keyless = vec![3]).contains("keyless index 3"));
        assert!(broken(|o| o.events.keyless = vec![1, 1]).contains("keyless"));
        assert!(broken(|o| o.events.headers[0].event = 9).contains("header of event 9"));
        assert!(broken(|o| o.events.headers.swap(0, 2)).contains("out of order"));
        assert!(broken(|o| o.errors = vec![EventError { event: 1, message: "x".into() }]).contains("both"));
        assert!(broken(|o| {
            o.origins = vec![0, 0, 0];
            o.errors = vec![EventError { event: 2, message: "x".into() }, EventError { event: 1, message: "y".into() }]
        })
        .contains("out of order"));
        assert!(broken(|o| o.errors = vec![EventError { event: 5, message: "x".into() }]).contains("beyond"));
    }
}
