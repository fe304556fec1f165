//! The web page of a running pipeline (docs/web-page.md), served by the admin
//! API: its DAG with each node's live rates, lag and backpressure (read by
//! the page from `/metrics`), the plugins with their swap history and a
//! rollback button, the recent dead letters, checkpoints and alerts.
//!
//! What the page reads besides `/metrics` and `/plugins` is here: the shape
//! of the DAG (`graph.rs`, computed once at build) and two bounded rings the
//! coordinator feeds (`recent.rs`: the last dead letters, the last
//! checkpoints). The page itself is plain HTML, JavaScript and SVG built into
//! the binary (`assets/`; no CDN, no framework); `routes.rs` serves it.

mod graph;
mod recent;
mod routes;

use std::sync::Arc;

pub use graph::{EdgeView, GraphView, NodeView};
pub use recent::{folder_bytes, CheckpointLog, CheckpointView, DeadLetterRing, DeadLetterView, CHECKPOINTS_KEPT, DEAD_LETTERS_KEPT};
pub use routes::{is_public, router};

/// What the page shows of one pipeline run, shared by the coordinator (which
/// feeds the rings) and the admin API (which serves them).
#[derive(Debug)]
pub struct LiveView {
    pub graph: GraphView,
    pub dead_letters: DeadLetterRing,
    pub checkpoints: CheckpointLog,
}

impl LiveView {
    pub fn new(graph: GraphView) -> Arc<Self> {
        Arc::new(LiveView { graph, dead_letters: DeadLetterRing::default(), checkpoints: CheckpointLog::default() })
    }
}
