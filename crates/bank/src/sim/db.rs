//! The simulator's durable state, component `banksim`: accounts, transfers keyed by
//! `bank_tran_id` (the idempotency key), and movements (every won that moved, for
//! statements and virtual-account deposit listings).
//!
//! This module owns all of the simulator's SQL and nothing else; it never decides
//! whether a transfer should succeed. Balances are computed in Rust with checked
//! [`Krw`] arithmetic and written back whole, never by SQL arithmetic (SQLite would
//! silently turn an overflow into a float).

use money::Krw;
use serde::{Deserialize, Serialize};
use store::{Backend, Migration, Store, Tx};

use crate::BankError;
use crate::sql::{on_pool, on_tx};
use crate::types::{
    AccountNumber, BankTranId, DepositId, HolderName, TranDate, TransferKind, TransferOutcome,
    TransferReceipt, UserId, VirtualDeposit,
};

pub(crate) const COMPONENT: &str = "banksim";

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "accounts transfers movements",
    sqlite: "
CREATE TABLE banksim_accounts (
    account_number TEXT PRIMARY KEY,
    holder_name TEXT NOT NULL,
    balance_krw INTEGER NOT NULL CHECK (balance_krw >= 0),
    frozen INTEGER NOT NULL DEFAULT 0,
    repayment_due_krw INTEGER NOT NULL DEFAULT 0 CHECK (repayment_due_krw >= 0),
    user_id TEXT UNIQUE
);
CREATE TABLE banksim_transfers (
    bank_tran_id TEXT PRIMARY KEY,
    tran_date TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('deposit', 'withdraw')),
    from_account TEXT NOT NULL,
    to_account TEXT NOT NULL,
    amount_krw INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('succeeded', 'failed')),
    error_code TEXT,
    error_message TEXT,
    limit_krw INTEGER,
    processed_at_ms INTEGER NOT NULL
);
CREATE TABLE banksim_movements (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    bank_tran_id TEXT UNIQUE REFERENCES banksim_transfers (bank_tran_id),
    from_account TEXT,
    to_account TEXT NOT NULL,
    amount_krw INTEGER NOT NULL CHECK (amount_krw > 0),
    depositor_name TEXT NOT NULL DEFAULT '',
    repayment_krw INTEGER NOT NULL DEFAULT 0,
    suspended_krw INTEGER NOT NULL DEFAULT 0,
    at_ms INTEGER NOT NULL
);
CREATE INDEX banksim_movements_to ON banksim_movements (to_account, seq);
",
    postgres: "
CREATE TABLE banksim_accounts (
    account_number TEXT PRIMARY KEY,
    holder_name TEXT NOT NULL,
    balance_krw BIGINT NOT NULL CHECK (balance_krw >= 0),
    frozen BIGINT NOT NULL DEFAULT 0,
    repayment_due_krw BIGINT NOT NULL DEFAULT 0 CHECK (repayment_due_krw >= 0),
    user_id TEXT UNIQUE
);
CREATE TABLE banksim_transfers (
    bank_tran_id TEXT PRIMARY KEY,
    tran_date TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('deposit', 'withdraw')),
    from_account TEXT NOT NULL,
    to_account TEXT NOT NULL,
    amount_krw BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('succeeded', 'failed')),
    error_code TEXT,
    error_message TEXT,
    limit_krw BIGINT,
    processed_at_ms BIGINT NOT NULL
);
CREATE TABLE banksim_movements (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    bank_tran_id TEXT UNIQUE REFERENCES banksim_transfers (bank_tran_id),
    from_account TEXT,
    to_account TEXT NOT NULL,
    amount_krw BIGINT NOT NULL CHECK (amount_krw > 0),
    depositor_name TEXT NOT NULL DEFAULT '',
    repayment_krw BIGINT NOT NULL DEFAULT 0,
    suspended_krw BIGINT NOT NULL DEFAULT 0,
    at_ms BIGINT NOT NULL
);
CREATE INDEX banksim_movements_to ON banksim_movements (to_account, seq);
",
}];

/// A database failure inside the simulator is the bank's own 500: the caller cannot
/// know whether anything committed.
pub(crate) fn db_error(error: impl std::fmt::Display) -> BankError {
    tracing::error!(%error, "simulator database error");
    BankError::Server {
        status: 500,
        message: "bank internal error".to_owned(),
    }
}

/// One account, as read inside a transaction that may change it.
#[derive(Clone, Debug)]
pub(crate) struct AccountRow {
    pub account_number: String,
    pub holder_name: String,
    pub balance_krw: Krw,
    pub frozen: bool,
    pub repayment_due_krw: Krw,
}

type AccountTuple = (String, String, i64, i64, i64);

fn account_from(row: AccountTuple) -> AccountRow {
    AccountRow {
        account_number: row.0,
        holder_name: row.1,
        balance_krw: Krw::new(row.2),
        frozen: row.3 != 0,
        repayment_due_krw: Krw::new(row.4),
    }
}

/// Reads an account and, on PostgreSQL, locks its row until the transaction ends
/// (SQLite's `BEGIN IMMEDIATE` already holds the whole database).
pub(crate) async fn lock_account(
    tx: &mut Tx,
    number: &str,
) -> Result<Option<AccountRow>, BankError> {
    let sql = match tx.backend() {
        Backend::Sqlite => {
            "SELECT account_number, holder_name, balance_krw, frozen, repayment_due_krw
             FROM banksim_accounts WHERE account_number = $1"
        }
        Backend::Postgres => {
            "SELECT account_number, holder_name, balance_krw, frozen, repayment_due_krw
             FROM banksim_accounts WHERE account_number = $1 FOR UPDATE"
        }
    };
    let row: Option<AccountTuple> = on_tx!(
        tx,
        sqlx::query_as::<_, AccountTuple>(sql).bind(number),
        fetch_optional
    )
    .map_err(db_error)?;
    Ok(row.map(account_from))
}

pub(crate) async fn read_account(
    store: &Store,
    number: &str,
) -> Result<Option<AccountRow>, BankError> {
    let row: Option<AccountTuple> = on_pool!(
        store,
        sqlx::query_as::<_, AccountTuple>(
            "SELECT account_number, holder_name, balance_krw, frozen, repayment_due_krw
             FROM banksim_accounts WHERE account_number = $1"
        )
        .bind(number),
        fetch_optional
    )
    .map_err(db_error)?;
    Ok(row.map(account_from))
}

pub(crate) async fn set_balance(tx: &mut Tx, number: &str, balance: Krw) -> Result<(), BankError> {
    if balance.get() < 0 {
        // The caller checked funds; a negative balance here is a bug, not a refusal.
        tracing::error!(number, %balance, "refusing to write a negative balance");
        return Err(db_error("negative balance"));
    }
    on_tx!(
        tx,
        sqlx::query("UPDATE banksim_accounts SET balance_krw = $1 WHERE account_number = $2")
            .bind(balance.get())
            .bind(number),
        execute
    )
    .map_err(db_error)?;
    Ok(())
}

/// A transfer as the simulator recorded it: succeeded, or failed with a code.
#[derive(Clone, Debug)]
pub(crate) struct StoredTransfer {
    pub receipt: TransferReceipt,
    pub failure: Option<BankError>,
}

impl StoredTransfer {
    pub fn outcome(&self) -> TransferOutcome {
        match &self.failure {
            None => TransferOutcome::Succeeded {
                receipt: self.receipt.clone(),
            },
            Some(error) => TransferOutcome::Failed {
                code: error.code().to_owned(),
                message: error.to_string(),
            },
        }
    }

    pub fn result(&self) -> Result<TransferReceipt, BankError> {
        match &self.failure {
            None => Ok(self.receipt.clone()),
            Some(error) => Err(error.clone()),
        }
    }
}

type TransferTuple = (
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    i64,
);

const SELECT_TRANSFER: &str = "SELECT bank_tran_id, tran_date, kind, from_account, to_account,
    amount_krw, status, error_code, error_message, limit_krw, processed_at_ms
    FROM banksim_transfers WHERE bank_tran_id = $1";

fn transfer_from(row: TransferTuple) -> Result<StoredTransfer, BankError> {
    let corrupt = |what: &str| db_error(format!("stored transfer {} has a bad {what}", row.0));
    let receipt = TransferReceipt {
        bank_tran_id: BankTranId::new(&row.0).map_err(|_| corrupt("id"))?,
        tran_date: TranDate::parse(&row.1).map_err(|_| corrupt("date"))?,
        kind: TransferKind::parse(&row.2).ok_or_else(|| corrupt("kind"))?,
        from_account: AccountNumber::new(&row.3).map_err(|_| corrupt("from_account"))?,
        to_account: AccountNumber::new(&row.4).map_err(|_| corrupt("to_account"))?,
        amount_krw: Krw::new(row.5),
        processed_at_ms: row.10,
    };
    let failure = match row.6.as_str() {
        "succeeded" => None,
        _ => {
            let code = row.7.unwrap_or_default();
            let message = row.8.unwrap_or_default();
            Some(
                BankError::definite_from_code(&code, &message, row.9)
                    .ok_or_else(|| corrupt("error code"))?,
            )
        }
    };
    Ok(StoredTransfer { receipt, failure })
}

pub(crate) async fn find_transfer_tx(
    tx: &mut Tx,
    id: &BankTranId,
) -> Result<Option<StoredTransfer>, BankError> {
    let row: Option<TransferTuple> = on_tx!(
        tx,
        sqlx::query_as::<_, TransferTuple>(SELECT_TRANSFER).bind(id.as_str()),
        fetch_optional
    )
    .map_err(db_error)?;
    row.map(transfer_from).transpose()
}

pub(crate) async fn find_transfer(
    store: &Store,
    id: &BankTranId,
) -> Result<Option<StoredTransfer>, BankError> {
    let row: Option<TransferTuple> = on_pool!(
        store,
        sqlx::query_as::<_, TransferTuple>(SELECT_TRANSFER).bind(id.as_str()),
        fetch_optional
    )
    .map_err(db_error)?;
    row.map(transfer_from).transpose()
}

/// Records a transfer's result under its `bank_tran_id`. A unique violation means a
/// concurrent call with the same id committed first; it is returned as `Ok(false)`
/// so the caller can roll back and answer with the stored result.
pub(crate) async fn insert_transfer(
    tx: &mut Tx,
    transfer: &StoredTransfer,
) -> Result<bool, BankError> {
    let receipt = &transfer.receipt;
    let status = if transfer.failure.is_some() {
        "failed"
    } else {
        "succeeded"
    };
    let inserted = on_tx!(
        tx,
        sqlx::query(
            "INSERT INTO banksim_transfers (bank_tran_id, tran_date, kind, from_account,
                to_account, amount_krw, status, error_code, error_message, limit_krw,
                processed_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        )
        .bind(receipt.bank_tran_id.as_str())
        .bind(receipt.tran_date.to_string())
        .bind(receipt.kind.as_str())
        .bind(receipt.from_account.as_str())
        .bind(receipt.to_account.as_str())
        .bind(receipt.amount_krw.get())
        .bind(status)
        .bind(transfer.failure.as_ref().map(|e| e.code()))
        .bind(transfer.failure.as_ref().map(|e| e.to_string()))
        .bind(transfer.failure.as_ref().and_then(|e| e.limit_krw()))
        .bind(receipt.processed_at_ms),
        execute
    );
    match inserted {
        Ok(_) => Ok(true),
        Err(error) if crate::sql::is_unique_violation(&error) => Ok(false),
        Err(error) => Err(db_error(error)),
    }
}

/// A movement to record: money that entered an account (and left another, unless
/// it came from outside the bank).
pub(crate) struct NewMovement<'a> {
    pub kind: &'a str,
    pub bank_tran_id: Option<&'a str>,
    pub from_account: Option<&'a str>,
    pub to_account: &'a str,
    pub amount_krw: Krw,
    pub depositor_name: &'a str,
    pub repayment_krw: Krw,
    pub suspended_krw: Krw,
    pub at_ms: i64,
}

pub(crate) async fn insert_movement(
    tx: &mut Tx,
    movement: &NewMovement<'_>,
) -> Result<i64, BankError> {
    let seq: (i64,) = on_tx!(
        tx,
        sqlx::query_as::<_, (i64,)>(
            "INSERT INTO banksim_movements (kind, bank_tran_id, from_account, to_account,
                amount_krw, depositor_name, repayment_krw, suspended_krw, at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq"
        )
        .bind(movement.kind)
        .bind(movement.bank_tran_id)
        .bind(movement.from_account)
        .bind(movement.to_account)
        .bind(movement.amount_krw.get())
        .bind(movement.depositor_name)
        .bind(movement.repayment_krw.get())
        .bind(movement.suspended_krw.get())
        .bind(movement.at_ms),
        fetch_one
    )
    .map_err(db_error)?;
    Ok(seq.0)
}

/// One line of the simulator's statement: a movement of money.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    pub seq: i64,
    pub kind: String,
    pub bank_tran_id: Option<String>,
    pub from_account: Option<String>,
    pub to_account: String,
    pub amount_krw: Krw,
    pub at_ms: i64,
}

type MovementTuple = (
    i64,
    String,
    Option<String>,
    Option<String>,
    String,
    i64,
    i64,
);

pub(crate) async fn movements(
    store: &Store,
    account: Option<&str>,
    since_seq: i64,
    limit: i64,
) -> Result<Vec<Movement>, BankError> {
    let rows: Vec<MovementTuple> = on_pool!(
        store,
        sqlx::query_as::<_, MovementTuple>(
            "SELECT seq, kind, bank_tran_id, from_account, to_account, amount_krw, at_ms
             FROM banksim_movements
             WHERE seq > $1 AND ($2 IS NULL OR from_account = $2 OR to_account = $2)
             ORDER BY seq LIMIT $3"
        )
        .bind(since_seq)
        .bind(account)
        .bind(limit),
        fetch_all
    )
    .map_err(db_error)?;
    Ok(rows
        .into_iter()
        .map(|r| Movement {
            seq: r.0,
            kind: r.1,
            bank_tran_id: r.2,
            from_account: r.3,
            to_account: r.4,
            amount_krw: Krw::new(r.5),
            at_ms: r.6,
        })
        .collect())
}

type DepositTuple = (i64, String, String, i64, i64, i64, i64);

const SELECT_DEPOSITS: &str = "SELECT m.seq, m.to_account, m.depositor_name, m.amount_krw,
    m.repayment_krw, m.suspended_krw, m.at_ms
    FROM banksim_movements m JOIN banksim_accounts a ON a.account_number = m.to_account
    WHERE a.user_id IS NOT NULL AND m.kind = 'salary'";

fn deposit_from(row: DepositTuple) -> Result<VirtualDeposit, BankError> {
    Ok(VirtualDeposit {
        deposit_id: DepositId::from_sequence(row.0)?,
        account_number: AccountNumber::new(&row.1)?,
        depositor_name: row.2,
        amount_krw: Krw::new(row.3),
        repayment_krw: Krw::new(row.4),
        suspended_krw: Krw::new(row.5),
        cursor: row.0,
        at_ms: row.6,
    })
}

pub(crate) async fn virtual_deposits(
    store: &Store,
    account: Option<&str>,
    since_cursor: i64,
    limit: i64,
) -> Result<Vec<VirtualDeposit>, BankError> {
    let sql = format!(
        "{SELECT_DEPOSITS} AND m.seq > $1 AND ($2 IS NULL OR m.to_account = $2) ORDER BY m.seq LIMIT $3"
    );
    let rows: Vec<DepositTuple> = on_pool!(
        store,
        sqlx::query_as::<_, DepositTuple>(&sql)
            .bind(since_cursor)
            .bind(account)
            .bind(limit),
        fetch_all
    )
    .map_err(db_error)?;
    rows.into_iter().map(deposit_from).collect()
}

pub(crate) async fn virtual_deposit(
    store: &Store,
    id: &DepositId,
) -> Result<Option<VirtualDeposit>, BankError> {
    let sql = format!("{SELECT_DEPOSITS} AND m.seq = $1");
    let row: Option<DepositTuple> = on_pool!(
        store,
        sqlx::query_as::<_, DepositTuple>(&sql).bind(id.sequence()),
        fetch_optional
    )
    .map_err(db_error)?;
    row.map(deposit_from).transpose()
}

/// Opens an account; `Ok(false)` if the number is taken.
pub(crate) async fn insert_account(
    tx: &mut Tx,
    number: &AccountNumber,
    holder: &HolderName,
    user: Option<UserId>,
) -> Result<bool, BankError> {
    let inserted = on_tx!(
        tx,
        sqlx::query(
            "INSERT INTO banksim_accounts (account_number, holder_name, balance_krw, user_id)
             VALUES ($1, $2, 0, $3) ON CONFLICT DO NOTHING"
        )
        .bind(number.as_str())
        .bind(holder.as_str())
        .bind(user.map(|u| u.to_string())),
        execute
    )
    .map_err(db_error)?;
    Ok(inserted == 1)
}

pub(crate) async fn virtual_account_of(
    store: &Store,
    user: UserId,
) -> Result<Option<(String, String)>, BankError> {
    on_pool!(
        store,
        sqlx::query_as::<_, (String, String)>(
            "SELECT account_number, holder_name FROM banksim_accounts WHERE user_id = $1"
        )
        .bind(user.to_string()),
        fetch_optional
    )
    .map_err(db_error)
}

/// Sets one column of an account (admin knobs). Returns whether the account exists.
pub(crate) async fn update_account(
    tx: &mut Tx,
    number: &str,
    change: AccountChange<'_>,
) -> Result<bool, BankError> {
    let done = match change {
        AccountChange::Frozen(frozen) => on_tx!(
            tx,
            sqlx::query("UPDATE banksim_accounts SET frozen = $1 WHERE account_number = $2")
                .bind(i64::from(frozen))
                .bind(number),
            execute
        ),
        AccountChange::Holder(name) => on_tx!(
            tx,
            sqlx::query("UPDATE banksim_accounts SET holder_name = $1 WHERE account_number = $2")
                .bind(name)
                .bind(number),
            execute
        ),
        AccountChange::RepaymentDue(due) => on_tx!(
            tx,
            sqlx::query(
                "UPDATE banksim_accounts SET repayment_due_krw = $1 WHERE account_number = $2"
            )
            .bind(due.get())
            .bind(number),
            execute
        ),
    }
    .map_err(db_error)?;
    Ok(done == 1)
}

pub(crate) enum AccountChange<'a> {
    Frozen(bool),
    Holder(&'a str),
    RepaymentDue(Krw),
}

/// The sum of all balances and of all money that entered the bank from outside:
/// the two must always be equal (transfers only move money between accounts).
pub(crate) async fn totals(store: &Store) -> Result<(Krw, Krw), BankError> {
    let (balances,): (Option<i64>,) = on_pool!(
        store,
        sqlx::query_as::<_, (Option<i64>,)>(
            "SELECT CAST(SUM(balance_krw) AS BIGINT) FROM banksim_accounts"
        ),
        fetch_one
    )
    .map_err(db_error)?;
    let (external,): (Option<i64>,) = on_pool!(
        store,
        sqlx::query_as::<_, (Option<i64>,)>(
            "SELECT CAST(SUM(amount_krw) AS BIGINT) FROM banksim_movements WHERE from_account IS NULL"
        ),
        fetch_one
    )
    .map_err(db_error)?;
    Ok((
        Krw::new(balances.unwrap_or(0)),
        Krw::new(external.unwrap_or(0)),
    ))
}
