//! The web console in a real browser. One test starts the whole application in
//! this process on 127.0.0.1:0 in its embedded shape (SQLite files) — ledger,
//! channel, fees, payroll, the provider routing table and the api's own tables —
//! seeds it through the crates' public APIs and the HTTP API, then runs
//! `node browser/console.test.mjs`, which drives Debian's headless Chromium with
//! playwright-core: it logs in as a customer, scrolls the history to its third
//! keyset page, presses "sync now", logs in as an operator, runs a fee module,
//! rolls a waiting salary deposit back, replays a dead letter, asks to move the
//! provider cohort (the server requires a second ops key for it), creates, rotates
//! and revokes an API key, sees the audit chain verified, then logs in as a second
//! operator who approves the cohort change, and saves a screenshot of every page
//! to `docs/screenshots/` (`SETTLE_SCREENSHOTS_DIR` to put them elsewhere).
//!
//! The seed is real work, not fixtures: 64 ledger transfers for one customer (four
//! history pages of 20), a channel transfer whose answer the core never gave
//! (`unknown`, so pending), four fee days generated with `fees::workload` and
//! settled through the bank simulator (the newest left unverified for the browser
//! to verify), and a payroll month in which two payouts stop at the bank (a frozen
//! account, a renamed holder) while the alert webhook is down, so both alerts end
//! as dead letters. The webhook comes back before the browser replays one, and the
//! test checks that the replayed alert then reached it.
//!
//! Without node, Chromium or `browser/node_modules` the test fails under `CI` and
//! skips (saying why) elsewhere; `scripts/install-browser.sh` installs them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use bank::providers::{Facade, ProviderName};
use bank::routing::RoutingTable;
use bank::sim::{OpenAccount, Profile, Salary, SimConfig, Simulator};
use bank::{AccountNumber, HolderName, Transport, TransportConfig};
use channel::faults::{Fault, FaultyCore};
use channel::{Channel, ChannelConfig, InProcessCore};
use events::{Dispatcher, DispatcherConfig, RetryPolicy, Step, Wake};
use fees::{BusinessDay, DayState, Fees, Trigger};
use ledger::{Ledger, LedgerConfig, TransferRequest};
use money::{AccountId, Clock, Krw, SystemClock, TransferId};
use payroll::{DepositState, NewUser, Payroll, PayrollConfig};
use store::testing::TestDb;
use tokio::net::TcpListener;

/// Seeding, serving and the browser together stay under this.
const TEST_TIME_MAX: Duration = Duration::from_secs(100);
/// What the browser script may take (it stops itself at the same bound).
const BROWSER_TIME_MAX_MS: u64 = 60_000;
/// Ledger transfers in the customer's history: more than three pages of 20.
const HISTORY_TRANSFERS: u64 = 64;
/// Loans per fee day, and fee days settled.
const FEE_LOANS: usize = 10;
const FEE_DAYS: u32 = 4;
/// Dispatcher attempts before an event becomes a dead letter.
const ATTEMPTS_MAX: u32 = 3;
/// Stepping rounds the payroll pipeline may take to settle.
const PIPELINE_ROUNDS_MAX: usize = 20_000;

const OPERATING: &str = "1002000009901";
const OPERATING_HOLDER: &str = "세틀주식회사";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM_PATH")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Why the browser cannot run here, if it cannot.
fn missing_tools() -> Option<String> {
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|out| out.status.success()) {
        return Some("node is not installed".into());
    }
    if !chromium_path().exists() {
        return Some(format!("{} is missing", chromium_path().display()));
    }
    if !repo_root()
        .join("browser/node_modules/playwright-core")
        .exists()
    {
        return Some("browser/node_modules has no playwright-core".into());
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_scrolls_history_syncs_runs_a_fee_module_and_replays_a_dead_letter() {
    if let Some(why) = missing_tools() {
        assert!(
            !in_ci(),
            "CI is set and the browser test cannot run: {why} (run scripts/install-browser.sh)"
        );
        eprintln!("skipping the browser test: {why}; run scripts/install-browser.sh");
        return;
    }
    let dbs = Dbs {
        core: store::testing::sqlite().await,
        payroll: store::testing::sqlite().await,
        channel: store::testing::sqlite().await,
    };
    tokio::time::timeout(TEST_TIME_MAX, run(dbs))
        .await
        .unwrap_or_else(|_| panic!("the browser test took longer than {TEST_TIME_MAX:?}"));
}

/// The embedded shape `settle serve` starts with: SQLite files. The core's holds the
/// ledger, fees and the api's tables; payroll has its own (its stages call the
/// ledger from inside their transactions, and a SQLite file has one writer), with
/// the routing table, its outbox and so the dead letters; the channel has its own.
struct Dbs {
    core: TestDb,
    payroll: TestDb,
    channel: TestDb,
}

async fn run(dbs: Dbs) {
    let started = Instant::now();
    let webhook = Webhook::start().await;
    let world = World::start(&dbs, &webhook).await;
    let server = world.serve().await;
    let keys = world.keys().await;
    let http = Http::new(&server);
    let phase = Instant::now();
    world.seed_customer(&http, &keys).await;
    eprintln!("customer seeded in {:.1}s", phase.elapsed().as_secs_f64());
    let phase = Instant::now();
    world.seed_fee_days().await;
    eprintln!("fee days seeded in {:.1}s", phase.elapsed().as_secs_f64());
    let phase = Instant::now();
    let mut payroll = world.seed_payroll().await;
    eprintln!("payroll seeded in {:.1}s", phase.elapsed().as_secs_f64());
    assert!(
        webhook.received.lock().unwrap().is_empty(),
        "the webhook was down while the alerts were sent"
    );
    eprintln!("seeded in {:.1}s", started.elapsed().as_secs_f64());

    // The webhook is back; the alert dispatcher keeps running so a replayed alert is
    // delivered while the browser watches.
    webhook.up.store(true, Ordering::SeqCst);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let alerts = payroll.alerts.take().map(|dispatcher| {
        tokio::spawn(dispatcher.run(async {
            let _ = stop_rx.await;
        }))
    });

    let status = run_browser(&server, &keys).await;
    assert!(status, "the browser script failed (its output is above)");

    // What the browser did is what the server holds.
    let verified = world.fees.status(world.newest_day).await.unwrap().unwrap();
    assert_eq!(
        verified.state,
        DayState::Verified,
        "the browser verified the newest fee day"
    );
    let letters = events::dead_letter::list(&dbs.payroll.store, None, None, 10)
        .await
        .unwrap();
    assert_eq!(
        letters
            .iter()
            .filter(|l| l.state == events::DeadLetterState::Replayed)
            .count(),
        1,
        "the browser replayed one dead letter: {letters:?}"
    );
    let deposits = world.payroll.deposits().await.unwrap();
    let rolled_back: Vec<_> = deposits
        .iter()
        .filter(|d| d.state == DepositState::RolledBack)
        .collect();
    assert_eq!(rolled_back.len(), 1, "the browser rolled one deposit back");
    assert_eq!(
        rolled_back[0].user_id,
        payroll_user(1).to_string(),
        "the deposit whose payout holder was renamed: {rolled_back:?}"
    );
    assert_eq!(
        world.routing.cohort_percent().await.unwrap(),
        30,
        "the cohort moved once the second ops key approved"
    );
    let approvals = api::db::approvals_page(&world.store, None, 10)
        .await
        .unwrap();
    assert_eq!(approvals.len(), 1, "{approvals:?}");
    assert_eq!(approvals[0].state, api::db::ApprovalState::Done);
    assert_eq!(
        approvals[0].decided_by.as_deref(),
        Some(keys.checker_id.as_str())
    );
    assert_ne!(approvals[0].requested_by, keys.checker_id);
    assert_eq!(
        api::db::verify_audit(&world.store)
            .await
            .unwrap()
            .map(|_| ()),
        Ok(())
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while webhook.received.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the replayed alert never reached the webhook"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(());
    if let Some(task) = alerts {
        task.await.unwrap().unwrap();
    }
    eprintln!(
        "browser test done in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// Runs the browser script against `base_url`; true when it passed.
async fn run_browser(base_url: &str, keys: &Keys) -> bool {
    let root = repo_root();
    let shots = std::env::var_os("SETTLE_SCREENSHOTS_DIR")
        .map_or_else(|| root.join("docs/screenshots"), PathBuf::from);
    let mut child = tokio::process::Command::new("node")
        .arg("browser/console.test.mjs")
        .current_dir(&root)
        .env("SETTLE_BASE_URL", base_url)
        .env("SETTLE_CUSTOMER_KEY", &keys.customer)
        .env("SETTLE_OPS_KEY", &keys.ops)
        .env("SETTLE_OPS2_KEY", &keys.checker)
        .env("SETTLE_SCREENSHOTS_DIR", shots)
        .env("CHROMIUM_PATH", chromium_path())
        .env("SETTLE_BROWSER_TIMEOUT_MS", BROWSER_TIME_MAX_MS.to_string())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let bound = Duration::from_millis(BROWSER_TIME_MAX_MS + 5_000);
    match tokio::time::timeout(bound, child.wait()).await {
        Ok(status) => status.expect("node runs").success(),
        Err(_) => {
            let _ = child.kill().await;
            panic!("the browser script did not end within {bound:?}");
        }
    }
}

struct Keys {
    ops: String,
    /// A second ops key: the checker of maker-checker.
    checker: String,
    checker_id: String,
    customer: String,
    customer_id: String,
}

/// JSON over HTTP to the server under test, as any client would send it.
struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    fn new(base: &str) -> Http {
        Http {
            base: base.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    /// POSTs `body` with `key` and a fresh Idempotency-Key; the answer's JSON, which
    /// must be a success.
    async fn post(&self, key: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        assert!(status.is_success(), "POST {path}: {status} {answer}");
        answer
    }
}

/// Everything the server serves, open on the test's databases.
struct World {
    clock: Arc<dyn Clock>,
    /// The core's store: ledger, fees, the api's tables, the ledger's outbox.
    store: store::Store,
    /// Payroll's store: its tables, the routing table, its outbox and dead letters.
    payroll_store: store::Store,
    ledger: Ledger,
    channel: Channel,
    faulty: Arc<FaultyCore>,
    fees: Fees,
    sim: Simulator,
    routing: RoutingTable,
    payroll: Payroll,
    newest_day: BusinessDay,
    /// Kept so the simulator's file lives as long as the test.
    _sim_db: TestDb,
}

/// The seeded payroll system's alert dispatcher, taken over by the test.
struct PayrollRun {
    alerts: Option<Dispatcher<payroll::alerts::AlertConsumer>>,
}

fn dispatcher_config() -> DispatcherConfig {
    DispatcherConfig {
        concurrency_max: 2,
        poll_interval_ms: 5,
        retry: RetryPolicy::fast_for_tests(ATTEMPTS_MAX),
        ..DispatcherConfig::default()
    }
}

fn id(n: u128) -> TransferId {
    TransferId::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 | n).unwrap()
}

/// Salaried user `n` (user 1's payout holder is renamed at the bank).
fn payroll_user(n: u128) -> bank::UserId {
    bank::UserId::from_uuid(uuid::Uuid::from_u128(
        0x0193_0000_0000_7000_8000_0000_0a00_0000 | n,
    ))
}

fn account(n: u128) -> AccountId {
    AccountId::from_u128(0x0193_0000_0000_7000_8000_00ac_0000_0000 | n).unwrap()
}

impl World {
    async fn start(dbs: &Dbs, webhook: &Webhook) -> World {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ledger = Ledger::open(
            dbs.core.store.clone(),
            clock.clone(),
            LedgerConfig::default(),
        )
        .await
        .unwrap();
        let sim_db = store::testing::sqlite().await;
        let mut sim_config = SimConfig::for_profile(Profile::Test, 7);
        sim_config.concurrent_max = 256;
        let sim = Simulator::open(sim_db.store.clone(), sim_config, clock.clone())
            .await
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(bank::sim::serve_simulator(
            sim.clone(),
            listener,
            std::future::pending(),
        ));
        let faulty = Arc::new(FaultyCore::new(Arc::new(InProcessCore::new(
            ledger.clone(),
        ))));
        let channel = Channel::open(
            dbs.channel.store.clone(),
            faulty.clone(),
            clock.clone(),
            ChannelConfig::default(),
        )
        .await
        .unwrap();
        let fees = Fees::open(
            ledger.clone(),
            Arc::new(sim.clone()),
            clock.clone(),
            fees::bench::bench_config().unwrap(),
        )
        .await
        .unwrap();
        let routing = RoutingTable::open(dbs.payroll.store.clone(), clock.clone())
            .await
            .unwrap();

        // Payroll pays out through both providers, over HTTP to the simulator.
        let mut transport = TransportConfig::new(&sim_url);
        transport.requests_per_s_max = None;
        transport.concurrent_max = Some(32);
        let transport = Transport::new(transport).unwrap();
        let facade = Facade::connect(routing.clone(), &transport);
        let mut config = PayrollConfig::new(
            AccountNumber::new(OPERATING).unwrap(),
            HolderName::new(OPERATING_HOLDER).unwrap(),
            money::DerivedIds::for_tests(),
        );
        config.webhook_url = Some(webhook.url.clone());
        config.webhook_timeout_ms = 2_000;
        config.poll_requests_per_s_max = 10_000;
        let payroll = Payroll::open(
            dbs.payroll.store.clone(),
            ledger.clone(),
            facade,
            clock.clone(),
            config,
        )
        .await
        .unwrap();
        let newest_day = BusinessDay::from_kst(clock.now()).previous();
        World {
            clock,
            store: dbs.core.store.clone(),
            payroll_store: dbs.payroll.store.clone(),
            ledger,
            channel,
            faulty,
            fees,
            sim,
            routing,
            payroll,
            newest_day,
            _sim_db: sim_db,
        }
    }

    /// Serves the application on 127.0.0.1:0 until the test ends; its base URL.
    async fn serve(&self) -> String {
        let handles = api::Handles {
            ledger: Some(self.ledger.clone()),
            channel: Some(self.channel.clone()),
            fees: Some(self.fees.clone()),
            payroll: Some(self.payroll.clone()),
            events: Some(self.payroll_store.clone()),
            routing: Some(self.routing.clone()),
            bank: Some(Arc::new(self.sim.clone())),
            statement: Some(Arc::new(self.sim.clone())),
            clock: Some(self.clock.clone()),
            probes: Vec::new(),
        };
        // The cohort needs a second ops key's approval (maker-checker).
        let config = api::ApiConfig {
            approvals_required: [api::approvals::Guarded::ProvidersCohort].into(),
            ..api::ApiConfig::default()
        };
        let state = api::AppState::new(self.store.clone(), handles, config)
            .await
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(api::serve(listener, state, std::future::pending()));
        url
    }

    /// An ops key and a customer's key, made as `settle keys create` makes them.
    async fn keys(&self) -> Keys {
        let now_ms = self.clock.now().unix_ms();
        let customer_id = "0193a000-0000-7000-8000-00000000c001";
        let ops = api::auth::create_key(
            &self.store,
            api::auth::Role::Ops,
            None,
            "browser-test",
            now_ms,
        )
        .await
        .unwrap();
        let checker = api::auth::create_key(
            &self.store,
            api::auth::Role::Ops,
            None,
            "browser-test",
            now_ms,
        )
        .await
        .unwrap();
        let customer = api::auth::create_key(
            &self.store,
            api::auth::Role::Customer,
            Some(customer_id),
            "browser-test",
            now_ms,
        )
        .await
        .unwrap();
        Keys {
            ops: ops.key,
            checker: checker.key,
            checker_id: checker.key_id,
            customer: customer.key,
            customer_id: customer_id.to_owned(),
        }
    }

    /// The customer's account, opened through the API, with a salary and card
    /// payments spanning four history pages, the newest three entries not yet in
    /// the read model ("sync now" pulls them), and a transfer made through the API
    /// whose answer the core never gave (`unknown`, so pending).
    async fn seed_customer(&self, http: &Http, keys: &Keys) {
        let mine = account(1);
        let house = account(100);
        let shop = account(101);
        // The shop is a customer too (a merchant): customers pay only customer accounts.
        let merchant = "0190a000-0000-7000-8000-00000000540b".to_owned();
        for (id, customer) in [
            (house, None),
            (shop, Some(&merchant)),
            (mine, Some(&keys.customer_id)),
        ] {
            let mut body = serde_json::json!({"id": id.to_string(), "code": 1});
            if let Some(customer) = customer {
                body["customer_id"] = customer.as_str().into();
                body["code"] = 2.into();
                body["flags"] = serde_json::json!({"debits_must_not_exceed_credits": true});
            }
            http.post(&keys.ops, "/v1/accounts", body).await;
        }

        let mut history = Dispatcher::new(
            self.store.clone(),
            Arc::new(self.channel.history().consumer()),
            dispatcher_config(),
            self.clock.clone(),
            Wake::new(),
        )
        .await
        .unwrap();
        for n in 0..HISTORY_TRANSFERS {
            let (debit, credit, amount) = match n {
                0 => (house, mine, 3_200_000),
                n if n % 7 == 3 => (house, mine, 150_000 + 10_000 * n as i64),
                n => (mine, shop, 4_500 + (n as i64 * 7_919) % 48_000 / 10 * 10),
            };
            let request = TransferRequest::single(
                id(u128::from(n) + 1),
                debit,
                credit,
                Krw::new(amount),
                self.clock.now(),
            )
            .unwrap();
            let result = self.ledger.transfer(request).await.unwrap();
            assert!(result.is_applied(), "seed transfer {n}: {result:?}");
            if n + 3 == HISTORY_TRANSFERS {
                while history.run_once().await.unwrap() == Step::Done {}
            }
        }

        assert!(self.faulty.push(Fault::TimeoutBeforeCommit).await);
        let transfer = http
            .post(
                &keys.customer,
                "/v1/channel/transfers",
                serde_json::json!({
                    "id": id(9_001).to_string(),
                    "from_account_id": mine.to_string(),
                    "to_account_id": shop.to_string(),
                    "amount_krw": 30_000,
                }),
            )
            .await;
        assert_eq!(transfer["state"], "unknown", "{transfer}");
    }

    /// Four business days of fees through the simulator: the older three settled to
    /// the end, the newest paid but not verified.
    async fn seed_fee_days(&self) {
        let first = fees::workload::generate(self.newest_day, FEE_LOANS, 11).unwrap();
        for back in (0..FEE_DAYS).rev() {
            let mut day = self.newest_day;
            for _ in 0..back {
                day = day.previous();
            }
            let mut workload =
                fees::workload::generate(day, FEE_LOANS, 11 + u64::from(back)).unwrap();
            workload.loans = first.loans.clone();
            self.fees.register_loans(&workload.loans).await.unwrap();
            let accrued = self.fees.accrue(&workload.accruals).await.unwrap();
            assert_eq!(accrued.refused, 0);
            fees::workload::provision_bank(&self.sim, self.fees.config(), &workload)
                .await
                .unwrap();
            self.fees.record(day, Trigger::Operator).await.unwrap();
            self.fees.pay(day, Trigger::Operator).await.unwrap();
            if back > 0 {
                self.fees.verify(day, Trigger::Operator).await.unwrap();
                self.fees.withdraw(day, Trigger::Operator).await.unwrap();
                let status = self.fees.status(day).await.unwrap().unwrap();
                assert_eq!(status.state, DayState::Withdrawn, "{day}");
            }
        }
        let newest = self.fees.status(self.newest_day).await.unwrap().unwrap();
        assert_eq!(newest.state, DayState::Recorded);
        assert_eq!(
            newest.items_paid, newest.items,
            "the newest day is paid, not verified"
        );
    }

    /// Six salaried users; one payout account frozen and one holder renamed at the
    /// bank, while the alert webhook answers 503 until both alerts are dead letters.
    async fn seed_payroll(&self) -> PayrollRun {
        self.sim
            .open_account(&OpenAccount {
                account_number: AccountNumber::new(OPERATING).unwrap(),
                holder_name: HolderName::new(OPERATING_HOLDER).unwrap(),
                balance_krw: Krw::new(10_000_000_000),
            })
            .await
            .unwrap();
        self.routing.set_cohort_percent(25, "seed").await.unwrap();
        let mut users = Vec::new();
        for n in 0..6u128 {
            let user_id = payroll_user(n);
            let payout_account = AccountNumber::new(&format!("3333{n:010}")).unwrap();
            let holder = HolderName::new(&format!("직원{n}")).unwrap();
            self.sim
                .open_account(&OpenAccount {
                    account_number: payout_account.clone(),
                    holder_name: holder.clone(),
                    balance_krw: Krw::ZERO,
                })
                .await
                .unwrap();
            let virtual_account = self
                .payroll
                .enrol(&NewUser {
                    user_id,
                    holder_name: holder.clone(),
                    payout_account: payout_account.clone(),
                    payout_holder: holder,
                    advance_krw: Krw::new(if n % 2 == 0 { 300_000 } else { 0 }),
                    suspend_percent: 10,
                })
                .await
                .unwrap();
            users.push((user_id, virtual_account, payout_account));
        }
        self.routing
            .set_override(users[5].0, Some(ProviderName::Next), "seed")
            .await
            .unwrap();
        for (n, (_, virtual_account, _)) in users.iter().enumerate() {
            self.sim
                .pay_salary(&Salary {
                    account_number: virtual_account.clone(),
                    amount_krw: Krw::new(2_400_000 + 100_000 * n as i64),
                    depositor_name: "(주)고용주".into(),
                })
                .await
                .unwrap();
        }
        self.sim.set_frozen(&users[0].2, true).await.unwrap();
        self.sim
            .rename_holder(&users[1].2, &HolderName::new("개명된이름").unwrap())
            .await
            .unwrap();
        payroll::poller::Poller::new(self.payroll.clone())
            .unwrap()
            .run_round()
            .await
            .unwrap();

        let mut stages = Vec::new();
        for consumer in self.payroll.stage_consumers() {
            stages.push(
                Dispatcher::new(
                    self.payroll_store.clone(),
                    Arc::new(consumer),
                    dispatcher_config(),
                    self.clock.clone(),
                    Wake::new(),
                )
                .await
                .unwrap(),
            );
        }
        let mut alerts = Dispatcher::new(
            self.payroll_store.clone(),
            Arc::new(self.payroll.alert_consumer()),
            dispatcher_config(),
            self.clock.clone(),
            Wake::new(),
        )
        .await
        .unwrap();
        for round in 0.. {
            assert!(
                round < PIPELINE_ROUNDS_MAX,
                "the payroll seed did not settle"
            );
            let mut worked = false;
            for stage in &mut stages {
                worked |= stage.run_once().await.unwrap() == Step::Done;
            }
            worked |= alerts.run_once().await.unwrap() == Step::Done;
            if worked {
                continue;
            }
            let deposits = self.payroll.deposits().await.unwrap();
            let moving = deposits
                .iter()
                .any(|d| !d.state.is_terminal() && d.state != DepositState::Waiting);
            let parked = events::dead_letter::list(
                &self.payroll_store,
                None,
                Some(events::DeadLetterState::Parked),
                10,
            )
            .await
            .unwrap()
            .len();
            if deposits.len() == users.len() && !moving && parked == 2 {
                break;
            }
            // A retry is a few milliseconds away (backoff): let it come due.
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        PayrollRun {
            alerts: Some(alerts),
        }
    }
}

/// A Slack-style webhook that answers 503 until `up` is set, then keeps each body.
struct Webhook {
    url: String,
    up: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Webhook {
    async fn start() -> Webhook {
        let up = Arc::new(AtomicBool::new(false));
        let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let (is_up, kept) = (up.clone(), received.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let (is_up, kept) = (is_up.clone(), kept.clone());
                async move {
                    if !is_up.load(Ordering::SeqCst) {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    kept.lock().unwrap().push(body);
                    StatusCode::OK
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Webhook { url, up, received }
    }
}
