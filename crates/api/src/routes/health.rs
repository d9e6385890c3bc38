//! Health, readiness, metrics and the API's own description. None needs a key.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::json;

use super::{Shared, answer};
use crate::error::ApiError;

/// The process is up.
#[derive(Serialize, JsonSchema)]
pub struct Health {
    status: Up,
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Up {
    Ok,
}

/// Every dependency answered: each check's `ok`.
#[derive(Serialize, JsonSchema)]
pub struct Readiness {
    ready: bool,
    /// Per dependency `ok`, or (only to an ops key) why it failed; `failed` to others.
    checks: BTreeMap<String, String>,
}

pub async fn healthz() -> Response {
    answer(200, Health { status: Up::Ok })
}

/// Every store the process uses, NATS when configured and the bank must answer.
/// Why a check failed is shown only to an ops key; others see `failed` (the cause
/// is in the log).
pub async fn readyz(state: Shared, headers: HeaderMap) -> Response {
    let insider = crate::auth::optional_caller(&state, &headers)
        .await
        .is_some_and(|caller| caller.role == crate::Role::Ops);
    let mut checks = BTreeMap::new();
    let mut ready = true;
    let mut note = |name: &str, outcome: Result<(), String>| {
        ready &= outcome.is_ok();
        let shown = match outcome {
            Ok(()) => "ok".to_owned(),
            Err(error) => {
                tracing::warn!(check = name, error = %error, "a readiness check failed");
                if insider { error } else { "failed".to_owned() }
            }
        };
        checks.insert(name.to_owned(), shown);
    };
    note("store", ping(state.store()).await);
    let handles = state.handles();
    if let Some(ledger) = &handles.ledger {
        note("ledger_store", ping(ledger.store()).await);
    }
    if let Some(events) = &handles.events {
        note("events_store", ping(events).await);
    }
    if let Some(payroll) = &handles.payroll {
        note("payroll_store", ping(payroll.store()).await);
    }
    for (name, probe) in &handles.probes {
        let outcome = match tokio::time::timeout(std::time::Duration::from_secs(2), probe()).await {
            Ok(outcome) => outcome,
            Err(_) => Err("no answer within 2 s".to_owned()),
        };
        note(name, outcome);
    }
    if ready {
        answer(200, Readiness { ready, checks })
    } else {
        ApiError::new("unavailable", "a dependency is not ready")
            .with_details(json!({ "ready": false, "checks": checks }))
            .into_response()
    }
}

async fn ping(store: &store::Store) -> Result<(), String> {
    crate::db::ping(store)
        .await
        .map_err(|error| error.to_string())
}

pub async fn metrics() -> Response {
    let mut response = crate::telemetry::render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

pub async fn openapi() -> Response {
    answer(200, crate::openapi::document())
}

pub async fn docs() -> Html<&'static str> {
    Html(crate::openapi::DOCS_PAGE)
}
