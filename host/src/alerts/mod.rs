//! Alerts: rules in `settings.alerts` evaluated against the pipeline's own
//! metrics (the Prometheus registry `/metrics` serves), each firing and
//! resolving once, to the log, to `/api/alerts` and to a webhook.
//!
//! One `alerts` thread ticks every `interval_ms`: it gathers the registry,
//! keeps a short history of the figures the rules read (`figures.rs`), and
//! moves each rule's state (`rules.rs`). Notifications go to the `webhook`
//! thread through a bounded queue (`webhook.rs`): a slow or dead receiver
//! never holds the evaluation, let alone the pipeline, which never waits on
//! either thread.

mod config;
mod figures;
mod rules;
mod webhook;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use config::{check_alerts, AlertCondition, AlertRule, AlertSettings, WebhookSettings};
pub use figures::Figures;
pub use rules::{Transition, TransitionState};
use rules::RuleState;
use serde::Serialize;

/// What `/api/alerts` shows: every rule, with its state.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AlertBoard {
    pub alerts: Vec<AlertStatus>,
}

/// One rule as the board shows it.
#[derive(Clone, Debug, Serialize)]
pub struct AlertStatus {
    pub rule: String,
    /// `ok` (never fired or resolved long enough), `firing` or `resolved`.
    pub state: &'static str,
    /// Unix ms of the last transition (absent: never fired).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// The figure of the last transition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    pub message: String,
    /// How many times it fired in this run.
    pub fired: u64,
}

/// The board, shared by the alerts thread (writer) and the admin API (reader).
pub type SharedBoard = Arc<Mutex<AlertBoard>>;

/// A running evaluation: its thread, the webhook's, and the board.
pub struct AlertsHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub board: SharedBoard,
}

/// Dropping it stops the evaluation (one last tick first, so a figure of the
/// run's end is seen) and lets the webhook deliver what is queued, for at most
/// `webhook.drain_ms`.
impl Drop for AlertsHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts evaluating `settings` against `registry` for pipeline `pipeline`.
pub fn start(settings: &AlertSettings, pipeline: &str, registry: prometheus::Registry) -> std::io::Result<AlertsHandle> {
    let board: SharedBoard = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut evaluator = Evaluator::new(settings, pipeline);
    board.lock().unwrap_or_else(|e| e.into_inner()).alerts = evaluator.statuses();
    let sender = settings.webhook.as_ref().map(|w| webhook::Webhook::start(w.clone())).transpose()?;
    let interval = Duration::from_millis(settings.interval_ms);
    let (stop2, board2) = (stop.clone(), board.clone());
    let thread = std::thread::Builder::new().name("alerts".into()).spawn(move || {
        let mut next = Instant::now();
        loop {
            let last = stop2.load(Ordering::Relaxed);
            let figures = Figures::gather(&registry.gather());
            for t in evaluator.tick(Instant::now(), crate::source::now_ms().max(0) as u64, &figures) {
                t.log();
                if let Some(s) = &sender {
                    s.send(&t);
                }
            }
            board2.lock().unwrap_or_else(|e| e.into_inner()).alerts = evaluator.statuses();
            if last {
                break;
            }
            next += interval;
            // Wake early to stop, in steps short enough not to delay the run's end.
            while Instant::now() < next && !stop2.load(Ordering::Relaxed) {
                std::thread::sleep((next - Instant::now()).min(Duration::from_millis(50)));
            }
        }
        if let Some(s) = sender {
            s.close();
        }
    })?;
    Ok(AlertsHandle { stop, thread: Some(thread), board })
}

/// Every rule's state, moved by ticks.
pub struct Evaluator {
    pipeline: String,
    rules: Vec<RuleState>,
}

impl Evaluator {
    pub fn new(settings: &AlertSettings, pipeline: &str) -> Self {
        let rules = settings.rules.iter().enumerate().map(|(i, r)| RuleState::new(r, i)).collect();
        Evaluator { pipeline: pipeline.into(), rules }
    }

    /// One evaluation at `now` (`unix_ms` on the wall clock) over `figures`:
    /// the transitions it makes.
    pub fn tick(&mut self, now: Instant, unix_ms: u64, figures: &Figures) -> Vec<Transition> {
        let pipeline = &self.pipeline;
        self.rules.iter_mut().filter_map(|r| r.tick(now, unix_ms, figures, pipeline)).collect()
    }

    pub fn statuses(&self) -> Vec<AlertStatus> {
        self.rules.iter().map(RuleState::status).collect()
    }
}
