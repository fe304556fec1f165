//! The dead-letter sink: every event the pipeline refuses is written here,
//! whole, with where it came from and why, so nothing is lost silently.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;

use crate::event::{Event, Origin};
use crate::sink::committed::{CommittedFile, Output, Stream};

/// Why an event was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadKind {
    /// Not well-formed JSON (or not UTF-8).
    Malformed,
    /// Violates the source's declared schema.
    Schema,
    /// Larger than the source's `max_record_bytes`.
    TooLarge,
    /// A plugin returned an error for this event.
    PluginError,
    /// A plugin trapped (panic, illegal operation) on this event.
    PluginTrap,
    /// A plugin ran out of its time budget on this event.
    PluginTimeout,
    /// A plugin ran out of memory on this event.
    PluginOutOfMemory,
    /// A plugin's output for this event broke a limit.
    PluginLimit,
    /// A step could not apply to this event (e.g. a UDF step on a non-object).
    StepError,
    /// Arrived after the watermark passed the time it needed (its window
    /// had closed), beyond the allowed lateness.
    Late,
    /// A `lookup-join` found no value for its key (or it had no key), and
    /// its `on_miss` is `dead-letter`.
    LookupMiss,
    /// A `lookup-join`'s table did not answer within `miss_after_ms`, and
    /// its `on_miss` is `dead-letter`.
    LookupUnavailable,
}

impl DeadKind {
    /// Every kind, in declaration order.
    pub const ALL: [DeadKind; 12] = [
        DeadKind::Malformed,
        DeadKind::Schema,
        DeadKind::TooLarge,
        DeadKind::PluginError,
        DeadKind::PluginTrap,
        DeadKind::PluginTimeout,
        DeadKind::PluginOutOfMemory,
        DeadKind::PluginLimit,
        DeadKind::StepError,
        DeadKind::Late,
        DeadKind::LookupMiss,
        DeadKind::LookupUnavailable,
    ];

    /// The name written in dead letters (`kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeadKind::Malformed => "malformed",
            DeadKind::Schema => "schema",
            DeadKind::TooLarge => "too-large",
            DeadKind::PluginError => "plugin-error",
            DeadKind::PluginTrap => "plugin-trap",
            DeadKind::PluginTimeout => "plugin-timeout",
            DeadKind::PluginOutOfMemory => "plugin-out-of-memory",
            DeadKind::PluginLimit => "plugin-limit",
            DeadKind::StepError => "step-error",
            DeadKind::Late => "late",
            DeadKind::LookupMiss => "lookup-miss",
            DeadKind::LookupUnavailable => "lookup-unavailable",
        }
    }

    /// The kind named `name` (as [`DeadKind::as_str`] writes it).
    pub fn from_name(name: &str) -> Option<DeadKind> {
        DeadKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// Dead letters written in this run, by kind (read by the metrics).
#[derive(Debug, Default)]
pub struct DeadCounts([std::sync::atomic::AtomicU64; DeadKind::ALL.len()]);

impl DeadCounts {
    pub fn get(&self, kind: DeadKind) -> u64 {
        self.0[kind as usize].load(std::sync::atomic::Ordering::Relaxed)
    }

    fn add(&self, kind: DeadKind) {
        self.0[kind as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One refused event, ready to be written.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    pub kind: DeadKind,
    pub reason: String,
    pub origin: Origin,
    /// The step that refused it, if not the source.
    pub step: Option<String>,
    /// The plugin that refused it, if any.
    pub plugin: Option<String>,
    pub event: Event,
}

#[derive(Serialize)]
struct Line<'a> {
    kind: DeadKind,
    reason: &'a str,
    source: &'a str,
    /// Line number in a file or stdin, sequence number for a generator,
    /// offset for Kafka.
    position: u64,
    /// The Kafka topic, partition and offset of a record of a `kafka` source.
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plugin: Option<&'a str>,
    /// Event time; absent for records refused by their source (they have none yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// The value as text when it is UTF-8 ...
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    /// ... else base64 of its bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
}

/// Where dead letters go.
pub struct DeadLetterWriter {
    out: Box<dyn Output>,
    path: Option<PathBuf>,
    count: u64,
    /// This run's, by kind.
    by_kind: std::sync::Arc<DeadCounts>,
}

impl DeadLetterWriter {
    /// A file of dead letters; `resume`: its committed length and count at
    /// the checkpoint the run resumes from (the file is cut back to it).
    pub fn file(path: &Path, resume: Option<(u64, u64)>) -> io::Result<Self> {
        let out = CommittedFile::open(path, resume.map(|(len, _)| len))?;
        Ok(DeadLetterWriter { out: Box::new(out), path: Some(path.to_path_buf()), count: resume.map_or(0, |(_, n)| n), by_kind: Default::default() })
    }

    pub fn stderr() -> Self {
        DeadLetterWriter { out: Box::new(Stream(BufWriter::new(io::stderr()))), path: None, count: 0, by_kind: Default::default() }
    }

    /// Makes the dead letters durable; the committed length of the file.
    pub fn commit(&mut self) -> io::Result<Option<u64>> {
        self.out.commit()
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// This run's dead letters by kind (a restored run's start at 0).
    pub fn by_kind(&self) -> std::sync::Arc<DeadCounts> {
        self.by_kind.clone()
    }

    pub fn write(&mut self, d: &DeadLetter) -> io::Result<()> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let text = std::str::from_utf8(&d.event.value).ok();
        let line = Line {
            kind: d.kind,
            reason: &d.reason,
            source: &d.origin.source,
            position: d.origin.position,
            topic: d.origin.partition.as_ref().map(|p| p.topic.as_str()),
            partition: d.origin.partition.as_ref().map(|p| p.partition),
            offset: d.origin.partition.as_ref().map(|_| d.origin.position),
            step: d.step.as_deref(),
            plugin: d.plugin.as_deref(),
            timestamp: d.step.as_ref().map(|_| d.event.timestamp),
            key: d.event.key.as_ref().map(|k| String::from_utf8(k.clone()).unwrap_or_else(|_| b64.encode(k))),
            value: text,
            value_base64: if text.is_none() { Some(b64.encode(&d.event.value)) } else { None },
        };
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")?;
        self.count += 1;
        self.by_kind.add(d.kind);
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::DeadKind;

    #[test]
    fn every_kind_is_listed_under_the_name_dead_letters_carry() {
        for (i, kind) in DeadKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "ALL is in declaration order (DeadCounts indexes by it)");
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }
}
