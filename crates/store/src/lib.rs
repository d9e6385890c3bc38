//! Backend plumbing shared by every domain crate: one [`Store`] type over a SQLite
//! or PostgreSQL pool (chosen by URL scheme), a migrations runner, transactions that
//! take the write lock up front, and fresh databases for tests.
//!
//! `store` owns no domain tables and no domain SQL: each domain crate keeps its own
//! migrations and queries in its own store module and only borrows connections here.

mod databases;
mod error;
mod lease;
mod lock;
mod migrate;
mod pool;
#[cfg(feature = "testing")]
pub mod testing;

pub use databases::Databases;
pub use error::StoreError;
pub use lease::{Lease, Leases};
pub use lock::LockGuard;
pub use migrate::Migration;
pub use pool::{Backend, Store, StoreOptions, Tx, default_database_url, redact};

/// Runs one query on whichever backend a `&mut Tx` holds: `on_tx!(tx, query,
/// fetch_all)`, or `execute` for the number of rows affected. The query
/// expression is evaluated in the arm of the backend at hand.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $query:expr, execute) => {
        match $tx {
            $crate::Tx::Sqlite(tx) => $query.execute(&mut **tx).await.map(|r| r.rows_affected()),
            $crate::Tx::Postgres(tx) => $query.execute(&mut **tx).await.map(|r| r.rows_affected()),
        }
    };
    ($tx:expr, $query:expr, $method:ident) => {
        match $tx {
            $crate::Tx::Sqlite(tx) => $query.$method(&mut **tx).await,
            $crate::Tx::Postgres(tx) => $query.$method(&mut **tx).await,
        }
    };
}

/// Runs one query on whichever backend a `&Store` holds.
#[macro_export]
macro_rules! on_pool {
    ($store:expr, $query:expr, execute) => {
        match $store {
            $crate::Store::Sqlite(pool) => $query.execute(pool).await.map(|r| r.rows_affected()),
            $crate::Store::Postgres(pool) => $query.execute(pool).await.map(|r| r.rows_affected()),
        }
    };
    ($store:expr, $query:expr, $method:ident) => {
        match $store {
            $crate::Store::Sqlite(pool) => $query.$method(pool).await,
            $crate::Store::Postgres(pool) => $query.$method(pool).await,
        }
    };
}
