//! The demo's salary phase, and the dead letter it produces on purpose.
//!
//! A month of salaries: `users` users are enrolled (a virtual account each from
//! their provider, all on "legacy" at first); half of them are paid, polled and
//! settled through the staged pipeline (compute → repay → suspend → payout →
//! complete); then half the users migrate to "next" by cohort, and the other half
//! are paid and settled. One user's payout account is frozen at the bank: the
//! deposit stops at payout and raises an alert for the ops webhook — which is
//! down, so the alert event fails past the consumer's max attempts and is
//! dead-lettered. The webhook comes back, an operator replays the letter, the
//! alert arrives; the account is unfrozen, the operator retries, and the deposit
//! completes. Every number in the report is read back from payroll's tables, the
//! ledger and the bank's statement.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bank::providers::{Facade, ProviderName};
use bank::routing::{RoutingTable, SettlementStart};
use bank::{AccountNumber, DepositId, HolderName, Transport as BankTransport, TransportConfig};
use events::{DeadLetterState, OperatorAction};
use futures_util::{StreamExt, TryStreamExt};
use ledger::Ledger;
use money::{AccountId, Clock, Krw};
use payroll::{DepositState, NewUser, Payroll, PayrollConfig, Stage};
use tokio::net::TcpListener;

use super::demo_bank::DemoBank;
use super::demo_events::{Backbone, Transport, quick_retry, wait_until};
use super::demo_report::{Check, Part, Reconciliation};
use crate::progress;
use crate::scratch::ScratchDb;

/// settle's operating account that pays salaries out (distinct from the fee
/// settlement account, so each part's statement is its own).
const OPERATING: &str = "1002000000101";
const OPERATING_HOLDER: &str = "세틀주식회사";
const OPERATING_BALANCE_KRW: i64 = 100_000_000_000;
/// The user whose payout account the bank freezes.
const FROZEN_USER: usize = 1;
/// Failed deliveries after which the alert event is dead-lettered.
const ALERT_ATTEMPTS_MAX: u32 = 3;
/// Bank set-up calls (enrolment, salaries) in flight at once.
const SETUP_CONCURRENT_MAX: usize = 32;
/// Users enrolled per `enrol_many` call (one progress step).
const ENROL_BATCH_MAX: usize = 500;
/// Webhook bodies the receiver keeps at most.
const WEBHOOK_BODIES_MAX: usize = 1_000;
/// The longest the demo waits for the pipeline to settle one wave.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(600);
const ACTOR: &str = "ops:demo";

pub struct PayrollParams<'a> {
    pub database_url: Option<&'a str>,
    pub transport: &'a Transport,
    pub users: usize,
    pub payout_chunk_max_krw: i64,
    pub seed: u64,
}

pub struct PayrollOutcome {
    pub parts: Vec<(Part, Vec<Check>)>,
    pub reconciliation: Vec<Reconciliation>,
    /// Kept open for `--serve`.
    pub live: PayrollLive,
}

/// Payroll's handles and store; its store also holds the dead letters.
pub struct PayrollLive {
    pub payroll: Payroll,
    pub routing: RoutingTable,
    pub db: ScratchDb,
    /// Alerts of `--serve` go on to the demo's receiver.
    hook: Webhook,
}

impl PayrollLive {
    pub async fn close(self) -> anyhow::Result<()> {
        self.hook.stop().await;
        drop(self.payroll);
        drop(self.routing);
        self.db.finish(false).await
    }
}

pub async fn run(
    params: PayrollParams<'_>,
    ledger: &Ledger,
    bank: &DemoBank,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<PayrollOutcome> {
    anyhow::ensure!(
        params.users >= 4,
        "the payroll phase needs at least 4 users"
    );
    let phase = Instant::now();
    let db = ScratchDb::create(params.database_url, "demo_payroll").await?;
    let hook = Webhook::start().await?;
    let operating = AccountNumber::new(OPERATING)?;
    let operating_holder = HolderName::new(OPERATING_HOLDER)?;
    bank.open_account(
        &operating,
        &operating_holder,
        Krw::new(OPERATING_BALANCE_KRW),
    )
    .await
    .context("opening the payroll operating account")?;

    let mut transport = TransportConfig::new(&bank.base_url);
    // The poller throttles itself; the transport must not throttle below it.
    transport.requests_per_s_max = None;
    transport.concurrent_max = Some(64);
    transport.extra_ca = bank.ca.clone();
    let transport = BankTransport::new(transport)?;
    let routing = RoutingTable::open(db.store.clone(), clock.clone()).await?;
    let facade = Facade::connect(routing.clone(), &transport);
    let mut config = PayrollConfig::new(
        operating.clone(),
        operating_holder,
        money::DerivedIds::for_tests(),
    );
    config.payout_chunk_max_krw = Krw::new(params.payout_chunk_max_krw);
    config.poll_requests_per_s_max = 2_000;
    config.poll_concurrent_max = 32;
    config.webhook_url = Some(hook.url.clone());
    let payroll = Payroll::open(
        db.store.clone(),
        ledger.clone(),
        facade,
        clock.clone(),
        config,
    )
    .await?;

    // Enrolment: a payout account at the bank and a virtual account from the
    // provider for every user.
    let step = Instant::now();
    let users = enrol(&payroll, bank, params.users, params.seed).await?;
    let enrol_ms = step.elapsed().as_millis();
    for (index, user) in users.iter().enumerate() {
        if index % 4 == 0 {
            let due = 200_000 + (index as i64 % 7) * 10_000;
            bank.set_repayment_due(&user.virtual_account, Krw::new(due))
                .await?;
        }
    }
    bank.set_frozen(&users[FROZEN_USER].payout_account, true)
        .await?;

    let mut backbone =
        Backbone::start(params.transport, &db.store, clock.clone(), "payroll").await?;
    for consumer in payroll.stage_consumers() {
        backbone.spawn(Arc::new(consumer), quick_retry(20)).await?;
    }
    backbone
        .spawn(
            Arc::new(payroll.alert_consumer()),
            quick_retry(ALERT_ATTEMPTS_MAX),
        )
        .await?;
    let poller = payroll::poller::Poller::new(payroll.clone())?;

    // The first half of the month, all on "legacy".
    let step = Instant::now();
    let half = users.len() / 2;
    let mut paid = pay_salaries(bank, &users[..half], "salaries (first half)").await?;
    let first_wave: Vec<String> = paid.iter().map(|d| d.clone().0).collect();
    poll(&poller, users.len(), "polling (first half)").await?;
    settle(&payroll, paid.len(), "settling (first half)").await?;

    let first_half_ms = step.elapsed().as_millis();
    // Half of all users move to "next"; the second half of the month arrives.
    let step = Instant::now();
    routing.set_cohort_percent(50, ACTOR).await?;
    paid.extend(pay_salaries(bank, &users[half..], "salaries (second half)").await?);
    poll(&poller, users.len(), "polling (second half)").await?;
    settle(&payroll, paid.len(), "settling (second half)").await?;
    let second_half_ms = step.elapsed().as_millis();
    let frozen = paid
        .get(FROZEN_USER)
        .map(|d| d.0.clone())
        .context("the frozen user's salary")?;
    wait_until(
        "the undeliverable alert is dead-lettered",
        SETTLE_TIMEOUT,
        || async {
            Ok(!events::dead_letter::list(
                &db.store,
                Some("payroll.alerts"),
                Some(DeadLetterState::Parked),
                1,
            )
            .await?
            .is_empty())
        },
    )
    .await?;
    let payroll_seconds = phase.elapsed().as_secs_f64();

    // The dead letter: the webhook is fixed, the operator replays the event.
    let phase = Instant::now();
    let letters = events::dead_letter::list(
        &db.store,
        Some("payroll.alerts"),
        Some(DeadLetterState::Parked),
        10,
    )
    .await?;
    let letter = letters.first().context("the parked alert")?.clone();
    let webhook_bodies_before = hook.received()?.len();
    hook.set_up(true);
    events::dead_letter::resolve(
        &db.store,
        "payroll.alerts",
        letter.event.id,
        OperatorAction::Replay,
        ACTOR,
        clock.now(),
    )
    .await?;
    wait_until(
        "the replayed alert is delivered",
        SETTLE_TIMEOUT,
        || async {
            Ok(payroll
                .alerts()
                .await?
                .iter()
                .all(|a| a.delivered_at_ms.is_some()))
        },
    )
    .await?;
    // The account is unfrozen, the operator retries the payout.
    let waiting = payroll.deposit(&frozen).await?;
    bank.set_frozen(&users[FROZEN_USER].payout_account, false)
        .await?;
    payroll.retry(&frozen).await?;
    wait_until("the retried salary completes", SETTLE_TIMEOUT, || async {
        Ok(payroll.deposit(&frozen).await?.state == DepositState::Completed)
    })
    .await?;
    backbone.stop().await?;
    let dead_letter_seconds = phase.elapsed().as_secs_f64();

    // Read everything back.
    let letter_now =
        events::dead_letter::show(&db.store, "payroll.alerts", letter.event.id).await?;
    let parked_left = events::dead_letter::list(&db.store, None, Some(DeadLetterState::Parked), 10)
        .await?
        .len();
    let bodies = hook.received()?;
    let alerts = payroll.alerts().await?;
    let books = Books::read(&payroll, ledger, bank, &operating, &users).await?;
    let log = payroll.stage_log().await?;

    let mut runs: HashMap<(&str, &str), i64> = HashMap::new();
    for (deposit, _, stage) in &log {
        *runs.entry((deposit.as_str(), stage.as_str())).or_default() += 1;
    }
    // A deposit's first pass is attempt 0; each operator retry adds one.
    let passes: HashMap<&str, i64> = books
        .deposits
        .iter()
        .map(|d| (d.deposit_id.as_str(), d.attempt + 1))
        .collect();
    let stage_over_runs = runs
        .iter()
        .filter(|((deposit, _), count)| **count > passes.get(deposit).copied().unwrap_or(1))
        .count();
    let first_on_legacy = books
        .deposits
        .iter()
        .filter(|d| first_wave.contains(&d.deposit_id))
        .all(|d| d.provider.as_deref() == Some("legacy"));
    let on_next = books
        .deposits
        .iter()
        .filter(|d| d.provider.as_deref() == Some("next"))
        .count();
    let mut guard_holds = true;
    for deposit in books.deposits.iter().take(50) {
        let id = DepositId::new(&deposit.deposit_id)?;
        let recorded = deposit.provider.as_deref().and_then(ProviderName::parse);
        for other in ProviderName::ALL {
            let start = payroll.facade().start_settlement(&id, other).await?;
            guard_holds &= matches!(
                (start, recorded),
                (SettlementStart::AlreadyStarted { provider }, Some(r)) if provider == r
            );
        }
    }
    let frozen_alerts: Vec<_> = alerts.iter().filter(|a| a.deposit_id == frozen).collect();
    let frozen_bodies = bodies
        .iter()
        .filter(|b| b["deposit"] == frozen.as_str())
        .count();
    let waited_at_payout = waiting.state == DepositState::Waiting
        && waiting.waiting_stage == Some(Stage::Payout)
        && waiting.waiting_reason.as_deref() == Some("account_frozen");
    let salaries_krw: i64 = paid.iter().map(|d| d.1).sum();

    let group = "salary deposits (DESIGN: settled at most once; each stage at most once to effect)";
    let checks = vec![
        Check::new(
            group,
            "every salary the bank received became exactly one deposit",
            books.deposits.len() == paid.len() && books.deposited_all == salaries_krw,
            format!(
                "{} deposits for {} salaries; {} KRW detected, {} KRW paid in at the bank",
                books.deposits.len(),
                paid.len(),
                books.deposited_all,
                salaries_krw
            ),
        ),
        Check::new(
            group,
            "every deposit completed (the frozen one after unfreezing and a retry)",
            books.completed == books.deposits.len(),
            format!(
                "{} of {} completed: {:?}",
                books.completed,
                books.deposits.len(),
                books.per_state
            ),
        ),
        Check::new(
            group,
            "repaid + suspended + paid out = deposited, to the won",
            books.repaid + books.suspended + books.paid_out == books.deposited,
            format!(
                "{} + {} + {} vs {}",
                books.repaid, books.suspended, books.paid_out, books.deposited
            ),
        ),
        Check::new(
            group,
            "the ledger's lender, suspense and payout accounts hold exactly those sums",
            books.ledger_repaid == books.repaid
                && books.ledger_suspended == books.suspended
                && books.ledger_paid_out == books.paid_out,
            format!(
                "ledger {} / {} / {}",
                books.ledger_repaid, books.ledger_suspended, books.ledger_paid_out
            ),
        ),
        Check::new(
            group,
            "the bank paid each user exactly their deposits' payouts, no bank_tran_id twice",
            books.users_paid_wrong == 0 && books.duplicate_tran_ids == 0,
            format!(
                "{} users paid differently from the ledger, {} ids twice",
                books.users_paid_wrong, books.duplicate_tran_ids
            ),
        ),
        Check::new(
            group,
            "no stage ran to effect more than once per pass (the first, and one per operator retry)",
            stage_over_runs == 0,
            format!("{stage_over_runs} (deposit, stage) pairs ran too often"),
        ),
        Check::new(
            group,
            "one provider per deposit: first-half salaries stayed on legacy, the guard refuses a second start",
            first_on_legacy && on_next > 0 && guard_holds,
            format!(
                "first half on legacy: {first_on_legacy}; {on_next} on next; guard: {guard_holds}"
            ),
        ),
        Check::new(
            group,
            "the frozen account stopped its deposit at payout with one alert",
            waited_at_payout
                && frozen_alerts.len() == 1
                && frozen_alerts.iter().all(|a| a.reason == "account_frozen"),
            format!(
                "state {:?} at {:?} ({:?}); {} alerts",
                waiting.state,
                waiting.waiting_stage,
                waiting.waiting_reason,
                frozen_alerts.len()
            ),
        ),
    ];
    let dlq_group = "event backbone (DESIGN: dead letters are replayed after the fix)";
    let dlq_checks = vec![
        Check::new(
            dlq_group,
            "the alert was dead-lettered after the consumer's max attempts, with the webhook's error",
            letter.attempts >= i64::from(ALERT_ATTEMPTS_MAX) && letter.last_error.contains("503"),
            format!(
                "{} attempts, last error {:?}",
                letter.attempts, letter.last_error
            ),
        ),
        Check::new(
            dlq_group,
            "after the replay the alert is delivered, once, and the letter is marked replayed",
            letter_now.0.state == DeadLetterState::Replayed
                && alerts.iter().all(|a| a.delivered_at_ms.is_some())
                && frozen_bodies == 1
                && webhook_bodies_before == 0,
            format!(
                "letter {:?}; webhook had {webhook_bodies_before} bodies before, {frozen_bodies} for the deposit after",
                letter_now.0.state
            ),
        ),
        Check::new(
            dlq_group,
            "no dead letter is left parked",
            parked_left == 0,
            format!("{parked_left} parked"),
        ),
    ];

    let mut part = Part::new("salary settlement", payroll_seconds)
        .count("users enrolled", books.users)
        .count("ms enrolling (virtual accounts, wallets)", enrol_ms)
        .count("ms first half: pay, poll, settle", first_half_ms)
        .count("ms second half after the migration", second_half_ms)
        .count("salary deposits", books.deposits.len());
    for (provider, count) in &books.per_provider {
        part = part.count(&format!("deposits settled by {provider}"), *count);
    }
    part = part
        .count("bank payout calls", books.bank_payout_calls)
        .count("alerts raised", alerts.len())
        .amount("deposited", books.deposited_all)
        .amount("repaid to the lender", books.repaid)
        .amount("suspended (held)", books.suspended)
        .amount("paid out to users", books.paid_out);
    let dlq_part = Part::new("dead letter and replay", dead_letter_seconds)
        .count("alert deliveries failed before parking", letter.attempts)
        .count(
            "letters replayed",
            i64::from(letter_now.0.state == DeadLetterState::Replayed),
        )
        .count("webhook messages received", bodies.len());
    let reconciliation = vec![Reconciliation {
        what: "salary payouts (operating account)".to_owned(),
        bank_krw: books.bank_paid_out,
        ledger_krw: books.ledger_paid_out,
        agrees: books.bank_paid_out == books.ledger_paid_out,
    }];
    super::demo_report::note(&format!(
        "  payroll: {} users, {} deposits settled in {payroll_seconds:.1}s; dead letter replayed in {dead_letter_seconds:.1}s",
        books.users,
        books.deposits.len()
    ));
    drop(poller);
    Ok(PayrollOutcome {
        parts: vec![(part, checks), (dlq_part, dlq_checks)],
        reconciliation,
        live: PayrollLive {
            payroll,
            routing,
            db,
            hook,
        },
    })
}

/// A user as the demo knows them.
struct DemoUser {
    virtual_account: AccountNumber,
    payout_account: AccountNumber,
}

async fn enrol(
    payroll: &Payroll,
    bank: &DemoBank,
    count: usize,
    seed: u64,
) -> anyhow::Result<Vec<DemoUser>> {
    let bar = progress::bar(count as u64, "enrolling users");
    // Each user's own bank account (where payouts go), opened at the bank.
    let new_users: Vec<NewUser> = futures_util::stream::iter(0..count)
        .map(|n| async move {
            let user_id = bank::UserId::from_uuid(uuid::Uuid::from_u128(
                (u128::from(seed) << 96) | 0xe_0000_0000 | (n as u128 + 1),
            ));
            let payout_account = AccountNumber::new(&format!("4444{n:010}"))?;
            let holder = HolderName::new(&format!("직원{n}"))?;
            bank.open_account(&payout_account, &holder, Krw::ZERO)
                .await?;
            Ok::<_, anyhow::Error>(NewUser {
                user_id,
                holder_name: holder.clone(),
                payout_account,
                payout_holder: holder,
                advance_krw: Krw::new(500_000),
                suspend_percent: 5,
            })
        })
        .buffered(SETUP_CONCURRENT_MAX)
        .try_collect()
        .await?;
    // Virtual accounts from each user's provider, in batches.
    let mut users = Vec::with_capacity(count);
    for batch in new_users.chunks(ENROL_BATCH_MAX) {
        let accounts = payroll.enrol_many(batch).await?;
        for (user, virtual_account) in batch.iter().zip(accounts) {
            users.push(DemoUser {
                virtual_account,
                payout_account: user.payout_account.clone(),
            });
        }
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    Ok(users)
}

/// Pays each user a salary at the bank; returns `(deposit id, amount)` in user order.
async fn pay_salaries(
    bank: &DemoBank,
    users: &[DemoUser],
    label: &str,
) -> anyhow::Result<Vec<(String, i64)>> {
    let bar = progress::bar(users.len() as u64, label);
    let paid = futures_util::stream::iter(users.iter())
        .map(|user| {
            let bar = bar.clone();
            async move {
                let hash = user
                    .virtual_account
                    .as_str()
                    .bytes()
                    .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                    });
                let amount = 1_000_000 + (hash % 500_001) as i64;
                let deposit = bank
                    .pay_salary(&user.virtual_account, Krw::new(amount))
                    .await?;
                bar.inc(1);
                Ok::<_, anyhow::Error>((deposit.deposit_id.to_string(), deposit.amount_krw.get()))
            }
        })
        .buffered(SETUP_CONCURRENT_MAX)
        .try_collect()
        .await?;
    bar.finish_and_clear();
    Ok(paid)
}

async fn poll(poller: &payroll::poller::Poller, users: usize, label: &str) -> anyhow::Result<()> {
    let bar = progress::bar(users as u64, label);
    let report = poller
        .run_round_observed(&|polled| bar.set_position(polled))
        .await?;
    bar.finish_and_clear();
    anyhow::ensure!(
        report.users_failed == 0,
        "{} users could not be polled",
        report.users_failed
    );
    Ok(())
}

/// Waits until `expected` deposits are completed, rolled back or waiting.
async fn settle(payroll: &Payroll, expected: usize, label: &str) -> anyhow::Result<()> {
    let bar = progress::bar(expected as u64, label);
    wait_until("the salary pipeline settles", SETTLE_TIMEOUT, || async {
        let status = payroll.status(i64::MAX).await?;
        let settled: i64 = status
            .per_state
            .iter()
            .filter(|(state, _)| matches!(state.as_str(), "completed" | "rolled_back" | "waiting"))
            .map(|(_, count)| count)
            .sum();
        bar.set_position(u64::try_from(settled).unwrap_or(0));
        Ok(usize::try_from(settled).unwrap_or(0) >= expected)
    })
    .await?;
    bar.finish_and_clear();
    Ok(())
}

/// Payroll's books read back from payroll's tables, the ledger and the bank.
struct Books {
    users: i64,
    deposits: Vec<payroll::DepositView>,
    per_state: BTreeMap<String, i64>,
    per_provider: BTreeMap<String, i64>,
    completed: usize,
    /// Over all deposits.
    deposited_all: i64,
    /// Over completed deposits.
    deposited: i64,
    repaid: i64,
    suspended: i64,
    paid_out: i64,
    ledger_repaid: i64,
    ledger_suspended: i64,
    ledger_paid_out: i64,
    bank_paid_out: i64,
    bank_payout_calls: i64,
    duplicate_tran_ids: usize,
    users_paid_wrong: usize,
}

impl Books {
    async fn read(
        payroll: &Payroll,
        ledger: &Ledger,
        bank: &DemoBank,
        operating: &AccountNumber,
        users: &[DemoUser],
    ) -> anyhow::Result<Books> {
        let status = payroll.status(i64::MAX).await?;
        let deposits = payroll.deposits().await?;
        let completed: Vec<_> = deposits
            .iter()
            .filter(|d| d.state == DepositState::Completed)
            .collect();
        let mut per_provider = BTreeMap::new();
        for deposit in &deposits {
            let provider = deposit
                .provider
                .clone()
                .unwrap_or_else(|| "none".to_owned());
            *per_provider.entry(provider).or_default() += 1;
        }
        let ids: Vec<AccountId> = vec![
            payroll::books::lender(&payroll.config().ids)?,
            payroll::books::suspense(&payroll.config().ids)?,
            payroll::books::payout(&payroll.config().ids)?,
        ];
        let accounts = ledger.lookup_accounts(&ids).await?;
        let find = |id: AccountId| {
            accounts
                .iter()
                .find(|a| a.id == id)
                .copied()
                .context("a payroll ledger account is missing")
        };
        let lender = find(ids[0])?;
        let suspense = find(ids[1])?;
        let payout = find(ids[2])?;

        // The bank's side: every payout from the operating account.
        let mut per_tran_id: HashMap<String, usize> = HashMap::new();
        let mut bank_per_account: HashMap<String, i64> = HashMap::new();
        let mut bank_paid_out = 0i64;
        let mut bank_payout_calls = 0i64;
        for movement in bank.movements(operating).await? {
            if movement.from_account.as_deref() != Some(operating.as_str()) {
                continue;
            }
            if let Some(id) = &movement.bank_tran_id {
                *per_tran_id.entry(id.clone()).or_default() += 1;
            }
            bank_paid_out += movement.amount_krw.get();
            bank_payout_calls += 1;
            *bank_per_account
                .entry(movement.to_account.clone())
                .or_default() += movement.amount_krw.get();
        }
        let mut ledger_per_user: HashMap<&str, i64> = HashMap::new();
        for deposit in &completed {
            *ledger_per_user.entry(deposit.user_id.as_str()).or_default() += deposit.payout_krw;
        }
        let enrolled: HashMap<String, String> = payout_accounts(&deposits, users);
        let mut users_paid_wrong = 0;
        for (user_id, payout_account) in &enrolled {
            let ledger_side = ledger_per_user.get(user_id.as_str()).copied().unwrap_or(0);
            let bank_side = bank_per_account.get(payout_account).copied().unwrap_or(0);
            if ledger_side != bank_side {
                users_paid_wrong += 1;
            }
        }
        Ok(Books {
            users: status.users,
            per_state: status.per_state.into_iter().collect(),
            per_provider,
            completed: completed.len(),
            deposited_all: deposits.iter().map(|d| d.amount_krw).sum(),
            deposited: completed.iter().map(|d| d.amount_krw).sum(),
            repaid: completed.iter().map(|d| d.repayment_krw).sum(),
            suspended: completed.iter().map(|d| d.suspend_krw).sum(),
            paid_out: completed.iter().map(|d| d.payout_krw).sum(),
            ledger_repaid: lender.credits_posted.get() - lender.debits_posted.get(),
            ledger_suspended: suspense.credits_pending.get(),
            ledger_paid_out: payout.credits_posted.get(),
            bank_paid_out,
            bank_payout_calls,
            duplicate_tran_ids: per_tran_id.values().filter(|n| **n > 1).count(),
            users_paid_wrong,
            deposits,
        })
    }
}

/// Each depositing user's id with their payout account, matched through the
/// virtual account the deposit arrived in.
fn payout_accounts(
    deposits: &[payroll::DepositView],
    users: &[DemoUser],
) -> HashMap<String, String> {
    let by_virtual: HashMap<&str, &str> = users
        .iter()
        .map(|u| (u.virtual_account.as_str(), u.payout_account.as_str()))
        .collect();
    deposits
        .iter()
        .filter_map(|d| {
            by_virtual
                .get(d.account.as_str())
                .map(|payout| (d.user_id.clone(), (*payout).to_owned()))
        })
        .collect()
}

/// A Slack-compatible webhook receiver the demo runs for payroll's alerts. It
/// starts down (503), as if the chat service were out, until [`Webhook::set_up`].
struct Webhook {
    url: String,
    up: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<serde_json::Value>>>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl Webhook {
    async fn start() -> anyhow::Result<Webhook> {
        use axum::http::StatusCode;
        let up = Arc::new(AtomicBool::new(false));
        let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let (state_up, state_received) = (up.clone(), received.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let (up, received) = (state_up.clone(), state_received.clone());
                async move {
                    if !up.load(Ordering::SeqCst) {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    match received.lock() {
                        Ok(mut bodies) if bodies.len() < WEBHOOK_BODIES_MAX => {
                            bodies.push(body);
                            StatusCode::OK
                        }
                        _ => StatusCode::INSUFFICIENT_STORAGE,
                    }
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "the demo's webhook receiver stopped");
            }
        });
        Ok(Webhook {
            url,
            up,
            received,
            stop,
            server,
        })
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    fn received(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        self.received
            .lock()
            .map(|bodies| bodies.clone())
            .map_err(|_| anyhow::anyhow!("the webhook receiver's lock is poisoned"))
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}
