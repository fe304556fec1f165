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

/// A Redis server: string values by `MGET`, over one multiplexed connection
/// (requests from many tasks are pipelined on it).
pub struct RedisBackend {
    name: String,
    connection: redis::aio::MultiplexedConnection,
}

impl RedisBackend {
    /// Connects to `url` (`redis://host:port[/db]`).
    pub async fn connect(url: &str) -> Result<Self, LookupError> {
        let error = |e: redis::RedisError| LookupError::Connect { backend: url.to_string(), error: e.to_string() };
        let client = redis::Client::open(url).map_err(error)?;
        let connection = client.get_multiplexed_async_connection().await.map_err(error)?;
        Ok(RedisBackend { name: url.to_string(), connection })
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
            let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                .arg(keys)
                .query_async(&mut connection)
                .await
                .map_err(|e| LookupError::Request { backend: self.name.clone(), error: e.to_string() })?;
            if values.len() != keys.len() {
                return Err(LookupError::Request { backend: self.name.clone(), error: format!("MGET of {} keys answered {}", keys.len(), values.len()) });
            }
            Ok(values)
        })
    }
}
