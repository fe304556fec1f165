//! `settings.alerts`: the rules, the webhook, and their checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::locate::JsonPath;
use crate::config::PipelineConfig;

/// Alert rules evaluated against the pipeline's metrics while it runs
/// (docs/alerts.md). Each rule fires once when its condition holds (for
/// `for_ms`) and resolves once when it stops holding, to the log, to the
/// admin API's `/api/alerts` and, if set, to a webhook.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    /// How often the rules are evaluated, in ms (default 1000).
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Where firing and resolved alerts are POSTed as JSON (besides the log).
    #[serde(default)]
    pub webhook: Option<WebhookSettings>,
    /// The rules.
    pub rules: Vec<AlertRule>,
}

fn default_interval_ms() -> u64 {
    1000
}

/// A webhook receiving each transition as one JSON POST.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// `http://HOST:PORT/PATH` (plain HTTP; put a relay in front of an HTTPS
    /// receiver).
    pub url: String,
    /// Time for one attempt, in ms (default 2000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts after the first when one fails (an error, a timeout or a
    /// status other than 2xx), with doubling backoff (default 5).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The first backoff, in ms (default 200).
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Notifications waiting for the receiver, at most (default 256); past
    /// it new ones are dropped, logged and counted, never waited for.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// When the pipeline stops, how long the notifications still queued may
    /// take to be delivered, in ms (default 5000).
    #[serde(default = "default_drain_ms")]
    pub drain_ms: u64,
}

fn default_timeout_ms() -> u64 {
    2000
}
fn default_retries() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    200
}
fn default_queue() -> usize {
    256
}
fn default_drain_ms() -> u64 {
    5000
}

/// One rule: a condition, and how long it must hold before the alert fires.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// The alert's name in notifications (default: `TYPE` and its subject,
    /// e.g. `delay:impressions`). Unique in the pipeline.
    #[serde(default)]
    pub name: Option<String>,
    /// The condition.
    pub when: AlertCondition,
    /// How long the condition must hold before the alert fires, in ms
    /// (default 0: at the first evaluation that sees it).
    #[serde(default)]
    pub for_ms: u64,
}

/// What an alert watches.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AlertCondition {
    /// The event-time lag of a source (now minus the event time of its last
    /// event) or of a step (now minus its output watermark, the largest over
    /// its workers) is above `above_ms`. Give `source` or `step`.
    Delay {
        #[serde(default)]
        source: Option<String>,
        #[serde(default)]
        step: Option<String>,
        above_ms: u64,
    },
    /// A source that had traffic read nothing for `silent_ms`.
    BrokenStream { source: String, silent_ms: u64 },
    /// A source's rate over the last `over_ms` (default 10 s) is outside
    /// `band` around its average over the last `window_ms` (default 5 min):
    /// below `avg * (1 - band)` or above `avg * (1 + band)`. Judged only once
    /// `window_ms` of history is there and while the average is at least
    /// `min_rate` events/s (default 1).
    Fluctuation {
        source: String,
        band: f64,
        #[serde(default = "default_window_ms")]
        window_ms: u64,
        #[serde(default = "default_over_ms")]
        over_ms: u64,
        #[serde(default = "default_min_rate")]
        min_rate: f64,
    },
    /// Dead letters per second over the last `over_ms` (default 10 s), of
    /// `kind` (e.g. `schema`, `plugin-trap`; default every kind), above
    /// `above_per_s`.
    DeadLetterRate {
        #[serde(default)]
        kind: Option<String>,
        above_per_s: f64,
        #[serde(default = "default_over_ms")]
        over_ms: u64,
    },
    /// The share of a plugin's calls (default: every plugin's) that trapped or
    /// timed out over the last `over_ms` (default 10 s) is above `above`
    /// (0-1), once there were at least `min_calls` calls in it (default 10).
    PluginFailureRate {
        #[serde(default)]
        plugin: Option<String>,
        above: f64,
        #[serde(default = "default_over_ms")]
        over_ms: u64,
        #[serde(default = "default_min_calls")]
        min_calls: u64,
    },
    /// A checkpoint failed in the last `over_ms` (default 60 s); resolves
    /// once none has for that long.
    CheckpointFailures {
        #[serde(default = "default_checkpoint_over_ms")]
        over_ms: u64,
    },
}

fn default_window_ms() -> u64 {
    300_000
}
fn default_over_ms() -> u64 {
    10_000
}
fn default_min_rate() -> f64 {
    1.0
}
fn default_min_calls() -> u64 {
    10
}
fn default_checkpoint_over_ms() -> u64 {
    60_000
}

impl AlertRule {
    /// The name notifications use.
    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        match &self.when {
            AlertCondition::Delay { source, step, .. } => format!("delay:{}", source.as_ref().or(step.as_ref()).map_or("", String::as_str)),
            AlertCondition::BrokenStream { source, .. } => format!("broken-stream:{source}"),
            AlertCondition::Fluctuation { source, .. } => format!("fluctuation:{source}"),
            AlertCondition::DeadLetterRate { kind, .. } => format!("dead-letter-rate:{}", kind.as_deref().unwrap_or("all")),
            AlertCondition::PluginFailureRate { plugin, .. } => format!("plugin-failure-rate:{}", plugin.as_deref().unwrap_or("all")),
            AlertCondition::CheckpointFailures { .. } => "checkpoint-failures".into(),
        }
    }
}

/// `settings.alerts` names what the pipeline has, with thresholds that can
/// be met, and a webhook URL this build can reach.
pub fn check_alerts(c: &PipelineConfig, err: &mut dyn FnMut(JsonPath, String)) {
    let Some(alerts) = &c.settings.alerts else { return };
    let at = JsonPath::root().key("settings").key("alerts");
    if alerts.interval_ms < 100 {
        err(at.key("interval_ms"), "must be at least 100".into());
    }
    if let Some(w) = &alerts.webhook {
        let at = at.key("webhook");
        match w.url.split_once("://") {
            Some(("http", rest)) if !rest.is_empty() && !rest.starts_with('/') => {}
            Some(("https", _)) => err(at.key("url"), "https is not supported: this build speaks plain HTTP to the webhook (put a relay in front of an HTTPS receiver)".into()),
            _ => err(at.key("url"), format!("`{}` is not an http://HOST[:PORT]/PATH URL", w.url)),
        }
        if w.timeout_ms == 0 {
            err(at.key("timeout_ms"), "must be at least 1".into());
        }
        if w.queue == 0 {
            err(at.key("queue"), "must be at least 1".into());
        }
    }
    if alerts.rules.is_empty() {
        err(at.key("rules"), "needs at least one rule".into());
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, rule) in alerts.rules.iter().enumerate() {
        let at = at.key("rules").index(i);
        let name = rule.display_name();
        if !names.insert(name.clone()) {
            err(at.key("name"), format!("another rule is named `{name}`: give each rule a unique `name`"));
        }
        let when = at.key("when");
        let source = |s: &str, err: &mut dyn FnMut(JsonPath, String)| {
            if !c.sources.contains_key(s) {
                err(when.key("source"), format!("no source `{s}` in this pipeline (sources: {})", list(c.sources.keys())));
            }
        };
        let window = |ms: u64, key: &str, err: &mut dyn FnMut(JsonPath, String)| {
            if ms < alerts.interval_ms {
                err(when.key(key), format!("must be at least `interval_ms` ({})", alerts.interval_ms));
            }
        };
        match &rule.when {
            AlertCondition::Delay { source: s, step, above_ms } => {
                match (s, step) {
                    (Some(s), None) => source(s, err),
                    (None, Some(step)) if !c.steps.contains_key(step) => {
                        err(when.key("step"), format!("no step `{step}` in this pipeline (steps: {})", list(c.steps.keys())))
                    }
                    (None, Some(_)) => {}
                    _ => err(when.clone(), "give exactly one of `source` and `step`".into()),
                }
                if *above_ms == 0 {
                    err(when.key("above_ms"), "must be at least 1".into());
                }
            }
            AlertCondition::BrokenStream { source: s, silent_ms } => {
                source(s, err);
                window(*silent_ms, "silent_ms", err);
            }
            AlertCondition::Fluctuation { source: s, band, window_ms, over_ms, min_rate } => {
                source(s, err);
                if !(band.is_finite() && *band > 0.0) {
                    err(when.key("band"), "must be above 0 (e.g. 0.5: within 50% of the average)".into());
                }
                window(*over_ms, "over_ms", err);
                if window_ms <= over_ms {
                    err(when.key("window_ms"), format!("must be longer than `over_ms` ({over_ms})"));
                }
                if !(min_rate.is_finite() && *min_rate >= 0.0) {
                    err(when.key("min_rate"), "must be 0 or more".into());
                }
            }
            AlertCondition::DeadLetterRate { kind, above_per_s, over_ms } => {
                if let Some(k) = kind {
                    if crate::dead_letter::DeadKind::from_name(k).is_none() {
                        let kinds: Vec<&str> = crate::dead_letter::DeadKind::ALL.iter().map(|k| k.as_str()).collect();
                        err(when.key("kind"), format!("`{k}` is not a dead-letter kind ({})", kinds.join(", ")));
                    }
                }
                if !(above_per_s.is_finite() && *above_per_s >= 0.0) {
                    err(when.key("above_per_s"), "must be 0 or more".into());
                }
                window(*over_ms, "over_ms", err);
            }
            AlertCondition::PluginFailureRate { plugin, above, over_ms, .. } => {
                if let Some(p) = plugin.as_ref().filter(|p| !c.plugins.contains_key(*p)) {
                    err(when.key("plugin"), format!("no plugin `{p}` in this pipeline (plugins: {})", list(c.plugins.keys())));
                }
                if !(0.0..1.0).contains(above) {
                    err(when.key("above"), "must be at least 0 and below 1".into());
                }
                window(*over_ms, "over_ms", err);
            }
            AlertCondition::CheckpointFailures { over_ms } => {
                if c.settings.checkpoint.is_none() {
                    err(when.clone(), "the pipeline takes no checkpoints (`settings.checkpoint`)".into());
                }
                window(*over_ms, "over_ms", err);
            }
        }
    }
}

fn list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
