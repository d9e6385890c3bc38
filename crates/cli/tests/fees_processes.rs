//! Fee Pay in two `settle fees pay` processes at once over one PostgreSQL schema,
//! against a `settle bank-sim` process that counts every transfer request it
//! receives per `bank_tran_id`: the module lock lets one of them pay, the chunk
//! states keep every id to one send, and a process SIGKILLed mid-run leaves
//! nothing a later run sends again — its chunks are asked about, never re-sent.
//! Ten seeds without kills and ten with; each seed has a fresh schema and bank.
//! Afterwards the day is withdrawn, `fees report` agrees with the bank to the won
//! and the bank received no id twice. A failing seed is printed.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use bank::sim::AdminClient;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The installation's id secret every process of a test shares.
const ID_SECRET: &str = "fees-processes-test-secret-0123456789abcdef";
const DAY: &str = "2026-11-19";
const LOANS: &str = "30";
const SEEDS: u64 = 10;

/// A fresh `settle bank-sim` for one seed, in its own process and database.
struct BankSim {
    _child: Child,
    url: String,
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
        "settle-fees-processes-bank-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_settle"))
        .args([
            "bank-sim",
            "--port",
            "0",
            "--profile",
            "test",
            "--database-url",
        ])
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
    BankSim {
        _child: child,
        url: format!("http://{address}"),
        file,
    }
}

/// The installation's bank and fee accounts (no default names them), as
/// `SETTLE_<SECTION>__<KEY>` variables.
const INSTALLATION_ENV: [(&str, &str); 7] = [
    ("SETTLE_BANK__KIND", "bank-sim"),
    ("SETTLE_BANK__URL", "http://127.0.0.1:9"),
    ("SETTLE_FEES__INSTITUTION_CODE", "F202600001"),
    ("SETTLE_FEES__SETTLEMENT_ACCOUNT", "1002000000001"),
    ("SETTLE_FEES__SETTLEMENT_HOLDER", "세틀주식회사"),
    ("SETTLE_FEES__CORPORATE_ACCOUNT", "1002000000009"),
    ("SETTLE_FEES__CORPORATE_HOLDER", "세틀주식회사 법인"),
];

/// `settle fees <command> --day DAY` on the seed's database and bank. A killed
/// run's unknown chunks are proven failed one second after they became unknown:
/// the simulator decides a request within a few milliseconds, or never.
fn fees(db_url: &str, bank: &BankSim, command: &str) -> Command {
    let mut settle = Command::new(env!("CARGO_BIN_EXE_settle"));
    settle
        .args(["fees", command, "--day", DAY, "--database-url", db_url])
        .args(["--bank-url", &bank.url, "--not-found-grace-ms", "1000"])
        .env("SETTLE_ID_SECRET", ID_SECRET)
        .envs(INSTALLATION_ENV)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    settle
}

fn json(output: &Output, what: &str) -> serde_json::Value {
    assert!(
        output.status.success() || output.status.code() == Some(3),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
}

async fn run(mut command: Command, what: &str) -> serde_json::Value {
    json(&command.output().await.unwrap(), what)
}

/// How the Pay runs of a seed ended.
#[derive(Debug, Default)]
struct Runs {
    killed_mid_run: usize,
    done: usize,
    busy: usize,
    already_done: usize,
}

/// Two Pay processes at once; with `kill`, one still running after a seeded
/// moment is SIGKILLed.
async fn pay_twice_at_once(
    db_url: &str,
    bank: &BankSim,
    rng: &mut rand::rngs::SmallRng,
    kill: bool,
    seed: u64,
    runs: &mut Runs,
) {
    let mut children: Vec<Child> = (0..2)
        .map(|_| {
            let mut pay = fees(db_url, bank, "pay");
            pay.args(["--concurrency", "2"]);
            pay.spawn().unwrap()
        })
        .collect();
    if kill {
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..600))).await;
        let running: Vec<usize> = (0..children.len())
            .filter(|&i| matches!(children[i].try_wait(), Ok(None)))
            .collect();
        if !running.is_empty() {
            let victim = running[rng.random_range(0..running.len())];
            children[victim].start_kill().unwrap();
            runs.killed_mid_run += 1;
        }
    }
    for child in children {
        let output = child.wait_with_output().await.unwrap();
        if output.status.code().is_none() {
            continue; // the one killed
        }
        let report = json(&output, "fees pay");
        match report["outcome"].as_str() {
            Some("done") => runs.done += 1,
            Some("busy") => runs.busy += 1,
            Some("already_done") => runs.already_done += 1,
            _ => panic!("seed {seed}: {report}"),
        }
    }
}

/// `settle fees status --day DAY`: it reads the database only, no bank flags.
fn status(db_url: &str) -> Command {
    let mut settle = Command::new(env!("CARGO_BIN_EXE_settle"));
    settle
        .args(["fees", "status", "--day", DAY, "--database-url", db_url])
        .env("SETTLE_ID_SECRET", ID_SECRET)
        .envs(INSTALLATION_ENV)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    settle
}

/// Runs the whole day (Record, Pay, Verify, Withdraw) until it is withdrawn; a
/// killed run's unknown chunks need the not-found grace to pass first.
async fn finish(db_url: &str, bank: &BankSim, seed: u64) {
    let started = Instant::now();
    loop {
        run(fees(db_url, bank, "run"), "fees run").await;
        let day = run(status(db_url), "fees status").await;
        if day["status"]["state"] == "withdrawn" {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "seed {seed}: the day is not withdrawn after 30 s: {day}"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

async fn one_seed(seed: u64, kills: bool) -> Option<Runs> {
    let db = store::testing::postgres().await?;
    let bank = bank_sim().await;
    let started = Instant::now();
    let mut generate = fees(&db.url, &bank, "generate");
    generate.args(["--loans", LOANS, "--seed", &seed.to_string()]);
    let generated = run(generate, "fees generate").await;
    run(fees(&db.url, &bank, "record"), "fees record").await;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut runs = Runs::default();
    for _ in 0..2 {
        pay_twice_at_once(&db.url, &bank, &mut rng, kills, seed, &mut runs).await;
    }
    finish(&db.url, &bank, seed).await;
    let report = run(fees(&db.url, &bank, "report"), "fees report").await;
    assert_eq!(report["agrees"], true, "seed {seed}: {report}");
    assert_eq!(report["duplicates"], serde_json::json!([]), "seed {seed}");
    assert_eq!(
        report["bank_paid_krw"], generated["total_krw"],
        "seed {seed}"
    );
    assert_eq!(report["bank_withdrawn_krw"], generated["total_krw"]);
    let submitted = AdminClient::new(&bank.url).submissions().await.unwrap();
    assert!(!submitted.overflowed);
    assert_eq!(
        submitted.repeated_total, 0,
        "seed {seed}: ids the bank received twice: {:?}",
        submitted.repeated
    );
    let check = Command::new(env!("CARGO_BIN_EXE_settle"))
        .args(["ledger", "check", "--database-url", &db.url])
        .output()
        .await
        .unwrap();
    assert!(
        check.status.success(),
        "seed {seed}: the ledger balances: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    eprintln!(
        "seed {seed}: Pay runs {runs:?}; {} ids, {} requests ({} cut off), {:?}",
        submitted.ids_total,
        submitted.submissions_total,
        submitted.cut_off_total,
        started.elapsed()
    );
    Some(runs)
}

async fn pay_in_two_processes(first_seed: u64, kills: bool) {
    let (mut killed, mut busy) = (0, 0);
    for seed in first_seed..first_seed + SEEDS {
        let Some(runs) = one_seed(seed, kills).await else {
            return;
        };
        killed += usize::from(runs.killed_mid_run > 0);
        busy += runs.busy;
    }
    assert!(busy > 0, "the two processes never met at the module lock");
    if kills {
        assert!(
            killed >= 5,
            "only {killed} of {SEEDS} seeds had a kill land mid-run"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_fee_pay_processes_over_ten_seeds_pay_each_item_once_and_send_no_id_twice() {
    pay_in_two_processes(1, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fee_pay_processes_sigkilled_mid_run_over_ten_seeds_still_send_no_id_twice() {
    pay_in_two_processes(101, true).await;
}
