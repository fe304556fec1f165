//! The event that flows through a pipeline, and where it came from.
//!
//! Steps see events one by one; the plugin runtime packs a batch of them
//! into the WIT's columnar `event-batch` when it crosses into a plugin
//! (see `plugin::columns`).

use std::sync::Arc;

/// One event flowing through a pipeline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// Optional partitioning / join key, raw bytes.
    pub key: Option<Vec<u8>>,
    /// The payload; JSON (UTF-8) by convention.
    pub value: Vec<u8>,
    /// Event time in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Free-form metadata carried along with the event.
    pub headers: Vec<Header>,
}

/// One header of an event: a name and a raw value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Header name (case-sensitive).
    pub name: String,
    /// Raw header value.
    pub value: Vec<u8>,
}

/// Where an event entered the pipeline, so a dead-lettered record can be found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Name of the source in pipeline.json.
    pub source: Arc<str>,
    /// Position within the source: 1-based line number for line-oriented
    /// sources, sequence number for the generator, offset for Kafka.
    pub position: u64,
    /// The Kafka partition of a record of a `kafka` source (its `position`
    /// is the offset in it); shared by every record of the partition.
    pub partition: Option<Arc<Partition>>,
}

impl Origin {
    /// An origin outside any partition.
    pub fn new(source: impl Into<Arc<str>>, position: u64) -> Self {
        Origin { source: source.into(), position, partition: None }
    }
}

/// A partition of a Kafka topic.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub topic: String,
    pub partition: i32,
}

/// A batch of events with their origins (parallel vectors: `events[i]` came
/// from `origins[i]`). Kept apart so `events` can be handed to a plugin as is.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub events: Vec<Event>,
    pub origins: Vec<Origin>,
}

impl Batch {
    pub fn with_capacity(n: usize) -> Self {
        Batch { events: Vec::with_capacity(n), origins: Vec::with_capacity(n) }
    }

    pub fn push(&mut self, event: Event, origin: Origin) {
        self.events.push(event);
        self.origins.push(origin);
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

impl Event {
    /// An event with only a value and a timestamp.
    pub fn from_value(value: Vec<u8>, timestamp: i64) -> Self {
        Event { key: None, value, timestamp, headers: Vec::new() }
    }
}
