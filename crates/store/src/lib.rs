//! Backend plumbing shared by every domain crate: one [`Store`] type over a SQLite
//! or PostgreSQL pool (chosen by URL scheme), a migrations runner, transactions that
//! take the write lock up front, and fresh databases for tests.
//!
//! `store` owns no domain tables and no domain SQL: each domain crate keeps its own
//! migrations and queries in its own store module and only borrows connections here.

mod error;
mod lock;
mod migrate;
mod pool;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::StoreError;
pub use lock::LockGuard;
pub use migrate::Migration;
pub use pool::{Backend, Store, StoreOptions, Tx, default_database_url, redact};
