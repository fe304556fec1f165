//! A lookup table in a file of JSON lines, loaded into memory when the table
//! is opened. It is what `streamhost test` answers a `lookup-join` from
//! (the answers `streamhost sample` recorded from the live table, see
//! docs/replay-tests.md), and a way to join a small static table.
//!
//! One entry per line: `{"key": "user:1", "value": {...}}` (the value's JSON
//! text is what the table holds), `{"key": "user:2", "value_text": "..."}`
//! (a value that is not JSON, as it is) or `{"key": "user:3", "value": null}`
//! (the table has no such key: a recorded miss). A key the file does not
//! name at all is a miss too, but counted and logged (a recording that does
//! not cover what a test asks for).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::backend::{Answer, Backend, LookupError};

/// A table in a file of JSON lines (see the module's documentation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileTableConfig {
    /// The file: one `{"key": ..., "value": ...}` per line (`"value": null`:
    /// no such key; `"value_text"`: a value that is not JSON). Loaded whole
    /// when the pipeline starts; relative to pipeline.json.
    pub path: PathBuf,
}

impl FileTableConfig {
    pub fn name(&self) -> String {
        format!("file {}", self.path.display())
    }
}

/// The largest file a table is loaded from (it is held in memory).
const MAX_BYTES: u64 = 1 << 30;

/// Keys asked for that the file does not name, remembered for the log.
const UNKNOWN_SHOWN: usize = 8;

/// One line of the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    key: String,
    /// `Some` whenever present, `null` included (a recorded miss).
    #[serde(default, deserialize_with = "present")]
    value: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    value_text: Option<String>,
}

/// A field that is there, whatever its value (serde's `Option` takes `null` for absent).
pub(crate) fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<serde_json::value::RawValue>>, D::Error> {
    Box::<serde_json::value::RawValue>::deserialize(d).map(Some)
}

/// A table loaded from a file.
pub struct FileBackend {
    name: String,
    /// Key → value (`None`: a recorded miss).
    entries: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Keys asked for that the file does not name: how many, the first few.
    unknown: AtomicU64,
    unknown_keys: Mutex<Vec<String>>,
}

impl FileBackend {
    /// Loads `config.path` (already resolved against the pipeline's folder).
    pub fn load(config: &FileTableConfig) -> Result<Self, LookupError> {
        let name = config.name();
        let error = |error: String| LookupError::Connect { backend: name.clone(), error };
        let entries = read_entries(&config.path).map_err(error)?;
        Ok(FileBackend { name, entries, unknown: AtomicU64::new(0), unknown_keys: Mutex::new(Vec::new()) })
    }

    /// Keys asked for that the file does not name, so far.
    pub fn unknown(&self) -> u64 {
        self.unknown.load(Relaxed)
    }
}

/// The entries of the file at `path`, or why not (with the line).
pub fn read_entries(path: &Path) -> Result<HashMap<Vec<u8>, Option<Vec<u8>>>, String> {
    let len = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.len();
    if len > MAX_BYTES {
        return Err(format!("{}: {len} bytes; a file table is held in memory and may have at most {MAX_BYTES}", path.display()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut entries = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), n + 1);
        let e: Entry = serde_json::from_str(line).map_err(|e| format!("{}: not an entry such as {{\"key\": \"k\", \"value\": {{...}}}}: {e}", at()))?;
        let value = match (e.value, e.value_text) {
            (Some(_), Some(_)) => return Err(format!("{}: give `value` or `value_text`, not both", at())),
            (Some(raw), None) if raw.get() == "null" => None,
            (Some(raw), None) => Some(raw.get().as_bytes().to_vec()),
            (None, Some(text)) => Some(text.into_bytes()),
            (None, None) => return Err(format!("{}: `value` (null for no such key) or `value_text` is missing", at())),
        };
        entries.insert(e.key.into_bytes(), value);
    }
    Ok(entries)
}

impl Backend for FileBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> Answer<'a> {
        let values = keys
            .iter()
            .map(|k| match self.entries.get(k) {
                Some(v) => v.clone(),
                None => {
                    if self.unknown.fetch_add(1, Relaxed) < UNKNOWN_SHOWN as u64 {
                        let mut shown = self.unknown_keys.lock().unwrap_or_else(|e| e.into_inner());
                        shown.push(String::from_utf8_lossy(k).into_owned());
                    }
                    None
                }
            })
            .collect();
        Box::pin(std::future::ready(Ok(values)))
    }
}

impl Drop for FileBackend {
    fn drop(&mut self) {
        let n = self.unknown();
        if n > 0 {
            let shown = self.unknown_keys.lock().unwrap_or_else(|e| e.into_inner()).join(", ");
            tracing::warn!(
                table = %self.name,
                "{n} lookups asked for keys the file does not name (answered as misses; first: {shown}): record them (`streamhost sample`, or add `{{\"key\": ..., \"value\": ...}}` lines)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(b: &FileBackend, keys: &[&str]) -> Vec<Option<String>> {
        let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(b.get_many(&keys)).unwrap().into_iter().map(|v| v.map(|v| String::from_utf8(v).unwrap())).collect()
    }

    #[test]
    fn values_misses_and_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        std::fs::write(&path, "{\"key\":\"u:1\",\"value\":{\"age\": 3}}\n\n{\"key\":\"u:2\",\"value\":null}\n{\"key\":\"u:3\",\"value_text\":\"plain\"}\n").unwrap();
        let b = FileBackend::load(&FileTableConfig { path }).unwrap();
        let got = get(&b, &["u:1", "u:2", "u:3", "u:4"]);
        assert_eq!(got, [Some("{\"age\": 3}".to_string()), None, Some("plain".into()), None], "the value's text as written");
        assert_eq!(b.unknown(), 1, "only u:4 is not in the file; u:2 is a recorded miss");
    }

    #[test]
    fn a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        std::fs::write(&path, "{\"key\":\"u:1\",\"value\":1}\n{\"key\":\"u:2\"}\n").unwrap();
        let Err(e) = FileBackend::load(&FileTableConfig { path }) else { panic!("a line without a value loads") };
        assert!(e.to_string().contains("t.jsonl:2: `value`"), "{e}");
    }
}
