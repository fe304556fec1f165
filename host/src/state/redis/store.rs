//! The coordinator's side of the Redis state: the checkpoint record, the one
//! transaction that applies a checkpoint, the workers' backends, and clearing
//! what no record names.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;

use super::codec::{self, Resp};
use super::{DeferredWrites, RedisBackend};
use crate::state::{RedisOptions, StateBackend, StateError};

/// A checkpoint's transaction may take this many times `timeout_ms`.
const TRANSACTION_TIMEOUTS: u32 = 10;
/// Keys per `SCAN` step and per `UNLINK`.
const SWEEP_BATCH: usize = 1000;

pub(super) fn client(options: &RedisOptions, namespace: &str) -> Result<redis::Client, StateError> {
    redis::Client::open(options.url.as_str()).map_err(|e| StateError::Redis {
        op: "open".into(),
        server: options.url.split('@').next_back().unwrap_or_default().to_string(),
        namespace: namespace.into(),
        message: e.to_string(),
    })
}

pub(super) fn connect(client: &redis::Client, timeout: Duration) -> redis::RedisResult<redis::Connection> {
    let con = client.get_connection_with_timeout(timeout)?;
    con.set_read_timeout(Some(timeout))?;
    con.set_write_timeout(Some(timeout))?;
    Ok(con)
}

/// Why a transaction failed.
pub(super) enum Failed {
    /// Nothing of it was applied, or all of it (an answer lost on the way).
    Whole(String),
    /// A command failed inside `EXEC`: Redis applied the others (it does not roll
    /// back), so the state is neither the old nor the new one.
    Partly(String),
    /// Another process started on the same prefix since this one did: nothing
    /// was applied, and this one must stop.
    TakenOver,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Whole(e) => f.write_str(e),
            Failed::Partly(e) => write!(f, "a command of the transaction failed ({e}); the others were applied"),
            Failed::TakenOver => f.write_str("another process has taken this state over (it started later with the same prefix, or, in a group, was given one of this process's partitions since): this one stops without writing"),
        }
    }
}

/// Sends the commands of `chunk` (not as a transaction) and reads their replies;
/// the first error is an error.
pub(super) fn pipeline(con: &mut redis::Connection, chunk: &Resp) -> Result<(), String> {
    con.send_packed_command(&chunk.buf).map_err(|e| e.to_string())?;
    let mut first_error = None;
    for _ in 0..chunk.commands {
        if let Value::ServerError(e) = con.recv_response().map_err(|e| e.to_string())? {
            first_error.get_or_insert(e.to_string());
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Sends `parts` as one `MULTI`/`EXEC`; the replies of their commands. Any
/// error, at queueing or inside `EXEC`, is an error.
pub(super) fn transaction(con: &mut redis::Connection, parts: &[&Resp]) -> Result<Vec<Value>, Failed> {
    let n: usize = parts.iter().map(|p| p.commands).sum();
    let io = |e: redis::RedisError| Failed::Whole(e.to_string());
    con.send_packed_command(b"*1\r\n$5\r\nMULTI\r\n").map_err(io)?;
    for p in parts.iter().filter(|p| !p.buf.is_empty()) {
        con.send_packed_command(&p.buf).map_err(io)?;
    }
    con.send_packed_command(b"*1\r\n$4\r\nEXEC\r\n").map_err(io)?;
    let mut first_error: Option<String> = None;
    for _ in 0..=n {
        if let Value::ServerError(e) = con.recv_response().map_err(io)? {
            first_error.get_or_insert(e.to_string());
        }
    }
    match con.recv_response().map_err(io)? {
        Value::Array(replies) if first_error.is_none() && replies.len() == n => {
            match replies.iter().find_map(|r| if let Value::ServerError(e) = r { Some(e.to_string()) } else { None }) {
                Some(e) => Err(Failed::Partly(e)),
                None => Ok(replies),
            }
        }
        // A watched key changed: the transaction was discarded.
        Value::Nil if first_error.is_none() => Err(Failed::TakenOver),
        other => Err(Failed::Whole(first_error.unwrap_or_else(|| format!("EXEC answered {other:?}")))),
    }
}

/// Who may write: every guard key must still hold the value this process
/// set. Alone, the prefix's owner token (`P:owner`: the process that started on
/// it last); in a group, the instance's and each owned partition's claim
/// (`group.rs`). Every write of a checkpoint, or of a namespace no checkpoint
/// names, is applied only while they all hold, so a process that was replaced
/// (moved elsewhere, thought dead, its partitions given to another) cannot
/// write any more.
#[derive(Clone)]
pub(super) struct Fence {
    pub guards: Vec<(Vec<u8>, Vec<u8>)>,
}

/// [`transaction`], fenced (`WATCH` the guard keys, check their values, then
/// `MULTI`/`EXEC`, which Redis discards if one changed in between).
pub(super) fn fenced(con: &mut redis::Connection, fence: &Fence, parts: &[&Resp]) -> Result<Vec<Value>, Failed> {
    let io = |e: redis::RedisError| Failed::Whole(e.to_string());
    let keys: Vec<&[u8]> = fence.guards.iter().map(|(k, _)| k.as_slice()).collect();
    let mut check = Resp::default();
    check.cmd(&[&[b"WATCH".as_slice()], &keys[..]].concat());
    check.cmd(&[&[b"MGET".as_slice()], &keys[..]].concat());
    con.send_packed_command(&check.buf).map_err(io)?;
    con.recv_response().map_err(io)?;
    let held = match con.recv_response().map_err(io)? {
        Value::Array(values) => values,
        _ => Vec::new(),
    };
    let holds = held.len() == fence.guards.len()
        && held.iter().zip(&fence.guards).all(|(v, (_, want))| matches!(v, Value::BulkString(b) if b == want));
    if !holds {
        let _ = redis::ConnectionLike::req_packed_command(con, b"*1\r\n$7\r\nUNWATCH\r\n");
        return Err(Failed::TakenOver);
    }
    transaction(con, parts)
}

/// A token no other process draws.
fn new_token() -> Vec<u8> {
    use std::hash::BuildHasher;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let hash = std::collections::hash_map::RandomState::new().hash_one((now, std::process::id()));
    format!("{hash:016x}-{}", std::process::id()).into_bytes()
}

/// The state of a pipeline in a Redis server: the coordinator's connection,
/// where it reads and writes its checkpoint record and applies each checkpoint
/// in one transaction; it opens the workers' backends.
pub struct RemoteState {
    client: redis::Client,
    pub(super) con: redis::Connection,
    pub(super) server: String,
    pub(super) prefix: String,
    options: RedisOptions,
    pub(super) ttl_ms: Option<u64>,
    wanted: Arc<AtomicBool>,
    /// The generation (workers per stage) whose state the record covers.
    named: Option<usize>,
    pub(super) fence: Fence,
    /// In a consumer group: this process's share (`group.rs`).
    pub(super) group: Option<super::group::Group>,
}

/// What a checkpoint writes to Redis besides the workers' state.
pub struct RemoteRecord<'a> {
    pub id: u64,
    /// The checkpoint record (`meta.json`'s JSON).
    pub bytes: &'a [u8],
    /// Workers per stage of the state it covers.
    pub workers: usize,
    /// In a group: each owned partition's index entry (the record restricted
    /// to that partition).
    pub partitions: Vec<(u16, Vec<u8>)>,
}

impl RemoteState {
    /// Connects to the server of `options` and takes its state over (a process
    /// that started earlier on the same prefix can no longer write). Keys start
    /// with its prefix (default: `streamhost:` and `pipeline`, or `streamhost`)
    /// and live `retention_ms` (the joins' own) plus `ttl_slack_ms`. Refuses a
    /// server that may evict keys.
    pub fn connect(options: &RedisOptions, pipeline: Option<&str>, retention_ms: u64) -> Result<Self, StateError> {
        let mut state = Self::open(options, pipeline, retention_ms)?;
        let (key, token) = (format!("{}:owner", state.prefix).into_bytes(), new_token());
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(&token);
        if let Some(ttl) = state.ttl_ms {
            set.arg("PX").arg(ttl);
        }
        set.query::<()>(&mut state.con).map_err(|e| state.error("take the state over", e))?;
        state.fence = Fence { guards: vec![(key, token)] };
        Ok(state)
    }

    /// Connected, checked, fenced by nothing yet.
    pub(super) fn open(options: &RedisOptions, pipeline: Option<&str>, retention_ms: u64) -> Result<Self, StateError> {
        let prefix = options.prefix.clone().unwrap_or_else(|| pipeline.map_or_else(|| "streamhost".to_string(), |n| format!("streamhost:{n}")));
        let client = client(options, &prefix)?;
        let server = client.get_connection_info().addr().to_string();
        let con = connect(&client, options.timeout()).map_err(|e| super::redis_error("connect", &server, &prefix, e))?;
        let mut state = RemoteState {
            client,
            con,
            server,
            options: options.clone(),
            ttl_ms: options.ttl_slack_ms.map(|s| s.saturating_add(retention_ms)),
            wanted: Arc::default(),
            named: None,
            fence: Fence { guards: Vec::new() },
            group: None,
            prefix,
        };
        state.check_eviction()?;
        Ok(state)
    }

    /// A server that evicts keys under memory pressure would drop state the
    /// checkpoint record still counts on.
    fn check_eviction(&mut self) -> Result<(), StateError> {
        let policy = match redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query::<Value>(&mut self.con) {
            Ok(Value::Array(v)) => v.get(1).cloned(),
            Ok(Value::Map(m)) => m.first().map(|(_, v)| v.clone()),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(server = %self.server, "cannot read the server's maxmemory-policy ({e}): make sure it is noeviction, or keys of the state may be evicted");
                return Ok(());
            }
        };
        let policy = match policy {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
            Some(Value::SimpleString(s)) => s,
            _ => return Ok(()),
        };
        if policy != "noeviction" {
            return Err(self.error("connect", format!("the server's maxmemory-policy is {policy}: it may evict the state's keys; set it to noeviction")));
        }
        Ok(())
    }

    pub(super) fn error(&self, op: &str, message: impl std::fmt::Display) -> StateError {
        super::redis_error(op, &self.server, &self.prefix, message)
    }

    /// `e` as an error of `op`: [`StateError::TakenOver`] when fenced.
    pub(super) fn failed(&self, op: &str, e: Failed) -> StateError {
        failed_error(op, &self.server, &self.prefix, e)
    }

    /// The prefix of every key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Set by a worker whose writes since the last checkpoint passed their
    /// bound: a checkpoint is due now.
    pub fn checkpoint_wanted(&self) -> Arc<AtomicBool> {
        self.wanted.clone()
    }

    /// This process's record: the pipeline's, or in a group its instance's.
    fn record_key(&self) -> String {
        match &self.group {
            Some(g) => g.instance_key(&self.prefix, "checkpoint"),
            None => format!("{}:checkpoint", self.prefix),
        }
    }

    /// The keys of the generation new workers write: `P:p{workers}`, or in a
    /// group this build's `P:e{epoch}`.
    fn generation(&self, workers: usize) -> String {
        match &self.group {
            Some(g) => format!("{}:{}", self.prefix, g.generation()),
            None => format!("{}:p{workers}", self.prefix),
        }
    }

    /// This process's checkpoint record Redis holds, if any.
    pub fn record(&mut self) -> Result<Option<Vec<u8>>, StateError> {
        redis::cmd("GET").arg(self.record_key()).query(&mut self.con).map_err(|e| self.error("read the checkpoint record", e))
    }

    /// Deletes every key under the prefix but the fence's (a fresh start).
    pub fn clear(&mut self) -> Result<u64, StateError> {
        self.named = None;
        let fence = self.fence.clone();
        self.sweep(&format!("{}:*", codec::glob_escape(&self.prefix)), &|k| fence.guards.iter().any(|(g, _)| g == k))
    }

    /// The record covers the state of `workers` workers per stage: deletes the
    /// keys of every other generation (a rescale or an interrupted one).
    pub fn keep_generation(&mut self, workers: usize) -> Result<u64, StateError> {
        self.named = Some(workers);
        let keep = format!("{}:", self.generation(workers));
        self.sweep(&format!("{}:p*", codec::glob_escape(&self.prefix)), &|k| k.starts_with(keep.as_bytes()))
    }

    /// Unlinks the keys matching `pattern` but those `keep` says.
    pub(super) fn sweep(&mut self, pattern: &str, keep: &dyn Fn(&[u8]) -> bool) -> Result<u64, StateError> {
        let mut cursor: u64 = 0;
        let mut gone = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(SWEEP_BATCH).query(&mut self.con).map_err(|e| self.error("list keys", e))?;
            let doomed: Vec<&Vec<u8>> = keys.iter().filter(|k| !keep(k)).collect();
            if !doomed.is_empty() {
                gone += redis::cmd("UNLINK").arg(&doomed).query::<u64>(&mut self.con).map_err(|e| self.error("delete keys", e))?;
            }
            if next == 0 {
                return Ok(gone);
            }
            cursor = next;
        }
    }

    /// Worker `index` of `stage` of a state of `workers` per stage (in a
    /// group: of this build's generation): as the record left it
    /// (`restored`), or to be filled before the first checkpoint that names it.
    pub fn open_worker(&self, workers: usize, stage: usize, index: usize, restored: bool) -> Result<Box<dyn StateBackend>, StateError> {
        self.open_namespace(format!("{}:s{stage}w{index}", self.generation(workers)), restored)
    }

    /// Worker `index` of `stage` of generation `generation` (`e{epoch}`, as an
    /// index entry names it), as its last checkpoint left it: to read from.
    pub fn open_generation(&self, generation: &str, stage: usize, index: usize) -> Result<Box<dyn StateBackend>, StateError> {
        self.open_namespace(format!("{}:{generation}:s{stage}w{index}", self.prefix), true)
    }

    fn open_namespace(&self, namespace: String, restored: bool) -> Result<Box<dyn StateBackend>, StateError> {
        let mut backend = RedisBackend::open(&self.client, &self.options, namespace, self.ttl_ms, restored, self.wanted.clone())?;
        backend.fence = Some(self.fence.clone());
        Ok(Box::new(backend))
    }

    /// Applies every worker's writes of a checkpoint and its `record` in one
    /// transaction (in a group, with the instance's record, the index entries
    /// of its partitions and its generation's marker); then removes the state
    /// no record names any more: alone, another parallelism's; in a group, the
    /// generations this one took partitions from, once no entry names them.
    pub fn commit(&mut self, writes: Vec<DeferredWrites>, record: &RemoteRecord<'_>) -> Result<(), StateError> {
        let key = self.record_key();
        let ttl = self.ttl_ms.map(|t| itoa::Buffer::new().format(t).as_bytes().to_vec());
        let mut tail = Resp::default();
        tail.cmd(&[b"SET", key.as_bytes(), record.bytes]);
        if let Some(ttl) = &ttl {
            tail.cmd(&[b"PEXPIRE", key.as_bytes(), ttl]);
            for (guard, _) in &self.fence.guards {
                tail.cmd(&[b"PEXPIRE", guard, ttl]);
            }
        }
        if let Some(g) = &self.group {
            g.entries(&self.prefix, record, ttl.as_deref(), &mut tail).map_err(|e| self.error("checkpoint", e))?;
        }
        let bytes: usize = writes.iter().map(DeferredWrites::bytes).sum();
        let mut parts: Vec<&Resp> = writes.iter().flat_map(|w| &w.parts).collect();
        parts.push(&tail);
        let long = self.options.timeout() * TRANSACTION_TIMEOUTS;
        let _ = self.con.set_read_timeout(Some(long));
        let applied = fenced(&mut self.con, &self.fence, &parts);
        let _ = self.con.set_read_timeout(Some(self.options.timeout()));
        match applied {
            Ok(_) => {}
            Err(e @ (Failed::Whole(_) | Failed::TakenOver)) => return Err(self.failed("checkpoint", e)),
            Err(e @ Failed::Partly(_)) => {
                // The record must not name a state applied in part (best effort:
                // the run stops anyway); in a group, the generation's marker goes
                // too, so no entry naming it is taken.
                let mut doomed = vec![key.into_bytes()];
                doomed.extend(self.group.as_ref().map(|g| g.marker_key(&self.prefix)));
                let _ = redis::cmd("DEL").arg(&doomed).query::<u64>(&mut self.con);
                return Err(self.error("checkpoint", format!("{e}; the checkpoint record was deleted, so a restart is refused until --fresh")));
            }
        }
        tracing::debug!(prefix = %self.prefix, bytes, "checkpoint applied in redis");
        self.wanted.store(false, std::sync::atomic::Ordering::Relaxed);
        if self.group.is_some() {
            self.collect_garbage();
        } else if self.named != Some(record.workers) {
            let gone = self.keep_generation(record.workers)?;
            tracing::info!(prefix = %self.prefix, workers = record.workers, keys = gone, "state of other parallelisms removed from redis");
        }
        Ok(())
    }
}

/// `e` as an error of `op` on `namespace`: [`StateError::TakenOver`] when fenced.
pub(super) fn failed_error(op: &str, server: &str, namespace: &str, e: Failed) -> StateError {
    match e {
        Failed::TakenOver => StateError::TakenOver { op: op.into(), server: server.into(), namespace: namespace.into(), message: e.to_string() },
        e => super::redis_error(op, server, namespace, e),
    }
}
