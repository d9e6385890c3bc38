//! The backbone reports what it does: events handled, retried and dead-lettered,
//! and a lag sample per handled event.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use events::{Dispatcher, DispatcherConfig, RetryPolicy, Step, Wake};
use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder as MetricsRecorder, SharedString,
    Unit,
};
use money::{TestClock, Timestamp};

/// Counts counter increments and histogram samples by metric name.
#[derive(Default)]
struct Tally {
    by_name: Mutex<HashMap<String, Arc<Samples>>>,
}

#[derive(Default)]
struct Samples(AtomicU64);

impl metrics::CounterFn for Samples {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::SeqCst);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::SeqCst);
    }
}

impl metrics::HistogramFn for Samples {
    fn record(&self, _value: f64) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Tally {
    fn samples(&self, name: &str) -> Arc<Samples> {
        let mut by_name = self.by_name.lock().unwrap();
        by_name.entry(name.to_owned()).or_default().clone()
    }

    fn get(&self, name: &str) -> u64 {
        self.samples(name).0.load(Ordering::SeqCst)
    }
}

impl MetricsRecorder for Tally {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.samples(key.name()))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.samples(key.name()))
    }
}

// A current-thread runtime: every task runs on this thread, where the local
// recorder is installed.
#[tokio::test]
async fn handled_retried_dead_lettered_and_lag_are_counted() {
    let tally = Tally::default();
    let _guard = metrics::set_default_local_recorder(&tally);
    let db = store::testing::sqlite().await;
    prepare(&db.store).await;
    produce(&db.store, 2, 1, 3).await;
    let clock = TestClock::at(Timestamp::from_unix_ms(1_700_000_000_000));
    let recorder = Arc::new(Recorder::new("metered", 0.0, 1).with_poison(&key_name(1), 2));
    let config = DispatcherConfig {
        retry: RetryPolicy::fast_for_tests(3),
        ..DispatcherConfig::default()
    };
    let mut dispatcher = Dispatcher::new(
        db.store.clone(),
        recorder,
        config,
        Arc::new(clock.clone()),
        Wake::new(),
    )
    .await
    .unwrap();
    for _ in 0..1_000 {
        if dispatcher.run_once().await.unwrap() == Step::Idle {
            if dispatcher.queued_events() == 0 {
                break;
            }
            clock.advance_ms(10);
        }
    }
    // Key 0: seqs 1..3; key 1: seq 1, then seq 2 fails 3 times and is parked.
    assert_eq!(tally.get("events_handled_total"), 4);
    assert_eq!(tally.get("events_lag_ms"), 4);
    assert_eq!(tally.get("events_retried_total"), 2);
    assert_eq!(tally.get("events_dead_lettered_total"), 1);
}
