//! The channel's store module: its tables and all of its SQL. Nothing outside this
//! module knows a column name. It never touches the core's tables, and it moves a
//! transfer's state only by compare-and-set from the state the caller last saw.

use ledger::Entry;
use money::{AccountId, Krw, Timestamp, TransferId};
use store::{Migration, Store, Tx};
use uuid::Uuid;

use crate::error::ChannelError;
use crate::request::{NewTransfer, UserId};
use crate::state::TransferState;
use crate::transfers::ChannelTransfer;

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "channel",
    sqlite: include_str!("../migrations/sqlite/0001_channel.sql"),
    postgres: include_str!("../migrations/postgres/0001_channel.sql"),
}];

macro_rules! on_store {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            Store::Sqlite($pool) => $body,
            Store::Postgres($pool) => $body,
        }
    };
}

macro_rules! on_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            Tx::Sqlite(inner) => {
                let $conn = &mut **inner;
                $body
            }
            Tx::Postgres(inner) => {
                let $conn = &mut **inner;
                $body
            }
        }
    };
}

const IN_FLIGHT: &str = "('requested', 'sent', 'unknown')";

type TransferRow = (
    Uuid,
    Uuid,
    Uuid,
    Uuid,
    i64,
    String,
    Option<String>,
    i64,
    i64,
);

const TRANSFER_COLUMNS: &str = "id, user_id, debit_account_id, credit_account_id, amount, state, \
     result_code, requested_at_ms, updated_at_ms";

fn decode_transfer(row: TransferRow) -> Result<ChannelTransfer, ChannelError> {
    let (id, user, debit, credit, amount, state, result_code, requested_at_ms, updated_at_ms) = row;
    let corrupt = |what: &str| ChannelError::Corrupt(format!("transfer {id}: {what}"));
    Ok(ChannelTransfer {
        id: TransferId::from_uuid(id).map_err(|_| corrupt("id"))?,
        user: UserId::from_uuid(user).map_err(|_| corrupt("user_id"))?,
        debit: AccountId::from_uuid(debit).map_err(|_| corrupt("debit_account_id"))?,
        credit: AccountId::from_uuid(credit).map_err(|_| corrupt("credit_account_id"))?,
        amount: Krw::positive(amount).map_err(|_| corrupt("amount"))?,
        state: TransferState::parse(&state).ok_or_else(|| corrupt("state"))?,
        result_code,
        requested_at: Timestamp::from_unix_ms(requested_at_ms),
        updated_at: Timestamp::from_unix_ms(updated_at_ms),
    })
}

/// What storing a new request came to.
pub(crate) enum Inserted {
    New(ChannelTransfer),
    /// The id was already stored; here is that row, untouched.
    Existing(ChannelTransfer),
}

/// Stores a request as `requested`. The partial unique index refuses a second
/// in-flight transfer of the same user, in any process.
pub(crate) async fn insert_requested(
    store: &Store,
    new: &NewTransfer,
    now: Timestamp,
) -> Result<Inserted, ChannelError> {
    let sql = "INSERT INTO channel_transfers (id, user_id, debit_account_id, credit_account_id, \
               amount, state, result_code, requested_at_ms, updated_at_ms) \
               VALUES ($1, $2, $3, $4, $5, 'requested', NULL, $6, $6) \
               ON CONFLICT (id) DO NOTHING";
    let inserted = on_store!(store, |pool| sqlx::query(sql)
        .bind(new.id().as_uuid())
        .bind(new.user().as_uuid())
        .bind(new.debit().as_uuid())
        .bind(new.credit().as_uuid())
        .bind(new.amount().get())
        .bind(now.unix_ms())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()));
    let existing = |store: &Store| {
        let store = store.clone();
        let id = new.id();
        async move {
            match load_transfer(&store, id).await? {
                Some(existing) => Ok(Inserted::Existing(existing)),
                None => Err(ChannelError::Corrupt(format!(
                    "transfer {id} conflicted but cannot be read"
                ))),
            }
        }
    };
    match inserted {
        Ok(1) => Ok(Inserted::New(ChannelTransfer {
            id: new.id(),
            user: new.user(),
            debit: new.debit(),
            credit: new.credit(),
            amount: new.amount(),
            state: TransferState::Requested,
            result_code: None,
            requested_at: now,
            updated_at: now,
        })),
        Ok(_) => existing(store).await,
        Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
            // A backend may check the in-flight index before the id: a retry of
            // the in-flight transfer itself is a retry, not a second transfer.
            if load_transfer(store, new.id()).await?.is_some() {
                return existing(store).await;
            }
            Err(ChannelError::TransferInProgress { user: new.user() })
        }
        Err(error) => Err(error.into()),
    }
}

pub(crate) async fn load_transfer(
    store: &Store,
    id: TransferId,
) -> Result<Option<ChannelTransfer>, ChannelError> {
    let sql = format!("SELECT {TRANSFER_COLUMNS} FROM channel_transfers WHERE id = $1");
    let row: Option<TransferRow> = on_store!(store, |pool| sqlx::query_as(&sql)
        .bind(id.as_uuid())
        .fetch_optional(pool)
        .await)?;
    row.map(decode_transfer).transpose()
}

/// Moves a transfer from `from` to `to` if it is still in `from`; false if another
/// process moved it first.
pub(crate) async fn move_state(
    store: &Store,
    id: TransferId,
    from: TransferState,
    to: TransferState,
    result_code: Option<&str>,
    now: Timestamp,
) -> Result<bool, ChannelError> {
    let sql = "UPDATE channel_transfers SET state = $1, result_code = COALESCE($2, result_code), \
               updated_at_ms = $3 WHERE id = $4 AND state = $5";
    let moved = on_store!(store, |pool| sqlx::query(sql)
        .bind(to.name())
        .bind(result_code)
        .bind(now.unix_ms())
        .bind(id.as_uuid())
        .bind(from.name())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(moved == 1)
}

/// In-flight transfers the reconciler should ask about: every `unknown` one, and
/// `requested`/`sent` ones untouched since `stale_before`; oldest first.
pub(crate) async fn reconcilable(
    store: &Store,
    stale_before: Timestamp,
    limit: usize,
) -> Result<Vec<ChannelTransfer>, ChannelError> {
    let sql = format!(
        "SELECT {TRANSFER_COLUMNS} FROM channel_transfers WHERE state IN {IN_FLIGHT} \
         AND (state = 'unknown' OR updated_at_ms <= $1) ORDER BY updated_at_ms LIMIT $2"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows: Vec<TransferRow> = on_store!(store, |pool| sqlx::query_as(&sql)
        .bind(stale_before.unix_ms())
        .bind(limit)
        .fetch_all(pool)
        .await)?;
    rows.into_iter().map(decode_transfer).collect()
}

/// Counts of in-flight transfers and the oldest one's `requested_at`.
pub(crate) struct InFlightStats {
    pub in_flight: i64,
    pub unknown: i64,
    pub oldest_unknown_requested_at: Option<Timestamp>,
}

pub(crate) async fn in_flight_stats(store: &Store) -> Result<InFlightStats, ChannelError> {
    let sql = format!(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN state = 'unknown' THEN 1 ELSE 0 END), 0), \
         MIN(CASE WHEN state = 'unknown' THEN requested_at_ms END) \
         FROM channel_transfers WHERE state IN {IN_FLIGHT}"
    );
    let (in_flight, unknown, oldest): (i64, i64, Option<i64>) =
        on_store!(store, |pool| sqlx::query_as(&sql).fetch_one(pool).await)?;
    Ok(InFlightStats {
        in_flight,
        unknown,
        oldest_unknown_requested_at: oldest.map(Timestamp::from_unix_ms),
    })
}

/// True when a transfer touching `account` is `requested`, `sent` or `unknown`.
pub(crate) async fn account_has_in_flight(
    store: &Store,
    account: AccountId,
) -> Result<bool, ChannelError> {
    let sql = format!(
        "SELECT 1 FROM channel_transfers WHERE state IN {IN_FLIGHT} AND debit_account_id = $1 \
         UNION ALL SELECT 1 FROM channel_transfers WHERE state IN {IN_FLIGHT} \
         AND credit_account_id = $1 LIMIT 1"
    );
    let found: Option<i32> = on_store!(store, |pool| sqlx::query_scalar(&sql)
        .bind(account.as_uuid())
        .fetch_optional(pool)
        .await)?;
    Ok(found.is_some())
}

type EntryRow = (Uuid, i64, Uuid, i64, i64, i64, i64, i64);

const ENTRY_COLUMNS: &str = "account_id, seq, transfer_id, debits_pending, debits_posted, \
     credits_pending, credits_posted, created_at_ms";

fn decode_entry(row: EntryRow) -> Result<Entry, ChannelError> {
    let (account, seq, transfer, dp, dpo, cp, cpo, created_at_ms) = row;
    let corrupt = |what: &str| ChannelError::Corrupt(format!("entry {account}/{seq}: {what}"));
    Ok(Entry {
        account_id: AccountId::from_uuid(account).map_err(|_| corrupt("account_id"))?,
        seq,
        transfer_id: TransferId::from_uuid(transfer).map_err(|_| corrupt("transfer_id"))?,
        debits_pending: Krw::new(dp),
        debits_posted: Krw::new(dpo),
        credits_pending: Krw::new(cp),
        credits_posted: Krw::new(cpo),
        created_at: Timestamp::from_unix_ms(created_at_ms),
    })
}

/// The read model's last applied seq of `account` (0: nothing yet).
pub(crate) async fn last_seq(store: &Store, account: AccountId) -> Result<i64, ChannelError> {
    let last: Option<i64> = on_store!(store, |pool| sqlx::query_scalar(
        "SELECT last_seq FROM channel_history_accounts WHERE account_id = $1"
    )
    .bind(account.as_uuid())
    .fetch_optional(pool)
    .await)?;
    Ok(last.unwrap_or(0))
}

/// [`last_seq`] as seen inside the caller's transaction.
pub(crate) async fn last_seq_in_tx(tx: &mut Tx, account: AccountId) -> Result<i64, ChannelError> {
    let last: Option<i64> = on_tx!(tx, |conn| sqlx::query_scalar(
        "SELECT last_seq FROM channel_history_accounts WHERE account_id = $1"
    )
    .bind(account.as_uuid())
    .fetch_optional(conn)
    .await)?;
    Ok(last.unwrap_or(0))
}

/// The part of `entries` that continues a prefix ending at `last_seq`: entries of
/// `account` with seq `last_seq + 1, last_seq + 2, …` without a break. Anything
/// already applied is skipped; anything after a gap is left for later.
pub(crate) fn continuation(account: AccountId, last_seq: i64, entries: &[Entry]) -> &[Entry] {
    let fresh = entries
        .iter()
        .position(|e| e.seq > last_seq)
        .unwrap_or(entries.len());
    let rest = &entries[fresh..];
    let mut expected = last_seq.saturating_add(1);
    let mut take = 0;
    for entry in rest {
        if entry.account_id != account || entry.seq != expected {
            break;
        }
        take += 1;
        expected = expected.saturating_add(1);
    }
    &rest[..take]
}

/// What one apply did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Applied {
    pub applied: usize,
    pub last_seq: i64,
}

/// Applies the continuation of `entries` to the read model in one transaction: the
/// rows and the account's `last_seq` move together, under the account row's lock,
/// so redelivery and concurrent syncs are harmless.
pub(crate) async fn apply_entries(
    store: &Store,
    account: AccountId,
    entries: &[Entry],
    now: Timestamp,
) -> Result<Applied, ChannelError> {
    let mut tx = store.begin().await?;
    let outcome = apply_in_tx(&mut tx, account, entries, now).await;
    match outcome {
        Ok(applied) => {
            tx.commit().await?;
            Ok(applied)
        }
        Err(error) => {
            let _ = tx.rollback().await;
            Err(error)
        }
    }
}

/// [`apply_entries`] inside the caller's transaction (which must be on the
/// channel's tables' database).
pub(crate) async fn apply_in_tx(
    tx: &mut Tx,
    account: AccountId,
    entries: &[Entry],
    now: Timestamp,
) -> Result<Applied, ChannelError> {
    let id = account.as_uuid();
    on_tx!(tx, |conn| sqlx::query(
        "INSERT INTO channel_history_accounts (account_id, last_seq, updated_at_ms) \
         VALUES ($1, 0, $2) ON CONFLICT (account_id) DO NOTHING"
    )
    .bind(id)
    .bind(now.unix_ms())
    .execute(conn)
    .await
    .map(|_| ()))?;
    let last: i64 =
        match tx {
            Tx::Sqlite(conn) => {
                sqlx::query_scalar(
                    "SELECT last_seq FROM channel_history_accounts WHERE account_id = $1",
                )
                .bind(id)
                .fetch_one(&mut **conn)
                .await?
            }
            Tx::Postgres(conn) => sqlx::query_scalar(
                "SELECT last_seq FROM channel_history_accounts WHERE account_id = $1 FOR UPDATE",
            )
            .bind(id)
            .fetch_one(&mut **conn)
            .await?,
        };
    let fresh = continuation(account, last, entries);
    let Some(newest) = fresh.last() else {
        return Ok(Applied {
            applied: 0,
            last_seq: last,
        });
    };
    insert_entries(tx, id, fresh).await?;
    let moved = on_tx!(tx, |conn| sqlx::query(
        "UPDATE channel_history_accounts SET last_seq = $1, updated_at_ms = $2 \
         WHERE account_id = $3 AND last_seq = $4"
    )
    .bind(newest.seq)
    .bind(now.unix_ms())
    .bind(id)
    .bind(last)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    if moved != 1 {
        return Err(ChannelError::Corrupt(format!(
            "last_seq of {account} moved under its lock"
        )));
    }
    Ok(Applied {
        applied: fresh.len(),
        last_seq: newest.seq,
    })
}

/// Rows per multi-row INSERT on SQLite: 8 parameters each, far under SQLite's
/// 32,766-parameter limit.
const SQLITE_ROWS_PER_INSERT_MAX: usize = 500;

/// Inserts entry rows in bulk: multi-row INSERTs on SQLite, one `UNNEST` statement
/// on PostgreSQL.
async fn insert_entries(tx: &mut Tx, account: Uuid, entries: &[Entry]) -> Result<(), ChannelError> {
    match tx {
        Tx::Sqlite(conn) => {
            for chunk in entries.chunks(SQLITE_ROWS_PER_INSERT_MAX) {
                let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
                    "INSERT INTO channel_history_entries ({ENTRY_COLUMNS}) "
                ));
                insert.push_values(chunk, |mut row, entry| {
                    row.push_bind(account)
                        .push_bind(entry.seq)
                        .push_bind(entry.transfer_id.as_uuid())
                        .push_bind(entry.debits_pending.get())
                        .push_bind(entry.debits_posted.get())
                        .push_bind(entry.credits_pending.get())
                        .push_bind(entry.credits_posted.get())
                        .push_bind(entry.created_at.unix_ms());
                });
                insert.build().execute(&mut **conn).await?;
            }
        }
        Tx::Postgres(conn) => {
            let column = |f: fn(&Entry) -> i64| entries.iter().map(f).collect::<Vec<i64>>();
            let transfers: Vec<Uuid> = entries.iter().map(|e| e.transfer_id.as_uuid()).collect();
            sqlx::query(&format!(
                "INSERT INTO channel_history_entries ({ENTRY_COLUMNS}) \
                 SELECT $1, seq, transfer_id, dp, dpo, cp, cpo, created_at_ms \
                 FROM UNNEST($2::int8[], $3::uuid[], $4::int8[], $5::int8[], $6::int8[], \
                             $7::int8[], $8::int8[]) \
                     AS e(seq, transfer_id, dp, dpo, cp, cpo, created_at_ms)"
            ))
            .bind(account)
            .bind(column(|e| e.seq))
            .bind(transfers)
            .bind(column(|e| e.debits_pending.get()))
            .bind(column(|e| e.debits_posted.get()))
            .bind(column(|e| e.credits_pending.get()))
            .bind(column(|e| e.credits_posted.get()))
            .bind(column(|e| e.created_at.unix_ms()))
            .execute(&mut **conn)
            .await?;
        }
    }
    Ok(())
}

/// Up to `limit` entries of `account` with seq below `before_seq`, newest first:
/// keyset pagination on the primary key, the same cost at any depth.
pub(crate) async fn history_page(
    store: &Store,
    account: AccountId,
    before_seq: i64,
    limit: usize,
) -> Result<Vec<Entry>, ChannelError> {
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM channel_history_entries \
         WHERE account_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows: Vec<EntryRow> = on_store!(store, |pool| sqlx::query_as(&sql)
        .bind(account.as_uuid())
        .bind(before_seq)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
    rows.into_iter().map(decode_entry).collect()
}

/// The baseline for the benchmark only: the same page by OFFSET, which reads and
/// throws away every row before it.
pub(crate) async fn history_page_by_offset(
    store: &Store,
    account: AccountId,
    offset: i64,
    limit: usize,
) -> Result<Vec<Entry>, ChannelError> {
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM channel_history_entries \
         WHERE account_id = $1 ORDER BY seq DESC LIMIT $2 OFFSET $3"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows: Vec<EntryRow> = on_store!(store, |pool| sqlx::query_as(&sql)
        .bind(account.as_uuid())
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await)?;
    rows.into_iter().map(decode_entry).collect()
}

/// For the benchmark only: writes `count` synthetic entries of `account` (seq
/// 1..=count, each a credit of 1 won) straight into the read model in one statement.
pub(crate) async fn bulk_load(
    store: &Store,
    account: AccountId,
    transfer: TransferId,
    count: i64,
    now: Timestamp,
) -> Result<(), ChannelError> {
    let series = match store {
        Store::Sqlite(_) => {
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $2) \
             SELECT $1, n, $3, 0, 0, 0, n, $4 FROM g"
        }
        Store::Postgres(_) => {
            "SELECT $1, n, $3, 0, 0, 0, n, $4 FROM generate_series(1::int8, $2::int8) AS g(n)"
        }
    };
    let insert = format!("INSERT INTO channel_history_entries ({ENTRY_COLUMNS}) {series}");
    let mut tx = store.begin().await?;
    on_tx!(&mut tx, |conn| sqlx::query(&insert)
        .bind(account.as_uuid())
        .bind(count)
        .bind(transfer.as_uuid())
        .bind(now.unix_ms())
        .execute(conn)
        .await
        .map(|_| ()))?;
    on_tx!(&mut tx, |conn| sqlx::query(
        "INSERT INTO channel_history_accounts (account_id, last_seq, updated_at_ms) \
         VALUES ($1, $2, $3)"
    )
    .bind(account.as_uuid())
    .bind(count)
    .bind(now.unix_ms())
    .execute(conn)
    .await
    .map(|_| ()))?;
    tx.commit().await?;
    // Vacuum sets the visibility map, so neither reader pays for it and autovacuum
    // does not wake up in the middle of the measurement.
    let settle = match store {
        Store::Sqlite(_) => "ANALYZE",
        Store::Postgres(_) => "VACUUM ANALYZE channel_history_entries",
    };
    on_store!(store, |pool| sqlx::query(settle)
        .execute(pool)
        .await
        .map(|_| ()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(account: AccountId, seq: i64) -> Entry {
        Entry {
            account_id: account,
            seq,
            transfer_id: TransferId::from_u128(9).unwrap(),
            debits_pending: Krw::ZERO,
            debits_posted: Krw::ZERO,
            credits_pending: Krw::ZERO,
            credits_posted: Krw::new(seq),
            created_at: Timestamp::from_unix_ms(0),
        }
    }

    #[test]
    fn only_the_unbroken_run_after_last_seq_is_applied() {
        let a = AccountId::from_u128(1).unwrap();
        let b = AccountId::from_u128(2).unwrap();
        let seqs = |es: &[Entry]| es.iter().map(|e| e.seq).collect::<Vec<_>>();
        let run: Vec<Entry> = (1..=5).map(|s| entry(a, s)).collect();
        assert_eq!(seqs(continuation(a, 2, &run)), [3, 4, 5]);
        assert_eq!(seqs(continuation(a, 5, &run)), Vec::<i64>::new());
        let gapped = [entry(a, 3), entry(a, 4), entry(a, 6)];
        assert_eq!(seqs(continuation(a, 2, &gapped)), [3, 4]);
        assert_eq!(seqs(continuation(a, 1, &gapped)), Vec::<i64>::new());
        let foreign = [entry(a, 3), entry(b, 4)];
        assert_eq!(seqs(continuation(a, 2, &foreign)), [3]);
    }
}
