//! Where a lookup table lives: a small trait, so another store is one file.

use std::future::Future;
use std::pin::Pin;

/// A lookup layer's error: which backend, and what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("lookup backend `{backend}`: connecting: {error}")]
    Connect { backend: String, error: String },
    #[error("lookup backend `{backend}`: {error}")]
    Request { backend: String, error: String },
    #[error("lookup backend `{backend}`: no answer within {after:?}")]
    Timeout { backend: String, after: std::time::Duration },
    #[error("lookup table `{table}`: no copy answered ({last})")]
    AllDown { table: String, last: String },
}

/// The answer to one request: a value or `None` (no such key) per key asked, in order.
pub type Answer<'a> = Pin<Box<dyn Future<Output = Result<Vec<Option<Vec<u8>>>, LookupError>> + Send + 'a>>;

/// A store a table is read from, by many keys at once.
pub trait Backend: Send + Sync {
    /// Its name in errors, logs and stats (e.g. its address).
    fn name(&self) -> &str;

    /// The values of `keys`, in one request.
    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> Answer<'a>;
}

/// How a table's values are kept in Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisValues {
    /// A string per key (JSON, as a rule), read by `MGET`.
    Strings,
    /// A hash per key, read by `HGETALL` (all in one pipeline) and handed
    /// on as a JSON object of its fields (string values); an empty or absent
    /// hash is a miss.
    Hashes,
}

/// `backend.get_many(keys)`, given up after `timeout`.
pub(super) async fn within(backend: &dyn Backend, keys: &[Vec<u8>], timeout: std::time::Duration) -> Result<Vec<Option<Vec<u8>>>, LookupError> {
    match tokio::time::timeout(timeout, backend.get_many(keys)).await {
        Ok(r) => r,
        Err(_) => Err(LookupError::Timeout { backend: backend.name().to_string(), after: timeout }),
    }
}

/// A Redis server, over one multiplexed connection (requests from many
/// tasks are pipelined on it).
pub struct RedisBackend {
    name: String,
    values: RedisValues,
    connection: redis::aio::MultiplexedConnection,
}

impl RedisBackend {
    /// Connects to `url` (`redis://host:port[/db]`).
    pub async fn connect(url: &str, values: RedisValues) -> Result<Self, LookupError> {
        let error = |e: redis::RedisError| LookupError::Connect { backend: url.to_string(), error: e.to_string() };
        let client = redis::Client::open(url).map_err(error)?;
        let connection = client.get_multiplexed_async_connection().await.map_err(error)?;
        Ok(RedisBackend { name: url.to_string(), values, connection })
    }

    fn error(&self, e: impl std::fmt::Display) -> LookupError {
        LookupError::Request { backend: self.name.clone(), error: e.to_string() }
    }
}

impl Backend for RedisBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> Answer<'a> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            // The connection is a handle to one shared pipeline: cloning it is cheap.
            let mut connection = self.connection.clone();
            let values: Vec<Option<Vec<u8>>> = match self.values {
                RedisValues::Strings => redis::cmd("MGET").arg(keys).query_async(&mut connection).await.map_err(|e| self.error(e))?,
                RedisValues::Hashes => {
                    let mut pipe = redis::pipe();
                    for k in keys {
                        pipe.cmd("HGETALL").arg(k);
                    }
                    let hashes: Vec<std::collections::BTreeMap<String, String>> = pipe.query_async(&mut connection).await.map_err(|e| self.error(e))?;
                    hashes.into_iter().map(|h| (!h.is_empty()).then(|| serde_json::to_vec(&h).unwrap_or_default())).collect()
                }
            };
            if values.len() != keys.len() {
                return Err(self.error(format!("{} keys asked, {} answered", keys.len(), values.len())));
            }
            Ok(values)
        })
    }
}
