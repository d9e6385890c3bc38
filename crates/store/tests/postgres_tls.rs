//! PostgreSQL over TLS: sqlx is built with rustls, so `sslmode=require` (and
//! `verify-ca` / `verify-full` with `sslrootcert=`) in a database URL are honoured.
//! The machine's PostgreSQL has SSL on; the server's own view (`pg_stat_ssl`) is
//! the proof that the session is encrypted.

use store::{Store, StoreOptions};

fn options() -> StoreOptions {
    StoreOptions {
        connections_max: 1,
        acquire_timeout_ms: 5_000,
        search_path: None,
    }
}

fn with_param(url: &str, param: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{param}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_url_with_sslmode_require_gets_an_encrypted_session() {
    let server_url = match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => url,
        _ => "postgres://root@127.0.0.1:5432/test".to_owned(),
    };
    let Ok(plain) = Store::connect_with(&server_url, &options()).await else {
        eprintln!("skipping: PostgreSQL at {server_url} is unreachable; set DATABASE_URL");
        return;
    };
    let Store::Postgres(pool) = &plain else {
        panic!("{server_url} is not a PostgreSQL URL");
    };
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(pool)
        .await
        .unwrap();
    if ssl != "on" {
        eprintln!("skipping: the PostgreSQL at {server_url} has ssl = {ssl}");
        return;
    }
    let url = with_param(&server_url, "sslmode=require");
    let secure = Store::connect_with(&url, &options()).await.unwrap();
    let Store::Postgres(pool) = &secure else {
        unreachable!("the same URL with one more parameter")
    };
    let (encrypted, version): (bool, Option<String>) =
        sqlx::query_as("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(encrypted, "pg_stat_ssl says this session is not encrypted");
    assert!(version.is_some_and(|v| v.starts_with("TLS")));
}
