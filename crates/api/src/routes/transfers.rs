//! Ledger transfers and holds (for services) and channel transfers (for customers,
//! and services acting for them). The transfer id is client-chosen and is the
//! ledger's own idempotency key; `Idempotency-Key` adds replay of the HTTP answer.

use axum::response::Response;
use channel::{ChannelTransfer, NewTransfer, UserId};
use ledger::{TransferInput, TransferKind, TransferOutcome, TransferRequest, TransferResult};
use money::{AccountId, Krw, TransferId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::accounts::visible;
use super::{Json, Path, Shared, answer};
use crate::auth::{Caller, Role};
use crate::db::{self, AccountClass};
use crate::error::ApiError;
use crate::state::AppState;

/// 403 unless every account is a customer account or the key may move house money.
async fn check_classes(
    state: &AppState,
    caller: &Caller,
    accounts: &[AccountId],
) -> Result<(), ApiError> {
    if caller.house_accounts {
        return Ok(());
    }
    for account in accounts {
        let class = db::account_class(state.store(), &account.to_string()).await?;
        if !matches!(class, Some(AccountClass::Customer(_))) {
            return Err(ApiError::reason(
                "forbidden",
                "house_account",
                format!(
                    "account {account} is not a customer account, and this key is not granted \
                     house_accounts"
                ),
            ));
        }
    }
    Ok(())
}

/// The accounts a request moves money on: its own, or its hold's (none if the hold
/// is unknown: the ledger refuses that itself).
async fn accounts_moved(
    state: &AppState,
    request: &TransferRequest,
) -> Result<Vec<AccountId>, ApiError> {
    match *request.kind() {
        TransferKind::Single {
            debit_account_id,
            credit_account_id,
            ..
        }
        | TransferKind::Pending {
            debit_account_id,
            credit_account_id,
            ..
        } => Ok(vec![debit_account_id, credit_account_id]),
        TransferKind::Post { pending_id, .. } | TransferKind::Void { pending_id } => Ok(state
            .ledger()?
            .lookup_transfers(&[pending_id])
            .await?
            .into_iter()
            .flat_map(|hold| [hold.debit_account_id, hold.credit_account_id])
            .collect()),
    }
}

/// Submits one parsed ledger transfer and maps its result: `ok` 201, `exists` 200,
/// a taken id 409, any other result 422 `refused` with the result as the reason.
/// A key without the house grant moves only customer accounts (403 otherwise).
async fn submit(
    state: &AppState,
    caller: &Caller,
    input: TransferInput,
) -> Result<Response, ApiError> {
    let ledger = state.ledger()?;
    let request = input
        .parse_within(
            ledger.clock().now(),
            state.config().requested_at_future_skew_ms,
        )
        .map_err(|error| ApiError::invalid(error.code(), error.to_string()))?;
    check_classes(state, caller, &accounts_moved(state, &request).await?).await?;
    let result = ledger.transfer(request).await?;
    let body = |result| TransferAnswer {
        id: input.id.clone(),
        result,
    };
    match result {
        TransferResult::Ok => Ok(answer(201, body(Applied::Ok))),
        TransferResult::Exists => Ok(answer(200, body(Applied::Exists))),
        TransferResult::ExistsWithDifferentFields => Err(ApiError::reason(
            "conflict",
            result.code(),
            "the transfer id is taken by a request with other fields",
        )),
        refused => Err(ApiError::reason(
            "refused",
            refused.code(),
            format!("the ledger refused the transfer: {}", refused.code()),
        )
        .with_details(json!({ "reason": refused.code(), "id": input.id }))),
    }
}

/// A transfer the ledger took: `ok` (201) applied now, `exists` (200) applied
/// earlier with the same fields.
#[derive(Serialize, JsonSchema)]
pub struct TransferAnswer {
    /// The id as the client sent it.
    #[schemars(schema_with = "money::id_schema")]
    id: String,
    result: Applied,
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    Ok,
    Exists,
}

pub async fn transfer(
    state: Shared,
    caller: Caller,
    Json(input): Json<TransferInput>,
) -> Result<Response, ApiError> {
    submit(&state, &caller, input).await
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "HoldInput")]
pub struct HoldBody {
    #[schemars(schema_with = "money::id_schema")]
    id: String,
    #[schemars(schema_with = "money::id_schema")]
    debit_account_id: String,
    #[schemars(schema_with = "money::id_schema")]
    credit_account_id: String,
    #[schemars(range(min = 1))]
    amount_krw: i64,
    /// 0 (or none): the hold never expires.
    #[serde(default)]
    #[schemars(range(min = 0, max = ledger::PENDING_TIMEOUT_MS_MAX))]
    timeout_ms: Option<i64>,
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    user_data: Option<u64>,
}

pub async fn hold(
    state: Shared,
    caller: Caller,
    Json(body): Json<HoldBody>,
) -> Result<Response, ApiError> {
    submit(
        &state,
        &caller,
        TransferInput {
            id: body.id,
            kind: Some("pending".into()),
            debit_account_id: Some(body.debit_account_id),
            credit_account_id: Some(body.credit_account_id),
            amount: Some(body.amount_krw),
            timeout_ms: body.timeout_ms,
            code: body.code,
            user_data: body.user_data,
            ..TransferInput::default()
        },
    )
    .await
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PostHold")]
pub struct PostBody {
    /// The post transfer's own id.
    #[schemars(schema_with = "money::id_schema")]
    id: String,
    /// Omitted: the full held amount.
    #[serde(default)]
    #[schemars(range(min = 1))]
    amount_krw: Option<i64>,
}

pub async fn post_hold(
    state: Shared,
    caller: Caller,
    Path(pending_id): Path<String>,
    Json(body): Json<PostBody>,
) -> Result<Response, ApiError> {
    submit(
        &state,
        &caller,
        TransferInput {
            id: body.id,
            kind: Some("post".into()),
            pending_id: Some(pending_id),
            amount: body.amount_krw,
            ..TransferInput::default()
        },
    )
    .await
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "VoidHold")]
pub struct VoidBody {
    /// The void transfer's own id.
    #[schemars(schema_with = "money::id_schema")]
    id: String,
}

pub async fn void_hold(
    state: Shared,
    caller: Caller,
    Path(pending_id): Path<String>,
    Json(body): Json<VoidBody>,
) -> Result<Response, ApiError> {
    submit(
        &state,
        &caller,
        TransferInput {
            id: body.id,
            kind: Some("void".into()),
            pending_id: Some(pending_id),
            ..TransferInput::default()
        },
    )
    .await
}

pub async fn outcome(state: Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = TransferId::parse(&id)
        .map_err(|error| ApiError::new("invalid_path", format!("transfer id: {error}")))?;
    let outcome: TransferOutcome = state.ledger()?.outcome(id).await?;
    Ok(answer(200, outcome))
}

/// A channel transfer as the API shows it.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "ChannelTransfer")]
pub struct ChannelTransferView {
    id: TransferId,
    #[schemars(with = "AccountId")]
    customer_id: String,
    from_account_id: AccountId,
    to_account_id: AccountId,
    amount_krw: i64,
    #[schemars(with = "channel::TransferState")]
    state: &'static str,
    result_code: Option<String>,
    requested_at_ms: i64,
    updated_at_ms: i64,
}

impl From<&ChannelTransfer> for ChannelTransferView {
    fn from(t: &ChannelTransfer) -> ChannelTransferView {
        ChannelTransferView {
            id: t.id,
            customer_id: t.user.to_string(),
            from_account_id: t.debit,
            to_account_id: t.credit,
            amount_krw: t.amount.get(),
            state: t.state.name(),
            result_code: t.result_code.clone(),
            requested_at_ms: t.requested_at.unix_ms(),
            updated_at_ms: t.updated_at.unix_ms(),
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NewChannelTransfer")]
pub struct ChannelTransferBody {
    #[schemars(schema_with = "money::id_schema")]
    id: String,
    #[schemars(schema_with = "money::id_schema")]
    from_account_id: String,
    #[schemars(schema_with = "money::id_schema")]
    to_account_id: String,
    #[schemars(range(min = 1))]
    amount_krw: i64,
}

pub async fn channel_transfer(
    state: Shared,
    caller: Caller,
    Json(body): Json<ChannelTransferBody>,
) -> Result<Response, ApiError> {
    let id = TransferId::parse(&body.id)
        .map_err(|error| ApiError::invalid(error.code(), format!("id: {error}")))?;
    let to = AccountId::parse(&body.to_account_id)
        .map_err(|error| ApiError::invalid(error.code(), format!("to_account_id: {error}")))?;
    let amount = Krw::positive(body.amount_krw)
        .map_err(|error| ApiError::invalid(error.code(), format!("amount_krw: {error}")))?;
    let (from, owner) = visible(&state, &caller, &body.from_account_id).await?;
    let Some(owner) = owner else {
        return Err(ApiError::invalid(
            "account_has_no_customer",
            "the from account belongs to no customer",
        ));
    };
    // A customer's money goes only to customer accounts.
    check_classes(&state, &caller, &[to]).await?;
    let user =
        UserId::parse(&owner).map_err(|error| ApiError::internal("internal_error", &error))?;
    let new = NewTransfer::new(id, user, from, to, amount)
        .map_err(|error| ApiError::invalid(error.code(), error.to_string()))?;
    let channel = state.channel()?;
    let transfer = channel.transfers().submit(new).await?;
    db::record_channel_transfer(
        state.store(),
        &id.to_string(),
        &from.to_string(),
        &owner,
        state.now_ms(),
    )
    .await?;
    Ok(answer(201, ChannelTransferView::from(&transfer)))
}

pub async fn channel_transfer_get(
    state: Shared,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = match TransferId::parse(&id) {
        Ok(id) => id,
        Err(_) if caller.role == Role::Customer => return Err(ApiError::not_found("transfer")),
        Err(error) => {
            return Err(ApiError::new(
                "invalid_path",
                format!("transfer id: {error}"),
            ));
        }
    };
    let transfer = state
        .channel()?
        .transfers()
        .get(id)
        .await?
        .filter(|t| caller.may_see(Some(&t.user.to_string())))
        .ok_or_else(|| ApiError::not_found("transfer"))?;
    Ok(answer(200, ChannelTransferView::from(&transfer)))
}
