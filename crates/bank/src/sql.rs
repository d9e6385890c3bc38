//! Two macros that run one sqlx query on whichever backend a `store::Tx` or
//! `store::Store` holds. The query text is written once, with `$1`-style
//! placeholders that both SQLite and PostgreSQL accept; the macro expands the query
//! expression once per backend so each arm infers its own database type.
//!
//! Nothing here knows a table; each store module owns its own SQL.

/// `on_tx!(tx, sqlx::query(..).bind(..), fetch_one)` on a `&mut store::Tx`;
/// `execute` answers the number of rows affected.
macro_rules! on_tx {
    ($tx:expr, $query:expr, execute) => {
        match $tx {
            store::Tx::Sqlite(tx) => $query.execute(&mut **tx).await.map(|r| r.rows_affected()),
            store::Tx::Postgres(tx) => $query.execute(&mut **tx).await.map(|r| r.rows_affected()),
        }
    };
    ($tx:expr, $query:expr, $method:ident) => {
        match $tx {
            store::Tx::Sqlite(tx) => $query.$method(&mut **tx).await,
            store::Tx::Postgres(tx) => $query.$method(&mut **tx).await,
        }
    };
}

/// `on_pool!(store, sqlx::query(..).bind(..), fetch_all)` on a `&store::Store`.
macro_rules! on_pool {
    ($store:expr, $query:expr, $method:ident) => {
        match $store {
            store::Store::Sqlite(pool) => $query.$method(pool).await,
            store::Store::Postgres(pool) => $query.$method(pool).await,
        }
    };
}

pub(crate) use on_pool;
pub(crate) use on_tx;

/// True when a database error is a unique-key violation: someone else committed the
/// same key first.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}
