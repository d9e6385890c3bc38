//! Maker-checker: actions that move money out or change who gets paid can be put
//! behind a second ops key, per action, by configuration
//! ([`crate::ApiConfig::approvals_required`]). Such a request does not run: it
//! becomes a pending approval (a stable id, who asked, the action with its input
//! as canonical JSON and that JSON's SHA-256) and answers 202. A different ops key
//! approves it — then the action runs once, in a task of its own so a dropped
//! request cannot cut it, and its outcome is stored on the approval — or any ops
//! key rejects it. Request, decision and the action itself are audited, each with
//! its outcome.
//!
//! The one approval of an action runs it at most once: approving is a
//! compare-and-set from `pending`, so of two approvers one wins and the other is
//! 409. This module never lets a key approve its own request (a CHECK in the table
//! says so too), never approves an expired, rejected or finished approval, and
//! never runs a body whose stored hash no longer matches it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::db::{self, ApprovalRow, ApprovalState, NewApproval};
use crate::error::ApiError;
use crate::routes::{accounts, keys, operations, settlement};
use crate::state::AppState;

/// The actions a deployment may require a second ops key for.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Guarded {
    /// Fee settlement's Withdraw (the day's total leaves for the corporate account).
    FeesWithdraw,
    /// A salary deposit's stage run again (it may pay out).
    PayrollRetry,
    /// A salary deposit rolled back with compensating transfers.
    PayrollRollback,
    /// The share of users routed to the next banking provider.
    ProvidersCohort,
    /// One user pinned to a banking provider.
    ProvidersOverride,
    /// A new ops key (it works only once approved).
    OpsKeyCreate,
    /// A customer account handed to another customer.
    AccountsOwner,
}

impl Guarded {
    pub const ALL: [Guarded; 7] = [
        Guarded::FeesWithdraw,
        Guarded::PayrollRetry,
        Guarded::PayrollRollback,
        Guarded::ProvidersCohort,
        Guarded::ProvidersOverride,
        Guarded::OpsKeyCreate,
        Guarded::AccountsOwner,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Guarded::FeesWithdraw => "fees_withdraw",
            Guarded::PayrollRetry => "payroll_retry",
            Guarded::PayrollRollback => "payroll_rollback",
            Guarded::ProvidersCohort => "providers_cohort",
            Guarded::ProvidersOverride => "providers_override",
            Guarded::OpsKeyCreate => "ops_key_create",
            Guarded::AccountsOwner => "accounts_owner",
        }
    }

    pub fn parse(text: &str) -> Option<Guarded> {
        Guarded::ALL.into_iter().find(|g| g.name() == text)
    }

    /// A comma-separated list (`all` for every action, empty for none).
    pub fn parse_list(text: &str) -> Result<BTreeSet<Guarded>, String> {
        let mut set = BTreeSet::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "all" {
                set.extend(Guarded::ALL);
                continue;
            }
            set.insert(Guarded::parse(name).ok_or_else(|| {
                let known: Vec<&str> = Guarded::ALL.iter().map(|g| g.name()).collect();
                format!("unknown action {name:?}; known: all, {}", known.join(", "))
            })?);
        }
        Ok(set)
    }
}

/// An action with its checked input: what an approval stores and later runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    FeesWithdraw {
        day: String,
    },
    PayrollRetry {
        deposit_id: String,
    },
    PayrollRollback {
        deposit_id: String,
    },
    ProvidersCohort {
        percent: u8,
    },
    ProvidersOverride {
        user_id: String,
        provider: Option<String>,
    },
    OpsKeyCreate {
        key_id: String,
    },
    AccountsOwner {
        account_id: String,
        from: String,
        to: String,
        reason: String,
    },
}

impl Action {
    pub fn kind(&self) -> Guarded {
        match self {
            Action::FeesWithdraw { .. } => Guarded::FeesWithdraw,
            Action::PayrollRetry { .. } => Guarded::PayrollRetry,
            Action::PayrollRollback { .. } => Guarded::PayrollRollback,
            Action::ProvidersCohort { .. } => Guarded::ProvidersCohort,
            Action::ProvidersOverride { .. } => Guarded::ProvidersOverride,
            Action::OpsKeyCreate { .. } => Guarded::OpsKeyCreate,
            Action::AccountsOwner { .. } => Guarded::AccountsOwner,
        }
    }

    fn target(&self) -> String {
        match self {
            Action::FeesWithdraw { day } => day.clone(),
            Action::PayrollRetry { deposit_id } | Action::PayrollRollback { deposit_id } => {
                deposit_id.clone()
            }
            Action::ProvidersCohort { .. } => "cohort".to_owned(),
            Action::ProvidersOverride { user_id, .. } => user_id.clone(),
            Action::OpsKeyCreate { key_id } => key_id.clone(),
            Action::AccountsOwner { account_id, .. } => account_id.clone(),
        }
    }

    /// Runs the action for `caller` (audited under its own name); `approval_id`
    /// names the approval it runs under, if any.
    async fn run(
        &self,
        state: &AppState,
        caller: &Caller,
        approval_id: Option<&str>,
    ) -> Result<Value, ApiError> {
        match self {
            Action::FeesWithdraw { day } => {
                settlement::withdraw(state, caller, day, approval_id).await
            }
            Action::PayrollRetry { deposit_id } => {
                settlement::retry_deposit(state, caller, deposit_id, approval_id).await
            }
            Action::PayrollRollback { deposit_id } => {
                settlement::rollback_deposit(state, caller, deposit_id, approval_id).await
            }
            Action::ProvidersCohort { percent } => {
                operations::cohort(state, caller, *percent, approval_id).await
            }
            Action::ProvidersOverride { user_id, provider } => {
                operations::pin(state, caller, user_id, provider.as_deref(), approval_id).await
            }
            Action::OpsKeyCreate { key_id } => {
                keys::activate_key(state, caller, key_id, approval_id).await
            }
            Action::AccountsOwner {
                account_id,
                from,
                to,
                reason,
            } => {
                let parties = (account_id.as_str(), from.as_str(), to.as_str());
                accounts::hand_over(state, caller, parties, reason, approval_id).await
            }
        }
    }
}

/// Details an action's audit row carries when it runs under an approval.
pub(crate) fn under(approval_id: Option<&str>, mut details: Value) -> Value {
    if let (Some(id), Some(object)) = (approval_id, details.as_object_mut()) {
        object.insert("approval_id".into(), json!(id));
    }
    details
}

/// Whether this deployment puts `kind` behind a second ops key.
pub fn required(state: &AppState, kind: Guarded) -> bool {
    state.config().approvals_required.contains(&kind)
}

/// Runs `action` now, or — when it needs a second ops key — records the request
/// and answers 202 with the pending approval.
pub(crate) async fn run_or_request(
    state: &AppState,
    caller: &Caller,
    action: Action,
) -> Result<(u16, Value), ApiError> {
    if required(state, action.kind()) {
        let approval = request(state, caller, &action).await?;
        return Ok((202, json!(view(&approval, state.now_ms()))));
    }
    Ok((200, action.run(state, caller, None).await?))
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Records a pending approval of `action` requested by `caller` (audited).
pub(crate) async fn request(
    state: &AppState,
    caller: &Caller,
    action: &Action,
) -> Result<ApprovalRow, ApiError> {
    let now_ms = state.now_ms();
    let config = state.config();
    if db::count_pending_approvals(state.store(), now_ms).await? >= config.approvals_pending_max {
        return Err(ApiError::reason(
            "conflict",
            "approvals_pending_max",
            format!(
                "{} approvals are pending already; decide some first",
                config.approvals_pending_max
            ),
        ));
    }
    let body =
        serde_json::to_string(action).map_err(|e| ApiError::internal("internal_error", &e))?;
    let new = NewApproval {
        approval_id: format!("apr_{}", uuid::Uuid::now_v7().simple()),
        action: action.kind().name().to_owned(),
        target: action.target(),
        body_hash: sha256_hex(&body),
        body,
        requested_by: caller.key_id.clone(),
        requested_at_ms: now_ms,
        expires_at_ms: now_ms.saturating_add(config.approval_ttl_ms.max(1)),
    };
    let details = json!({ "action": new.action, "target": new.target, "body_hash": new.body_hash });
    state
        .audited(
            caller,
            "approvals.request",
            &new.approval_id,
            details,
            async {
                db::insert_approval(state.store(), &new).await?;
                Ok(())
            },
        )
        .await?;
    found(state, &new.approval_id).await
}

async fn found(state: &AppState, approval_id: &str) -> Result<ApprovalRow, ApiError> {
    db::approval(state.store(), approval_id)
        .await?
        .ok_or_else(|| ApiError::not_found("approval"))
}

/// An approval as the API shows it: the row plus whether it lapsed.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
#[schemars(rename = "Approval")]
pub struct ApprovalView {
    #[serde(flatten)]
    row: ApprovalRow,
    /// Pending past its `expires_at_ms`: it can no longer be approved.
    expired: bool,
}

pub(crate) fn view(row: &ApprovalRow, now_ms: i64) -> ApprovalView {
    ApprovalView {
        row: row.clone(),
        expired: row.state == ApprovalState::Pending && now_ms >= row.expires_at_ms,
    }
}

fn not_pending(row: &ApprovalRow, now_ms: i64) -> Option<ApiError> {
    if row.state != ApprovalState::Pending {
        return Some(
            ApiError::reason(
                "conflict",
                "approval_not_pending",
                format!("the approval is {}, not pending", row.state.as_str()),
            )
            .with_details(json!({ "reason": "approval_not_pending", "state": row.state })),
        );
    }
    (now_ms >= row.expires_at_ms).then(|| {
        ApiError::reason(
            "conflict",
            "approval_expired",
            "the approval expired; request the action again",
        )
    })
}

/// Approves `approval_id` as `caller` and runs its action once; the approval
/// with its outcome (`done` or `failed`).
pub(crate) async fn approve(
    state: &AppState,
    caller: &Caller,
    approval_id: &str,
    body_hash: Option<&str>,
) -> Result<ApprovalView, ApiError> {
    let row = found(state, approval_id).await?;
    if row.requested_by == caller.key_id {
        return Err(ApiError::reason(
            "forbidden",
            "self_approval",
            "a key cannot approve its own request; a second ops key must",
        ));
    }
    if body_hash.is_some_and(|hash| hash != row.body_hash) {
        return Err(ApiError::reason(
            "conflict",
            "approval_changed",
            "the approval's body_hash is not the one given",
        ));
    }
    if let Some(error) = not_pending(&row, state.now_ms()) {
        return Err(error);
    }
    if sha256_hex(&row.body_text) != row.body_hash {
        return Err(ApiError::internal(
            "internal_error",
            &format!("approval {approval_id}: the stored body does not match its hash"),
        ));
    }
    if !db::key_is_live(state.store(), &row.requested_by).await? {
        return Err(ApiError::reason(
            "conflict",
            "requester_revoked",
            "the key that requested this action was revoked",
        ));
    }
    let action: Action = serde_json::from_str(&row.body_text)
        .map_err(|e| ApiError::internal("internal_error", &e))?;
    let details = json!({ "action": row.action, "requested_by": row.requested_by });
    let (state, caller, id) = (state.clone(), caller.clone(), approval_id.to_owned());
    // A task of its own: once approved, the action runs to its end and its outcome
    // is stored even if this request is dropped.
    let task = tokio::spawn(async move {
        let work = decide_and_run(&state, &caller, &id, &action);
        let row = state
            .audited(&caller, "approvals.approve", &id, details, work)
            .await?;
        Ok::<ApprovalView, ApiError>(view(&row, state.now_ms()))
    });
    task.await
        .map_err(|e| ApiError::internal("internal_error", &e))?
}

async fn decide_and_run(
    state: &AppState,
    caller: &Caller,
    approval_id: &str,
    action: &Action,
) -> Result<ApprovalRow, ApiError> {
    let now_ms = state.now_ms();
    let store = state.store();
    if !db::decide_approval(
        store,
        approval_id,
        ApprovalState::Approved,
        &caller.key_id,
        None,
        now_ms,
    )
    .await?
    {
        // Another approver or a rejection won, or it lapsed meanwhile.
        let row = found(state, approval_id).await?;
        return Err(not_pending(&row, now_ms).unwrap_or_else(|| {
            ApiError::reason(
                "conflict",
                "approval_not_pending",
                "the approval moved meanwhile",
            )
        }));
    }
    let (to, outcome) = match action.run(state, caller, Some(approval_id)).await {
        Ok(result) => (ApprovalState::Done, json!({ "ok": true, "result": result })),
        Err(error) => (
            ApprovalState::Failed,
            json!({
                "ok": false, "code": error.code, "message": error.message,
                "reason": error.details.get("reason"),
            }),
        ),
    };
    db::finish_approval(store, approval_id, to, &outcome, state.now_ms()).await?;
    found(state, approval_id).await
}

/// Characters a rejection's reason may have.
pub const REASON_CHARS_MAX: usize = 500;

/// Rejects a pending approval (any ops key, the requester too: a withdrawn
/// request). A rejected ops key is revoked.
pub(crate) async fn reject(
    state: &AppState,
    caller: &Caller,
    approval_id: &str,
    reason: &str,
) -> Result<ApprovalView, ApiError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > REASON_CHARS_MAX {
        return Err(ApiError::invalid(
            "reason_invalid",
            format!("reason must be 1..={REASON_CHARS_MAX} characters"),
        ));
    }
    let row = found(state, approval_id).await?;
    if let Some(error) = not_pending(&row, state.now_ms()) {
        return Err(error);
    }
    let details = json!({ "action": row.action, "reason": reason });
    let work = async {
        let now_ms = state.now_ms();
        let store = state.store();
        if !db::decide_approval(
            store,
            approval_id,
            ApprovalState::Rejected,
            &caller.key_id,
            Some(reason),
            now_ms,
        )
        .await?
        {
            let row = found(state, approval_id).await?;
            return Err(not_pending(&row, now_ms).unwrap_or_else(|| {
                ApiError::reason(
                    "conflict",
                    "approval_not_pending",
                    "the approval moved meanwhile",
                )
            }));
        }
        if let Ok(Action::OpsKeyCreate { key_id }) = serde_json::from_str(&row.body_text) {
            db::revoke_key(store, &key_id, now_ms).await?;
        }
        found(state, approval_id).await
    };
    let row = state
        .audited(caller, "approvals.reject", approval_id, details, work)
        .await?;
    Ok(view(&row, state.now_ms()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_names_actions_or_all_and_refuses_unknown_ones() {
        assert!(Guarded::parse_list("").unwrap().is_empty());
        assert_eq!(
            Guarded::parse_list("all").unwrap().len(),
            Guarded::ALL.len()
        );
        let some = Guarded::parse_list("fees_withdraw, ops_key_create").unwrap();
        assert_eq!(
            some.into_iter().collect::<Vec<_>>(),
            [Guarded::FeesWithdraw, Guarded::OpsKeyCreate]
        );
        let error = Guarded::parse_list("fees_withdraw,withdraw_everything").unwrap_err();
        assert!(error.contains("withdraw_everything"), "{error}");
        for guarded in Guarded::ALL {
            assert_eq!(Guarded::parse(guarded.name()), Some(guarded));
        }
    }

    #[test]
    fn a_stored_action_reads_back_as_itself_and_nothing_else() {
        let action = Action::ProvidersOverride {
            user_id: "0190a000-0000-7000-8000-000000000001".into(),
            provider: None,
        };
        let body = serde_json::to_string(&action).unwrap();
        assert_eq!(serde_json::from_str::<Action>(&body).unwrap(), action);
        assert_eq!(action.kind(), Guarded::ProvidersOverride);
        // An edited body with a field more is refused, not half read.
        let edited = body.replacen('{', "{\"extra\":1,", 1);
        assert!(serde_json::from_str::<Action>(&edited).is_err());
    }
}
