//! The page's routes on the admin API: the page and its assets (built into
//! the binary), `GET /api/graph`, `GET /api/dead-letters?limit=N` and
//! `GET /api/checkpoints`. The page also reads `/metrics`, `/plugins`,
//! `/api/alerts` and posts `/plugins/{name}/rollback`, served elsewhere.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{CheckpointView, DeadLetterView, LiveView, DEAD_LETTERS_KEPT};
use crate::swap::api::ErrorBody;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// The routes of the page, with their state applied (merged into the admin
/// API's router, whatever its state).
pub fn router<S: Clone + Send + Sync + 'static>(view: Arc<LiveView>) -> Router<S> {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/ui/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/ui/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }))
        .route("/api/graph", get(graph))
        .route("/api/dead-letters", get(dead_letters))
        .route("/api/checkpoints", get(checkpoints))
        .with_state(view)
}

/// The page and its assets hold no data (they read it through the API, with
/// the token the user gives the page): a browser may load them without one.
pub fn is_public(path: &str) -> bool {
    path == "/" || path.starts_with("/ui/")
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn graph(State(view): State<Arc<LiveView>>) -> Response {
    Json(&view.graph).into_response()
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

/// `GET /api/dead-letters`.
#[derive(Serialize)]
struct DeadLetters {
    /// Dead letters written since the pipeline started.
    total: u64,
    /// How many the host keeps for this endpoint.
    kept: usize,
    /// Newest first.
    dead_letters: Vec<DeadLetterView>,
}

async fn dead_letters(State(view): State<Arc<LiveView>>, query: Result<Query<Limit>, QueryRejection>) -> Response {
    let limit = match query {
        Ok(Query(Limit { limit })) => limit.unwrap_or(50),
        Err(e) => {
            let message = format!("bad query (expected `limit=N`; the host keeps the last {DEAD_LETTERS_KEPT}): {e}");
            return (StatusCode::BAD_REQUEST, Json(ErrorBody { error: message })).into_response();
        }
    };
    let body = DeadLetters { total: view.dead_letters.total(), kept: DEAD_LETTERS_KEPT, dead_letters: view.dead_letters.newest(limit) };
    Json(body).into_response()
}

/// `GET /api/checkpoints`.
#[derive(Serialize)]
struct Checkpoints {
    /// Newest first.
    checkpoints: Vec<CheckpointView>,
}

async fn checkpoints(State(view): State<Arc<LiveView>>) -> Response {
    Json(Checkpoints { checkpoints: view.checkpoints.newest() }).into_response()
}
