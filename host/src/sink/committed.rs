//! Output files that can be committed and rolled back to a commit: what
//! makes file sinks exactly once across a crash. A checkpoint records each
//! file's committed length; a restore truncates the file to it, and the
//! replay from the checkpoint's source positions writes the rest again.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

/// Lines written by a sink (or the dead-letter writer).
pub trait Output: Write + Send {
    /// Makes what was written durable. Returns the committed length for a
    /// file, `None` for a stream that cannot be rolled back (stdout).
    fn commit(&mut self) -> io::Result<Option<u64>>;
}

/// A buffered file that knows its committed length.
pub struct CommittedFile {
    out: BufWriter<File>,
}

impl CommittedFile {
    /// Creates (truncating) the file at `path`, or with `resume`, opens it
    /// and cuts it back to that committed length. A file shorter than its
    /// commit was changed behind the pipeline's back: an error, not a guess.
    pub fn open(path: &Path, resume: Option<u64>) -> io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = match resume {
            None => File::create(path)?,
            Some(len) => {
                let mut f = OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
                let actual = f.metadata()?.len();
                if actual < len {
                    return Err(io::Error::other(format!(
                        "has {actual} bytes but its checkpoint committed {len}; it was changed since (start with --fresh)"
                    )));
                }
                f.set_len(len)?;
                f.seek(SeekFrom::End(0))?;
                f
            }
        };
        Ok(CommittedFile { out: BufWriter::with_capacity(1 << 20, file) })
    }
}

impl Write for CommittedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl Output for CommittedFile {
    fn commit(&mut self) -> io::Result<Option<u64>> {
        self.out.flush()?;
        let file = self.out.get_mut();
        file.sync_data()?;
        Ok(Some(file.stream_position()?))
    }
}

/// A stream (stdout, stderr): flushed, never rolled back.
pub struct Stream<W: Write + Send>(pub BufWriter<W>);

impl<W: Write + Send> Write for Stream<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write + Send> Output for Stream<W> {
    fn commit(&mut self) -> io::Result<Option<u64>> {
        self.0.flush()?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_file_is_cut_back_to_its_commit_and_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/x.jsonl");
        let mut f = CommittedFile::open(&path, None).unwrap();
        f.write_all(b"a\nb\n").unwrap();
        assert_eq!(f.commit().unwrap(), Some(4));
        f.write_all(b"lost after the commit\n").unwrap();
        f.flush().unwrap();
        drop(f);
        let mut f = CommittedFile::open(&path, Some(4)).unwrap();
        f.write_all(b"c\n").unwrap();
        assert_eq!(f.commit().unwrap(), Some(6));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\nc\n");
        let err = CommittedFile::open(&path, Some(100)).err().unwrap();
        assert!(err.to_string().contains("committed 100"), "{err}");
    }
}
