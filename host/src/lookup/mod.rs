//! Dimension-table lookups: what a `lookup-join` step
//! (`step/lookup_join/`) reads its table through.
//!
//! A worker never waits on the network. Each worker has a [`TableClient`]
//! per table it reads ([`client`]): a cache ([`cache`]: LRU bounded in
//! bytes, TTLs for hits and misses), one request per key in flight however
//! many events wait for it, and the misses of everything the worker handled
//! in one go sent as one request (MGET, a pipeline, one `= ANY($1)` query).
//! Requests run on the lookup runtime ([`service`]: one `lookup-io` thread
//! driving tokio, the only async part of the hot path; timeouts, retries,
//! and what happens when the table is unavailable). A table ([`table`]) is
//! one [`backend`] (Redis: [`redis`]; PostgreSQL: [`postgres`]; a file: [`file`]) or copies
//! A, B, ... behind circuit breakers ([`failover`]). Counters: [`stats`].

pub mod backend;
pub mod cache;
pub mod client;
pub mod failover;
pub mod file;
pub mod postgres;
pub mod redis;
pub mod service;
pub mod stats;
pub mod table;

pub use backend::{Backend, BackendConfig, LookupError};
pub use cache::{CacheStats, LookupCache};
pub use client::{Answer, Ready, TableClient};
pub use failover::{BreakerConfig, FailoverBackend};
pub use file::{FileBackend, FileTableConfig};
pub use postgres::{PostgresBackend, PostgresConfig};
pub use redis::{RedisBackend, RedisConfig, RedisValues};
pub use service::{LookupService, Reply, Request, RetryPolicy, Unavailable};
pub use stats::{CopySnapshot, LookupSnapshot, LookupStats, StepStats, TableStats};
pub use table::{Table, Tables};
