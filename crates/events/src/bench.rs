//! The events benchmark behind `settle bench events`: a producer appends events
//! (as fast as it can, or at a fixed rate) while a transport delivers them to a
//! consumer that only measures lag. It owns nothing but its own throw-away data
//! and must never run against a database that holds real events under its names.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use money::{Clock, SystemClock};
use serde::Serialize;
use store::{Store, StoreOptions, Tx};

use crate::consumer::{Consumer, HandleError};
use crate::dispatcher::{Dispatcher, DispatcherConfig, Wake};
use crate::nats::{self, NatsConfig};
use crate::outbox::{self, Event, EventsError, NewEvent};
use crate::shutdown::Shutdown;

/// Which transport to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchTransport {
    Embedded,
    Nats,
}

impl BenchTransport {
    pub fn name(self) -> &'static str {
        match self {
            BenchTransport::Embedded => "embedded",
            BenchTransport::Nats => "nats",
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub transport: BenchTransport,
    pub events: usize,
    pub keys: usize,
    /// Produce at this many events per second; `None`: as fast as possible.
    pub rate_per_s: Option<u64>,
    /// `None`: a temporary SQLite file, removed afterwards.
    pub database_url: Option<String>,
    pub nats_url: String,
    /// Give up after this long.
    pub timeout_ms: u64,
}

/// Events appended per producer transaction when unpaced.
const PRODUCE_BATCH_EVENTS_MAX: usize = 1_000;

/// Limits that keep one benchmark run bounded.
const BENCH_EVENTS_MAX: usize = 10_000_000;
const BENCH_KEYS_MAX: usize = 1_000_000;

/// Pool size for the benchmark's store.
const BENCH_CONNECTIONS_MAX: u32 = 48;

/// One line of results.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub bench: &'static str,
    pub transport: &'static str,
    pub backend: &'static str,
    pub events: usize,
    pub keys: usize,
    pub rate_per_s: Option<u64>,
    pub eps: f64,
    pub p50_ms: i64,
    pub p99_ms: i64,
    pub max_ms: i64,
}

/// A consumer that does no work and records each event's lag.
struct LagProbe {
    name: String,
    lags_ms: Mutex<Vec<i64>>,
    handled: AtomicUsize,
}

impl Consumer for LagProbe {
    fn name(&self) -> &str {
        &self.name
    }

    fn kinds(&self) -> &[&str] {
        &["bench.event"]
    }

    async fn handle(&self, event: &Event, _tx: &mut Tx) -> Result<(), HandleError> {
        let lag_ms = SystemClock.now().ms_since(event.created_at);
        if let Ok(mut lags) = self.lags_ms.lock() {
            lags.push(lag_ms);
        }
        self.handled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Runs the benchmark and reports throughput and lag percentiles.
pub async fn run(options: &BenchOptions) -> Result<BenchReport, EventsError> {
    if !(1..=BENCH_EVENTS_MAX).contains(&options.events)
        || !(1..=BENCH_KEYS_MAX).contains(&options.keys)
    {
        return Err(EventsError::InvalidConfig(format!(
            "events must be 1..={BENCH_EVENTS_MAX} and keys 1..={BENCH_KEYS_MAX}"
        )));
    }
    let temp_path =
        std::env::temp_dir().join(format!("settle-bench-{}.db", uuid::Uuid::new_v4().simple()));
    let url = match &options.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", temp_path.display()),
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    // On PostgreSQL the run gets a scratch schema of its own, dropped afterwards,
    // so earlier runs' events are neither read nor counted.
    let schema = url
        .starts_with("postgres")
        .then(|| format!("bench_{run_id}"));
    if let Some(schema) = &schema {
        let admin = Store::connect(&url).await?;
        if let Store::Postgres(pool) = &admin {
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(pool)
                .await?;
        }
        admin.close().await;
    }
    // Relays hold one connection each for their partition lock; leave room for
    // the workers' transactions and the relays' own queries.
    let store = Store::connect_with(
        &url,
        &StoreOptions {
            connections_max: BENCH_CONNECTIONS_MAX,
            search_path: schema.clone(),
            ..StoreOptions::default()
        },
    )
    .await?;
    outbox::migrate(&store).await?;
    let probe = Arc::new(LagProbe {
        name: format!("bench-{run_id}"),
        lags_ms: Mutex::new(Vec::with_capacity(options.events)),
        handled: AtomicUsize::new(0),
    });
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let shutdown = Shutdown::default();
    let wake = Wake::new();
    let transport = match options.transport {
        BenchTransport::Embedded => {
            let dispatcher = Dispatcher::new(
                store.clone(),
                probe.clone(),
                DispatcherConfig::default(),
                clock.clone(),
                wake.clone(),
            )
            .await?;
            let signal = shutdown.clone();
            tokio::spawn(async move { dispatcher.run(signal.wait()).await })
        }
        BenchTransport::Nats => {
            let config = NatsConfig {
                url: options.nats_url.clone(),
                stream: format!("BENCH_{run_id}"),
                subject_prefix: format!("bench{run_id}"),
                poll_interval_ms: 2,
                fetch_wait_ms: 2,
                ..NatsConfig::default()
            };
            let signal = shutdown.clone();
            let consumer = probe.clone();
            let store = store.clone();
            let clock = clock.clone();
            tokio::spawn(async move { nats::run_all(store, config, consumer, clock, signal).await })
        }
    };
    let started = Instant::now();
    let produced = produce(&store, options, &run_id, &wake).await;
    let deadline = started + Duration::from_millis(options.timeout_ms);
    while produced.is_ok()
        && probe.handled.load(Ordering::SeqCst) < options.events
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    let _ = transport.await;
    if let BenchTransport::Nats = options.transport
        && let Ok(client) = async_nats::connect(options.nats_url.as_str()).await
    {
        let _ = async_nats::jetstream::new(client)
            .delete_stream(format!("BENCH_{run_id}"))
            .await;
    }
    let backend = store.backend().name();
    store.close().await;
    if let Some(schema) = &schema
        && let Ok(Store::Postgres(pool)) = Store::connect(&url).await
    {
        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&pool)
            .await;
        pool.close().await;
    }
    if options.database_url.is_none() {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = temp_path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
    produced?;
    let handled = probe.handled.load(Ordering::SeqCst);
    if handled < options.events {
        return Err(EventsError::InvalidConfig(format!(
            "only {handled} of {} events were handled within {} ms",
            options.events, options.timeout_ms
        )));
    }
    let mut lags = probe.lags_ms.lock().map(|l| l.clone()).unwrap_or_default();
    lags.sort_unstable();
    let percentile = |p: usize| {
        lags.get((lags.len().saturating_sub(1)) * p / 100)
            .copied()
            .unwrap_or(0)
    };
    Ok(BenchReport {
        bench: "events",
        transport: options.transport.name(),
        backend,
        events: options.events,
        keys: options.keys,
        rate_per_s: options.rate_per_s,
        eps: (options.events as f64 / elapsed.as_secs_f64() * 10.0).round() / 10.0,
        p50_ms: percentile(50),
        p99_ms: percentile(99),
        max_ms: lags.last().copied().unwrap_or(0),
    })
}

/// Appends `events` events round-robin over `keys` keys, paced when asked.
async fn produce(
    store: &Store,
    options: &BenchOptions,
    run_id: &str,
    wake: &Wake,
) -> Result<(), EventsError> {
    // Paced: a transaction every 10 ms carrying a hundredth of the rate.
    let tick = Duration::from_millis(10);
    let batch_events = match options.rate_per_s {
        Some(rate) => usize::try_from(rate / 100).unwrap_or(1).max(1),
        None => PRODUCE_BATCH_EVENTS_MAX,
    };
    let mut next_tick = Instant::now();
    let mut index = 0;
    while index < options.events {
        let end = (index + batch_events).min(options.events);
        let batch: Vec<NewEvent> = (index..end)
            .map(|i| NewEvent {
                kind: "bench.event",
                key: format!("b{run_id}-{}", i % options.keys),
                seq: i64::try_from(i / options.keys + 1).unwrap_or(i64::MAX),
            })
            .collect();
        let mut tx = store.begin().await?;
        outbox::append(&mut tx, &batch, SystemClock.now()).await?;
        tx.commit().await?;
        wake.poke();
        index = end;
        if options.rate_per_s.is_some() {
            next_tick += tick;
            tokio::time::sleep_until(next_tick.into()).await;
        }
    }
    Ok(())
}
