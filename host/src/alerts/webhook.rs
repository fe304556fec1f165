//! The webhook: each transition POSTed as JSON from a thread of its own,
//! retried with doubling backoff; the queue to it is bounded and never waited
//! on (a full queue drops the newest notification, logged).

use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use super::config::WebhookSettings;
use super::rules::Transition;

pub(super) struct Webhook {
    queue: Sender<Vec<u8>>,
    thread: std::thread::JoinHandle<()>,
    /// Until when the queue may still be delivered once closed.
    drain: Duration,
    closing: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Webhook {
    pub(super) fn start(settings: WebhookSettings) -> std::io::Result<Self> {
        let (queue, rx) = bounded(settings.queue);
        let closing = std::sync::Arc::new(std::sync::Mutex::new(None));
        let drain = Duration::from_millis(settings.drain_ms);
        let closing2 = closing.clone();
        let thread = std::thread::Builder::new().name("alerts-webhook".into()).spawn(move || deliver(&settings, &rx, &closing2))?;
        Ok(Webhook { queue, thread, drain, closing })
    }

    /// Queues `t`; never blocks.
    pub(super) fn send(&self, t: &Transition) {
        let body = match serde_json::to_vec(t) {
            Ok(b) => b,
            Err(e) => return tracing::error!(alert = %t.rule, error = %e, "cannot encode the alert for the webhook"),
        };
        match self.queue.try_send(body) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => tracing::error!(alert = %t.rule, state = ?t.state, "the alert webhook's queue is full (the receiver is slow or down): this notification is dropped"),
            Err(TrySendError::Disconnected(_)) => tracing::error!(alert = %t.rule, "the alert webhook's thread is gone: this notification is dropped"),
        }
    }

    /// Delivers what is queued, for at most the drain time, and stops.
    pub(super) fn close(self) {
        *self.closing.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + self.drain);
        drop(self.queue);
        let _ = self.thread.join();
    }
}

fn deliver(settings: &WebhookSettings, rx: &Receiver<Vec<u8>>, closing: &std::sync::Mutex<Option<Instant>>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_millis(settings.timeout_ms)))
        .build()
        .into();
    let deadline = || *closing.lock().unwrap_or_else(|e| e.into_inner());
    let past_deadline = || deadline().is_some_and(|d| Instant::now() >= d);
    while let Ok(body) = rx.recv() {
        if past_deadline() {
            tracing::error!(left = rx.len() + 1, "the pipeline stopped and the alert webhook's drain time is over: undelivered notifications dropped");
            return;
        }
        let mut backoff = Duration::from_millis(settings.backoff_ms);
        for attempt in 0..=settings.retries {
            let outcome = agent.post(&settings.url).header("content-type", "application/json").send(&body[..]);
            let failure = match outcome {
                Ok(r) if r.status().is_success() => None,
                Ok(r) => Some(format!("status {}", r.status())),
                Err(e) => Some(e.to_string()),
            };
            let Some(failure) = failure else { break };
            if attempt == settings.retries || past_deadline() {
                tracing::error!(url = %settings.url, attempts = attempt + 1, error = %failure, "the alert webhook did not take a notification: dropped");
                break;
            }
            tracing::warn!(url = %settings.url, attempt = attempt + 1, error = %failure, "the alert webhook failed; retrying in {backoff:?}");
            // Sleep the backoff, but not past the drain deadline.
            let wake = Instant::now() + backoff;
            let wake = deadline().map_or(wake, |d| wake.min(d));
            std::thread::sleep(wake.saturating_duration_since(Instant::now()));
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}
