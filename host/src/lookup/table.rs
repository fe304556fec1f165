//! A lookup table as a pipeline reads it: its copies (one backend, or
//! several behind circuit breakers), how its requests are tried, and its
//! counters; shared by every worker. What each worker keeps of it (cache,
//! requests in flight) is its [`super::TableClient`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::backend::{Backend, BackendConfig, LookupError};
use super::failover::{BreakerConfig, FailoverBackend};
use super::service::{LookupService, RetryPolicy};
use super::stats::TableStats;

pub struct Table {
    /// The copies' names (`A | B`).
    pub name: String,
    /// What requests are sent to (the copies behind their breakers, or the one).
    pub backend: Arc<dyn Backend>,
    /// The copies, when there are several (for their counters).
    pub failover: Option<Arc<FailoverBackend>>,
    pub policy: RetryPolicy,
    pub stats: TableStats,
    copies: u32,
}

impl Table {
    /// A table on `copies` (one, or A, B, ...), each asked for at most
    /// `policy.timeout` before the next.
    pub fn new(copies: Vec<Arc<dyn Backend>>, policy: RetryPolicy, breaker: BreakerConfig) -> Table {
        let n = copies.len().max(1) as u32;
        let (backend, failover): (Arc<dyn Backend>, _) = match copies.len() {
            1 => (copies.into_iter().next().expect("one copy"), None),
            _ => {
                let f = Arc::new(FailoverBackend::new(copies, policy.timeout, breaker));
                (f.clone(), Some(f))
            }
        };
        Table { name: backend.name().to_string(), backend, failover, policy, stats: TableStats::default(), copies: n }
    }

    /// The longest a request may take: every copy asked in turn.
    pub fn request_timeout(&self) -> Duration {
        self.policy.timeout.saturating_mul(self.copies)
    }
}

/// Every table of a pipeline, on one lookup runtime: a table read by several
/// steps (the same copies, read the same way) is opened once.
pub struct Tables {
    service: Arc<LookupService>,
    tables: Mutex<BTreeMap<String, Arc<Table>>>,
}

impl Tables {
    pub fn start() -> std::io::Result<Tables> {
        Ok(Tables { service: Arc::new(LookupService::start()?), tables: Mutex::new(BTreeMap::new()) })
    }

    pub fn service(&self) -> &Arc<LookupService> {
        &self.service
    }

    /// The table `identity` names, opened on first use from `backends`
    /// (`fields`: the only fields a Redis hash is read with).
    pub fn open(
        &self,
        identity: &str,
        backends: &[BackendConfig],
        fields: Option<&[String]>,
        policy: RetryPolicy,
        breaker: BreakerConfig,
    ) -> Result<Arc<Table>, LookupError> {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = tables.get(identity) {
            return Ok(t.clone());
        }
        // Backends keep tasks on the lookup runtime: made inside it.
        let _inside = self.service.enter();
        let copies = backends.iter().map(|b| b.open(fields)).collect::<Result<Vec<_>, _>>()?;
        let table = Arc::new(Table::new(copies, policy, breaker));
        tables.insert(identity.to_string(), table.clone());
        Ok(table)
    }
}
