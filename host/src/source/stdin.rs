//! Standard input that a source can stop waiting for.
//!
//! A read of stdin blocks until input comes, and nothing can interrupt it:
//! a stdin source on a quiet pipe could neither stop nor let the pipeline
//! end. So the read happens on a detached thread of its own that hands over
//! chunks; the source waits for a chunk a little at a time and gives up
//! when the pipeline stops it (the detached reader dies with the process).

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

/// Bytes read at once by the reader thread (at most two chunks ahead).
const CHUNK: usize = 64 << 10;
/// How often a waiting read looks at the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// The error a read returns once the source has been told to stop.
pub(crate) fn stopped_error() -> io::Error {
    io::Error::other("stopped")
}

/// Standard input, read on a detached thread.
pub(crate) struct AbandonableStdin {
    chunks: Receiver<io::Result<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    chunk: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl AbandonableStdin {
    /// Starts the reader thread; `stop` makes a waiting read give up.
    pub(crate) fn open(stop: Arc<AtomicBool>) -> io::Result<Self> {
        Self::from_reader(io::stdin(), stop)
    }

    pub(crate) fn from_reader<R: Read + Send + 'static>(mut input: R, stop: Arc<AtomicBool>) -> io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::Builder::new().name("stdin-reader".into()).spawn(move || loop {
            let mut buf = vec![0u8; CHUNK];
            let msg = match input.read(&mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    Ok(buf)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let last = !matches!(&msg, Ok(b) if !b.is_empty());
            if tx.send(msg).is_err() || last {
                return;
            }
        })?;
        Ok(AbandonableStdin { chunks: rx, stop, chunk: Vec::new(), pos: 0, eof: false })
    }
}

impl Read for AbandonableStdin {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.eof {
                return Ok(0);
            }
            if self.stop.load(Relaxed) {
                return Err(stopped_error());
            }
            match self.chunks.recv_timeout(POLL) {
                Ok(Ok(chunk)) => {
                    self.eof = chunk.is_empty();
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.eof = true,
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that never returns (a quiet pipe).
    struct Never;
    impl Read for Never {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            loop {
                std::thread::park();
            }
        }
    }

    #[test]
    fn hands_over_all_input_then_end() {
        let stop = Arc::new(AtomicBool::new(false));
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut r = AbandonableStdin::from_reader(io::Cursor::new(data.clone()), stop).unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got, data);
    }

    #[test]
    fn a_read_blocked_on_a_quiet_input_gives_up_when_stopped() {
        let stop = Arc::new(AtomicBool::new(false));
        let mut r = AbandonableStdin::from_reader(Never, stop.clone()).unwrap();
        let reader = std::thread::spawn(move || r.read(&mut [0u8; 16]).map_err(|e| e.to_string()));
        stop.store(true, Relaxed);
        assert_eq!(reader.join().unwrap(), Err("stopped".to_string()));
    }
}
