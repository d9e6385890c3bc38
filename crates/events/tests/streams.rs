//! Routing that cannot cross: two components writing one outbox (the production
//! shape, where the core and payroll share a PostgreSQL database), each relayed to
//! its own stream and read only by its own consumers; a lost last event repaired
//! without a later one; an event of another stream refused and recorded; and of
//! several processes' dispatchers only the lease holder delivering.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{in_ci, record_effect};
use events::nats::{self, NatsConfig};
use events::{
    Consumer, Dispatcher, DispatcherConfig, Event, HandleError, NewEvent, Shutdown, Wake,
};
use money::{Clock, SystemClock};
use store::{Store, Tx};

/// Records every event it handles and counts its own calls.
struct KindReader {
    name: String,
    kinds: [&'static str; 1],
    calls: AtomicUsize,
}

impl KindReader {
    fn new(name: &str, kind: &'static str) -> Arc<KindReader> {
        Arc::new(KindReader {
            name: name.to_owned(),
            kinds: [kind],
            calls: AtomicUsize::new(0),
        })
    }
}

impl Consumer for KindReader {
    fn name(&self) -> &str {
        &self.name
    }

    fn kinds(&self) -> &[&str] {
        &self.kinds
    }

    async fn handle(&self, event: &Event, tx: &mut Tx) -> Result<(), HandleError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        record_effect(tx, event).await?;
        Ok(())
    }
}

async fn shared_nats() -> Option<String> {
    let url = nats::nats_url_from_env();
    let reachable = tokio::time::timeout(Duration::from_secs(3), async_nats::connect(url.as_str()))
        .await
        .is_ok_and(|c| c.is_ok());
    match (reachable, in_ci()) {
        (true, _) => Some(url),
        (false, false) => {
            eprintln!("skipping: NATS at {url} is unreachable; set NATS_URL");
            None
        }
        (false, true) => panic!("CI is set and NATS at {url} is unreachable"),
    }
}

fn config(url: &str, stream: &str) -> NatsConfig {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    NatsConfig {
        stream: format!("TEST_{}_{unique}", stream.to_uppercase()),
        subject_prefix: format!("t{unique}"),
        partitions: 2,
        fetch_wait_ms: 10,
        poll_interval_ms: 10,
        ..NatsConfig::for_stream(url, stream)
    }
}

/// Appends `per_key` events of `kind` to each of `keys`, in one transaction
/// per seq, both components interleaved in one outbox.
async fn produce(
    store: &Store,
    kind: &'static str,
    keys: &[String],
    seqs: std::ops::RangeInclusive<i64>,
) {
    for seq in seqs {
        let batch: Vec<NewEvent> = keys
            .iter()
            .map(|key| NewEvent {
                kind,
                key: key.clone(),
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

fn keys(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i:04}")).collect()
}

async fn scalar(store: &Store, sql: &str) -> i64 {
    store::on_pool!(store, sqlx::query_scalar(sql), fetch_one).unwrap()
}

async fn wait_for(store: &Store, sql: &str, expected: i64, timeout: Duration) -> i64 {
    let deadline = Instant::now() + timeout;
    loop {
        let now = scalar(store, sql).await;
        if now >= expected || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn postgres() -> Option<store::testing::TestDb> {
    let db = store::testing::postgres().await?;
    common::prepare(&db.store).await;
    Some(db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_components_sharing_one_outbox_never_take_each_others_events_over_nats() {
    let (Some(url), Some(db)) = (shared_nats().await, postgres().await) else {
        return;
    };
    let (alpha_keys, beta_keys) = (keys("a", 40), keys("b", 40));
    let (alpha, beta) = (config(&url, "alpha"), config(&url, "beta"));
    let alpha_reader = KindReader::new("alpha-reader", "alpha.entry");
    let beta_reader = KindReader::new("beta-reader", "beta.entry");
    let shutdown = Shutdown::default();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // One process's leases, shared by both streams' relays, as `serve` does.
    let leases = store::Leases::new(&db.store);
    let mut tasks = tokio::task::JoinSet::new();
    for config in [&alpha, &beta] {
        tasks.spawn(nats::run_relays(
            db.store.clone(),
            config.clone(),
            clock.clone(),
            leases.clone(),
            shutdown.clone(),
        ));
    }
    tasks.spawn(nats::run_workers(
        db.store.clone(),
        alpha.clone(),
        alpha_reader.clone(),
        clock.clone(),
        leases.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(nats::run_workers(
        db.store.clone(),
        beta.clone(),
        beta_reader.clone(),
        clock.clone(),
        leases.clone(),
        shutdown.clone(),
    ));
    for round in 0..5 {
        let seqs = round * 4 + 1..=round * 4 + 4;
        produce(&db.store, "alpha.entry", &alpha_keys, seqs.clone()).await;
        produce(&db.store, "beta.entry", &beta_keys, seqs).await;
    }
    let total = (alpha_keys.len() + beta_keys.len()) as i64 * 20;
    let applied = wait_for(
        &db.store,
        "SELECT COUNT(*) FROM test_effects",
        total,
        Duration::from_secs(60),
    )
    .await;
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    assert_eq!(applied, total, "every event of both streams applied once");
    assert_eq!(
        alpha_reader.calls.load(Ordering::SeqCst),
        alpha_keys.len() * 20
    );
    assert_eq!(
        beta_reader.calls.load(Ordering::SeqCst),
        beta_keys.len() * 20
    );
    let crossed = scalar(
        &db.store,
        "SELECT COUNT(*) FROM event_consumer_keys
         WHERE (consumer = 'alpha-reader' AND key NOT LIKE 'a-%')
            OR (consumer = 'beta-reader' AND key NOT LIKE 'b-%')",
    )
    .await;
    assert_eq!(
        crossed, 0,
        "no consumer keeps a watermark on another stream's keys"
    );
    assert_eq!(
        scalar(&db.store, "SELECT COUNT(*) FROM event_misdeliveries").await,
        0
    );
    let js = nats::connect(&alpha).await.unwrap();
    for config in [&alpha, &beta] {
        let info = js
            .get_stream(config.stream.as_str())
            .await
            .unwrap()
            .cached_info()
            .clone();
        assert_eq!(
            info.state.messages,
            40 * 20,
            "{} holds only its own stream's rows",
            config.stream
        );
        js.delete_stream(config.stream.as_str()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_last_event_lost_by_the_broker_is_repaired_within_thirty_seconds() {
    let (Some(url), Some(db)) = (shared_nats().await, postgres().await) else {
        return;
    };
    // The defaults name the bound: repair_after_ms + repair_every_ms (+ a step).
    let config = config(&url, "alpha");
    let reader = KindReader::new("alpha-reader", "alpha.entry");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let shutdown = Shutdown::default();
    let burst = keys("a", 20);
    produce(&db.store, "alpha.entry", &burst, 1..=3).await;
    // The last event of one key: in the outbox, marked relayed, never in the
    // stream — what a broker that lost an acknowledged message leaves behind.
    let lost_key = burst[7].clone();
    produce(
        &db.store,
        "alpha.entry",
        std::slice::from_ref(&lost_key),
        4..=4,
    )
    .await;
    store::on_pool!(
        &db.store,
        sqlx::query("UPDATE outbox SET relayed_at_ms = 1 WHERE key = $1 AND seq = 4")
            .bind(&lost_key),
        execute
    )
    .unwrap();
    let started = Instant::now();
    let transport = tokio::spawn(nats::run_all(
        db.store.clone(),
        config.clone(),
        reader.clone(),
        clock,
        shutdown.clone(),
    ));
    let expected = burst.len() as i64 * 3 + 1;
    let applied = wait_for(
        &db.store,
        "SELECT COUNT(*) FROM test_effects",
        expected,
        Duration::from_secs(30),
    )
    .await;
    let took = started.elapsed();
    shutdown.cancel();
    transport.await.unwrap().unwrap();
    assert_eq!(
        applied, expected,
        "the lost last event was repaired within 30 s (took {took:?})"
    );
    let done = events::seq_done(&db.store, "alpha-reader", &lost_key)
        .await
        .unwrap();
    assert_eq!(done, 4);
    nats::connect(&config)
        .await
        .unwrap()
        .delete_stream(config.stream.as_str())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_of_another_stream_on_a_workers_subject_is_refused_and_recorded() {
    let (Some(url), Some(db)) = (shared_nats().await, postgres().await) else {
        return;
    };
    let config = config(&url, "alpha");
    let reader = KindReader::new("alpha-reader", "alpha.entry");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let shutdown = Shutdown::default();
    let transport = tokio::spawn(nats::run_all(
        db.store.clone(),
        config.clone(),
        reader.clone(),
        clock.clone(),
        shutdown.clone(),
    ));
    // A beta event forged onto alpha's subject (a routing bug elsewhere).
    let js = nats::connect(&config).await.unwrap();
    let forged = Event {
        id: money::EventId::from_uuid(events::event_id("beta.entry", "b-0001", 1)).unwrap(),
        kind: "beta.entry".to_owned(),
        key: "b-0001".to_owned(),
        seq: 1,
        created_at: clock.now(),
    };
    js.publish(
        nats::subject(&config, &forged.key),
        serde_json::to_vec(&forged).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let refused = wait_for(
        &db.store,
        "SELECT COUNT(*) FROM event_misdeliveries",
        1,
        Duration::from_secs(20),
    )
    .await;
    shutdown.cancel();
    transport.await.unwrap().unwrap();
    assert_eq!(refused, 1, "the foreign event is recorded as a misdelivery");
    assert_eq!(
        reader.calls.load(Ordering::SeqCst),
        0,
        "and never handed to the consumer"
    );
    js.delete_stream(config.stream.as_str()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_processes_dispatchers_only_the_lease_holder_delivers_and_the_standby_takes_over() {
    let Some(db) = postgres().await else {
        return;
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config = DispatcherConfig {
        poll_interval_ms: 10,
        takeover_ms: 100,
        ..DispatcherConfig::default()
    };
    let start = async |reader: &Arc<KindReader>, shutdown: &Shutdown| {
        let dispatcher = Dispatcher::new(
            db.store.clone(),
            reader.clone(),
            config.clone(),
            clock.clone(),
            Wake::new(),
        )
        .await
        .unwrap()
        .with_leases(store::Leases::new(&db.store));
        (dispatcher, shutdown.clone())
    };
    let spawn = |(dispatcher, signal): (Dispatcher<KindReader>, Shutdown)| {
        tokio::spawn(async move { dispatcher.run(signal.wait()).await })
    };
    let (first, second) = (
        KindReader::new("alpha-reader", "alpha.entry"),
        KindReader::new("alpha-reader", "alpha.entry"),
    );
    let (stop_first, stop_second) = (Shutdown::default(), Shutdown::default());
    let first_task = spawn(start(&first, &stop_first).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second_task = spawn(start(&second, &stop_second).await);
    let burst = keys("a", 30);
    produce(&db.store, "alpha.entry", &burst, 1..=5).await;
    let applied = wait_for(
        &db.store,
        "SELECT COUNT(*) FROM test_effects",
        150,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(applied, 150);
    assert_eq!(
        first.calls.load(Ordering::SeqCst),
        150,
        "the lease holder delivered everything"
    );
    assert_eq!(
        second.calls.load(Ordering::SeqCst),
        0,
        "the standby did nothing twice"
    );
    stop_first.cancel();
    first_task.await.unwrap().unwrap();
    produce(&db.store, "alpha.entry", &burst, 6..=7).await;
    let applied = wait_for(
        &db.store,
        "SELECT COUNT(*) FROM test_effects",
        210,
        Duration::from_secs(30),
    )
    .await;
    stop_second.cancel();
    second_task.await.unwrap().unwrap();
    assert_eq!(
        applied, 210,
        "the standby took over and delivered the rest once"
    );
    assert_eq!(second.calls.load(Ordering::SeqCst), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_status_shows_the_backlog_while_no_relay_runs_and_none_after() {
    let (Some(url), Some(db)) = (shared_nats().await, postgres().await) else {
        return;
    };
    let config = config(&url, "alpha");
    let reader = KindReader::new("alpha-reader", "alpha.entry");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    produce(&db.store, "alpha.entry", &keys("a", 10), 1..=5).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before = events::status::status(&db.store, clock.now())
        .await
        .unwrap();
    let alpha = &before.streams[0];
    assert_eq!(
        (alpha.stream.as_str(), alpha.events, alpha.unrelayed),
        ("alpha", 50, 50)
    );
    assert!(alpha.oldest_unrelayed_age_ms.is_some_and(|age| age >= 20));
    assert_eq!(
        alpha.unrelayed,
        scalar(
            &db.store,
            "SELECT COUNT(*) FROM outbox WHERE relayed_at_ms IS NULL"
        )
        .await
    );
    assert!(before.relay_leaders.is_empty(), "nobody relays yet");
    let shutdown = Shutdown::default();
    let transport = tokio::spawn(nats::run_all(
        db.store.clone(),
        config.clone(),
        reader,
        clock.clone(),
        shutdown.clone(),
    ));
    wait_for(
        &db.store,
        "SELECT COUNT(*) FROM test_effects",
        50,
        Duration::from_secs(30),
    )
    .await;
    let after = events::status::status(&db.store, clock.now())
        .await
        .unwrap();
    shutdown.cancel();
    transport.await.unwrap().unwrap();
    assert_eq!(after.streams[0].unrelayed, 0);
    assert_eq!(after.streams[0].oldest_unrelayed_age_ms, None);
    let consumer = &after.consumers[0];
    assert_eq!(
        (
            consumer.consumer.as_str(),
            consumer.stream.as_str(),
            consumer.lag_events,
            consumer.parked_keys
        ),
        ("alpha-reader", "alpha", 0, 0)
    );
    let holder = format!(":{}", std::process::id());
    assert_eq!(after.relay_leaders.len(), config.partitions as usize);
    assert!(
        after
            .relay_leaders
            .iter()
            .all(|l| l.stream == "alpha" && l.holder.ends_with(&holder))
    );
    nats::connect(&config)
        .await
        .unwrap()
        .delete_stream(config.stream.as_str())
        .await
        .unwrap();
}
