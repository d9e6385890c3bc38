//! The history read model, as specifications: it converges to the core's entries
//! whatever order events arrive in, never shows a balance the core never had, syncs
//! on read when a transfer is in flight, and syncs by hand.

mod common;

use std::sync::Arc;

use channel::faults::Fault;
use channel::history::CONSUMER_NAME;
use common::{Sys, new_transfer, user_id};
use events::{
    Consumer, DeadLetterState, Dispatcher, DispatcherConfig, Event, RetryPolicy, Step, Wake,
};
use ledger::ENTRY_EVENT_KIND;
use money::{AccountId, EventId};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

on_both_backends!(
    dropped_and_reordered_events_converge_to_the_core_and_never_show_a_balance_it_never_had,
    the_backbone_feeds_the_read_model_end_to_end,
    a_failing_core_read_is_retried_with_backoff_and_then_dead_lettered,
    a_read_of_an_account_with_a_transfer_in_flight_syncs_it_first,
    a_manual_sync_pulls_everything_beyond_the_last_seq,
    pages_are_newest_first_capped_and_cover_the_whole_history,
    one_database_for_core_and_channel_is_fed_through_the_backbones_transaction,
    a_read_syncs_a_bounded_number_of_pages_and_flags_the_rest_stale,
);

async fn a_read_syncs_a_bounded_number_of_pages_and_flags_the_rest_stale(sys: Sys) {
    let (alice, bob) = (sys.customer(100_000).await, sys.customer(0).await);
    for amount in 1..=29 {
        sys.core_move(alice, bob, amount).await;
    }
    let small_pages = sys
        .another_process_with(
            sys.faulty.clone(),
            channel::ChannelConfig {
                fetch_entries_max: 5,
                read_sync_pages_max: 2,
                ..sys.config.clone()
            },
        )
        .await;
    sys.faulty.push(Fault::TimeoutBeforeCommit).await;
    let pending = small_pages
        .transfers()
        .submit(new_transfer(user_id(), alice, bob, 1))
        .await
        .unwrap();
    assert_eq!(pending.state, channel::TransferState::Unknown);
    let page = small_pages
        .history()
        .history(alice, None, 100)
        .await
        .unwrap();
    assert!(
        page.stale && !page.synced,
        "30 entries do not fit in 2 pages of 5"
    );
    assert_eq!(page.entries.len(), 10, "the pages it did fetch are kept");
    assert_eq!(page.entries[0], sys.core_entries(alice).await[9]);
    let report = small_pages.history().sync(alice).await.unwrap();
    assert_eq!((report.last_seq_before, report.last_seq_after), (10, 30));
}

async fn one_database_for_core_and_channel_is_fed_through_the_backbones_transaction(sys: Sys) {
    // The embedded shape: the channel's tables live in the core's own database.
    let embedded = channel::Channel::open(
        sys.core_db.store.clone(),
        sys.faulty.clone(),
        Arc::new(sys.clock.clone()),
        sys.config.clone(),
    )
    .await
    .unwrap();
    let mut rng = SmallRng::seed_from_u64(5);
    let (accounts, _) = busy_core(&sys, &mut rng, 20).await;
    let mut dispatcher = Dispatcher::new(
        sys.core_db.store.clone(),
        Arc::new(embedded.history().consumer_sharing_core_store()),
        dispatcher_config(3),
        Arc::new(sys.clock.clone()),
        Wake::new(),
    )
    .await
    .unwrap();
    drain(&sys, &mut dispatcher, &accounts).await;
    let letters = events::dead_letter::list(&sys.core_db.store, None, None, 10)
        .await
        .unwrap();
    assert!(letters.is_empty(), "{letters:?}");
    for account in accounts {
        let page = embedded
            .history()
            .history(account, None, 100)
            .await
            .unwrap();
        let mut core = sys.core_entries(account).await;
        core.reverse();
        assert_eq!(page.entries, core);
    }
}

/// Random transfers among a few customers, straight in the core; returns the
/// accounts and the `ledger.entry` events in the order the core wrote them.
async fn busy_core(
    sys: &Sys,
    rng: &mut SmallRng,
    transfers: usize,
) -> (Vec<AccountId>, Vec<(AccountId, i64)>) {
    let mut accounts = Vec::new();
    let mut events = Vec::new();
    for _ in 0..4 {
        let id = sys.customer(1_000_000).await;
        events.push((id, 1));
        accounts.push(id);
    }
    let mut seqs = vec![1_i64; accounts.len()];
    for _ in 0..transfers {
        let from = rng.random_range(0..accounts.len());
        let to = (from + rng.random_range(1..accounts.len())) % accounts.len();
        sys.core_move(accounts[from], accounts[to], rng.random_range(1..5_000))
            .await;
        for side in [from, to] {
            seqs[side] += 1;
            events.push((accounts[side], seqs[side]));
        }
    }
    (accounts, events)
}

fn event(account: AccountId, seq: i64) -> Event {
    Event {
        id: EventId::from_uuid(events::event_id(
            ENTRY_EVENT_KIND,
            &account.to_string(),
            seq,
        ))
        .unwrap(),
        kind: ENTRY_EVENT_KIND.to_owned(),
        key: account.to_string(),
        seq,
        created_at: common::START,
    }
}

/// The read model of `account` is exactly the core's first `n` entries, n ≥ 0, so
/// every balance it shows is one the core had.
async fn assert_prefix_of_core(sys: &Sys, account: AccountId, context: &str) -> usize {
    let model = sys.model_entries(account).await;
    let core = sys.core_entries(account).await;
    assert!(model.len() <= core.len(), "{context}: more than the core");
    assert_eq!(
        model[..],
        core[..model.len()],
        "{context}: not a prefix of the core's entries"
    );
    let last = sys.channel.history().last_seq(account).await.unwrap();
    assert_eq!(
        last,
        model.len() as i64,
        "{context}: last_seq and rows disagree"
    );
    model.len()
}

async fn deliver(sys: &Sys, consumer: &channel::HistoryConsumer, account: AccountId, seq: i64) {
    // The consumer writes only to the channel's store; the backbone's transaction
    // (on the core's store) is handed over and rolled back untouched.
    let mut tx = sys.core_db.store.begin().await.unwrap();
    consumer
        .handle(&event(account, seq), &mut tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
}

async fn dropped_and_reordered_events_converge_to_the_core_and_never_show_a_balance_it_never_had(
    sys: Sys,
) {
    const WINDOW_EVENTS: usize = 8;
    const DROP_PERCENT: u32 = 10;
    for seed in [7_u64, 2_026] {
        let mut rng = SmallRng::seed_from_u64(seed);
        let (accounts, mut stream) = busy_core(&sys, &mut rng, 40).await;
        for window in stream.chunks_mut(WINDOW_EVENTS) {
            window.shuffle(&mut rng);
        }
        let (mut delivered, mut dropped) = (Vec::new(), Vec::new());
        for item in stream {
            if rng.random_range(0..100) < DROP_PERCENT {
                dropped.push(item);
            } else {
                delivered.push(item);
            }
        }
        assert!(
            !dropped.is_empty(),
            "seed {seed}: the harness dropped nothing"
        );
        let consumer = sys.channel.history().consumer();
        let mut gaps = 0;
        for (account, seq) in &delivered {
            if *seq > sys.channel.history().last_seq(*account).await.unwrap() + 1 {
                gaps += 1;
            }
            deliver(&sys, &consumer, *account, *seq).await;
            let context = format!("seed {seed}, after event {account}/{seq}");
            let shown = assert_prefix_of_core(&sys, *account, &context).await;
            assert!(
                shown as i64 >= *seq,
                "{context}: the announced entry is not shown"
            );
        }
        assert!(gaps > 0, "seed {seed}: no event arrived ahead of a gap");
        // At-least-once delivery brings the dropped attempts back, later and in any
        // order; most are duplicates by now and change nothing.
        dropped.shuffle(&mut rng);
        for (account, seq) in &dropped {
            deliver(&sys, &consumer, *account, *seq).await;
            let context = format!("seed {seed}, after redelivered {account}/{seq}");
            assert_prefix_of_core(&sys, *account, &context).await;
        }
        for account in accounts {
            assert_eq!(
                sys.model_entries(account).await,
                sys.core_entries(account).await,
                "seed {seed}: account {account} did not converge"
            );
        }
    }
}

fn dispatcher_config(retry_attempts_max: u32) -> DispatcherConfig {
    DispatcherConfig {
        retry: RetryPolicy::fast_for_tests(retry_attempts_max),
        ..DispatcherConfig::default()
    }
}

async fn start_dispatcher(
    sys: &Sys,
    retry_attempts_max: u32,
) -> Dispatcher<channel::HistoryConsumer> {
    Dispatcher::new(
        sys.core_db.store.clone(),
        Arc::new(sys.channel.history().consumer()),
        dispatcher_config(retry_attempts_max),
        Arc::new(sys.clock.clone()),
        Wake::new(),
    )
    .await
    .unwrap()
}

/// Steps the dispatcher until it has finished every entry event of `accounts`.
/// On PostgreSQL the outbox hides rows of transactions younger than the oldest
/// running one (any test's, on the shared server), so an idle step can come
/// before the last events are visible; then it waits a moment and steps again.
async fn drain(
    sys: &Sys,
    dispatcher: &mut Dispatcher<channel::HistoryConsumer>,
    accounts: &[AccountId],
) {
    for _ in 0..1_000 {
        if dispatcher.run_once().await.unwrap() == Step::Done {
            continue;
        }
        let mut finished = true;
        for account in accounts {
            let seq = sys.core_account(*account).await.seq;
            let done = events::seq_done(&sys.core_db.store, CONSUMER_NAME, &account.to_string())
                .await
                .unwrap();
            finished &= done == seq;
        }
        if finished {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("the dispatcher did not deliver every entry event");
}

async fn the_backbone_feeds_the_read_model_end_to_end(sys: Sys) {
    let mut rng = SmallRng::seed_from_u64(11);
    let (accounts, _) = busy_core(&sys, &mut rng, 30).await;
    let mut dispatcher = start_dispatcher(&sys, 3).await;
    drain(&sys, &mut dispatcher, &accounts).await;
    for account in accounts {
        assert_eq!(
            sys.model_entries(account).await,
            sys.core_entries(account).await
        );
    }
    // Redelivery from a fresh dispatcher (as after a crash) changes nothing.
    let before = sys.model_entries(sys.bank).await;
    let mut again = start_dispatcher(&sys, 3).await;
    while again.run_once().await.unwrap() == Step::Done {}
    assert_eq!(sys.model_entries(sys.bank).await, before);
}

async fn a_failing_core_read_is_retried_with_backoff_and_then_dead_lettered(sys: Sys) {
    let alice = sys.customer(5_000).await;
    sys.faulty.fail_reads(true);
    let mut dispatcher = start_dispatcher(&sys, 3).await;
    // Two events fail: the bank's and alice's first entries. Backoff delays pass
    // on the test clock; an idle step may only mean PostgreSQL has not shown the
    // events yet (see `drain`).
    let mut letters = Vec::new();
    for _ in 0..1_000 {
        let step = dispatcher.run_once().await.unwrap();
        sys.clock.advance_ms(50);
        letters = events::dead_letter::list(
            &sys.core_db.store,
            Some(CONSUMER_NAME),
            Some(DeadLetterState::Parked),
            10,
        )
        .await
        .unwrap();
        if letters.len() == 2 {
            break;
        }
        if step == Step::Idle {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    assert_eq!(letters.len(), 2, "the failing events were parked");
    assert!(letters.iter().all(|l| l.attempts == 3), "{letters:?}");
    assert_eq!(sys.channel.history().last_seq(alice).await.unwrap(), 0);

    // The operator fixes the core and replays: the read model catches up.
    sys.faulty.fail_reads(false);
    for letter in letters {
        events::dead_letter::resolve(
            &sys.core_db.store,
            CONSUMER_NAME,
            letter.event.id,
            events::OperatorAction::Replay,
            "test",
            sys.now(),
        )
        .await
        .unwrap();
    }
    drain(&sys, &mut dispatcher, &[alice, sys.bank]).await;
    assert_eq!(
        sys.model_entries(alice).await,
        sys.core_entries(alice).await
    );
}

async fn a_read_of_an_account_with_a_transfer_in_flight_syncs_it_first(sys: Sys) {
    let (alice, bob) = (sys.customer(10_000).await, sys.customer(0).await);
    let quiet = sys.customer(700).await;
    sys.faulty.push(Fault::TimeoutAfterCommit).await;
    let transfer = sys
        .channel
        .transfers()
        .submit(new_transfer(user_id(), alice, bob, 1_500))
        .await
        .unwrap();
    assert_eq!(transfer.state, channel::TransferState::Unknown);

    // No event has been consumed, yet the user sees the transfer the core applied.
    let page = sys
        .channel
        .history()
        .history(alice, None, 10)
        .await
        .unwrap();
    assert!(page.synced && !page.stale);
    assert_eq!(page.entries, {
        let mut core = sys.core_entries(alice).await;
        core.reverse();
        core
    });
    assert_eq!(page.entries[0].debits_posted.get(), 1_500);
    let credit_side = sys.channel.history().history(bob, None, 10).await.unwrap();
    assert!(credit_side.synced);
    assert_eq!(credit_side.entries.len(), 1);

    // An account with nothing in flight is read as the model has it: no core call.
    let page = sys
        .channel
        .history()
        .history(quiet, None, 10)
        .await
        .unwrap();
    assert!(!page.synced && page.entries.is_empty());

    // With the core unreachable the read still answers, flagged stale.
    sys.faulty.fail_reads(true);
    let page = sys
        .channel
        .history()
        .history(alice, None, 10)
        .await
        .unwrap();
    assert!(page.stale && !page.synced);
    assert_eq!(page.entries.len(), 2);
}

async fn a_manual_sync_pulls_everything_beyond_the_last_seq(sys: Sys) {
    let alice = sys.customer(100_000).await;
    let bob = sys.customer(0).await;
    for amount in 1..=30 {
        sys.core_move(alice, bob, amount).await;
    }
    let history = sys.channel.history();
    let partial = history.catch_up(alice, 5).await.unwrap();
    assert_eq!(partial.last_seq_after.max(5), partial.last_seq_after);
    let report = history.sync(alice).await.unwrap();
    assert_eq!(report.last_seq_after, 31);
    assert_eq!(report.applied as i64, 31 - report.last_seq_before);
    assert_eq!(
        sys.model_entries(alice).await,
        sys.core_entries(alice).await
    );
    let again = history.sync(alice).await.unwrap();
    assert_eq!((again.applied, again.last_seq_after), (0, 31));
    let report = history.sync(bob).await.unwrap();
    assert_eq!((report.last_seq_before, report.last_seq_after), (0, 30));
}

async fn pages_are_newest_first_capped_and_cover_the_whole_history(sys: Sys) {
    let alice = sys.customer(1_000_000).await;
    let bob = sys.customer(0).await;
    for amount in 1..=120 {
        sys.core_move(alice, bob, amount).await;
    }
    let history = sys.channel.history();
    history.sync(bob).await.unwrap();
    let cap = sys.config.history_page_max;
    let first = history.history(bob, None, 10_000).await.unwrap();
    assert_eq!(first.entries.len(), cap, "the limit is capped");
    assert_eq!(first.entries[0].seq, 120);
    assert!(first.entries.windows(2).all(|w| w[0].seq == w[1].seq + 1));
    let second = history
        .history(bob, first.next_before_seq, 10_000)
        .await
        .unwrap();
    assert_eq!(second.entries.len(), 120 - cap);
    assert_eq!(second.entries.last().unwrap().seq, 1);
    assert_eq!(second.next_before_seq, None);
    let empty = history.history(bob, Some(1), 10).await.unwrap();
    assert!(empty.entries.is_empty());
}
