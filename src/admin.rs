//! The admin listener: `/metrics` (Prometheus text format), `/healthz` (the process is alive),
//! `/readyz` (accepting sessions; 503 while draining).
//!
//! Meant for loopback or a cluster-internal address only; it exposes no session data.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::control::Control;

/// The admin router.
pub fn router(control: Arc<Control>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(control)
}

async fn metrics(State(control): State<Arc<Control>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], control.metrics().render()).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(control): State<Arc<Control>>) -> Response {
    if control.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}
