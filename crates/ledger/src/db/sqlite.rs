//! The ledger's SQL for SQLite. Bulk statements keep a batch to a handful of round
//! trips through sqlx's SQLite worker: multi-row INSERTs and an upsert for balances.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};
use uuid::Uuid;

use super::{
    ACCOUNT_COLUMNS, ENTRY_COLUMNS, FAILURE_COLUMNS, TRANSFER_COLUMNS, decode_account,
    decode_failure, decode_transfer, user_data_to_db,
};
use crate::LedgerError;
use crate::account::Account;
use crate::engine::Effects;
use crate::transfer::{Transfer, TransferFailure};

/// Ids per `IN (…)` list and rows per multi-row INSERT: well under SQLite's limit of
/// 32,766 bound parameters per statement.
const IDS_PER_QUERY_MAX: usize = 2_000;
const ROWS_PER_INSERT_MAX: usize = 500;

pub(super) async fn load_transfers(
    conn: &mut SqliteConnection,
    ids: &[Uuid],
) -> Result<(Vec<Transfer>, Vec<TransferFailure>), LedgerError> {
    let mut transfers = Vec::new();
    let mut failures = Vec::new();
    for chunk in ids.chunks(IDS_PER_QUERY_MAX) {
        let rows = select_in(
            &format!("SELECT {TRANSFER_COLUMNS} FROM ledger_transfers"),
            chunk,
        )
        .build()
        .fetch_all(&mut *conn)
        .await?;
        for row in &rows {
            transfers.push(decode_transfer(row)?);
        }
        let rows = select_in(
            &format!("SELECT {FAILURE_COLUMNS} FROM ledger_failures"),
            chunk,
        )
        .build()
        .fetch_all(&mut *conn)
        .await?;
        for row in &rows {
            failures.push(decode_failure(row)?);
        }
    }
    Ok((transfers, failures))
}

pub(super) async fn load_accounts(
    conn: &mut SqliteConnection,
    ids: &[Uuid],
) -> Result<Vec<Account>, LedgerError> {
    let mut accounts = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_QUERY_MAX) {
        let rows = select_in(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts"),
            chunk,
        )
        .build()
        .fetch_all(&mut *conn)
        .await?;
        for row in &rows {
            accounts.push(decode_account(row)?);
        }
    }
    Ok(accounts)
}

fn select_in<'a>(select: &str, ids: &'a [Uuid]) -> QueryBuilder<'a, Sqlite> {
    let mut query = QueryBuilder::new(select);
    query.push(" WHERE id IN (");
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    query.push(")");
    query
}

pub(super) async fn insert_accounts(
    conn: &mut SqliteConnection,
    accounts: &[Account],
) -> Result<(), LedgerError> {
    for chunk in accounts.chunks(ROWS_PER_INSERT_MAX) {
        account_values(
            &format!("INSERT INTO ledger_accounts ({ACCOUNT_COLUMNS}) "),
            chunk,
        )
        .build()
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn account_values<'a>(prefix: &str, accounts: &'a [Account]) -> QueryBuilder<'a, Sqlite> {
    let mut query = QueryBuilder::new(prefix);
    query.push_values(accounts, |mut row, a| {
        row.push_bind(a.id.as_uuid())
            .push_bind(i64::from(a.code))
            .push_bind(a.flags.bits())
            .push_bind(user_data_to_db(a.user_data))
            .push_bind(a.debits_pending.get())
            .push_bind(a.debits_posted.get())
            .push_bind(a.credits_pending.get())
            .push_bind(a.credits_posted.get())
            .push_bind(a.seq)
            .push_bind(a.created_at.unix_ms());
    });
    query
}

pub(super) async fn write(
    conn: &mut SqliteConnection,
    effects: &Effects,
) -> Result<(), LedgerError> {
    for chunk in effects.new_transfers.chunks(ROWS_PER_INSERT_MAX) {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO ledger_transfers ({TRANSFER_COLUMNS}) "
        ));
        query.push_values(chunk, |mut row, t| {
            row.push_bind(t.id.as_uuid())
                .push_bind(t.kind.to_i64())
                .push_bind(t.debit_account_id.as_uuid())
                .push_bind(t.credit_account_id.as_uuid())
                .push_bind(t.amount.get())
                .push_bind(t.pending_id.map(|id| id.as_uuid()))
                .push_bind(t.post_full_amount)
                .push_bind(t.timeout_ms)
                .push_bind(i64::from(t.code))
                .push_bind(user_data_to_db(t.user_data))
                .push_bind(t.linked)
                .push_bind(t.requested_at.unix_ms())
                .push_bind(t.created_at.unix_ms())
                .push_bind(t.pending_state.map(|s| s.to_i64()))
                .push_bind(t.expires_at.map(|e| e.unix_ms()));
        });
        query.build().execute(&mut *conn).await?;
    }
    for chunk in effects.new_failures.chunks(ROWS_PER_INSERT_MAX) {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO ledger_failures ({FAILURE_COLUMNS}) "
        ));
        query.push_values(chunk, |mut row, f| {
            row.push_bind(f.id.as_uuid())
                .push_bind(f.result.code())
                .push_bind(f.request.kind.to_i64())
                .push_bind(f.request.debit.map(|id| id.as_uuid()))
                .push_bind(f.request.credit.map(|id| id.as_uuid()))
                .push_bind(f.request.amount.map(|a| a.get()))
                .push_bind(f.request.pending_id.map(|id| id.as_uuid()))
                .push_bind(f.request.timeout_ms)
                .push_bind(i64::from(f.request.code))
                .push_bind(user_data_to_db(f.request.user_data))
                .push_bind(f.request.linked)
                .push_bind(f.requested_at.unix_ms())
                .push_bind(f.failed_at.unix_ms());
        });
        query.build().execute(&mut *conn).await?;
    }
    for (id, state) in &effects.pending_updates {
        sqlx::query("UPDATE ledger_transfers SET pending_state = ? WHERE id = ?")
            .bind(state.to_i64())
            .bind(id.as_uuid())
            .execute(&mut *conn)
            .await?;
    }
    for chunk in effects.accounts.chunks(ROWS_PER_INSERT_MAX) {
        let mut query = account_values(
            &format!("INSERT INTO ledger_accounts ({ACCOUNT_COLUMNS}) "),
            chunk,
        );
        query.push(
            " ON CONFLICT (id) DO UPDATE SET debits_pending = excluded.debits_pending, \
             debits_posted = excluded.debits_posted, credits_pending = excluded.credits_pending, \
             credits_posted = excluded.credits_posted, seq = excluded.seq",
        );
        query.build().execute(&mut *conn).await?;
    }
    for chunk in effects.entries.chunks(ROWS_PER_INSERT_MAX) {
        let mut query =
            QueryBuilder::<Sqlite>::new(format!("INSERT INTO ledger_entries ({ENTRY_COLUMNS}) "));
        query.push_values(chunk, |mut row, e| {
            row.push_bind(e.account_id.as_uuid())
                .push_bind(e.seq)
                .push_bind(e.transfer_id.as_uuid())
                .push_bind(e.debits_pending.get())
                .push_bind(e.debits_posted.get())
                .push_bind(e.credits_pending.get())
                .push_bind(e.credits_posted.get())
                .push_bind(e.created_at.unix_ms());
        });
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Account count and the four balance sums. SQLite sums 64-bit integers exactly or
/// fails with "integer overflow"; TOTAL() would be a float, which money never is.
pub(super) async fn sums(pool: &SqlitePool) -> Result<(i64, [i128; 4]), LedgerError> {
    let (accounts, debits_posted, credits_posted, debits_pending, credits_pending): (
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(debits_posted), 0), COALESCE(SUM(credits_posted), 0), \
         COALESCE(SUM(debits_pending), 0), COALESCE(SUM(credits_pending), 0) FROM ledger_accounts",
    )
    .fetch_one(pool)
    .await?;
    Ok((
        accounts,
        [
            debits_posted.into(),
            credits_posted.into(),
            debits_pending.into(),
            credits_pending.into(),
        ],
    ))
}
