//! Dimension-table lookups (issue 12, in progress): the pieces a
//! `lookup-join` step is built from. Here so far: the per-worker cache
//! ([`cache`]), the bookkeeping of the batches waiting for answers
//! ([`flight`]: single flight per key, one request per batch's misses,
//! batches out in input order), the backends a table is read from
//! ([`backend`]: Redis; [`postgres`]), the lookup runtime they run on
//! ([`service`]: timeouts, retries, a bound on requests out), and copies of
//! a table behind breakers ([`failover`]). Not yet: the `lookup-join` step itself.
//!
//! The design the step follows: a worker never waits on the network. It
//! answers what it can from its cache, sends the misses of a batch as one
//! request (MGET, a pipeline, one `= ANY($1)` query) to the lookup runtime
//! (tokio, the only async part of the hot path), one request per key in
//! flight however many events wait for it, and goes on with other batches;
//! a batch leaves the step, in input order, once its answers are in.

pub mod backend;
pub mod cache;
pub mod failover;
pub mod flight;
pub mod postgres;
pub mod service;

pub use backend::{Backend, LookupError, RedisBackend, RedisValues};
pub use cache::{CacheStats, LookupCache};
pub use failover::{BreakerConfig, FailoverBackend};
pub use flight::{Admitted, Lookups};
pub use postgres::PostgresBackend;
pub use service::{LookupService, Reply, Request, RetryPolicy};
