//! The transfer service and the reconciler, as specifications: persist before send,
//! one transfer in flight per user, and unknown outcomes settled by asking the core.

mod common;

use std::sync::Arc;

use channel::faults::Fault;
use channel::{ChannelError, CoreClient, CoreError, TransferState};
use common::{Sys, new_transfer, user_id};
use ledger::{TransferOutcome, TransferRequest, TransferResult};
use money::{AccountId, TransferId};

on_both_backends!(
    a_transfer_is_stored_sent_and_succeeds_with_money_moved_once,
    a_core_refusal_fails_the_transfer_and_moves_nothing,
    a_retry_with_the_same_id_returns_the_stored_transfer_and_a_reused_id_is_refused,
    a_crash_right_after_the_core_committed_is_reconciled_to_succeeded_after_restart,
    a_request_that_reaches_the_core_after_the_late_window_is_failed_and_leaves_no_trace,
    a_late_rejection_seen_first_by_the_core_is_what_the_reconciler_records,
    a_second_transfer_of_a_user_with_one_unknown_is_refused_until_reconciled,
    the_in_flight_rule_holds_across_channel_processes,
    the_request_is_stored_and_marked_sent_before_the_core_sees_it,
    a_core_slower_than_the_call_timeout_leaves_unknown_and_the_reconciler_finds_it_applied,
    racing_transfers_of_one_user_from_two_processes_let_exactly_one_through,
    one_transfer_submitted_by_two_processes_at_once_reaches_the_core_once,
    the_periodic_reconciler_settles_unknowns_until_shut_down,
    a_reconciler_with_a_shorter_late_window_than_the_core_refuses_to_run,
);

async fn the_periodic_reconciler_settles_unknowns_until_shut_down(sys: Sys) {
    let (alice, bob) = (sys.customer(10_000).await, sys.customer(0).await);
    sys.faulty.push(Fault::TimeoutAfterCommit).await;
    let new = new_transfer(user_id(), alice, bob, 300);
    sys.channel.transfers().submit(new).await.unwrap();
    let shutdown = events::Shutdown::default();
    let reconciler = sys.channel.reconciler().clone();
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { reconciler.run(shutdown.wait()).await }
    });
    // `run` is the production loop; its first step happens at once.
    let mut state = TransferState::Unknown;
    for _ in 0..200 {
        state = sys
            .channel
            .transfers()
            .get(new.id())
            .await
            .unwrap()
            .unwrap()
            .state;
        if state != TransferState::Unknown {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(state, TransferState::Succeeded);
    shutdown.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(5), running)
        .await
        .expect("the reconciler stops on shutdown")
        .unwrap();
}

async fn a_reconciler_with_a_shorter_late_window_than_the_core_refuses_to_run(sys: Sys) {
    let hasty = sys
        .another_process_with(
            sys.faulty.clone(),
            channel::ChannelConfig {
                late_window_ms: 30_000,
                ..sys.config.clone()
            },
        )
        .await;
    let refused = hasty.reconciler().check_core().await.unwrap_err();
    assert_eq!(refused.code(), "channel_config_invalid");
    // `run` returns at once instead of giving up on transfers too early.
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        hasty.reconciler().run(std::future::pending::<()>()),
    )
    .await
    .expect("run refuses to start");
}

async fn racing_transfers_of_one_user_from_two_processes_let_exactly_one_through(sys: Sys) {
    const RACERS: usize = 8;
    let (alice, bob) = (sys.customer(10_000).await, sys.customer(0).await);
    let user = user_id();
    for _ in 0..RACERS {
        // Whoever wins stays in flight: its core call times out.
        sys.faulty.push(Fault::TimeoutBeforeCommit).await;
    }
    let other = sys.another_process(sys.faulty.clone()).await;
    let mut racers = tokio::task::JoinSet::new();
    for index in 0..RACERS {
        let service = if index % 2 == 0 {
            sys.channel.transfers().clone()
        } else {
            other.transfers().clone()
        };
        let new = new_transfer(user, alice, bob, 100);
        racers.spawn(async move { service.submit(new).await });
    }
    let mut accepted = 0;
    let mut refused = 0;
    while let Some(joined) = racers.join_next().await {
        match joined.unwrap() {
            Ok(transfer) => {
                assert_eq!(transfer.state, TransferState::Unknown);
                accepted += 1;
            }
            Err(error) => {
                assert_eq!(error.code(), "transfer_in_progress", "{error}");
                refused += 1;
            }
        }
    }
    assert_eq!((accepted, refused), (1, RACERS - 1));
}

/// A core that counts the transfer calls it gets and answers each after a pause,
/// so submissions racing on one id overlap.
struct Counting {
    inner: Arc<dyn CoreClient>,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl CoreClient for Counting {
    async fn transfer(&self, request: TransferRequest) -> Result<TransferResult, CoreError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        self.inner.transfer(request).await
    }
    async fn outcome(&self, id: TransferId) -> Result<TransferOutcome, CoreError> {
        self.inner.outcome(id).await
    }
    async fn entries(
        &self,
        account: AccountId,
        from_seq: i64,
        limit: usize,
    ) -> Result<Vec<ledger::Entry>, CoreError> {
        self.inner.entries(account, from_seq, limit).await
    }
    async fn account(&self, id: AccountId) -> Result<Option<ledger::Account>, CoreError> {
        self.inner.account(id).await
    }
    async fn late_window_ms(&self) -> Result<i64, CoreError> {
        self.inner.late_window_ms().await
    }
}

/// The channel's send is claimed by its compare-and-set from `requested` to
/// `sent`: of two processes given the same transfer (a client retrying against
/// another instance), one moves it and calls the core; the other finds it
/// stored and never sends. A sent transfer is never sent again by anyone — the
/// reconciler only asks — so the claim needs no lease to hand over.
async fn one_transfer_submitted_by_two_processes_at_once_reaches_the_core_once(sys: Sys) {
    const RACERS: usize = 8;
    let (alice, bob) = (sys.customer(10_000).await, sys.customer(0).await);
    let core = Arc::new(Counting {
        inner: sys.faulty.clone(),
        calls: Default::default(),
    });
    let (first, second) = (
        sys.another_process(core.clone()).await,
        sys.another_process(core.clone()).await,
    );
    let new = new_transfer(user_id(), alice, bob, 300);
    let mut racers = tokio::task::JoinSet::new();
    for index in 0..RACERS {
        let service = if index % 2 == 0 { &first } else { &second }
            .transfers()
            .clone();
        racers.spawn(async move { service.submit(new).await });
    }
    while let Some(joined) = racers.join_next().await {
        let transfer = joined.unwrap().unwrap();
        assert_eq!(transfer.id, new.id());
    }
    assert_eq!(core.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    let stored = first.transfers().get(new.id()).await.unwrap().unwrap();
    assert_eq!(stored.state, TransferState::Succeeded);
    assert_eq!(sys.core_entries(bob).await.len(), 1, "money moved once");
}

async fn a_core_slower_than_the_call_timeout_leaves_unknown_and_the_reconciler_finds_it_applied(
    sys: Sys,
) {
    let (alice, bob) = (sys.customer(10_000).await, sys.customer(0).await);
    let impatient = sys
        .another_process_with(
            sys.faulty.clone(),
            channel::ChannelConfig {
                core_call_timeout_ms: 20,
                ..sys.config.clone()
            },
        )
        .await;
    sys.faulty.push(Fault::Delay { delay_ms: 150 }).await;
    let new = new_transfer(user_id(), alice, bob, 900);
    let transfer = impatient.transfers().submit(new).await.unwrap();
    assert_eq!(transfer.state, TransferState::Unknown);
    assert_eq!(transfer.result_code.as_deref(), Some("core_timeout"));
    // The request is still on its way; the core applies it when it lands (this
    // waits on the simulated network, not on background work).
    for _ in 0..200 {
        if sys.ledger.outcome(new.id()).await.unwrap() != TransferOutcome::NotFound {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let report = impatient.reconciler().run_once().await.unwrap();
    assert_eq!(report.succeeded, 1, "{report:?}");
    assert_eq!(sys.core_entries(bob).await.len(), 1);
}

/// A core that, when a transfer reaches it, looks the transfer up in the channel's
/// store first (through another channel process) and remembers what it saw.
struct Probe {
    inner: Arc<dyn CoreClient>,
    seen: tokio::sync::Mutex<Vec<Option<TransferState>>>,
    channel: tokio::sync::OnceCell<channel::Channel>,
}

#[async_trait::async_trait]
impl CoreClient for Probe {
    async fn transfer(&self, request: TransferRequest) -> Result<TransferResult, CoreError> {
        let lookup = self
            .channel
            .get()
            .unwrap()
            .transfers()
            .get(request.id())
            .await;
        self.seen
            .lock()
            .await
            .push(lookup.unwrap().map(|t| t.state));
        self.inner.transfer(request).await
    }
    async fn outcome(&self, id: TransferId) -> Result<TransferOutcome, CoreError> {
        self.inner.outcome(id).await
    }
    async fn entries(
        &self,
        account: AccountId,
        from_seq: i64,
        limit: usize,
    ) -> Result<Vec<ledger::Entry>, CoreError> {
        self.inner.entries(account, from_seq, limit).await
    }
    async fn account(&self, id: AccountId) -> Result<Option<ledger::Account>, CoreError> {
        self.inner.account(id).await
    }
    async fn late_window_ms(&self) -> Result<i64, CoreError> {
        self.inner.late_window_ms().await
    }
}

async fn the_request_is_stored_and_marked_sent_before_the_core_sees_it(sys: Sys) {
    let (alice, bob) = (sys.customer(10_000).await, sys.customer(0).await);
    let probe = Arc::new(Probe {
        inner: sys.faulty.clone(),
        seen: Default::default(),
        channel: Default::default(),
    });
    let reader = sys.another_process(sys.faulty.clone()).await;
    let _ = probe.channel.set(reader);
    let service = sys.another_process(probe.clone()).await;
    let done = service
        .transfers()
        .submit(new_transfer(user_id(), alice, bob, 700))
        .await
        .unwrap();
    assert_eq!(done.state, TransferState::Succeeded);
    assert_eq!(*probe.seen.lock().await, vec![Some(TransferState::Sent)]);
}

async fn a_transfer_is_stored_sent_and_succeeds_with_money_moved_once(sys: Sys) {
    let (alice, bob) = (sys.customer(10_000).await, sys.customer(0).await);
    let transfer = sys
        .channel
        .transfers()
        .submit(new_transfer(user_id(), alice, bob, 3_000))
        .await
        .unwrap();
    assert_eq!(transfer.state, TransferState::Succeeded);
    assert_eq!(transfer.result_code.as_deref(), Some("ok"));
    assert_eq!(transfer.requested_at, sys.now());
    let stored = sys
        .channel
        .transfers()
        .get(transfer.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, TransferState::Succeeded);
    assert_eq!(
        sys.core_account(alice)
            .await
            .credit_balance()
            .unwrap()
            .get(),
        7_000
    );
    assert_eq!(
        sys.core_account(bob).await.credit_balance().unwrap().get(),
        3_000
    );
    assert_eq!(sys.core_entries(bob).await.len(), 1);
}

async fn a_core_refusal_fails_the_transfer_and_moves_nothing(sys: Sys) {
    let (alice, bob) = (sys.customer(1_000).await, sys.customer(0).await);
    let transfer = sys
        .channel
        .transfers()
        .submit(new_transfer(user_id(), alice, bob, 5_000))
        .await
        .unwrap();
    assert_eq!(transfer.state, TransferState::Failed);
    assert_eq!(transfer.result_code.as_deref(), Some("exceeds_credits"));
    assert_eq!(
        sys.core_account(alice)
            .await
            .credit_balance()
            .unwrap()
            .get(),
        1_000
    );
    assert!(sys.core_entries(bob).await.is_empty());
}

async fn a_retry_with_the_same_id_returns_the_stored_transfer_and_a_reused_id_is_refused(sys: Sys) {
    let (alice, bob) = (sys.customer(10_000).await, sys.customer(0).await);
    let user = user_id();
    let new = new_transfer(user, alice, bob, 1_000);
    let first = sys.channel.transfers().submit(new).await.unwrap();
    let again = sys.channel.transfers().submit(new).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(
        sys.core_entries(bob).await.len(),
        1,
        "the retry was not sent"
    );
    let reused =
        channel::NewTransfer::new(new.id(), user, alice, bob, money::Krw::new(2_000)).unwrap();
    let error = sys.channel.transfers().submit(reused).await.unwrap_err();
    assert_eq!(error.code(), "transfer_id_taken");
}

async fn a_crash_right_after_the_core_committed_is_reconciled_to_succeeded_after_restart(sys: Sys) {
    let (alice, bob) = (sys.customer(10_000).await, sys.customer(0).await);
    sys.faulty.push(Fault::HangAfterCommit).await;
    let new = new_transfer(user_id(), alice, bob, 2_500);
    {
        let service = sys.channel.transfers().clone();
        let submit = service.submit(new);
        // The process "dies" the moment the core has committed: the submit future
        // is dropped before the channel can record the answer.
        tokio::select! {
            _ = submit => panic!("the hung call must not return"),
            _ = sys.faulty.committed() => {}
        }
    }
    let stored = sys
        .channel
        .transfers()
        .get(new.id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.state,
        TransferState::Sent,
        "stored before the core was called"
    );

    // A new process on the same stores. A fresh `sent` row is still the live
    // caller's; once stale it is the reconciler's.
    let restarted = sys.another_process(sys.faulty.clone()).await;
    let early = restarted.reconciler().run_once().await.unwrap();
    assert_eq!(early.examined, 0);
    sys.clock.advance_ms(sys.config.stale_after_ms + 1);
    let report = restarted.reconciler().run_once().await.unwrap();
    assert_eq!((report.examined, report.succeeded), (1, 1), "{report:?}");
    let settled = restarted.transfers().get(new.id()).await.unwrap().unwrap();
    assert_eq!(settled.state, TransferState::Succeeded);
    assert_eq!(
        sys.core_account(alice)
            .await
            .credit_balance()
            .unwrap()
            .get(),
        7_500
    );
    assert_eq!(
        sys.core_account(bob).await.credit_balance().unwrap().get(),
        2_500
    );
    assert_eq!(sys.core_entries(bob).await.len(), 1, "money moved once");
    let again = restarted.reconciler().run_once().await.unwrap();
    assert_eq!(again.examined, 0);
}

async fn a_request_that_reaches_the_core_after_the_late_window_is_failed_and_leaves_no_trace(
    sys: Sys,
) {
    let (alice, bob) = (sys.customer(10_000).await, sys.customer(0).await);
    sys.faulty.push(Fault::Straggle).await;
    let new = new_transfer(user_id(), alice, bob, 4_000);
    let transfer = sys.channel.transfers().submit(new).await.unwrap();
    assert_eq!(transfer.state, TransferState::Unknown);

    // Not found, but the core could still receive it: left alone.
    sys.clock.advance_ms(30_000);
    let report = sys.channel.reconciler().run_once().await.unwrap();
    assert_eq!(
        (report.examined, report.left_in_flight),
        (1, 1),
        "{report:?}"
    );
    sys.clock
        .advance_ms(sys.config.late_window_ms + sys.config.late_margin_ms - 30_000);
    let report = sys.channel.reconciler().run_once().await.unwrap();
    assert_eq!(report.left_in_flight, 1, "still inside window + margin");

    sys.clock.advance_ms(1);
    let report = sys.channel.reconciler().run_once().await.unwrap();
    assert_eq!((report.examined, report.failed), (1, 1), "{report:?}");
    let failed = sys
        .channel
        .transfers()
        .get(new.id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.state, TransferState::Failed);
    assert_eq!(
        failed.result_code.as_deref(),
        Some("not_found_after_late_window")
    );

    // The straggler finally arrives: the core refuses it as late.
    let answers = sys.faulty.release_stragglers().await;
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].1.as_ref().unwrap(), &TransferResult::Late);
    assert_eq!(
        sys.ledger.outcome(new.id()).await.unwrap(),
        TransferOutcome::Failed {
            result: TransferResult::Late
        }
    );
    assert!(
        sys.ledger
            .lookup_transfers(&[new.id()])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        sys.core_account(alice)
            .await
            .credit_balance()
            .unwrap()
            .get(),
        10_000
    );
    assert!(
        sys.core_entries(bob).await.is_empty(),
        "no trace in the core's books"
    );
    assert_eq!(
        sys.core_entries(alice).await.len(),
        1,
        "only the funding entry"
    );
}

async fn a_late_rejection_seen_first_by_the_core_is_what_the_reconciler_records(sys: Sys) {
    let (alice, bob) = (sys.customer(10_000).await, sys.customer(0).await);
    sys.faulty.push(Fault::Straggle).await;
    let new = new_transfer(user_id(), alice, bob, 4_000);
    sys.channel.transfers().submit(new).await.unwrap();
    sys.clock.advance_ms(sys.config.late_window_ms + 1);
    let answers = sys.faulty.release_stragglers().await;
    assert_eq!(answers[0].1.as_ref().unwrap(), &TransferResult::Late);
    let report = sys.channel.reconciler().run_once().await.unwrap();
    assert_eq!(report.failed, 1, "{report:?}");
    let failed = sys
        .channel
        .transfers()
        .get(new.id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.result_code.as_deref(), Some("late"));
    assert!(sys.core_entries(bob).await.is_empty());
}

async fn a_second_transfer_of_a_user_with_one_unknown_is_refused_until_reconciled(sys: Sys) {
    let (alice, bob) = (sys.customer(10_000).await, sys.customer(0).await);
    let user = user_id();
    sys.faulty.push(Fault::TimeoutAfterCommit).await;
    let first_request = new_transfer(user, alice, bob, 1_000);
    let first = sys.channel.transfers().submit(first_request).await.unwrap();
    assert_eq!(first.state, TransferState::Unknown);
    let retried = sys.channel.transfers().submit(first_request).await.unwrap();
    assert_eq!(
        retried, first,
        "a retry of the in-flight transfer is not a second one"
    );

    let second = new_transfer(user, alice, bob, 2_000);
    let refused = sys.channel.transfers().submit(second).await.unwrap_err();
    assert!(matches!(refused, ChannelError::TransferInProgress { user: u } if u == user));
    assert_eq!(refused.code(), "transfer_in_progress");
    assert!(
        sys.channel
            .transfers()
            .get(second.id())
            .await
            .unwrap()
            .is_none()
    );
    // Another user is not held back.
    let other = sys
        .channel
        .transfers()
        .submit(new_transfer(user_id(), alice, bob, 10))
        .await
        .unwrap();
    assert_eq!(other.state, TransferState::Succeeded);

    // An unknown transfer is the reconciler's at once.
    let report = sys.channel.reconciler().run_once().await.unwrap();
    assert_eq!(report.succeeded, 1, "{report:?}");
    let accepted = sys.channel.transfers().submit(second).await.unwrap();
    assert_eq!(accepted.state, TransferState::Succeeded);
    assert_eq!(
        sys.core_account(bob).await.credit_balance().unwrap().get(),
        3_010
    );
}

async fn the_in_flight_rule_holds_across_channel_processes(sys: Sys) {
    let (alice, bob) = (sys.customer(10_000).await, sys.customer(0).await);
    let user = user_id();
    sys.faulty.push(Fault::TimeoutBeforeCommit).await;
    let first = sys
        .channel
        .transfers()
        .submit(new_transfer(user, alice, bob, 1_000))
        .await
        .unwrap();
    assert_eq!(first.state, TransferState::Unknown);
    let other_process = sys.another_process(sys.faulty.clone()).await;
    let refused = other_process
        .transfers()
        .submit(new_transfer(user, alice, bob, 500))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "transfer_in_progress");

    // The core never saw the first one: after the window it is failed, and the
    // user may go again.
    sys.clock
        .advance_ms(sys.config.late_window_ms + sys.config.late_margin_ms + 1);
    let report = other_process.reconciler().run_once().await.unwrap();
    assert_eq!(report.failed, 1, "{report:?}");
    let accepted = other_process
        .transfers()
        .submit(new_transfer(user, alice, bob, 500))
        .await
        .unwrap();
    assert_eq!(accepted.state, TransferState::Succeeded);
    assert_eq!(
        sys.core_account(bob).await.credit_balance().unwrap().get(),
        500
    );
}
