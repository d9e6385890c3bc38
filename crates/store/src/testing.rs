//! Fresh databases for tests: a new SQLite file, or a new schema in the PostgreSQL
//! database named by `DATABASE_URL` (default `postgres://root@127.0.0.1:5432/test`).
//!
//! When PostgreSQL cannot be reached, [`postgres`] returns `None` so a developer
//! without it can still run the SQLite half of the suite — except under `CI`, where
//! it panics: in CI a PostgreSQL test must fail, never skip.

use std::path::PathBuf;

use crate::{Store, StoreOptions};

/// The PostgreSQL server tests use when `DATABASE_URL` names none.
pub const DEFAULT_TEST_POSTGRES_URL: &str = "postgres://root@127.0.0.1:5432/test";

/// A database that exists for one test and is removed when dropped.
pub struct TestDb {
    pub store: Store,
    /// A URL another process (a child `settle`) can use to reach the same data.
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    SqliteFile(PathBuf),
    PostgresSchema { server_url: String, schema: String },
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A fresh SQLite database in a new temporary file.
pub async fn sqlite() -> TestDb {
    let path =
        std::env::temp_dir().join(format!("settle-test-{}.db", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}", path.display());
    let store = Store::connect(&url)
        .await
        .expect("a temporary SQLite file opens");
    TestDb {
        store,
        url,
        cleanup: Cleanup::SqliteFile(path),
    }
}

/// The PostgreSQL server URL for tests.
pub fn postgres_server_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => url,
        _ => DEFAULT_TEST_POSTGRES_URL.to_owned(),
    }
}

/// A fresh schema on the test PostgreSQL server, or `None` (outside CI) when the
/// server cannot be reached.
pub async fn postgres() -> Option<TestDb> {
    let server_url = postgres_server_url();
    let admin = match Store::connect_with(
        &server_url,
        &StoreOptions {
            connections_max: 1,
            acquire_timeout_ms: 5_000,
            search_path: None,
        },
    )
    .await
    {
        Ok(admin) => admin,
        Err(error) if !in_ci() => {
            eprintln!(
                "skipping: PostgreSQL at {server_url} is unreachable ({error}); set DATABASE_URL"
            );
            return None;
        }
        Err(error) => panic!("CI is set and PostgreSQL at {server_url} is unreachable: {error}"),
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    admin
        .create_schema(&schema)
        .await
        .expect("the test schema can be created");
    admin.close().await;
    let store = Store::connect_with(
        &server_url,
        &StoreOptions {
            search_path: Some(schema.clone()),
            ..StoreOptions::default()
        },
    )
    .await
    .expect("the test schema is reachable");
    let separator = if server_url.contains('?') { '&' } else { '?' };
    let url = format!("{server_url}{separator}options=-c%20search_path%3D{schema}");
    Some(TestDb {
        store,
        url,
        cleanup: Cleanup::PostgresSchema { server_url, schema },
    })
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::SqliteFile(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Cleanup::PostgresSchema { server_url, schema } => {
                // Drop runs inside the test's runtime, which cannot be blocked on;
                // a helper thread with its own small runtime removes the schema.
                let server_url = server_url.clone();
                let schema = schema.clone();
                let store = self.store.clone();
                let _ = std::thread::spawn(move || {
                    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    runtime.block_on(async move {
                        drop(store);
                        if let Ok(admin) = Store::connect(&server_url).await {
                            let _ = admin.drop_schema(&schema).await;
                            admin.close().await;
                        }
                    });
                })
                .join();
            }
        }
    }
}
