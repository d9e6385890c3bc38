//! The ledger's store module: its tables, its SQL, one file per dialect. Nothing
//! outside this module knows a column name.

mod postgres;
mod sqlite;

use std::collections::HashSet;

use money::{AccountId, Krw, Timestamp, TransferId};
use sqlx::{ColumnIndex, Decode, Row, Type};
use store::{Migration, Store, Tx};
use uuid::Uuid;

use crate::LedgerError;
use crate::account::{Account, AccountFlags, CreateAccountResult, NewAccount};
use crate::engine::{Effects, Loaded};
use crate::entry::{ENTRY_EVENT_KIND, Entry};
use crate::transfer::{
    Fingerprint, KindTag, PendingState, Transfer, TransferFailure, TransferResult,
};

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "ledger",
    sqlite: include_str!("../../migrations/sqlite/0001_ledger.sql"),
    postgres: include_str!("../../migrations/postgres/0001_ledger.sql"),
}];

pub(crate) const ACCOUNT_COLUMNS: &str = "id, code, flags, user_data, debits_pending, debits_posted, \
     credits_pending, credits_posted, seq, created_at_ms";
pub(crate) const TRANSFER_COLUMNS: &str = "id, kind, debit_account_id, credit_account_id, amount, \
     pending_id, post_full_amount, timeout_ms, code, user_data, linked, requested_at_ms, \
     created_at_ms, pending_state, expires_at_ms";
pub(crate) const FAILURE_COLUMNS: &str = "id, result, kind, debit_account_id, credit_account_id, \
     amount, pending_id, timeout_ms, code, user_data, linked, requested_at_ms, failed_at_ms";
pub(crate) const ENTRY_COLUMNS: &str = "account_id, seq, transfer_id, debits_pending, debits_posted, \
     credits_pending, credits_posted, created_at_ms";

/// Every id a batch may touch, gathered before loading.
#[derive(Default)]
pub(crate) struct BatchIds {
    pub transfers: Vec<TransferId>,
    pub accounts: HashSet<AccountId>,
}

/// Loads what a batch needs, locking rows on PostgreSQL: first the transfers
/// (requests and the holds they settle), then every account they name.
pub(crate) async fn load(tx: &mut Tx, ids: &BatchIds) -> Result<Loaded, LedgerError> {
    let transfer_ids: Vec<Uuid> = ids.transfers.iter().map(|id| id.as_uuid()).collect();
    let (transfers, failures) = match tx {
        Tx::Sqlite(conn) => sqlite::load_transfers(conn, &transfer_ids).await?,
        Tx::Postgres(conn) => postgres::load_transfers(conn, &transfer_ids).await?,
    };
    let mut account_ids = ids.accounts.clone();
    for transfer in &transfers {
        account_ids.insert(transfer.debit_account_id);
        account_ids.insert(transfer.credit_account_id);
    }
    let mut account_ids: Vec<Uuid> = account_ids.iter().map(|id| id.as_uuid()).collect();
    account_ids.sort_unstable();
    let accounts = match tx {
        Tx::Sqlite(conn) => sqlite::load_accounts(conn, &account_ids).await?,
        Tx::Postgres(conn) => postgres::load_accounts(conn, &account_ids, true).await?,
    };
    Ok(Loaded {
        accounts: accounts.into_iter().map(|a| (a.id, a)).collect(),
        transfers: transfers.into_iter().map(|t| (t.id, t)).collect(),
        failures: failures.into_iter().map(|f| (f.id, f)).collect(),
    })
}

/// Writes a batch's effects and their outbox events in the caller's transaction.
pub(crate) async fn write(
    tx: &mut Tx,
    effects: &Effects,
    now: Timestamp,
) -> Result<(), LedgerError> {
    for account in &effects.accounts {
        if !account.respects_flags() {
            return Err(LedgerError::Corrupt(format!(
                "refusing to write account {} that breaks its flags",
                account.id
            )));
        }
    }
    match tx {
        Tx::Sqlite(conn) => sqlite::write(conn, effects).await?,
        Tx::Postgres(conn) => postgres::write(conn, effects).await?,
    }
    let announcements: Vec<events::NewEvent> = effects
        .entries
        .iter()
        .map(|entry| events::NewEvent {
            kind: ENTRY_EVENT_KIND,
            key: entry.account_id.to_string(),
            seq: entry.seq,
        })
        .collect();
    events::append(tx, &announcements, now).await?;
    Ok(())
}

/// Attempts at opening accounts when a concurrent caller inserts the same id
/// between our read and our write: the next attempt sees it and compares.
const CREATE_ACCOUNTS_ATTEMPTS_MAX: usize = 3;

/// Opens accounts in one transaction; an existing id is compared, never changed.
pub(crate) async fn create_accounts(
    store: &Store,
    accounts: &[NewAccount],
    now: Timestamp,
) -> Result<Vec<CreateAccountResult>, LedgerError> {
    let mut attempt = 1;
    loop {
        match try_create_accounts(store, accounts, now).await {
            Err(LedgerError::Db(sqlx::Error::Database(error)))
                if error.is_unique_violation() && attempt < CREATE_ACCOUNTS_ATTEMPTS_MAX =>
            {
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

async fn try_create_accounts(
    store: &Store,
    accounts: &[NewAccount],
    now: Timestamp,
) -> Result<Vec<CreateAccountResult>, LedgerError> {
    let mut ids: Vec<Uuid> = accounts.iter().map(|a| a.id().as_uuid()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut tx = store.begin().await?;
    let existing = match &mut tx {
        Tx::Sqlite(conn) => sqlite::load_accounts(conn, &ids).await?,
        Tx::Postgres(conn) => postgres::load_accounts(conn, &ids, true).await?,
    };
    let mut known: std::collections::HashMap<AccountId, Account> =
        existing.into_iter().map(|a| (a.id, a)).collect();
    let mut results = Vec::with_capacity(accounts.len());
    let mut opened = Vec::new();
    for new in accounts {
        let result = match known.get(&new.id()) {
            Some(account) if account.matches(new) => CreateAccountResult::Exists,
            Some(_) => CreateAccountResult::ExistsWithDifferentFields,
            None => {
                let account = Account::opened(new, now);
                known.insert(account.id, account);
                opened.push(account);
                CreateAccountResult::Ok
            }
        };
        results.push(result);
    }
    match &mut tx {
        Tx::Sqlite(conn) => sqlite::insert_accounts(conn, &opened).await?,
        Tx::Postgres(conn) => postgres::insert_accounts(conn, &opened).await?,
    }
    tx.commit().await?;
    Ok(results)
}

pub(crate) async fn lookup_accounts(
    store: &Store,
    ids: &[AccountId],
) -> Result<Vec<Account>, LedgerError> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
    match store {
        Store::Sqlite(pool) => sqlite::load_accounts(&mut *pool.acquire().await?, &ids).await,
        Store::Postgres(pool) => {
            postgres::load_accounts(&mut *pool.acquire().await?, &ids, false).await
        }
    }
}

pub(crate) async fn lookup_transfers(
    store: &Store,
    ids: &[TransferId],
) -> Result<(Vec<Transfer>, Vec<TransferFailure>), LedgerError> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
    match store {
        Store::Sqlite(pool) => sqlite::load_transfers(&mut *pool.acquire().await?, &ids).await,
        Store::Postgres(pool) => {
            postgres::load_transfers_unlocked(&mut *pool.acquire().await?, &ids).await
        }
    }
}

/// Entries of one account from a seq on. `$N` placeholders serve both dialects.
pub(crate) async fn entries(
    store: &Store,
    account: AccountId,
    from_seq: i64,
    limit: i64,
) -> Result<Vec<Entry>, LedgerError> {
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE account_id = $1 AND seq >= $2 \
         ORDER BY seq LIMIT $3"
    );
    match store {
        Store::Sqlite(pool) => sqlx::query(&sql)
            .bind(account.as_uuid())
            .bind(from_seq)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(decode_entry)
            .collect(),
        Store::Postgres(pool) => sqlx::query(&sql)
            .bind(account.as_uuid())
            .bind(from_seq)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(decode_entry)
            .collect(),
    }
}

pub(crate) async fn expiring_holds(
    tx: &mut Tx,
    now: Timestamp,
    limit: i64,
) -> Result<Vec<TransferId>, LedgerError> {
    let ids: Vec<Uuid> = store::on_tx!(
        tx,
        sqlx::query_scalar(
            "SELECT id FROM ledger_transfers WHERE pending_state = 1 AND expires_at_ms IS NOT NULL \
             AND expires_at_ms <= $1 ORDER BY expires_at_ms LIMIT $2",
        )
        .bind(now.unix_ms())
        .bind(limit),
        fetch_all
    )?;
    ids.into_iter().map(transfer_id).collect()
}

/// Totals over the whole ledger, for the invariant check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LedgerTotals {
    pub accounts: i64,
    pub debits_posted: i128,
    pub credits_posted: i128,
    pub debits_pending: i128,
    pub credits_pending: i128,
    /// Accounts whose entries are not exactly `1..=seq`, or whose last entry
    /// disagrees with the account's balances.
    pub accounts_with_broken_entries: i64,
    /// Accounts whose balances break their flags.
    pub accounts_breaking_flags: i64,
}

pub(crate) async fn totals(store: &Store) -> Result<LedgerTotals, LedgerError> {
    let flagged_sql = format!("SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts WHERE flags != 0");
    let (accounts, sums, broken, flagged) = match store {
        Store::Sqlite(pool) => {
            let (accounts, sums) = sqlite::sums(pool).await?;
            let broken: i64 = sqlx::query_scalar(BROKEN_ENTRIES_SQL)
                .fetch_one(pool)
                .await?;
            let rows = sqlx::query(&flagged_sql).fetch_all(pool).await?;
            let flagged = rows
                .iter()
                .map(decode_account)
                .collect::<Result<Vec<_>, _>>()?;
            (accounts, sums, broken, flagged)
        }
        Store::Postgres(pool) => {
            let (accounts, sums) = postgres::sums(pool).await?;
            let broken: i64 = sqlx::query_scalar(BROKEN_ENTRIES_SQL)
                .fetch_one(pool)
                .await?;
            let rows = sqlx::query(&flagged_sql).fetch_all(pool).await?;
            let flagged = rows
                .iter()
                .map(decode_account)
                .collect::<Result<Vec<_>, _>>()?;
            (accounts, sums, broken, flagged)
        }
    };
    let [
        debits_posted,
        credits_posted,
        debits_pending,
        credits_pending,
    ] = sums;
    Ok(LedgerTotals {
        accounts,
        debits_posted,
        credits_posted,
        debits_pending,
        credits_pending,
        accounts_with_broken_entries: broken,
        accounts_breaking_flags: flagged.iter().filter(|a| !a.respects_flags()).count() as i64,
    })
}

/// Accounts whose entries are not `1..=seq` or whose last entry is not the balance.
pub(crate) const BROKEN_ENTRIES_SQL: &str = "SELECT COUNT(*) FROM ledger_accounts a \
     LEFT JOIN (SELECT account_id, COUNT(*) AS n, MIN(seq) AS lo, MAX(seq) AS hi \
                FROM ledger_entries GROUP BY account_id) e ON e.account_id = a.id \
     LEFT JOIN ledger_entries last ON last.account_id = a.id AND last.seq = a.seq \
     WHERE (a.seq = 0 AND e.n IS NOT NULL) \
        OR (a.seq > 0 AND (e.n IS NULL OR e.n != a.seq OR e.lo != 1 OR e.hi != a.seq \
            OR last.debits_pending != a.debits_pending OR last.debits_posted != a.debits_posted \
            OR last.credits_pending != a.credits_pending OR last.credits_posted != a.credits_posted))";

// ---- decoding, shared by both dialects ----------------------------------------

fn account_id(uuid: Uuid) -> Result<AccountId, LedgerError> {
    AccountId::from_uuid(uuid).map_err(|e| LedgerError::Corrupt(format!("account id: {e}")))
}

fn transfer_id(uuid: Uuid) -> Result<TransferId, LedgerError> {
    TransferId::from_uuid(uuid).map_err(|e| LedgerError::Corrupt(format!("transfer id: {e}")))
}

fn amount(value: i64, what: &str) -> Result<Krw, LedgerError> {
    if value < 0 {
        return Err(LedgerError::Corrupt(format!("{what} is negative: {value}")));
    }
    Ok(Krw::new(value))
}

fn code(value: i64) -> Result<u16, LedgerError> {
    u16::try_from(value).map_err(|_| LedgerError::Corrupt(format!("code {value} out of range")))
}

/// user_data is a u64 stored bit for bit in a signed 64-bit column.
pub(crate) fn user_data_to_db(value: u64) -> i64 {
    i64::from_ne_bytes(value.to_ne_bytes())
}

fn user_data_from_db(value: i64) -> u64 {
    u64::from_ne_bytes(value.to_ne_bytes())
}

/// The column types every ledger row is made of, on either backend.
pub(crate) trait LedgerRow<'r>: Row
where
    usize: ColumnIndex<Self>,
{
    fn uuid(&'r self, index: usize) -> Result<Uuid, sqlx::Error>;
    fn opt_uuid(&'r self, index: usize) -> Result<Option<Uuid>, sqlx::Error>;
    fn int(&'r self, index: usize) -> Result<i64, sqlx::Error>;
    fn opt_int(&'r self, index: usize) -> Result<Option<i64>, sqlx::Error>;
    fn flag(&'r self, index: usize) -> Result<bool, sqlx::Error>;
    fn text(&'r self, index: usize) -> Result<String, sqlx::Error>;
}

impl<'r, R: Row> LedgerRow<'r> for R
where
    usize: ColumnIndex<R>,
    Uuid: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    fn uuid(&'r self, index: usize) -> Result<Uuid, sqlx::Error> {
        self.try_get(index)
    }
    fn opt_uuid(&'r self, index: usize) -> Result<Option<Uuid>, sqlx::Error> {
        self.try_get(index)
    }
    fn int(&'r self, index: usize) -> Result<i64, sqlx::Error> {
        self.try_get(index)
    }
    fn opt_int(&'r self, index: usize) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(index)
    }
    fn flag(&'r self, index: usize) -> Result<bool, sqlx::Error> {
        self.try_get(index)
    }
    fn text(&'r self, index: usize) -> Result<String, sqlx::Error> {
        self.try_get(index)
    }
}

pub(crate) fn decode_account<'r, R: LedgerRow<'r>>(row: &'r R) -> Result<Account, LedgerError>
where
    usize: ColumnIndex<R>,
{
    Ok(Account {
        id: account_id(row.uuid(0)?)?,
        code: code(row.int(1)?)?,
        flags: AccountFlags::from_bits(row.int(2)?)
            .ok_or_else(|| LedgerError::Corrupt("unknown account flags".into()))?,
        user_data: user_data_from_db(row.int(3)?),
        debits_pending: amount(row.int(4)?, "debits_pending")?,
        debits_posted: amount(row.int(5)?, "debits_posted")?,
        credits_pending: amount(row.int(6)?, "credits_pending")?,
        credits_posted: amount(row.int(7)?, "credits_posted")?,
        seq: row.int(8)?,
        created_at: Timestamp::from_unix_ms(row.int(9)?),
    })
}

pub(crate) fn decode_transfer<'r, R: LedgerRow<'r>>(row: &'r R) -> Result<Transfer, LedgerError>
where
    usize: ColumnIndex<R>,
{
    Ok(Transfer {
        id: transfer_id(row.uuid(0)?)?,
        kind: KindTag::from_i64(row.int(1)?)
            .ok_or_else(|| LedgerError::Corrupt("unknown transfer kind".into()))?,
        debit_account_id: account_id(row.uuid(2)?)?,
        credit_account_id: account_id(row.uuid(3)?)?,
        amount: amount(row.int(4)?, "amount")?,
        pending_id: row.opt_uuid(5)?.map(transfer_id).transpose()?,
        post_full_amount: row.flag(6)?,
        timeout_ms: row.int(7)?,
        code: code(row.int(8)?)?,
        user_data: user_data_from_db(row.int(9)?),
        linked: row.flag(10)?,
        requested_at: Timestamp::from_unix_ms(row.int(11)?),
        created_at: Timestamp::from_unix_ms(row.int(12)?),
        pending_state: row
            .opt_int(13)?
            .map(|v| {
                PendingState::from_i64(v)
                    .ok_or_else(|| LedgerError::Corrupt(format!("unknown pending state {v}")))
            })
            .transpose()?,
        expires_at: row.opt_int(14)?.map(Timestamp::from_unix_ms),
    })
}

pub(crate) fn decode_failure<'r, R: LedgerRow<'r>>(
    row: &'r R,
) -> Result<TransferFailure, LedgerError>
where
    usize: ColumnIndex<R>,
{
    let result_code = row.text(1)?;
    let result = TransferResult::from_code(&result_code)
        .ok_or_else(|| LedgerError::Corrupt(format!("unknown failure {result_code:?}")))?;
    Ok(TransferFailure {
        id: transfer_id(row.uuid(0)?)?,
        result,
        request: Fingerprint {
            kind: KindTag::from_i64(row.int(2)?)
                .ok_or_else(|| LedgerError::Corrupt("unknown transfer kind".into()))?,
            debit: row.opt_uuid(3)?.map(account_id).transpose()?,
            credit: row.opt_uuid(4)?.map(account_id).transpose()?,
            amount: row.opt_int(5)?.map(|v| amount(v, "amount")).transpose()?,
            pending_id: row.opt_uuid(6)?.map(transfer_id).transpose()?,
            timeout_ms: row.int(7)?,
            code: code(row.int(8)?)?,
            user_data: user_data_from_db(row.int(9)?),
            linked: row.flag(10)?,
        },
        requested_at: Timestamp::from_unix_ms(row.int(11)?),
        failed_at: Timestamp::from_unix_ms(row.int(12)?),
    })
}

pub(crate) fn decode_entry<'r, R: LedgerRow<'r>>(row: &'r R) -> Result<Entry, LedgerError>
where
    usize: ColumnIndex<R>,
{
    Ok(Entry {
        account_id: account_id(row.uuid(0)?)?,
        seq: row.int(1)?,
        transfer_id: transfer_id(row.uuid(2)?)?,
        debits_pending: amount(row.int(3)?, "debits_pending")?,
        debits_posted: amount(row.int(4)?, "debits_posted")?,
        credits_pending: amount(row.int(5)?, "credits_pending")?,
        credits_posted: amount(row.int(6)?, "credits_posted")?,
        created_at: Timestamp::from_unix_ms(row.int(7)?),
    })
}
