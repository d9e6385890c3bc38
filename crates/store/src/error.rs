//! Errors of the storage plumbing.

/// A failure to reach or use a database. Domain crates wrap it in their own errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL {0:?} is not supported: use sqlite:PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("no data directory for the default database; pass --database-url")]
    NoDataDir,
    #[error("could not create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("could not connect to {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("migration {component}/{version} ({name}) failed: {source}")]
    Migration {
        component: &'static str,
        version: i64,
        name: &'static str,
        source: sqlx::Error,
    },
    #[error(
        "database has migration {component}/{version} that this build does not know; \
         is it newer than this binary?"
    )]
    UnknownMigration { component: String, version: i64 },
    #[error(
        "the database gave this process {opened} of the {wanted} connections it is \
         configured for ({source}); is the server at max_connections? Lower the pool \
         size or raise the server's limit"
    )]
    Budget {
        wanted: u32,
        opened: u32,
        source: sqlx::Error,
    },
    #[error("{0:?} is not a plain schema name (lowercase letters, digits, _)")]
    BadSchemaName(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl StoreError {
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::UnsupportedUrl(_) => "database_url_unsupported",
            StoreError::NoDataDir | StoreError::DataDir { .. } => "data_dir_unavailable",
            StoreError::Connect { .. } => "database_unreachable",
            StoreError::Migration { .. } | StoreError::UnknownMigration { .. } => {
                "migration_failed"
            }
            StoreError::Budget { .. } => "database_connections_unavailable",
            StoreError::BadSchemaName(_) => "schema_name_invalid",
            StoreError::Db(_) => "database_error",
        }
    }
}
