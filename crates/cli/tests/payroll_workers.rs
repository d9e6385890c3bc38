//! Several `settle payroll work` processes over one PostgreSQL schema, against a
//! bank simulator that counts submissions per `bank_tran_id`: every deposit
//! completes, each (deposit, stage) runs once to effect, no id reaches the bank
//! twice, and the ledger holds exactly the transfers of the recorded stages —
//! with and without a worker SIGKILLed mid-run. Seeded; a failing seed is printed.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bank::providers::Facade;
use bank::routing::RoutingTable;
use bank::sim::{OpenAccount, Profile, Salary, SimConfig, Simulator};
use bank::{AccountNumber, HolderName, Transport, TransportConfig, UserId};
use ledger::{Ledger, LedgerConfig};
use money::{Clock, Krw, SystemClock};
use payroll::{DepositState, NewUser, Payroll, PayrollConfig, books};
use rand::{Rng, SeedableRng};
use tokio::process::{Child, Command};

/// The payout operating account: its own, not a fee account.
const OPERATING: &str = "1002000000002";
const HOLDER: &str = "세틀주식회사";
const USERS: usize = 24;
/// A killed worker's claims hold this long.
const LEASE_MS: &str = "1500";
const DEADLINE: Duration = Duration::from_secs(40);

struct World {
    _db: store::testing::TestDb,
    _sim_db: store::testing::TestDb,
    db_url: String,
    sim: Simulator,
    bank_url: String,
    payroll: Payroll,
    ledger: Ledger,
}

async fn world(seed: u64) -> Option<World> {
    let db = store::testing::postgres().await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ledger = Ledger::open(db.store.clone(), clock.clone(), LedgerConfig::default())
        .await
        .unwrap();
    let sim_db = store::testing::sqlite().await;
    let mut sim_config = SimConfig::for_profile(Profile::Test, seed);
    sim_config.deposit_amount_max_krw = Krw::new(100_000);
    sim_config.concurrent_max = 256;
    let sim = Simulator::open(sim_db.store.clone(), sim_config, clock.clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bank_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(bank::sim::serve_simulator(
        sim.clone(),
        listener,
        std::future::pending(),
    ));
    sim.open_account(&OpenAccount {
        account_number: AccountNumber::new(OPERATING).unwrap(),
        holder_name: HolderName::new(HOLDER).unwrap(),
        balance_krw: Krw::new(100_000_000_000),
    })
    .await
    .unwrap();
    let mut transport = TransportConfig::new(&bank_url);
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
        _sim_db: sim_db,
        sim,
        bank_url,
        payroll,
        ledger,
    })
}

/// Enrols [`USERS`] users, pays each one salary of a seeded amount (several
/// payout chunks each), and detects them in one poll round.
async fn salaries(world: &World, seed: u64) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut users = Vec::new();
    for n in 0..USERS {
        let payout = AccountNumber::new(&format!("3333{n:010}")).unwrap();
        let holder = HolderName::new(&format!("직원{n}")).unwrap();
        world
            .sim
            .open_account(&OpenAccount {
                account_number: payout.clone(),
                holder_name: holder.clone(),
                balance_krw: Krw::ZERO,
            })
            .await
            .unwrap();
        users.push(NewUser {
            user_id: UserId::from_uuid(uuid::Uuid::from_u128(
                0x0192_f1a8_7b2c_7000_8000_0000_0000_0000 + n as u128,
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
        world
            .sim
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

/// The installation secret the test and its worker processes share.
const ID_SECRET: &str = "payroll-workers-test-id-secret-0123456789";

fn ids() -> money::DerivedIds {
    money::DerivedIds::new(ID_SECRET.as_bytes()).unwrap()
}

fn worker(world: &World) -> Child {
    Command::new(env!("CARGO_BIN_EXE_settle"))
        .args([
            "payroll",
            "work",
            "--database-url",
            &world.db_url,
            "--bank-url",
            &world.bank_url,
            "--payout-account",
            OPERATING,
            "--payout-holder",
            HOLDER,
            "--poll-every-ms",
            "0",
            "--claim-lease-ms",
            LEASE_MS,
        ])
        .env("RUST_LOG", "error")
        .env("SETTLE_ID_SECRET", ID_SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Runs `processes` workers until every deposit is completed; with `kills`,
/// SIGKILLs a seeded worker at seeded moments and starts a fresh one.
async fn run(world: &World, seed: u64, processes: usize, kills: usize) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ 0x5eed);
    let mut children: Vec<Child> = (0..processes).map(|_| worker(world)).collect();
    let started = Instant::now();
    let mut kills_left = kills;
    let mut next_kill = Duration::from_millis(rng.random_range(300..1_500));
    loop {
        let deposits = world.payroll.deposits().await.unwrap();
        let open = deposits
            .iter()
            .filter(|d| d.state != DepositState::Completed)
            .count();
        if open == 0 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "seed {seed}: {open} deposits not completed after {DEADLINE:?}: {:?}",
            deposits
                .iter()
                .filter(|d| d.state != DepositState::Completed)
                .collect::<Vec<_>>()
        );
        if kills_left > 0 && started.elapsed() >= next_kill {
            let victim = rng.random_range(0..children.len());
            children[victim].start_kill().unwrap();
            let _ = children[victim].wait().await;
            children[victim] = worker(world);
            kills_left -= 1;
            next_kill = started.elapsed() + Duration::from_millis(rng.random_range(200..1_000));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for mut child in children {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// The acceptance checks, read back from the stores and the bank.
async fn check(world: &World, seed: u64) {
    let deposits = world.payroll.deposits().await.unwrap();
    assert_eq!(deposits.len(), USERS, "seed {seed}");
    let submitted = world.sim.submissions();
    assert!(!submitted.overflowed);
    assert_eq!(
        submitted.repeated_total, 0,
        "seed {seed}: ids submitted twice: {:?}",
        submitted.repeated
    );
    let mut per_stage: HashMap<(String, String), usize> = HashMap::new();
    for (deposit, _, stage) in world.payroll.stage_log().await.unwrap() {
        *per_stage.entry((deposit, stage)).or_default() += 1;
    }
    for d in &deposits {
        for stage in ["compute", "repay", "suspend", "payout", "complete"] {
            let runs = per_stage
                .get(&(d.deposit_id.clone(), stage.to_owned()))
                .copied();
            assert_eq!(runs, Some(1), "seed {seed}: {} {stage}", d.deposit_id);
        }
    }
    // No ledger transfer without its recorded stage: each deposit's transfers
    // are exactly those its recorded split calls for, and nothing was undone.
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
        let ids: Vec<_> = purposes
            .iter()
            .map(|p| books::transfer_id(&ids(), &d.deposit_id, p).unwrap())
            .collect();
        let found = world.ledger.lookup_transfers(&ids).await.unwrap();
        let amount = |i: usize| {
            found
                .iter()
                .find(|t| t.id == ids[i])
                .map(|t| t.amount.get())
        };
        let expect = |krw: i64| (krw > 0).then_some(krw);
        assert_eq!(
            amount(0),
            Some(d.amount_krw),
            "seed {seed}: {}",
            d.deposit_id
        );
        assert_eq!(
            amount(1),
            expect(d.repayment_krw),
            "seed {seed}: {}",
            d.deposit_id
        );
        assert_eq!(
            amount(2),
            expect(d.suspend_krw),
            "seed {seed}: {}",
            d.deposit_id
        );
        assert_eq!(
            amount(3),
            expect(d.payout_krw),
            "seed {seed}: {}",
            d.deposit_id
        );
        assert!(
            (4..7).all(|i| amount(i).is_none()),
            "seed {seed}: {} was undone",
            d.deposit_id
        );
    }
    // The bank paid each user exactly their payout.
    let mut paid: HashMap<String, i64> = HashMap::new();
    let mut since = 0;
    loop {
        let page = world.sim.statement(None, since).await.unwrap();
        let Some(last) = page.last() else { break };
        since = last.seq;
        for movement in page {
            if movement.from_account.as_deref() == Some(OPERATING) {
                *paid.entry(movement.to_account.clone()).or_default() += movement.amount_krw.get();
            }
        }
    }
    let bank_total: i64 = paid.values().sum();
    let booked: i64 = deposits.iter().map(|d| d.payout_krw).sum();
    assert_eq!(
        bank_total, booked,
        "seed {seed}: the bank paid what the ledger booked"
    );
}

async fn workers_do_each_thing_once(seeds: &[u64], processes: usize, kills: usize) {
    for &seed in seeds {
        let Some(world) = world(seed).await else {
            return;
        };
        salaries(&world, seed).await;
        run(&world, seed, processes, kills).await;
        check(&world, seed).await;
        eprintln!("seed {seed}: {processes} workers, {kills} kills: every check holds");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_payroll_worker_processes_complete_every_deposit_and_send_no_id_twice() {
    workers_do_each_thing_once(&[1, 2], 2, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_payroll_worker_processes_one_killed_now_and_then_still_do_each_thing_once() {
    workers_do_each_thing_once(&[3], 3, 2).await;
}
