//! JSON-lines sources: a file, or standard input.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::{admit, now_ms, Emitter, Source, SourceError};
use crate::config::SourceCommon;
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
        loop {
            let mut raw = Vec::new();
            let n = reader.read_until(b'\n', &mut raw)?;
            if n == 0 {
                return Ok(());
            }
            line_no += 1;
            offset += n as u64;
            // Before the record is handed over: a batch it completes then
            // reports a position that covers it.
            out.consumed(ResumePoint { offset, line: line_no });
            if raw.last() == Some(&b'\n') {
                raw.pop();
                if raw.last() == Some(&b'\r') {
                    raw.pop();
                }
            }
            if !raw.iter().all(u8::is_ascii_whitespace) {
                admit(out, &self.check, self.max_bytes, raw, line_no, now_ms());
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
