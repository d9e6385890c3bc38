//! Operators' settlement endpoints: fee days (status, module runs, the
//! reconciliation report) and the salary pipeline (status, deposits, one
//! deposit in detail, retry, rollback, resolve, enrolling one user, alerts).
//! Every action is audited with its outcome; Withdraw, retry and rollback may need
//! a second ops key's approval (`crate::approvals`).

use axum::response::Response;
use fees::{BusinessDay, Module, Trigger};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Empty, Items, Json, Path, Query, Shared, answer, page_limit};
use crate::approvals::{self, Action};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

fn parse_day(text: &str) -> Result<BusinessDay, ApiError> {
    BusinessDay::parse(text).map_err(|error| ApiError::new("invalid_path", error.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitQuery {
    #[serde(default)]
    limit: Option<i64>,
}

pub async fn days(state: Shared, Query(query): Query<LimitQuery>) -> Result<Response, ApiError> {
    let fees = state.fees()?;
    let limit = usize::try_from(page_limit(query.limit, 30, &state)?).unwrap_or(30);
    let days = fees.days(true).await?;
    let mut items = Vec::new();
    for day in days.into_iter().rev().take(limit) {
        if let Some(status) = fees.status(day).await? {
            items.push(status);
        }
    }
    Ok(answer(200, Items { items }))
}

/// A day's status with its module runs, newest first.
#[derive(Serialize, JsonSchema)]
pub struct FeeDay {
    status: fees::DayStatus,
    /// Each run as recorded (module, trigger, outcome, counts).
    runs: Vec<serde_json::Value>,
}

pub async fn day(state: Shared, Path(day): Path<String>) -> Result<Response, ApiError> {
    let day = parse_day(&day)?;
    let fees = state.fees()?;
    let status = fees
        .status(day)
        .await?
        .ok_or_else(|| ApiError::not_found("recorded fee day"))?;
    let runs = fees.runs(day, 50).await?;
    Ok(answer(200, FeeDay { status, runs }))
}

pub async fn run_module(
    state: Shared,
    caller: Caller,
    Path((day, module)): Path<(String, String)>,
    Json(Empty {}): Json<Empty>,
) -> Result<Response, ApiError> {
    let parsed = parse_day(&day)?;
    let module = Module::ALL
        .into_iter()
        .find(|m| m.name() == module)
        .ok_or_else(|| {
            ApiError::new(
                "invalid_path",
                "module must be record, pay, verify or withdraw",
            )
        })?;
    state.fees()?;
    if module == Module::Withdraw {
        let action = Action::FeesWithdraw {
            day: parsed.to_string(),
        };
        let (status, body) = approvals::run_or_request(&state, &caller, action).await?;
        return Ok(answer(status, body));
    }
    Ok(answer(
        200,
        run_fee_module(&state, &caller, parsed, module, None).await?,
    ))
}

/// Runs one fee module for a day, audited with its outcome.
async fn run_fee_module(
    state: &AppState,
    caller: &Caller,
    day: BusinessDay,
    module: Module,
    approval_id: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    let fees = state.fees()?;
    let action = format!("fees.{}", module.name());
    let details = approvals::under(approval_id, json!({}));
    let report = state
        .audited(caller, &action, &day.to_string(), details, async {
            let report = match module {
                Module::Record => fees.record(day, Trigger::Operator).await?,
                Module::Pay => fees.pay(day, Trigger::Operator).await?,
                Module::Verify => fees.verify(day, Trigger::Operator).await?,
                Module::Withdraw => fees.withdraw(day, Trigger::Operator).await?,
            };
            Ok(report)
        })
        .await?;
    serde_json::to_value(report).map_err(|e| ApiError::internal("internal_error", &e))
}

/// Fee settlement's Withdraw for `day` (maker-checker may have approved it).
pub(crate) async fn withdraw(
    state: &AppState,
    caller: &Caller,
    day: &str,
    approval_id: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    run_fee_module(
        state,
        caller,
        parse_day(day)?,
        Module::Withdraw,
        approval_id,
    )
    .await
}

pub async fn report(state: Shared, Path(day): Path<String>) -> Result<Response, ApiError> {
    let day = parse_day(&day)?;
    let fees = state.fees()?;
    let statement = state
        .handles()
        .statement
        .clone()
        .ok_or_else(|| ApiError::role_disabled("a bank statement source"))?;
    let report = fees.report(day, statement.as_ref()).await?;
    Ok(answer(200, report))
}

pub async fn payroll_status(state: Shared) -> Result<Response, ApiError> {
    let payroll = state.payroll()?;
    let status = payroll.status(payroll.config().stuck_after_ms).await?;
    let alerts = status.alerts.len();
    Ok(answer(
        200,
        PayrollStatus {
            users: status.users,
            per_state: status
                .per_state
                .into_iter()
                .map(|(state, count)| StateCount { state, count })
                .collect(),
            stuck: status.stuck,
            alerts_count: alerts,
            alerts: status.alerts.into_iter().take(20).collect(),
        },
    ))
}

/// Payroll at a glance.
#[derive(Serialize, JsonSchema)]
pub struct PayrollStatus {
    users: i64,
    per_state: Vec<StateCount>,
    /// Deposits neither completed nor rolled back and untouched for a while.
    stuck: Vec<payroll::DepositView>,
    alerts_count: usize,
    /// The newest 20 alerts.
    alerts: Vec<payroll::AlertRow>,
}

/// How many deposits stand in a state.
#[derive(Serialize, JsonSchema)]
pub struct StateCount {
    #[schemars(with = "payroll::DepositState")]
    state: String,
    count: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositsQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

pub async fn deposits(
    state: Shared,
    Query(query): Query<DepositsQuery>,
) -> Result<Response, ApiError> {
    let limit = usize::try_from(page_limit(query.limit, 50, &state)?).unwrap_or(50);
    let wanted = match query.state.as_deref() {
        None | Some("") => None,
        Some(text) => Some(payroll::DepositState::parse(text).ok_or_else(|| {
            ApiError::new("invalid_query", format!("unknown deposit state {text:?}"))
        })?),
    };
    let deposits = state.payroll()?.deposits().await?;
    let items: Vec<_> = deposits
        .into_iter()
        .rev()
        .filter(|d| wanted.is_none_or(|w| d.state == w))
        .take(limit)
        .collect();
    Ok(answer(200, Items { items }))
}

pub async fn retry(
    state: Shared,
    caller: Caller,
    Path(id): Path<String>,
    Json(Empty {}): Json<Empty>,
) -> Result<Response, ApiError> {
    state.payroll()?.deposit(&id).await?;
    let action = Action::PayrollRetry { deposit_id: id };
    let (status, body) = approvals::run_or_request(&state, &caller, action).await?;
    Ok(answer(status, body))
}

pub async fn rollback(
    state: Shared,
    caller: Caller,
    Path(id): Path<String>,
    Json(Empty {}): Json<Empty>,
) -> Result<Response, ApiError> {
    state.payroll()?.deposit(&id).await?;
    let action = Action::PayrollRollback { deposit_id: id };
    let (status, body) = approvals::run_or_request(&state, &caller, action).await?;
    Ok(answer(status, body))
}

/// Runs a deposit's stage again, audited with its outcome.
pub(crate) async fn retry_deposit(
    state: &AppState,
    caller: &Caller,
    id: &str,
    approval_id: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    let payroll = state.payroll()?;
    let details = approvals::under(approval_id, json!({}));
    let deposit = state
        .audited(caller, "payroll.retry", id, details, async {
            Ok(payroll.retry_as(id, &caller.key_id).await?)
        })
        .await?;
    serde_json::to_value(deposit).map_err(|e| ApiError::internal("internal_error", &e))
}

/// Rolls a deposit back, audited with its outcome.
pub(crate) async fn rollback_deposit(
    state: &AppState,
    caller: &Caller,
    id: &str,
    approval_id: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    let payroll = state.payroll()?;
    let details = approvals::under(approval_id, json!({}));
    let deposit = state
        .audited(caller, "payroll.rollback", id, details, async {
            Ok(payroll.rollback_as(id, &caller.key_id, None).await?)
        })
        .await?;
    serde_json::to_value(deposit).map_err(|e| ApiError::internal("internal_error", &e))
}

/// Why a deposit is where it is, who holds it, and what can be done.
pub async fn deposit(state: Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(answer(200, state.payroll()?.detail(&id).await?))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ResolveRequest")]
pub struct Resolve {
    /// 1..=500 characters once trimmed.
    #[schemars(length(min = 1, max = payroll::REASON_CHARS_MAX))]
    reason: String,
}

pub async fn resolve(
    state: Shared,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<Resolve>,
) -> Result<Response, ApiError> {
    let payroll = state.payroll()?;
    payroll.deposit(&id).await?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > payroll::REASON_CHARS_MAX {
        return Err(ApiError::reason(
            "invalid_input",
            "invalid_reason",
            format!(
                "reason must be 1..={} characters",
                payroll::REASON_CHARS_MAX
            ),
        ));
    }
    let details = json!({ "reason": reason });
    let deposit = state
        .audited(&caller, "payroll.resolve", &id, details, async {
            Ok(payroll.resolve(&id, &caller.key_id, reason).await?)
        })
        .await?;
    Ok(answer(200, deposit))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "EnrolRequest")]
pub struct Enrol {
    #[schemars(schema_with = "money::uuid_schema")]
    user_id: String,
    /// 1..=40 characters, no surrounding spaces or control characters.
    #[schemars(length(min = 1, max = bank::HOLDER_NAME_CHARS_MAX))]
    holder_name: String,
    /// 6..=20 digits.
    #[schemars(regex(pattern = r"^[0-9]{6,20}$"))]
    payout_account: String,
    /// The payout account's holder; the user's own name unless given.
    #[serde(default)]
    #[schemars(length(min = 1, max = bank::HOLDER_NAME_CHARS_MAX))]
    payout_holder: Option<String>,
    #[serde(default)]
    #[schemars(range(min = 0))]
    advance_krw: i64,
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    suspend_percent: u8,
}

/// An enrolled user with their virtual account.
#[derive(Serialize, JsonSchema)]
pub struct Enrolled {
    #[schemars(schema_with = "money::uuid_schema")]
    user_id: String,
    virtual_account: String,
}

/// Enrols one user: their virtual account from their provider, their wallet.
pub async fn enrol(
    state: Shared,
    caller: Caller,
    Json(body): Json<Enrol>,
) -> Result<Response, ApiError> {
    let payroll = state.payroll()?;
    let bad = |field: &'static str| {
        move |e: bank::BankError| ApiError::reason("invalid_input", field, e.to_string())
    };
    let user_id = bank::UserId::parse(&body.user_id).map_err(bad("invalid_user_id"))?;
    let holder_name =
        bank::HolderName::new(&body.holder_name).map_err(bad("invalid_holder_name"))?;
    let payout_holder = match &body.payout_holder {
        Some(name) => bank::HolderName::new(name).map_err(bad("invalid_payout_holder"))?,
        None => holder_name.clone(),
    };
    let payout_account =
        bank::AccountNumber::new(&body.payout_account).map_err(bad("invalid_payout_account"))?;
    if body.advance_krw < 0 || body.suspend_percent > 100 {
        return Err(ApiError::reason(
            "invalid_input",
            "out_of_range",
            "advance_krw must not be negative and suspend_percent must be 0..=100",
        ));
    }
    let user = payroll::NewUser {
        user_id,
        holder_name,
        payout_account,
        payout_holder,
        advance_krw: money::Krw::new(body.advance_krw),
        suspend_percent: body.suspend_percent,
    };
    let account = state
        .audited(&caller, "payroll.enrol", &body.user_id, json!({}), async {
            Ok(payroll.enrol(&user).await?)
        })
        .await?;
    Ok(answer(
        201,
        Enrolled {
            user_id: body.user_id,
            virtual_account: account.to_string(),
        },
    ))
}

pub async fn alerts(state: Shared) -> Result<Response, ApiError> {
    let alerts = state.payroll()?.alerts().await?;
    let items: Vec<_> = alerts
        .into_iter()
        .take(state.config().page_items_max)
        .collect();
    Ok(answer(200, Items { items }))
}
