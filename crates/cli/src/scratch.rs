//! Scratch databases for the demo and benchmarks: a fresh SQLite file in a new
//! temporary directory, or a fresh schema on a PostgreSQL server, removed after.

use anyhow::Context;
use store::{Store, StoreOptions};

/// A database that exists for one run.
pub struct ScratchDb {
    pub store: Store,
    pub url: String,
    drop_schema: Option<(String, String)>,
    sqlite_dir: Option<std::path::PathBuf>,
}

impl ScratchDb {
    /// `base_url` None or `sqlite…`: a new SQLite file; `postgres://…`: a new schema.
    pub async fn create(base_url: Option<&str>, label: &str) -> anyhow::Result<ScratchDb> {
        let unique = uuid::Uuid::now_v7().simple().to_string();
        match base_url {
            Some(url) if url.starts_with("postgres") => {
                let schema = format!("settle_{label}_{unique}");
                let admin = Store::connect(url)
                    .await
                    .with_context(|| format!("connecting to {}", store::redact(url)))?;
                admin.create_schema(&schema).await?;
                admin.close().await;
                let options = StoreOptions {
                    search_path: Some(schema.clone()),
                    connections_max: 32,
                    ..StoreOptions::default()
                };
                let store = Store::connect_with(url, &options).await?;
                Ok(ScratchDb {
                    store,
                    url: url.to_owned(),
                    drop_schema: Some((url.to_owned(), schema)),
                    sqlite_dir: None,
                })
            }
            Some(url) if !url.starts_with("sqlite") => {
                anyhow::bail!("unsupported database URL {}", store::redact(url))
            }
            _ => ScratchDb::create_sqlite_in(&std::env::temp_dir(), label).await,
        }
    }

    /// A new SQLite file in a new directory under `parent` (e.g. `/dev/shm` for a
    /// stand-in whose durability is not what a run measures).
    pub async fn create_sqlite_in(
        parent: &std::path::Path,
        label: &str,
    ) -> anyhow::Result<ScratchDb> {
        let unique = uuid::Uuid::now_v7().simple().to_string();
        let dir = parent.join(format!("settle-{label}-{unique}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let url = format!("sqlite://{}", dir.join("settle.db").display());
        let store = Store::connect(&url).await?;
        Ok(ScratchDb {
            store,
            url,
            drop_schema: None,
            sqlite_dir: Some(dir),
        })
    }

    /// Removes the database. `keep` leaves it for inspection.
    pub async fn finish(self, keep: bool) -> anyhow::Result<()> {
        self.store.close().await;
        if keep {
            return Ok(());
        }
        if let Some((url, schema)) = &self.drop_schema {
            let admin = Store::connect(url).await?;
            admin.drop_schema(schema).await?;
            admin.close().await;
        }
        if let Some(dir) = &self.sqlite_dir {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        Ok(())
    }
}
