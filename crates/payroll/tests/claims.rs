//! Two processes on one deposit, with the interleavings forced by hand: each
//! (deposit, stage) is worked once, a process paused past its lease records
//! nothing, and the rollback race seen in production (one process told
//! `already_settled` undid the deposit in the ledger, then its transaction
//! aborted while the other's committed) cannot strand a deposit.

mod common;

use bank::DepositId;
use bank::providers::ProviderName;
use common::*;
use events::{Consumer, Deferred, Event};
use money::Timestamp;
use payroll::state::KIND_DETECTED;
use payroll::{DepositState, Payroll, Stage, StageConsumer, books};

/// The first `payroll.deposit_detected` event of user 0.
fn first_detected(system: &System) -> Event {
    let key = payroll::user_key(&system.users[0].0.to_string());
    Event {
        id: money::EventId::from_uuid(events::event_id(KIND_DETECTED, &key, 1)).unwrap(),
        kind: KIND_DETECTED.to_owned(),
        key,
        seq: 1,
        created_at: Timestamp::from_unix_ms(0),
    }
}

fn compute(payroll: &Payroll) -> StageConsumer {
    StageConsumer::new(Stage::Compute, payroll.clone())
}

fn is_deferred(error: &events::HandleError) -> bool {
    error.downcast_ref::<Deferred>().is_some()
}

/// Which of the deposit's ledger transfers exist, by purpose.
async fn transfers(system: &System, deposit: &str) -> Vec<&'static str> {
    let purposes = [
        "deposit",
        "repay",
        "suspend",
        "payout",
        "undo-deposit",
        "undo-repay",
        "undo-suspend",
    ];
    let ids: Vec<_> = purposes
        .iter()
        .map(|p| books::transfer_id(&money::DerivedIds::for_tests(), deposit, p).unwrap())
        .collect();
    let found = system.ledger.lookup_transfers(&ids).await.unwrap();
    purposes
        .iter()
        .zip(&ids)
        .filter(|(_, id)| found.iter().any(|t| t.id == **id))
        .map(|(p, _)| *p)
        .collect()
}

/// A deposit with an undo in the ledger is rolled back, and one rolled back has
/// every applied transfer undone: nothing is stranded between the two.
async fn assert_not_stranded(system: &System, deposit: &str) {
    let state = system.payroll.deposit(deposit).await.unwrap().state;
    let applied = transfers(system, deposit).await;
    let undone = applied.iter().any(|p| p.starts_with("undo-"));
    assert_eq!(
        undone,
        state == DepositState::RolledBack,
        "{deposit} is {state:?} with {applied:?}"
    );
}

async fn one_salary(backend: Backend, lease_ms: i64) -> Option<(System, String)> {
    let mut options = Options::new(backend);
    options.configure = Box::new(move |config| config.claim_lease_ms = lease_ms);
    let mut system = System::start(options).await?;
    system.enrol(1, 0, 10).await;
    let deposit = system.pay_salary(0, 1_000_000).await;
    system.poller.run_round().await.unwrap();
    Some((system, deposit))
}

async fn a_second_process_skips_a_stage_the_first_holds(backend: Backend) {
    let Some((mut system, deposit)) = one_salary(backend, 30_000).await else {
        return;
    };
    let (b_store, b) = system.second_process(|_| {}).await;
    let event = first_detected(&system);
    let (a_compute, b_compute) = (compute(&system.payroll), compute(&b));

    a_compute.prepare(&event).await.unwrap();
    let refused = b_compute.prepare(&event).await.unwrap_err();
    assert!(is_deferred(&refused), "deferred, not failed: {refused}");

    let mut tx = system.db.store.begin().await.unwrap();
    a_compute.handle(&event, &mut tx).await.unwrap();
    tx.commit().await.unwrap();
    // B comes back later: nothing left to do, nothing done.
    b_compute.prepare(&event).await.unwrap();
    let mut tx = b_store.begin().await.unwrap();
    b_compute.handle(&event, &mut tx).await.unwrap();
    tx.commit().await.unwrap();

    let view = system.payroll.deposit(&deposit).await.unwrap();
    assert_eq!(view.state, DepositState::Computed);
    let detail = system.payroll.detail(&deposit).await.unwrap();
    let claim = detail.claims.iter().find(|c| c.stage == "compute").unwrap();
    assert_eq!(
        (claim.token, claim.expires_at_ms),
        (1, 0),
        "taken once, released"
    );
    system.settle().await;
    assert_eq!(
        system.payroll.deposit(&deposit).await.unwrap().state,
        DepositState::Completed
    );
    assert_eq!(
        system.payroll.stage_log().await.unwrap().len(),
        5,
        "each stage ran once to effect"
    );
    assert_not_stranded(&system, &deposit).await;
    system.assert_books().await;
    b_store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_is_deferred_while_the_first_holds_a_stage_and_then_finds_it_done_on_sqlite()
 {
    a_second_process_skips_a_stage_the_first_holds(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_is_deferred_while_the_first_holds_a_stage_and_then_finds_it_done_on_postgres()
 {
    a_second_process_skips_a_stage_the_first_holds(Backend::Postgres).await;
}

async fn a_paused_process_records_nothing(backend: Backend) {
    let Some((mut system, deposit)) = one_salary(backend, 100).await else {
        return;
    };
    let (b_store, b) = system.second_process(|_| {}).await;
    let event = first_detected(&system);
    let (a_compute, b_compute) = (compute(&system.payroll), compute(&b));

    // A prepares, then pauses past its lease; B takes the stage over.
    a_compute.prepare(&event).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    b_compute.prepare(&event).await.unwrap();

    // A wakes up before B records: its token is stale, it records nothing.
    let mut tx = system.db.store.begin().await.unwrap();
    let refused = a_compute.handle(&event, &mut tx).await.unwrap_err();
    assert!(is_deferred(&refused), "{refused}");
    tx.rollback().await.unwrap();
    assert_eq!(
        system.payroll.deposit(&deposit).await.unwrap().state,
        DepositState::Detected
    );
    let mut tx = b_store.begin().await.unwrap();
    b_compute.handle(&event, &mut tx).await.unwrap();
    tx.commit().await.unwrap();
    // A's next try finds the stage done and passes.
    a_compute.prepare(&event).await.unwrap();
    let mut tx = system.db.store.begin().await.unwrap();
    a_compute.handle(&event, &mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(system.payroll.stage_log().await.unwrap().len(), 1);
    let detail = system.payroll.detail(&deposit).await.unwrap();
    let claim = detail.claims.iter().find(|c| c.stage == "compute").unwrap();
    assert_eq!(claim.token, 2, "the takeover moved the fencing token");
    assert_eq!(detail.deposit.state, DepositState::Computed);

    system.settle().await;
    assert_eq!(
        system.payroll.deposit(&deposit).await.unwrap().state,
        DepositState::Completed
    );
    assert_not_stranded(&system, &deposit).await;
    system.assert_books().await;
    b_store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_paused_past_its_lease_records_nothing_after_another_took_the_stage_over_on_sqlite()
 {
    a_paused_process_records_nothing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_paused_past_its_lease_records_nothing_after_another_took_the_stage_over_on_postgres()
 {
    a_paused_process_records_nothing(Backend::Postgres).await;
}

/// The production race, forced: A and B both prepared compute (A's lease ran
/// out); A is told `already_settled` by the guard B's transaction holds and
/// decides to roll back, and A's transaction aborts while B's commits. Before the
/// fix A had already applied `undo-deposit`; now the decision and the
/// compensation are apart, so the abort leaves no trace.
async fn the_rollback_race_strands_nothing(backend: Backend) {
    let Some((mut system, deposit)) = one_salary(backend, 100).await else {
        return;
    };
    let (b_store, b) = system.second_process(|_| {}).await;
    let event = first_detected(&system);
    let (a_compute, b_compute) = (compute(&system.payroll), compute(&b));
    a_compute.prepare(&event).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    b_compute.prepare(&event).await.unwrap();

    // The guard would answer A `already_settled`: another provider started the deposit
    // (what B's commit looked like to A's transaction).
    let provider = system.payroll.deposit(&deposit).await.unwrap().provider;
    assert_eq!(provider, None);
    let mut tx = b_store.begin().await.unwrap();
    b_compute.handle(&event, &mut tx).await.unwrap();
    // A handles in its own transaction while B's is still open: it waits on the
    // claim row B's transaction holds, and finds its token stale once B commits.
    let a_store = system.db.store.clone();
    let a_event = event.clone();
    let a_side = tokio::spawn(async move {
        let mut a_tx = a_store.begin().await.unwrap();
        let answer = a_compute.handle(&a_event, &mut a_tx).await;
        a_tx.rollback().await.unwrap();
        answer.map_err(|e| (is_deferred(&e), e.to_string()))
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tx.commit().await.unwrap();
    let refused = a_side.await.unwrap().unwrap_err();
    assert!(refused.0, "{}", refused.1);
    assert_eq!(transfers(&system, &deposit).await, vec!["deposit"]);
    assert_not_stranded(&system, &deposit).await;

    system.settle().await;
    assert_eq!(
        system.payroll.deposit(&deposit).await.unwrap().state,
        DepositState::Completed
    );
    assert_not_stranded(&system, &deposit).await;
    system.assert_books().await;
    b_store.close().await;
}

/// A real `already_settled` (another provider holds the guard): the decision to
/// roll back commits in the stage's transaction and the compensation follows as
/// its own step. A decision whose transaction aborts has undone nothing.
async fn an_aborted_rollback_decision_undoes_nothing(backend: Backend) {
    let Some((mut system, deposit)) = one_salary(backend, 30_000).await else {
        return;
    };
    system
        .routing
        .start_settlement(&DepositId::new(&deposit).unwrap(), ProviderName::Next)
        .await
        .unwrap();
    // Make the user's provider the other one, so compute meets the guard.
    let user = system.users[0].0;
    system
        .routing
        .set_override(user, Some(ProviderName::Legacy), "test")
        .await
        .unwrap();
    let event = first_detected(&system);
    let a_compute = compute(&system.payroll);
    a_compute.prepare(&event).await.unwrap();
    assert_eq!(transfers(&system, &deposit).await, vec!["deposit"]);
    let mut tx = system.db.store.begin().await.unwrap();
    a_compute.handle(&event, &mut tx).await.unwrap();
    tx.rollback().await.unwrap(); // the transaction aborts after the decision
    assert_eq!(
        transfers(&system, &deposit).await,
        vec!["deposit"],
        "no undo before the decision commits"
    );
    assert_eq!(
        system.payroll.deposit(&deposit).await.unwrap().state,
        DepositState::Detected
    );
    assert_not_stranded(&system, &deposit).await;

    system.settle().await;
    let view = system.payroll.deposit(&deposit).await.unwrap();
    assert_eq!(view.state, DepositState::RolledBack);
    assert_eq!(
        transfers(&system, &deposit).await,
        vec!["deposit", "undo-deposit"]
    );
    assert_not_stranded(&system, &deposit).await;
    let alerts = system.payroll.alerts().await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].reason, "already_settled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollback_race_of_two_processes_on_one_deposit_cannot_strand_it_on_postgres() {
    the_rollback_race_strands_nothing(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_decision_whose_transaction_aborts_has_undone_nothing_in_the_ledger_on_sqlite() {
    an_aborted_rollback_decision_undoes_nothing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_decision_whose_transaction_aborts_has_undone_nothing_in_the_ledger_on_postgres()
{
    an_aborted_rollback_decision_undoes_nothing(Backend::Postgres).await;
}
