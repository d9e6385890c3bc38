//! A consumer process killed with SIGKILL mid-batch and started again: nothing is
//! lost, nothing is applied twice, each key stays in order. The child is this very
//! test binary, re-run with `consumer_child_process` selected.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use common::*;
use events::{Dispatcher, DispatcherConfig, RetryPolicy, Wake};
use money::SystemClock;

const CHILD_DB_URL: &str = "EVENTS_CHILD_DB_URL";

/// The child's body: runs the embedded dispatcher until killed. Does nothing when
/// run as an ordinary test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_child_process() {
    let Ok(url) = std::env::var(CHILD_DB_URL) else {
        return;
    };
    let store = store::Store::connect(&url).await.unwrap();
    let recorder = Arc::new(Recorder::new("crashy", 0.1, u64::from(std::process::id())));
    let config = DispatcherConfig {
        batch_events_max: 64,
        key_events_per_batch_max: 4,
        retry: RetryPolicy::fast_for_tests(30),
        ..DispatcherConfig::default()
    };
    let dispatcher = Dispatcher::new(store, recorder, config, Arc::new(SystemClock), Wake::new())
        .await
        .unwrap();
    dispatcher.run(std::future::pending()).await.unwrap();
}

fn spawn_child(url: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["consumer_child_process", "--exact", "--nocapture"])
        .env(CHILD_DB_URL, url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_mid_batch_and_restarted_applies_every_event_once_in_order() {
    let db = store::testing::sqlite().await;
    prepare(&db.store).await;
    let (keys, per_key) = (400, 30);
    produce(&db.store, keys, 1, per_key).await;
    let total = keys * per_key as usize;
    for kill_at in [2_000, 6_000] {
        let mut child = spawn_child(&db.url);
        let reached = wait_for_effects(&db.store, kill_at, 60_000).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(reached >= kill_at, "child made no progress: {reached}");
        assert!(reached < total, "child finished before it could be killed");
    }
    let mut child = spawn_child(&db.url);
    let applied = wait_for_effects(&db.store, total, 120_000).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(applied, total);
    assert_exactly_once_in_order(&effects(&db.store).await, keys, per_key);
}
