//! Sources: each runs on its own thread, turns input into batches of events,
//! and sends them (with the records it refused) to the pipeline thread over
//! one bounded channel, which is how backpressure reaches it.

mod budget;
mod generator;
mod kafka;
mod kafka_figures;
mod kafka_group;
mod lines;
mod stdin;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::config::SourceConfig;
use crate::dead_letter::DeadLetter;
use crate::event::{Batch, Event, Origin, Partition};
use crate::record_schema::RecordCheck;
use crate::step::{KeyCapture, RoutedKey};

pub use generator::{
    event_time_at, request_id, write_join_record, write_record, ClickTargets, Generator, GeneratorEventTime, GeneratorParams,
    GeneratorSourceConfig, JoinImpressions, BASE_TIME_MS, CLICKS_PER_IMPRESSION,
};
pub use budget::{message_bytes, ByteBudget};
pub use kafka_figures::{KafkaFigures, PartitionFigures as KafkaPartitionFigures};
pub use kafka::{KafkaSourceConfig, KafkaStart, CONSUMER_DEFAULTS as KAFKA_CONSUMER_DEFAULTS};
pub use kafka_group::{Assignment, GroupMember, RevokeHook};
pub use lines::{FileSourceConfig, LineSource, StdinSourceConfig};
pub(crate) use lines::too_large;

/// Errors that stop a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source `{source_name}`: {path}: {error}")]
    Io { source_name: String, path: String, error: std::io::Error },
    #[error("source `{source_name}`: kafka: {error}")]
    Kafka { source_name: String, error: String },
}

/// What a source sends to the pipeline thread.
#[derive(Debug)]
pub enum SourceMessage {
    /// Events, with the keys a keyed step's [`KeyCapture`] read of each (when
    /// the emitter has one and read every event's).
    Batch(Batch, Option<Vec<RoutedKey>>),
    /// Records refused before any step saw them.
    Rejected(Vec<DeadLetter>),
    /// The source's watermark advanced: no event at or before this time
    /// (ms) follows. Sent after the batch that advanced it.
    Watermark(i64),
    /// Everything up to this point of the input has been sent (a checkpoint
    /// resumes a source here).
    Progress(crate::runtime::ResumePoint),
    /// The source failed and is opened again after `delay` (`on_error:
    /// "retry"`): until it sends again it holds back the watermarks it
    /// feeds, even past its idle timeout.
    Retrying { error: String, delay: Duration },
    /// The source's last message: why it ended. Only `Exhausted` makes its
    /// watermark the end of time.
    End(SourceEnd),
}

/// Why a source ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceEnd {
    /// Its input is exhausted: no more events, ever.
    Exhausted,
    /// It was stopped (a graceful stop of the pipeline): it has more to
    /// read, and a restart goes on from its position.
    Stopped,
    /// It failed (after its retries, if any): not the end of its data.
    Failed(String),
}

/// The watermark that means "no more events at all".
pub const END_OF_TIME: i64 = i64::MAX;

/// A running source: reads until exhausted or until the pipeline hangs up.
pub trait Source: Send {
    fn run(self: Box<Self>, out: &mut Emitter) -> Result<(), SourceError>;
}

/// Tells a source's own system where each completed checkpoint stands (a
/// Kafka source's group: its committed offsets). Called by the coordinator
/// after the checkpoint is complete; `last`: the run's final checkpoint.
pub trait PositionCommitter: Send {
    fn commit(&mut self, point: &crate::runtime::ResumePoint, last: bool);
}

/// What tells `config`'s system about completed checkpoints, if it has one.
pub fn build_committer(name: &str, config: &SourceConfig) -> Result<Option<Box<dyn PositionCommitter>>, SourceError> {
    Ok(match config {
        SourceConfig::Kafka(c) => Some(Box::new(kafka::KafkaCommitter::new(name, c)?)),
        _ => None,
    })
}

/// Builds the source described by `config`; `resume` is where a checkpoint
/// left it (standard input cannot be read again and goes on with what
/// comes next).
pub fn build_source(
    name: &str,
    config: &SourceConfig,
    resolve: impl Fn(&std::path::Path) -> std::path::PathBuf,
    resume: Option<crate::runtime::ResumePoint>,
) -> Box<dyn Source> {
    let resume = resume.unwrap_or_default();
    match config {
        SourceConfig::File(FileSourceConfig { path, common }) => Box::new(LineSource::file(name, resolve(path), common).resuming(resume)),
        SourceConfig::Stdin(StdinSourceConfig { common }) => Box::new(LineSource::stdin(name, common)),
        SourceConfig::Generator(GeneratorSourceConfig { shape, seed, rate, count, dirty_ratio, event_time, impressions, common }) => {
            let params = GeneratorParams {
                shape: *shape,
                seed: *seed,
                rate: *rate,
                count: *count,
                dirty_ratio: *dirty_ratio,
                event_time: *event_time,
                impressions: *impressions,
            };
            Box::new(Generator::new(name, params, common).resuming(resume.offset))
        }
        SourceConfig::Kafka(c) => Box::new(kafka::KafkaSource::new(name, c, resume)),
    }
}

/// Collects events into batches and sends them, full or when they have
/// lingered long enough.
pub struct Emitter {
    index: usize,
    name: Arc<str>,
    tx: Sender<(usize, SourceMessage)>,
    batch: Batch,
    rejected: Vec<DeadLetter>,
    batch_size: usize,
    linger: Duration,
    oldest: Option<Instant>,
    /// Bounded out-of-orderness of event times, in ms.
    out_of_orderness: i64,
    /// Largest event time pushed so far.
    max_time: Option<i64>,
    /// Per partition of a Kafka source, its largest event time and whether it
    /// has caught up with its end: the watermark is then the minimum over the
    /// partitions still reading (empty: one stream, `max_time`).
    lanes: Vec<Lane>,
    /// The earliest event time read in any lane: where a lane that has read
    /// nothing yet is taken to be ([`Emitter::lane_ahead`]).
    earliest_lane_time: Option<i64>,
    /// The lane of the records pushed next.
    lane: usize,
    /// Last watermark sent.
    watermark: i64,
    /// The input consumed so far, and what of it was last reported.
    point: crate::runtime::ResumePoint,
    sent_point: crate::runtime::ResumePoint,
    /// Set when the pipeline thread has gone away or the source is told to
    /// stop: stop reading.
    pub closed: bool,
    /// Set by the pipeline thread when every source is to stop.
    halt: Arc<AtomicBool>,
    /// The byte bound of the channel, shared by all sources.
    budget: Option<Arc<ByteBudget>>,
    /// Reads a keyed step's key in the source's pass over each record.
    capture: Option<Arc<dyn KeyCapture>>,
    /// The captured keys of the pending batch; `None` once an event of it
    /// came without one (the router then reads them all).
    routed: Option<Vec<RoutedKey>>,
    /// Counts the time `send` waits for room (the metrics' backpressure).
    blocked: Option<Arc<crate::runtime::NodeStats>>,
    /// Called once the end has been sent (a replay's sources end in turn).
    after_end: Option<Box<dyn FnOnce() + Send>>,
}

impl Emitter {
    pub fn new(index: usize, name: &str, tx: Sender<(usize, SourceMessage)>, batch_size: usize, linger: Duration) -> Self {
        Emitter {
            index,
            name: name.into(),
            tx,
            batch: Batch::with_capacity(batch_size),
            rejected: Vec::new(),
            batch_size,
            linger,
            oldest: None,
            out_of_orderness: 0,
            max_time: None,
            lanes: Vec::new(),
            earliest_lane_time: None,
            lane: 0,
            watermark: i64::MIN,
            point: Default::default(),
            sent_point: Default::default(),
            closed: false,
            halt: Arc::new(AtomicBool::new(false)),
            budget: None,
            capture: None,
            routed: None,
            blocked: None,
            after_end: None,
        }
    }

    /// Counts into `stats.blocked_nanos` the time it waits for room.
    pub fn with_blocked_count(mut self, stats: Arc<crate::runtime::NodeStats>) -> Self {
        self.blocked = Some(stats);
        self
    }

    /// Calls `f` once the source's end has been sent.
    pub fn after_end(&mut self, f: Box<dyn FnOnce() + Send>) {
        self.after_end = Some(f);
    }

    /// Reads `capture`'s key of each record in the record check's pass.
    pub fn with_capture(mut self, capture: Arc<dyn KeyCapture>) -> Self {
        self.capture = Some(capture);
        self.routed = Some(Vec::with_capacity(self.batch_size));
        self
    }

    /// What reads a keyed step's key in the record check's pass, if any.
    pub fn capture(&self) -> Option<&dyn KeyCapture> {
        self.capture.as_deref()
    }

    /// Stops the source (`closed`) once `halt` is set.
    pub fn with_halt(mut self, halt: Arc<AtomicBool>) -> Self {
        self.halt = halt;
        self
    }

    /// Takes each batch's bytes from `budget` before sending it.
    pub fn with_budget(mut self, budget: Arc<ByteBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Whether the source has been told to stop.
    pub fn stopping(&self) -> bool {
        self.halt.load(Relaxed)
    }

    /// The flag that tells the source to stop (for reads that wait).
    pub fn halt_flag(&self) -> Arc<AtomicBool> {
        self.halt.clone()
    }

    /// Where the source stands: the input consumed so far.
    pub fn position(&self) -> crate::runtime::ResumePoint {
        self.point.clone()
    }

    fn check_halt(&mut self) {
        if self.halt.load(Relaxed) {
            self.closed = true;
        }
    }

    /// Resumes at a checkpoint: from `point`, with the watermark it had
    /// (events at or before it stay late).
    pub fn resume_at(mut self, point: crate::runtime::ResumePoint, watermark: i64) -> Self {
        self.sent_point = point.clone();
        self.point = point;
        self.watermark = watermark;
        if watermark > i64::MIN {
            self.max_time = Some(watermark.saturating_add(self.out_of_orderness).saturating_add(1));
        }
        self
    }

    /// The source consumed its input up to `point` (called after each
    /// record, kept or not).
    pub fn consumed(&mut self, point: crate::runtime::ResumePoint) {
        self.point = point;
        self.check_halt();
    }

    /// A Kafka source consumed `partition` up to `next` (the offset to read
    /// next), its `line`th record (called after each record, kept or not).
    pub fn consumed_partition(&mut self, partition: &str, next: i64, line: u64) {
        match self.point.partitions.get_mut(partition) {
            Some(at) => *at = next,
            None => {
                self.point.partitions.insert(partition.to_string(), next);
            }
        }
        self.point.line = line;
        self.point.offset = line;
        self.check_halt();
    }

    /// Adds a lane (a Kafka partition, which the origins of its records
    /// name) to the watermark, not caught up: its index for [`set_lane`].
    ///
    /// [`set_lane`]: Emitter::set_lane
    pub fn add_lane(&mut self, partition: Arc<Partition>) -> usize {
        self.lanes.push(Lane { max: None, caught_up: false, partition });
        self.lanes.len() - 1
    }

    /// The lane of the records pushed from now on.
    pub fn set_lane(&mut self, lane: usize) {
        self.lane = lane;
    }

    /// Lane `lane` has read everything there is for now: until it reads again,
    /// it no longer holds the watermark back.
    pub fn lane_caught_up(&mut self, lane: usize) {
        if let Some(l) = self.lanes.get_mut(lane) {
            l.caught_up = true;
        }
    }

    /// Whether lane `lane` has read more than `by_ms` of event time past the
    /// slowest lane still reading (the one holding the watermark back). A
    /// lane that has read nothing yet counts as being at the earliest time
    /// any lane read (where the backlog starts, as far as is known): the
    /// others read on up to `by_ms` past it while it waits for its first
    /// fetch, instead of stopping (about 0.2 s at the start of every run
    /// against Tansu). The Kafka source lets a lane ahead wait for the
    /// others, so that a backlog is read with its partitions side by side in
    /// event time.
    pub fn lane_ahead(&self, lane: usize, by_ms: i64) -> bool {
        let Some(max) = self.lanes.get(lane).and_then(|l| l.max) else { return false };
        match self.lanes.iter().filter(|l| !l.caught_up).map(|l| l.max).min() {
            // Every lane caught up.
            None => false,
            Some(None) => self.earliest_lane_time.is_some_and(|earliest| max > earliest.saturating_add(by_ms)),
            Some(Some(slowest)) => max > slowest.saturating_add(by_ms),
        }
    }

    /// The largest event time the watermark may follow: over the lanes still
    /// reading, the smallest of their largest times (a lane that has read
    /// nothing yet holds it back); when all have caught up, the largest.
    fn watermark_time(&self) -> Option<i64> {
        if self.lanes.is_empty() {
            return self.max_time;
        }
        let mut reading = self.lanes.iter().filter(|l| !l.caught_up).peekable();
        if reading.peek().is_none() {
            return self.lanes.iter().filter_map(|l| l.max).max();
        }
        // `None` (read nothing yet) is the minimum: it holds the watermark.
        reading.map(|l| l.max).min().flatten()
    }

    /// Sets the bounded out-of-orderness the watermark allows for.
    pub fn with_out_of_orderness(mut self, ms: u64) -> Self {
        self.out_of_orderness = ms.min(i64::MAX as u64) as i64;
        self
    }

    /// The origin of the record at `position` of the current lane.
    pub fn origin(&self, position: u64) -> Origin {
        Origin { source: self.name.clone(), position, partition: self.lanes.get(self.lane).map(|l| l.partition.clone()) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn push(&mut self, event: Event, position: u64) {
        self.push_routed(event, position, None);
    }

    /// [`Self::push`] with the key the capture read of it.
    pub fn push_routed(&mut self, event: Event, position: u64, routed: Option<RoutedKey>) {
        match (routed, &mut self.routed) {
            (Some(k), Some(keys)) => keys.push(k),
            (None, keys) => *keys = None,
            (Some(_), None) => {}
        }
        if self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
        self.max_time = Some(self.max_time.map_or(event.timestamp, |t| t.max(event.timestamp)));
        if let Some(lane) = self.lanes.get_mut(self.lane) {
            lane.max = Some(lane.max.map_or(event.timestamp, |t| t.max(event.timestamp)));
            self.earliest_lane_time = Some(self.earliest_lane_time.map_or(event.timestamp, |t| t.min(event.timestamp)));
            lane.caught_up = false;
        }
        let origin = self.origin(position);
        self.batch.push(event, origin);
        if self.batch.len() >= self.batch_size {
            self.flush();
        }
    }

    pub fn reject(&mut self, dead: DeadLetter) {
        if self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
        self.rejected.push(dead);
        if self.rejected.len() >= self.batch_size {
            self.flush();
        }
    }

    /// Flushes when the oldest pending event has waited `linger`.
    pub fn maybe_flush(&mut self) {
        self.check_halt();
        if self.oldest.is_some_and(|t| t.elapsed() >= self.linger) {
            self.flush();
        }
    }

    pub fn has_pending(&self) -> bool {
        self.oldest.is_some()
    }

    pub fn flush(&mut self) {
        self.oldest = None;
        // Rejections first: they come from earlier or the same positions.
        if !self.rejected.is_empty() {
            let r = std::mem::take(&mut self.rejected);
            self.send(SourceMessage::Rejected(r));
        }
        if !self.batch.is_empty() {
            let b = std::mem::replace(&mut self.batch, Batch::with_capacity(self.batch_size));
            let fresh = self.capture.is_some().then(|| Vec::with_capacity(self.batch_size));
            let keys = std::mem::replace(&mut self.routed, fresh).filter(|k| k.len() == b.len());
            self.send(SourceMessage::Batch(b, keys));
        }
        // W = max time - out-of-orderness - 1: events at W are already late.
        if let Some(max) = self.watermark_time() {
            let watermark = max.saturating_sub(self.out_of_orderness).saturating_sub(1);
            if watermark > self.watermark {
                self.watermark = watermark;
                self.send(SourceMessage::Watermark(watermark));
            }
        }
        if self.point != self.sent_point {
            self.sent_point = self.point.clone();
            self.send(SourceMessage::Progress(self.point.clone()));
        }
    }

    /// Hands over what is pending, then says why the source ended.
    pub fn finish(&mut self, end: SourceEnd) {
        self.flush();
        self.send(SourceMessage::End(end));
        if let Some(f) = self.after_end.take() {
            f();
        }
    }

    /// Hands over what is pending, then says the source will be retried.
    fn retrying(&mut self, error: String, delay: Duration) {
        self.flush();
        self.send(SourceMessage::Retrying { error, delay });
    }

    /// Waits `delay`, or less when told to stop; false if told to stop.
    fn backoff(&self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        while !self.stopping() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
        false
    }

    /// Sends `msg`, waiting for room in the channel (its bytes and its
    /// messages); the clock is read only when it must wait.
    fn send(&mut self, msg: SourceMessage) {
        let mut waited = Duration::ZERO;
        if let Some(budget) = &self.budget {
            // Waits while the channel holds too many bytes; the pipeline
            // thread gives them back as it takes each message.
            let bytes = message_bytes(&msg);
            if !budget.try_acquire(bytes) {
                let start = Instant::now();
                let acquired = budget.acquire(bytes);
                waited += start.elapsed();
                if !acquired {
                    self.closed = true;
                    return;
                }
            }
        }
        match self.tx.try_send((self.index, msg)) {
            Ok(()) => {}
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => self.closed = true,
            Err(crossbeam_channel::TrySendError::Full(m)) => {
                let start = Instant::now();
                if self.tx.send(m).is_err() {
                    self.closed = true;
                }
                waited += start.elapsed();
            }
        }
        if let Some(stats) = self.blocked.as_ref().filter(|_| !waited.is_zero()) {
            stats.blocked_nanos.fetch_add(waited.as_nanos() as u64, Relaxed);
        }
    }
}

/// One partition's part in a source's watermark.
#[derive(Clone, Debug)]
struct Lane {
    max: Option<i64>,
    caught_up: bool,
    partition: Arc<Partition>,
}

/// Makes a source again, at a position (a retry after an error).
pub type SourceFactory = Arc<dyn Fn(crate::runtime::ResumePoint) -> Box<dyn Source> + Send + Sync>;

/// Runs `source` to its end on its thread: until exhausted, stopped or
/// failed. With a retry policy a failed source is made again by `factory`
/// at its position after a backoff; a panic is a failure like an error.
pub fn drive(
    mut source: Box<dyn Source>,
    factory: &SourceFactory,
    retry: Option<&crate::config::RetrySettings>,
    out: &mut Emitter,
) -> SourceEnd {
    let mut attempt = 0u32;
    let mut delay = retry.map_or(0, |r| r.initial_ms);
    loop {
        let before = out.point.clone();
        let emitter = &mut *out;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || source.run(emitter)));
        // Told to stop: whatever the read returned, the input goes on.
        if out.stopping() {
            return SourceEnd::Stopped;
        }
        let error = match result {
            Ok(Ok(())) => return SourceEnd::Exhausted,
            Ok(Err(e)) => e.to_string(),
            Err(panic) => {
                let what = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
                format!("source `{}` panicked: {}", out.name, what.unwrap_or_default())
            }
        };
        let Some(r) = retry else { return SourceEnd::Failed(error) };
        if out.point != before {
            // It read something: a new failure starts the backoff over.
            attempt = 0;
            delay = r.initial_ms;
        }
        attempt += 1;
        if r.max_attempts > 0 && attempt > r.max_attempts {
            return SourceEnd::Failed(format!("{error} (gave up after {} retries)", r.max_attempts));
        }
        tracing::warn!(source = %out.name, %error, attempt, retry_in_ms = delay, "source failed; retrying from its position");
        let wait = Duration::from_millis(delay);
        out.retrying(error, wait);
        if !out.backoff(wait) {
            return SourceEnd::Stopped;
        }
        delay = delay.saturating_mul(2).min(r.max_ms.max(r.initial_ms));
        source = factory(out.point.clone());
    }
}

/// Applies a source's record checks to one raw record at `position`,
/// pushing it as an event or dead-lettering it.
pub(crate) fn admit(out: &mut Emitter, check: &RecordCheck, max_bytes: usize, raw: Vec<u8>, position: u64, default_ts: i64) {
    admit_record(out, check, max_bytes, raw, position, default_ts, None, Vec::new());
}

/// [`admit`] for a record that comes with a key (the event key unless the
/// source's `key_field` names one) and headers (Kafka).
#[allow(clippy::too_many_arguments)]
pub(crate) fn admit_record(
    out: &mut Emitter,
    check: &RecordCheck,
    max_bytes: usize,
    raw: Vec<u8>,
    position: u64,
    default_ts: i64,
    key: Option<Vec<u8>>,
    headers: Vec<crate::event::Header>,
) {
    use crate::dead_letter::DeadKind;
    let dead = |kind, reason: String, raw: Vec<u8>, out: &Emitter| DeadLetter {
        kind,
        reason,
        origin: out.origin(position),
        step: None,
        plugin: None,
        event: Event::from_value(raw, default_ts),
    };
    if raw.len() > max_bytes {
        let d = dead(DeadKind::TooLarge, format!("record of {} bytes exceeds max_record_bytes ({max_bytes})", raw.len()), raw, out);
        return out.reject(d);
    }
    match check.check_capturing(&raw, out.capture()) {
        Ok(x) => {
            let mut e = Event::from_value(raw, x.timestamp.unwrap_or(default_ts));
            e.key = x.key.or(key);
            e.headers = headers;
            out.push_routed(e, position, x.routed);
        }
        Err(r) => {
            let kind = if r.0.starts_with("malformed") { DeadKind::Malformed } else { DeadKind::Schema };
            let d = dead(kind, r.0, raw, out);
            out.reject(d);
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watermarks an emitter with 2 lanes sends as `steps` run.
    fn watermarks(steps: &[(&str, usize, i64)]) -> Vec<i64> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut out = Emitter::new(0, "k", tx, 1000, Duration::from_secs(60)).with_out_of_orderness(10);
        for partition in 0..2 {
            out.add_lane(Arc::new(Partition { topic: "t".into(), partition }));
        }
        for (what, lane, t) in steps {
            match *what {
                "push" => {
                    out.set_lane(*lane);
                    out.push(Event::from_value(b"{}".to_vec(), *t), 0);
                }
                "caught-up" => out.lane_caught_up(*lane),
                _ => unreachable!(),
            }
            out.flush();
        }
        drop(out);
        rx.try_iter().filter_map(|(_, m)| if let SourceMessage::Watermark(w) = m { Some(w) } else { None }).collect()
    }

    #[test]
    fn the_watermark_of_partitions_is_held_by_the_slowest_until_it_catches_up() {
        // Lane 1 has read nothing: no watermark, however far lane 0 goes.
        assert_eq!(watermarks(&[("push", 0, 100), ("push", 0, 500)]), Vec::<i64>::new());
        // Then the slowest lane's time leads; a lane that caught up stops holding it back, until it reads
        // again (at 300: its 289 is below the 489 sent, so nothing goes back).
        let got = watermarks(&[("push", 0, 500), ("push", 1, 100), ("push", 1, 200), ("caught-up", 1, 0), ("push", 1, 300), ("push", 0, 900)]);
        assert_eq!(got, vec![89, 189, 489]);
        // Every lane caught up: the largest time read.
        assert_eq!(watermarks(&[("push", 0, 500), ("push", 1, 100), ("caught-up", 0, 0), ("caught-up", 1, 0)]), vec![89, 489]);
    }

    #[test]
    fn a_lane_is_ahead_past_the_slowest_lane_still_reading() {
        let (tx, _rx) = crossbeam_channel::unbounded();
        let mut out = Emitter::new(0, "k", tx, 1000, Duration::from_secs(60));
        for partition in 0..2 {
            out.add_lane(Arc::new(Partition { topic: "t".into(), partition }));
        }
        assert!(!out.lane_ahead(0, 50), "nothing read: not ahead");
        out.set_lane(0);
        out.push(Event::from_value(b"{}".to_vec(), 100), 0);
        assert!(!out.lane_ahead(0, 50), "a lane that has read nothing is taken to be at the earliest time read (100)");
        out.push(Event::from_value(b"{}".to_vec(), 150), 0);
        assert!(!out.lane_ahead(0, 50), "within the bound of it");
        out.push(Event::from_value(b"{}".to_vec(), 151), 0);
        assert!(out.lane_ahead(0, 50), "past it: waits for the lane that has read nothing");
        assert!(!out.lane_ahead(1, 50), "the one holding the others back is never ahead");
        out.set_lane(1);
        out.push(Event::from_value(b"{}".to_vec(), 110), 0);
        assert!(!out.lane_ahead(0, 50), "within the bound of the slowest (110)");
        out.set_lane(0);
        out.push(Event::from_value(b"{}".to_vec(), 161), 0);
        assert!(out.lane_ahead(0, 50), "past it");
        out.lane_caught_up(1);
        assert!(!out.lane_ahead(0, 50), "a lane caught up holds nothing back");
    }
}
