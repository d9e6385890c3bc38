//! The embedded dispatcher, stepped with `run_once` and a test clock: exactly-once,
//! per-key order, retries and dead letters, on SQLite and PostgreSQL.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::*;
use events::dead_letter::{self, OperatorAction};
use events::{DeadLetterState, Dispatcher, DispatcherConfig, RetryPolicy, Step, Wake};
use money::{Clock, TestClock, Timestamp};
use store::Store;

fn config(retry_attempts_max: u32) -> DispatcherConfig {
    DispatcherConfig {
        retry: RetryPolicy::fast_for_tests(retry_attempts_max),
        ..DispatcherConfig::default()
    }
}

/// Steps until nothing is left, moving the test clock instead of sleeping when
/// only retries are pending.
async fn drain(dispatcher: &mut Dispatcher<Recorder>, clock: &TestClock) {
    let mut idle_rounds = 0;
    for _ in 0..100_000 {
        match dispatcher.run_once().await.unwrap() {
            Step::Done => idle_rounds = 0,
            Step::Idle if dispatcher.caught_up().await.unwrap() => return,
            // Rows another test's transaction still hides (PostgreSQL): wait.
            Step::Idle if dispatcher.queued_events() == 0 => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Step::Idle => {
                idle_rounds += 1;
                assert!(idle_rounds < 10_000, "dispatcher stuck");
                clock.advance_ms(5);
            }
        }
    }
    panic!("dispatcher did not finish");
}

async fn random_failures_take_effect_exactly_once_in_order(store: &Store) {
    prepare(store).await;
    let (keys, per_key) = (1_000, 50);
    produce(store, keys, 1, per_key).await;
    let clock = TestClock::at(Timestamp::from_unix_ms(4_000_000_000_000));
    let recorder = Arc::new(Recorder::new("recorder", 0.2, 20_240_601));
    let mut dispatcher = Dispatcher::new(
        store.clone(),
        recorder,
        config(30),
        Arc::new(clock.clone()),
        Wake::new(),
    )
    .await
    .unwrap();
    drain(&mut dispatcher, &clock).await;
    assert_exactly_once_in_order(&effects(store).await, keys, per_key);
    let letters = dead_letter::list(store, None, None, 10).await.unwrap();
    assert!(
        letters.is_empty(),
        "nothing should be dead-lettered: {letters:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_takes_effect_once_in_key_order_on_sqlite_despite_random_failures() {
    let db = store::testing::sqlite().await;
    random_failures_take_effect_exactly_once_in_order(&db.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_takes_effect_once_in_key_order_on_postgres_despite_random_failures() {
    let Some(db) = store::testing::postgres().await else {
        return;
    };
    random_failures_take_effect_exactly_once_in_order(&db.store).await;
}

async fn poisoned_key_waits_until_replay(store: &Store, action: OperatorAction) {
    prepare(store).await;
    produce(store, 3, 1, 6).await;
    let clock = TestClock::at(Timestamp::from_unix_ms(1_700_000_000_000));
    let recorder = Arc::new(Recorder::new("poisoned", 0.0, 1).with_poison(&key_name(1), 3));
    let mut dispatcher = Dispatcher::new(
        store.clone(),
        recorder.clone(),
        config(4),
        Arc::new(clock.clone()),
        Wake::new(),
    )
    .await
    .unwrap();
    drain(&mut dispatcher, &clock).await;

    let letters = dead_letter::list(store, Some("poisoned"), Some(DeadLetterState::Parked), 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(
        (letter.event.key.as_str(), letter.event.seq),
        (key_name(1).as_str(), 3)
    );
    assert_eq!(letter.attempts, 4);
    assert!(letter.last_error.contains("poisoned"));
    let applied = effects(store).await;
    let parked_key: Vec<i64> = applied
        .iter()
        .filter(|(k, _)| *k == key_name(1))
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(
        parked_key,
        vec![1, 2],
        "later events of the parked key must wait"
    );
    assert_eq!(applied.len(), 2 * 6 + 2);

    // New events of the parked key wait too.
    produce(store, 3, 7, 7).await;
    drain(&mut dispatcher, &clock).await;
    assert_eq!(
        events::seq_done(store, "poisoned", &key_name(1))
            .await
            .unwrap(),
        2
    );

    recorder.poison_armed.store(false, Ordering::SeqCst);
    let released = dead_letter::resolve(
        store,
        "poisoned",
        letter.event.id,
        action,
        "ops@settle",
        clock.now(),
    )
    .await
    .unwrap();
    assert_eq!(released.resolved_by.as_deref(), Some("ops@settle"));
    drain(&mut dispatcher, &clock).await;

    let applied = effects(store).await;
    let parked_key: Vec<i64> = applied
        .iter()
        .filter(|(k, _)| *k == key_name(1))
        .map(|(_, s)| *s)
        .collect();
    let expected: Vec<i64> = match action {
        OperatorAction::Replay => (1..=7).collect(),
        OperatorAction::Discard => vec![1, 2, 4, 5, 6, 7],
    };
    assert_eq!(parked_key, expected);
    let (letter, actions) = dead_letter::show(store, "poisoned", letter.event.id)
        .await
        .unwrap();
    assert_ne!(letter.state, DeadLetterState::Parked);
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].actor, "ops@settle");
    let again = dead_letter::resolve(
        store,
        "poisoned",
        letter.event.id,
        OperatorAction::Replay,
        "ops",
        clock.now(),
    )
    .await;
    assert_eq!(again.unwrap_err().code(), "dead_letter_not_parked");
}

#[tokio::test]
async fn an_always_failing_event_is_dead_lettered_its_key_waits_and_replay_applies_the_rest_in_order()
 {
    let db = store::testing::sqlite().await;
    poisoned_key_waits_until_replay(&db.store, OperatorAction::Replay).await;
}

#[tokio::test]
async fn a_discarded_dead_letter_releases_its_key_without_its_effect() {
    let db = store::testing::sqlite().await;
    poisoned_key_waits_until_replay(&db.store, OperatorAction::Discard).await;
}

#[tokio::test]
async fn dead_letters_are_replayed_in_order_on_postgres() {
    let Some(db) = store::testing::postgres().await else {
        return;
    };
    poisoned_key_waits_until_replay(&db.store, OperatorAction::Replay).await;
}

#[tokio::test]
async fn a_restarted_dispatcher_resumes_without_repeating_effects() {
    let db = store::testing::sqlite().await;
    prepare(&db.store).await;
    produce(&db.store, 10, 1, 5).await;
    let clock = TestClock::at(Timestamp::from_unix_ms(1_700_000_000_000));
    for round in 0..2 {
        let recorder = Arc::new(Recorder::new("restart", 0.0, 1));
        let mut dispatcher = Dispatcher::new(
            db.store.clone(),
            recorder,
            config(3),
            Arc::new(clock.clone()),
            Wake::new(),
        )
        .await
        .unwrap();
        drain(&mut dispatcher, &clock).await;
        if round == 0 {
            produce(&db.store, 10, 6, 8).await;
        }
    }
    assert_exactly_once_in_order(&effects(&db.store).await, 10, 8);
}

#[tokio::test]
async fn an_event_whose_predecessor_is_missing_waits_until_the_predecessor_is_written() {
    let db = store::testing::sqlite().await;
    prepare(&db.store).await;
    produce(&db.store, 1, 2, 3).await;
    let clock = TestClock::at(Timestamp::from_unix_ms(1_700_000_000_000));
    let recorder = Arc::new(Recorder::new("gap", 0.0, 1));
    let mut dispatcher = Dispatcher::new(
        db.store.clone(),
        recorder,
        config(3),
        Arc::new(clock.clone()),
        Wake::new(),
    )
    .await
    .unwrap();
    for _ in 0..20 {
        dispatcher.run_once().await.unwrap();
        clock.advance_ms(1_000);
    }
    assert!(
        effects(&db.store).await.is_empty(),
        "seq 2 must not apply before seq 1"
    );
    assert!(
        dead_letter::list(&db.store, None, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "waiting for a predecessor is not a failure"
    );
    produce(&db.store, 1, 1, 1).await;
    drain(&mut dispatcher, &clock).await;
    assert_exactly_once_in_order(&effects(&db.store).await, 1, 3);
}
