//! The `fees` store module: its tables, its SQL, and nothing else. Queries are
//! written once with `$n` placeholders, which SQLite and PostgreSQL both accept.
//! No other crate reads these tables, and this module never reads another's.

use store::{Migration, Store, Tx};

use crate::FeesError;
use store::{on_pool, on_tx};

pub(crate) const COMPONENT: &str = "fees";

const SCHEMA: &str = "
CREATE TABLE fees_loans (
    loan_id BIGINT PRIMARY KEY,
    bank_account TEXT NOT NULL,
    holder_name TEXT NOT NULL
);
CREATE TABLE fees_accruals (
    transfer_id TEXT PRIMARY KEY,
    day TEXT NOT NULL,
    loan_id BIGINT NOT NULL REFERENCES fees_loans (loan_id),
    kind BIGINT NOT NULL,
    amount_krw BIGINT NOT NULL CHECK (amount_krw > 0),
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX fees_accruals_day ON fees_accruals (day);
CREATE TABLE fees_days (
    day TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('recorded', 'verified', 'withdrawn')),
    items BIGINT NOT NULL,
    total_krw BIGINT NOT NULL,
    paid_krw BIGINT NOT NULL DEFAULT 0,
    blocked_items BIGINT NOT NULL DEFAULT 0,
    next_pay_seq BIGINT NOT NULL DEFAULT 0,
    next_withdraw_seq BIGINT NOT NULL DEFAULT 0,
    recorded_at_ms BIGINT NOT NULL,
    verified_at_ms BIGINT,
    withdrawn_at_ms BIGINT
);
CREATE TABLE fees_items (
    day TEXT NOT NULL REFERENCES fees_days (day),
    loan_id BIGINT NOT NULL REFERENCES fees_loans (loan_id),
    kind BIGINT NOT NULL,
    amount_krw BIGINT NOT NULL CHECK (amount_krw > 0),
    PRIMARY KEY (day, loan_id, kind)
);
CREATE TABLE fees_chunks (
    bank_tran_id TEXT PRIMARY KEY,
    purpose TEXT NOT NULL CHECK (purpose IN ('pay', 'withdraw')),
    day TEXT NOT NULL REFERENCES fees_days (day),
    loan_id BIGINT NOT NULL,
    kind BIGINT NOT NULL,
    chunk_no BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    amount_krw BIGINT NOT NULL CHECK (amount_krw > 0),
    tran_date TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('reserved', 'sent', 'unknown', 'succeeded', 'failed')),
    reason TEXT,
    created_at_ms BIGINT NOT NULL,
    sent_at_ms BIGINT,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (purpose, day, loan_id, kind, chunk_no, attempt)
);
CREATE INDEX fees_chunks_day ON fees_chunks (day, purpose, state);
";

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "loans accruals days items chunks",
        sqlite: SCHEMA,
        postgres: SCHEMA,
    },
    Migration {
        version: 2,
        name: "runs",
        sqlite: "CREATE TABLE fees_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            module TEXT NOT NULL,
            day TEXT NOT NULL,
            trigger TEXT NOT NULL,
            started_at_ms BIGINT NOT NULL,
            finished_at_ms BIGINT NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL,
            counts TEXT NOT NULL
        );
        CREATE INDEX fees_runs_day ON fees_runs (day, id);",
        postgres: "CREATE TABLE fees_runs (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            module TEXT NOT NULL,
            day TEXT NOT NULL,
            trigger TEXT NOT NULL,
            started_at_ms BIGINT NOT NULL,
            finished_at_ms BIGINT NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL,
            counts TEXT NOT NULL
        );
        CREATE INDEX fees_runs_day ON fees_runs (day, id);",
    },
    Migration {
        version: 3,
        name: "chunk transient answers and retry time",
        sqlite: TRANSIENT_COLUMNS,
        postgres: TRANSIENT_COLUMNS,
    },
];

/// A chunk the bank answered "not processed" (429, maintenance, busy, nothing
/// sent) goes back to `reserved` under the same id, to be sent after `retry_at_ms`.
const TRANSIENT_COLUMNS: &str = "
ALTER TABLE fees_chunks ADD COLUMN transient_answers BIGINT NOT NULL DEFAULT 0;
ALTER TABLE fees_chunks ADD COLUMN retry_at_ms BIGINT;
";

fn to_db(value: u64) -> Result<i64, FeesError> {
    i64::try_from(value).map_err(|_| FeesError::Invalid(format!("{value} does not fit in 63 bits")))
}

fn from_db(value: i64) -> Result<u64, FeesError> {
    u64::try_from(value).map_err(|_| FeesError::Corrupt(format!("negative id {value}")))
}

// ---- loans and accruals ----

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LoanRow {
    pub loan_id: u64,
    pub bank_account: String,
    pub holder_name: String,
}

/// Inserts a loan; false when its id was stored before (the caller compares).
pub(crate) async fn insert_loan(tx: &mut Tx, loan: &LoanRow) -> Result<bool, FeesError> {
    let id = to_db(loan.loan_id)?;
    let inserted = on_tx!(
        tx,
        sqlx::query(
            "INSERT INTO fees_loans (loan_id, bank_account, holder_name) VALUES ($1, $2, $3)
             ON CONFLICT (loan_id) DO NOTHING"
        )
        .bind(id)
        .bind(&loan.bank_account)
        .bind(&loan.holder_name),
        execute
    )?;
    Ok(inserted == 1)
}

/// One loan, read inside the writing transaction.
pub(crate) async fn loan_in(tx: &mut Tx, loan_id: u64) -> Result<Option<LoanRow>, FeesError> {
    let row: Option<(i64, String, String)> = on_tx!(
        tx,
        sqlx::query_as::<_, (i64, String, String)>(
            "SELECT loan_id, bank_account, holder_name FROM fees_loans WHERE loan_id = $1"
        )
        .bind(to_db(loan_id)?),
        fetch_optional
    )?;
    row.map(|(loan_id, bank_account, holder_name)| {
        Ok(LoanRow {
            loan_id: from_db(loan_id)?,
            bank_account,
            holder_name,
        })
    })
    .transpose()
}

pub(crate) async fn loans(store: &Store, ids: &[u64]) -> Result<Vec<LoanRow>, FeesError> {
    let mut found = Vec::with_capacity(ids.len());
    // Bounded pages of ids keep each statement's parameter list small.
    for page in ids.chunks(500) {
        let list = page
            .iter()
            .map(|id| to_db(*id).map(|v| v.to_string()))
            .collect::<Result<Vec<_>, _>>()?
            .join(",");
        let sql = format!(
            "SELECT loan_id, bank_account, holder_name FROM fees_loans WHERE loan_id IN ({list})"
        );
        let rows: Vec<(i64, String, String)> = on_pool!(
            store,
            sqlx::query_as::<_, (i64, String, String)>(&sql),
            fetch_all
        )?;
        for (loan_id, bank_account, holder_name) in rows {
            found.push(LoanRow {
                loan_id: from_db(loan_id)?,
                bank_account,
                holder_name,
            });
        }
    }
    Ok(found)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AccrualRow {
    pub transfer_id: String,
    pub day: String,
    pub loan_id: u64,
    pub kind: u16,
    pub amount_krw: i64,
}

/// Journals an accrual before the ledger applies it. Returns false if the id was
/// journaled before (with the same fields or not: the caller compares).
pub(crate) async fn insert_accrual(
    tx: &mut Tx,
    accrual: &AccrualRow,
    now_ms: i64,
) -> Result<bool, FeesError> {
    let loan_id = to_db(accrual.loan_id)?;
    let inserted = on_tx!(
        tx,
        sqlx::query(
            "INSERT INTO fees_accruals (transfer_id, day, loan_id, kind, amount_krw, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (transfer_id) DO NOTHING"
        )
        .bind(&accrual.transfer_id)
        .bind(&accrual.day)
        .bind(loan_id)
        .bind(i64::from(accrual.kind))
        .bind(accrual.amount_krw)
        .bind(now_ms),
        execute
    )?;
    Ok(inserted == 1)
}

type AccrualTuple = (String, String, i64, i64, i64);

fn accrual_from(row: AccrualTuple) -> Result<AccrualRow, FeesError> {
    Ok(AccrualRow {
        transfer_id: row.0,
        day: row.1,
        loan_id: from_db(row.2)?,
        kind: u16::try_from(row.3).map_err(|_| FeesError::Corrupt(format!("kind {}", row.3)))?,
        amount_krw: row.4,
    })
}

pub(crate) async fn accruals_of_day(
    store: &Store,
    day: &str,
    limit: usize,
) -> Result<Vec<AccrualRow>, FeesError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows: Vec<AccrualTuple> = on_pool!(
        store,
        sqlx::query_as::<_, AccrualTuple>(
            "SELECT transfer_id, day, loan_id, kind, amount_krw FROM fees_accruals
             WHERE day = $1 ORDER BY transfer_id LIMIT $2"
        )
        .bind(day)
        .bind(limit),
        fetch_all
    )?;
    rows.into_iter().map(accrual_from).collect()
}

/// The journaled accruals among `ids` (transfer ids), in bounded pages.
pub(crate) async fn accruals_by_id(
    store: &Store,
    ids: &[String],
) -> Result<Vec<AccrualRow>, FeesError> {
    let mut found = Vec::with_capacity(ids.len());
    for page in ids.chunks(500) {
        let placeholders = (1..=page.len())
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT transfer_id, day, loan_id, kind, amount_krw FROM fees_accruals
             WHERE transfer_id IN ({placeholders})"
        );
        let rows: Vec<AccrualTuple> = on_pool!(
            store,
            page.iter()
                .fold(sqlx::query_as::<_, AccrualTuple>(&sql), |q, id| q.bind(id)),
            fetch_all
        )?;
        for row in rows {
            found.push(accrual_from(row)?);
        }
    }
    Ok(found)
}

/// One accrual, read inside the writing transaction.
pub(crate) async fn accrual_in(tx: &mut Tx, id: &str) -> Result<Option<AccrualRow>, FeesError> {
    let row: Option<AccrualTuple> = on_tx!(
        tx,
        sqlx::query_as::<_, AccrualTuple>(
            "SELECT transfer_id, day, loan_id, kind, amount_krw FROM fees_accruals
             WHERE transfer_id = $1"
        )
        .bind(id),
        fetch_optional
    )?;
    row.map(accrual_from).transpose()
}

pub(crate) async fn accrual(store: &Store, id: &str) -> Result<Option<AccrualRow>, FeesError> {
    let row: Option<AccrualTuple> = on_pool!(
        store,
        sqlx::query_as::<_, AccrualTuple>(
            "SELECT transfer_id, day, loan_id, kind, amount_krw FROM fees_accruals
             WHERE transfer_id = $1"
        )
        .bind(id),
        fetch_optional
    )?;
    row.map(accrual_from).transpose()
}

/// Days that have accruals but no record yet, oldest first.
pub(crate) async fn unrecorded_days(store: &Store, limit: i64) -> Result<Vec<String>, FeesError> {
    Ok(on_pool!(
        store,
        sqlx::query_scalar::<_, String>(
            "SELECT DISTINCT a.day FROM fees_accruals a
             WHERE NOT EXISTS (SELECT 1 FROM fees_days d WHERE d.day = a.day)
             ORDER BY a.day LIMIT $1"
        )
        .bind(limit),
        fetch_all
    )?)
}

// ---- days and items ----

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DayRow {
    pub day: String,
    pub state: String,
    pub items: i64,
    pub total_krw: i64,
    pub paid_krw: i64,
    pub blocked_items: i64,
    pub recorded_at_ms: i64,
    pub verified_at_ms: Option<i64>,
    pub withdrawn_at_ms: Option<i64>,
}

type DayTuple = (
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
);

const DAY_COLUMNS: &str = "day, state, items, total_krw, paid_krw, blocked_items, \
    recorded_at_ms, verified_at_ms, withdrawn_at_ms";

fn day_from(row: DayTuple) -> DayRow {
    DayRow {
        day: row.0,
        state: row.1,
        items: row.2,
        total_krw: row.3,
        paid_krw: row.4,
        blocked_items: row.5,
        recorded_at_ms: row.6,
        verified_at_ms: row.7,
        withdrawn_at_ms: row.8,
    }
}

pub(crate) async fn day(store: &Store, day: &str) -> Result<Option<DayRow>, FeesError> {
    let sql = format!("SELECT {DAY_COLUMNS} FROM fees_days WHERE day = $1");
    let row: Option<DayTuple> = on_pool!(
        store,
        sqlx::query_as::<_, DayTuple>(&sql).bind(day),
        fetch_optional
    )?;
    Ok(row.map(day_from))
}

/// Days not yet withdrawn (or, with `all`, every day), oldest first.
pub(crate) async fn days(store: &Store, all: bool, limit: i64) -> Result<Vec<DayRow>, FeesError> {
    let filter = if all {
        ""
    } else {
        "WHERE state <> 'withdrawn'"
    };
    let sql = format!("SELECT {DAY_COLUMNS} FROM fees_days {filter} ORDER BY day LIMIT $1");
    let rows: Vec<DayTuple> = on_pool!(
        store,
        sqlx::query_as::<_, DayTuple>(&sql).bind(limit),
        fetch_all
    )?;
    Ok(rows.into_iter().map(day_from).collect())
}

pub(crate) async fn insert_day(
    tx: &mut Tx,
    day: &str,
    items: i64,
    total_krw: i64,
    now_ms: i64,
) -> Result<bool, FeesError> {
    let inserted = on_tx!(
        tx,
        sqlx::query(
            "INSERT INTO fees_days (day, state, items, total_krw, recorded_at_ms)
             VALUES ($1, 'recorded', $2, $3, $4) ON CONFLICT (day) DO NOTHING"
        )
        .bind(day)
        .bind(items)
        .bind(total_krw)
        .bind(now_ms),
        execute
    )?;
    Ok(inserted == 1)
}

pub(crate) async fn insert_item(
    tx: &mut Tx,
    day: &str,
    loan_id: u64,
    kind: u16,
    amount_krw: i64,
) -> Result<(), FeesError> {
    let loan_id = to_db(loan_id)?;
    on_tx!(
        tx,
        sqlx::query(
            "INSERT INTO fees_items (day, loan_id, kind, amount_krw) VALUES ($1, $2, $3, $4)"
        )
        .bind(day)
        .bind(loan_id)
        .bind(i64::from(kind))
        .bind(amount_krw),
        execute
    )?;
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ItemRow {
    pub loan_id: u64,
    pub kind: u16,
    pub amount_krw: i64,
}

pub(crate) async fn items(store: &Store, day: &str) -> Result<Vec<ItemRow>, FeesError> {
    let rows: Vec<(i64, i64, i64)> = on_pool!(
        store,
        sqlx::query_as::<_, (i64, i64, i64)>(
            "SELECT loan_id, kind, amount_krw FROM fees_items WHERE day = $1
             ORDER BY loan_id, kind"
        )
        .bind(day),
        fetch_all
    )?;
    rows.into_iter()
        .map(|(loan_id, kind, amount_krw)| {
            Ok(ItemRow {
                loan_id: from_db(loan_id)?,
                kind: u16::try_from(kind)
                    .map_err(|_| FeesError::Corrupt(format!("kind {kind}")))?,
                amount_krw,
            })
        })
        .collect()
}

/// Moves a day from `from` to `to` with its settled figures; false if it was not
/// in `from` (someone else moved it first).
pub(crate) async fn advance_day(
    tx: &mut Tx,
    day: &str,
    from: &str,
    to: &str,
    paid_krw: i64,
    blocked_items: i64,
    now_ms: i64,
) -> Result<bool, FeesError> {
    let column = match to {
        "verified" => "verified_at_ms",
        "withdrawn" => "withdrawn_at_ms",
        other => return Err(FeesError::Invariant(format!("no day state {other}"))),
    };
    let sql = format!(
        "UPDATE fees_days SET state = $1, paid_krw = $2, blocked_items = $3, {column} = $4
         WHERE day = $5 AND state = $6"
    );
    let updated = on_tx!(
        tx,
        sqlx::query(&sql)
            .bind(to)
            .bind(paid_krw)
            .bind(blocked_items)
            .bind(now_ms)
            .bind(day)
            .bind(from),
        execute
    )?;
    Ok(updated == 1)
}

/// Hands out `count` chunk sequence numbers of `purpose` for `day`; returns the
/// first. Runs in the transaction that stores the chunks.
pub(crate) async fn take_sequences(
    tx: &mut Tx,
    day: &str,
    withdraw: bool,
    count: i64,
) -> Result<i64, FeesError> {
    let column = if withdraw {
        "next_withdraw_seq"
    } else {
        "next_pay_seq"
    };
    let sql =
        format!("UPDATE fees_days SET {column} = {column} + $1 WHERE day = $2 RETURNING {column}");
    let next: Option<i64> = on_tx!(
        tx,
        sqlx::query_scalar::<_, i64>(&sql).bind(count).bind(day),
        fetch_optional
    )?;
    let next = next.ok_or_else(|| FeesError::Invariant(format!("day {day} is not recorded")))?;
    Ok(next - count)
}

// ---- chunks ----

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChunkRow {
    pub bank_tran_id: String,
    pub purpose: String,
    pub day: String,
    pub loan_id: u64,
    pub kind: u16,
    pub chunk_no: i64,
    pub attempt: i64,
    pub amount_krw: i64,
    pub tran_date: String,
    pub state: String,
    pub reason: Option<String>,
    pub sent_at_ms: Option<i64>,
    pub updated_at_ms: i64,
    /// How many times the bank answered "not processed" to this id.
    pub transient_answers: i64,
    /// Not to be sent before this time (after a transient answer).
    pub retry_at_ms: Option<i64>,
}

type ChunkTuple = (
    String,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<i64>,
    i64,
    i64,
    Option<i64>,
);

const CHUNK_COLUMNS: &str = "bank_tran_id, purpose, day, loan_id, kind, chunk_no, attempt, \
    amount_krw, tran_date, state, reason, sent_at_ms, updated_at_ms, transient_answers, \
    retry_at_ms";

fn chunk_from(row: ChunkTuple) -> Result<ChunkRow, FeesError> {
    Ok(ChunkRow {
        bank_tran_id: row.0,
        purpose: row.1,
        day: row.2,
        loan_id: from_db(row.3)?,
        kind: u16::try_from(row.4).map_err(|_| FeesError::Corrupt(format!("kind {}", row.4)))?,
        chunk_no: row.5,
        attempt: row.6,
        amount_krw: row.7,
        tran_date: row.8,
        state: row.9,
        reason: row.10,
        sent_at_ms: row.11,
        updated_at_ms: row.12,
        transient_answers: row.13,
        retry_at_ms: row.14,
    })
}

pub(crate) async fn chunks(
    store: &Store,
    day: &str,
    purpose: &str,
) -> Result<Vec<ChunkRow>, FeesError> {
    let sql = format!(
        "SELECT {CHUNK_COLUMNS} FROM fees_chunks WHERE day = $1 AND purpose = $2
         ORDER BY loan_id, kind, chunk_no, attempt"
    );
    let rows: Vec<ChunkTuple> = on_pool!(
        store,
        sqlx::query_as::<_, ChunkTuple>(&sql)
            .bind(day)
            .bind(purpose),
        fetch_all
    )?;
    rows.into_iter().map(chunk_from).collect()
}

pub(crate) async fn insert_chunk(
    tx: &mut Tx,
    chunk: &ChunkRow,
    now_ms: i64,
) -> Result<(), FeesError> {
    let loan_id = to_db(chunk.loan_id)?;
    on_tx!(
        tx,
        sqlx::query(
            "INSERT INTO fees_chunks (bank_tran_id, purpose, day, loan_id, kind, chunk_no,
                attempt, amount_krw, tran_date, state, reason, created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $11)"
        )
        .bind(&chunk.bank_tran_id)
        .bind(&chunk.purpose)
        .bind(&chunk.day)
        .bind(loan_id)
        .bind(i64::from(chunk.kind))
        .bind(chunk.chunk_no)
        .bind(chunk.attempt)
        .bind(chunk.amount_krw)
        .bind(&chunk.tran_date)
        .bind(&chunk.state)
        .bind(now_ms),
        execute
    )?;
    Ok(())
}

/// Moves one chunk to `to` if it is in one of `from`; false if it was not.
pub(crate) async fn move_chunk(
    tx: &mut Tx,
    bank_tran_id: &str,
    from: &[&str],
    to: &str,
    reason: Option<&str>,
    now_ms: i64,
) -> Result<bool, FeesError> {
    let states = from
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(",");
    let sent = if to == "sent" {
        ", sent_at_ms = $4"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE fees_chunks SET state = $1, reason = COALESCE($2, reason), updated_at_ms = $4{sent}
         WHERE bank_tran_id = $3 AND state IN ({states})"
    );
    let updated = on_tx!(
        tx,
        sqlx::query(&sql)
            .bind(to)
            .bind(reason)
            .bind(bank_tran_id)
            .bind(now_ms),
        execute
    )?;
    Ok(updated == 1)
}

/// Puts a `sent` chunk the bank did not process back to `reserved`, same id, to be
/// sent again after `retry_at_ms`.
pub(crate) async fn requeue_chunk(
    tx: &mut Tx,
    bank_tran_id: &str,
    reason: &str,
    retry_at_ms: i64,
    now_ms: i64,
) -> Result<bool, FeesError> {
    let updated = on_tx!(
        tx,
        sqlx::query(
            "UPDATE fees_chunks SET state = 'reserved', reason = $1, retry_at_ms = $2,
                transient_answers = transient_answers + 1, updated_at_ms = $3
             WHERE bank_tran_id = $4 AND state = 'sent'"
        )
        .bind(reason)
        .bind(retry_at_ms)
        .bind(now_ms)
        .bind(bank_tran_id),
        execute
    )?;
    Ok(updated == 1)
}

// ---- runs ----

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunRow {
    pub id: i64,
    pub module: String,
    pub day: String,
    pub trigger: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub outcome: String,
    pub detail: String,
    pub counts: String,
}

pub(crate) async fn insert_run(store: &Store, run: &RunRow) -> Result<(), FeesError> {
    on_pool!(
        store,
        sqlx::query(
            "INSERT INTO fees_runs (module, day, trigger, started_at_ms, finished_at_ms,
                outcome, detail, counts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )
        .bind(&run.module)
        .bind(&run.day)
        .bind(&run.trigger)
        .bind(run.started_at_ms)
        .bind(run.finished_at_ms)
        .bind(&run.outcome)
        .bind(&run.detail)
        .bind(&run.counts),
        execute
    )?;
    Ok(())
}

type RunTuple = (
    i64,
    String,
    String,
    String,
    i64,
    i64,
    String,
    String,
    String,
);

pub(crate) async fn runs(store: &Store, day: &str, limit: i64) -> Result<Vec<RunRow>, FeesError> {
    let rows: Vec<RunTuple> = on_pool!(
        store,
        sqlx::query_as::<_, RunTuple>(
            "SELECT id, module, day, trigger, started_at_ms, finished_at_ms, outcome, detail,
                counts FROM fees_runs WHERE day = $1 ORDER BY id DESC LIMIT $2"
        )
        .bind(day)
        .bind(limit),
        fetch_all
    )?;
    Ok(rows
        .into_iter()
        .map(|r| RunRow {
            id: r.0,
            module: r.1,
            day: r.2,
            trigger: r.3,
            started_at_ms: r.4,
            finished_at_ms: r.5,
            outcome: r.6,
            detail: r.7,
            counts: r.8,
        })
        .collect())
}
