//! Sinks: where a pipeline's results go. They are written on the coordinator
//! thread, buffered, committed at each checkpoint and flushed at the end of
//! the run. File sinks are exactly once across a crash (see [`committed`]);
//! stdout is at least once; Kafka either (`kafka.rs`, `transaction.rs`).

pub mod committed;
mod kafka;
mod transaction;

pub use kafka::{Delivery, KafkaSinkConfig};
pub use transaction::{last_committed, read_commit_record, DEFAULT_TRANSACTION_TIMEOUT_MS};

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use committed::{CommittedFile, Output, Stream};

use base64::Engine as _;
use serde::Serialize;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::SinkConfig;
use crate::event::Batch;

/// `"type": "file"`: a file of lines, created or truncated at start (cut back to its committed length on a
/// restore).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Sources or steps this sink reads.
    pub inputs: Vec<String>,
    /// Path of the file.
    pub path: PathBuf,
    /// What is written per event.
    #[serde(default)]
    pub format: SinkFormat,
}

/// `"type": "stdout"`: standard output.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// Sources or steps this sink reads.
    pub inputs: Vec<String>,
    /// What is written per event.
    #[serde(default)]
    pub format: SinkFormat,
}

/// `"type": "null"`: discards events (benchmarks).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NullSinkConfig {
    /// Sources or steps this sink reads.
    pub inputs: Vec<String>,
}

/// What a sink writes per event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SinkFormat {
    /// The event's value, one per line.
    #[default]
    Value,
    /// A JSON object with key, value, timestamp and headers.
    Envelope,
}

/// Errors that stop a sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink `{sink}`: {target}: {error}")]
    Io { sink: String, target: String, error: io::Error },
    #[error("sink `{sink}`: kafka topic `{topic}`: {error}")]
    Kafka { sink: String, topic: String, error: String },
}

/// A place results are written to.
pub trait Sink: Send {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError>;
    fn flush(&mut self) -> Result<(), SinkError>;
    /// Makes everything written so far durable (a checkpoint). Returns the
    /// committed length a restore cuts a file back to; `None` for sinks that
    /// cannot roll back.
    fn commit(&mut self) -> Result<Option<u64>, SinkError> {
        self.flush()?;
        Ok(None)
    }
    /// Phase one of a checkpoint, before its record is written: everything
    /// written so far made durable, or prepared (a transaction). Returns
    /// what `commit` returns.
    fn prepare(&mut self) -> Result<Option<u64>, SinkError> {
        self.commit()
    }
    /// Phase two, once the checkpoint's record is durable: what `prepare`
    /// prepared is committed (a transactional sink; nothing for the others).
    fn checkpoint_done(&mut self, checkpoint: u64) -> Result<(), SinkError> {
        let _ = checkpoint;
        Ok(())
    }
    /// Whether `checkpoint_done` commits something: a checkpoint is then
    /// complete only once it returned (`checkpoint.rs`, `confirm`).
    fn transactional(&self) -> bool {
        false
    }
    /// Human-readable target for summaries (a path, `stdout`).
    fn target(&self) -> String;
}

/// What a sink is built with besides its config.
pub struct SinkContext<'a> {
    /// The committed length of its file at the checkpoint the run resumes from.
    pub resume: Option<u64>,
    /// The lineage of the run's checkpoints (a transactional sink's commit record names it).
    pub lineage: &'a str,
    /// Scale-out: this process's instance name.
    pub instance: Option<&'a str>,
}

/// Builds a sink.
pub fn build_sink(name: &str, config: &SinkConfig, resolve: impl Fn(&Path) -> PathBuf, cx: &SinkContext<'_>) -> Result<Box<dyn Sink>, SinkError> {
    let resume = cx.resume;
    Ok(match config {
        SinkConfig::File(FileSinkConfig { path, format, .. }) => {
            let path = resolve(path);
            let io_err = |error| SinkError::Io { sink: name.into(), target: path.display().to_string(), error };
            let out = CommittedFile::open(&path, resume).map_err(io_err)?;
            Box::new(LineSink { name: name.into(), target: path.display().to_string(), out: Box::new(out), format: *format })
        }
        SinkConfig::Stdout(StdoutSinkConfig { format, .. }) => Box::new(LineSink {
            name: name.into(),
            target: "stdout".into(),
            out: Box::new(Stream(BufWriter::with_capacity(1 << 16, io::stdout()))),
            format: *format,
        }),
        SinkConfig::Null(_) => Box::new(NullSink),
        SinkConfig::Kafka(c) => {
            let transactional = c.transactional_id_of(cx.instance).map(|id| (id, cx.lineage.to_string()));
            Box::new(kafka::KafkaSink::open(name, c, transactional)?)
        }
    })
}

/// One event per line, as its value or as an envelope.
struct LineSink {
    name: String,
    target: String,
    out: Box<dyn Output>,
    format: SinkFormat,
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    timestamp: i64,
    value: EnvelopeValue<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    headers: Vec<(&'a str, String)>,
}

/// A JSON value is embedded as is; anything else is carried as a string.
#[derive(Serialize)]
#[serde(untagged)]
enum EnvelopeValue<'a> {
    Json(&'a serde_json::value::RawValue),
    Text(String),
}

fn text_or_base64(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => base64::engine::general_purpose::STANDARD.encode(b),
    }
}

impl Sink for LineSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let io_err = |error| SinkError::Io { sink: self.name.clone(), target: self.target.clone(), error };
        for e in &batch.events {
            match self.format {
                SinkFormat::Value => {
                    self.out.write_all(&e.value).map_err(io_err)?;
                }
                SinkFormat::Envelope => {
                    let value = match std::str::from_utf8(&e.value).ok().and_then(|s| serde_json::from_str(s).ok()) {
                        Some(raw) => EnvelopeValue::Json(raw),
                        None => EnvelopeValue::Text(text_or_base64(&e.value)),
                    };
                    let env = Envelope {
                        key: e.key.as_deref().map(text_or_base64),
                        timestamp: e.timestamp,
                        value,
                        headers: e.headers.iter().map(|h| (h.name.as_str(), text_or_base64(&h.value))).collect(),
                    };
                    serde_json::to_writer(&mut self.out, &env).map_err(|e| io_err(io::Error::other(e)))?;
                }
            }
            self.out.write_all(b"\n").map_err(io_err)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|error| SinkError::Io { sink: self.name.clone(), target: self.target.clone(), error })
    }

    fn commit(&mut self) -> Result<Option<u64>, SinkError> {
        self.out.commit().map_err(|error| SinkError::Io { sink: self.name.clone(), target: self.target.clone(), error })
    }

    fn target(&self) -> String {
        self.target.clone()
    }
}

/// Discards everything (benchmarks).
struct NullSink;

impl Sink for NullSink {
    fn write_batch(&mut self, _: &Batch) -> Result<(), SinkError> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    fn target(&self) -> String {
        "null".into()
    }
}
