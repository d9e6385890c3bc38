//! One pool type for both backends, chosen by the URL's scheme.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::{Postgres, Sqlite};

use crate::StoreError;

/// Which SQL dialect a [`Store`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Pool settings. Defaults suit one `settle` process on a small machine.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub connections_max: u32,
    pub acquire_timeout_ms: u64,
    /// PostgreSQL only: the schema to put first on the search path (tests use a
    /// fresh schema each).
    pub search_path: Option<String>,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            connections_max: 16,
            acquire_timeout_ms: 30_000,
            search_path: None,
        }
    }
}

/// How long start-up waits for each connection of the budget before it asks the
/// server directly why it cannot have it.
const RESERVE_WAIT_MS: u64 = 3_000;

/// A connection pool to settle's database. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A transaction on either backend. On SQLite it holds the write lock from its
/// first statement (`BEGIN IMMEDIATE`), so read-then-write never fails half way
/// with `SQLITE_BUSY`.
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.rollback().await?,
            Tx::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Postgres(_) => Backend::Postgres,
        }
    }
}

/// The embedded default: `settle.db` in the user's data directory
/// (`~/.local/share/settle/settle.db` on Linux).
pub fn default_database_url() -> Result<String, StoreError> {
    let dir: PathBuf = dirs::data_dir()
        .ok_or(StoreError::NoDataDir)?
        .join("settle");
    std::fs::create_dir_all(&dir).map_err(|source| StoreError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    Ok(format!("sqlite://{}", dir.join("settle.db").display()))
}

impl Store {
    /// Connects by URL: `sqlite:PATH` / `sqlite://PATH` (created if missing, WAL,
    /// full fsync) or `postgres://…` / `postgresql://…`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, &StoreOptions::default()).await
    }

    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        let connect_error = |source| StoreError::Connect {
            url: redact(url),
            source,
        };
        let acquire_timeout = Duration::from_millis(options.acquire_timeout_ms);
        if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(connect_error)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // Money: a committed transaction survives power loss, not only a crash.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30))
                // A batch touches thousands of pages; SQLite's 2 MiB default cache
                // spills them to disk mid-transaction. 64 MiB per connection, and
                // statement journals in memory.
                .pragma("cache_size", "-65536")
                .pragma("temp_store", "memory");
            let pool = PoolOptions::<Sqlite>::new()
                .max_connections(options.connections_max)
                .acquire_timeout(acquire_timeout)
                .after_release(|conn, _| Box::pin(release_outside_transaction(conn)))
                .connect_with(connect)
                .await
                .map_err(connect_error)?;
            Ok(Store::Sqlite(pool))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut connect = PgConnectOptions::from_str(url).map_err(connect_error)?;
            if let Some(schema) = &options.search_path {
                connect = connect.options([("search_path", schema.as_str())]);
            }
            let pool = PoolOptions::<Postgres>::new()
                .max_connections(options.connections_max)
                .acquire_timeout(acquire_timeout)
                .connect_with(connect)
                .await
                .map_err(connect_error)?;
            Ok(Store::Postgres(pool))
        } else {
            Err(StoreError::UnsupportedUrl(redact(url)))
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(_) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock now.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        match self {
            Store::Sqlite(pool) => Ok(Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?)),
            Store::Postgres(pool) => Ok(Tx::Postgres(pool.begin().await?)),
        }
    }

    /// PostgreSQL only: creates (or drops, with everything in it) a schema. Used for
    /// scratch data — tests, the demo, benchmarks. The name must be a plain
    /// identifier.
    pub async fn create_schema(&self, name: &str) -> Result<(), StoreError> {
        self.schema_statement("CREATE SCHEMA", name, "").await
    }

    pub async fn drop_schema(&self, name: &str) -> Result<(), StoreError> {
        self.schema_statement("DROP SCHEMA IF EXISTS", name, " CASCADE")
            .await
    }

    async fn schema_statement(
        &self,
        verb: &str,
        name: &str,
        suffix: &str,
    ) -> Result<(), StoreError> {
        let plain = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        match self {
            Store::Postgres(pool) if plain => {
                sqlx::query(&format!("{verb} {name}{suffix}"))
                    .execute(pool)
                    .await?;
                Ok(())
            }
            Store::Postgres(_) => Err(StoreError::BadSchemaName(name.to_owned())),
            Store::Sqlite(_) => Err(StoreError::UnsupportedUrl(
                "schemas need PostgreSQL".to_owned(),
            )),
        }
    }

    /// Opens the pool's whole budget at once (PostgreSQL), so a server that cannot
    /// give this process its connections says so at start — not as a stall under
    /// load. The connections stay in the pool. SQLite: nothing to do.
    pub async fn reserve_connections(&self) -> Result<(), StoreError> {
        let Store::Postgres(pool) = self else {
            return Ok(());
        };
        let wanted = pool.options().get_max_connections();
        let mut held = Vec::with_capacity(wanted as usize);
        for _ in 0..wanted {
            let acquired =
                tokio::time::timeout(Duration::from_millis(RESERVE_WAIT_MS), pool.acquire()).await;
            match acquired {
                Ok(Ok(conn)) => held.push(conn),
                failed => {
                    // The pool only says it timed out; a direct attempt gets the
                    // server's own reason (too many clients, a role's limit…).
                    use sqlx::ConnectOptions;
                    let source = match pool.connect_options().connect().await {
                        Err(reason) => reason,
                        Ok(_) => match failed {
                            Ok(Err(error)) => error,
                            _ => sqlx::Error::PoolTimedOut,
                        },
                    };
                    return Err(StoreError::Budget {
                        wanted,
                        opened: u32::try_from(held.len()).unwrap_or(u32::MAX),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    pub async fn close(&self) {
        match self {
            Store::Sqlite(pool) => pool.close().await,
            Store::Postgres(pool) => pool.close().await,
        }
    }
}

/// Whether a SQLite connection going back to the pool may stay there: only when
/// no transaction is open on it. A `BEGIN IMMEDIATE` whose future is cancelled
/// after SQLite ran it but before sqlx built the `Transaction` (a dropped HTTP
/// handler, a lost `select!`, an aborted task) leaves the connection inside a
/// transaction that nobody will end: it holds the file's write lock, and every
/// later `begin` on it fails with "non-zero transaction depth". Such a
/// connection is closed (which rolls it back) instead of pooled. The ping first
/// lets the worker finish the rollback a dropped `Transaction` queued.
async fn release_outside_transaction(
    conn: &mut sqlx::SqliteConnection,
) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    conn.ping().await?;
    if conn.is_in_transaction() {
        tracing::warn!("closing a pooled SQLite connection left inside a cancelled transaction");
        return Ok(false);
    }
    Ok(true)
}

/// A URL fit for logs and error messages: the password, if any, is hidden.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/settle"),
            "postgres://app:***@db:5432/settle"
        );
        assert_eq!(
            redact("postgres://root@127.0.0.1/test"),
            "postgres://root@127.0.0.1/test"
        );
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
