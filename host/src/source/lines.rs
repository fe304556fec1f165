//! JSON-lines sources: a file, or standard input.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::{admit, now_ms, Emitter, Source, SourceError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::SourceCommon;
use crate::dead_letter::{DeadKind, DeadLetter};
use crate::event::Event;
use crate::record_schema::RecordCheck;
use crate::runtime::ResumePoint;

/// `"type": "file"`: a file of JSON lines, read once from the start (from its
/// checkpointed position on a restore).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Path of the file.
    pub path: PathBuf,
    #[serde(flatten)]
    pub common: SourceCommon,
}

/// `"type": "stdin"`: JSON lines from standard input, until end of input.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdinSourceConfig {
    #[serde(flatten)]
    pub common: SourceCommon,
}

enum Input {
    File(PathBuf),
    Stdin,
}

/// Reads newline-separated records; blank lines are skipped (but counted in
/// line numbers so dead letters point at the right line).
pub struct LineSource {
    name: String,
    input: Input,
    check: RecordCheck,
    max_bytes: usize,
    /// Where to start (a checkpoint's position; files only).
    resume: ResumePoint,
}

impl LineSource {
    pub fn file(name: &str, path: PathBuf, common: &SourceCommon) -> Self {
        LineSource { name: name.into(), input: Input::File(path), check: RecordCheck::new(common), max_bytes: common.max_record_bytes(), resume: ResumePoint::default() }
    }

    /// Starts after `point` instead of at the beginning of the file.
    pub fn resuming(mut self, point: ResumePoint) -> Self {
        self.resume = point;
        self
    }

    pub fn stdin(name: &str, common: &SourceCommon) -> Self {
        LineSource { name: name.into(), input: Input::Stdin, check: RecordCheck::new(common), max_bytes: common.max_record_bytes(), resume: ResumePoint::default() }
    }

    fn read_all<R: Read>(&self, reader: R, interactive: bool, out: &mut Emitter) -> io::Result<()> {
        let mut reader = BufReader::with_capacity(1 << 20, reader);
        let (mut offset, mut line_no) = (self.resume.offset, self.resume.line);
        // A line is buffered up to this many bytes (the record, `\r\n`);
        // past it the rest is skipped, never held: memory stays bounded
        // whatever the input.
        let cap = self.max_bytes.saturating_add(2) as u64;
        let mut raw = Vec::new();
        loop {
            raw.clear();
            let mut n = (&mut reader).take(cap).read_until(b'\n', &mut raw)? as u64;
            if n == 0 {
                return Ok(());
            }
            let whole = raw.last() == Some(&b'\n') || n < cap;
            let mut newline = false;
            if !whole {
                let (skipped, ended) = skip_line(&mut reader)?;
                (n, newline) = (n + skipped, ended);
            }
            line_no += 1;
            offset += n;
            // Before the record is handed over: a batch it completes then
            // reports a position that covers it.
            out.consumed(ResumePoint { offset, line: line_no, ..Default::default() });
            if whole && raw.last() == Some(&b'\n') {
                raw.pop();
                if raw.last() == Some(&b'\r') {
                    raw.pop();
                }
            }
            if !whole || raw.len() > self.max_bytes {
                let bytes = if whole { raw.len() as u64 } else { n - u64::from(newline) };
                let dead = too_large(out, &raw, bytes, self.max_bytes, line_no);
                out.reject(dead);
            } else if !raw.iter().all(u8::is_ascii_whitespace) {
                // Moved out: the event owns its bytes; `raw` starts afresh.
                admit(out, &self.check, self.max_bytes, std::mem::take(&mut raw), line_no, now_ms());
            }
            // On a pipe or terminal, hand over what we have when the next
            // read would block, instead of waiting for a full batch.
            if interactive && reader.buffer().is_empty() {
                out.flush();
            }
            if out.closed {
                return Ok(());
            }
        }
    }
}

/// Bytes of a too-large record kept in its dead letter (its beginning, to
/// recognise it; the line number says where the rest is).
const TOO_LARGE_PREFIX: usize = 1024;

/// Consumes the rest of a line (through its newline) a bounded chunk at a
/// time: the bytes consumed, and whether a newline ended them.
fn skip_line(reader: &mut impl BufRead) -> io::Result<(u64, bool)> {
    let mut chunk = Vec::with_capacity(1 << 16);
    let mut skipped = 0;
    loop {
        chunk.clear();
        let k = reader.by_ref().take(1 << 16).read_until(b'\n', &mut chunk)?;
        skipped += k as u64;
        if k == 0 || chunk.last() == Some(&b'\n') {
            return Ok((skipped, k > 0));
        }
    }
}

/// The dead letter of a line longer than `max_bytes`: its length, its
/// line, and only its first bytes.
pub(crate) fn too_large(out: &Emitter, raw: &[u8], bytes: u64, max_bytes: usize, line: u64) -> DeadLetter {
    let kept = &raw[..raw.len().min(TOO_LARGE_PREFIX)];
    DeadLetter {
        kind: DeadKind::TooLarge,
        reason: format!(
            "line of {bytes} bytes exceeds max_record_bytes ({max_bytes}); not read further (the value holds its first {} bytes)",
            kept.len()
        ),
        origin: out.origin(line),
        step: None,
        plugin: None,
        event: Event::from_value(kept.to_vec(), now_ms()),
    }
}

impl Source for LineSource {
    fn run(self: Box<Self>, out: &mut Emitter) -> Result<(), SourceError> {
        let err = |path: String, error| SourceError::Io { source_name: self.name.clone(), path, error };
        match &self.input {
            Input::File(path) => {
                let mut f = File::open(path).map_err(|e| err(path.display().to_string(), e))?;
                if self.resume.offset > 0 {
                    f.seek(SeekFrom::Start(self.resume.offset)).map_err(|e| err(path.display().to_string(), e))?;
                }
                self.read_all(f, false, out).map_err(|e| err(path.display().to_string(), e))
            }
            // Read on a thread of its own, so a stop need not wait for input.
            Input::Stdin => super::stdin::AbandonableStdin::open(out.halt_flag())
                .and_then(|stdin| self.read_all(stdin, true, out))
                .map_err(|e| err("<stdin>".into(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceMessage;

    /// Reads `input` with `max_record_bytes` = `max`: (kept values, dead
    /// letters as (line, kind, reason, value length), last position).
    fn read(input: &[u8], max: usize) -> (Vec<Vec<u8>>, Vec<(u64, DeadKind, String, usize)>, ResumePoint) {
        let common = SourceCommon { max_record_bytes: Some(max), ..Default::default() };
        let source = LineSource::stdin("in", &common);
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut out = Emitter::new(0, "in", tx, 4, std::time::Duration::from_secs(60));
        source.read_all(input, false, &mut out).unwrap();
        out.finish(crate::source::SourceEnd::Exhausted);
        drop(out);
        let (mut kept, mut dead, mut point) = (Vec::new(), Vec::new(), ResumePoint::default());
        for (_, m) in rx {
            match m {
                SourceMessage::Batch(b, _) => kept.extend(b.events.into_iter().map(|e| e.value)),
                SourceMessage::Rejected(d) => {
                    dead.extend(d.into_iter().map(|d| (d.origin.position, d.kind, d.reason, d.event.value.len())))
                }
                SourceMessage::Progress(p) => point = p,
                _ => {}
            }
        }
        (kept, dead, point)
    }

    #[test]
    fn long_lines_are_skipped_with_their_position_and_a_bounded_prefix() {
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(5000));
        let input = format!("{{\"i\":1}}\r\n{big}\n\n{{\"i\":2}}\n{}\n{{\"i\":3}}", "y".repeat(11));
        let (kept, dead, point) = read(input.as_bytes(), 10);
        assert_eq!(kept, [b"{\"i\":1}".to_vec(), b"{\"i\":2}".to_vec(), b"{\"i\":3}".to_vec()]);
        assert_eq!(dead.len(), 2, "{dead:?}");
        assert_eq!((dead[0].0, dead[0].1), (2, DeadKind::TooLarge));
        assert!(dead[0].2.starts_with(&format!("line of {} bytes exceeds max_record_bytes (10)", big.len())), "{}", dead[0].2);
        assert_eq!(dead[0].3, 12, "only what was buffered (max + 2 bytes) is kept");
        assert_eq!((dead[1].0, dead[1].2.starts_with("line of 11 bytes"), dead[1].3), (5, true, 11));
        assert_eq!(point, ResumePoint { offset: input.len() as u64, line: 6, ..Default::default() }, "every byte and line is counted");
    }

    #[test]
    fn a_line_exactly_at_the_limit_passes_with_or_without_cr() {
        let (kept, dead, _) = read(b"[\"123456\"]\r\n[\"1234567\"]\n[\"12345678\"]", 10);
        assert_eq!(kept, [b"[\"123456\"]".to_vec()]);
        assert_eq!(dead.iter().map(|d| d.0).collect::<Vec<_>>(), [2, 3]);
        let long = format!("[\"{}\"]", "z".repeat(3000));
        let (kept, dead, _) = read(format!("{long}\n[1]").as_bytes(), 3004);
        assert_eq!((kept.len(), dead.len()), (2, 0));
        let (kept, dead, _) = read(long.as_bytes(), 3003);
        assert_eq!((kept.len(), dead.len(), dead[0].3), (0, 1, TOO_LARGE_PREFIX), "a dead letter keeps at most a prefix");
    }
}
