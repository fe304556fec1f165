//! Rules on scripted figures: each fires once and resolves once, with the
//! figure that moved it.

use std::time::{Duration, Instant};

use prometheus::{CounterVec, GaugeVec, Opts, Registry};

use super::super::{AlertSettings, Evaluator, Figures, Transition, TransitionState};

/// A registry with the series the rules read, set by the script.
struct Script {
    registry: Registry,
    events: CounterVec,
    lag: GaugeVec,
    dead: CounterVec,
    calls: CounterVec,
    traps: CounterVec,
    checkpoints: CounterVec,
    start: Instant,
}

impl Script {
    fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, labels: &[&str]| {
            let c = CounterVec::new(Opts::new(name, "test"), labels).unwrap();
            registry.register(Box::new(c.clone())).unwrap();
            c
        };
        let events = counter("streamhost_source_events_total", &["pipeline", "source", "partition"]);
        let dead = counter("streamhost_dead_letters_total", &["pipeline", "kind"]);
        let calls = counter("streamhost_plugin_calls_total", &["pipeline", "plugin", "version", "step"]);
        let traps = counter("streamhost_plugin_traps_total", &["pipeline", "plugin", "version", "step"]);
        let checkpoints = counter("streamhost_checkpoints_total", &["pipeline", "outcome"]);
        let lag = GaugeVec::new(Opts::new("streamhost_source_event_time_lag_seconds", "test"), &["pipeline", "source"]).unwrap();
        registry.register(Box::new(lag.clone())).unwrap();
        Script { registry, events, lag, dead, calls, traps, checkpoints, start: Instant::now() }
    }

    fn figures(&self) -> Figures {
        Figures::gather(&self.registry.gather())
    }
}

fn evaluator(rules: &str) -> Evaluator {
    let settings: AlertSettings = serde_json::from_str(&format!(r#"{{"rules": {rules}}}"#)).unwrap();
    Evaluator::new(&settings, "p")
}

/// Ticks once a second from `from` to `to` seconds, `script` setting the
/// figures before each; the transitions with the second they happened at.
fn run(e: &mut Evaluator, s: &Script, from: u64, to: u64, mut script: impl FnMut(u64, &Script)) -> Vec<(u64, Transition)> {
    let mut out = Vec::new();
    for sec in from..to {
        script(sec, s);
        let now = s.start + Duration::from_secs(sec);
        out.extend(e.tick(now, 1_700_000_000_000 + sec * 1000, &s.figures()).into_iter().map(|t| (sec, t)));
    }
    out
}

fn states(ts: &[(u64, Transition)]) -> Vec<(u64, TransitionState)> {
    ts.iter().map(|(s, t)| (*s, t.state)).collect()
}

#[test]
fn a_broken_stream_fires_once_after_its_silence_and_resolves_once_when_events_come_back() {
    let s = Script::new();
    let mut e = evaluator(r#"[{"when": {"type": "broken-stream", "source": "clicks", "silent_ms": 5000}}]"#);
    // Before any event: no alert however long the silence.
    let before = run(&mut e, &s, 0, 10, |_, _| {});
    assert!(before.is_empty(), "{before:?}");
    // 100 events/s until second 20 on two partitions, then nothing until 40, then again.
    let ts = run(&mut e, &s, 10, 50, |sec, s| {
        if !(20..40).contains(&sec) {
            s.events.with_label_values(&["p", "clicks", "0"]).inc_by(60.0);
            s.events.with_label_values(&["p", "clicks", "1"]).inc_by(40.0);
        }
    });
    // The last growth was seen at second 19: silent for 5 s at 24.
    assert_eq!(states(&ts), [(24, TransitionState::Firing), (40, TransitionState::Resolved)], "{ts:?}");
    let fired = &ts[0].1;
    assert_eq!(fired.rule, "broken-stream:clicks");
    assert_eq!(fired.value, 5000.0);
    assert!(fired.message.contains("read nothing for 5000 ms after 1000 events"), "{}", fired.message);
    assert_eq!(e.statuses()[0].fired, 1);
    assert_eq!(e.statuses()[0].state, "resolved");
}

#[test]
fn a_delay_fires_after_for_ms_with_its_lag_and_resolves() {
    let s = Script::new();
    let mut e = evaluator(r#"[{"name": "late-impressions", "when": {"type": "delay", "source": "imp", "above_ms": 30000}, "for_ms": 3000}]"#);
    let ts = run(&mut e, &s, 0, 30, |sec, s| {
        s.events.with_label_values(&["p", "imp", ""]).inc();
        let lag = match sec {
            5..=6 => 45.0,   // a blip shorter than for_ms: nothing
            10..=19 => 60.0, // held: fires at 13
            _ => 2.0,
        };
        s.lag.with_label_values(&["p", "imp"]).set(lag);
    });
    assert_eq!(states(&ts), [(13, TransitionState::Firing), (20, TransitionState::Resolved)], "{ts:?}");
    assert_eq!(ts[0].1.rule, "late-impressions");
    assert_eq!((ts[0].1.value, ts[0].1.threshold), (60_000.0, 30_000.0));
    assert_eq!(ts[1].1.value, 2000.0);
}

#[test]
fn a_fluctuation_is_judged_against_the_recent_average_once_the_window_is_there() {
    let s = Script::new();
    let mut e = evaluator(r#"[{"when": {"type": "fluctuation", "source": "imp", "band": 0.5, "window_ms": 60000, "over_ms": 5000}}]"#);
    // 100/s, a drop to 20/s from 100 to 110, then 100/s again.
    let ts = run(&mut e, &s, 0, 160, |sec, s| {
        let rate = if (100..110).contains(&sec) { 20.0 } else { 100.0 };
        s.events.with_label_values(&["p", "imp", ""]).inc_by(rate);
    });
    let st = states(&ts);
    assert_eq!(st.len(), 2, "{ts:?}");
    assert_eq!(st[0].1, TransitionState::Firing);
    assert!((101..=104).contains(&st[0].0), "fires within the drop once the last 5 s fall below 50/s: {ts:?}");
    assert_eq!(st[1].1, TransitionState::Resolved);
    assert!((110..=116).contains(&st[1].0), "{ts:?}");
    assert!(ts[0].1.value < 50.0, "{:?}", ts[0].1);
    // A steady rate never fires, and nothing is judged before a window of history.
    let s = Script::new();
    let mut e = evaluator(r#"[{"when": {"type": "fluctuation", "source": "imp", "band": 0.5, "window_ms": 60000, "over_ms": 5000}}]"#);
    let ts = run(&mut e, &s, 0, 100, |sec, s| s.events.with_label_values(&["p", "imp", ""]).inc_by(if sec < 30 { 10.0 } else { 12.0 }));
    assert!(ts.is_empty(), "{ts:?}");
}

#[test]
fn a_dead_letter_rate_counts_only_its_kind() {
    let s = Script::new();
    let mut e = evaluator(r#"[{"when": {"type": "dead-letter-rate", "kind": "schema", "above_per_s": 5, "over_ms": 5000}}]"#);
    let ts = run(&mut e, &s, 0, 40, |sec, s| {
        // Many late events all along (another kind), schema errors at 10/s from 10 to 20.
        s.dead.with_label_values(&["p", "late"]).inc_by(100.0);
        if (10..20).contains(&sec) {
            s.dead.with_label_values(&["p", "schema"]).inc_by(10.0);
        }
    });
    let st = states(&ts);
    assert_eq!(st.iter().map(|s| s.1).collect::<Vec<_>>(), [TransitionState::Firing, TransitionState::Resolved], "{ts:?}");
    assert!((10..=13).contains(&st[0].0) && (20..=25).contains(&st[1].0), "{ts:?}");
}

#[test]
fn a_plugin_failure_rate_needs_enough_calls() {
    let s = Script::new();
    let mut e = evaluator(r#"[{"when": {"type": "plugin-failure-rate", "plugin": "cleaner", "above": 0.1, "over_ms": 5000, "min_calls": 50}}]"#);
    let ts = run(&mut e, &s, 0, 60, |sec, s| {
        let calls = s.calls.with_label_values(&["p", "cleaner", "abc", "clean"]);
        let traps = s.traps.with_label_values(&["p", "cleaner", "abc", "clean"]);
        match sec {
            // Few calls, all trapping: not enough to judge.
            0..10 => {
                calls.inc_by(2.0);
                traps.inc_by(2.0);
            }
            // 100 calls/s, 30% trapping.
            10..30 => {
                calls.inc_by(100.0);
                traps.inc_by(30.0);
            }
            _ => calls.inc_by(100.0),
        }
        // Another plugin always failing is not this rule's.
        s.traps.with_label_values(&["p", "other", "x", "o"]).inc_by(100.0);
    });
    let st = states(&ts);
    assert_eq!(st.iter().map(|s| s.1).collect::<Vec<_>>(), [TransitionState::Firing, TransitionState::Resolved], "{ts:?}");
    assert!(st[0].0 >= 10 && st[0].0 <= 12, "{ts:?}");
    assert!(ts[0].1.value > 0.1, "{:?}", ts[0].1);
}

#[test]
fn a_checkpoint_failure_fires_and_resolves_after_a_quiet_window() {
    let s = Script::new();
    s.checkpoints.with_label_values(&["p", "ok"]).inc();
    let mut e = evaluator(r#"[{"when": {"type": "checkpoint-failures", "over_ms": 10000}}]"#);
    let ts = run(&mut e, &s, 0, 40, |sec, s| {
        if sec == 5 {
            s.checkpoints.with_label_values(&["p", "failed"]).inc();
        }
    });
    assert_eq!(states(&ts), [(5, TransitionState::Firing), (15, TransitionState::Resolved)], "{ts:?}");
}

#[test]
fn the_board_lists_every_rule_before_it_fires() {
    let e = evaluator(r#"[{"when": {"type": "broken-stream", "source": "a", "silent_ms": 1000}}, {"name": "x", "when": {"type": "checkpoint-failures"}}]"#);
    let st = e.statuses();
    assert_eq!(st.iter().map(|s| (s.rule.as_str(), s.state)).collect::<Vec<_>>(), [("broken-stream:a", "ok"), ("x", "ok")]);
    assert!(st[0].message.contains("silent"), "{}", st[0].message);
}

#[test]
fn bad_rules_are_refused_with_their_json_path_and_line() {
    let text = r#"{
  "sources": {"in": {"type": "file", "path": "in.jsonl"}},
  "sinks": {"out": {"type": "stdout", "inputs": ["in"]}},
  "settings": {"alerts": {
    "webhook": {"url": "https://hooks.example/x"},
    "rules": [
      {"when": {"type": "broken-stream", "source": "nope", "silent_ms": 5000}},
      {"when": {"type": "delay", "source": "in", "step": "in", "above_ms": 1}},
      {"when": {"type": "dead-letter-rate", "kind": "bogus", "above_per_s": 1}},
      {"when": {"type": "fluctuation", "source": "in", "band": 0, "window_ms": 5000, "over_ms": 10000}},
      {"when": {"type": "checkpoint-failures"}},
      {"when": {"type": "broken-stream", "source": "in", "silent_ms": 5000}},
      {"when": {"type": "broken-stream", "source": "in", "silent_ms": 9000}}
    ]
  }}
}"#;
    let errors = crate::config::parse_pipeline(text).expect_err("refused").errors;
    let found: Vec<(&str, usize)> = errors.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        found,
        [
            ("$.settings.alerts.webhook.url", 5),
            ("$.settings.alerts.rules[0].when.source", 7),
            ("$.settings.alerts.rules[1].when", 8),
            ("$.settings.alerts.rules[2].when.kind", 9),
            ("$.settings.alerts.rules[3].when.band", 10),
            ("$.settings.alerts.rules[3].when.window_ms", 10),
            ("$.settings.alerts.rules[4].when", 11),
            ("$.settings.alerts.rules[6].name", 13),
        ],
        "{errors:#?}"
    );
    assert!(errors[0].message.contains("https is not supported"), "{}", errors[0].message);
    assert!(errors[1].message.contains("no source `nope`") && errors[1].message.contains("sources: in"), "{}", errors[1].message);
    assert!(errors[3].message.contains("plugin-trap"), "{}", errors[3].message);
    // An unknown field inside a condition is refused where it is.
    let text = r#"{"sources": {"in": {"type": "file", "path": "in.jsonl"}}, "sinks": {"out": {"type": "stdout", "inputs": ["in"]}},
  "settings": {"alerts": {"rules": [{"when": {"type": "broken-stream", "source": "in", "silent_ms": 5000, "silence": 1}}]}}}"#;
    let errors = crate::config::parse_pipeline(text).expect_err("refused").errors;
    assert!(errors.iter().any(|e| e.message.contains("silence") && e.line == 2), "{errors:#?}");
}
