//! The Redis backend: a worker's state kept in a Redis server, so a restarted
//! (or rebalanced) process needs no local state, with recovery as exact as from
//! a local checkpoint.
//!
//! # Redis holds checkpointed state only
//!
//! A commit does not write to Redis: it moves the batch into the worker's
//! **overlay**, the writes committed since the last flush (`overlay.rs`), and
//! reads merge the overlay over what Redis holds. At a checkpoint barrier the
//! worker turns its overlay into commands ([`StateBackend::checkpoint_or_defer`])
//! and hands them to the coordinator, which applies every worker's and the
//! checkpoint's record (source positions, sink lengths) in one `MULTI`/`EXEC`
//! ([`RemoteState::commit`]). So Redis never holds state without the positions it
//! covers, and a restart, here or on another machine with an empty directory,
//! resumes from the record Redis holds with the state as it was then: nothing to
//! restore, no local file needed.
//!
//! A namespace no record names yet (a fresh start before its first checkpoint, a
//! rescale's new workers, a run without checkpoints) is nobody's recovery point:
//! its overlay is written out whenever it passes 16 MiB (or `max_overlay_mb`). Once named,
//! the overlay holds one checkpoint interval of writes; past the bound the worker
//! asks for an early checkpoint, and at twice the bound the run fails
//! ([`StateError::OverlayFull`]) rather than grow without end.
//!
//! # Layout
//!
//! Every key of a pipeline starts with its prefix `P`; a worker's state with its
//! namespace `N = P:p{workers}:s{stage}w{index}` (a parallelism's state is a
//! generation of its own, so a rescale reads the old one while writing the new).
//!
//! - `P:checkpoint` — the checkpoint record (`meta.json`'s JSON).
//! - `N:t:{table}` — a table: one sorted set, members `esc(key) 00 00 value` at
//!   score 0 (`codec.rs`). A range scan is one `ZRANGEBYLEX` (the join's lookups of
//!   a chunk of main events are one pipelined round trip per other input), a
//!   range delete one `ZREMRANGEBYLEX` (the join's expiry of old buckets).
//! - `N:l:{bucket}:{chunk}:{log}` — a bucket log (the main events of an
//!   `on-window-end` join by fire bucket) as strings of at most 1 MiB: appended
//!   with `APPEND`, read with `GETRANGE`, deleted with `DEL`.
//! - `N:logs` — a hash of every log bucket's length (field: the bucket as 8
//!   big-endian bytes, then the log's name).
//!
//! Each flush renews the time-to-live of every key it knows (the joins'
//! retention plus `ttl_slack_ms`): the state of an abandoned pipeline expires,
//! while the join's own deletes stay the exact expiry.

mod codec;
mod group;
mod overlay;
mod store;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use redis::Value;

use self::codec::{Chunks, Resp};
use self::overlay::{Lookup, LogOverlay, Merge, TableOverlay};
use super::{check_table_name, prepare_checkpoint_dir, sync_parent, Backend, LogId, RedisOptions, StateBackend, StateError, StateStats, TableId, TableOptions};

pub use group::PartitionEntry;
pub use store::{RemoteRecord, RemoteState};

/// Rows read per `ZRANGEBYLEX`: a scan holds at most this many from Redis at once.
const SCAN_CHUNK: usize = 1024;
/// Largest string of a bucket log (Redis allows 512 MB, but grows a string past
/// 1 MB a megabyte at a time, copying it).
const LOG_CHUNK: u64 = 1 << 20;
/// Bound on the overlay of a namespace no checkpoint names (written out past it,
/// with no atomicity to keep: small writes hold less memory, at no cost).
const UNNAMED_OVERLAY: u64 = 16 << 20;
/// Members per `ZADD` of a flush.
const ZADD_BATCH: usize = 512;
/// The standalone checkpoint's marker: in the checkpoint folder and in Redis.
const MARKER: &str = "redis-checkpoint.json";

/// A worker's writes since the last checkpoint, as commands for the coordinator's
/// transaction ([`StateBackend::checkpoint_or_defer`]).
pub struct DeferredWrites {
    parts: Vec<Resp>,
}

impl DeferredWrites {
    /// Bytes of the encoded commands.
    pub fn bytes(&self) -> usize {
        self.parts.iter().map(|p| p.buf.len()).sum()
    }
}

/// Opens the state in `namespace` (the prefix of its keys) on the server of
/// `options`, as Redis holds it. Its checkpoints ([`StateBackend::checkpoint`])
/// write its overlay to Redis and a marker into the checkpoint folder;
/// [`restore_redis`] opens it again from the newest.
pub fn open_redis(options: &RedisOptions, namespace: &str) -> Result<Box<dyn StateBackend>, StateError> {
    let client = store::client(options, namespace)?;
    Ok(Box::new(RedisBackend::open(&client, options, namespace.to_string(), None, false, Arc::default())?))
}

/// Opens the state of the checkpoint at `checkpoint_dir` (taken by a backend of
/// [`open_redis`]): Redis holds only the newest checkpoint of a namespace, so an
/// older one is refused.
pub fn restore_redis(checkpoint_dir: &Path, options: &RedisOptions) -> Result<Box<dyn StateBackend>, StateError> {
    let path = checkpoint_dir.join(MARKER);
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StateError::NotACheckpoint { path: checkpoint_dir.to_path_buf(), reason: format!("no {MARKER}: not written by the redis backend") },
        _ => StateError::io("restore: read", &path, e),
    })?;
    let marker: Marker = serde_json::from_str(&text).map_err(|e| StateError::CorruptCheckpoint { path: path.clone(), reason: e.to_string() })?;
    let client = store::client(options, &marker.namespace)?;
    let backend = RedisBackend::open(&client, options, marker.namespace.clone(), None, true, Arc::default())?;
    let held: Option<u64> = backend.query("restore", redis::cmd("GET").arg(marker_key(&marker.namespace)))?;
    if held != Some(marker.checkpoint) {
        let now = held.map_or("none".to_string(), |n| n.to_string());
        return Err(StateError::NotACheckpoint {
            path: checkpoint_dir.to_path_buf(),
            reason: format!("checkpoint {} of redis namespace {}, which now holds checkpoint {now}: only the newest can be restored", marker.checkpoint, marker.namespace),
        });
    }
    Ok(Box::new(backend))
}

/// Why `url` is not a server the backend can use (a config check).
pub fn check_redis_url(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| format!("`{url}`: {e}"))?;
    match client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(..) | redis::ConnectionAddr::Unix(_) => Ok(()),
        _ => Err(format!("`{url}`: only redis:// and redis+unix:// are supported")),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Marker {
    namespace: String,
    checkpoint: u64,
}

fn marker_key(namespace: &str) -> String {
    format!("{namespace}:checkpoint")
}

struct Table {
    key: Vec<u8>,
    overlay: TableOverlay,
}

enum Op {
    Put { table: TableId, key: Vec<u8>, value: Vec<u8> },
    Delete { table: TableId, key: Vec<u8> },
    DeleteRange { table: TableId, start: Vec<u8>, end: Vec<u8> },
}

pub(crate) struct RedisBackend {
    con: RefCell<redis::Connection>,
    /// `host:port`, for messages.
    server: String,
    namespace: String,
    tables: Vec<Table>,
    table_ids: HashMap<String, u32>,
    pending: Vec<Op>,
    pending_bytes: u64,
    logs: LogOverlay,
    /// A checkpoint record names this namespace: its overlay waits for the next.
    named: bool,
    max_overlay: u64,
    ttl_ms: Option<u64>,
    /// Set when the overlay passed its bound: the coordinator checkpoints early.
    wanted: Arc<AtomicBool>,
    /// In a pipeline: whose writes Redis takes (`store::Fence`).
    fence: Option<store::Fence>,
    /// When the overlay was last written out (or the backend opened).
    last_flush: std::time::Instant,
}

impl RedisBackend {
    fn open(client: &redis::Client, options: &RedisOptions, namespace: String, ttl_ms: Option<u64>, named: bool, wanted: Arc<AtomicBool>) -> Result<Self, StateError> {
        let server = client.get_connection_info().addr().to_string();
        let con = store::connect(client, options.timeout()).map_err(|e| redis_error("connect", &server, &namespace, e))?;
        let mut backend = RedisBackend {
            con: RefCell::new(con),
            server,
            namespace,
            tables: Vec::new(),
            table_ids: HashMap::new(),
            pending: Vec::new(),
            pending_bytes: 0,
            logs: LogOverlay::default(),
            named,
            max_overlay: options.max_overlay_bytes(),
            ttl_ms,
            wanted,
            fence: None,
            last_flush: std::time::Instant::now(),
        };
        let index: Vec<(Vec<u8>, Vec<u8>)> = backend.query("open: read the log index", redis::cmd("HGETALL").arg(backend.index_key()))?;
        for (field, len) in index {
            let parsed = field.get(..8).zip(field.get(8..)).and_then(|(b, name)| Some((i64::from_be_bytes(b.try_into().ok()?), std::str::from_utf8(name).ok()?)));
            let len = std::str::from_utf8(&len).ok().and_then(|l| l.parse::<u64>().ok());
            let (Some((bucket, name)), Some(len)) = (parsed, len) else {
                return Err(backend.error("open", format!("{} holds a field that is not a log bucket's length", String::from_utf8_lossy(&backend.index_key()))));
            };
            let id = backend.logs.id(name);
            backend.logs.stored.insert((id, bucket), len);
        }
        Ok(backend)
    }

    fn error(&self, op: &str, message: impl std::fmt::Display) -> StateError {
        StateError::Redis { op: op.into(), server: self.server.clone(), namespace: self.namespace.clone(), message: message.to_string() }
    }

    fn query<T: redis::FromRedisValue>(&self, op: &str, cmd: &redis::Cmd) -> Result<T, StateError> {
        cmd.query(&mut *self.con.borrow_mut()).map_err(|e| self.error(op, e))
    }

    fn index_key(&self) -> Vec<u8> {
        format!("{}:logs", self.namespace).into_bytes()
    }

    fn chunk_key(&self, log: u32, bucket: i64, chunk: u64) -> Vec<u8> {
        format!("{}:l:{bucket}:{chunk}:{}", self.namespace, self.logs.names[log as usize]).into_bytes()
    }

    fn table(&self, op: &'static str, table: TableId) -> Result<&Table, StateError> {
        self.tables.get(table.index()).ok_or_else(|| StateError::UnknownTable { op, backend: Backend::Redis(self.namespace.clone()), table })
    }

    fn log_check(&self, op: &'static str, log: LogId) -> Result<(), StateError> {
        if (log.0 as usize) < self.logs.names.len() {
            Ok(())
        } else {
            Err(StateError::UnknownLog { op, log: log.0 })
        }
    }

    fn overlay_bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.overlay.bytes).sum::<u64>() + self.logs.bytes
    }

    /// Turns the overlay into commands, in order (emptying it as it goes, so
    /// the two are not held whole at once), and counts them as written: the
    /// caller applies them before this backend is read again.
    fn take_writes(&mut self) -> Vec<Resp> {
        let mut c = Chunks::default();
        for t in &mut self.tables {
            let overlay = std::mem::take(&mut t.overlay);
            for (s, e) in overlay.cleared {
                c.next().cmd(&[b"ZREMRANGEBYLEX", &t.key, &codec::from_key(&s), &codec::before_key(&e)]);
            }
            let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(ZADD_BATCH);
            for (k, w) in overlay.writes {
                c.next().cmd(&[b"ZREMRANGEBYLEX", &t.key, &codec::from_key(&k), &codec::through_key(&k)]);
                if let Some(v) = w {
                    batch.push((k, v));
                    if batch.len() == ZADD_BATCH {
                        zadd(c.next(), &t.key, &mut batch);
                    }
                }
            }
            zadd(c.next(), &t.key, &mut batch);
        }
        let index = self.index_key();
        for ((log, bucket), change) in std::mem::take(&mut self.logs.changes) {
            let field = index_field(bucket, &self.logs.names[log as usize]);
            let mut base = 0;
            if let Some(stored) = self.logs.stored.get(&(log, bucket)).copied() {
                if change.dropped {
                    for n in 0..chunks(stored) {
                        c.next().cmd(&[b"DEL", &self.chunk_key(log, bucket, n)]);
                    }
                    c.next().cmd(&[b"HDEL", &index, &field]);
                    self.logs.stored.remove(&(log, bucket));
                } else {
                    base = stored;
                }
            }
            let Some(bytes) = change.appended else { continue };
            let mut at = base;
            let mut rest = bytes.as_slice();
            while !rest.is_empty() {
                let room = LOG_CHUNK - at % LOG_CHUNK;
                let (piece, tail) = rest.split_at(rest.len().min(room as usize));
                c.next().cmd(&[b"APPEND", &self.chunk_key(log, bucket, at / LOG_CHUNK), piece]);
                at += piece.len() as u64;
                rest = tail;
            }
            c.next().cmd(&[b"HSET", &index, &field, itoa::Buffer::new().format(at).as_bytes()]);
            self.logs.stored.insert((log, bucket), at);
        }
        self.logs.bytes = 0;
        if let Some(ttl) = self.ttl_ms {
            let ttl = itoa::Buffer::new().format(ttl).as_bytes().to_vec();
            for t in &self.tables {
                c.next().cmd(&[b"PEXPIRE", &t.key, &ttl]);
            }
            c.next().cmd(&[b"PEXPIRE", &index, &ttl]);
            for (&(log, bucket), &len) in &self.logs.stored {
                for n in 0..chunks(len) {
                    c.next().cmd(&[b"PEXPIRE", &self.chunk_key(log, bucket, n), &ttl]);
                }
            }
        }
        c.finish()
    }

    /// Applies `writes` (and `extra` after them) in one transaction on this
    /// backend's connection; the replies of `extra`'s commands.
    fn execute(&self, op: &str, writes: Vec<Resp>, extra: Resp) -> Result<Vec<Value>, StateError> {
        let mut con = self.con.borrow_mut();
        let n: usize = writes.iter().map(|w| w.commands).sum();
        let mut parts: Vec<&Resp> = writes.iter().collect();
        parts.push(&extra);
        store::transaction(&mut con, &parts).map_err(|e| self.error(op, e)).map(|mut replies| replies.split_off(n))
    }

    /// Writes the overlay out when it is over its bound and may be (no record
    /// names the namespace yet); else asks for a checkpoint, or fails at twice.
    /// Unnamed, it is also written out (renewing the keys' time-to-live) once a
    /// quarter of that time has passed: no checkpoint renews it.
    fn bound_overlay(&mut self) -> Result<(), StateError> {
        let held = self.overlay_bytes();
        let stale = self.ttl_ms.is_some_and(|ttl| self.last_flush.elapsed() > std::time::Duration::from_millis(ttl / 4));
        if !self.named && (held > self.max_overlay.min(UNNAMED_OVERLAY) || stale) {
            // Nobody's recovery point: a chunk at a time, not one transaction
            // (which Redis would hold whole until EXEC), each only while this
            // process owns the state.
            for chunk in self.take_writes() {
                let mut con = self.con.borrow_mut();
                let written = match &self.fence {
                    Some(fence) => store::fenced(&mut con, fence, &[&chunk]).map(drop),
                    None => store::pipeline(&mut con, &chunk).map_err(store::Failed::Whole),
                };
                drop(con);
                written.map_err(|e| store::failed_error("write the overlay out", &self.server, &self.namespace, e))?;
            }
            self.last_flush = std::time::Instant::now();
            return Ok(());
        }
        if held <= self.max_overlay {
            return Ok(());
        }
        self.wanted.store(true, Relaxed);
        if held > self.max_overlay.saturating_mul(2) {
            return Err(StateError::OverlayFull { namespace: self.namespace.clone(), held_mib: held >> 20, max_mib: self.max_overlay >> 20 });
        }
        Ok(())
    }

    /// The first chunk of rows of each `(min, max)` lex range, in one round trip.
    fn first_chunks(&self, key: &[u8], ranges: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<Vec<Vec<u8>>>, StateError> {
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (min, max) in ranges {
            pipe.cmd("ZRANGEBYLEX").arg(key).arg(min).arg(max).arg("LIMIT").arg(0).arg(SCAN_CHUNK);
        }
        pipe.query(&mut *self.con.borrow_mut()).map_err(|e| self.error("scan", e))
    }

    fn chunk(&self, key: &[u8], min: &[u8], max: &[u8]) -> Result<Vec<Vec<u8>>, StateError> {
        self.query("scan", redis::cmd("ZRANGEBYLEX").arg(key).arg(min).arg(max).arg("LIMIT").arg(0).arg(SCAN_CHUNK))
    }

    /// Visits the rows of one range: its parts Redis answers for (the first
    /// chunk of each already read), merged with the overlay's writes.
    fn visit_range(
        &self,
        table: &Table,
        (start, end): (&[u8], Option<&[u8]>),
        parts: Vec<((Vec<u8>, Vec<u8>), Vec<Vec<u8>>)>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<bool, StateError> {
        let mut merge = Merge::new(table.overlay.writes_in(start, end));
        let mut key = Vec::new();
        for ((_, max), mut rows) in parts {
            loop {
                for m in &rows {
                    let value = codec::split_member(m, &mut key).ok_or_else(|| self.error("scan", format!("{} holds a member this layout does not write", String::from_utf8_lossy(&table.key))))?;
                    if !merge.row(&key, value, visit) {
                        return Ok(false);
                    }
                }
                if rows.len() < SCAN_CHUNK {
                    break;
                }
                let after = codec::after_member(rows.last().expect("a full chunk"));
                rows = self.chunk(&table.key, &after, &max)?;
            }
        }
        Ok(merge.finish(visit))
    }

    /// The lex ranges of Redis that `[start, end)` still reads from.
    fn lex_parts(table: &Table, start: &[u8], end: Option<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
        table
            .overlay
            .uncovered(start, end)
            .into_iter()
            .map(|(s, e)| (codec::from_key(&s), e.map_or_else(|| b"+".to_vec(), |e| codec::before_key(&e))))
            .collect()
    }
}

fn zadd(r: &mut Resp, key: &[u8], batch: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    if batch.is_empty() {
        return;
    }
    r.head(2 + 2 * batch.len());
    r.arg(b"ZADD");
    r.arg(key);
    let mut m = Vec::new();
    for (k, v) in batch.drain(..) {
        r.arg(b"0");
        m.clear();
        codec::member(&k, &v, &mut m);
        r.arg(&m);
    }
}

/// Strings a bucket of `len` bytes is kept in.
fn chunks(len: u64) -> u64 {
    len.div_ceil(LOG_CHUNK)
}

fn index_field(bucket: i64, log: &str) -> Vec<u8> {
    let mut f = bucket.to_be_bytes().to_vec();
    f.extend_from_slice(log.as_bytes());
    f
}

fn redis_error(op: &str, server: &str, namespace: &str, e: impl std::fmt::Display) -> StateError {
    StateError::Redis { op: op.into(), server: server.into(), namespace: namespace.into(), message: e.to_string() }
}

impl StateBackend for RedisBackend {
    fn open_table_with(&mut self, name: &str, _: TableOptions) -> Result<TableId, StateError> {
        check_table_name(name, || Backend::Redis(self.namespace.clone()))?;
        if let Some(&id) = self.table_ids.get(name) {
            return Ok(TableId(id));
        }
        let id = self.tables.len() as u32;
        let key = format!("{}:t:{name}", self.namespace).into_bytes();
        self.tables.push(Table { key, overlay: TableOverlay::default() });
        self.table_ids.insert(name.to_string(), id);
        Ok(TableId(id))
    }

    fn put(&mut self, table: TableId, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.table("put", table)?;
        self.pending_bytes += (key.len() + value.len()) as u64;
        self.pending.push(Op::Put { table, key: key.to_vec(), value: value.to_vec() });
        Ok(())
    }

    fn delete(&mut self, table: TableId, key: &[u8]) -> Result<(), StateError> {
        self.table("delete", table)?;
        self.pending_bytes += key.len() as u64;
        self.pending.push(Op::Delete { table, key: key.to_vec() });
        Ok(())
    }

    fn delete_range(&mut self, table: TableId, start: &[u8], end: &[u8]) -> Result<(), StateError> {
        self.table("delete_range", table)?;
        if start < end {
            self.pending_bytes += (start.len() + end.len()) as u64;
            self.pending.push(Op::DeleteRange { table, start: start.to_vec(), end: end.to_vec() });
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StateError> {
        self.logs.commit();
        for op in std::mem::take(&mut self.pending) {
            match op {
                Op::Put { table, key, value } => self.tables[table.index()].overlay.put(key, value),
                Op::Delete { table, key } => self.tables[table.index()].overlay.delete(key),
                Op::DeleteRange { table, start, end } => self.tables[table.index()].overlay.delete_range(start, end),
            }
        }
        self.pending_bytes = 0;
        self.bound_overlay()
    }

    fn get(&self, table: TableId, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let t = self.table("get", table)?;
        match t.overlay.lookup(key) {
            Lookup::Written(v) => Ok(v.map(<[u8]>::to_vec)),
            Lookup::Cleared => Ok(None),
            Lookup::Redis => {
                let rows = self.query::<Vec<Vec<u8>>>("get", redis::cmd("ZRANGEBYLEX").arg(&t.key).arg(codec::from_key(key)).arg(codec::through_key(key)).arg("LIMIT").arg(0).arg(1))?;
                let mut k = Vec::new();
                match rows.first() {
                    None => Ok(None),
                    Some(m) => codec::split_member(m, &mut k).map(|v| Some(v.to_vec())).ok_or_else(|| self.error("get", "a member this layout does not write")),
                }
            }
        }
    }

    fn scan(&self, table: TableId, start: &[u8], end: Option<&[u8]>, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StateError> {
        let t = self.table("scan", table)?;
        if end.is_some_and(|end| end <= start) {
            return Ok(());
        }
        // The parts one after the other: a scan stopped early reads no further.
        let mut merge = Merge::new(t.overlay.writes_in(start, end));
        let mut key = Vec::new();
        for (min, max) in Self::lex_parts(t, start, end) {
            let mut rows = self.chunk(&t.key, &min, &max)?;
            loop {
                for m in &rows {
                    let value = codec::split_member(m, &mut key).ok_or_else(|| self.error("scan", "a member this layout does not write"))?;
                    if !merge.row(&key, value, visit) {
                        return Ok(());
                    }
                }
                if rows.len() < SCAN_CHUNK {
                    break;
                }
                let after = codec::after_member(rows.last().expect("a full chunk"));
                rows = self.chunk(&t.key, &after, &max)?;
            }
        }
        merge.finish(visit);
        Ok(())
    }

    fn scan_ranges(&self, table: TableId, ranges: &[(Vec<u8>, Vec<u8>)], visit: &mut dyn FnMut(usize, &[u8], &[u8])) -> Result<(), StateError> {
        let t = self.table("scan", table)?;
        // The first chunk of every part of every range in one round trip.
        let parts: Vec<Vec<(Vec<u8>, Vec<u8>)>> = ranges.iter().map(|(s, e)| if s < e { Self::lex_parts(t, s, Some(e)) } else { Vec::new() }).collect();
        let flat: Vec<(Vec<u8>, Vec<u8>)> = parts.iter().flatten().cloned().collect();
        let mut firsts = self.first_chunks(&t.key, &flat)?.into_iter();
        for (i, ((s, e), parts)) in ranges.iter().zip(parts).enumerate() {
            if s >= e {
                continue;
            }
            let with_rows: Vec<_> = parts.into_iter().map(|p| (p, firsts.next().unwrap_or_default())).collect();
            self.visit_range(t, (s, Some(e)), with_rows, &mut |k, v| {
                visit(i, k, v);
                true
            })?;
        }
        Ok(())
    }

    fn open_log(&mut self, name: &str) -> Result<LogId, StateError> {
        check_table_name(name, || Backend::Redis(self.namespace.clone()))?;
        Ok(LogId(self.logs.id(name)))
    }

    fn append(&mut self, log: LogId, bucket: i64, bytes: &[u8]) -> Result<u64, StateError> {
        self.log_check("append", log)?;
        Ok(self.logs.append((log.0, bucket), bytes))
    }

    fn drop_bucket(&mut self, log: LogId, bucket: i64) -> Result<(), StateError> {
        self.log_check("drop_bucket", log)?;
        self.logs.drop_bucket((log.0, bucket));
        Ok(())
    }

    fn read_bucket(&self, log: LogId, bucket: i64, out: &mut Vec<u8>) -> Result<(), StateError> {
        self.log_check("read_bucket", log)?;
        let len = self.logs.len((log.0, bucket)).unwrap_or(0);
        self.read_bucket_at(log, bucket, 0, len as usize, out)
    }

    fn read_bucket_at(&self, log: LogId, bucket: i64, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<(), StateError> {
        self.log_check("read_bucket_at", log)?;
        let b = (log.0, bucket);
        let have = self.logs.len(b).unwrap_or(0);
        let end = offset.checked_add(len as u64).filter(|&end| end <= have);
        let Some(end) = end else {
            return Err(self.error("read bucket", format!("bytes {offset}..+{len} of bucket {bucket} of log {:?} are past its committed {have}", self.logs.names[log.0 as usize])));
        };
        if len == 0 {
            return Ok(());
        }
        let base = self.logs.base(b).unwrap_or(0);
        // From Redis: [offset, min(end, base)), a GETRANGE per string it spans.
        if offset < base {
            let stop = end.min(base);
            let mut pipe = redis::pipe();
            let mut at = offset;
            while at < stop {
                let chunk = at / LOG_CHUNK;
                let last = stop.min((chunk + 1) * LOG_CHUNK) - 1;
                pipe.cmd("GETRANGE").arg(self.chunk_key(log.0, bucket, chunk)).arg(at % LOG_CHUNK).arg(last % LOG_CHUNK);
                at = last + 1;
            }
            let pieces: Vec<Vec<u8>> = pipe.query(&mut *self.con.borrow_mut()).map_err(|e| self.error("read bucket", e))?;
            let start = out.len();
            for p in pieces {
                out.extend_from_slice(&p);
            }
            if (out.len() - start) as u64 != stop - offset {
                let got = out.len() - start;
                out.truncate(start);
                return Err(self.error("read bucket", format!("bucket {bucket} of log {:?} holds {got} of bytes {offset}..{stop} (its keys expired or were deleted behind the pipeline)", self.logs.names[log.0 as usize])));
            }
        }
        if end > base {
            let appended = self.logs.changes.get(&b).and_then(|c| c.appended.as_deref()).unwrap_or_default();
            let from = (offset.max(base) - base) as usize;
            out.extend_from_slice(&appended[from..(end - base) as usize]);
        }
        Ok(())
    }

    fn log_buckets(&self, log: LogId) -> Vec<i64> {
        self.logs.buckets(log.0)
    }

    fn log_len(&self, log: LogId, bucket: i64) -> u64 {
        self.logs.len((log.0, bucket)).unwrap_or(0)
    }

    fn checkpoint(&mut self, dir: &Path) -> Result<(), StateError> {
        prepare_checkpoint_dir(dir)?;
        std::fs::create_dir(dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => StateError::CheckpointExists { path: dir.to_path_buf() },
            _ => StateError::io("checkpoint: create folder", dir, e),
        })?;
        // The overlay and the marker's number in one transaction: Redis holds
        // exactly the state of the checkpoint it names.
        let writes = self.take_writes();
        let mut marker = Resp::default();
        let key = marker_key(&self.namespace);
        marker.cmd(&[b"INCR", key.as_bytes()]);
        if let Some(ttl) = self.ttl_ms {
            marker.cmd(&[b"PEXPIRE", key.as_bytes(), itoa::Buffer::new().format(ttl).as_bytes()]);
        }
        let replies = self.execute("checkpoint", writes, marker)?;
        let Some(Value::Int(n)) = replies.first() else { return Err(self.error("checkpoint", format!("INCR answered {:?}", replies.first()))) };
        self.named = true;
        let path = dir.join(MARKER);
        let text = serde_json::to_vec(&Marker { namespace: self.namespace.clone(), checkpoint: *n as u64 }).map_err(|e| StateError::io("checkpoint: encode", &path, std::io::Error::other(e)))?;
        let tmp = dir.join(format!("{MARKER}.tmp"));
        std::fs::write(&tmp, text).and_then(|()| std::fs::File::open(&tmp)?.sync_all()).map_err(|e| StateError::io("checkpoint: write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| StateError::io("checkpoint: rename into place", &path, e))?;
        sync_parent(&path)?;
        sync_parent(dir)
    }

    fn checkpoint_or_defer(&mut self, _dir: &Path) -> Result<Option<DeferredWrites>, StateError> {
        let parts = self.take_writes();
        // Applied by the coordinator with the record that names this namespace.
        self.named = true;
        Ok(Some(DeferredWrites { parts }))
    }

    /// In memory: the overlay; keys: the tables' rows in Redis (one round trip)
    /// plus the overlay's writes.
    fn stats(&self) -> StateStats {
        let mut pipe = redis::pipe();
        for t in &self.tables {
            pipe.cmd("ZCARD").arg(&t.key);
        }
        let stored: Vec<u64> = if self.tables.is_empty() { Vec::new() } else { pipe.query(&mut *self.con.borrow_mut()).unwrap_or_default() };
        StateStats {
            bytes_on_disk: 0,
            bytes_in_memory: self.overlay_bytes() + self.pending_bytes + self.logs.pending_bytes(),
            keys_estimate: stored.iter().sum::<u64>() + self.tables.iter().map(|t| t.overlay.writes.len() as u64).sum::<u64>(),
        }
    }
}
