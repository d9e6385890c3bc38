//! Leases: named locks a process holds for as long as it lives and keeps
//! working, so that of several processes over one database exactly one does a
//! given piece of background work (relay a partition, dispatch a consumer) and
//! the others stand by to take over.
//!
//! PostgreSQL: every lease of a process is an advisory lock on ONE dedicated
//! connection (outside the pool), so a process holds one extra connection however
//! many leases it has; when the process dies the server ends its session and the
//! locks with it. SQLite runs one process per file: leases are only refused to a
//! second holder inside the same process.
//!
//! This module never waits for a lock, and never reports a lease as held once it
//! saw the lock connection fail: a holder that asks [`Lease::is_held`] before each
//! step stops within `ping_every_ms` of losing its connection.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Mutex;

use crate::{Store, StoreError};

/// How often a holder's check really asks the server whether the lock connection
/// still lives; between two pings the answer is remembered.
const PING_EVERY_MS: u64 = 1_000;

/// The leases of one process on one database. Cheap to clone; clones share the
/// lock connection.
#[derive(Clone)]
pub struct Leases {
    pool: Option<PgPool>,
    session: Arc<Mutex<Session>>,
    /// `(key, epoch)` of leases dropped without `release`: unlocked on next use
    /// if still from the current lock connection.
    dropped: Arc<std::sync::Mutex<Vec<(i64, u64)>>>,
}

#[derive(Default)]
struct Session {
    conn: Option<PgConnection>,
    /// Prefix of every key: leases are per schema, as two deployments (or tests)
    /// may share one database.
    schema: String,
    /// Moves on every new lock connection; a lease from an older one is lost.
    epoch: u64,
    held: HashSet<i64>,
    pinged_at: Option<Instant>,
}

/// One held lease. Give it back with [`Lease::release`]; dropping it queues the
/// unlock for the next use of the lock connection.
pub struct Lease {
    name: String,
    key: i64,
    epoch: u64,
    leases: Leases,
    /// Still to be given back when dropped.
    armed: bool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("name", &self.name)
            .field("epoch", &self.epoch)
            .finish()
    }
}

/// 64-bit FNV-1a of the schema and lease name: the advisory key, the same in
/// every process.
fn lease_key(schema: &str, name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in schema.bytes().chain([b'/']).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

impl Leases {
    /// The leases of this process on `store`'s database.
    pub fn new(store: &Store) -> Leases {
        Leases {
            pool: match store {
                Store::Postgres(pool) => Some(pool.clone()),
                Store::Sqlite(_) => None,
            },
            session: Arc::new(Mutex::new(Session::default())),
            dropped: Arc::default(),
        }
    }

    /// Takes the lease `name` if nobody holds it, without waiting.
    pub async fn try_acquire(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let mut session = self.session.lock().await;
        self.unlock_dropped(&mut session).await;
        let Some(pool) = &self.pool else {
            let key = lease_key("", name);
            if !session.held.insert(key) {
                return Ok(None);
            }
            return Ok(Some(self.lease(name, key, session.epoch)));
        };
        if session.conn.is_none() {
            let mut conn = pool.connect_options().connect().await?;
            let (schema,): (String,) =
                sqlx::query_as("SELECT COALESCE(current_schema()::text, '')")
                    .fetch_one(&mut conn)
                    .await?;
            session.conn = Some(conn);
            session.schema = schema;
            session.epoch += 1;
            session.held.clear();
            session.pinged_at = Some(Instant::now());
        }
        let key = lease_key(&session.schema, name);
        if session.held.contains(&key) {
            return Ok(None);
        }
        let epoch = session.epoch;
        let Some(conn) = session.conn.as_mut() else {
            return Ok(None);
        };
        let taken: Result<bool, sqlx::Error> =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut *conn)
                .await;
        match taken {
            Ok(true) => {
                session.held.insert(key);
                Ok(Some(self.lease(name, key, epoch)))
            }
            Ok(false) => Ok(None),
            Err(error) => {
                lose_connection(&mut session);
                Err(error.into())
            }
        }
    }

    fn lease(&self, name: &str, key: i64, epoch: u64) -> Lease {
        Lease {
            name: name.to_owned(),
            key,
            epoch,
            leases: self.clone(),
            armed: true,
        }
    }

    /// How many leases this process holds now.
    pub async fn held(&self) -> usize {
        self.session.lock().await.held.len()
    }

    async fn unlock_dropped(&self, session: &mut Session) {
        let keys: Vec<(i64, u64)> = match self.dropped.lock() {
            Ok(mut dropped) => std::mem::take(&mut *dropped),
            Err(_) => return,
        };
        for (key, epoch) in keys {
            if epoch == session.epoch {
                unlock(session, key).await;
            }
        }
    }
}

fn lose_connection(session: &mut Session) {
    if session.conn.take().is_some() {
        tracing::warn!(
            leases = session.held.len(),
            "lease connection lost: every lease of this process is given up"
        );
    }
    session.held.clear();
    session.epoch += 1;
}

async fn unlock(session: &mut Session, key: i64) {
    if !session.held.remove(&key) {
        return;
    }
    if let Some(conn) = session.conn.as_mut()
        && let Err(error) = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(key)
            .execute(&mut *conn)
            .await
    {
        tracing::warn!(%error, "could not give a lease back; dropping the lease connection");
        lose_connection(session);
    }
}

impl Lease {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this process still holds the lease. Asks the server at most every
    /// second; false for good once the lock connection failed.
    pub async fn is_held(&self) -> bool {
        let mut session = self.leases.session.lock().await;
        if session.epoch != self.epoch || !session.held.contains(&self.key) {
            return false;
        }
        if self.leases.pool.is_none() {
            return true;
        }
        let due = session
            .pinged_at
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(PING_EVERY_MS));
        if !due {
            return true;
        }
        let alive = match session.conn.as_mut() {
            Some(conn) => tokio::time::timeout(Duration::from_millis(5_000), conn.ping())
                .await
                .is_ok_and(|ping| ping.is_ok()),
            None => false,
        };
        if alive {
            session.pinged_at = Some(Instant::now());
        } else {
            lose_connection(&mut session);
        }
        alive
    }

    /// Gives the lease back at once, so a standby can take over without waiting.
    pub async fn release(mut self) {
        self.armed = false;
        let mut session = self.leases.session.lock().await;
        if session.epoch == self.epoch {
            unlock(&mut session, self.key).await;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.armed
            && let Ok(mut dropped) = self.leases.dropped.lock()
        {
            dropped.push((self.key, self.epoch));
        }
    }
}
