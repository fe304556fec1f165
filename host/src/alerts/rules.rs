//! A rule's state: its condition judged on each gathering, firing once when
//! it holds (for `for_ms`), resolving once when it stops.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::config::{AlertCondition, AlertRule};
use super::figures::Figures;
use super::AlertStatus;

const SOURCE_EVENTS: &str = "streamhost_source_events_total";

/// A rule's alert starting or ending: what the log, the board and the
/// webhook receive.
#[derive(Clone, Debug, Serialize)]
pub struct Transition {
    pub pipeline: String,
    pub rule: String,
    /// The condition's type (`delay`, `broken-stream`, ...).
    pub condition: &'static str,
    pub state: TransitionState,
    /// The figure that triggered it (its unit in `message`).
    pub value: f64,
    /// The rule's threshold, in the same unit.
    pub threshold: f64,
    pub message: String,
    /// Unix ms.
    pub at_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransitionState {
    Firing,
    Resolved,
}

impl Transition {
    pub fn log(&self) {
        match self.state {
            TransitionState::Firing => tracing::warn!(alert = %self.rule, value = self.value, threshold = self.threshold, "alert firing: {}", self.message),
            TransitionState::Resolved => tracing::info!(alert = %self.rule, value = self.value, threshold = self.threshold, "alert resolved: {}", self.message),
        }
    }
}

/// A judgement of a condition on one gathering.
struct Judged {
    breach: bool,
    value: f64,
    threshold: f64,
    message: String,
}

/// Counters sampled over time: the history a rate needs.
#[derive(Default)]
struct History {
    samples: VecDeque<(Instant, Vec<f64>)>,
}

impl History {
    /// Records `values` at `now`, keeping one sample older than `span`.
    fn push(&mut self, now: Instant, values: Vec<f64>, span: Duration) {
        self.samples.push_back((now, values));
        while self.samples.len() > 2 && self.samples.get(1).is_some_and(|(t, _)| now.duration_since(*t) >= span) {
            self.samples.pop_front();
        }
    }

    /// How much each value grew over (about) the last `over`, and in how
    /// many seconds: from the newest sample at least `over` old, or the
    /// oldest there is. `None` before two samples.
    fn growth(&self, now: Instant, over: Duration) -> Option<(Vec<f64>, f64)> {
        let (last_t, last) = self.samples.back()?;
        let (from_t, from) = self.samples.iter().rev().find(|(t, _)| now.duration_since(*t) >= over).or(self.samples.front())?;
        let secs = last_t.duration_since(*from_t).as_secs_f64();
        (secs > 0.0).then(|| (last.iter().zip(from).map(|(a, b)| (a - b).max(0.0)).collect(), secs))
    }

    /// Seconds of history held.
    fn span(&self, now: Instant) -> f64 {
        self.samples.front().map_or(0.0, |(t, _)| now.duration_since(*t).as_secs_f64())
    }
}

pub(super) struct RuleState {
    name: String,
    rule: AlertRule,
    firing: bool,
    /// When the condition started holding, while it waits out `for_ms`.
    pending: Option<Instant>,
    last: Option<(u64, f64, String)>,
    fired: u64,
    history: History,
    /// Broken stream: the source's count, and when it last grew.
    seen: Option<(f64, Instant)>,
}

impl RuleState {
    pub(super) fn new(rule: &AlertRule, _index: usize) -> Self {
        RuleState { name: rule.display_name(), rule: rule.clone(), firing: false, pending: None, last: None, fired: 0, history: History::default(), seen: None }
    }

    pub(super) fn status(&self) -> AlertStatus {
        let state = match (self.firing, &self.last) {
            (true, _) => "firing",
            (false, Some(_)) => "resolved",
            (false, None) => "ok",
        };
        AlertStatus {
            rule: self.name.clone(),
            state,
            since_ms: self.last.as_ref().map(|l| l.0),
            value: self.last.as_ref().map(|l| l.1),
            message: self.last.as_ref().map_or_else(|| describe(&self.rule.when), |l| l.2.clone()),
            fired: self.fired,
        }
    }

    pub(super) fn tick(&mut self, now: Instant, unix_ms: u64, figures: &Figures, pipeline: &str) -> Option<Transition> {
        let judged = self.judge(now, figures)?;
        let state = if judged.breach {
            let since = *self.pending.get_or_insert(now);
            if self.firing || now.duration_since(since) < Duration::from_millis(self.rule.for_ms) {
                return None;
            }
            self.firing = true;
            self.fired += 1;
            TransitionState::Firing
        } else {
            self.pending = None;
            if !self.firing {
                return None;
            }
            self.firing = false;
            TransitionState::Resolved
        };
        self.last = Some((unix_ms, judged.value, judged.message.clone()));
        Some(Transition {
            pipeline: pipeline.into(),
            rule: self.name.clone(),
            condition: condition_type(&self.rule.when),
            state,
            value: judged.value,
            threshold: judged.threshold,
            message: judged.message,
            at_ms: unix_ms,
        })
    }

    /// The condition on this gathering (`None`: nothing to judge yet, the
    /// state stays).
    fn judge(&mut self, now: Instant, f: &Figures) -> Option<Judged> {
        match &self.rule.when {
            AlertCondition::Delay { source: Some(s), above_ms, .. } => {
                // Before its first event a source has no event time to lag behind.
                if f.sum(SOURCE_EVENTS, &[("source", s)]).unwrap_or(0.0) <= 0.0 {
                    return None;
                }
                let lag_ms = f.max("streamhost_source_event_time_lag_seconds", &[("source", s)])? * 1000.0;
                let above = *above_ms as f64;
                Some(Judged { breach: lag_ms > above, value: lag_ms, threshold: above, message: format!("source `{s}` lags {} behind event time (threshold {})", ms(lag_ms), ms(above)) })
            }
            AlertCondition::Delay { step: Some(step), above_ms, .. } => {
                let lag_ms = f.max("streamhost_step_watermark_lag_seconds", &[("step", step)])? * 1000.0;
                let above = *above_ms as f64;
                Some(Judged { breach: lag_ms > above, value: lag_ms, threshold: above, message: format!("step `{step}`'s watermark lags {} behind (threshold {})", ms(lag_ms), ms(above)) })
            }
            AlertCondition::Delay { .. } => None,
            AlertCondition::BrokenStream { source, silent_ms } => {
                let count = f.sum(SOURCE_EVENTS, &[("source", source)])?;
                let (last, since) = match self.seen {
                    Some((last, since)) if count <= last => (last, since),
                    _ => (count, now),
                };
                self.seen = Some((last, since));
                let silent = now.duration_since(since).as_secs_f64() * 1000.0;
                let above = *silent_ms as f64;
                if count <= 0.0 {
                    return None;
                }
                Some(Judged {
                    breach: silent >= above,
                    value: silent,
                    threshold: above,
                    message: if silent >= above {
                        format!("source `{source}` read nothing for {} after {count} events (threshold {})", ms(silent), ms(above))
                    } else {
                        format!("source `{source}` reads again ({count} events)")
                    },
                })
            }
            AlertCondition::Fluctuation { source, band, window_ms, over_ms, min_rate } => {
                let count = f.sum(SOURCE_EVENTS, &[("source", source)])?;
                let window = Duration::from_millis(*window_ms);
                self.history.push(now, vec![count], window);
                if self.history.span(now) < window.as_secs_f64() {
                    return None;
                }
                let (recent, recent_s) = self.history.growth(now, Duration::from_millis(*over_ms))?;
                let (whole, whole_s) = self.history.growth(now, window)?;
                let (rate, avg) = (recent[0] / recent_s, whole[0] / whole_s);
                let (low, high) = (avg * (1.0 - band), avg * (1.0 + band));
                let breach = avg >= *min_rate && (rate < low || rate > high);
                let deviation = if avg > 0.0 { rate / avg - 1.0 } else { 0.0 };
                Some(Judged {
                    breach,
                    value: rate,
                    threshold: *band,
                    message: format!(
                        "source `{source}` reads {rate:.1} events/s over the last {}, {:+.0}% from its average of {avg:.1}/s over {} (band ±{:.0}%)",
                        ms(recent_s * 1000.0),
                        deviation * 100.0,
                        ms(whole_s * 1000.0),
                        band * 100.0
                    ),
                })
            }
            AlertCondition::DeadLetterRate { kind, above_per_s, over_ms } => {
                let filter: Vec<(&str, &str)> = kind.iter().map(|k| ("kind", k.as_str())).collect();
                let count = f.sum("streamhost_dead_letters_total", &filter).unwrap_or(0.0);
                let over = Duration::from_millis(*over_ms);
                self.history.push(now, vec![count], over);
                let (grew, secs) = self.history.growth(now, over)?;
                let rate = grew[0] / secs;
                let what = kind.as_deref().map_or_else(|| "dead letters".to_string(), |k| format!("`{k}` dead letters"));
                Some(Judged { breach: rate > *above_per_s, value: rate, threshold: *above_per_s, message: format!("{rate:.2} {what}/s over the last {} (threshold {above_per_s}/s)", ms(secs * 1000.0)) })
            }
            AlertCondition::PluginFailureRate { plugin, above, over_ms, min_calls } => {
                let filter: Vec<(&str, &str)> = plugin.iter().map(|p| ("plugin", p.as_str())).collect();
                let calls = f.sum("streamhost_plugin_calls_total", &filter).unwrap_or(0.0);
                let failed = f.sum("streamhost_plugin_traps_total", &filter).unwrap_or(0.0) + f.sum("streamhost_plugin_timeouts_total", &filter).unwrap_or(0.0);
                let over = Duration::from_millis(*over_ms);
                self.history.push(now, vec![calls, failed], over);
                let (grew, secs) = self.history.growth(now, over)?;
                let (calls, failed) = (grew[0], grew[1]);
                let who = plugin.as_deref().map_or_else(|| "plugins".to_string(), |p| format!("plugin `{p}`"));
                if calls < *min_calls as f64 {
                    // Too few calls to judge a share; a stream gone quiet resolves it.
                    return Some(Judged { breach: false, value: 0.0, threshold: *above, message: format!("{who}: {calls} calls over the last {}", ms(secs * 1000.0)) });
                }
                let share = failed / calls;
                Some(Judged {
                    breach: share > *above,
                    value: share,
                    threshold: *above,
                    message: format!("{who}: {failed} of {calls} calls trapped or timed out over the last {} ({:.1}%, threshold {:.1}%)", ms(secs * 1000.0), share * 100.0, above * 100.0),
                })
            }
            AlertCondition::CheckpointFailures { over_ms } => {
                let failed = f.sum("streamhost_checkpoints_total", &[("outcome", "failed")]).unwrap_or(0.0);
                let over = Duration::from_millis(*over_ms);
                self.history.push(now, vec![failed], over);
                // A failure in the very first gathering counts too.
                let grew = match self.history.growth(now, over) {
                    Some((g, _)) => g[0],
                    None => failed,
                };
                Some(Judged {
                    breach: grew > 0.0,
                    value: grew,
                    threshold: 0.0,
                    message: if grew > 0.0 { format!("{grew} checkpoint(s) failed in the last {}", ms(*over_ms as f64)) } else { format!("no checkpoint failed in the last {}", ms(*over_ms as f64)) },
                })
            }
        }
    }
}

fn condition_type(c: &AlertCondition) -> &'static str {
    match c {
        AlertCondition::Delay { .. } => "delay",
        AlertCondition::BrokenStream { .. } => "broken-stream",
        AlertCondition::Fluctuation { .. } => "fluctuation",
        AlertCondition::DeadLetterRate { .. } => "dead-letter-rate",
        AlertCondition::PluginFailureRate { .. } => "plugin-failure-rate",
        AlertCondition::CheckpointFailures { .. } => "checkpoint-failures",
    }
}

/// What a rule watches, for the board before it ever fires.
fn describe(c: &AlertCondition) -> String {
    match c {
        AlertCondition::Delay { source, step, above_ms } => match (source, step) {
            (Some(s), _) => format!("source `{s}` event-time lag above {}", ms(*above_ms as f64)),
            (_, s) => format!("step `{}` watermark lag above {}", s.as_deref().unwrap_or(""), ms(*above_ms as f64)),
        },
        AlertCondition::BrokenStream { source, silent_ms } => format!("source `{source}` silent for {}", ms(*silent_ms as f64)),
        AlertCondition::Fluctuation { source, band, .. } => format!("source `{source}` rate outside ±{:.0}% of its average", band * 100.0),
        AlertCondition::DeadLetterRate { kind, above_per_s, .. } => format!("{} dead letters above {above_per_s}/s", kind.as_deref().unwrap_or("all")),
        AlertCondition::PluginFailureRate { plugin, above, .. } => format!("{} failure share above {:.1}%", plugin.as_deref().unwrap_or("plugin"), above * 100.0),
        AlertCondition::CheckpointFailures { .. } => "a checkpoint failed".into(),
    }
}

/// `ms` milliseconds, readably.
fn ms(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

#[cfg(test)]
mod tests;
