//! The ledger's SQL for PostgreSQL. A batch is a few statements whatever its size:
//! `= ANY($1)` lookups that lock rows in id order, and `UNNEST` arrays for writes.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{
    ACCOUNT_COLUMNS, ENTRY_COLUMNS, FAILURE_COLUMNS, TRANSFER_COLUMNS, decode_account,
    decode_failure, decode_transfer, user_data_to_db,
};
use crate::LedgerError;
use crate::account::Account;
use crate::engine::Effects;
use crate::transfer::{Transfer, TransferFailure};

/// Loads transfers for a write, locking them so a concurrent writer cannot settle
/// the same hold.
pub(super) async fn load_transfers(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<(Vec<Transfer>, Vec<TransferFailure>), LedgerError> {
    load_transfers_with(conn, ids, " ORDER BY id FOR UPDATE").await
}

pub(super) async fn load_transfers_unlocked(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<(Vec<Transfer>, Vec<TransferFailure>), LedgerError> {
    load_transfers_with(conn, ids, "").await
}

async fn load_transfers_with(
    conn: &mut PgConnection,
    ids: &[Uuid],
    suffix: &str,
) -> Result<(Vec<Transfer>, Vec<TransferFailure>), LedgerError> {
    if ids.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let rows = sqlx::query(&format!(
        "SELECT {TRANSFER_COLUMNS} FROM ledger_transfers WHERE id = ANY($1){suffix}"
    ))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let transfers = rows
        .iter()
        .map(decode_transfer)
        .collect::<Result<Vec<_>, _>>()?;
    let rows = sqlx::query(&format!(
        "SELECT {FAILURE_COLUMNS} FROM ledger_failures WHERE id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let failures = rows
        .iter()
        .map(decode_failure)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((transfers, failures))
}

/// Loads accounts; with `lock`, `FOR UPDATE` in id order so concurrent writers
/// never deadlock.
pub(super) async fn load_accounts(
    conn: &mut PgConnection,
    ids: &[Uuid],
    lock: bool,
) -> Result<Vec<Account>, LedgerError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let suffix = if lock { " ORDER BY id FOR UPDATE" } else { "" };
    let rows = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts WHERE id = ANY($1){suffix}"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_account).collect()
}

pub(super) async fn insert_accounts(
    conn: &mut PgConnection,
    accounts: &[Account],
) -> Result<(), LedgerError> {
    if accounts.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!(
        "INSERT INTO ledger_accounts ({ACCOUNT_COLUMNS}) SELECT * FROM UNNEST($1::uuid[], $2::int8[], \
         $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[])"
    ))
    .bind(accounts.iter().map(|a| a.id.as_uuid()).collect::<Vec<_>>())
    .bind(accounts.iter().map(|a| i64::from(a.code)).collect::<Vec<_>>())
    .bind(accounts.iter().map(|a| a.flags.bits()).collect::<Vec<_>>())
    .bind(accounts.iter().map(|a| user_data_to_db(a.user_data)).collect::<Vec<_>>())
    .bind(accounts.iter().map(|a| a.debits_pending.get()).collect::<Vec<_>>())
    .bind(accounts.iter().map(|a| a.debits_posted.get()).collect::<Vec<_>>())
    .bind(accounts.iter().map(|a| a.credits_pending.get()).collect::<Vec<_>>())
    .bind(accounts.iter().map(|a| a.credits_posted.get()).collect::<Vec<_>>())
    .bind(accounts.iter().map(|a| a.seq).collect::<Vec<_>>())
    .bind(accounts.iter().map(|a| a.created_at.unix_ms()).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn write(conn: &mut PgConnection, effects: &Effects) -> Result<(), LedgerError> {
    let transfers = &effects.new_transfers;
    if !transfers.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO ledger_transfers ({TRANSFER_COLUMNS}) SELECT * FROM UNNEST($1::uuid[], \
             $2::int8[], $3::uuid[], $4::uuid[], $5::int8[], $6::uuid[], $7::bool[], $8::int8[], \
             $9::int8[], $10::int8[], $11::bool[], $12::int8[], $13::int8[], $14::int8[], $15::int8[])"
        ))
        .bind(transfers.iter().map(|t| t.id.as_uuid()).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.kind.to_i64()).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.debit_account_id.as_uuid()).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.credit_account_id.as_uuid()).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.amount.get()).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.pending_id.map(|id| id.as_uuid())).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.post_full_amount).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.timeout_ms).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| i64::from(t.code)).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| user_data_to_db(t.user_data)).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.linked).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.requested_at.unix_ms()).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.created_at.unix_ms()).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.pending_state.map(|s| s.to_i64())).collect::<Vec<_>>())
        .bind(transfers.iter().map(|t| t.expires_at.map(|e| e.unix_ms())).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    let failures = &effects.new_failures;
    if !failures.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO ledger_failures ({FAILURE_COLUMNS}) SELECT * FROM UNNEST($1::uuid[], \
             $2::text[], $3::int8[], $4::uuid[], $5::uuid[], $6::int8[], $7::uuid[], $8::int8[], \
             $9::int8[], $10::int8[], $11::bool[], $12::int8[], $13::int8[])"
        ))
        .bind(failures.iter().map(|f| f.id.as_uuid()).collect::<Vec<_>>())
        .bind(failures.iter().map(|f| f.result.code()).collect::<Vec<_>>())
        .bind(
            failures
                .iter()
                .map(|f| f.request.kind.to_i64())
                .collect::<Vec<_>>(),
        )
        .bind(
            failures
                .iter()
                .map(|f| f.request.debit.map(|id| id.as_uuid()))
                .collect::<Vec<_>>(),
        )
        .bind(
            failures
                .iter()
                .map(|f| f.request.credit.map(|id| id.as_uuid()))
                .collect::<Vec<_>>(),
        )
        .bind(
            failures
                .iter()
                .map(|f| f.request.amount.map(|a| a.get()))
                .collect::<Vec<_>>(),
        )
        .bind(
            failures
                .iter()
                .map(|f| f.request.pending_id.map(|id| id.as_uuid()))
                .collect::<Vec<_>>(),
        )
        .bind(
            failures
                .iter()
                .map(|f| f.request.timeout_ms)
                .collect::<Vec<_>>(),
        )
        .bind(
            failures
                .iter()
                .map(|f| i64::from(f.request.code))
                .collect::<Vec<_>>(),
        )
        .bind(
            failures
                .iter()
                .map(|f| user_data_to_db(f.request.user_data))
                .collect::<Vec<_>>(),
        )
        .bind(
            failures
                .iter()
                .map(|f| f.request.linked)
                .collect::<Vec<_>>(),
        )
        .bind(
            failures
                .iter()
                .map(|f| f.requested_at.unix_ms())
                .collect::<Vec<_>>(),
        )
        .bind(
            failures
                .iter()
                .map(|f| f.failed_at.unix_ms())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    }
    if !effects.pending_updates.is_empty() {
        sqlx::query(
            "UPDATE ledger_transfers t SET pending_state = u.state \
             FROM UNNEST($1::uuid[], $2::int8[]) AS u(id, state) WHERE t.id = u.id",
        )
        .bind(
            effects
                .pending_updates
                .iter()
                .map(|(id, _)| id.as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(
            effects
                .pending_updates
                .iter()
                .map(|(_, s)| s.to_i64())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    }
    let accounts = &effects.accounts;
    if !accounts.is_empty() {
        sqlx::query(
            "UPDATE ledger_accounts a SET debits_pending = u.dp, debits_posted = u.dpo, \
             credits_pending = u.cp, credits_posted = u.cpo, seq = u.seq \
             FROM UNNEST($1::uuid[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int8[]) \
             AS u(id, dp, dpo, cp, cpo, seq) WHERE a.id = u.id",
        )
        .bind(accounts.iter().map(|a| a.id.as_uuid()).collect::<Vec<_>>())
        .bind(
            accounts
                .iter()
                .map(|a| a.debits_pending.get())
                .collect::<Vec<_>>(),
        )
        .bind(
            accounts
                .iter()
                .map(|a| a.debits_posted.get())
                .collect::<Vec<_>>(),
        )
        .bind(
            accounts
                .iter()
                .map(|a| a.credits_pending.get())
                .collect::<Vec<_>>(),
        )
        .bind(
            accounts
                .iter()
                .map(|a| a.credits_posted.get())
                .collect::<Vec<_>>(),
        )
        .bind(accounts.iter().map(|a| a.seq).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    let entries = &effects.entries;
    if !entries.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO ledger_entries ({ENTRY_COLUMNS}) SELECT * FROM UNNEST($1::uuid[], $2::int8[], \
             $3::uuid[], $4::int8[], $5::int8[], $6::int8[], $7::int8[], $8::int8[])"
        ))
        .bind(entries.iter().map(|e| e.account_id.as_uuid()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.seq).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.transfer_id.as_uuid()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.debits_pending.get()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.debits_posted.get()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.credits_pending.get()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.credits_posted.get()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.created_at.unix_ms()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Account count and the four balance sums. NUMERIC sums cannot overflow; they
/// come back as text to stay exact.
pub(super) async fn sums(pool: &PgPool) -> Result<(i64, [i128; 4]), LedgerError> {
    let (accounts, debits_posted, credits_posted, debits_pending, credits_pending): (
        i64,
        String,
        String,
        String,
        String,
    ) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(debits_posted::numeric), 0)::text, \
         COALESCE(SUM(credits_posted::numeric), 0)::text, COALESCE(SUM(debits_pending::numeric), 0)::text, \
         COALESCE(SUM(credits_pending::numeric), 0)::text FROM ledger_accounts",
    )
    .fetch_one(pool)
    .await?;
    let exact = |text: String| {
        text.parse::<i128>()
            .map_err(|_| LedgerError::Corrupt(format!("sum {text:?} is not an integer")))
    };
    Ok((
        accounts,
        [
            exact(debits_posted)?,
            exact(credits_posted)?,
            exact(debits_pending)?,
            exact(credits_pending)?,
        ],
    ))
}
