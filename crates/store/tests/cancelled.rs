//! A SQLite transaction whose future is dropped mid-flight (a cancelled HTTP
//! handler, a `select!` that lost, a killed task) must not poison the pool: the
//! next `Store::begin` on any connection works, and the write lock is free.

use std::time::Duration;

use store::{Store, Tx};

async fn sqlite() -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("settle-store-cancel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.db", rand_suffix()));
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    (store, path)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_dropped_mid_query_leaves_no_poisoned_connection_behind() {
    let (store, path) = sqlite().await;
    let Store::Sqlite(pool) = &store else {
        unreachable!()
    };
    sqlx::query("CREATE TABLE t (n INTEGER)")
        .execute(pool)
        .await
        .unwrap();
    for n in 0..2_000 {
        sqlx::query("INSERT INTO t (n) VALUES ($1)")
            .bind(n)
            .execute(pool)
            .await
            .unwrap();
    }
    for round in 0..50 {
        // A transaction cancelled while a statement is still stepping rows.
        let work = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.begin().await.unwrap();
                let Tx::Sqlite(inner) = &mut tx else {
                    unreachable!()
                };
                sqlx::query("INSERT INTO t (n) VALUES (-1)")
                    .execute(&mut **inner)
                    .await
                    .unwrap();
                let rows = sqlx::query("SELECT a.n FROM t a, t b LIMIT 400000")
                    .fetch_all(&mut **inner)
                    .await
                    .unwrap();
                drop(rows);
                tx.commit().await.unwrap();
            })
        };
        tokio::time::sleep(Duration::from_micros(200 * (round % 7))).await;
        work.abort();
        let _ = work.await;
        // Every connection of the pool can still start a write transaction.
        let mut held = Vec::new();
        for _ in 0..3 {
            let tx = tokio::time::timeout(Duration::from_secs(10), store.begin())
                .await
                .unwrap_or_else(|_| panic!("round {round}: the write lock is stuck"))
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            tx.rollback().await.unwrap();
            held.push(());
        }
    }
    store.close().await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begin_cancelled_half_way_leaves_no_open_transaction_in_the_pool() {
    let (store, path) = sqlite().await;
    // Cancel at varying depths into BEGIN (a deadline of 0..100 µs) until a
    // thousand begins were cut off somewhere (before the fix, about one in a
    // hundred left its connection inside a transaction).
    let mut cancelled = 0;
    for round in 0..200_000u64 {
        match tokio::time::timeout(Duration::from_micros(round % 100), store.begin()).await {
            Ok(Ok(tx)) => tx.rollback().await.unwrap(),
            Ok(Err(error)) => panic!("round {round}, {cancelled} cancelled: {error}"),
            Err(_) => cancelled += 1,
        }
        if cancelled >= 1_000 {
            break;
        }
    }
    assert!(cancelled >= 1_000, "only {cancelled} begins were cancelled");
    for n in 0..20 {
        let tx = tokio::time::timeout(Duration::from_secs(10), store.begin())
            .await
            .unwrap_or_else(|_| panic!("begin {n}: the write lock is stuck"))
            .unwrap_or_else(|e| panic!("begin {n}: {e}"));
        tx.rollback().await.unwrap();
    }
    store.close().await;
    let _ = std::fs::remove_file(&path);
}
