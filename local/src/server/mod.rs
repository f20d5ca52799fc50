//! The HTTP server in front of the ingest handler: webhook POSTs to `/`, `GET /health`.
//!
//! `run` takes its listener and shutdown future as arguments, so tests start the real server on
//! `127.0.0.1:0`.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::StatusCode;
use http::header::CONTENT_LENGTH;
use ingest::IngestConfig;
use tokio::net::TcpListener;
use tracing::warn;

use crate::pipeline::{Pipeline, now_millis};

struct AppState {
    pipeline: Pipeline,
    config: IngestConfig,
}

/// Serves until `shutdown` completes, then stops accepting and finishes requests under way.
pub async fn run(
    listener: TcpListener,
    pipeline: Pipeline,
    config: IngestConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = Arc::new(AppState { pipeline, config });
    let app = Router::new().fallback(webhook).with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn webhook(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let received_at = now_millis();
    let (parts, body) = request.into_parts();
    let max = state.config.max_body_bytes;
    // A declared length over the limit is refused before a byte of the body is read (the body,
    // after gzip is undone, can only be larger than what is sent).
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX)) {
        warn!(limit = max, "refused oversized body (Content-Length)");
        return too_large();
    }
    // Read one byte past the limit so the handler sees the body is too large; never more.
    let bytes = match axum::body::to_bytes(body, max.saturating_add(1)).await {
        Ok(bytes) => bytes,
        Err(_) => {
            // Past the limit, or the client went away mid-body: nothing was accepted.
            warn!(limit = max, "refused oversized or interrupted body");
            return too_large();
        }
    };
    let request = http::Request::from_parts(parts, bytes);
    let (response, metrics) = state
        .pipeline
        .ingest(&state.config)
        .handle_measured(request, received_at)
        .await;
    state.pipeline.record(&metrics);
    response.map(Body::from)
}

fn too_large() -> Response {
    let mut response = Response::new(Body::from(r#"{"error":"body is larger than the limit"}"#));
    *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
