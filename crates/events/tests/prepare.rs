//! `Consumer::prepare`: slow work outside any transaction. The backbone prepares
//! each event before handling it, holds no transaction (and so no SQLite write
//! lock) while it prepares, prepares a key's next event only after the previous
//! one committed, and counts a failed prepare as a failed attempt.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use common::*;
use events::{Consumer, Dispatcher, DispatcherConfig, Event, HandleError, RetryPolicy, Step, Wake};
use money::{TestClock, Timestamp};
use store::{Store, Tx};

/// Prepares by writing in its own transaction (impossible on SQLite while the
/// backbone held the write lock), checks the key's previous event is committed,
/// and fails the first prepare of every third seq.
struct Preparer {
    store: Store,
    prepared: Mutex<HashSet<(String, i64)>>,
    failed_once: Mutex<HashSet<(String, i64)>>,
    violations: Mutex<Vec<String>>,
}

impl Preparer {
    fn violation(&self, what: String) {
        self.violations.lock().unwrap().push(what);
    }
}

impl Consumer for Preparer {
    const PREPARES: bool = true;

    fn name(&self) -> &str {
        "preparer"
    }

    fn kinds(&self) -> &[&str] {
        &[KIND]
    }

    async fn prepare(&self, event: &Event) -> Result<(), HandleError> {
        let key = event.key.clone();
        let committed: i64 = match &self.store {
            Store::Sqlite(pool) => {
                sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM test_effects WHERE key = $1")
                    .bind(&key)
                    .fetch_one(pool)
                    .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM test_effects WHERE key = $1")
                    .bind(&key)
                    .fetch_one(pool)
                    .await?
            }
        };
        if committed != event.seq - 1 {
            self.violation(format!(
                "{key}/{} prepared while {committed} was committed",
                event.seq
            ));
        }
        let wrote = async {
            let mut tx = self.store.begin().await?;
            match &mut tx {
                Tx::Sqlite(tx) => {
                    sqlx::query("INSERT INTO test_prepared (key, seq) VALUES ($1, $2)")
                        .bind(&key)
                        .bind(event.seq)
                        .execute(&mut **tx)
                        .await?;
                }
                Tx::Postgres(tx) => {
                    sqlx::query("INSERT INTO test_prepared (key, seq) VALUES ($1, $2)")
                        .bind(&key)
                        .bind(event.seq)
                        .execute(&mut **tx)
                        .await?;
                }
            }
            tx.commit().await?;
            Ok::<(), HandleError>(())
        };
        let timed = tokio::time::timeout(std::time::Duration::from_secs(2), wrote).await;
        if !matches!(timed, Ok(Ok(()))) {
            self.violation(format!(
                "{key}/{}: prepare could not write on its own",
                event.seq
            ));
        }
        if event.seq % 3 == 0
            && self
                .failed_once
                .lock()
                .unwrap()
                .insert((key.clone(), event.seq))
        {
            return Err(Box::new(Injected("the bank did not answer".into())));
        }
        self.prepared.lock().unwrap().insert((key, event.seq));
        Ok(())
    }

    async fn handle(&self, event: &Event, tx: &mut Tx) -> Result<(), HandleError> {
        if !self
            .prepared
            .lock()
            .unwrap()
            .contains(&(event.key.clone(), event.seq))
        {
            self.violation(format!("{}/{} handled unprepared", event.key, event.seq));
        }
        record_effect(tx, event).await?;
        Ok(())
    }
}

async fn prepared_outside_the_transaction_in_key_order(store: &Store) {
    common::prepare(store).await;
    let sql = match store {
        Store::Sqlite(_) => "CREATE TABLE test_prepared (key TEXT NOT NULL, seq INTEGER NOT NULL)",
        Store::Postgres(_) => "CREATE TABLE test_prepared (key TEXT NOT NULL, seq BIGINT NOT NULL)",
    };
    match store {
        Store::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()).unwrap(),
        Store::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()).unwrap(),
    }
    let (keys, per_key) = (40, 12);
    produce(store, keys, 1, per_key).await;
    let clock = TestClock::at(Timestamp::from_unix_ms(4_000_000_000_000));
    let consumer = Arc::new(Preparer {
        store: store.clone(),
        prepared: Mutex::default(),
        failed_once: Mutex::default(),
        violations: Mutex::default(),
    });
    let config = DispatcherConfig {
        // Several events of one key per batch: they must still be prepared one
        // at a time, each after the previous one committed.
        key_events_per_batch_max: 8,
        retry: RetryPolicy::fast_for_tests(5),
        ..DispatcherConfig::default()
    };
    let mut dispatcher = Dispatcher::new(
        store.clone(),
        consumer.clone(),
        config,
        Arc::new(clock.clone()),
        Wake::new(),
    )
    .await
    .unwrap();
    for _ in 0..100_000 {
        match dispatcher.run_once().await.unwrap() {
            Step::Done => {}
            Step::Idle if dispatcher.caught_up().await.unwrap() => break,
            Step::Idle => clock.advance_ms(5),
        }
    }
    assert_exactly_once_in_order(&effects(store).await, keys, per_key);
    let violations = consumer.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(
        consumer.failed_once.lock().unwrap().len(),
        keys * (per_key as usize / 3),
        "every third seq failed its first prepare and was retried"
    );
    let letters = events::dead_letter::list(store, None, None, 10)
        .await
        .unwrap();
    assert!(letters.is_empty(), "{letters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_runs_outside_the_transaction_once_per_attempt_and_in_key_order_on_sqlite() {
    let db = store::testing::sqlite().await;
    prepared_outside_the_transaction_in_key_order(&db.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_runs_outside_the_transaction_once_per_attempt_and_in_key_order_on_postgres() {
    let Some(db) = store::testing::postgres().await else {
        return;
    };
    prepared_outside_the_transaction_in_key_order(&db.store).await;
}
