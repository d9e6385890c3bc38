//! Approvals (`api_approvals`): an action an ops key asked for that a second ops
//! key must approve before it runs. A row moves `pending` → `approved` → `done` or
//! `failed`, or `pending` → `rejected`; each move is a compare-and-set on the
//! state, so of two approvers exactly one wins and the action runs once. A CHECK
//! keeps the approver different from the requester even against a buggy caller.
//! An approval past its `expires_at_ms` is never approved (it reads as expired).

use serde::Serialize;
use store::{Store, on_pool};

/// Where an approval stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    /// Approved; its action is running (or its process died running it).
    Approved,
    Rejected,
    /// Approved and its action succeeded.
    Done,
    /// Approved and its action failed; the outcome says why.
    Failed,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Rejected => "rejected",
            ApprovalState::Done => "done",
            ApprovalState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<ApprovalState> {
        [
            ApprovalState::Pending,
            ApprovalState::Approved,
            ApprovalState::Rejected,
            ApprovalState::Done,
            ApprovalState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// A request for approval, as stored.
#[derive(Clone, Debug)]
pub struct NewApproval {
    pub approval_id: String,
    pub action: String,
    pub target: String,
    /// The action with its input, as canonical JSON.
    pub body: String,
    /// SHA-256 of `body`, hex.
    pub body_hash: String,
    pub requested_by: String,
    pub requested_at_ms: i64,
    pub expires_at_ms: i64,
}

/// One approval.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct ApprovalRow {
    pub approval_id: String,
    #[schemars(with = "crate::approvals::Guarded")]
    pub action: String,
    pub target: String,
    /// The action with its input, as stored.
    pub body: serde_json::Value,
    /// SHA-256 of the stored body, hex.
    #[schemars(regex(pattern = "^[0-9a-f]{64}$"))]
    pub body_hash: String,
    pub requested_by: String,
    pub requested_at_ms: i64,
    pub expires_at_ms: i64,
    pub state: ApprovalState,
    pub decided_by: Option<String>,
    pub decided_at_ms: Option<i64>,
    pub reason: Option<String>,
    pub outcome: Option<serde_json::Value>,
    pub finished_at_ms: Option<i64>,
    /// The stored body, exactly as written (to check `body_hash` against).
    #[serde(skip)]
    pub body_text: String,
}

type ApprovalTuple = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

const COLUMNS: &str = "approval_id, action, target, body, body_hash, requested_by, \
                       requested_at_ms, expires_at_ms, state, decided_by, decided_at_ms, reason, \
                       outcome, finished_at_ms";

fn row_from(row: ApprovalTuple) -> Result<ApprovalRow, sqlx::Error> {
    let (
        approval_id,
        action,
        target,
        body_text,
        body_hash,
        requested_by,
        requested_at_ms,
        expires_at_ms,
        state,
        decided_by,
        decided_at_ms,
        reason,
        outcome,
        finished_at_ms,
    ) = row;
    let state = ApprovalState::parse(&state).ok_or_else(|| {
        sqlx::Error::Decode(format!("api_approvals holds state {state:?}").into())
    })?;
    let json = |text: &str| {
        serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
    };
    Ok(ApprovalRow {
        body: json(&body_text),
        outcome: outcome.as_deref().map(json),
        approval_id,
        action,
        target,
        body_text,
        body_hash,
        requested_by,
        requested_at_ms,
        expires_at_ms,
        state,
        decided_by,
        decided_at_ms,
        reason,
        finished_at_ms,
    })
}

pub async fn insert_approval(store: &Store, new: &NewApproval) -> Result<(), sqlx::Error> {
    on_pool!(
        store,
        sqlx::query(
            "INSERT INTO api_approvals (approval_id, action, target, body, body_hash,
                 requested_by, requested_at_ms, expires_at_ms, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending')"
        )
        .bind(&new.approval_id)
        .bind(&new.action)
        .bind(&new.target)
        .bind(&new.body)
        .bind(&new.body_hash)
        .bind(&new.requested_by)
        .bind(new.requested_at_ms)
        .bind(new.expires_at_ms),
        execute
    )?;
    Ok(())
}

pub async fn approval(
    store: &Store,
    approval_id: &str,
) -> Result<Option<ApprovalRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM api_approvals WHERE approval_id = $1");
    let row: Option<ApprovalTuple> = on_pool!(
        store,
        sqlx::query_as::<_, ApprovalTuple>(&sql).bind(approval_id),
        fetch_optional
    )?;
    row.map(row_from).transpose()
}

/// Approvals newest first, optionally only in one state, at most `limit`.
pub async fn approvals_page(
    store: &Store,
    state: Option<ApprovalState>,
    limit: i64,
) -> Result<Vec<ApprovalRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_approvals WHERE ($1 = '' OR state = $1)
         ORDER BY requested_at_ms DESC, approval_id DESC LIMIT $2"
    );
    let rows: Vec<ApprovalTuple> = on_pool!(
        store,
        sqlx::query_as::<_, ApprovalTuple>(&sql)
            .bind(state.map_or("", ApprovalState::as_str))
            .bind(limit),
        fetch_all
    )?;
    rows.into_iter().map(row_from).collect()
}

/// Pending approvals not yet expired at `now_ms`.
pub async fn count_pending_approvals(store: &Store, now_ms: i64) -> Result<i64, sqlx::Error> {
    let (count,): (i64,) = on_pool!(
        store,
        sqlx::query_as::<_, (i64,)>(
            "SELECT COUNT(*) FROM api_approvals WHERE state = 'pending' AND expires_at_ms > $1"
        )
        .bind(now_ms),
        fetch_one
    )?;
    Ok(count)
}

/// Moves a pending, unexpired approval to `to` (approved or rejected) for
/// `decided_by`; an approval is never decided by its requester when approved.
/// True if this call made the move.
pub async fn decide_approval(
    store: &Store,
    approval_id: &str,
    to: ApprovalState,
    decided_by: &str,
    reason: Option<&str>,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = on_pool!(
        store,
        sqlx::query(
            "UPDATE api_approvals SET state = $1, decided_by = $2, decided_at_ms = $3, reason = $4
             WHERE approval_id = $5 AND state = 'pending' AND expires_at_ms > $3
               AND ($1 = 'rejected' OR requested_by <> $2)"
        )
        .bind(to.as_str())
        .bind(decided_by)
        .bind(now_ms)
        .bind(reason)
        .bind(approval_id),
        execute
    )?;
    Ok(done == 1)
}

/// Records the outcome of an approved approval's action (once).
pub async fn finish_approval(
    store: &Store,
    approval_id: &str,
    to: ApprovalState,
    outcome: &serde_json::Value,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = on_pool!(
        store,
        sqlx::query(
            "UPDATE api_approvals SET state = $1, outcome = $2, finished_at_ms = $3
             WHERE approval_id = $4 AND state = 'approved'"
        )
        .bind(to.as_str())
        .bind(outcome.to_string())
        .bind(now_ms)
        .bind(approval_id),
        execute
    )?;
    Ok(done == 1)
}
