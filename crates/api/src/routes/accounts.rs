//! Accounts, balances and the history read model. A customer reaches only the
//! accounts it owns (ownership is the api's `api_accounts` table); any other id
//! is 404 whether or not it exists.

use axum::response::Response;
use ledger::{Account, AccountFlags, CreateAccountResult, NewAccount};
use money::AccountId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Empty, Items, Json, Path, Query, Shared, answer, page_limit};
use crate::approvals::{self, Action};
use crate::auth::{Caller, Role, parse_customer};
use crate::db::{self, AccountClass};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NewAccount")]
pub struct NewAccountBody {
    #[schemars(schema_with = "money::id_schema")]
    id: String,
    /// 1 unless given.
    #[serde(default)]
    code: Option<u16>,
    /// At most one of the two flags.
    #[serde(default)]
    flags: Option<AccountFlags>,
    #[serde(default)]
    user_data: Option<u64>,
    /// The owning customer; none makes a house account.
    #[serde(default)]
    #[schemars(schema_with = "money::id_schema")]
    customer_id: Option<String>,
}

/// An account as the API shows it.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "Account")]
pub struct AccountView {
    id: AccountId,
    code: u16,
    flags: AccountFlags,
    user_data: u64,
    #[schemars(with = "Option<AccountId>")]
    customer_id: Option<String>,
    debits_posted_krw: i64,
    credits_posted_krw: i64,
    debits_pending_krw: i64,
    credits_pending_krw: i64,
    /// Posted credits minus posted debits.
    balance_krw: Option<i64>,
    /// What can still be spent: the balance minus pending debits.
    available_krw: Option<i64>,
    seq: i64,
    created_at_ms: i64,
}

impl AccountView {
    fn new(account: &Account, customer_id: Option<String>) -> AccountView {
        AccountView {
            id: account.id,
            code: account.code,
            flags: account.flags,
            user_data: account.user_data,
            customer_id,
            debits_posted_krw: account.debits_posted.get(),
            credits_posted_krw: account.credits_posted.get(),
            debits_pending_krw: account.debits_pending.get(),
            credits_pending_krw: account.credits_pending.get(),
            balance_krw: account.credit_balance().map(|k| k.get()),
            available_krw: account.available_credit_balance().map(|k| k.get()),
            seq: account.seq,
            created_at_ms: account.created_at.unix_ms(),
        }
    }
}

pub fn parse_account(text: &str) -> Result<AccountId, ApiError> {
    AccountId::parse(text)
        .map_err(|error| ApiError::new("invalid_path", format!("account id: {error}")))
}

/// The account `text` names, if this caller may see it (else 404, never 403), with
/// its owner.
pub async fn visible(
    state: &AppState,
    caller: &Caller,
    text: &str,
) -> Result<(AccountId, Option<String>), ApiError> {
    let id = match parse_account(text) {
        Ok(id) => id,
        // A customer learns nothing from the shape of an id either.
        Err(_) if caller.role == Role::Customer => return Err(ApiError::not_found("account")),
        Err(error) => return Err(error),
    };
    let owner = db::owner_of(state.store(), &id.to_string()).await?;
    if !caller.may_see(owner.as_deref()) {
        return Err(ApiError::not_found("account"));
    }
    Ok((id, owner))
}

pub async fn create(
    state: Shared,
    caller: Caller,
    Json(body): Json<NewAccountBody>,
) -> Result<Response, ApiError> {
    let ledger = state.ledger()?;
    let id = AccountId::parse(&body.id)
        .map_err(|error| ApiError::invalid(error.code(), format!("id: {error}")))?;
    let wanted = match body
        .customer_id
        .as_deref()
        .map(parse_customer)
        .transpose()?
    {
        Some(customer) => AccountClass::Customer(customer),
        None => AccountClass::House,
    };
    let new = NewAccount::new(id, body.code.unwrap_or(1), body.flags.unwrap_or_default())
        .map_err(|error| ApiError::invalid(error.code(), error.to_string()))?
        .with_user_data(body.user_data.unwrap_or(0));
    let key = id.to_string();
    // Class and owner are fields like code and flags: fixed by the first create. An
    // account the API never created (fees', payroll's) is a house account.
    let existing = ledger.lookup_accounts(&[id]).await?.into_iter().next();
    if existing.as_ref().is_some_and(|account| {
        (account.code, account.flags, account.user_data)
            != (new.code(), new.flags(), new.user_data())
    }) {
        return Err(other_fields());
    }
    let current = match db::account_class(state.store(), &key).await? {
        Some(class) => Some(class),
        None => existing.map(|_| AccountClass::House),
    };
    if current.as_ref().is_some_and(|class| *class != wanted) {
        return Err(other_fields());
    }
    let work = async {
        if current.is_none()
            && db::claim_account(state.store(), &key, &wanted, state.now_ms()).await? != wanted
        {
            return Err(other_fields());
        }
        let result = ledger
            .create_accounts(&[new])
            .await?
            .pop()
            .unwrap_or(CreateAccountResult::ExistsWithDifferentFields);
        match result {
            CreateAccountResult::Ok => Ok((201, result)),
            CreateAccountResult::Exists => Ok((200, result)),
            CreateAccountResult::ExistsWithDifferentFields => Err(other_fields()),
        }
    };
    let (status, result) = if caller.role == Role::Ops {
        let details = json!({ "customer_id": wanted.customer(), "class": wanted.name() });
        state
            .audited(&caller, "accounts.create", &key, details, work)
            .await?
    } else {
        work.await?
    };
    let account = lookup(&state, id).await?;
    let created = AccountCreated {
        account: AccountView::new(&account, wanted.customer().map(str::to_owned)),
        result: match result {
            CreateAccountResult::Exists => Created::Exists,
            _ => Created::Ok,
        },
    };
    Ok(answer(status, created))
}

/// A create's answer: the account, and whether this call made it.
#[derive(Serialize, JsonSchema)]
pub struct AccountCreated {
    #[serde(flatten)]
    account: AccountView,
    result: Created,
}

/// `ok` (201): made now; `exists` (200): made earlier with the same fields.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Created {
    Ok,
    Exists,
}

/// 409: the id names an account with other fields (code, flags, user data, class
/// or owner). An owner is never changed by a create.
fn other_fields() -> ApiError {
    ApiError::reason(
        "conflict",
        CreateAccountResult::ExistsWithDifferentFields.code(),
        "the account id exists with different fields (code, flags, user data, class or owner)",
    )
}

/// Characters an owner change's reason may have.
const REASON_CHARS_MAX: usize = 500;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "OwnerChange")]
pub struct OwnerChangeBody {
    #[schemars(schema_with = "money::id_schema")]
    customer_id: String,
    /// 1..=500 characters once trimmed.
    #[schemars(length(min = 1, max = REASON_CHARS_MAX))]
    reason: String,
}

/// The one way an account changes hands: an ops key, a reason, an audit row
/// before the change and one with its outcome; under maker-checker a second ops
/// key's approval. Only customer accounts; a house account is never handed out.
pub async fn change_owner(
    state: Shared,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<OwnerChangeBody>,
) -> Result<Response, ApiError> {
    let id = parse_account(&id)?;
    let to = parse_customer(&body.customer_id)?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > REASON_CHARS_MAX {
        return Err(ApiError::invalid(
            "reason_invalid",
            format!("reason must be 1..={REASON_CHARS_MAX} characters"),
        ));
    }
    let key = id.to_string();
    let from = match db::account_class(state.store(), &key).await? {
        Some(AccountClass::Customer(from)) => from,
        Some(AccountClass::House) => {
            return Err(ApiError::reason(
                "conflict",
                "account_is_house",
                "a house account never belongs to a customer",
            ));
        }
        None => return Err(ApiError::not_found("account")),
    };
    if from == to {
        let account = lookup(&state, id).await?;
        return Ok(answer(200, AccountView::new(&account, Some(to))));
    }
    let action = Action::AccountsOwner {
        account_id: key,
        from,
        to,
        reason: reason.to_owned(),
    };
    let (status, body) = approvals::run_or_request(&state, &caller, action).await?;
    Ok(answer(status, body))
}

/// Hands `account_id` from `from` to `to` (a compare-and-set: refused if it
/// changed hands meanwhile), audited with its outcome; the account after it.
pub(crate) async fn hand_over(
    state: &AppState,
    caller: &Caller,
    (account_id, from, to): (&str, &str, &str),
    reason: &str,
    approval_id: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    let id = parse_account(account_id)?;
    let details = approvals::under(
        approval_id,
        json!({ "from": from, "to": to, "reason": reason }),
    );
    state
        .audited(
            caller,
            "accounts.change_owner",
            account_id,
            details,
            async {
                if db::change_owner(state.store(), account_id, from, to).await? {
                    Ok(())
                } else {
                    Err(ApiError::reason(
                        "conflict",
                        "owner_changed_meanwhile",
                        "the account changed hands since this change was asked for",
                    ))
                }
            },
        )
        .await?;
    let account = lookup(state, id).await?;
    serde_json::to_value(AccountView::new(&account, Some(to.to_owned())))
        .map_err(|error| ApiError::internal("internal_error", &error))
}

async fn lookup(state: &AppState, id: AccountId) -> Result<Account, ApiError> {
    state
        .ledger()?
        .lookup_accounts(&[id])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("account"))
}

pub async fn get(
    state: Shared,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (id, owner) = visible(&state, &caller, &id).await?;
    let account = lookup(&state, id).await?;
    Ok(answer(200, AccountView::new(&account, owner)))
}

pub async fn balance(
    state: Shared,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (id, _) = visible(&state, &caller, &id).await?;
    let account = lookup(&state, id).await?;
    Ok(answer(
        200,
        BalanceView {
            account_id: account.id,
            debits_posted_krw: account.debits_posted.get(),
            credits_posted_krw: account.credits_posted.get(),
            debits_pending_krw: account.debits_pending.get(),
            credits_pending_krw: account.credits_pending.get(),
            balance_krw: account.credit_balance().map(|k| k.get()),
            available_krw: account.available_credit_balance().map(|k| k.get()),
            seq: account.seq,
        },
    ))
}

/// An account's balances.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "Balance")]
pub struct BalanceView {
    account_id: AccountId,
    debits_posted_krw: i64,
    credits_posted_krw: i64,
    debits_pending_krw: i64,
    credits_pending_krw: i64,
    /// Posted credits minus posted debits.
    balance_krw: Option<i64>,
    /// What can still be spent: the balance minus pending debits.
    available_krw: Option<i64>,
    seq: i64,
}

pub async fn of_customer(
    state: Shared,
    caller: Caller,
    Path(customer): Path<String>,
) -> Result<Response, ApiError> {
    let customer = match parse_customer(&customer) {
        Ok(customer) => customer,
        Err(_) if caller.role == Role::Customer => return Err(ApiError::not_found("customer")),
        Err(_) => return Err(ApiError::new("invalid_path", "customer_id is not a UUID")),
    };
    if !caller.may_see(Some(&customer)) {
        return Err(ApiError::not_found("customer"));
    }
    let limit = i64::try_from(state.config().page_items_max).unwrap_or(100);
    let ids = db::accounts_of(state.store(), &customer, limit).await?;
    let ids: Vec<AccountId> = ids
        .iter()
        .filter_map(|id| AccountId::parse(id).ok())
        .collect();
    let mut accounts = state.ledger()?.lookup_accounts(&ids).await?;
    accounts.sort_by_key(|a| a.id.as_u128());
    let items: Vec<AccountView> = accounts
        .iter()
        .map(|a| AccountView::new(a, Some(customer.clone())))
        .collect();
    Ok(answer(200, Items { items }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    #[serde(default)]
    before_seq: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
}

/// One history line: the account's balances after the entry and what changed.
#[derive(Serialize, JsonSchema)]
pub struct HistoryItem {
    seq: i64,
    #[schemars(with = "money::TransferId")]
    transfer_id: String,
    /// Change of the posted balance (credits minus debits): + in, − out.
    amount_krw: i64,
    /// Change of the pending amounts (holds placed or released).
    pending_krw: i64,
    direction: Direction,
    balance_after_krw: i64,
    debits_pending_krw: i64,
    credits_pending_krw: i64,
    at_ms: i64,
}

/// Which way the posted balance moved: `hold` when only pending amounts changed.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    In,
    Out,
    Hold,
}

/// A page of history, newest first.
#[derive(Serialize, JsonSchema)]
pub struct HistoryPage {
    account_id: AccountId,
    items: Vec<HistoryItem>,
    /// Where the next page starts (`?before_seq=`); none on the last page.
    next_before_seq: Option<i64>,
    /// The account had a transfer in flight, so it was synced with the core first.
    synced: bool,
    /// A sync was due but the core could not answer: this page may lag the core.
    stale: bool,
}

/// What a sync pulled.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "SyncReport")]
pub struct SyncView {
    account_id: AccountId,
    /// Entries applied by this sync.
    synced: usize,
    last_seq: i64,
    last_seq_before: i64,
}

/// An account's channel transfers not yet final.
#[derive(Serialize, JsonSchema)]
pub struct PendingPage {
    account_id: AccountId,
    items: Vec<super::transfers::ChannelTransferView>,
}

fn posted(entry: &ledger::Entry) -> i64 {
    entry
        .credits_posted
        .get()
        .saturating_sub(entry.debits_posted.get())
}

fn pending_of(entry: &ledger::Entry) -> i64 {
    entry
        .credits_pending
        .get()
        .saturating_sub(entry.debits_pending.get())
}

pub async fn history(
    state: Shared,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let (id, _) = visible(&state, &caller, &id).await?;
    let limit = page_limit(query.limit, 20, &state)?;
    if query.before_seq.is_some_and(|s| s < 1) {
        return Err(ApiError::new(
            "invalid_query",
            "before_seq must be at least 1",
        ));
    }
    let channel = state.channel()?;
    let limit_items = usize::try_from(limit).unwrap_or(20);
    let page = channel
        .history()
        .history(id, query.before_seq, limit_items)
        .await?;
    // The change of the oldest entry needs the one before it.
    let older = match page.entries.last() {
        Some(last) if last.seq > 1 => channel
            .history()
            .history(id, Some(last.seq), 1)
            .await?
            .entries
            .into_iter()
            .next(),
        _ => None,
    };
    let mut items = Vec::with_capacity(page.entries.len());
    for (index, entry) in page.entries.iter().enumerate() {
        let before = page.entries.get(index + 1).or(older.as_ref());
        let (posted_before, pending_before) = before.map_or((0, 0), |b| (posted(b), pending_of(b)));
        let amount_krw = posted(entry).saturating_sub(posted_before);
        let pending_krw = pending_of(entry).saturating_sub(pending_before);
        items.push(HistoryItem {
            seq: entry.seq,
            transfer_id: entry.transfer_id.to_string(),
            amount_krw,
            pending_krw,
            direction: match amount_krw {
                a if a > 0 => Direction::In,
                a if a < 0 => Direction::Out,
                _ => Direction::Hold,
            },
            balance_after_krw: posted(entry),
            debits_pending_krw: entry.debits_pending.get(),
            credits_pending_krw: entry.credits_pending.get(),
            at_ms: entry.created_at.unix_ms(),
        });
    }
    Ok(answer(
        200,
        HistoryPage {
            account_id: id,
            items,
            next_before_seq: page.next_before_seq,
            synced: page.synced,
            stale: page.stale,
        },
    ))
}

pub async fn sync(
    state: Shared,
    caller: Caller,
    Path(id): Path<String>,
    Json(Empty {}): Json<Empty>,
) -> Result<Response, ApiError> {
    let (id, _) = visible(&state, &caller, &id).await?;
    let report = state.channel()?.history().sync(id).await?;
    Ok(answer(
        200,
        SyncView {
            account_id: id,
            synced: report.applied,
            last_seq: report.last_seq_after,
            last_seq_before: report.last_seq_before,
        },
    ))
}

pub async fn pending(
    state: Shared,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (id, _) = visible(&state, &caller, &id).await?;
    let channel = state.channel()?;
    let limit = i64::try_from(state.config().page_items_max).unwrap_or(100);
    let ids = db::channel_transfers_of(state.store(), &id.to_string(), limit).await?;
    let mut items = Vec::new();
    for transfer_id in ids {
        let Ok(transfer_id) = money::TransferId::parse(&transfer_id) else {
            continue;
        };
        if let Some(transfer) = channel.transfers().get(transfer_id).await?
            && transfer.state.is_in_flight()
        {
            items.push(super::transfers::ChannelTransferView::from(&transfer));
        }
    }
    Ok(answer(
        200,
        PendingPage {
            account_id: id,
            items,
        },
    ))
}
