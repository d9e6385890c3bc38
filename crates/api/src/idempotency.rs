//! `Idempotency-Key` on POSTs: the first request with a key runs and its success is
//! stored; the same key with the same request (method, path, body) replays that
//! response; with a different request it is 422 `idempotency_key_reused`; while the
//! first still runs it is 409 `idempotency_in_progress`.
//!
//! Only successes are remembered: a refused or failed request releases its key, so
//! bad input leaves no row and a retry after a transient failure runs again (the
//! domain ids underneath make that retry safe). A claim left `running` by a dead
//! process is taken over after [`ABANDONED_AFTER_MS`].
//!
//! An answer that holds a secret (a new API key) is never stored: a handler marks
//! it with [`SecretAnswer`], only the marker and the non-secret fields it names are
//! kept, and a replay is 409 `conflict` / `secret_shown_once`.

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;

use crate::AppState;
use crate::auth::Caller;
use crate::db::{self, Claim};
use crate::error::ApiError;

pub const HEADER: &str = "idempotency-key";
/// Characters an Idempotency-Key may have at most.
pub const KEY_CHARS_MAX: usize = 255;
/// A `running` claim older than this belongs to a process that died.
pub const ABANDONED_AFTER_MS: i64 = 120_000;
/// A stored response is at most this large (larger successes are not stored).
const RESPONSE_BYTES_MAX: usize = 1024 * 1024;
/// Pruning runs at most this often per process.
const PRUNE_EVERY_MS: i64 = 60_000;
/// The field that marks a stored answer whose secret was withheld.
const SECRET_MARKER: &str = "__secret_withheld";

/// A response extension: this answer holds a secret, shown once. `withheld` is
/// what a replay may say instead (e.g. the new key's id), never the secret.
#[derive(Clone, Debug)]
pub struct SecretAnswer {
    pub withheld: serde_json::Value,
}

/// Middleware on `/v1` (inside authentication).
pub(crate) async fn idempotent(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(raw_key) = request.headers().get(HEADER) else {
        return next.run(request).await;
    };
    let Some(key) = raw_key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= KEY_CHARS_MAX)
        .map(str::to_owned)
    else {
        return ApiError::new(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1..={KEY_CHARS_MAX} printable ASCII characters"),
        )
        .into_response();
    };
    let Some(caller) = request.extensions().get::<Caller>().cloned() else {
        return ApiError::new("unauthenticated", "an API key is required").into_response();
    };
    let (parts, body) = request.into_parts();
    let bytes = match to_bytes(body, state.config().body_bytes_max).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::new("body_too_large", "the body exceeds the limit").into_response();
        }
    };
    let request_hash = fingerprint(&parts.method, parts.uri.path(), &bytes);
    let store = state.store();
    let now_ms = state.now_ms();
    prune(&state, now_ms).await;
    let claim =
        match db::claim_idempotency(store, &caller.key_id, &key, &request_hash, now_ms).await {
            Ok(claim) => claim,
            Err(error) => return ApiError::from(error).into_response(),
        };
    match claim {
        Claim::Claimed => {}
        Claim::Existing {
            request_hash: stored,
            ..
        } if stored != request_hash => {
            return ApiError::new(
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            )
            .into_response();
        }
        Claim::Existing {
            running: false,
            status,
            response,
            ..
        } => return replay(status, response),
        Claim::Existing {
            running: true,
            created_at_ms,
            ..
        } => {
            let abandoned = now_ms.saturating_sub(created_at_ms) > ABANDONED_AFTER_MS;
            let won = abandoned
                && matches!(
                    db::take_over_idempotency(store, &caller.key_id, &key, created_at_ms, now_ms)
                        .await,
                    Ok(true)
                );
            if !won {
                return ApiError::new(
                    "idempotency_in_progress",
                    "a request with this Idempotency-Key is still running",
                )
                .into_response();
            }
        }
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if !response.status().is_success() {
        if let Err(error) = db::release_idempotency(store, &caller.key_id, &key).await {
            tracing::warn!(error = %error, "could not release an idempotency key");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(body) = to_bytes(body, RESPONSE_BYTES_MAX).await else {
        let _ = db::release_idempotency(store, &caller.key_id, &key).await;
        return ApiError::new("internal_error", "the response was too large to keep")
            .into_response();
    };
    let text = match parts.extensions.get::<SecretAnswer>() {
        Some(secret) => {
            serde_json::json!({ SECRET_MARKER: true, "withheld": secret.withheld }).to_string()
        }
        None => String::from_utf8_lossy(&body).into_owned(),
    };
    if let Err(error) =
        db::finish_idempotency(store, &caller.key_id, &key, parts.status.as_u16(), &text).await
    {
        // The work is done; only the replay record is missing. A retry with this
        // key runs again after the abandon window, and the domain ids dedupe it.
        tracing::warn!(error = %error, "could not store an idempotent response");
    }
    Response::from_parts(parts, Body::from(body))
}

/// Records older than the retention go, at most once per [`PRUNE_EVERY_MS`] per
/// process (and before a claim, so an expired key is claimed afresh).
async fn prune(state: &AppState, now_ms: i64) {
    let retention_ms = state.config().idempotency_retention_ms.max(0);
    let last = state.inner.pruned_at_ms.load(Ordering::Relaxed);
    let due = now_ms.saturating_sub(last) >= PRUNE_EVERY_MS.min(retention_ms.max(1));
    if !due
        || state
            .inner
            .pruned_at_ms
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    match db::prune_idempotency(state.store(), now_ms.saturating_sub(retention_ms)).await {
        Ok(pruned) if pruned > 0 => {
            metrics::counter!("api_idempotency_pruned_total").increment(pruned);
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(error = %error, "could not prune idempotency records"),
    }
}

fn fingerprint(method: &Method, path: &str, body: &Bytes) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(path.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn replay(status: Option<i64>, response: Option<String>) -> Response {
    let withheld = response
        .as_deref()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .filter(|stored| stored.get(SECRET_MARKER).is_some())
        .map(|stored| stored["withheld"].clone());
    if let Some(withheld) = withheld {
        return ApiError::reason(
            "conflict",
            "secret_shown_once",
            "this Idempotency-Key already created a secret, which is shown only once; \
             revoke that key and create a new one if it was lost",
        )
        .with_details(serde_json::json!({ "reason": "secret_shown_once", "withheld": withheld }))
        .into_response();
    }
    let status = status
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = (status, response.unwrap_or_default()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("idempotency-replayed", HeaderValue::from_static("true"));
    response
}
