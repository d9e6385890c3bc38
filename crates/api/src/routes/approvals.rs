//! Approvals over HTTP (maker-checker, `crate::approvals`): list and show them,
//! approve one with a second ops key (the action runs then, once), reject one,
//! and the audit chain's verification.

use axum::response::Response;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Items, Json, Path, Query, Shared, answer, page_limit};
use crate::approvals;
use crate::auth::Caller;
use crate::db::{self, ApprovalState};
use crate::error::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

pub async fn list(
    state: Shared,
    Query(query): Query<ApprovalsQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(query.limit, 50, &state)?;
    let wanted = match query.state.as_deref() {
        None | Some("") => None,
        Some(text) => Some(ApprovalState::parse(text).ok_or_else(|| {
            ApiError::new(
                "invalid_query",
                format!("state must be pending, approved, rejected, done or failed, not {text:?}"),
            )
        })?),
    };
    let now_ms = state.now_ms();
    let rows = db::approvals_page(state.store(), wanted, limit).await?;
    let items: Vec<_> = rows
        .iter()
        .map(|row| approvals::view(row, now_ms))
        .collect();
    Ok(answer(200, Items { items }))
}

pub async fn get(state: Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let row = db::approval(state.store(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("approval"))?;
    Ok(answer(200, approvals::view(&row, state.now_ms())))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ApprovalDecision")]
pub struct ApproveBody {
    /// The body hash the approver saw; another stored one is 409 `approval_changed`.
    #[serde(default)]
    body_hash: Option<String>,
}

pub async fn approve(
    state: Shared,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<ApproveBody>,
) -> Result<Response, ApiError> {
    let approval = approvals::approve(&state, &caller, &id, body.body_hash.as_deref()).await?;
    Ok(answer(200, approval))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Rejection")]
pub struct RejectBody {
    /// 1..=500 characters once trimmed.
    #[schemars(length(min = 1, max = crate::approvals::REASON_CHARS_MAX))]
    reason: String,
}

pub async fn reject(
    state: Shared,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<RejectBody>,
) -> Result<Response, ApiError> {
    let approval = approvals::reject(&state, &caller, &id, &body.reason).await?;
    Ok(answer(200, approval))
}

/// Walks the audit log's hash chain: how many rows hold, or the first broken one.
pub async fn verify_audit(state: Shared) -> Result<Response, ApiError> {
    let verdict = match db::verify_audit(state.store()).await? {
        Ok(rows) => AuditVerification {
            intact: true,
            rows: Some(rows),
            broken: None,
        },
        Err(broken) => AuditVerification {
            intact: false,
            rows: None,
            broken: Some(broken),
        },
    };
    Ok(answer(200, verdict))
}

/// The audit chain's verdict: how many rows hold, or the first broken one.
#[derive(Serialize, JsonSchema)]
pub struct AuditVerification {
    intact: bool,
    rows: Option<u64>,
    /// The first row whose link or hash fails.
    broken: Option<db::AuditBreak>,
}
