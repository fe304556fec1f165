//! Where a lookup table lives: a small trait, so another store is one file
//! (its config struct beside it, one variant in [`BackendConfig`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::file::{FileBackend, FileTableConfig};
use super::postgres::{PostgresBackend, PostgresConfig};
use super::redis::{RedisBackend, RedisConfig};

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

/// `backend.get_many(keys)`, given up after `timeout`.
pub(super) async fn within(backend: &dyn Backend, keys: &[Vec<u8>], timeout: std::time::Duration) -> Result<Vec<Option<Vec<u8>>>, LookupError> {
    match tokio::time::timeout(timeout, backend.get_many(keys)).await {
        Ok(r) => r,
        Err(_) => Err(LookupError::Timeout { backend: backend.name().to_string(), after: timeout }),
    }
}


/// A store a lookup table is read from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum BackendConfig {
    /// Redis: one server or a cluster.
    Redis(RedisConfig),
    /// PostgreSQL: a parameterised query taking all of a request's keys.
    Postgres(PostgresConfig),
    /// A file of JSON lines loaded at start: recorded answers for
    /// `streamhost test`, or a small static table.
    File(FileTableConfig),
}

impl BackendConfig {
    /// Its name in errors, logs and stats (never a password).
    pub fn name(&self) -> String {
        match self {
            BackendConfig::Redis(r) => r.name(),
            BackendConfig::Postgres(p) => p.name(),
            BackendConfig::File(f) => f.name(),
        }
    }

    /// Problems of the settings, reported at `at` (the backend) + their path.
    pub fn check(&self, at: &crate::config::locate::JsonPath, err: &mut dyn FnMut(crate::config::locate::JsonPath, String)) {
        match self {
            BackendConfig::Redis(r) => r.check(at, err),
            BackendConfig::Postgres(p) => p.check(at, err),
            BackendConfig::File(_) => {}
        }
    }

    /// The backend, connected on first use (so a store down at the start
    /// delays lookups instead of failing the start). `fields`: the only
    /// fields wanted of each value, where the store can pick them (Redis
    /// hashes: HMGET).
    pub fn open(&self, fields: Option<&[String]>) -> Result<Arc<dyn Backend>, LookupError> {
        Ok(match self {
            BackendConfig::Redis(r) => Arc::new(RedisBackend::lazy(r, fields)?),
            BackendConfig::Postgres(p) => Arc::new(PostgresBackend::lazy(p)),
            BackendConfig::File(f) => Arc::new(FileBackend::load(f)?),
        })
    }

    /// Its relative paths resolved by `resolve` (against pipeline.json's folder).
    pub fn resolved(&self, resolve: impl Fn(&std::path::Path) -> std::path::PathBuf) -> BackendConfig {
        match self {
            BackendConfig::File(f) => BackendConfig::File(FileTableConfig { path: resolve(&f.path) }),
            other => other.clone(),
        }
    }
}
