//! The sources of a replay: sample files read whole, and handed to the
//! pipeline in one order fixed before the run, whatever the threads do.
//!
//! Each source still runs on its own thread with its own `Emitter` (so
//! record checks, dead letters, watermarks and positions are the real
//! ones), but it sends only on its *turns*: the records of all sources are
//! merged by event time (file order kept within a source, ties to the source
//! named first), cut into runs of one source of at most `batch_size`
//! records, and each run is one turn: the source admits its records, flushes
//! (its batch, then its watermark) and passes the turn on. All sources share
//! one channel into the coordinator, so the coordinator sees the same
//! sequence of messages on every run. After the last turn every source ends
//! as exhausted. No clock is read: a record without event time (a source
//! without `timestamp_field`) gets virtual time, [`VIRTUAL_EPOCH_MS`] plus its
//! line number.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use serde::Deserialize;

use crate::config::SourceCommon;
use crate::event::Header;
use crate::record_schema::RecordCheck;
use crate::source::{Emitter, Source, SourceError};

/// Where virtual time starts: 2000-01-01T00:00:00Z (as the plugins' logical clock).
pub const VIRTUAL_EPOCH_MS: i64 = 946_684_800_000;

/// The most bytes of samples a replay reads (they are held in memory).
pub const MAX_SAMPLE_BYTES: u64 = 1 << 30;

/// How a sample file holds its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleForm {
    /// `NAME.jsonl`: each line a record as the source reads it (for Kafka,
    /// the record's value).
    Records,
    /// `NAME.events.jsonl`: each line an event envelope, `{"value": ...,
    /// "key": "...", "timestamp": ms, "headers": [["name", "value"]]}` (the
    /// `envelope` format of a file sink), for what the records alone do not
    /// carry: a Kafka key or timestamp, or a step's output.
    Events,
}

impl SampleForm {
    /// The file of `name` in `dir` in this form.
    pub fn path(self, dir: &Path, name: &str) -> PathBuf {
        match self {
            SampleForm::Records => dir.join(format!("{name}.jsonl")),
            SampleForm::Events => dir.join(format!("{name}.events.jsonl")),
        }
    }

    /// The sample file of `name` in `dir`, if there is one (an error if both forms are).
    pub fn find(dir: &Path, name: &str) -> Result<Option<(PathBuf, SampleForm)>, String> {
        let (records, events) = (SampleForm::Records.path(dir, name), SampleForm::Events.path(dir, name));
        match (records.is_file(), events.is_file()) {
            (true, true) => Err(format!("both {} and {} exist: keep one", records.display(), events.display())),
            (true, false) => Ok(Some((records, SampleForm::Records))),
            (false, true) => Ok(Some((events, SampleForm::Events))),
            (false, false) => Ok(None),
        }
    }
}

/// One line of a `NAME.events.jsonl` file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    /// The value, as JSON.
    #[serde(default, deserialize_with = "crate::lookup::file::present")]
    value: Option<Box<serde_json::value::RawValue>>,
    /// ... or as text that is not JSON.
    #[serde(default)]
    value_text: Option<String>,
    #[serde(default)]
    value_base64: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    headers: Vec<(String, String)>,
}

/// A record of a sample, with its line.
struct Record {
    line: u64,
    value: Vec<u8>,
    /// From an envelope: its key, time and headers.
    key: Option<Vec<u8>>,
    time: Option<i64>,
    headers: Vec<Header>,
}

/// One source's sample.
pub struct SampleFile {
    pub name: String,
    pub path: PathBuf,
    pub form: SampleForm,
    records: Vec<Record>,
    /// It stands for a file or stdin source: a line too long is refused as
    /// that source refuses it.
    pub lines: bool,
}

impl SampleFile {
    /// Reads `path` (in `form`). Blank lines are skipped but counted, as a
    /// file source counts them.
    pub fn read(name: &str, path: &Path, form: SampleForm) -> Result<SampleFile, String> {
        let len = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.len();
        if len > MAX_SAMPLE_BYTES {
            return Err(format!("{}: {len} bytes; a sample is read into memory and may have at most {MAX_SAMPLE_BYTES}", path.display()));
        }
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut records = Vec::new();
        for (n, raw) in bytes.split(|b| *b == b'\n').enumerate() {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let line = n as u64 + 1;
            records.push(match form {
                SampleForm::Records => Record { line, value: raw.to_vec(), key: None, time: None, headers: Vec::new() },
                SampleForm::Events => envelope(raw).map_err(|e| format!("{}:{line}: {e}", path.display()))?.with_line(line),
            });
        }
        Ok(SampleFile { name: name.to_string(), path: path.to_path_buf(), form, records, lines: false })
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The smallest out-of-orderness under which no record of this sample is
    /// late: the furthest any event time falls behind the largest before it.
    pub fn disorder_ms(&self, common: &SourceCommon) -> u64 {
        let check = RecordCheck::new(common);
        let mut max: Option<i64> = None;
        let mut worst = 0u64;
        for r in &self.records {
            let Some(t) = time_of(&check, r) else { continue };
            if let Some(m) = max {
                worst = worst.max(m.saturating_sub(t).max(0) as u64);
            }
            max = Some(max.map_or(t, |m| m.max(t)));
        }
        worst
    }
}

impl Record {
    fn with_line(mut self, line: u64) -> Record {
        self.line = line;
        self
    }
}

fn envelope(raw: &[u8]) -> Result<Record, String> {
    let e: Envelope = serde_json::from_slice(raw).map_err(|e| format!("not an event envelope such as {{\"value\": {{...}}, \"timestamp\": 1700000000000}}: {e}"))?;
    let value = match (e.value, e.value_text, e.value_base64) {
        (Some(v), None, None) => v.get().as_bytes().to_vec(),
        (None, Some(t), None) => t.into_bytes(),
        (None, None, Some(b)) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(b.as_bytes()).map_err(|e| format!("`value_base64`: {e}"))?
        }
        (None, None, None) => return Err("no `value` (nor `value_text`, `value_base64`)".into()),
        _ => return Err("give one of `value`, `value_text` and `value_base64`".into()),
    };
    let headers = e.headers.into_iter().map(|(name, value)| Header { name, value: value.into_bytes() }).collect();
    Ok(Record { line: 0, value, key: e.key.map(String::into_bytes), time: e.timestamp, headers })
}

/// A record's event time as its source reads it (`timestamp_field` first,
/// then an envelope's time), if it has one.
fn time_of(check: &RecordCheck, r: &Record) -> Option<i64> {
    check.check(&r.value).ok().and_then(|x| x.timestamp).or(r.time)
}

/// One turn: records `start..end` of source `source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Turn {
    source: usize,
    start: usize,
    end: usize,
}

/// The samples of every source of a replay and the order they go in.
pub struct Feed {
    files: Vec<Arc<SampleFile>>,
    /// Per source: what its records are checked with (its `SourceCommon`).
    checks: Vec<(RecordCheck, usize)>,
    turns: Vec<Turn>,
    /// The turn being taken (from `turns.len()` on, the sources' ends, in
    /// order; `usize::MAX`: given up).
    next: Mutex<usize>,
    moved: Condvar,
}

impl Feed {
    /// The feed of `files` (each with its source's settings), in turns of at
    /// most `batch_size` records.
    pub fn new(files: Vec<(SampleFile, SourceCommon)>, batch_size: usize) -> Arc<Feed> {
        let batch_size = batch_size.max(1);
        let checks: Vec<(RecordCheck, usize)> = files.iter().map(|(_, c)| (RecordCheck::new(c), c.max_record_bytes())).collect();
        // Each record's place in time: its event time, or (none) the place of the record before it.
        let times: Vec<Vec<i64>> = files
            .iter()
            .zip(&checks)
            .map(|((f, _), (check, _))| {
                let mut last = i64::MIN;
                f.records.iter().map(|r| {
                    last = time_of(check, r).unwrap_or(last);
                    last
                }).collect()
            })
            .collect();
        let mut at = vec![0usize; files.len()];
        let mut turns: Vec<Turn> = Vec::new();
        loop {
            // The source whose next record is earliest (ties: the one named first).
            let next = (0..files.len()).filter(|&s| at[s] < times[s].len()).min_by_key(|&s| (times[s][at[s]], s));
            let Some(s) = next else { break };
            match turns.last_mut() {
                Some(t) if t.source == s && t.end - t.start < batch_size => t.end += 1,
                _ => turns.push(Turn { source: s, start: at[s], end: at[s] + 1 }),
            }
            at[s] += 1;
        }
        Arc::new(Feed { files: files.into_iter().map(|(f, _)| Arc::new(f)).collect(), checks, turns, next: Mutex::new(0), moved: Condvar::new() })
    }

    /// The source reading sample `index` (in the order given to [`Feed::new`]).
    pub fn source(self: &Arc<Self>, index: usize) -> Box<dyn Source> {
        Box::new(ReplaySource { feed: self.clone(), index })
    }

    /// The index of `name`'s sample.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.files.iter().position(|f| f.name == name)
    }

    pub fn files(&self) -> impl Iterator<Item = &SampleFile> {
        self.files.iter().map(|f| &**f)
    }

    /// Waits for turn `k`; false if the replay was given up.
    fn wait_for(&self, k: usize) -> bool {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        while *next != k && *next != usize::MAX {
            next = self.moved.wait(next).unwrap_or_else(|e| e.into_inner());
        }
        *next == k
    }

    fn pass(&self, k: usize) {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        if *next == k {
            *next = k + 1;
        }
        self.moved.notify_all();
    }

    /// A source stops early (the pipeline is stopping): nobody waits any more.
    fn give_up(&self) {
        *self.next.lock().unwrap_or_else(|e| e.into_inner()) = usize::MAX;
        self.moved.notify_all();
    }
}

/// A source of a replay: its sample's records, on its turns.
struct ReplaySource {
    feed: Arc<Feed>,
    index: usize,
}

impl Source for ReplaySource {
    fn run(self: Box<Self>, out: &mut Emitter) -> Result<(), SourceError> {
        let feed = &self.feed;
        let file = &feed.files[self.index];
        let (check, max_bytes) = &feed.checks[self.index];
        let mine: Vec<(usize, Turn)> = feed.turns.iter().copied().enumerate().filter(|(_, t)| t.source == self.index).collect();
        for (k, turn) in mine {
            if !feed.wait_for(k) {
                return Ok(());
            }
            for r in &file.records[turn.start..turn.end] {
                let point = crate::runtime::ResumePoint { line: r.line, offset: r.line, ..Default::default() };
                out.consumed(point);
                if file.lines && r.value.len() > *max_bytes {
                    // What the file source would have buffered of it.
                    let buffered = &r.value[..r.value.len().min(max_bytes.saturating_add(2))];
                    let dead = crate::source::too_large(out, buffered, r.value.len() as u64, *max_bytes, r.line);
                    out.reject(dead);
                    continue;
                }
                let virtual_time = r.time.unwrap_or(VIRTUAL_EPOCH_MS.saturating_add(r.line as i64));
                crate::source::admit_record(out, check, *max_bytes, r.value.clone(), r.line, virtual_time, r.key.clone(), r.headers.clone());
            }
            out.flush();
            if out.closed {
                feed.give_up();
                return Ok(());
            }
            feed.pass(k);
        }
        // Every source ends after the last turn (the end of the samples is
        // the end of time for all of them at once), one after the other.
        let end = feed.turns.len() + self.index;
        if feed.wait_for(end) {
            let feed = feed.clone();
            out.after_end(Box::new(move || feed.pass(end)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, lines: &[&str]) -> SampleFile {
        let records = lines
            .iter()
            .enumerate()
            .map(|(i, l)| Record { line: i as u64 + 1, value: l.as_bytes().to_vec(), key: None, time: None, headers: Vec::new() })
            .collect();
        SampleFile { name: name.into(), path: PathBuf::new(), form: SampleForm::Records, records, lines: false }
    }

    fn timed() -> SourceCommon {
        SourceCommon { timestamp_field: Some("t".into()), ..Default::default() }
    }

    #[test]
    fn turns_follow_event_time_and_keep_file_order() {
        let a = sample("a", &[r#"{"t":1}"#, r#"{"t":2}"#, r#"{"t":10}"#, r#"{"t":3}"#, r#"{"t":11}"#]);
        let b = sample("b", &[r#"{"t":2}"#, r#"{"t":5}"#, "not json", r#"{"t":20}"#]);
        let feed = Feed::new(vec![(a, timed()), (b, timed())], 2);
        let got: Vec<(usize, usize, usize)> = feed.turns.iter().map(|t| (t.source, t.start, t.end)).collect();
        // a:1 a:2 | b:2 b:5 | b:bad (takes 5's place) | a:10 a:3 (file order) | a:11 | b:20
        assert_eq!(got, [(0, 0, 2), (1, 0, 2), (1, 2, 3), (0, 2, 4), (0, 4, 5), (1, 3, 4)]);
    }

    /// Runs `feed`'s sources to their end: per source, its messages.
    fn run(feed: &Arc<Feed>, n: usize) -> Vec<crate::source::SourceMessage> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let (feed, tx) = (feed.clone(), tx.clone());
                std::thread::spawn(move || {
                    let mut out = Emitter::new(i, &feed.files[i].name, tx, 1000, std::time::Duration::from_secs(3600));
                    feed.source(i).run(&mut out).unwrap();
                    out.finish(crate::source::SourceEnd::Exhausted);
                })
            })
            .collect();
        drop(tx);
        threads.into_iter().for_each(|t| t.join().unwrap());
        rx.into_iter().map(|(_, m)| m).collect()
    }

    #[test]
    fn sources_send_on_their_turns_and_end_in_order() {
        use crate::source::SourceMessage;
        let a = sample("a", &[r#"{"t":1}"#, r#"{"t":5}"#]);
        let mut b = sample("b", &[r#"{"t":3}"#, &format!(r#"{{"t":4,"pad":"{}"}}"#, "x".repeat(100))]);
        b.lines = true;
        let small = SourceCommon { max_record_bytes: Some(50), ..timed() };
        let feed = Feed::new(vec![(a, timed()), (b, small)], 10);
        for _ in 0..3 {
            let got: Vec<String> = run(&feed_again(&feed), 2)
                .into_iter()
                .filter_map(|m| match m {
                    SourceMessage::Batch(b, _) => Some(format!("batch {}", b.origins.iter().map(|o| format!("{}:{}", o.source, o.position)).collect::<Vec<_>>().join(","))),
                    SourceMessage::Rejected(d) => Some(format!("rejected {}:{} {}", d[0].origin.source, d[0].origin.position, &d[0].reason[..12])),
                    SourceMessage::End(_) => Some("end".into()),
                    _ => None,
                })
                .collect();
            // a:1 | b:3, b:4 (too long, refused as a file source refuses a line) | a:5 | a ends, then b.
            assert_eq!(got, ["batch a:1", "rejected b:2 line of 116 ", "batch b:1", "batch a:2", "end", "end"]);
        }
    }

    /// A feed with the same samples and turns, from its first turn.
    fn feed_again(feed: &Arc<Feed>) -> Arc<Feed> {
        *feed.next.lock().unwrap() = 0;
        feed.clone()
    }

    #[test]
    fn the_disorder_of_a_sample() {
        let a = sample("a", &[r#"{"t":10}"#, r#"{"t":4}"#, r#"{"t":12}"#, r#"{"t":9}"#]);
        assert_eq!(a.disorder_ms(&timed()), 6);
    }

    #[test]
    fn envelopes_carry_key_time_and_headers() {
        let r = envelope(br#"{"value":{"a":1},"key":"k","timestamp":5,"headers":[["h","v"]]}"#).unwrap();
        assert_eq!((r.value, r.key, r.time, r.headers.len()), (br#"{"a":1}"#.to_vec(), Some(b"k".to_vec()), Some(5), 1));
        let r = envelope(br#"{"value_text":"plain"}"#).unwrap();
        assert_eq!(r.value, b"plain");
        assert!(envelope(br#"{"timestamp":5}"#).is_err());
    }
}
