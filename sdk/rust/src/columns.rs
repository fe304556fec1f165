//! The columnar batch as a plugin function sees it: borrowed input events
//! ([`EventRef`]) and an [`Emitter`] that appends outputs straight into the
//! output columns.
//!
//! `transform!` accepts two shapes of function:
//! - `fn(Event) -> Result<R, Error>`, the simple one: each input is copied
//!   into an owned [`Event`] and each output copied into the columns;
//! - `fn(EventRef<'_>, &mut Emitter<'_>) -> Result<(), Error>`, the
//!   zero-copy one: the input is borrowed from the batch and the output
//!   payload can be written in place ([`Emitter::emit_with`]).

use crate::bindings::types::{BatchHeader, ByteColumn, EventBatch, EventError, TransformOutput};
use crate::transform::IntoEvents;
use crate::{Error, Event, Header};

/// One input event, borrowed from its batch.
#[derive(Clone, Copy, Debug)]
pub struct EventRef<'a> {
    /// Optional partitioning / join key.
    pub key: Option<&'a [u8]>,
    /// The payload; JSON (UTF-8) by convention.
    pub value: &'a [u8],
    /// Event time in milliseconds since the Unix epoch.
    pub timestamp: i64,
    headers: HeadersRef<'a>,
}

/// The headers of an [`EventRef`]: part of a batch, or an owned event's.
#[derive(Clone, Copy, Debug)]
enum HeadersRef<'a> {
    Batch(&'a [BatchHeader]),
    Owned(&'a [Header]),
}

impl<'a> EventRef<'a> {
    /// A view of an owned event (for native tests of zero-copy functions).
    pub fn of(event: &'a Event) -> EventRef<'a> {
        EventRef {
            key: event.key.as_deref(),
            value: &event.value,
            timestamp: event.timestamp,
            headers: HeadersRef::Owned(&event.headers),
        }
    }

    /// The headers, in order, as `(name, value)`.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let (batch, owned): (&'a [BatchHeader], &'a [Header]) = match self.headers {
            HeadersRef::Batch(b) => (b, &[]),
            HeadersRef::Owned(o) => (&[], o),
        };
        let batch = batch.iter().map(|h| (h.name.as_str(), h.value.as_slice()));
        batch.chain(owned.iter().map(|h| (h.name.as_str(), h.value.as_slice())))
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The payload as UTF-8 text.
    pub fn value_str(&self) -> Result<&'a str, Error> {
        Ok(std::str::from_utf8(self.value)?)
    }

    /// An owned copy.
    pub fn to_event(&self) -> Event {
        Event {
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.to_vec(),
            timestamp: self.timestamp,
            headers: self.headers().map(|(name, value)| Header { name: name.to_string(), value: value.to_vec() }).collect(),
        }
    }
}

/// Where a function puts the outputs of the input event it was called with.
pub struct Emitter<'w> {
    pub(crate) out: &'w mut ColumnWriter,
    pub(crate) origin: u32,
}

impl Emitter<'_> {
    /// Emits an owned event.
    pub fn emit(&mut self, event: Event) {
        let Event { key, value, timestamp, headers } = event;
        self.out.values.data.extend_from_slice(&value);
        self.out.end_event(self.origin, key.as_deref(), timestamp);
        self.out.push_headers(headers);
    }

    /// Emits an event whose payload `write` appends to `buf` (the batch's
    /// payload column, so nothing is copied). `write` returns the event's
    /// timestamp, or `None` to emit nothing; on `None` or an error whatever
    /// it wrote is taken back. Returns whether an event was emitted.
    pub fn emit_with<E>(
        &mut self,
        key: Option<&[u8]>,
        write: impl FnOnce(&mut Vec<u8>) -> Result<Option<i64>, E>,
    ) -> Result<bool, E> {
        let mark = self.out.values.data.len();
        match write(&mut self.out.values.data) {
            Ok(Some(timestamp)) => {
                self.out.end_event(self.origin, key, timestamp);
                Ok(true)
            }
            Ok(None) => {
                self.out.values.data.truncate(mark);
                Ok(false)
            }
            Err(e) => {
                self.out.values.data.truncate(mark);
                Err(e)
            }
        }
    }

    /// Emits a header for the event emitted last (by this emitter).
    pub fn header(&mut self, name: &str, value: &[u8]) {
        if let Some(last) = self.out.origins.len().checked_sub(1) {
            if self.out.origins[last] == self.origin {
                self.out.headers.push(BatchHeader { event: last as u32, name: name.to_string(), value: value.to_vec() });
            }
        }
    }
}

/// A function `transform!` can export; `M` tells the two shapes apart.
pub trait TransformFn<M> {
    /// Handles one input event, emitting its outputs.
    fn handle(&mut self, event: EventRef<'_>, out: &mut Emitter<'_>) -> Result<(), Error>;
}

/// Marker of `fn(Event) -> Result<R, Error>`.
pub struct Owned<R>(std::marker::PhantomData<R>);
/// Marker of `fn(EventRef, &mut Emitter) -> Result<(), Error>`.
pub struct Borrowed;

impl<F, R> TransformFn<Owned<R>> for F
where
    F: FnMut(Event) -> Result<R, Error>,
    R: IntoEvents,
{
    fn handle(&mut self, event: EventRef<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
        for output in self(event.to_event())?.into_events() {
            out.emit(output);
        }
        Ok(())
    }
}

impl<F> TransformFn<Borrowed> for F
where
    F: FnMut(EventRef<'_>, &mut Emitter<'_>) -> Result<(), Error>,
{
    fn handle(&mut self, event: EventRef<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
        self(event, out)
    }
}

/// Runs `f` over every event of a columnar batch (what the `transform!`
/// export does). An input's outputs are tagged with its index; if `f`
/// fails, its outputs for that input are taken back and the error is
/// recorded instead.
#[doc(hidden)]
pub fn process_columns<M, F: TransformFn<M>>(batch: EventBatch, mut f: F) -> TransformOutput {
    let EventBatch { values, keys, keyless, timestamps, headers } = batch;
    let mut out = ColumnWriter::with_capacity(timestamps.len(), values.data.len());
    let mut keyless = keyless.iter().copied().peekable();
    let (mut value_start, mut key_start, mut header_start) = (0usize, 0usize, 0usize);
    for (i, &timestamp) in timestamps.iter().enumerate() {
        let index = i as u32;
        let value_end = values.ends.get(i).map_or(value_start, |&e| e as usize);
        let key_end = keys.ends.get(i).map_or(key_start, |&e| e as usize);
        // Skip headers of earlier events (a well-formed batch has none).
        while headers.get(header_start).is_some_and(|h| h.event < index) {
            header_start += 1;
        }
        let mut header_end = header_start;
        while headers.get(header_end).is_some_and(|h| h.event == index) {
            header_end += 1;
        }
        let has_key = keyless.next_if_eq(&index).is_none();
        let event = EventRef {
            key: has_key.then(|| slice(&keys.data, key_start, key_end)),
            value: slice(&values.data, value_start, value_end),
            timestamp,
            headers: HeadersRef::Batch(&headers[header_start..header_end]),
        };
        (value_start, key_start, header_start) = (value_end, key_end, header_end);
        let mark = out.mark();
        let result = f.handle(event, &mut Emitter { out: &mut out, origin: index });
        if let Err(e) = result {
            out.rewind(mark);
            out.errors.push(EventError { event: index, message: e.into_message() });
        }
    }
    out.finish()
}

/// `data[start..end]`, or empty if the host sent offsets out of range (it
/// never does; a plugin must not panic on it).
fn slice(data: &[u8], start: usize, end: usize) -> &[u8] {
    data.get(start..end).unwrap_or_default()
}

/// The output columns being built.
#[doc(hidden)]
pub struct ColumnWriter {
    values: ByteColumn,
    keys: ByteColumn,
    keyless: Vec<u32>,
    timestamps: Vec<i64>,
    headers: Vec<BatchHeader>,
    origins: Vec<u32>,
    errors: Vec<EventError>,
}

/// Lengths of the columns at some point, to rewind to.
#[derive(Clone, Copy)]
pub(crate) struct Mark {
    events: usize,
    values: usize,
    keys: usize,
    keyless: usize,
    headers: usize,
}

impl ColumnWriter {
    pub(crate) fn with_capacity(n: usize, value_bytes: usize) -> Self {
        ColumnWriter {
            values: ByteColumn { data: Vec::with_capacity(value_bytes), ends: Vec::with_capacity(n) },
            keys: ByteColumn { data: Vec::new(), ends: Vec::with_capacity(n) },
            keyless: Vec::new(),
            timestamps: Vec::with_capacity(n),
            headers: Vec::new(),
            origins: Vec::with_capacity(n),
            errors: Vec::new(),
        }
    }

    /// Closes the event whose payload was just appended to `values.data`.
    fn end_event(&mut self, origin: u32, key: Option<&[u8]>, timestamp: i64) {
        let index = self.timestamps.len() as u32;
        self.values.ends.push(self.values.data.len() as u32);
        match key {
            Some(key) => self.keys.data.extend_from_slice(key),
            None => self.keyless.push(index),
        }
        self.keys.ends.push(self.keys.data.len() as u32);
        self.timestamps.push(timestamp);
        self.origins.push(origin);
    }

    /// Headers of the event closed last.
    fn push_headers(&mut self, headers: Vec<Header>) {
        let event = self.timestamps.len() as u32 - 1;
        self.headers.extend(headers.into_iter().map(|h| BatchHeader { event, name: h.name, value: h.value }));
    }

    pub(crate) fn mark(&self) -> Mark {
        Mark {
            events: self.timestamps.len(),
            values: self.values.data.len(),
            keys: self.keys.data.len(),
            keyless: self.keyless.len(),
            headers: self.headers.len(),
        }
    }

    pub(crate) fn rewind(&mut self, mark: Mark) {
        self.values.data.truncate(mark.values);
        self.values.ends.truncate(mark.events);
        self.keys.data.truncate(mark.keys);
        self.keys.ends.truncate(mark.events);
        self.keyless.truncate(mark.keyless);
        self.timestamps.truncate(mark.events);
        self.headers.truncate(mark.headers);
        self.origins.truncate(mark.events);
    }

    /// Records that input `event` failed (after rewinding its outputs).
    pub(crate) fn error(&mut self, event: u32, message: String) {
        self.errors.push(EventError { event, message });
    }

    pub(crate) fn finish(self) -> TransformOutput {
        TransformOutput {
            events: EventBatch {
                values: self.values,
                keys: self.keys,
                keyless: self.keyless,
                timestamps: self.timestamps,
                headers: self.headers,
            },
            origins: self.origins,
            errors: self.errors,
        }
    }
}

/// `events` as the host sends them.
pub(crate) fn pack(events: Vec<Event>) -> EventBatch {
    let mut out = ColumnWriter::with_capacity(events.len(), 0);
    for event in events {
        Emitter { out: &mut out, origin: 0 }.emit(event);
    }
    out.finish().events
}

/// One outcome per input, as the host reads a [`TransformOutput`].
pub(crate) fn unpack(output: TransformOutput, inputs: usize) -> Vec<crate::Outcome> {
    let TransformOutput { events, origins, errors } = output;
    let mut outcomes: Vec<crate::Outcome> = (0..inputs).map(|_| Ok(Vec::new())).collect();
    let mut keyless = vec![false; origins.len()];
    for &i in &events.keyless {
        keyless[i as usize] = true;
    }
    let (mut value_start, mut key_start) = (0usize, 0usize);
    for (i, (&origin, &timestamp)) in origins.iter().zip(&events.timestamps).enumerate() {
        let (value_end, key_end) = (events.values.ends[i] as usize, events.keys.ends[i] as usize);
        let event = Event {
            key: (!keyless[i]).then(|| events.keys.data[key_start..key_end].to_vec()),
            value: events.values.data[value_start..value_end].to_vec(),
            timestamp,
            headers: events
                .headers
                .iter()
                .filter(|h| h.event == i as u32)
                .map(|h| Header { name: h.name.clone(), value: h.value.clone() })
                .collect(),
        };
        (value_start, key_start) = (value_end, key_end);
        if let Ok(list) = &mut outcomes[origin as usize] {
            list.push(event);
        }
    }
    for error in errors {
        outcomes[error.event as usize] = Err(error.message);
    }
    outcomes
}

/// Every event of a columnar batch, owned. Tolerates a malformed batch (the
/// host never sends one): missing items are empty.
pub(crate) fn owned_events(batch: &EventBatch) -> Vec<Event> {
    let EventBatch { values, keys, keyless, timestamps, headers } = batch;
    let (mut value_start, mut key_start) = (0usize, 0usize);
    let mut keyless = keyless.iter().copied().peekable();
    let mut events: Vec<Event> = timestamps
        .iter()
        .enumerate()
        .map(|(i, &timestamp)| {
            let value_end = values.ends.get(i).map_or(value_start, |&e| e as usize);
            let key_end = keys.ends.get(i).map_or(key_start, |&e| e as usize);
            let has_key = keyless.next_if_eq(&(i as u32)).is_none();
            let event = Event {
                key: has_key.then(|| slice(&keys.data, key_start, key_end).to_vec()),
                value: slice(&values.data, value_start, value_end).to_vec(),
                timestamp,
                headers: Vec::new(),
            };
            (value_start, key_start) = (value_end, key_end);
            event
        })
        .collect();
    for h in headers {
        if let Some(event) = events.get_mut(h.event as usize) {
            event.headers.push(Header { name: h.name.clone(), value: h.value.clone() });
        }
    }
    events
}
