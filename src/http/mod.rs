//! The HTTP endpoint (`--http`): metrics, health, the status API and page.
//!
//! Takes the metrics, the view handle (for readiness) and a channel to
//! the intake thread (which owns the registry and answers status
//! requests); produces `GET /metrics` (Prometheus text), `/health` (200
//! while the process runs), `/ready` (200 once the zone fragments are
//! loaded, 503 before), `/v1/services` and `/v1/services/{name}` (JSON,
//! read-only) and `/` (a status page that refreshes itself, no external
//! assets). It runs on the general Tokio runtime, never on the UDP
//! answering threads, and changes nothing.

pub mod client;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::intake::StatusRequest;
use crate::metrics::Metrics;
use crate::registry::status::Status;
use crate::view::publish::ViewHandle;

/// How long a status request may wait for the intake thread.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// What the handlers share.
#[derive(Clone)]
struct Endpoint {
    metrics: Arc<Metrics>,
    views: ViewHandle,
    status: mpsc::Sender<StatusRequest>,
}

/// Serves the endpoint on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    views: ViewHandle,
    status: mpsc::Sender<StatusRequest>,
    shutdown: CancellationToken,
) {
    let endpoint = Endpoint {
        metrics,
        views,
        status,
    };
    let app = Router::new()
        .route("/", get(page))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/v1/services", get(services))
        .route("/v1/services/{name}", get(service))
        .with_state(endpoint);
    let stopping = shutdown.clone();
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stopping.cancelled().await })
        .await
    {
        tracing::warn!(%error, "the HTTP endpoint stopped");
    }
}

async fn ready(State(endpoint): State<Endpoint>) -> Response {
    if endpoint.views.load().statics.is_loading() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "loading the zone fragments\n",
        )
            .into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn metrics_text(State(endpoint): State<Endpoint>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        endpoint.metrics.encode(),
    )
        .into_response()
}

/// The registry's status, from the intake thread.
async fn status(endpoint: &Endpoint) -> Result<Arc<Status>, Response> {
    let (reply, answer) = oneshot::channel();
    let unavailable = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the registry did not answer\n",
        )
            .into_response()
    };
    endpoint.status.try_send(reply).map_err(|_| unavailable())?;
    match tokio::time::timeout(STATUS_TIMEOUT, answer).await {
        Ok(Ok(status)) => Ok(status),
        _ => Err(unavailable()),
    }
}

fn json(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn services(State(endpoint): State<Endpoint>) -> Response {
    match status(&endpoint).await {
        Ok(status) => json(status.as_ref()),
        Err(response) => response,
    }
}

async fn service(State(endpoint): State<Endpoint>, Path(name): Path<String>) -> Response {
    match status(&endpoint).await {
        Ok(status) => match status.service(&name) {
            Some(service) => json(service),
            None => (StatusCode::NOT_FOUND, format!("no live service {name}\n")).into_response(),
        },
        Err(response) => response,
    }
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// The status page: plain HTML and a script that reads `/v1/services`
/// every two seconds. Nothing is loaded from elsewhere.
const PAGE: &str = include_str!("status.html");
