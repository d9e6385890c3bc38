//! The audit log as a hash chain: each row stores the hash of the row before it and
//! its own hash over (previous hash, time, key, action, target, details), so an
//! edited row, or a row deleted from the middle, breaks the chain where
//! [`verify_audit`] finds it. Appends are serialised (SQLite's write lock; a table
//! lock on PostgreSQL) so two processes never fork the chain. Rows written before
//! the chain existed (no hash) are skipped at the start only.

use sha2::{Digest, Sha256};
use store::{Store, StoreError, on_pool, on_tx};

/// Appends one audit row, chained to the last one; its id.
pub async fn append_audit(
    store: &Store,
    at_ms: i64,
    key_id: &str,
    action: &str,
    target: &str,
    details: &serde_json::Value,
) -> Result<i64, StoreError> {
    let details = details.to_string();
    let mut tx = store.begin().await?;
    if let store::Tx::Postgres(inner) = &mut tx {
        // Conflicts with itself only: readers go on, appenders queue.
        sqlx::query("LOCK TABLE api_audit IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut **inner)
            .await?;
    }
    let last: Option<(Option<String>,)> = on_tx!(
        &mut tx,
        sqlx::query_as::<_, (Option<String>,)>(
            "SELECT hash FROM api_audit ORDER BY id DESC LIMIT 1"
        ),
        fetch_optional
    )?;
    let prev = last.and_then(|(hash,)| hash).unwrap_or_default();
    let hash = chain_hash(&prev, at_ms, key_id, action, target, &details);
    let (id,): (i64,) = on_tx!(
        &mut tx,
        sqlx::query_as::<_, (i64,)>(
            "INSERT INTO api_audit (at_ms, key_id, action, target, details, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id"
        )
        .bind(at_ms)
        .bind(key_id)
        .bind(action)
        .bind(target)
        .bind(&details)
        .bind(&prev)
        .bind(&hash),
        fetch_one
    )?;
    tx.commit().await?;
    Ok(id)
}

/// Where the chain is broken: the first row whose link or hash does not hold.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct AuditBreak {
    pub id: i64,
    pub why: &'static str,
}

/// Rows read per page while verifying.
const VERIFY_PAGE_ROWS: i64 = 1_000;

type ChainRow = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

/// Walks the whole chain; `Ok(Err(break))` names the first broken row, `Ok(Ok(n))`
/// says n chained rows hold.
pub async fn verify_audit(store: &Store) -> Result<Result<u64, AuditBreak>, StoreError> {
    let (mut after_id, mut prev, mut started, mut checked) = (0_i64, String::new(), false, 0_u64);
    loop {
        let rows: Vec<ChainRow> = on_pool!(
            store,
            sqlx::query_as::<_, ChainRow>(
                "SELECT id, at_ms, key_id, action, target, details, prev_hash, hash
                 FROM api_audit WHERE id > $1 ORDER BY id LIMIT $2"
            )
            .bind(after_id)
            .bind(VERIFY_PAGE_ROWS),
            fetch_all
        )?;
        let Some(last) = rows.last() else {
            return Ok(Ok(checked));
        };
        after_id = last.0;
        for (id, at_ms, key_id, action, target, details, prev_hash, hash) in rows {
            let (Some(prev_hash), Some(hash)) = (prev_hash, hash) else {
                if started {
                    return Ok(Err(AuditBreak {
                        id,
                        why: "unchained_row",
                    }));
                }
                continue;
            };
            // The first chained row links to "", so a deleted prefix shows too.
            if prev_hash != prev {
                return Ok(Err(AuditBreak {
                    id,
                    why: "link_broken",
                }));
            }
            if chain_hash(&prev_hash, at_ms, &key_id, &action, &target, &details) != hash {
                return Ok(Err(AuditBreak {
                    id,
                    why: "row_changed",
                }));
            }
            started = true;
            prev = hash;
            checked += 1;
        }
    }
}

/// SHA-256 over length-prefixed fields, as hex.
fn chain_hash(
    prev: &str,
    at_ms: i64,
    key_id: &str,
    action: &str,
    target: &str,
    details: &str,
) -> String {
    let mut hasher = Sha256::new();
    let at = at_ms.to_string();
    for field in [prev, at.as_str(), key_id, action, target, details] {
        hasher.update((field.len() as u64).to_le_bytes());
        hasher.update(field.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
