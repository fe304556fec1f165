//! Automatic rollback: a new version is on probation for its first
//! `window_events` inputs; a monitor thread judges it from its own stats
//! every [`TICK`] and puts the previous version back if it fails too often.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::put_back;
use crate::config::RollbackSettings;
use crate::plugin::{PluginRegistry, PluginStatsSnapshot, SwapAction};

/// How often a version on probation is judged.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// What to do with a version on probation.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Not enough inputs yet.
    Wait,
    /// It passed: probation ends.
    Promote(String),
    /// It failed: put the previous version back, for this reason.
    RollBack(String),
}

/// Judges a version on probation from its stats (all of which it earned
/// since it was published: a version's stats start at zero).
pub(crate) fn judge(stats: &PluginStatsSnapshot, rule: &RollbackSettings) -> Verdict {
    let (events, failures) = (stats.events_in, stats.failures());
    if events >= rule.min_events.max(1) {
        let rate = failures as f64 / events as f64;
        if rate > rule.max_failure_rate {
            return Verdict::RollBack(format!(
                "{failures} of its first {events} inputs failed (errors {}, traps {} of which timeouts {}, limits {}): \
                 failure rate {rate:.2} > max_failure_rate {}",
                stats.errors, stats.traps, stats.timeouts, stats.limit_violations, rule.max_failure_rate
            ));
        }
    }
    if events >= rule.window_events {
        let rate = failures as f64 / events.max(1) as f64;
        return Verdict::Promote(format!("{failures} of its first {events} inputs failed (rate {rate:.2})"));
    }
    Verdict::Wait
}

/// The monitor's loop: sleeps until told a swap happened, then judges the
/// versions on probation every [`TICK`] until none is left. Ends when the
/// sender is dropped (the swapper is).
pub(crate) fn monitor(registry: Arc<PluginRegistry>, rule: RollbackSettings, wake: Receiver<()>) {
    loop {
        let any = registry.slots().any(|s| s.on_probation());
        let woke = if any { wake.recv_timeout(TICK) } else { wake.recv().map_err(|_| RecvTimeoutError::Disconnected) };
        if matches!(woke, Err(RecvTimeoutError::Disconnected)) {
            return;
        }
        for slot in registry.slots().filter(|s| s.on_probation()) {
            // A swap or rollback under way on this slot: judge next tick.
            let Some(_changing) = slot.try_lock_changes() else { continue };
            if !slot.on_probation() {
                continue;
            }
            let current = slot.current();
            match judge(&current.plugin.stats().snapshot(), &rule) {
                Verdict::Wait => {}
                Verdict::Promote(reason) => slot.promote(reason),
                Verdict::RollBack(reason) => {
                    tracing::warn!(plugin = slot.name(), version = current.hash(), %reason, "rolling back the new plugin version");
                    if let Err(e) = put_back(slot, SwapAction::AutoRollback, Some(reason)) {
                        tracing::error!(plugin = slot.name(), error = %e, "automatic rollback failed; the new version keeps running");
                        slot.promote(format!("kept: the rollback failed: {e}"));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(events_in: u64, errors: u64, traps: u64) -> PluginStatsSnapshot {
        PluginStatsSnapshot { events_in, errors, traps, ..Default::default() }
    }

    #[test]
    fn swap_rollback_rule() {
        let rule = RollbackSettings { enabled: true, window_events: 1000, min_events: 100, max_failure_rate: 0.5 };
        assert_eq!(judge(&stats(99, 99, 0), &rule), Verdict::Wait, "too few inputs to judge");
        assert!(matches!(judge(&stats(100, 40, 11), &rule), Verdict::RollBack(r) if r.contains("51 of its first 100")));
        assert_eq!(judge(&stats(100, 50, 0), &rule), Verdict::Wait, "at the threshold is not past it");
        assert!(matches!(judge(&stats(1000, 10, 0), &rule), Verdict::Promote(_)));
        assert!(matches!(judge(&stats(5000, 0, 4000), &rule), Verdict::RollBack(_)), "failing when judged late still rolls back");
        let limits = PluginStatsSnapshot { events_in: 200, limit_violations: 150, ..Default::default() };
        assert!(matches!(judge(&limits, &rule), Verdict::RollBack(_)), "output limits count as failures");
        let eager = RollbackSettings { min_events: 0, window_events: 1, max_failure_rate: 0.0, enabled: true };
        assert_eq!(judge(&stats(0, 0, 0), &eager), Verdict::Wait, "nothing to judge without inputs");
    }
}
