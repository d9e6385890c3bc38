//! The api's own tables (component `api`) and every SQL statement that touches
//! them: API keys (hashes only), account ownership, the channel transfers a
//! customer made through the API, idempotency records, the append-only audit log
//! and pending approvals (maker-checker).
//!
//! No other crate's table is read or written here. The SQL text is one per
//! statement for both dialects (`$N` placeholders); only the DDL differs.

use serde::Serialize;
use store::{Migration, Store, on_pool};

mod accounts;
mod approvals;
mod audit;
mod keys;

pub use accounts::{
    AccountClass, account_class, accounts_of, change_owner, claim_account, owner_of,
};
pub use approvals::{
    ApprovalRow, ApprovalState, NewApproval, approval, approvals_page, count_pending_approvals,
    decide_approval, finish_approval, insert_approval,
};
pub use audit::{AuditBreak, append_audit, verify_audit};
pub use keys::{
    KeyListing, KeyRow, activate_key, insert_key, key_by_hash, key_is_live, key_row, list_keys,
    live_ops_key_exists, revoke_key, rotate_key, touch_key,
};

pub const COMPONENT: &str = "api";

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "keys, ownership, idempotency, audit",
        sqlite: "
CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('ops', 'service', 'customer')),
    customer_id TEXT,
    created_at_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    CHECK ((role = 'customer') = (customer_id IS NOT NULL))
);
CREATE TABLE api_accounts (
    account_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX api_accounts_by_customer ON api_accounts (customer_id, account_id);
CREATE TABLE api_channel_transfers (
    transfer_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX api_channel_transfers_by_account
    ON api_channel_transfers (account_id, created_at_ms);
CREATE TABLE api_idempotency (
    key_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'done')),
    status INTEGER,
    response TEXT,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (key_id, idempotency_key)
);
CREATE TABLE api_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE TRIGGER api_audit_no_update BEFORE UPDATE ON api_audit
BEGIN SELECT RAISE(ABORT, 'api_audit is append-only'); END;
CREATE TRIGGER api_audit_no_delete BEFORE DELETE ON api_audit
BEGIN SELECT RAISE(ABORT, 'api_audit is append-only'); END;
",
        postgres: "
CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('ops', 'service', 'customer')),
    customer_id TEXT,
    created_at_ms BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    CHECK ((role = 'customer') = (customer_id IS NOT NULL))
);
CREATE TABLE api_accounts (
    account_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX api_accounts_by_customer ON api_accounts (customer_id, account_id);
CREATE TABLE api_channel_transfers (
    transfer_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX api_channel_transfers_by_account
    ON api_channel_transfers (account_id, created_at_ms);
CREATE TABLE api_idempotency (
    key_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'done')),
    status BIGINT,
    response TEXT,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (key_id, idempotency_key)
);
CREATE TABLE api_audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE FUNCTION api_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'api_audit is append-only'; END $$;
CREATE TRIGGER api_audit_no_change BEFORE UPDATE OR DELETE ON api_audit
FOR EACH ROW EXECUTE FUNCTION api_audit_append_only();
",
    },
    Migration {
        version: 2,
        name: "account classes, key grants",
        sqlite: "
CREATE TABLE api_accounts_v2 (
    account_id TEXT PRIMARY KEY,
    class TEXT NOT NULL CHECK (class IN ('customer', 'house')),
    customer_id TEXT,
    created_at_ms INTEGER NOT NULL,
    CHECK ((class = 'customer') = (customer_id IS NOT NULL))
);
INSERT INTO api_accounts_v2 (account_id, class, customer_id, created_at_ms)
    SELECT account_id, 'customer', customer_id, created_at_ms FROM api_accounts;
DROP TABLE api_accounts;
ALTER TABLE api_accounts_v2 RENAME TO api_accounts;
CREATE INDEX api_accounts_by_customer ON api_accounts (customer_id, account_id);
ALTER TABLE api_keys ADD COLUMN grants TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN revoked_at_ms INTEGER;
ALTER TABLE api_audit ADD COLUMN prev_hash TEXT;
ALTER TABLE api_audit ADD COLUMN hash TEXT;
CREATE INDEX api_idempotency_by_age ON api_idempotency (created_at_ms);
",
        postgres: "
ALTER TABLE api_accounts ALTER COLUMN customer_id DROP NOT NULL;
ALTER TABLE api_accounts ADD COLUMN class TEXT NOT NULL DEFAULT 'customer'
    CHECK (class IN ('customer', 'house'));
ALTER TABLE api_accounts ALTER COLUMN class DROP DEFAULT;
ALTER TABLE api_accounts ADD CONSTRAINT api_accounts_class_owner
    CHECK ((class = 'customer') = (customer_id IS NOT NULL));
ALTER TABLE api_keys ADD COLUMN grants TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN revoked_at_ms BIGINT;
ALTER TABLE api_audit ADD COLUMN prev_hash TEXT;
ALTER TABLE api_audit ADD COLUMN hash TEXT;
CREATE INDEX api_idempotency_by_age ON api_idempotency (created_at_ms);
",
    },
    Migration {
        version: 3,
        name: "key expiry, last use and rotation; approvals",
        sqlite: "
ALTER TABLE api_keys ADD COLUMN expires_at_ms INTEGER;
ALTER TABLE api_keys ADD COLUMN last_used_at_ms INTEGER;
ALTER TABLE api_keys ADD COLUMN rotated_at_ms INTEGER;
ALTER TABLE api_keys ADD COLUMN awaiting_approval TEXT;
CREATE TABLE api_approvals (
    approval_id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    body TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'done', 'failed')),
    decided_by TEXT,
    decided_at_ms INTEGER,
    reason TEXT,
    outcome TEXT,
    finished_at_ms INTEGER,
    CHECK (state IN ('pending', 'rejected') OR decided_by <> requested_by)
);
CREATE INDEX api_approvals_by_state ON api_approvals (state, requested_at_ms);
",
        postgres: "
ALTER TABLE api_keys ADD COLUMN expires_at_ms BIGINT;
ALTER TABLE api_keys ADD COLUMN last_used_at_ms BIGINT;
ALTER TABLE api_keys ADD COLUMN rotated_at_ms BIGINT;
ALTER TABLE api_keys ADD COLUMN awaiting_approval TEXT;
CREATE TABLE api_approvals (
    approval_id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    body TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'done', 'failed')),
    decided_by TEXT,
    decided_at_ms BIGINT,
    reason TEXT,
    outcome TEXT,
    finished_at_ms BIGINT,
    CHECK (state IN ('pending', 'rejected') OR decided_by <> requested_by)
);
CREATE INDEX api_approvals_by_state ON api_approvals (state, requested_at_ms);
",
    },
];

/// One audit record.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
#[schemars(rename = "AuditRecord")]
pub struct AuditRow {
    pub id: i64,
    pub at_ms: i64,
    pub key_id: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
}

type AuditTuple = (i64, i64, String, String, String, String);

/// Audit records with id below `before_id`, newest first.
pub async fn audit_page(
    store: &Store,
    before_id: i64,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    let rows: Vec<AuditTuple> = on_pool!(
        store,
        sqlx::query_as::<_, AuditTuple>(
            "SELECT id, at_ms, key_id, action, target, details FROM api_audit
             WHERE id < $1 ORDER BY id DESC LIMIT $2"
        )
        .bind(before_id)
        .bind(limit),
        fetch_all
    )?;
    Ok(rows
        .into_iter()
        .map(|(id, at_ms, key_id, action, target, details)| AuditRow {
            id,
            at_ms,
            key_id,
            action,
            target,
            details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
        })
        .collect())
}

pub async fn record_channel_transfer(
    store: &Store,
    transfer_id: &str,
    account_id: &str,
    customer_id: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    on_pool!(
        store,
        sqlx::query(
            "INSERT INTO api_channel_transfers (transfer_id, account_id, customer_id, created_at_ms)
             VALUES ($1, $2, $3, $4) ON CONFLICT (transfer_id) DO NOTHING"
        )
        .bind(transfer_id)
        .bind(account_id)
        .bind(customer_id)
        .bind(now_ms),
        execute
    )?;
    Ok(())
}

/// The customer a channel transfer made through the API belongs to.
pub async fn channel_transfer_owner(
    store: &Store,
    transfer_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row: Option<(String,)> = on_pool!(
        store,
        sqlx::query_as::<_, (String,)>(
            "SELECT customer_id FROM api_channel_transfers WHERE transfer_id = $1"
        )
        .bind(transfer_id),
        fetch_optional
    )?;
    Ok(row.map(|(customer,)| customer))
}

/// The newest channel transfers from `account_id`, newest first.
pub async fn channel_transfers_of(
    store: &Store,
    account_id: &str,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> = on_pool!(
        store,
        sqlx::query_as::<_, (String,)>(
            "SELECT transfer_id FROM api_channel_transfers WHERE account_id = $1
             ORDER BY created_at_ms DESC LIMIT $2"
        )
        .bind(account_id)
        .bind(limit),
        fetch_all
    )?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// What an idempotency claim found.
#[derive(Debug)]
pub enum Claim {
    /// This request holds the key now.
    Claimed,
    Existing {
        request_hash: String,
        running: bool,
        status: Option<i64>,
        response: Option<String>,
        created_at_ms: i64,
    },
}

type IdempotencyTuple = (String, String, Option<i64>, Option<String>, i64);

/// Forgets finished idempotency records created before `before_ms` (a replay
/// after that runs the request again; the domain ids underneath keep it safe).
/// Returns how many went.
pub async fn prune_idempotency(store: &Store, before_ms: i64) -> Result<u64, sqlx::Error> {
    let done = on_pool!(
        store,
        sqlx::query("DELETE FROM api_idempotency WHERE state = 'done' AND created_at_ms < $1")
            .bind(before_ms),
        execute
    )?;
    Ok(done)
}

pub async fn claim_idempotency(
    store: &Store,
    key_id: &str,
    idempotency_key: &str,
    request_hash: &str,
    now_ms: i64,
) -> Result<Claim, sqlx::Error> {
    let inserted = on_pool!(
        store,
        sqlx::query(
            "INSERT INTO api_idempotency (key_id, idempotency_key, request_hash, state, created_at_ms)
             VALUES ($1, $2, $3, 'running', $4) ON CONFLICT (key_id, idempotency_key) DO NOTHING"
        )
        .bind(key_id)
        .bind(idempotency_key)
        .bind(request_hash)
        .bind(now_ms),
        execute
    )?;
    if inserted == 1 {
        return Ok(Claim::Claimed);
    }
    let row: Option<IdempotencyTuple> = on_pool!(
        store,
        sqlx::query_as::<_, IdempotencyTuple>(
            "SELECT request_hash, state, status, response, created_at_ms FROM api_idempotency
             WHERE key_id = $1 AND idempotency_key = $2"
        )
        .bind(key_id)
        .bind(idempotency_key),
        fetch_optional
    )?;
    match row {
        Some((request_hash, state, status, response, created_at_ms)) => Ok(Claim::Existing {
            request_hash,
            running: state == "running",
            status,
            response,
            created_at_ms,
        }),
        // Released between our insert and our read: the caller may claim again.
        None => Ok(Claim::Existing {
            request_hash: request_hash.to_owned(),
            running: true,
            status: None,
            response: None,
            created_at_ms: now_ms,
        }),
    }
}

/// Takes over a running claim abandoned since `created_at_ms` (a crashed process);
/// true if this caller won it.
pub async fn take_over_idempotency(
    store: &Store,
    key_id: &str,
    idempotency_key: &str,
    created_at_ms: i64,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let moved = on_pool!(
        store,
        sqlx::query(
            "UPDATE api_idempotency SET created_at_ms = $1
             WHERE key_id = $2 AND idempotency_key = $3 AND state = 'running'
               AND created_at_ms = $4"
        )
        .bind(now_ms)
        .bind(key_id)
        .bind(idempotency_key)
        .bind(created_at_ms),
        execute
    )?;
    Ok(moved == 1)
}

pub async fn finish_idempotency(
    store: &Store,
    key_id: &str,
    idempotency_key: &str,
    status: u16,
    response: &str,
) -> Result<(), sqlx::Error> {
    on_pool!(
        store,
        sqlx::query(
            "UPDATE api_idempotency SET state = 'done', status = $1, response = $2
             WHERE key_id = $3 AND idempotency_key = $4"
        )
        .bind(i64::from(status))
        .bind(response)
        .bind(key_id)
        .bind(idempotency_key),
        execute
    )?;
    Ok(())
}

/// Forgets a claim whose request did not succeed, so a retry runs afresh and a
/// refused request leaves no row behind.
pub async fn release_idempotency(
    store: &Store,
    key_id: &str,
    idempotency_key: &str,
) -> Result<(), sqlx::Error> {
    on_pool!(
        store,
        sqlx::query(
            "DELETE FROM api_idempotency
             WHERE key_id = $1 AND idempotency_key = $2 AND state = 'running'"
        )
        .bind(key_id)
        .bind(idempotency_key),
        execute
    )?;
    Ok(())
}

/// Rows in each api table, for tests that check nothing was written.
pub async fn row_counts(store: &Store) -> Result<Vec<(&'static str, i64)>, sqlx::Error> {
    let mut counts = Vec::new();
    for table in [
        "api_keys",
        "api_accounts",
        "api_channel_transfers",
        "api_idempotency",
        "api_audit",
        "api_approvals",
    ] {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let (count,): (i64,) = on_pool!(store, sqlx::query_as::<_, (i64,)>(&sql), fetch_one)?;
        counts.push((table, count));
    }
    Ok(counts)
}

/// One round trip, for readiness.
pub async fn ping(store: &Store) -> Result<(), sqlx::Error> {
    // Nothing to decode: `SELECT 1` is an INT4 on PostgreSQL and an INTEGER on SQLite.
    on_pool!(store, sqlx::query("SELECT 1"), execute)?;
    Ok(())
}
