//! The run's own data: a temporary directory (SQLite stores, the simulator's
//! file, a private nats-server's store) and, for PostgreSQL, a fresh schema whose
//! URL carries its search path and an application name, so a child process finds
//! the same schema and the harness can terminate exactly this run's backends.

use std::path::PathBuf;

use store::Store;

use crate::TortureError;

/// Connections a parent's own pool may hold: it checks and sets up, it does
/// not carry load, and its server may be shared.
const PARENT_CONNECTIONS_MAX: u32 = 3;

/// A small pool for a parent's own work.
pub(crate) async fn connect_small(url: &str) -> Result<Store, TortureError> {
    let options = store::StoreOptions {
        connections_max: PARENT_CONNECTIONS_MAX,
        ..store::StoreOptions::default()
    };
    Ok(Store::connect_with(url, &options).await?)
}

/// A database and a directory that exist for one run.
pub struct Scratch {
    /// What the children connect to.
    pub url: String,
    /// What the parent connects to: on PostgreSQL another application name, so
    /// terminating the children's backends leaves the parent's alone.
    pub parent_url: String,
    pub dir: PathBuf,
    /// PostgreSQL: (server URL, schema) to drop at the end.
    schema: Option<(String, String)>,
    /// PostgreSQL: the login role the children use, when their connections
    /// are capped ([`Scratch::limit_connections`]); dropped at the end.
    role: Option<String>,
}

impl Scratch {
    /// `base_url` None or `sqlite…`: a SQLite file in a new directory;
    /// `postgres://…`: a new schema on that server.
    pub async fn create(base_url: Option<&str>, label: &str) -> Result<Scratch, TortureError> {
        let unique = uuid::Uuid::now_v7().simple().to_string();
        let dir = std::env::temp_dir().join(format!("settle-torture-{label}-{unique}"));
        std::fs::create_dir_all(&dir)?;
        match base_url {
            Some(url) if url.starts_with("postgres") => {
                let schema = format!("torture_{label}_{unique}");
                let admin = Store::connect(url).await?;
                admin.create_schema(&schema).await?;
                admin.close().await;
                let separator = if url.contains('?') { '&' } else { '?' };
                let base = format!("{url}{separator}options=-c%20search_path%3D{schema}");
                Ok(Scratch {
                    url: format!("{base}&application_name={schema}"),
                    parent_url: format!("{base}&application_name={schema}_p"),
                    dir,
                    schema: Some((url.to_owned(), schema)),
                    role: None,
                })
            }
            Some(url) if !url.starts_with("sqlite") => Err(TortureError::Invalid(format!(
                "unsupported database URL {}",
                store::redact(url)
            ))),
            _ => Ok(Scratch {
                url: format!("sqlite://{}", dir.join("settle.db").display()),
                parent_url: format!("sqlite://{}", dir.join("settle.db").display()),
                dir,
                schema: None,
                role: None,
            }),
        }
    }

    /// PostgreSQL: makes the children log in as a role of their own (named
    /// like the schema, a member of the server URL's user so it may use the
    /// schema's tables) with `CONNECTION LIMIT connections_max`, so a run can
    /// never take more of a shared server than that. The parent keeps its user.
    pub async fn limit_connections(&mut self, connections_max: u32) -> Result<(), TortureError> {
        let Some((server, schema)) = &self.schema else {
            return Ok(());
        };
        let admin = Store::connect(server).await?;
        if let Store::Postgres(pool) = &admin {
            let user: String = sqlx::query_scalar("SELECT current_user::text")
                .fetch_one(pool)
                .await?;
            // Both names are plain identifiers: the schema is made here from a
            // UUID, and the user is quoted.
            let quoted_user = user.replace('"', "\"\"");
            sqlx::query(&format!(
                "CREATE ROLE {schema} LOGIN CONNECTION LIMIT {connections_max} IN ROLE \"{quoted_user}\""
            ))
            .execute(pool)
            .await?;
        }
        admin.close().await;
        let (scheme, rest) = self
            .url
            .split_once("://")
            .ok_or_else(|| TortureError::Invalid("the database URL has no scheme".into()))?;
        let (userinfo, host) = rest.split_once('@').unwrap_or(("", rest));
        if userinfo.contains(':') {
            // A server that wants passwords: the new role has none, so the
            // children keep the given user (and no cap).
            tracing::warn!("the database URL carries a password; connections are not capped");
            self.role = Some(schema.clone());
            return Ok(());
        }
        self.url = format!("{scheme}://{schema}@{host}");
        self.role = Some(schema.clone());
        Ok(())
    }

    /// PostgreSQL: the application name of this run's connections.
    pub fn application_name(&self) -> Option<&str> {
        self.schema.as_ref().map(|(_, schema)| schema.as_str())
    }

    /// The server URL without this run's schema, for admin work.
    pub fn server_url(&self) -> Option<&str> {
        self.schema.as_ref().map(|(url, _)| url.as_str())
    }

    /// Removes the data; `keep` leaves it for inspection.
    pub async fn finish(self, keep: bool) -> Result<(), TortureError> {
        if keep {
            return Ok(());
        }
        if let Some((url, schema)) = &self.schema {
            let admin = Store::connect(url).await?;
            admin.drop_schema(schema).await?;
            if let (Some(role), Store::Postgres(pool)) = (&self.role, &admin) {
                sqlx::query(&format!("DROP OWNED BY {role}"))
                    .execute(pool)
                    .await?;
                sqlx::query(&format!("DROP ROLE IF EXISTS {role}"))
                    .execute(pool)
                    .await?;
            }
            admin.close().await;
        }
        std::fs::remove_dir_all(&self.dir)?;
        Ok(())
    }
}
