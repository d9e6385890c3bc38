//! The event-relay workload: the production transport. Ledger transfers write
//! `ledger.entry` rows to the outbox in their own transactions; the child relays
//! them to a private NATS JetStream and consumes them with a durable worker per
//! partition, whose consumer records each delivery in the same transaction as
//! the backbone's completion record. The parent kills the child and restarts
//! nats-server under it. The check: every outbox row relayed and delivered to
//! the consumer exactly once, per key in seq order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use events::nats::{NatsConfig, Relay, Worker};
use events::{Consumer, Event, HandleError};
use ledger::{AccountFlags, ENTRY_EVENT_KIND, Ledger, LedgerConfig, NewAccount, TransferRequest};
use money::{AccountId, Clock, Krw, SystemClock, TransferId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sqlx::Row;
use store::{Migration, Store, Tx};
use uuid::Uuid;

use crate::TortureError;
use crate::check::{Checks, ledger_invariants};
use crate::child::{ChildArgs, Out};

const ACCOUNTS: u64 = 12;
const PARTITIONS: u32 = 4;
const CONSUMER: &str = "torture-recorder";
const NAMESPACE: Uuid = Uuid::from_u128(0x5e77_1e00_4e1a_4000_8000_0000_0000_0021);
/// Transfers submitted between relay and worker steps.
const TRANSFERS_PER_STEP: u64 = 10;
/// Rounds the child relays and consumes at the end before it gives up.
const DRAIN_ROUNDS_MAX: usize = 2_000;

/// The recorder's own table: one row per delivery, no uniqueness, so a second
/// delivery of one event would show.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "torture_deliveries",
    sqlite: "CREATE TABLE torture_deliveries (position INTEGER PRIMARY KEY AUTOINCREMENT, \
             key TEXT NOT NULL, seq BIGINT NOT NULL, event_id TEXT NOT NULL)",
    postgres: "CREATE TABLE torture_deliveries (position BIGSERIAL PRIMARY KEY, \
               key TEXT NOT NULL, seq BIGINT NOT NULL, event_id TEXT NOT NULL)",
}];

fn config(nats_url: &str) -> NatsConfig {
    NatsConfig {
        url: nats_url.to_owned(),
        outbox_stream: "ledger".to_owned(),
        stream: "TORTURE".to_owned(),
        subject_prefix: "torture".to_owned(),
        partitions: PARTITIONS,
        // A killed child's unacked messages come back soon.
        ack_wait_ms: 2_000,
        publish_batch_max: 256,
        fetch_batch_max: 128,
        fetch_wait_ms: 20,
        relay_takeover_ms: 500,
        ..NatsConfig::default()
    }
}

fn id(seed: u64, what: &str, n: u64) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("{seed}/{what}/{n}").as_bytes())
}

fn account(seed: u64, n: u64) -> Result<AccountId, TortureError> {
    AccountId::from_uuid(id(seed, "account", n)).map_err(|e| TortureError::Invalid(e.to_string()))
}

fn transfer_id(seed: u64, n: u64) -> Result<TransferId, TortureError> {
    TransferId::from_uuid(id(seed, "transfer", n)).map_err(|e| TortureError::Invalid(e.to_string()))
}

/// Records every delivery.
struct Recorder;

impl Consumer for Recorder {
    fn name(&self) -> &str {
        CONSUMER
    }

    fn kinds(&self) -> &[&str] {
        &[ENTRY_EVENT_KIND]
    }

    async fn handle(&self, event: &Event, tx: &mut Tx) -> Result<(), HandleError> {
        let sql = "INSERT INTO torture_deliveries (key, seq, event_id) VALUES ($1, $2, $3)";
        let event_id = event.id.to_string();
        match tx {
            Tx::Sqlite(inner) => {
                sqlx::query(sql)
                    .bind(&event.key)
                    .bind(event.seq)
                    .bind(&event_id)
                    .execute(&mut **inner)
                    .await?;
            }
            Tx::Postgres(inner) => {
                sqlx::query(sql)
                    .bind(&event.key)
                    .bind(event.seq)
                    .bind(&event_id)
                    .execute(&mut **inner)
                    .await?;
            }
        }
        Ok(())
    }
}

async fn open(url: &str) -> Result<(Store, Ledger), TortureError> {
    let store = Store::connect(url).await?;
    store.migrate("torture", MIGRATIONS).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ledger = Ledger::open(store.clone(), clock, LedgerConfig::default()).await?;
    Ok((store, ledger))
}

/// The parent's side: the accounts, and the check.
pub(crate) struct RelayParent {
    store: Store,
    ledger: Ledger,
    seed: u64,
    items: u64,
}

impl RelayParent {
    pub async fn open(url: &str, seed: u64, items: u64) -> Result<RelayParent, TortureError> {
        let (store, ledger) = open(url).await?;
        let invalid = |e: ledger::InvalidAccount| TortureError::Invalid(e.to_string());
        let mut accounts = Vec::new();
        for n in 0..ACCOUNTS {
            accounts.push(
                NewAccount::new(account(seed, n)?, 1, AccountFlags::default()).map_err(invalid)?,
            );
        }
        ledger.create_accounts(&accounts).await?;
        Ok(RelayParent {
            store,
            ledger,
            seed,
            items,
        })
    }

    pub async fn check(&self) -> Result<Checks, TortureError> {
        let mut checks = Checks::default();
        let ids: Vec<TransferId> = (0..self.items)
            .map(|n| transfer_id(self.seed, n))
            .collect::<Result<_, _>>()?;
        let mut applied = 0;
        for page in ids.chunks(self.ledger.config().lookup_ids_max) {
            applied += self.ledger.lookup_transfers(page).await?.len();
        }
        checks.add(
            "relay: every planned transfer applied once",
            applied as u64 == self.items,
            format!("{applied} of {}", self.items),
        );
        let outbox = rows(
            &self.store,
            "SELECT key, seq, CAST(CASE WHEN relayed_at_ms IS NULL THEN 0 ELSE 1 END AS BIGINT) FROM outbox \
             WHERE kind = 'ledger.entry' ORDER BY key, seq",
        )
        .await?;
        let deliveries = rows(
            &self.store,
            "SELECT key, seq, position FROM torture_deliveries ORDER BY position",
        )
        .await?;
        let unrelayed = outbox
            .iter()
            .filter(|(_, _, relayed)| *relayed == 0)
            .count();
        checks.add(
            "relay: every outbox row was relayed to JetStream",
            unrelayed == 0,
            format!("{} rows, {unrelayed} not relayed", outbox.len()),
        );
        let mut count: BTreeMap<(String, i64), u32> = BTreeMap::new();
        for (key, seq, _) in &deliveries {
            *count.entry((key.clone(), *seq)).or_default() += 1;
        }
        let published: BTreeSet<(String, i64)> =
            outbox.iter().map(|(k, s, _)| (k.clone(), *s)).collect();
        let lost: Vec<String> = published
            .iter()
            .filter(|e| !count.contains_key(*e))
            .take(10)
            .map(|(k, s)| format!("{k}:{s}"))
            .collect();
        let doubled: Vec<String> = count
            .iter()
            .filter(|(_, n)| **n > 1)
            .take(10)
            .map(|((k, s), n)| format!("{k}:{s} x{n}"))
            .collect();
        let invented: Vec<String> = count
            .keys()
            .filter(|e| !published.contains(*e))
            .take(10)
            .map(|(k, s)| format!("{k}:{s}"))
            .collect();
        checks.add(
            "relay: no event lost on the way to the consumer",
            lost.is_empty(),
            format!(
                "{} published, {} delivered; {}",
                published.len(),
                deliveries.len(),
                lost.join("; ")
            ),
        );
        checks.add(
            "relay: no event delivered to the consumer twice",
            doubled.is_empty(),
            doubled.join("; "),
        );
        checks.add(
            "relay: no delivery of an event that was never published",
            invented.is_empty(),
            invented.join("; "),
        );
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        let mut out_of_order = Vec::new();
        for (key, seq, _) in &deliveries {
            let previous = last.insert(key.clone(), *seq).unwrap_or(0);
            if *seq != previous + 1 && out_of_order.len() < 10 {
                out_of_order.push(format!("{key}: {seq} after {previous}"));
            }
        }
        checks.add(
            "relay: each key's events consumed in seq order without gaps",
            out_of_order.is_empty(),
            out_of_order.join("; "),
        );
        ledger_invariants(&self.ledger, &mut checks).await?;
        Ok(checks)
    }
}

async fn rows(store: &Store, sql: &str) -> Result<Vec<(String, i64, i64)>, TortureError> {
    let decode = |r: &dyn RowLike| r.triple();
    Ok(match store {
        Store::Sqlite(pool) => sqlx::query(sql)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| decode(r))
            .collect::<Result<_, sqlx::Error>>()?,
        Store::Postgres(pool) => sqlx::query(sql)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| decode(r))
            .collect::<Result<_, sqlx::Error>>()?,
    })
}

/// A (text, bigint, bigint) row on either backend.
trait RowLike {
    fn triple(&self) -> Result<(String, i64, i64), sqlx::Error>;
}

impl RowLike for sqlx::sqlite::SqliteRow {
    fn triple(&self) -> Result<(String, i64, i64), sqlx::Error> {
        Ok((self.try_get(0)?, self.try_get(1)?, self.try_get(2)?))
    }
}

impl RowLike for sqlx::postgres::PgRow {
    fn triple(&self) -> Result<(String, i64, i64), sqlx::Error> {
        Ok((self.try_get(0)?, self.try_get(1)?, self.try_get(2)?))
    }
}

async fn count(store: &Store, sql: &str) -> Result<i64, TortureError> {
    Ok(match store {
        Store::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
        Store::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
    })
}

/// The child's relay seats and workers, one per partition. A seat whose lock
/// is held elsewhere (a killed child's backend not yet gone) or was lost (a
/// terminated connection) is taken again on a later step.
struct Seats {
    store: Store,
    js: async_nats::jetstream::Context,
    config: NatsConfig,
    clock: Arc<dyn Clock>,
    leases: store::Leases,
    relays: Vec<Option<Relay>>,
    workers: Vec<Worker<Recorder>>,
}

impl Seats {
    async fn take_free_seats(&mut self) -> Result<(), TortureError> {
        for (partition, seat) in (0..PARTITIONS).zip(self.relays.iter_mut()) {
            if seat.is_none() {
                *seat = Relay::acquire(
                    self.store.clone(),
                    self.js.clone(),
                    self.config.clone(),
                    partition,
                    self.clock.clone(),
                    &self.leases,
                )
                .await
                .map_err(relay_error)?;
            }
        }
        Ok(())
    }

    /// One relay step per seat held and one worker step per partition. A broker
    /// that is down (restarting) is waited for, not fatal.
    async fn step(&mut self, out: &mut Out) -> Result<bool, TortureError> {
        if let Err(error) = self.take_free_seats().await {
            tracing::warn!(%error, "could not take a relay seat; retrying");
        }
        let mut worked = false;
        for seat in self.relays.iter_mut() {
            let Some(relay) = seat else { continue };
            match relay.run_once().await {
                Ok(events::Step::Done) => {
                    worked = true;
                    out.op("relay", "published")?;
                }
                Ok(events::Step::Idle) => {}
                Err(error) => {
                    out.op("relay", "error")?;
                    tracing::warn!(%error, "relay step failed; retrying");
                    if matches!(error, events::EventsError::RelayLockLost { .. }) {
                        *seat = None;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        for worker in self.workers.iter_mut() {
            match worker.run_once().await {
                Ok(events::Step::Done) => {
                    worked = true;
                    out.op("consume", "delivered")?;
                }
                Ok(events::Step::Idle) => {}
                Err(error) => {
                    out.op("consume", "error")?;
                    tracing::warn!(%error, "worker step failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Ok(worked)
    }
}

/// The child's side: transfers, relaying and consuming, until all is delivered.
pub(crate) async fn run_child(args: &ChildArgs, out: &mut Out) -> Result<(), TortureError> {
    let nats_url = args
        .nats_url
        .as_deref()
        .ok_or_else(|| TortureError::Invalid("the relay workload needs --nats-url".into()))?;
    let (store, ledger) = open(&args.database_url).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config = config(nats_url);
    let js = events::nats::connect(&config).await.map_err(relay_error)?;
    let recorder = Arc::new(Recorder);
    let mut workers = Vec::new();
    for partition in 0..PARTITIONS {
        workers.push(
            Worker::new(
                store.clone(),
                &js,
                recorder.clone(),
                config.clone(),
                partition,
                clock.clone(),
            )
            .await
            .map_err(relay_error)?,
        );
    }
    let mut seats = Seats {
        store: store.clone(),
        js,
        config,
        clock: clock.clone(),
        leases: store::Leases::new(&store),
        relays: (0..PARTITIONS).map(|_| None).collect(),
        workers,
    };
    seats.take_free_seats().await?;
    out.line("ready")?;
    let mut rng = SmallRng::seed_from_u64(args.seed ^ args.cycle.rotate_left(32) ^ 0x4e1a);
    let mut n = 0;
    while n < args.items {
        let end = (n + TRANSFERS_PER_STEP).min(args.items);
        let ids: Vec<TransferId> = (n..end)
            .map(|i| transfer_id(args.seed, i))
            .collect::<Result<_, _>>()?;
        let done: BTreeSet<TransferId> = ledger
            .lookup_transfers(&ids)
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect();
        for id in ids.iter().filter(|id| !done.contains(*id)) {
            let from = rng.random_range(0..ACCOUNTS);
            let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
            let request = TransferRequest::single(
                *id,
                account(args.seed, from)?,
                account(args.seed, to)?,
                Krw::new(rng.random_range(1..100_000)),
                clock.now(),
            )
            .map_err(|e| TortureError::Invalid(e.to_string()))?;
            let result = ledger.transfer(request).await?;
            out.op("transfer", result.code())?;
        }
        seats.step(out).await?;
        n = end;
    }
    for _ in 0..DRAIN_ROUNDS_MAX {
        let worked = seats.step(out).await?;
        let unrelayed = count(
            &store,
            "SELECT count(*) FROM outbox WHERE relayed_at_ms IS NULL",
        )
        .await?;
        let published = count(
            &store,
            "SELECT count(*) FROM outbox WHERE kind = 'ledger.entry'",
        )
        .await?;
        let delivered = count(
            &store,
            "SELECT count(*) FROM (SELECT DISTINCT key, seq FROM torture_deliveries) AS d",
        )
        .await?;
        if unrelayed == 0 && delivered >= published {
            out.line("done")?;
            return Ok(());
        }
        if !worked {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Err(TortureError::Child(format!(
        "relay: events still undelivered after {DRAIN_ROUNDS_MAX} rounds"
    )))
}

fn relay_error(error: events::EventsError) -> TortureError {
    TortureError::Child(format!("events: {error}"))
}
