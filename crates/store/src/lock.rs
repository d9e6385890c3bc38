//! Try-locks that never wait: a job asks for a named lock and either holds it or
//! hears at once that someone else does.
//!
//! PostgreSQL: `pg_try_advisory_lock` on a dedicated connection that the guard
//! owns; the lock lives exactly as long as that session, so a crashed holder's lock
//! disappears with its connection. SQLite: a row in `settle_locks` with an owner
//! and a lease expiry, taken in a `BEGIN IMMEDIATE` transaction; a crashed holder's
//! lock lapses when its lease expires. This module owns no domain table and never
//! blocks waiting for a lock.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::{Store, StoreError};

const LOCKS_TABLE_SQLITE: &str = "CREATE TABLE IF NOT EXISTS settle_locks (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
)";

/// A held lock. Release it with [`LockGuard::release`]; dropping it releases the
/// PostgreSQL lock (its session ends) but leaves a SQLite lease to expire.
#[derive(Debug)]
pub struct LockGuard {
    name: String,
    owner: String,
    held: Held,
}

#[derive(Debug)]
enum Held {
    Postgres { key: i64, conn: Box<PgConnection> },
    Sqlite { store: Store },
}

/// 64-bit FNV-1a of the schema and lock name: the advisory-lock key, the same in
/// every process.
fn advisory_key(name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

impl Store {
    /// Takes the lock `name` if it is free, without waiting. `now_ms` and `lease_ms`
    /// matter only on SQLite: the lease lapses at `now_ms + lease_ms` unless renewed.
    /// `Ok(None)` means someone else holds it.
    pub async fn try_lock(
        &self,
        name: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<LockGuard>, StoreError> {
        let owner = uuid::Uuid::new_v4().simple().to_string();
        match self {
            Store::Postgres(pool) => {
                // A dedicated connection, detached from the pool, so the session (and
                // with it the lock) ends when the guard goes away.
                let conn = pool.acquire().await?.detach();
                let mut conn = Box::new(conn);
                // Advisory locks are per database, not per schema: two deployments
                // (or two tests) in one database must not share a key.
                let (schema,): (String,) =
                    sqlx::query_as("SELECT COALESCE(current_schema()::text, '')")
                        .fetch_one(&mut *conn)
                        .await?;
                let key = advisory_key(&format!("{schema}/{name}"));
                let (taken,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
                    .bind(key)
                    .fetch_one(&mut *conn)
                    .await?;
                if !taken {
                    let _ = conn.close().await;
                    return Ok(None);
                }
                Ok(Some(LockGuard {
                    name: name.to_owned(),
                    owner,
                    held: Held::Postgres { key, conn },
                }))
            }
            Store::Sqlite(pool) => {
                sqlx::query(LOCKS_TABLE_SQLITE).execute(pool).await?;
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let current: Option<(String, i64)> =
                    sqlx::query_as("SELECT owner, expires_at_ms FROM settle_locks WHERE name = ?")
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some((_, expires_at_ms)) = current
                    && expires_at_ms > now_ms
                {
                    tx.rollback().await?;
                    return Ok(None);
                }
                sqlx::query(
                    "INSERT INTO settle_locks (name, owner, expires_at_ms) VALUES (?, ?, ?)
                     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,
                     expires_at_ms = excluded.expires_at_ms",
                )
                .bind(name)
                .bind(&owner)
                .bind(now_ms.saturating_add(lease_ms))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some(LockGuard {
                    name: name.to_owned(),
                    owner,
                    held: Held::Sqlite {
                        store: self.clone(),
                    },
                }))
            }
        }
    }
}

impl LockGuard {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Extends a SQLite lease to `now_ms + lease_ms`. Returns false if the lease had
    /// already been taken over by someone else (the caller must stop). On PostgreSQL
    /// the lock lasts as long as the session, so this only checks the session.
    pub async fn renew(&mut self, now_ms: i64, lease_ms: i64) -> Result<bool, StoreError> {
        match &mut self.held {
            Held::Postgres { conn, .. } => {
                conn.ping().await?;
                Ok(true)
            }
            Held::Sqlite { store } => {
                let Store::Sqlite(pool) = store else {
                    return Ok(false);
                };
                let updated = sqlx::query(
                    "UPDATE settle_locks SET expires_at_ms = ? WHERE name = ? AND owner = ?",
                )
                .bind(now_ms.saturating_add(lease_ms))
                .bind(&self.name)
                .bind(&self.owner)
                .execute(&*pool)
                .await?;
                Ok(updated.rows_affected() == 1)
            }
        }
    }

    /// Gives the lock back.
    pub async fn release(self) -> Result<(), StoreError> {
        match self.held {
            Held::Postgres { key, mut conn } => {
                sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(key)
                    .execute(&mut *conn)
                    .await?;
                conn.close().await?;
                Ok(())
            }
            Held::Sqlite { store } => {
                if let Store::Sqlite(pool) = &store {
                    sqlx::query("DELETE FROM settle_locks WHERE name = ? AND owner = ?")
                        .bind(&self.name)
                        .bind(&self.owner)
                        .execute(pool)
                        .await?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    #[tokio::test]
    async fn a_second_caller_is_refused_until_the_first_releases_on_sqlite() {
        let db = crate::testing::sqlite().await;
        let first = db
            .store
            .try_lock("fees:pay:2026-11-23", 0, 1_000)
            .await
            .unwrap();
        assert!(first.is_some());
        assert!(
            db.store
                .try_lock("fees:pay:2026-11-23", 10, 1_000)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            db.store
                .try_lock("fees:pay:2026-11-24", 10, 1_000)
                .await
                .unwrap()
                .is_some()
        );
        first.unwrap().release().await.unwrap();
        assert!(
            db.store
                .try_lock("fees:pay:2026-11-23", 20, 1_000)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn an_abandoned_sqlite_lease_lapses() {
        let db = crate::testing::sqlite().await;
        let mut kept = db.store.try_lock("x", 0, 1_000).await.unwrap().unwrap();
        assert!(kept.renew(500, 1_000).await.unwrap());
        assert!(
            db.store
                .try_lock("x", 1_400, 1_000)
                .await
                .unwrap()
                .is_none()
        );
        let thief = db.store.try_lock("x", 1_600, 1_000).await.unwrap();
        assert!(thief.is_some());
        assert!(
            !kept.renew(1_700, 1_000).await.unwrap(),
            "the lease was taken over"
        );
    }

    #[tokio::test]
    async fn postgres_advisory_lock_is_exclusive_and_dies_with_its_session() {
        let Some(db) = crate::testing::postgres().await else {
            return;
        };
        let first = db.store.try_lock("l", 0, 0).await.unwrap().unwrap();
        assert!(db.store.try_lock("l", 0, 0).await.unwrap().is_none());
        drop(first);
        // The server notices the closed session shortly after.
        let mut taken = None;
        for _ in 0..100 {
            taken = db.store.try_lock("l", 0, 0).await.unwrap();
            if taken.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let taken = taken.expect("the lock is free after its session ended");
        taken.release().await.unwrap();
        assert!(db.store.try_lock("l", 0, 0).await.unwrap().is_some());
    }
}
