//! Crash points for crash-consistency tests: with
//! `STREAMHOST_FAILPOINT=NAME@N` in the environment, the N-th call of
//! `hit("NAME")` aborts the process (as a SIGKILL would, with nothing
//! flushed or cleaned up). Without it, a call is one relaxed load.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn armed() -> &'static Option<(String, u64)> {
    ARMED.get_or_init(|| {
        let spec = std::env::var("STREAMHOST_FAILPOINT").ok()?;
        let (name, n) = spec.split_once('@').unwrap_or((&spec, "1"));
        Some((name.to_string(), n.parse().ok()?))
    })
}

/// Aborts the process if the failpoint armed is `name` and this is its N-th hit.
pub fn hit(name: &str) {
    let Some((armed, n)) = armed() else { return };
    if armed == name && HITS.fetch_add(1, Relaxed) + 1 == *n {
        eprintln!("failpoint {name}@{n}: aborting the process");
        std::process::abort();
    }
}
