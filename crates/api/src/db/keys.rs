//! API keys (`api_keys`): only a key's SHA-256 is stored. A key is live while it
//! is not revoked, not past its `expires_at_ms` and not awaiting an approval (an
//! ops key made under maker-checker waits for a second ops key). Rotation swaps
//! the hash under the same key id, so the old key stops matching at once in every
//! process. `last_used_at_ms` is written at most once per interval per key (the
//! condition is in the UPDATE, so it holds across processes too).

use serde::Serialize;
use store::{Store, on_pool};

/// A stored API key (its hash, never the key).
#[derive(Clone, Debug)]
pub struct KeyRow {
    pub key_id: String,
    pub key_hash: String,
    pub role: String,
    pub customer_id: Option<String>,
    pub created_at_ms: i64,
    pub created_by: String,
    /// What the key may do beyond its role, comma-separated (`house_accounts`).
    pub grants: String,
    /// After this instant the key is refused (`None`: never expires).
    pub expires_at_ms: Option<i64>,
    /// The approval an ops key waits for before it works (`None`: it works).
    pub awaiting_approval: Option<String>,
}

pub async fn insert_key(store: &Store, key: &KeyRow) -> Result<(), sqlx::Error> {
    on_pool!(
        store,
        sqlx::query(
            "INSERT INTO api_keys (key_id, key_hash, role, customer_id, created_at_ms,
                                   created_by, grants, expires_at_ms, awaiting_approval)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )
        .bind(&key.key_id)
        .bind(&key.key_hash)
        .bind(&key.role)
        .bind(&key.customer_id)
        .bind(key.created_at_ms)
        .bind(&key.created_by)
        .bind(&key.grants)
        .bind(key.expires_at_ms)
        .bind(&key.awaiting_approval),
        execute
    )?;
    Ok(())
}

type KeyTuple = (
    String,
    String,
    String,
    Option<String>,
    i64,
    String,
    String,
    Option<i64>,
    Option<String>,
);

const KEY_COLUMNS: &str = "key_id, key_hash, role, customer_id, created_at_ms, created_by, \
                           grants, expires_at_ms, awaiting_approval";

fn key_from(row: KeyTuple) -> KeyRow {
    let (
        key_id,
        key_hash,
        role,
        customer_id,
        created_at_ms,
        created_by,
        grants,
        expires_at_ms,
        awaiting_approval,
    ) = row;
    KeyRow {
        key_id,
        key_hash,
        role,
        customer_id,
        created_at_ms,
        created_by,
        grants,
        expires_at_ms,
        awaiting_approval,
    }
}

/// The key with this hash that is neither revoked nor awaiting approval (expiry
/// is the caller's to judge, so it can say why it refuses).
pub async fn key_by_hash(store: &Store, key_hash: &str) -> Result<Option<KeyRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_keys
         WHERE key_hash = $1 AND revoked_at_ms IS NULL AND awaiting_approval IS NULL"
    );
    let row: Option<KeyTuple> = on_pool!(
        store,
        sqlx::query_as::<_, KeyTuple>(&sql).bind(key_hash),
        fetch_optional
    )?;
    Ok(row.map(key_from))
}

/// A key by id that is not revoked (awaiting approval or not).
pub async fn key_row(store: &Store, key_id: &str) -> Result<Option<KeyRow>, sqlx::Error> {
    let sql =
        format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = $1 AND revoked_at_ms IS NULL");
    let row: Option<KeyTuple> = on_pool!(
        store,
        sqlx::query_as::<_, KeyTuple>(&sql).bind(key_id),
        fetch_optional
    )?;
    Ok(row.map(key_from))
}

/// A key as listed (never its hash).
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
#[schemars(rename = "Key")]
pub struct KeyListing {
    pub key_id: String,
    #[schemars(with = "crate::auth::Role")]
    pub role: String,
    #[schemars(with = "Option<money::AccountId>")]
    pub customer_id: Option<String>,
    /// Comma-separated grants (`house_accounts`), or empty.
    pub grants: String,
    pub created_at_ms: i64,
    pub created_by: String,
    pub revoked_at_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
    pub last_used_at_ms: Option<i64>,
    pub rotated_at_ms: Option<i64>,
    pub awaiting_approval: Option<String>,
}

type ListingTuple = (
    String,
    String,
    Option<String>,
    String,
    i64,
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

/// Keys by id, at most `limit`.
pub async fn list_keys(store: &Store, limit: i64) -> Result<Vec<KeyListing>, sqlx::Error> {
    let rows: Vec<ListingTuple> = on_pool!(
        store,
        sqlx::query_as::<_, ListingTuple>(
            "SELECT key_id, role, customer_id, grants, created_at_ms, created_by, revoked_at_ms,
                    expires_at_ms, last_used_at_ms, rotated_at_ms, awaiting_approval
             FROM api_keys ORDER BY key_id LIMIT $1"
        )
        .bind(limit),
        fetch_all
    )?;
    Ok(rows.into_iter().map(listing_from).collect())
}

fn listing_from(row: ListingTuple) -> KeyListing {
    let (
        key_id,
        role,
        customer_id,
        grants,
        created_at_ms,
        created_by,
        revoked_at_ms,
        expires_at_ms,
        last_used_at_ms,
        rotated_at_ms,
        awaiting_approval,
    ) = row;
    KeyListing {
        key_id,
        role,
        customer_id,
        grants,
        created_at_ms,
        created_by,
        revoked_at_ms,
        expires_at_ms,
        last_used_at_ms,
        rotated_at_ms,
        awaiting_approval,
    }
}

/// Whether `key_id` names a key that is not revoked.
pub async fn key_is_live(store: &Store, key_id: &str) -> Result<bool, sqlx::Error> {
    Ok(key_row(store, key_id).await?.is_some())
}

/// Whether a working ops key exists: not revoked, not expired at `now_ms`, not
/// waiting for an approval.
pub async fn live_ops_key_exists(store: &Store, now_ms: i64) -> Result<bool, sqlx::Error> {
    let (count,): (i64,) = on_pool!(
        store,
        sqlx::query_as(
            "SELECT COUNT(*) FROM api_keys WHERE role = 'ops' AND revoked_at_ms IS NULL
             AND awaiting_approval IS NULL AND (expires_at_ms IS NULL OR expires_at_ms > $1)"
        )
        .bind(now_ms),
        fetch_one
    )?;
    Ok(count > 0)
}

/// Revokes a key (once); false if there is no such key or it was revoked before.
pub async fn revoke_key(store: &Store, key_id: &str, now_ms: i64) -> Result<bool, sqlx::Error> {
    let done = on_pool!(
        store,
        sqlx::query(
            "UPDATE api_keys SET revoked_at_ms = $1 WHERE key_id = $2 AND revoked_at_ms IS NULL"
        )
        .bind(now_ms)
        .bind(key_id),
        execute
    )?;
    Ok(done == 1)
}

/// Gives a live key a new hash (and, when given, a new expiry); false if the key
/// is revoked, unknown or still awaiting approval.
pub async fn rotate_key(
    store: &Store,
    key_id: &str,
    key_hash: &str,
    expires_at_ms: Option<i64>,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = on_pool!(
        store,
        sqlx::query(
            "UPDATE api_keys
             SET key_hash = $1, rotated_at_ms = $2, expires_at_ms = COALESCE($3, expires_at_ms)
             WHERE key_id = $4 AND revoked_at_ms IS NULL AND awaiting_approval IS NULL"
        )
        .bind(key_hash)
        .bind(now_ms)
        .bind(expires_at_ms)
        .bind(key_id),
        execute
    )?;
    Ok(done == 1)
}

/// Records a use of the key unless one was recorded within `every_ms`; true if
/// this call wrote.
pub async fn touch_key(
    store: &Store,
    key_id: &str,
    now_ms: i64,
    every_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = on_pool!(
        store,
        sqlx::query(
            "UPDATE api_keys SET last_used_at_ms = $1
             WHERE key_id = $2 AND (last_used_at_ms IS NULL OR last_used_at_ms <= $3)"
        )
        .bind(now_ms)
        .bind(key_id)
        .bind(now_ms.saturating_sub(every_ms)),
        execute
    )?;
    Ok(done == 1)
}

/// Lets a key made under maker-checker work, once its approval ran; false if the
/// key is not waiting for that approval (or was revoked meanwhile).
pub async fn activate_key(
    store: &Store,
    key_id: &str,
    approval_id: &str,
) -> Result<bool, sqlx::Error> {
    let done = on_pool!(
        store,
        sqlx::query(
            "UPDATE api_keys SET awaiting_approval = NULL
             WHERE key_id = $1 AND awaiting_approval = $2 AND revoked_at_ms IS NULL"
        )
        .bind(key_id)
        .bind(approval_id),
        execute
    )?;
    Ok(done == 1)
}
