//! JSON-lines sources: a file, or standard input.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::{admit, now_ms, Emitter, Source, SourceError};
use crate::config::SourceCommon;
use crate::dead_letter::{DeadKind, DeadLetter};
use crate::event::Event;
use crate::record_schema::RecordCheck;
use crate::runtime::ResumePoint;

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
            out.consumed(ResumePoint { offset, line: line_no });
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
fn too_large(out: &Emitter, raw: &[u8], bytes: u64, max_bytes: usize, line: u64) -> DeadLetter {
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
            Input::Stdin => self.read_all(io::stdin().lock(), true, out).map_err(|e| err("<stdin>".into(), e)),
        }
    }
}
