//! Shared test fixtures: a recording consumer with seeded random failures, a
//! producer, and the exactly-once-in-order check.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use events::{Consumer, Event, HandleError, NewEvent};
use money::{Clock, SystemClock};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use store::{Store, Tx};

pub const KIND: &str = "test.entry";

/// Writes one effect row per event through the framework's transaction, then fails
/// with probability `failure_rate` (so the effect must be rolled back), and always
/// fails on `poison` while `poison_armed` is set.
pub struct Recorder {
    pub name: String,
    pub failure_rate: f64,
    pub rng: Mutex<SmallRng>,
    pub poison: Option<(String, i64)>,
    pub poison_armed: AtomicBool,
}

impl Recorder {
    pub fn new(name: &str, failure_rate: f64, seed: u64) -> Recorder {
        Recorder {
            name: name.to_owned(),
            failure_rate,
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            poison: None,
            poison_armed: AtomicBool::new(false),
        }
    }

    pub fn with_poison(mut self, key: &str, seq: i64) -> Recorder {
        self.poison = Some((key.to_owned(), seq));
        self.poison_armed.store(true, Ordering::SeqCst);
        self
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Injected(pub String);

impl Consumer for Recorder {
    fn name(&self) -> &str {
        &self.name
    }

    fn kinds(&self) -> &[&str] {
        &[KIND]
    }

    async fn handle(&self, event: &Event, tx: &mut Tx) -> Result<(), HandleError> {
        record_effect(tx, event).await?;
        if let Some((key, seq)) = &self.poison
            && *key == event.key
            && *seq == event.seq
            && self.poison_armed.load(Ordering::SeqCst)
        {
            return Err(Box::new(Injected("poisoned event".into())));
        }
        let fail = self.failure_rate > 0.0
            && self
                .rng
                .lock()
                .map(|mut rng| rng.random_bool(self.failure_rate))
                .unwrap_or(false);
        if fail {
            return Err(Box::new(Injected("random failure".into())));
        }
        Ok(())
    }
}

/// Migrates the backbone and the recorder's effect table.
pub async fn prepare(store: &Store) {
    events::migrate(store).await.unwrap();
    let sql = match store {
        Store::Sqlite(_) => {
            "CREATE TABLE IF NOT EXISTS test_effects (applied INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, seq INTEGER NOT NULL)"
        }
        Store::Postgres(_) => {
            "CREATE TABLE IF NOT EXISTS test_effects (applied BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, seq BIGINT NOT NULL)"
        }
    };
    match store {
        Store::Sqlite(pool) => {
            sqlx::query(sql).execute(pool).await.unwrap();
        }
        Store::Postgres(pool) => {
            sqlx::query(sql).execute(pool).await.unwrap();
        }
    }
}

pub fn key_name(index: usize) -> String {
    format!("acct-{index:05}")
}

/// Appends seqs `from..=to` for keys `0..keys`, one transaction per seq round.
pub async fn produce(store: &Store, keys: usize, from: i64, to: i64) {
    for seq in from..=to {
        let batch: Vec<NewEvent> = (0..keys)
            .map(|k| NewEvent {
                kind: KIND,
                key: key_name(k),
                seq,
            })
            .collect();
        let mut tx = store.begin().await.unwrap();
        events::append(&mut tx, &batch, SystemClock.now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}

/// The recorded effects in the order they were applied.
pub async fn effects(store: &Store) -> Vec<(String, i64)> {
    let sql = "SELECT key, seq FROM test_effects ORDER BY applied";
    match store {
        Store::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
        Store::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
    }
}

/// Every `(key, seq)` for `keys × 1..=per_key` applied exactly once, each key's
/// effects in seq order.
pub fn assert_exactly_once_in_order(effects: &[(String, i64)], keys: usize, per_key: i64) {
    let mut seen: HashSet<(String, i64)> = HashSet::new();
    let mut last: HashMap<String, i64> = HashMap::new();
    for (key, seq) in effects {
        assert!(
            seen.insert((key.clone(), *seq)),
            "{key}/{seq} applied twice"
        );
        let previous = last.insert(key.clone(), *seq).unwrap_or(0);
        assert_eq!(
            *seq,
            previous + 1,
            "{key}: seq {seq} applied after {previous}"
        );
    }
    assert_eq!(effects.len(), keys * per_key as usize, "effects missing");
}

/// The shared recorder type tests hand to a transport.
pub type Shared = Arc<Recorder>;

/// Polls the effect count until it reaches `expected` or `timeout_ms` passes.
/// The test consumers' one effect: a row per event applied, in the handler's
/// transaction.
pub async fn record_effect(tx: &mut Tx, event: &Event) -> Result<(), sqlx::Error> {
    store::on_tx!(
        tx,
        sqlx::query("INSERT INTO test_effects (key, seq) VALUES ($1, $2)")
            .bind(&event.key)
            .bind(event.seq),
        execute
    )?;
    Ok(())
}

pub async fn wait_for_effects(store: &Store, expected: usize, timeout_ms: u64) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
    loop {
        let count = effect_count(store).await;
        if count >= expected || std::time::Instant::now() > deadline {
            return count;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub async fn effect_count(store: &Store) -> usize {
    let sql = "SELECT COUNT(*) FROM test_effects";
    let count: i64 = match store {
        Store::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        Store::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
    };
    count as usize
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}
