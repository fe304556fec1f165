//! The admin HTTP API (axum), on a thread of its own with a current-thread
//! tokio runtime. Handlers that compile run on tokio's blocking pool, so a
//! swap never holds up the pipeline thread nor `GET /plugins`.
//!
//! Routes (docs/hot-swap.md): `GET /plugins`, `GET /plugins/{name}`,
//! `POST /plugins/{name}/swap[?canary=true&config=<JSON>]` with the
//! component as the body, `POST /plugins/{name}/rollback`; `GET /metrics`
//! (docs/metrics.md), Prometheus's text format; `GET /api/alerts`
//! (docs/alerts.md); `POST /sample` (docs/replay-tests.md: the next events of
//! a source or a step, for `streamhost sample`); and the web page with its own
//! routes (`crate::web`). Every error is `{"error": "..."}`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::api::ErrorBody;
use super::{SwapError, SwapOptions, Swapper};

/// The largest component accepted (Python components are ~20 MiB).
const MAX_UPLOAD: usize = 512 << 20;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin API: cannot listen on {bind}: {source}")]
    Bind { bind: SocketAddr, source: std::io::Error },
    #[error("admin API: {0}")]
    Start(String),
}

/// The running admin API. Dropping it stops the server and removes the
/// address file.
pub struct AdminServer {
    addr: SocketAddr,
    addr_file: Option<PathBuf>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl AdminServer {
    /// Binds `bind` now (so a busy port is an error at start), serves on a
    /// new thread, prints the bound address to stderr and writes it to
    /// `addr_file`.
    /// `views`: what it serves besides the plugins (metrics, alerts, the page).
    pub fn start(
        bind: SocketAddr,
        token: Option<String>,
        addr_file: Option<PathBuf>,
        swapper: Arc<Swapper>,
        views: AdminViews,
    ) -> Result<Self, AdminError> {
        let listener = std::net::TcpListener::bind(bind).map_err(|source| AdminError::Bind { bind, source })?;
        let addr = listener.local_addr().map_err(|source| AdminError::Bind { bind, source })?;
        listener.set_nonblocking(true).map_err(|e| AdminError::Start(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| AdminError::Start(format!("tokio runtime: {e}")))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(swapper, token, views);
        std::thread::Builder::new()
            .name("admin-api".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => return tracing::error!(error = %e, "admin API: cannot listen"),
                    };
                    let stop = async {
                        let _ = rx.await;
                    };
                    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
                        tracing::error!(error = %e, "admin API stopped");
                    }
                })
            })
            .map_err(|e| AdminError::Start(e.to_string()))?;
        eprintln!("streamhost: admin API on http://{addr}");
        if let Some(file) = &addr_file {
            let written = file.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| write_atomically(file, &format!("{addr}\n")));
            if let Err(e) = written {
                tracing::warn!(file = %file.display(), error = %e, "cannot write the admin API's address");
            }
        }
        Ok(AdminServer { addr, addr_file, shutdown: Some(tx) })
    }

    /// The address actually bound (the port is the real one with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The file the address was written to.
    pub fn addr_file(&self) -> Option<&std::path::Path> {
        self.addr_file.as_deref()
    }
}

/// Removes the address file `file` if it still holds `addr` (another run
/// may have taken the file over).
pub fn remove_addr_file(file: &std::path::Path, addr: SocketAddr) {
    if std::fs::read_to_string(file).is_ok_and(|s| s.trim() == addr.to_string()) {
        let _ = std::fs::remove_file(file);
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(file) = &self.addr_file {
            remove_addr_file(file, self.addr);
        }
    }
}

fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("addr.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// What the admin API serves besides the plugins.
pub struct AdminViews {
    /// What `GET /metrics` serves (`None`: metrics are off).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The alert rules' board, `GET /api/alerts` (`None`: no rules).
    pub alerts: Option<crate::alerts::SharedBoard>,
    /// The web page's data.
    pub live: Arc<crate::web::LiveView>,
    /// The tap points `POST /sample` copies from.
    pub taps: Arc<crate::replay::Taps>,
}

fn router(swapper: Arc<Swapper>, token: Option<String>, views: AdminViews) -> Router {
    let AdminViews { metrics, alerts, live, taps } = views;
    // Every rule and its state (docs/alerts.md); none without `settings.alerts`.
    let alerts = get(move || {
        let board = alerts.as_ref().map(|b| b.lock().unwrap_or_else(|e| e.into_inner()).clone()).unwrap_or_default();
        async move { axum::Json(board).into_response() }
    });
    let metrics = get(move || {
        let metrics = metrics.clone();
        async move {
            match metrics {
                Some(m) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], m.render()).into_response(),
                None => error(StatusCode::NOT_FOUND, "metrics are off (settings.metrics.enabled is false)".into()),
            }
        }
    });
    Router::new()
        .merge(crate::web::router(live))
        .route("/metrics", metrics)
        .route("/api/alerts", alerts)
        .route("/plugins", get(list))
        .route("/plugins/{name}", get(one))
        .route("/plugins/{name}/swap", post(swap))
        .route("/plugins/{name}/rollback", post(rollback))
        .merge(sample_routes(taps))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint (see docs/hot-swap.md)".into()) })
        .layer(DefaultBodyLimit::max(MAX_UPLOAD))
        .layer(middleware::from_fn_with_state(Arc::new(token), auth))
        .with_state(swapper)
}

/// With a token configured, every request must carry it (but the web page's
/// assets, which hold no data).
async fn auth(State(token): State<Arc<Option<String>>>, req: Request, next: Next) -> Response {
    if let Some(expected) = token.as_deref().filter(|_| !crate::web::is_public(req.uri().path())) {
        let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same(g.trim().as_bytes(), expected.as_bytes())) {
            return error(StatusCode::UNAUTHORIZED, "missing or wrong token: send `Authorization: Bearer <token>`".into());
        }
    }
    next.run(req).await
}

/// Compares without stopping at the first difference (no timing hint).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn list(State(swapper): State<Arc<Swapper>>) -> Response {
    Json(swapper.list()).into_response()
}

async fn one(State(swapper): State<Arc<Swapper>>, name: Result<Path<String>, PathRejection>) -> Response {
    let Ok(Path(name)) = name else { return error(StatusCode::BAD_REQUEST, "bad plugin name".into()) };
    match swapper.view(&name) {
        Ok(view) => Json(view).into_response(),
        Err(e) => swap_error(e),
    }
}

#[derive(Deserialize)]
struct SwapQuery {
    /// The new version's `init` config, as JSON text.
    config: Option<String>,
    #[serde(default)]
    canary: bool,
}

async fn swap(
    State(swapper): State<Arc<Swapper>>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<SwapQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(Path(name)) = name else { return error(StatusCode::BAD_REQUEST, "bad plugin name".into()) };
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad query (expected `canary=true|false` and `config=<JSON>`): {e}")),
    };
    let body = match body {
        Ok(b) if b.is_empty() => return error(StatusCode::BAD_REQUEST, "empty body: send the component's bytes".into()),
        Ok(b) => b,
        Err(e) => return error(e.status(), format!("cannot read the component: {e}")),
    };
    let config = match query.config.as_deref().map(serde_json::from_str::<serde_json::Value>).transpose() {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("`config` is not JSON: {e}")),
    };
    let opts = SwapOptions { config, canary: query.canary };
    match tokio::task::spawn_blocking(move || swapper.swap(&name, &body, opts)).await {
        Ok(Ok(done)) => Json(done).into_response(),
        Ok(Err(e)) => swap_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the swap failed: {e}")),
    }
}

async fn rollback(State(swapper): State<Arc<Swapper>>, name: Result<Path<String>, PathRejection>) -> Response {
    let Ok(Path(name)) = name else { return error(StatusCode::BAD_REQUEST, "bad plugin name".into()) };
    match tokio::task::spawn_blocking(move || swapper.rollback(&name)).await {
        Ok(Ok(done)) => Json(done).into_response(),
        Ok(Err(e)) => swap_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the rollback failed: {e}")),
    }
}

/// `POST /sample`: a body of [`crate::replay::SampleRequest`]; answers when
/// the events are taken or the request's timeout passed.
fn sample_routes<S: Clone + Send + Sync + 'static>(taps: Arc<crate::replay::Taps>) -> Router<S> {
    Router::new().route("/sample", post(sample)).with_state(taps)
}

async fn sample(State(taps): State<Arc<crate::replay::Taps>>, body: Result<Json<crate::replay::SampleRequest>, axum::extract::rejection::JsonRejection>) -> Response {
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("expected {{\"node\": NAME or null, \"events\": N, \"timeout_ms\": T}}: {e}")),
    };
    match tokio::task::spawn_blocking(move || taps.sample(&req)).await {
        Ok(Ok(done)) => Json(done).into_response(),
        Ok(Err(e)) => error(StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST), e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the sample failed: {e}")),
    }
}

fn swap_error(e: SwapError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, e.to_string())
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(ErrorBody { error: message })).into_response()
}
