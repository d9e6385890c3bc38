//! One helper that starts a whole payroll system per test — payroll's store (with
//! the outbox and the routing table), a ledger, a bank simulator served over HTTP on
//! port 0, both providers, and one dispatcher per consumer — so a test states only
//! what is special about it. Background work is stepped, never slept on.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bank::providers::Facade;
use bank::routing::RoutingTable;
use bank::sim::{OpenAccount, Profile, Salary, SimConfig, Simulator};
use bank::{AccountNumber, HolderName, Transport, TransportConfig, UserId};
use events::{Dispatcher, DispatcherConfig, RetryPolicy, Step, Wake};
use ledger::{Ledger, LedgerConfig};
use money::{Clock, Krw, SystemClock};
use payroll::alerts::AlertConsumer;
use payroll::poller::Poller;
use payroll::{DepositState, NewUser, Payroll, PayrollConfig, StageConsumer};
use store::testing::TestDb;
use tokio::net::TcpListener;

pub const OPERATING: &str = "1002000000001";
pub const OPERATING_HOLDER: &str = "세틀주식회사";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Knobs a test may turn before the system starts.
pub struct Options {
    pub backend: Backend,
    pub payout_chunk_max_krw: i64,
    pub configure: Box<dyn FnOnce(&mut PayrollConfig) + Send>,
    pub sim: Box<dyn FnOnce(&mut SimConfig) + Send>,
    /// Failed attempts before the backbone dead-letters a stage event.
    pub retry_attempts_max: u32,
}

impl Options {
    pub fn new(backend: Backend) -> Options {
        Options {
            backend,
            payout_chunk_max_krw: 100_000,
            configure: Box::new(|_| {}),
            sim: Box::new(|_| {}),
            retry_attempts_max: 1_000,
        }
    }
}

pub struct System {
    pub db: TestDb,
    pub ledger_db: Option<TestDb>,
    pub sim_db: TestDb,
    pub sim: Simulator,
    pub base_url: String,
    pub routing: RoutingTable,
    pub payroll: Payroll,
    pub ledger: Ledger,
    pub dispatchers: Vec<Dispatcher<StageConsumer>>,
    pub alerts: Dispatcher<AlertConsumer>,
    pub poller: Poller,
    pub users: Vec<(UserId, AccountNumber, AccountNumber)>,
    pub clock: Arc<dyn Clock>,
    pub retry_attempts_max: u32,
}

/// The workers' dispatcher configuration, with short polls and fast retries.
pub fn dispatcher_config(backend: store::Backend) -> DispatcherConfig {
    dispatcher_config_with(backend, 1_000)
}

/// Same, dead-lettering after `retry_attempts_max` failed attempts.
pub fn dispatcher_config_with(
    backend: store::Backend,
    retry_attempts_max: u32,
) -> DispatcherConfig {
    DispatcherConfig {
        poll_interval_ms: 5,
        retry: RetryPolicy::fast_for_tests(retry_attempts_max),
        ..payroll::WorkersConfig::for_backend(backend).dispatcher
    }
}

impl System {
    pub async fn start(options: Options) -> Option<System> {
        let db = match options.backend {
            Backend::Sqlite => store::testing::sqlite().await,
            Backend::Postgres => store::testing::postgres().await?,
        };
        // On SQLite the ledger gets its own file: stages call it from inside their
        // transaction, and a SQLite file has one writer.
        let ledger_db = match options.backend {
            Backend::Sqlite => Some(store::testing::sqlite().await),
            Backend::Postgres => None,
        };
        let ledger_store = ledger_db
            .as_ref()
            .map_or(db.store.clone(), |d| d.store.clone());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ledger = Ledger::open(ledger_store, clock.clone(), LedgerConfig::default())
            .await
            .unwrap();

        let sim_db = store::testing::sqlite().await;
        let mut sim_config = SimConfig::for_profile(Profile::Test, 42);
        sim_config.deposit_amount_max_krw = Krw::new(options.payout_chunk_max_krw);
        sim_config.concurrent_max = 256;
        (options.sim)(&mut sim_config);
        let sim = Simulator::open(sim_db.store.clone(), sim_config, clock.clone())
            .await
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(bank::sim::serve_simulator(
            sim.clone(),
            listener,
            std::future::pending(),
        ));
        sim.open_account(&OpenAccount {
            account_number: AccountNumber::new(OPERATING).unwrap(),
            holder_name: HolderName::new(OPERATING_HOLDER).unwrap(),
            balance_krw: Krw::new(100_000_000_000),
        })
        .await
        .unwrap();

        let mut transport = TransportConfig::new(&base_url);
        transport.requests_per_s_max = None;
        transport.concurrent_max = Some(64);
        transport.timeout_ms = 10_000;
        let transport = Transport::new(transport).unwrap();
        let routing = RoutingTable::open(db.store.clone(), clock.clone())
            .await
            .unwrap();
        let facade = Facade::connect(routing.clone(), &transport);
        let mut config = PayrollConfig::new(
            AccountNumber::new(OPERATING).unwrap(),
            HolderName::new(OPERATING_HOLDER).unwrap(),
            money::DerivedIds::for_tests(),
        );
        config.payout_chunk_max_krw = Krw::new(options.payout_chunk_max_krw);
        config.poll_requests_per_s_max = 100_000;
        config.poll_concurrent_max = 32;
        (options.configure)(&mut config);
        let payroll = Payroll::open(
            db.store.clone(),
            ledger.clone(),
            facade,
            clock.clone(),
            config,
        )
        .await
        .unwrap();
        let alerts = Dispatcher::new(
            db.store.clone(),
            Arc::new(payroll.alert_consumer()),
            dispatcher_config(db.store.backend()),
            clock.clone(),
            Wake::new(),
        )
        .await
        .unwrap();
        let poller = Poller::new(payroll.clone()).unwrap();
        let mut system = System {
            db,
            ledger_db,
            sim_db,
            sim,
            base_url,
            routing,
            payroll,
            ledger,
            dispatchers: Vec::new(),
            alerts,
            poller,
            users: Vec::new(),
            clock,
            retry_attempts_max: options.retry_attempts_max,
        };
        system.restart_dispatchers().await;
        Some(system)
    }

    /// Another process's view of the same system: its own connection pool to the
    /// same database (close it to let go of whatever it held, as a dying process
    /// would), with the same configuration.
    pub async fn second_process(
        &self,
        configure: impl FnOnce(&mut PayrollConfig),
    ) -> (store::Store, Payroll) {
        let store = store::Store::connect(&self.db.url).await.unwrap();
        let mut transport = TransportConfig::new(&self.base_url);
        transport.requests_per_s_max = None;
        let transport = Transport::new(transport).unwrap();
        let routing = RoutingTable::open(store.clone(), self.clock.clone())
            .await
            .unwrap();
        let facade = Facade::connect(routing, &transport);
        let mut config = self.payroll.config().clone();
        configure(&mut config);
        let payroll = Payroll::open(
            store.clone(),
            self.ledger.clone(),
            facade,
            self.clock.clone(),
            config,
        )
        .await
        .unwrap();
        (store, payroll)
    }

    /// Fresh stage dispatchers, as a restarted process would have.
    pub async fn restart_dispatchers(&mut self) {
        let mut dispatchers = Vec::new();
        for consumer in self.payroll.stage_consumers() {
            dispatchers.push(
                Dispatcher::new(
                    self.db.store.clone(),
                    Arc::new(consumer),
                    dispatcher_config_with(self.db.store.backend(), self.retry_attempts_max),
                    self.clock.clone(),
                    Wake::new(),
                )
                .await
                .unwrap(),
            );
        }
        self.dispatchers = dispatchers;
    }

    /// Opens `count` payout accounts at the simulator (32 at a time) and enrols
    /// their users through `Payroll::enrol_many`.
    pub async fn enrol(&mut self, count: usize, advance_krw: i64, suspend_percent: u8) {
        let start = self.users.len();
        let mut tasks = tokio::task::JoinSet::new();
        let mut new_users = Vec::new();
        for n in start..start + count {
            let user_id = user(n as u128);
            let payout_account = AccountNumber::new(&format!("3333{n:010}")).unwrap();
            let holder = HolderName::new(&format!("직원{n}")).unwrap();
            let sim = self.sim.clone();
            let opened = OpenAccount {
                account_number: payout_account.clone(),
                holder_name: holder.clone(),
                balance_krw: Krw::ZERO,
            };
            tasks.spawn(async move { sim.open_account(&opened).await.unwrap() });
            if tasks.len() >= 32 {
                tasks.join_next().await.unwrap().unwrap();
            }
            new_users.push(NewUser {
                user_id,
                holder_name: holder.clone(),
                payout_account,
                payout_holder: holder,
                advance_krw: Krw::new(advance_krw),
                suspend_percent,
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let accounts = self.payroll.enrol_many(&new_users).await.unwrap();
        for (new_user, virtual_account) in new_users.into_iter().zip(accounts) {
            self.users
                .push((new_user.user_id, virtual_account, new_user.payout_account));
        }
    }

    pub async fn pay_salary(&self, user_index: usize, amount_krw: i64) -> String {
        let deposit = self
            .sim
            .pay_salary(&Salary {
                account_number: self.users[user_index].1.clone(),
                amount_krw: Krw::new(amount_krw),
                depositor_name: "(주)고용주".into(),
            })
            .await
            .unwrap();
        deposit.deposit_id.to_string()
    }

    /// One step of every dispatcher, all at once (as `payroll::Workers` runs
    /// them); `Done` if any did something.
    pub async fn step(&mut self) -> Step {
        let (stages, alerts) = tokio::join!(
            futures_util::future::join_all(self.dispatchers.iter_mut().map(|d| d.run_once())),
            self.alerts.run_once()
        );
        let mut worked = alerts.unwrap() == Step::Done;
        for step in stages {
            worked |= step.unwrap() == Step::Done;
        }
        if worked { Step::Done } else { Step::Idle }
    }

    /// Deposits still moving (neither terminal nor waiting) plus undelivered alerts.
    pub async fn open_work(&self) -> usize {
        let open = self
            .payroll
            .deposits()
            .await
            .unwrap()
            .iter()
            .filter(|d| !d.state.is_terminal() && d.state != DepositState::Waiting)
            .count();
        let undelivered = self
            .payroll
            .alerts()
            .await
            .unwrap()
            .iter()
            .filter(|a| a.delivered_at_ms.is_none())
            .count();
        open + undelivered
    }

    /// Steps until every deposit is completed, rolled back or waiting, and every
    /// alert is delivered.
    pub async fn settle(&mut self) {
        let mut idle_rounds = 0u32;
        for _ in 0..100_000u32 {
            if self.step().await == Step::Done {
                idle_rounds = 0;
                continue;
            }
            if self.open_work().await == 0 {
                return;
            }
            idle_rounds += 1;
            if idle_rounds > 3_000 {
                let deposits = self.payroll.deposits().await.unwrap();
                let open: Vec<_> = deposits
                    .iter()
                    .filter(|d| !d.state.is_terminal() && d.state != DepositState::Waiting)
                    .collect();
                let mut debug = String::new();
                if let store::Store::Postgres(pool) = &self.db.store {
                    let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
                        "SELECT xid::text, kind, seq, key FROM outbox ORDER BY xid, position",
                    )
                    .fetch_all(pool)
                    .await
                    .unwrap();
                    let xmin: (String,) =
                        sqlx::query_as("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
                            .fetch_one(pool)
                            .await
                            .unwrap();
                    let marks: Vec<(String, String, i64)> = sqlx::query_as(
                        "SELECT consumer, key, seq_done FROM event_consumer_keys ORDER BY key, consumer",
                    )
                    .fetch_all(pool)
                    .await
                    .unwrap();
                    let cursors: Vec<(String, i64, i64)> = sqlx::query_as(
                        "SELECT consumer, xid, position FROM event_consumer_cursors",
                    )
                    .fetch_all(pool)
                    .await
                    .unwrap();
                    debug = format!(
                        "outbox {rows:?}\nxmin {xmin:?}\nmarks {marks:?}\ncursors {cursors:?}"
                    );
                }
                panic!("the pipeline stopped with open work: {open:?}\n{debug}");
            }
            // A retry is due in a few milliseconds (backoff): let it come due.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        panic!("the pipeline did not settle");
    }

    /// Every payroll payout the bank made, by `bank_tran_id`: `(to, amount)`.
    pub async fn bank_payouts(&self) -> HashMap<String, (String, i64)> {
        let mut out = HashMap::new();
        let mut since = 0;
        loop {
            let page = self.sim.statement(None, since).await.unwrap();
            let Some(last) = page.last() else { break };
            since = last.seq;
            for movement in page {
                if let Some(id) = movement.bank_tran_id.clone()
                    && id.starts_with("P2025")
                {
                    let previous = out.insert(
                        id.clone(),
                        (movement.to_account.clone(), movement.amount_krw.get()),
                    );
                    assert!(previous.is_none(), "{id} moved money twice");
                }
            }
        }
        out
    }

    /// Every salary the bank credited to an enrolled user's virtual account, in
    /// won, from the simulator's statement.
    pub async fn bank_salaries_krw(&self) -> i64 {
        let virtual_accounts: std::collections::HashSet<String> = self
            .users
            .iter()
            .map(|(_, account, _)| account.to_string())
            .collect();
        let mut total = 0i64;
        let mut since = 0;
        loop {
            let page = self.sim.statement(None, since).await.unwrap();
            let Some(last) = page.last() else { break };
            since = last.seq;
            for movement in page {
                if movement.kind == "salary" && virtual_accounts.contains(&movement.to_account) {
                    total += movement.amount_krw.get();
                }
            }
        }
        total
    }

    /// Once every deposit is completed: what the bank credited to the virtual
    /// accounts (its statement) = repaid + suspended + paid out as the ledger
    /// holds them, to the won; the ledger moved exactly that out of `virtual`;
    /// and the bank paid out exactly what the ledger booked.
    pub async fn assert_everything_settled_to_the_won(&self) {
        let deposited = self.bank_salaries_krw().await;
        let ids = [
            payroll::books::virtual_accounts(&self.payroll.config().ids).unwrap(),
            payroll::books::lender(&self.payroll.config().ids).unwrap(),
            payroll::books::suspense(&self.payroll.config().ids).unwrap(),
            payroll::books::payout(&self.payroll.config().ids).unwrap(),
        ];
        let accounts = self.ledger.lookup_accounts(&ids).await.unwrap();
        let find = |id: money::AccountId| *accounts.iter().find(|a| a.id == id).unwrap();
        let virtuals = find(ids[0]);
        let repaid = find(ids[1]).credits_posted.get() - find(ids[1]).debits_posted.get();
        let suspended = find(ids[2]).credits_pending.get();
        let paid_out = find(ids[3]).credits_posted.get();
        assert_eq!(
            virtuals.debits_posted.get() - virtuals.credits_posted.get(),
            deposited,
            "the ledger took in what the bank credited"
        );
        assert_eq!(
            repaid + suspended + paid_out,
            deposited,
            "repaid {repaid} + suspended {suspended} + paid out {paid_out} = deposited {deposited}"
        );
        let bank_paid: i64 = self.bank_payouts().await.values().map(|(_, a)| a).sum();
        assert_eq!(bank_paid, paid_out, "the bank paid what the ledger booked");
    }

    /// Checks the books: ledger invariants; repaid + suspended + paid out =
    /// deposited over completed deposits, to the won; the bank paid exactly what the
    /// ledger booked, to each user's own account.
    pub async fn assert_books(&self) {
        let totals = self.ledger.totals().await.unwrap();
        for (name, holds) in totals.invariants() {
            assert!(holds, "ledger invariant broken: {name}: {totals:?}");
        }
        let deposits = self.payroll.deposits().await.unwrap();
        let completed: Vec<_> = deposits
            .iter()
            .filter(|d| d.state == DepositState::Completed)
            .collect();
        let deposited: i64 = completed.iter().map(|d| d.amount_krw).sum();
        let repaid: i64 = completed.iter().map(|d| d.repayment_krw).sum();
        let suspended: i64 = completed.iter().map(|d| d.suspend_krw).sum();
        let paid_out: i64 = completed.iter().map(|d| d.payout_krw).sum();
        assert_eq!(deposited, repaid + suspended + paid_out, "split adds up");
        let shared = self
            .ledger
            .lookup_accounts(&[
                payroll::books::lender(&self.payroll.config().ids).unwrap(),
                payroll::books::suspense(&self.payroll.config().ids).unwrap(),
                payroll::books::payout(&self.payroll.config().ids).unwrap(),
            ])
            .await
            .unwrap();
        let find = |id: money::AccountId| *shared.iter().find(|a| a.id == id).unwrap();
        let lender = find(payroll::books::lender(&self.payroll.config().ids).unwrap());
        let suspense = find(payroll::books::suspense(&self.payroll.config().ids).unwrap());
        let payout = find(payroll::books::payout(&self.payroll.config().ids).unwrap());
        assert_eq!(
            lender.credits_posted.get() - lender.debits_posted.get(),
            repaid
        );
        assert_eq!(suspense.credits_pending.get(), suspended);
        assert_eq!(payout.credits_posted.get(), paid_out);
        let mut per_user: HashMap<String, i64> = HashMap::new();
        for d in &completed {
            *per_user.entry(d.user_id.clone()).or_default() += d.payout_krw;
        }
        let mut bank_per_account: HashMap<String, i64> = HashMap::new();
        for (to, amount) in self.bank_payouts().await.values() {
            *bank_per_account.entry(to.clone()).or_default() += amount;
        }
        let bank_total: i64 = bank_per_account.values().sum();
        assert_eq!(bank_total, paid_out, "bank and ledger agree on payouts");
        for (user_id, account, payout_account) in &self.users {
            let _ = account;
            let expected = per_user.get(&user_id.to_string()).copied().unwrap_or(0);
            let got = bank_per_account
                .get(payout_account.as_str())
                .copied()
                .unwrap_or(0);
            assert_eq!(got, expected, "payouts of user {user_id}");
        }
    }
}

/// Fixed, well-spread user ids: the same users in every run.
pub fn user(n: u128) -> UserId {
    UserId::from_uuid(uuid::Uuid::from_u128(
        0x0192_f1a8_7b2c_7000_8000_0000_0000_0000
            ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
    ))
}

/// A local webhook receiver (axum on 127.0.0.1:0) that keeps every JSON body.
pub async fn webhook_receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    use axum::routing::post;
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}
