//! Every payroll table and every line of payroll SQL (component `payroll`), written
//! once with `$n` placeholders that SQLite and PostgreSQL both accept.
//!
//! This module owns `payroll_*` tables only; it never reads another crate's tables
//! and never decides anything: callers pass in states already checked by
//! [`crate::state::DepositState::after`].

use store::{Migration, Store, Tx};

use crate::PayrollError;
use crate::state::{DepositState, Stage};
use store::{on_pool, on_tx};

/// Where a read runs: inside the stage's transaction, or on the pool when a
/// consumer prepares its work outside any transaction. One query text for both.
pub(crate) enum Reader<'a> {
    Tx(&'a mut Tx),
    Pool(&'a Store),
}

macro_rules! on_reader {
    ($reader:expr, $query:expr, $method:ident) => {
        match $reader {
            Reader::Tx(tx) => on_tx!(tx, $query, $method),
            Reader::Pool(store) => on_pool!(store, $query, $method),
        }
    };
}

pub(crate) const COMPONENT: &str = "payroll";

const SCHEMA: &str = "
CREATE TABLE payroll_users (
    user_id TEXT PRIMARY KEY,
    holder_name TEXT NOT NULL,
    virtual_account TEXT NOT NULL UNIQUE,
    payout_account TEXT NOT NULL,
    payout_holder TEXT NOT NULL,
    advance_krw BIGINT NOT NULL CHECK (advance_krw >= 0),
    suspend_percent BIGINT NOT NULL CHECK (suspend_percent BETWEEN 0 AND 100),
    last_balance_krw BIGINT NOT NULL DEFAULT 0,
    deposit_cursor BIGINT NOT NULL DEFAULT 0,
    event_seq BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE payroll_deposits (
    deposit_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES payroll_users (user_id),
    account TEXT NOT NULL,
    bank_cursor BIGINT NOT NULL,
    amount_krw BIGINT NOT NULL CHECK (amount_krw > 0),
    detected_by TEXT NOT NULL,
    detected_at_ms BIGINT NOT NULL,
    state TEXT NOT NULL,
    waiting_stage TEXT,
    waiting_reason TEXT,
    provider TEXT,
    repayment_krw BIGINT NOT NULL DEFAULT 0,
    suspend_krw BIGINT NOT NULL DEFAULT 0,
    payout_krw BIGINT NOT NULL DEFAULT 0,
    attempt BIGINT NOT NULL DEFAULT 0,
    attempt_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (account, bank_cursor)
);
CREATE INDEX payroll_deposits_user ON payroll_deposits (user_id, bank_cursor);
CREATE INDEX payroll_deposits_state ON payroll_deposits (state);
CREATE TABLE payroll_event_deposits (
    event_id TEXT PRIMARY KEY,
    deposit_id TEXT NOT NULL REFERENCES payroll_deposits (deposit_id)
);
CREATE TABLE payroll_payout_chunks (
    deposit_id TEXT NOT NULL REFERENCES payroll_deposits (deposit_id),
    chunk BIGINT NOT NULL,
    bank_tran_id TEXT NOT NULL UNIQUE,
    amount_krw BIGINT NOT NULL CHECK (amount_krw > 0),
    PRIMARY KEY (deposit_id, chunk)
);
CREATE TABLE payroll_alerts (
    deposit_id TEXT NOT NULL REFERENCES payroll_deposits (deposit_id),
    reason TEXT NOT NULL,
    user_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    next_step TEXT NOT NULL,
    message TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    delivered_at_ms BIGINT,
    PRIMARY KEY (deposit_id, reason)
);
CREATE TABLE payroll_poll (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    round BIGINT NOT NULL,
    after_user TEXT,
    finished BIGINT NOT NULL
);
INSERT INTO payroll_poll (id, round, after_user, finished) VALUES (1, 0, NULL, 1);
";

const STAGE_LOG_SQLITE: &str = "
CREATE TABLE payroll_stage_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    deposit_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);";

const STAGE_LOG_POSTGRES: &str = "
CREATE TABLE payroll_stage_log (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    deposit_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);";

pub(crate) fn migrations() -> Vec<Migration> {
    vec![
        Migration {
            version: 1,
            name: "users, deposits, chunks, alerts, poll state",
            sqlite: SCHEMA,
            postgres: SCHEMA,
        },
        Migration {
            version: 2,
            name: "stage log",
            sqlite: STAGE_LOG_SQLITE,
            postgres: STAGE_LOG_POSTGRES,
        },
        Migration {
            version: 3,
            name: "stage claims",
            sqlite: crate::claims::SCHEMA,
            postgres: crate::claims::SCHEMA,
        },
        Migration {
            version: 4,
            name: "operator actions",
            sqlite: crate::operations::SCHEMA_SQLITE,
            postgres: crate::operations::SCHEMA_POSTGRES,
        },
        Migration {
            version: 5,
            name: "virtual accounts per provider, advance at enrolment",
            sqlite: IMPORT_SCHEMA,
            postgres: IMPORT_SCHEMA,
        },
    ]
}

/// A user's virtual account at each provider (an import names them; the one of
/// the provider routing picks at enrolment is also `payroll_users.virtual_account`),
/// and the advance a user was enrolled with (`advance_krw` shrinks as it is
/// repaid), so importing the same file again compares like with like.
const IMPORT_SCHEMA: &str = "
CREATE TABLE payroll_virtual_accounts (
    user_id TEXT NOT NULL REFERENCES payroll_users (user_id),
    provider TEXT NOT NULL,
    account_number TEXT NOT NULL,
    PRIMARY KEY (user_id, provider),
    UNIQUE (provider, account_number)
);
ALTER TABLE payroll_users ADD COLUMN advance_enrolled_krw BIGINT;
";

pub(crate) async fn migrate(store: &Store) -> Result<(), PayrollError> {
    let migrations = migrations();
    store.migrate(COMPONENT, &migrations).await?;
    Ok(())
}

/// A user as payroll knows them.
#[derive(Clone, Debug)]
pub(crate) struct UserRow {
    pub user_id: String,
    pub holder_name: String,
    pub virtual_account: String,
    pub payout_account: String,
    pub payout_holder: String,
    pub advance_krw: i64,
    pub suspend_percent: i64,
    pub last_balance_krw: i64,
    pub deposit_cursor: i64,
}

type UserTuple = (String, String, String, String, String, i64, i64, i64, i64);

const USER_COLUMNS: &str = "user_id, holder_name, virtual_account, payout_account, payout_holder, \
    advance_krw, suspend_percent, last_balance_krw, deposit_cursor";

fn user_from(t: UserTuple) -> UserRow {
    UserRow {
        user_id: t.0,
        holder_name: t.1,
        virtual_account: t.2,
        payout_account: t.3,
        payout_holder: t.4,
        advance_krw: t.5,
        suspend_percent: t.6,
        last_balance_krw: t.7,
        deposit_cursor: t.8,
    }
}

pub(crate) async fn insert_user(
    tx: &mut Tx,
    user: &UserRow,
    now_ms: i64,
) -> Result<bool, PayrollError> {
    let inserted = on_tx!(
        tx,
        sqlx::query(
            "INSERT INTO payroll_users (user_id, holder_name, virtual_account, payout_account,
                payout_holder, advance_krw, suspend_percent, created_at_ms, advance_enrolled_krw)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $6) ON CONFLICT (user_id) DO NOTHING"
        )
        .bind(&user.user_id)
        .bind(&user.holder_name)
        .bind(&user.virtual_account)
        .bind(&user.payout_account)
        .bind(&user.payout_holder)
        .bind(user.advance_krw)
        .bind(user.suspend_percent)
        .bind(now_ms),
        execute
    )?;
    Ok(inserted == 1)
}

/// A user as an import line states them: the fields an import compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ImportedUser {
    pub holder_name: String,
    pub payout_account: String,
    pub payout_holder: String,
    /// The advance at enrolment (not what is left of it).
    pub advance_krw: i64,
    pub suspend_percent: i64,
    /// Provider name → virtual account number.
    pub virtual_accounts: std::collections::BTreeMap<String, String>,
}

type ImportedTuple = (String, String, String, String, String, i64, i64);

/// The stored users among `user_ids`, as imports compare them. A user enrolled
/// without naming accounts per provider has only `virtual_account`, under the
/// name `""` (the caller knows which provider served them).
pub(crate) async fn imported_users(
    store: &Store,
    user_ids: &[String],
) -> Result<std::collections::BTreeMap<String, ImportedUser>, PayrollError> {
    let mut found = std::collections::BTreeMap::new();
    for page in user_ids.chunks(500) {
        let placeholders = (1..=page.len())
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT user_id, holder_name, virtual_account, payout_account, payout_holder,
                    COALESCE(advance_enrolled_krw, advance_krw), suspend_percent
             FROM payroll_users WHERE user_id IN ({placeholders})"
        );
        let rows: Vec<ImportedTuple> = on_pool!(
            store,
            page.iter()
                .fold(sqlx::query_as::<_, ImportedTuple>(&sql), |q, id| q.bind(id)),
            fetch_all
        )?;
        for row in rows {
            let user = ImportedUser {
                holder_name: row.1,
                payout_account: row.3,
                payout_holder: row.4,
                advance_krw: row.5,
                suspend_percent: row.6,
                virtual_accounts: [(String::new(), row.2)].into(),
            };
            found.insert(row.0, user);
        }
        let sql = format!(
            "SELECT user_id, provider, account_number FROM payroll_virtual_accounts
             WHERE user_id IN ({placeholders})"
        );
        let accounts: Vec<(String, String, String)> = on_pool!(
            store,
            page.iter().fold(
                sqlx::query_as::<_, (String, String, String)>(&sql),
                |q, id| q.bind(id)
            ),
            fetch_all
        )?;
        for (user_id, provider, account) in accounts {
            if let Some(user) = found.get_mut(&user_id) {
                user.virtual_accounts.remove("");
                user.virtual_accounts.insert(provider, account);
            }
        }
    }
    Ok(found)
}

/// Who holds virtual account `account` (at `provider`, or as a user's polled account).
pub(crate) async fn virtual_account_holder(
    store: &Store,
    provider: &str,
    account: &str,
) -> Result<Option<String>, PayrollError> {
    Ok(on_pool!(
        store,
        sqlx::query_scalar::<_, String>(
            "SELECT user_id FROM payroll_users WHERE virtual_account = $1
             UNION SELECT user_id FROM payroll_virtual_accounts
             WHERE provider = $2 AND account_number = $1"
        )
        .bind(account)
        .bind(provider),
        fetch_optional
    )?)
}

/// Records a user's virtual account at a provider; false when one was stored.
pub(crate) async fn insert_virtual_account(
    tx: &mut Tx,
    user_id: &str,
    provider: &str,
    account: &str,
) -> Result<bool, PayrollError> {
    let inserted = on_tx!(
        tx,
        sqlx::query(
            "INSERT INTO payroll_virtual_accounts (user_id, provider, account_number)
             VALUES ($1, $2, $3) ON CONFLICT (user_id, provider) DO NOTHING"
        )
        .bind(user_id)
        .bind(provider)
        .bind(account),
        execute
    )?;
    Ok(inserted == 1)
}

pub(crate) async fn user_tx(tx: &mut Tx, user_id: &str) -> Result<Option<UserRow>, PayrollError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM payroll_users WHERE user_id = $1");
    let row: Option<UserTuple> = on_tx!(
        tx,
        sqlx::query_as::<_, UserTuple>(&sql).bind(user_id),
        fetch_optional
    )?;
    Ok(row.map(user_from))
}

pub(crate) async fn user(store: &Store, user_id: &str) -> Result<Option<UserRow>, PayrollError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM payroll_users WHERE user_id = $1");
    let row: Option<UserTuple> = on_pool!(
        store,
        sqlx::query_as::<_, UserTuple>(&sql).bind(user_id),
        fetch_optional
    )?;
    Ok(row.map(user_from))
}

/// Users after `after` (by id), at most `limit`.
pub(crate) async fn users_page(
    store: &Store,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<UserRow>, PayrollError> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM payroll_users WHERE user_id > $1 ORDER BY user_id LIMIT $2"
    );
    let rows: Vec<UserTuple> = on_pool!(
        store,
        sqlx::query_as::<_, UserTuple>(&sql)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit)),
        fetch_all
    )?;
    Ok(rows.into_iter().map(user_from).collect())
}

pub(crate) async fn user_count(store: &Store) -> Result<i64, PayrollError> {
    let (count,): (i64,) = on_pool!(
        store,
        sqlx::query_as::<_, (i64,)>("SELECT COUNT(*) FROM payroll_users"),
        fetch_one
    )?;
    Ok(count)
}

/// The next seq of the user's event key (gapless from 1, the backbone's contract).
pub(crate) async fn next_seq(tx: &mut Tx, user_id: &str) -> Result<i64, PayrollError> {
    let (seq,): (i64,) = on_tx!(
        tx,
        sqlx::query_as::<_, (i64,)>(
            "UPDATE payroll_users SET event_seq = event_seq + 1 WHERE user_id = $1 RETURNING event_seq"
        )
        .bind(user_id),
        fetch_one
    )?;
    Ok(seq)
}

/// Records what the poller saw in a virtual account.
pub(crate) async fn set_polled(
    tx: &mut Tx,
    user_id: &str,
    balance_krw: i64,
    cursor: i64,
) -> Result<(), PayrollError> {
    on_tx!(
        tx,
        sqlx::query(
            "UPDATE payroll_users SET last_balance_krw = $2, deposit_cursor = $3 WHERE user_id = $1"
        )
        .bind(user_id)
        .bind(balance_krw)
        .bind(cursor),
        execute
    )?;
    Ok(())
}

pub(crate) async fn reduce_advance(
    tx: &mut Tx,
    user_id: &str,
    by_krw: i64,
) -> Result<(), PayrollError> {
    on_tx!(
        tx,
        sqlx::query(
            "UPDATE payroll_users SET advance_krw = CASE WHEN advance_krw > $2 THEN advance_krw - $2 ELSE 0 END
             WHERE user_id = $1"
        )
        .bind(user_id)
        .bind(by_krw),
        execute
    )?;
    Ok(())
}

/// A deposit row.
#[derive(Clone, Debug)]
pub(crate) struct DepositRow {
    pub deposit_id: String,
    pub user_id: String,
    pub account: String,
    pub bank_cursor: i64,
    pub amount_krw: i64,
    pub state: DepositState,
    pub waiting_stage: Option<Stage>,
    pub waiting_reason: Option<String>,
    pub provider: Option<String>,
    pub repayment_krw: i64,
    pub suspend_krw: i64,
    pub payout_krw: i64,
    pub attempt: i64,
    pub attempt_at_ms: i64,
    pub detected_at_ms: i64,
    pub updated_at_ms: i64,
}

type DepositTuple = (
    String,
    String,
    String,
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
);

const DEPOSIT_COLUMNS: &str = "deposit_id, user_id, account, bank_cursor, amount_krw, state, \
    waiting_stage, waiting_reason, provider, repayment_krw, suspend_krw, payout_krw, attempt, \
    attempt_at_ms, detected_at_ms, updated_at_ms";

fn deposit_from(t: DepositTuple) -> Result<DepositRow, PayrollError> {
    let state = DepositState::parse(&t.5)
        .ok_or_else(|| PayrollError::Corrupt(format!("deposit {} has state {:?}", t.0, t.5)))?;
    let waiting_stage = match t.6.as_deref() {
        Some(text) => Some(Stage::parse(text).ok_or_else(|| {
            PayrollError::Corrupt(format!("deposit {} waits at stage {text:?}", t.0))
        })?),
        None => None,
    };
    Ok(DepositRow {
        deposit_id: t.0,
        user_id: t.1,
        account: t.2,
        bank_cursor: t.3,
        amount_krw: t.4,
        state,
        waiting_stage,
        waiting_reason: t.7,
        provider: t.8,
        repayment_krw: t.9,
        suspend_krw: t.10,
        payout_krw: t.11,
        attempt: t.12,
        attempt_at_ms: t.13,
        detected_at_ms: t.14,
        updated_at_ms: t.15,
    })
}

/// A new deposit, as the poller saw it.
pub(crate) struct NewDeposit<'a> {
    pub deposit_id: &'a str,
    pub user_id: &'a str,
    pub account: &'a str,
    pub bank_cursor: i64,
    pub amount_krw: i64,
    pub detected_by: &'a str,
}

/// Inserts a deposit once; `false` when it was already known.
pub(crate) async fn insert_deposit(
    tx: &mut Tx,
    deposit: &NewDeposit<'_>,
    now_ms: i64,
) -> Result<bool, PayrollError> {
    let inserted = on_tx!(
        tx,
        sqlx::query(
            "INSERT INTO payroll_deposits (deposit_id, user_id, account, bank_cursor, amount_krw,
                detected_by, detected_at_ms, state, attempt_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7, $7)
             ON CONFLICT DO NOTHING"
        )
        .bind(deposit.deposit_id)
        .bind(deposit.user_id)
        .bind(deposit.account)
        .bind(deposit.bank_cursor)
        .bind(deposit.amount_krw)
        .bind(deposit.detected_by)
        .bind(now_ms)
        .bind(DepositState::Detected.as_str()),
        execute
    )?;
    Ok(inserted == 1)
}

pub(crate) async fn deposit_tx(
    tx: &mut Tx,
    deposit_id: &str,
) -> Result<Option<DepositRow>, PayrollError> {
    let sql = format!("SELECT {DEPOSIT_COLUMNS} FROM payroll_deposits WHERE deposit_id = $1");
    let row: Option<DepositTuple> = on_tx!(
        tx,
        sqlx::query_as::<_, DepositTuple>(&sql).bind(deposit_id),
        fetch_optional
    )?;
    row.map(deposit_from).transpose()
}

pub(crate) async fn deposit(
    store: &Store,
    deposit_id: &str,
) -> Result<Option<DepositRow>, PayrollError> {
    let sql = format!("SELECT {DEPOSIT_COLUMNS} FROM payroll_deposits WHERE deposit_id = $1");
    let row: Option<DepositTuple> = on_pool!(
        store,
        sqlx::query_as::<_, DepositTuple>(&sql).bind(deposit_id),
        fetch_optional
    )?;
    row.map(deposit_from).transpose()
}

/// Every deposit, oldest first (tests and reports; bounded by `limit`).
pub(crate) async fn deposits(store: &Store, limit: i64) -> Result<Vec<DepositRow>, PayrollError> {
    let sql = format!(
        "SELECT {DEPOSIT_COLUMNS} FROM payroll_deposits ORDER BY detected_at_ms, deposit_id LIMIT $1"
    );
    let rows: Vec<DepositTuple> = on_pool!(
        store,
        sqlx::query_as::<_, DepositTuple>(&sql).bind(limit),
        fetch_all
    )?;
    rows.into_iter().map(deposit_from).collect()
}

/// Deposits not terminal and not touched since `before_ms`, oldest first.
pub(crate) async fn stuck(
    store: &Store,
    before_ms: i64,
    limit: i64,
) -> Result<Vec<DepositRow>, PayrollError> {
    let sql = format!(
        "SELECT {DEPOSIT_COLUMNS} FROM payroll_deposits
         WHERE state NOT IN ('completed', 'rolled_back', 'resolved') AND updated_at_ms < $1
         ORDER BY updated_at_ms, deposit_id LIMIT $2"
    );
    let rows: Vec<DepositTuple> = on_pool!(
        store,
        sqlx::query_as::<_, DepositTuple>(&sql)
            .bind(before_ms)
            .bind(limit),
        fetch_all
    )?;
    rows.into_iter().map(deposit_from).collect()
}

pub(crate) async fn state_counts(store: &Store) -> Result<Vec<(String, i64)>, PayrollError> {
    let rows: Vec<(String, i64)> = on_pool!(
        store,
        sqlx::query_as::<_, (String, i64)>(
            "SELECT state, COUNT(*) FROM payroll_deposits GROUP BY state ORDER BY state"
        ),
        fetch_all
    )?;
    Ok(rows)
}

/// Moves a deposit from `from` to `to` only if it is still in `from`; `false`
/// when someone else moved it first.
pub(crate) async fn move_state(
    tx: &mut Tx,
    deposit_id: &str,
    from: DepositState,
    to: DepositState,
    waiting: Option<(Stage, &str)>,
    now_ms: i64,
) -> Result<bool, PayrollError> {
    let moved = on_tx!(
        tx,
        sqlx::query(
            "UPDATE payroll_deposits SET state = $3, waiting_stage = $4, waiting_reason = $5,
                updated_at_ms = $6
             WHERE deposit_id = $1 AND state = $2"
        )
        .bind(deposit_id)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(waiting.map(|w| w.0.as_str()))
        .bind(waiting.map(|w| w.1))
        .bind(now_ms),
        execute
    )?;
    Ok(moved == 1)
}

pub(crate) async fn set_split(
    tx: &mut Tx,
    deposit_id: &str,
    provider: &str,
    repayment_krw: i64,
    suspend_krw: i64,
    payout_krw: i64,
) -> Result<(), PayrollError> {
    on_tx!(
        tx,
        sqlx::query(
            "UPDATE payroll_deposits SET provider = $2, repayment_krw = $3, suspend_krw = $4,
                payout_krw = $5 WHERE deposit_id = $1"
        )
        .bind(deposit_id)
        .bind(provider)
        .bind(repayment_krw)
        .bind(suspend_krw)
        .bind(payout_krw),
        execute
    )?;
    Ok(())
}

pub(crate) async fn next_attempt(
    tx: &mut Tx,
    deposit_id: &str,
    now_ms: i64,
) -> Result<(), PayrollError> {
    on_tx!(
        tx,
        sqlx::query(
            "UPDATE payroll_deposits SET attempt = attempt + 1, attempt_at_ms = $2 WHERE deposit_id = $1"
        )
        .bind(deposit_id)
        .bind(now_ms),
        execute
    )?;
    Ok(())
}

pub(crate) async fn map_event(
    tx: &mut Tx,
    event_id: &str,
    deposit_id: &str,
) -> Result<(), PayrollError> {
    on_tx!(
        tx,
        sqlx::query("INSERT INTO payroll_event_deposits (event_id, deposit_id) VALUES ($1, $2)")
            .bind(event_id)
            .bind(deposit_id),
        execute
    )?;
    Ok(())
}

pub(crate) async fn deposit_of_event(
    reader: Reader<'_>,
    event_id: &str,
) -> Result<Option<String>, PayrollError> {
    let row: Option<(String,)> = on_reader!(
        reader,
        sqlx::query_as::<_, (String,)>(
            "SELECT deposit_id FROM payroll_event_deposits WHERE event_id = $1"
        )
        .bind(event_id),
        fetch_optional
    )?;
    Ok(row.map(|r| r.0))
}

pub(crate) async fn paid_chunks(
    reader: Reader<'_>,
    deposit_id: &str,
) -> Result<Vec<(i64, i64)>, PayrollError> {
    let rows: Vec<(i64, i64)> = on_reader!(
        reader,
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT chunk, amount_krw FROM payroll_payout_chunks WHERE deposit_id = $1 ORDER BY chunk"
        )
        .bind(deposit_id),
        fetch_all
    )?;
    Ok(rows)
}

pub(crate) async fn insert_chunk(
    tx: &mut Tx,
    deposit_id: &str,
    chunk: i64,
    bank_tran_id: &str,
    amount_krw: i64,
) -> Result<(), PayrollError> {
    on_tx!(
        tx,
        sqlx::query(
            "INSERT INTO payroll_payout_chunks (deposit_id, chunk, bank_tran_id, amount_krw)
             VALUES ($1, $2, $3, $4) ON CONFLICT (deposit_id, chunk) DO NOTHING"
        )
        .bind(deposit_id)
        .bind(chunk)
        .bind(bank_tran_id)
        .bind(amount_krw),
        execute
    )?;
    Ok(())
}

pub(crate) async fn log_stage(
    tx: &mut Tx,
    deposit_id: &str,
    user_id: &str,
    stage: Stage,
    now_ms: i64,
) -> Result<(), PayrollError> {
    on_tx!(
        tx,
        sqlx::query(
            "INSERT INTO payroll_stage_log (deposit_id, user_id, stage, at_ms) VALUES ($1, $2, $3, $4)"
        )
        .bind(deposit_id)
        .bind(user_id)
        .bind(stage.as_str())
        .bind(now_ms),
        execute
    )?;
    Ok(())
}

/// The stage log in commit order: `(deposit_id, user_id, stage)`.
pub(crate) async fn stage_log(
    store: &Store,
    limit: i64,
) -> Result<Vec<(String, String, String)>, PayrollError> {
    let rows: Vec<(String, String, String)> = on_pool!(
        store,
        sqlx::query_as::<_, (String, String, String)>(
            "SELECT deposit_id, user_id, stage FROM payroll_stage_log ORDER BY id LIMIT $1"
        )
        .bind(limit),
        fetch_all
    )?;
    Ok(rows)
}

/// An alert as stored.
#[derive(Clone, Debug, serde::Serialize, schemars::JsonSchema)]
pub struct AlertRow {
    pub deposit_id: String,
    pub reason: String,
    pub user_id: String,
    pub stage: String,
    pub next_step: String,
    pub message: String,
    pub created_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
}

type AlertTuple = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
);

const ALERT_COLUMNS: &str =
    "deposit_id, reason, user_id, stage, next_step, message, created_at_ms, delivered_at_ms";

fn alert_from(t: AlertTuple) -> AlertRow {
    AlertRow {
        deposit_id: t.0,
        reason: t.1,
        user_id: t.2,
        stage: t.3,
        next_step: t.4,
        message: t.5,
        created_at_ms: t.6,
        delivered_at_ms: t.7,
    }
}

/// Records an alert once per (deposit, reason); `false` when it already exists.
pub(crate) async fn insert_alert(
    tx: &mut Tx,
    alert: &AlertRow,
    event_id: &str,
) -> Result<bool, PayrollError> {
    let inserted = on_tx!(
        tx,
        sqlx::query(
            "INSERT INTO payroll_alerts (deposit_id, reason, user_id, stage, next_step, message,
                event_id, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (deposit_id, reason) DO NOTHING"
        )
        .bind(&alert.deposit_id)
        .bind(&alert.reason)
        .bind(&alert.user_id)
        .bind(&alert.stage)
        .bind(&alert.next_step)
        .bind(&alert.message)
        .bind(event_id)
        .bind(alert.created_at_ms),
        execute
    )?;
    Ok(inserted == 1)
}

pub(crate) async fn alert_of_event(
    reader: Reader<'_>,
    event_id: &str,
) -> Result<Option<AlertRow>, PayrollError> {
    let sql = format!("SELECT {ALERT_COLUMNS} FROM payroll_alerts WHERE event_id = $1");
    let row: Option<AlertTuple> = on_reader!(
        reader,
        sqlx::query_as::<_, AlertTuple>(&sql).bind(event_id),
        fetch_optional
    )?;
    Ok(row.map(alert_from))
}

pub(crate) async fn alert_delivered(
    tx: &mut Tx,
    event_id: &str,
    now_ms: i64,
) -> Result<(), PayrollError> {
    on_tx!(
        tx,
        sqlx::query("UPDATE payroll_alerts SET delivered_at_ms = $2 WHERE event_id = $1")
            .bind(event_id)
            .bind(now_ms),
        execute
    )?;
    Ok(())
}

pub(crate) async fn alerts(store: &Store, limit: i64) -> Result<Vec<AlertRow>, PayrollError> {
    let sql = format!(
        "SELECT {ALERT_COLUMNS} FROM payroll_alerts ORDER BY created_at_ms DESC, deposit_id LIMIT $1"
    );
    let rows: Vec<AlertTuple> = on_pool!(
        store,
        sqlx::query_as::<_, AlertTuple>(&sql).bind(limit),
        fetch_all
    )?;
    Ok(rows.into_iter().map(alert_from).collect())
}

/// The poll round in progress: `(round, after_user, finished)`.
pub(crate) async fn poll_state(store: &Store) -> Result<(i64, Option<String>, bool), PayrollError> {
    let (round, after, finished): (i64, Option<String>, i64) = on_pool!(
        store,
        sqlx::query_as::<_, (i64, Option<String>, i64)>(
            "SELECT round, after_user, finished FROM payroll_poll WHERE id = 1"
        ),
        fetch_one
    )?;
    Ok((round, after, finished != 0))
}

pub(crate) async fn set_poll_state(
    store: &Store,
    round: i64,
    after_user: Option<&str>,
    finished: bool,
) -> Result<(), PayrollError> {
    on_pool!(
        store,
        sqlx::query(
            "UPDATE payroll_poll SET round = $1, after_user = $2, finished = $3 WHERE id = 1"
        )
        .bind(round)
        .bind(after_user)
        .bind(i64::from(finished)),
        execute
    )?;
    Ok(())
}

pub(crate) async fn restore_advance(
    tx: &mut Tx,
    user_id: &str,
    by_krw: i64,
) -> Result<(), PayrollError> {
    on_tx!(
        tx,
        sqlx::query("UPDATE payroll_users SET advance_krw = advance_krw + $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(by_krw),
        execute
    )?;
    Ok(())
}

pub(crate) async fn alert_exists(
    tx: &mut Tx,
    deposit_id: &str,
    reason: &str,
) -> Result<bool, PayrollError> {
    let (count,): (i64,) = on_tx!(
        tx,
        sqlx::query_as::<_, (i64,)>(
            "SELECT COUNT(*) FROM payroll_alerts WHERE deposit_id = $1 AND reason = $2"
        )
        .bind(deposit_id)
        .bind(reason),
        fetch_one
    )?;
    Ok(count > 0)
}

/// The user's earliest deposit before `bank_cursor` that waits for an operator:
/// `(deposit_id, waiting_stage)`.
pub(crate) async fn earlier_waiting(
    reader: Reader<'_>,
    user_id: &str,
    bank_cursor: i64,
) -> Result<Vec<(String, Option<String>)>, PayrollError> {
    let rows: Vec<(String, Option<String>)> = on_reader!(
        reader,
        sqlx::query_as::<_, (String, Option<String>)>(
            "SELECT deposit_id, waiting_stage FROM payroll_deposits
             WHERE user_id = $1 AND bank_cursor < $2 AND state = 'waiting'
             ORDER BY bank_cursor LIMIT 64"
        )
        .bind(user_id)
        .bind(bank_cursor),
        fetch_all
    )?;
    Ok(rows)
}

/// The user's deposits waiting behind `reason` (`behind:<deposit>`), oldest first.
pub(crate) async fn waiting_behind(
    tx: &mut Tx,
    user_id: &str,
    reason: &str,
) -> Result<Vec<String>, PayrollError> {
    let rows: Vec<(String,)> = on_tx!(
        tx,
        sqlx::query_as::<_, (String,)>(
            "SELECT deposit_id FROM payroll_deposits
             WHERE user_id = $1 AND state = 'waiting' AND waiting_reason = $2
             ORDER BY bank_cursor LIMIT 1000"
        )
        .bind(user_id)
        .bind(reason),
        fetch_all
    )?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}
