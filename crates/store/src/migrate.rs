//! A small migrations runner. Each domain crate passes its own list under its own
//! component name, so crates can add migrations without agreeing on global version
//! numbers, and no crate ever runs another's.

use sqlx::Executor;

use crate::{Store, StoreError};

/// One schema step, written once per backend.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

const BOOKKEEPING_SQLITE: &str = "CREATE TABLE IF NOT EXISTS settle_migrations (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (component, version)
)";

const BOOKKEEPING_POSTGRES: &str = "CREATE TABLE IF NOT EXISTS settle_migrations (
    component TEXT NOT NULL,
    version BIGINT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (component, version)
)";

/// The PostgreSQL advisory lock key that serialises migrations across processes.
const MIGRATION_LOCK_KEY: i64 = 0x5e77_1e00_0001;

impl Store {
    /// Applies the migrations of `component` that this database has not seen yet,
    /// each in its own transaction, in version order. Safe to call from several
    /// processes at once.
    pub async fn migrate(
        &self,
        component: &'static str,
        migrations: &[Migration],
    ) -> Result<(), StoreError> {
        let mut ordered = migrations.to_vec();
        ordered.sort_by_key(|m| m.version);
        match self {
            Store::Sqlite(pool) => {
                pool.execute(BOOKKEEPING_SQLITE).await?;
            }
            Store::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(MIGRATION_LOCK_KEY)
                    .execute(&mut *conn)
                    .await?;
                let outcome = conn.execute(BOOKKEEPING_POSTGRES).await;
                if let Err(error) = outcome {
                    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                        .bind(MIGRATION_LOCK_KEY)
                        .execute(&mut *conn)
                        .await;
                    return Err(error.into());
                }
                let outcome = self.apply_pending(component, &ordered).await;
                sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(MIGRATION_LOCK_KEY)
                    .execute(&mut *conn)
                    .await?;
                return outcome;
            }
        }
        self.apply_pending(component, &ordered).await
    }

    async fn apply_pending(
        &self,
        component: &'static str,
        ordered: &[Migration],
    ) -> Result<(), StoreError> {
        let applied: Vec<i64> = match self {
            Store::Sqlite(pool) => {
                sqlx::query_scalar("SELECT version FROM settle_migrations WHERE component = ?")
                    .bind(component)
                    .fetch_all(pool)
                    .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_scalar("SELECT version FROM settle_migrations WHERE component = $1")
                    .bind(component)
                    .fetch_all(pool)
                    .await?
            }
        };
        if let Some(unknown) = applied
            .iter()
            .find(|v| !ordered.iter().any(|m| m.version == **v))
        {
            return Err(StoreError::UnknownMigration {
                component: component.to_owned(),
                version: *unknown,
            });
        }
        for migration in ordered.iter().filter(|m| !applied.contains(&m.version)) {
            let failed = |source| StoreError::Migration {
                component,
                version: migration.version,
                name: migration.name,
                source,
            };
            match self {
                Store::Sqlite(pool) => {
                    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                    sqlx::raw_sql(migration.sqlite)
                        .execute(&mut *tx)
                        .await
                        .map_err(failed)?;
                    sqlx::query(
                        "INSERT INTO settle_migrations (component, version, name) VALUES (?, ?, ?)",
                    )
                    .bind(component)
                    .bind(migration.version)
                    .bind(migration.name)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                }
                Store::Postgres(pool) => {
                    let mut tx = pool.begin().await?;
                    sqlx::raw_sql(migration.postgres)
                        .execute(&mut *tx)
                        .await
                        .map_err(failed)?;
                    sqlx::query(
                        "INSERT INTO settle_migrations (component, version, name) VALUES ($1, $2, $3)",
                    )
                    .bind(component)
                    .bind(migration.version)
                    .bind(migration.name)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                }
            }
            tracing::info!(
                component,
                version = migration.version,
                name = migration.name,
                "migration applied"
            );
        }
        Ok(())
    }
}
