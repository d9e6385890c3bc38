//! The NATS JetStream transport end to end: relay, partition workers, random
//! consumer failures, and a broker killed with SIGKILL mid-stream.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use events::nats::{self, NatsConfig};
use events::{RetryPolicy, Shutdown};
use money::SystemClock;
use store::testing::TestDb;

fn config(url: &str) -> NatsConfig {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    NatsConfig {
        url: url.to_owned(),
        outbox_stream: "test".to_owned(),
        stream: format!("TEST_{unique}"),
        subject_prefix: format!("t{unique}"),
        partitions: 4,
        ack_wait_ms: 5_000,
        fetch_wait_ms: 10,
        poll_interval_ms: 10,
        release_check_ms: 20,
        retry: RetryPolicy::fast_for_tests(30),
        ..NatsConfig::default()
    }
}

/// The shared server from `NATS_URL`, or `None` (outside CI) when unreachable.
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

/// PostgreSQL (the production shape) when reachable, else SQLite.
async fn database() -> TestDb {
    match store::testing::postgres().await {
        Some(db) => db,
        None => store::testing::sqlite().await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_takes_effect_once_in_key_order_over_nats_despite_random_failures() {
    let Some(url) = shared_nats().await else {
        return;
    };
    let db = database().await;
    prepare(&db.store).await;
    let (keys, per_key) = (1_000, 50);
    let config = config(&url);
    let shutdown = Shutdown::default();
    let recorder = Arc::new(Recorder::new("recorder", 0.2, 42));
    let transport = tokio::spawn(nats::run_all(
        db.store.clone(),
        config.clone(),
        recorder,
        Arc::new(SystemClock),
        shutdown.clone(),
    ));
    produce(&db.store, keys, 1, per_key).await;
    let applied = wait_for_effects(&db.store, keys * per_key as usize, 170_000).await;
    shutdown.cancel();
    transport.await.unwrap().unwrap();
    assert_eq!(applied, keys * per_key as usize);
    assert_exactly_once_in_order(&effects(&db.store).await, keys, per_key);
    let js = nats::connect(&config).await.unwrap();
    js.delete_stream(&config.stream).await.unwrap();
}

/// A `nats-server` of the test's own, on its own port and store directory.
struct OwnServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnServer {
    fn start() -> OwnServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("settle-nats-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = OwnServer {
            port,
            dir,
            child: None,
        };
        server.restart();
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("/usr/sbin/nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed at /usr/sbin/nats-server");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("nats-server did not start on port {}", self.port);
    }

    /// SIGKILL: no goodbye, no flush.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_stream_and_restarted_loses_nothing_and_applies_nothing_twice() {
    if !std::path::Path::new("/usr/sbin/nats-server").exists() {
        assert!(!in_ci(), "CI is set and /usr/sbin/nats-server is missing");
        eprintln!("skipping: /usr/sbin/nats-server is not installed");
        return;
    }
    let mut server = OwnServer::start();
    let db = database().await;
    prepare(&db.store).await;
    let (keys, per_key) = (200, 30);
    let config = NatsConfig {
        ack_wait_ms: 2_000,
        ..config(&server.url())
    };
    let shutdown = Shutdown::default();
    let recorder = Arc::new(Recorder::new("survivor", 0.05, 7));
    let transport = tokio::spawn(nats::run_all(
        db.store.clone(),
        config.clone(),
        recorder,
        Arc::new(SystemClock),
        shutdown.clone(),
    ));
    produce(&db.store, keys, 1, 10).await;
    wait_for_effects(&db.store, 500, 30_000).await;
    server.kill();
    // Events keep being written while the broker is down.
    produce(&db.store, keys, 11, 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();
    produce(&db.store, keys, 21, per_key).await;
    let applied = wait_for_effects(&db.store, keys * per_key as usize, 90_000).await;
    shutdown.cancel();
    // Bounded, so a transport that ignores shutdown fails here with a reason
    // instead of hanging until nextest kills the test.
    tokio::time::timeout(Duration::from_secs(30), transport)
        .await
        .unwrap_or_else(|_| {
            panic!("the transport did not stop within 30 s of shutdown ({applied} effects applied)")
        })
        .unwrap()
        .unwrap();
    assert_eq!(applied, keys * per_key as usize);
    assert_exactly_once_in_order(&effects(&db.store).await, keys, per_key);
}

#[tokio::test]
async fn only_one_relay_per_partition_runs_at_a_time_on_postgres() {
    let Some(url) = shared_nats().await else {
        return;
    };
    let Some(db) = store::testing::postgres().await else {
        return;
    };
    prepare(&db.store).await;
    let config = config(&url);
    let js = nats::connect(&config).await.unwrap();
    let clock: Arc<dyn money::Clock> = Arc::new(SystemClock);
    // Two processes: each has its own leases (its own lock connection).
    let (leases_a, leases_b) = (store::Leases::new(&db.store), store::Leases::new(&db.store));
    let acquire = async |partition: u32, leases: &store::Leases| {
        nats::Relay::acquire(
            db.store.clone(),
            js.clone(),
            config.clone(),
            partition,
            clock.clone(),
            leases,
        )
        .await
    };
    let first = acquire(1, &leases_a).await.unwrap();
    assert!(first.is_some());
    assert!(
        acquire(1, &leases_a).await.unwrap().is_none(),
        "the same process must not seat a partition twice"
    );
    assert!(
        acquire(1, &leases_b).await.unwrap().is_none(),
        "a second relay must not win a held partition"
    );
    let other = acquire(2, &leases_b).await.unwrap();
    assert!(other.is_some(), "another partition is free");
    first.unwrap().release().await;
    assert!(
        acquire(1, &leases_b).await.unwrap().is_some(),
        "a released partition can be taken over at once"
    );
    // A process that dies takes its leases with it.
    let third = acquire(3, &leases_a).await.unwrap();
    assert!(third.is_some());
    drop(third);
    drop(leases_a);
    let mut taken = None;
    for _ in 0..100 {
        taken = acquire(3, &leases_b).await.unwrap();
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(taken.is_some(), "a dead process's partition is taken over");
    js.delete_stream(&config.stream).await.unwrap();
}

async fn parked_letters(store: &store::Store, consumer: &str) -> Vec<events::DeadLetter> {
    events::dead_letter::list(
        store,
        Some(consumer),
        Some(events::DeadLetterState::Parked),
        10,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_event_over_nats_parks_its_key_until_replay_then_the_rest_apply_in_order() {
    let Some(url) = shared_nats().await else {
        return;
    };
    let db = database().await;
    prepare(&db.store).await;
    let config = NatsConfig {
        partitions: 2,
        retry: RetryPolicy::fast_for_tests(4),
        ..config(&url)
    };
    let shutdown = Shutdown::default();
    let recorder = Arc::new(Recorder::new("poisoned", 0.0, 1).with_poison(&key_name(1), 3));
    let transport = tokio::spawn(nats::run_all(
        db.store.clone(),
        config.clone(),
        recorder.clone(),
        Arc::new(SystemClock),
        shutdown.clone(),
    ));
    produce(&db.store, 3, 1, 6).await;
    assert_eq!(wait_for_effects(&db.store, 14, 20_000).await, 14);
    let mut letters = parked_letters(&db.store, "poisoned").await;
    for _ in 0..200 {
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        letters = parked_letters(&db.store, "poisoned").await;
    }
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.seq, 3);
    assert_eq!(letters[0].attempts, 4);

    // A later event of the parked key waits; the other keys go on.
    produce(&db.store, 3, 7, 7).await;
    assert_eq!(wait_for_effects(&db.store, 16, 20_000).await, 16);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(effect_count(&db.store).await, 16);
    assert_eq!(
        events::seq_done(&db.store, "poisoned", &key_name(1))
            .await
            .unwrap(),
        2
    );

    recorder
        .poison_armed
        .store(false, std::sync::atomic::Ordering::SeqCst);
    events::dead_letter::resolve(
        &db.store,
        "poisoned",
        letters[0].event.id,
        events::OperatorAction::Replay,
        "ops@settle",
        money::Clock::now(&SystemClock),
    )
    .await
    .unwrap();
    let applied = wait_for_effects(&db.store, 21, 20_000).await;
    shutdown.cancel();
    transport.await.unwrap().unwrap();
    assert_eq!(applied, 21);
    assert_exactly_once_in_order(&effects(&db.store).await, 3, 7);
    let js = nats::connect(&config).await.unwrap();
    js.delete_stream(&config.stream).await.unwrap();
}
