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
            Failed::TakenOver => f.write_str("another process has taken this state over (it started later with the same prefix): this one stops without writing"),
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

/// Who owns a prefix's state: the process that started on it last. Every
/// write of a checkpoint, or of a namespace no checkpoint names, is applied
/// only while the owner key still holds the writer's token, so a process a
/// newer one replaced (moved elsewhere, thought dead) cannot write any more.
#[derive(Clone)]
pub(super) struct Owner {
    pub key: Vec<u8>,
    pub token: Vec<u8>,
}

/// [`transaction`], fenced by `owner` (`WATCH` its key, check the token, then
/// `MULTI`/`EXEC`, which Redis discards if the key changed in between).
pub(super) fn fenced(con: &mut redis::Connection, owner: &Owner, parts: &[&Resp]) -> Result<Vec<Value>, Failed> {
    let io = |e: redis::RedisError| Failed::Whole(e.to_string());
    let mut check = Resp::default();
    check.cmd(&[b"WATCH", &owner.key]);
    check.cmd(&[b"GET", &owner.key]);
    con.send_packed_command(&check.buf).map_err(io)?;
    con.recv_response().map_err(io)?;
    let holder = match con.recv_response().map_err(io)? {
        Value::BulkString(b) => Some(b),
        _ => None,
    };
    if holder.as_deref() != Some(owner.token.as_slice()) {
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
/// where it reads and writes the checkpoint record (`P:checkpoint`) and applies
/// each checkpoint in one transaction; it opens the workers' backends.
pub struct RemoteState {
    client: redis::Client,
    con: redis::Connection,
    server: String,
    prefix: String,
    options: RedisOptions,
    ttl_ms: Option<u64>,
    wanted: Arc<AtomicBool>,
    /// The generation (workers per stage) whose state the record covers.
    named: Option<usize>,
    owner: Owner,
}

impl RemoteState {
    /// Connects to the server of `options` and takes its state over (a process
    /// that started earlier on the same prefix can no longer write). Keys start
    /// with its prefix (default: `streamhost:` and `pipeline`, or `streamhost`)
    /// and live `retention_ms` (the joins' own) plus `ttl_slack_ms`. Refuses a
    /// server that may evict keys.
    pub fn connect(options: &RedisOptions, pipeline: Option<&str>, retention_ms: u64) -> Result<Self, StateError> {
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
            owner: Owner { key: format!("{prefix}:owner").into_bytes(), token: new_token() },
            prefix,
        };
        state.check_eviction()?;
        let mut set = redis::cmd("SET");
        set.arg(&state.owner.key).arg(&state.owner.token);
        if let Some(ttl) = state.ttl_ms {
            set.arg("PX").arg(ttl);
        }
        set.query::<()>(&mut state.con).map_err(|e| state.error("take the state over", e))?;
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

    fn error(&self, op: &str, message: impl std::fmt::Display) -> StateError {
        super::redis_error(op, &self.server, &self.prefix, message)
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

    fn record_key(&self) -> String {
        format!("{}:checkpoint", self.prefix)
    }

    fn generation(&self, workers: usize) -> String {
        format!("{}:p{workers}", self.prefix)
    }

    /// The checkpoint record Redis holds, if any.
    pub fn record(&mut self) -> Result<Option<Vec<u8>>, StateError> {
        redis::cmd("GET").arg(self.record_key()).query(&mut self.con).map_err(|e| self.error("read the checkpoint record", e))
    }

    /// Deletes every key under the prefix but the owner's (a fresh start).
    pub fn clear(&mut self) -> Result<u64, StateError> {
        self.named = None;
        let owner = self.owner.key.clone();
        self.sweep(&format!("{}:*", codec::glob_escape(&self.prefix)), &|k| k == owner.as_slice())
    }

    /// The record covers the state of `workers` workers per stage: deletes the
    /// keys of every other generation (a rescale or an interrupted one).
    pub fn keep_generation(&mut self, workers: usize) -> Result<u64, StateError> {
        self.named = Some(workers);
        let keep = format!("{}:", self.generation(workers));
        self.sweep(&format!("{}:p*", codec::glob_escape(&self.prefix)), &|k| k.starts_with(keep.as_bytes()))
    }

    /// Unlinks the keys matching `pattern` but those `keep` says.
    fn sweep(&mut self, pattern: &str, keep: &dyn Fn(&[u8]) -> bool) -> Result<u64, StateError> {
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

    /// Worker `index` of `stage` of a state of `workers` per stage: as the
    /// record left it (`restored`), or to be filled before the first checkpoint
    /// that names it.
    pub fn open_worker(&self, workers: usize, stage: usize, index: usize, restored: bool) -> Result<Box<dyn StateBackend>, StateError> {
        let namespace = format!("{}:s{stage}w{index}", self.generation(workers));
        let mut backend = RedisBackend::open(&self.client, &self.options, namespace, self.ttl_ms, restored, self.wanted.clone())?;
        backend.owner = Some(self.owner.clone());
        Ok(Box::new(backend))
    }

    /// Applies every worker's writes of a checkpoint and its `record`, which
    /// covers a state of `workers` per stage, in one transaction; then, if the
    /// record names another generation than before, deletes the old one.
    pub fn commit(&mut self, writes: Vec<DeferredWrites>, record: &[u8], workers: usize) -> Result<(), StateError> {
        let key = self.record_key();
        let mut tail = Resp::default();
        tail.cmd(&[b"SET", key.as_bytes(), record]);
        if let Some(ttl) = self.ttl_ms {
            let ttl = itoa::Buffer::new().format(ttl).as_bytes().to_vec();
            tail.cmd(&[b"PEXPIRE", key.as_bytes(), &ttl]);
            tail.cmd(&[b"PEXPIRE", &self.owner.key, &ttl]);
        }
        let bytes: usize = writes.iter().map(DeferredWrites::bytes).sum();
        let mut parts: Vec<&Resp> = writes.iter().flat_map(|w| &w.parts).collect();
        parts.push(&tail);
        let long = self.options.timeout() * TRANSACTION_TIMEOUTS;
        let _ = self.con.set_read_timeout(Some(long));
        let applied = fenced(&mut self.con, &self.owner, &parts);
        let _ = self.con.set_read_timeout(Some(self.options.timeout()));
        match applied {
            Ok(_) => {}
            Err(e @ (Failed::Whole(_) | Failed::TakenOver)) => return Err(self.error("checkpoint", e)),
            Err(e @ Failed::Partly(_)) => {
                // The record must not name a state applied in part (best effort:
                // the run stops anyway).
                let _ = redis::cmd("DEL").arg(&key).query::<u64>(&mut self.con);
                return Err(self.error("checkpoint", format!("{e}; the checkpoint record was deleted, so a restart is refused until --fresh")));
            }
        }
        tracing::debug!(prefix = %self.prefix, bytes, "checkpoint applied in redis");
        self.wanted.store(false, std::sync::atomic::Ordering::Relaxed);
        if self.named != Some(workers) {
            let gone = self.keep_generation(workers)?;
            tracing::info!(prefix = %self.prefix, workers, keys = gone, "state of other parallelisms removed from redis");
        }
        Ok(())
    }
}
