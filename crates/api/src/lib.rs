//! The HTTP API of settle: JSON routes under `/v1` over the domain crates' handles,
//! API keys with roles and customer scoping, `Idempotency-Key` replay, an
//! append-only audit log, per-key rate limits, body and time limits, health,
//! readiness and Prometheus metrics, the OpenAPI document, and the web console.
//!
//! The api owns only its own tables (keys, account ownership, idempotency records,
//! audit log; component `api`). It never reads another crate's tables: it calls the
//! handles it was given, each optional so a process can run a subset of roles.

pub mod console;
mod state;

use std::future::Future;

use axum::Router;

pub use state::{ApiConfig, AppState, Handles, Probe};

/// The whole application: the API, the docs, health and the console.
pub fn app(state: AppState) -> Router {
    Router::new().merge(console::routes()).with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` resolves, then drains in-flight
/// requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
