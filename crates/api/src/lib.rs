//! The HTTP API of settle: JSON routes under `/v1` over the domain crates' handles,
//! API keys with roles, expiry, rotation and customer scoping, `Idempotency-Key`
//! replay, an append-only hash-chained audit log with each action's outcome,
//! maker-checker approvals, per-key rate limits, body and time limits, health,
//! readiness and Prometheus metrics, the OpenAPI document, and the web console.
//!
//! The api owns only its own tables (keys, account ownership, idempotency records,
//! audit log, approvals; component `api`). It never reads another crate's tables: it calls the
//! handles it was given, each optional so a process can run a subset of roles.

pub mod approvals;
pub mod auth;
pub mod console;
pub mod db;
pub mod error;
mod idempotency;
mod limits;
pub mod openapi;
pub mod routes;
mod server;
mod state;
pub mod telemetry;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

pub use auth::{CreatedKey, Role};
pub use error::ApiError;
pub use state::{ApiConfig, AppState, Handles, Probe};

/// The whole application: the API, the docs, health and the console, behind the
/// limits (body size, time) and the error-shape and metrics layers.
pub fn app(state: AppState) -> Router {
    let config = state.config().clone();
    routes::router(&state)
        .merge(console::routes())
        .fallback(limits::no_route)
        .layer(DefaultBodyLimit::max(config.body_bytes_max))
        .layer(RequestBodyLimitLayer::new(config.body_bytes_max))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_millis(config.request_timeout_ms),
        ))
        .layer(middleware::from_fn(limits::json_errors))
        .layer(middleware::from_fn(telemetry::record))
        .with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` resolves, then drains in-flight
/// requests. Connections are capped and timed out (`server.rs`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = state.config().clone();
    let limits = server::ConnectionLimits {
        connections_max: config.connections_max,
        header_read_timeout_ms: config.header_read_timeout_ms,
        idle_timeout_ms: config
            .idle_timeout_ms
            .max(config.request_timeout_ms.saturating_add(1_000)),
    };
    server::serve(listener, app(state), limits, shutdown).await
}
