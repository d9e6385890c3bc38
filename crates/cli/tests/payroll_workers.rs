//! Two and three `settle payroll work` processes over one PostgreSQL schema,
//! against a `settle bank-sim` process that counts every transfer request it
//! receives per `bank_tran_id` (`GET /admin/submissions`): every deposit
//! completes, each (deposit, stage) runs once to effect, no id reaches the bank
//! twice, and the ledger holds exactly the transfers of the recorded stages.
//! Ten seeds without kills and ten with workers SIGKILLed mid-run; each seed has
//! a fresh schema, and the seeds of one test share one bank simulator (its
//! submission counts run across them). A failing seed is printed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bank::providers::Facade;
use bank::routing::RoutingTable;
use bank::sim::{AdminClient, OpenAccount, Salary, SubmissionsReport};
use bank::{AccountNumber, HolderName, Transport, TransportConfig, UserId};
use ledger::{Ledger, LedgerConfig};
use money::{Clock, Krw, SystemClock};
use payroll::{DepositState, DepositView, NewUser, Payroll, PayrollConfig, books};
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The payout operating account: its own, not a fee account.
const OPERATING: &str = "1002000000002";
const HOLDER: &str = "세틀주식회사";
/// Users (one salary each) per seed: few, so ten seeds stay quick.
const USERS: usize = 8;
/// A killed worker's claims hold this long.
const LEASE_MS: &str = "1500";
/// One seed's workers must finish within this, kills and lapsed leases included.
const SEED_DEADLINE: Duration = Duration::from_secs(45);
const SEEDS: u64 = 10;

/// The installation secret the test and its worker processes share.
const ID_SECRET: &str = "payroll-workers-test-id-secret-0123456789";

fn ids() -> money::DerivedIds {
    money::DerivedIds::new(ID_SECRET.as_bytes()).unwrap()
}

/// `settle bank-sim` in its own process and database, shared by a test's seeds.
struct BankSim {
    _child: Child,
    url: String,
    admin: AdminClient,
    file: PathBuf,
}

impl Drop for BankSim {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.file.display()));
        }
    }
}

async fn bank_sim() -> BankSim {
    let file = std::env::temp_dir().join(format!(
        "settle-payroll-workers-bank-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_settle"))
        .args(["bank-sim", "--port", "0", "--profile", "test"])
        .args(["--concurrent-max", "256", "--database-url"])
        .arg(format!("sqlite://{}", file.display()))
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .await
        .unwrap();
    let address = first.trim().strip_prefix("listening on ").unwrap();
    let url = format!("http://{address}");
    let admin = AdminClient::new(&url);
    admin
        .open_account(&OpenAccount {
            account_number: AccountNumber::new(OPERATING).unwrap(),
            holder_name: HolderName::new(HOLDER).unwrap(),
            balance_krw: Krw::new(100_000_000_000),
        })
        .await
        .unwrap();
    BankSim {
        _child: child,
        url,
        admin,
        file,
    }
}

/// One seed's stores (a fresh schema) and the test's own handles on them.
struct World {
    _db: store::testing::TestDb,
    db_url: String,
    payroll: Payroll,
    ledger: Ledger,
    /// The users' own bank accounts, where their payouts land.
    payout_accounts: Vec<AccountNumber>,
}

async fn world(bank: &BankSim) -> Option<World> {
    let db = store::testing::postgres().await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ledger = Ledger::open(db.store.clone(), clock.clone(), LedgerConfig::default())
        .await
        .unwrap();
    let mut transport = TransportConfig::new(&bank.url);
    transport.requests_per_s_max = None;
    let transport = Transport::new(transport).unwrap();
    let routing = RoutingTable::open(db.store.clone(), clock.clone())
        .await
        .unwrap();
    let facade = Facade::connect(routing, &transport);
    let mut config = PayrollConfig::new(
        AccountNumber::new(OPERATING).unwrap(),
        HolderName::new(HOLDER).unwrap(),
        ids(),
    );
    config.poll_requests_per_s_max = 100_000;
    let payroll = Payroll::open(db.store.clone(), ledger.clone(), facade, clock, config)
        .await
        .unwrap();
    Some(World {
        db_url: db.url.clone(),
        _db: db,
        payroll,
        ledger,
        payout_accounts: Vec::new(),
    })
}

/// Enrols [`USERS`] users of this seed (their own ids and bank accounts, since
/// the bank outlives the seed), pays each one salary of a seeded amount (several
/// payout chunks each), and detects them in one poll round.
async fn salaries(world: &mut World, bank: &BankSim, seed: u64) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut users = Vec::new();
    for n in 0..USERS {
        let payout = AccountNumber::new(&format!("33{seed:04}{n:08}")).unwrap();
        let holder = HolderName::new(&format!("직원{n}")).unwrap();
        bank.admin
            .open_account(&OpenAccount {
                account_number: payout.clone(),
                holder_name: holder.clone(),
                balance_krw: Krw::ZERO,
            })
            .await
            .unwrap();
        world.payout_accounts.push(payout.clone());
        let user = (u128::from(seed) << 32) + n as u128;
        users.push(NewUser {
            user_id: UserId::from_uuid(uuid::Uuid::from_u128(
                0x0192_f1a8_7b2c_7000_8000_0000_0000_0000 + user,
            )),
            holder_name: holder.clone(),
            payout_account: payout,
            payout_holder: holder,
            advance_krw: Krw::new(rng.random_range(0..200_000)),
            suspend_percent: rng.random_range(0..20),
        });
    }
    let accounts = world.payroll.enrol_many(&users).await.unwrap();
    for account in accounts {
        bank.admin
            .pay_salary(&Salary {
                account_number: account,
                amount_krw: Krw::new(rng.random_range(200_000..900_000)),
                depositor_name: "(주)고용주".into(),
            })
            .await
            .unwrap();
    }
    let poller = payroll::poller::Poller::new(world.payroll.clone()).unwrap();
    poller.run_round().await.unwrap();
}

fn worker(world: &World, bank: &BankSim) -> Child {
    Command::new(env!("CARGO_BIN_EXE_settle"))
        .args(["payroll", "work", "--database-url", &world.db_url])
        .args(["--bank-url", &bank.url, "--payout-account", OPERATING])
        .args(["--payout-holder", HOLDER, "--poll-every-ms", "0"])
        .args(["--claim-lease-ms", LEASE_MS])
        .env("RUST_LOG", "error")
        .env("SETTLE_ID_SECRET", ID_SECRET)
        // The bank is `settle bank-sim` (no bank has a default).
        .env("SETTLE_BANK__KIND", "bank-sim")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn open(deposits: &[DepositView]) -> Vec<&DepositView> {
    deposits
        .iter()
        .filter(|d| d.state != DepositState::Completed)
        .collect()
}

/// Runs `processes` workers until every deposit is completed; with `kills`,
/// SIGKILLs a seeded worker at seeded moments once the work is under way (the
/// first once a deposit has moved) and starts a fresh one. Returns the kills
/// that landed while deposits were still open.
async fn run(world: &World, bank: &BankSim, seed: u64, processes: usize, kills: usize) -> usize {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ 0x5eed);
    let mut children: Vec<Child> = (0..processes).map(|_| worker(world, bank)).collect();
    let started = Instant::now();
    let mut landed = 0;
    let mut next_kill: Option<Instant> = None;
    loop {
        let deposits = world.payroll.deposits().await.unwrap();
        let open = open(&deposits);
        if open.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < SEED_DEADLINE,
            "seed {seed}: {} deposits not completed after {SEED_DEADLINE:?}: {open:?}",
            open.len()
        );
        let moving = deposits.iter().any(|d| d.state != DepositState::Detected);
        if landed < kills && moving && next_kill.is_none() {
            next_kill = Some(Instant::now() + Duration::from_millis(rng.random_range(0..250)));
        }
        if next_kill.is_some_and(|at| Instant::now() >= at) {
            let victim = rng.random_range(0..children.len());
            children[victim].start_kill().unwrap();
            let _ = children[victim].wait().await;
            children[victim] = worker(world, bank);
            landed += 1;
            next_kill = (landed < kills)
                .then(|| Instant::now() + Duration::from_millis(rng.random_range(300..1_200)));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for mut child in children {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    landed
}

/// Each (deposit, stage) was recorded once, and the ledger holds exactly the
/// transfers the recorded splits call for: nothing without its stage, nothing
/// undone.
async fn check_stores(world: &World, seed: u64) -> Vec<DepositView> {
    let deposits = world.payroll.deposits().await.unwrap();
    assert_eq!(deposits.len(), USERS, "seed {seed}");
    let mut per_stage: HashMap<(String, String), usize> = HashMap::new();
    for (deposit, _, stage) in world.payroll.stage_log().await.unwrap() {
        *per_stage.entry((deposit, stage)).or_default() += 1;
    }
    let purposes = [
        "deposit",
        "repay",
        "suspend",
        "payout",
        "undo-deposit",
        "undo-repay",
        "undo-suspend",
    ];
    for d in &deposits {
        for stage in ["compute", "repay", "suspend", "payout", "complete"] {
            let runs = per_stage
                .get(&(d.deposit_id.clone(), stage.to_owned()))
                .copied();
            assert_eq!(runs, Some(1), "seed {seed}: {} {stage}", d.deposit_id);
        }
        let ids: Vec<_> = purposes
            .iter()
            .map(|p| books::transfer_id(&ids(), &d.deposit_id, p).unwrap())
            .collect();
        let found = world.ledger.lookup_transfers(&ids).await.unwrap();
        let amounts: Vec<Option<i64>> = ids
            .iter()
            .map(|id| found.iter().find(|t| t.id == *id).map(|t| t.amount.get()))
            .collect();
        let expect = |krw: i64| (krw > 0).then_some(krw);
        let booked = [
            Some(d.amount_krw),
            expect(d.repayment_krw),
            expect(d.suspend_krw),
            expect(d.payout_krw),
            None,
            None,
            None,
        ];
        assert_eq!(
            amounts, booked,
            "seed {seed}: {} {purposes:?}",
            d.deposit_id
        );
    }
    deposits
}

/// The bank paid each user exactly the payout the ledger booked.
async fn check_bank(world: &World, bank: &BankSim, deposits: &[DepositView], seed: u64) {
    let mut bank_total = 0;
    for account in &world.payout_accounts {
        let page = bank.admin.statement_page(Some(account), 0).await.unwrap();
        bank_total += page
            .movements
            .iter()
            .filter(|m| m.from_account.as_deref() == Some(OPERATING))
            .map(|m| m.amount_krw.get())
            .sum::<i64>();
    }
    let booked: i64 = deposits.iter().map(|d| d.payout_krw).sum();
    assert_eq!(
        bank_total, booked,
        "seed {seed}: the bank paid what the ledger booked"
    );
}

/// What the bank received, over HTTP, across every seed so far.
async fn submissions(bank: &BankSim) -> SubmissionsReport {
    let report = bank.admin.submissions().await.unwrap();
    assert!(!report.overflowed);
    report
}

async fn workers_do_each_thing_once(first_seed: u64, kills: usize) {
    let bank = bank_sim().await;
    let mut landed_total = 0;
    for seed in first_seed..first_seed + SEEDS {
        let Some(mut world) = world(&bank).await else {
            return;
        };
        // Two and three processes, by turns.
        let processes = 2 + usize::try_from(seed % 2).unwrap();
        let started = Instant::now();
        salaries(&mut world, &bank, seed).await;
        let landed = run(&world, &bank, seed, processes, kills).await;
        landed_total += landed;
        let deposits = check_stores(&world, seed).await;
        check_bank(&world, &bank, &deposits, seed).await;
        let report = submissions(&bank).await;
        // The bank decides every request it received, its client killed or not
        // (as a bank does), so a killed worker's successor finds the answer by
        // inquiry and sends nothing again: no id may arrive twice, kills or not.
        assert!(
            !report.overflowed,
            "seed {seed}: the bank's count overflowed"
        );
        assert_eq!(
            report.repeated_total, 0,
            "seed {seed}: ids the bank received twice: {:?}",
            report.repeated
        );
        eprintln!(
            "seed {seed}: {processes} workers, {landed} kills mid-run; the bank so far: {} ids, \
             {} requests, {} cut off by a kill; {:?}: every check holds",
            report.ids_total,
            report.submissions_total,
            report.cut_off_total,
            started.elapsed()
        );
    }
    if kills > 0 {
        assert!(
            landed_total >= usize::try_from(SEEDS).unwrap(),
            "only {landed_total} kills landed while deposits were open"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_and_three_payroll_worker_processes_over_ten_seeds_complete_every_deposit_and_send_no_id_twice()
 {
    workers_do_each_thing_once(1, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payroll_worker_processes_sigkilled_mid_run_over_ten_seeds_still_do_each_thing_once() {
    workers_do_each_thing_once(101, 2).await;
}
