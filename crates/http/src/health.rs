//! Liveness, readiness and metrics.

use crate::{HttpState, MetricsRender, St};
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub(crate) fn routes() -> Router<HttpState> {
    Router::new()
        .route("/healthz", get(get_healthz))
        .route("/readyz", get(get_readyz))
        .route("/metrics", get(get_metrics))
}

/// The process is up.
async fn get_healthz() -> &'static str {
    "ok\n"
}

/// The process can serve: the store answers.
async fn get_readyz(state: St) -> Response {
    match state.engine.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

/// `/metrics` on the HTTP listener: only for a request carrying the metrics token (the
/// counts per door and result are not for everyone); Prometheus reads the metrics listener
/// otherwise.
async fn get_metrics(state: St, headers: HeaderMap) -> Response {
    let Some(want) = &state.metrics_token else {
        return (
            StatusCode::NOT_FOUND,
            "metrics are served on the metrics listener (metrics.listen), or here with a token (TESSERA_METRICS_TOKEN)\n",
        )
            .into_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let right = given.len() == want.len()
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            given.as_bytes(),
            want.as_bytes(),
        ));
    if !right {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "the metrics token is needed\n",
        )
            .into_response();
    }
    metrics_text(state.metrics.as_ref())
}

/// The Prometheus exposition text, if metrics are on.
fn metrics_text(render: Option<&MetricsRender>) -> Response {
    match render {
        Some(render) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are disabled\n").into_response(),
    }
}

/// The metrics listener's routes: `/metrics` without authentication (the listener's address is
/// what protects it: loopback by default).
pub fn metrics_router(render: Option<MetricsRender>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move { metrics_text(render.as_ref()) }
        }),
    )
}
