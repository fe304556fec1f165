//! Guest timers bounded by the current call's time budget.
//!
//! Epoch interruption stops wasm code, not host code: a WASI guest blocked
//! in `wasi:io/poll` on a long timer (Python's `time.sleep(3600)`) would hold
//! its thread far past `batch_timeout_ms`. So the monotonic clock's
//! `subscribe-duration` and `subscribe-instant` are replaced by versions whose
//! pollable is ready at the requested time or when the call's budget ends,
//! whichever comes first. A timer that fires because the budget ended marks
//! the store, and the supervisor then fails the call as a timeout whatever
//! the guest does next. Timers within the budget are exact.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Linker, Resource};
use wasmtime::StoreContextMut;
use wasmtime_wasi::p2::{subscribe, DynPollable, Pollable};

use super::sandbox::StoreState;

/// The interface wasmtime-wasi 48 defines (guests importing an older 0.2.x
/// are linked to it by semver). A test with a sleeping Python guest
/// (`host/tests/plugin_runtime.rs`) fails if this stops matching.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Replaces the monotonic clock's timer functions linked by wasmtime-wasi.
pub(crate) fn bound_guest_timers(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap("subscribe-duration", |mut store: StoreContextMut<'_, StoreState>, (nanos,): (u64,)| {
        Ok((bounded_timer(store.data_mut(), Duration::from_nanos(nanos))?,))
    })?;
    clock.func_wrap("subscribe-instant", |mut store: StoreContextMut<'_, StoreState>, (when,): (u64,)| {
        let state = store.data_mut();
        let wait = Duration::from_nanos(when.saturating_sub(state.monotonic.now()));
        Ok((bounded_timer(state, wait)?,))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

fn bounded_timer(state: &mut StoreState, wait: Duration) -> wasmtime::Result<Resource<DynPollable>> {
    let requested = std::time::Instant::now().checked_add(wait);
    let budget_end = state.call_deadline;
    let (until, cut) = match requested {
        Some(t) if t <= budget_end => (t, None),
        _ => (budget_end, Some(state.budget_exceeded.clone())),
    };
    let timer = state.table.push(Timer { until: tokio::time::Instant::from_std(until), cut })?;
    subscribe(&mut state.table, timer)
}

/// Ready at `until`. `cut` is set when the timer ends the call's budget
/// rather than the wait the guest asked for.
struct Timer {
    until: tokio::time::Instant,
    cut: Option<Arc<AtomicBool>>,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Timer {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.until).await;
        if let Some(cut) = &self.cut {
            cut.store(true, Ordering::Relaxed);
        }
    }
}
