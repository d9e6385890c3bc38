//! `settle fees …` as a real child process on a fresh SQLite file, with the
//! in-process bank simulator beside it: a generated day is recorded, paid,
//! verified and withdrawn by `fees run`, `fees report` agrees with the bank
//! statement to the won, and running everything again changes nothing.

use std::process::{Command, Output};

/// The installation's id secret every `settle fees` process of a test shares.
const ID_SECRET: &str = "fees-cli-test-secret-0123456789abcdef";

/// The try-out installation: the in-process simulator and its accounts.
const SIMULATOR_CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/settle-simulator.toml"
);

fn settle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_settle"))
        .env("SETTLE_ID_SECRET", ID_SECRET)
        .env("SETTLE_CONFIG", SIMULATOR_CONFIG)
        .args(args)
        .output()
        .expect("settle runs")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "settle failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

#[test]
fn fees_run_settles_a_generated_day_and_the_report_agrees_with_the_bank() {
    let dir =
        std::env::temp_dir().join(format!("settle-cli-fees-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("settle.db").display());
    let day = "2026-11-20";

    let generated = json(&settle(&[
        "fees",
        "generate",
        "--day",
        day,
        "--loans",
        "20",
        "--seed",
        "5",
        "--database-url",
        &db,
    ]));
    assert_eq!(generated["loans"], 20);
    assert_eq!(generated["refused"], 0);

    let runs = json(&settle(&[
        "fees",
        "run",
        "--day",
        day,
        "--database-url",
        &db,
    ]));
    let outcomes: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["done", "done", "done", "done"]);

    let report = json(&settle(&[
        "fees",
        "report",
        "--day",
        day,
        "--database-url",
        &db,
    ]));
    assert_eq!(report["agrees"], true);
    for line in report["kinds"].as_array().unwrap() {
        assert_eq!(line["ledger_krw"], line["bank_krw"], "{line}");
        assert_eq!(line["recorded_krw"], line["bank_krw"], "{line}");
    }
    assert_eq!(report["bank_withdrawn_krw"], generated["total_krw"]);

    let again = json(&settle(&[
        "fees",
        "run",
        "--day",
        day,
        "--database-url",
        &db,
    ]));
    for run in again.as_array().unwrap() {
        assert_eq!(run["outcome"], "already_done", "{run}");
    }
    let status = json(&settle(&[
        "fees",
        "status",
        "--day",
        day,
        "--database-url",
        &db,
    ]));
    assert_eq!(status["status"]["state"], "withdrawn");
    assert_eq!(status["status"]["paid_krw"], generated["total_krw"]);

    let bad = settle(&["fees", "pay", "--day", "2026-02-30", "--database-url", &db]);
    assert_eq!(bad.status.code(), Some(2));
    let error: serde_json::Value = serde_json::from_slice(&bad.stderr).unwrap();
    assert_eq!(error["code"], "bad_business_day");

    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_payout_process_killed_with_sigkill_twenty_times_still_pays_each_item_once() {
    use rand::{Rng, SeedableRng};

    let dir = std::env::temp_dir().join(format!(
        "settle-cli-fees-kill-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("settle.db").display());
    let day = "2026-11-19";
    // A killed run leaves its SQLite lease behind; a short lease lets the next run
    // in. The simulator lives in the killed process, so nothing it was sent can
    // land later: "not found" is proof at once.
    let tuning = ["--lock-lease-ms", "1", "--not-found-grace-ms", "0"];
    let with = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--database-url".to_owned(), db.clone()]);
        all.extend(tuning.iter().map(|a| a.to_string()));
        all
    };
    let run = |args: &[&str]| {
        let args = with(args);
        settle(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let generated = json(&run(&[
        "fees", "generate", "--day", day, "--loans", "300", "--seed", "8",
    ]));
    json(&run(&["fees", "record", "--day", day]));

    let seed = 19;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut killed_mid_run = 0;
    for _ in 0..20 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_settle"))
            .env("SETTLE_ID_SECRET", ID_SECRET)
            .env("SETTLE_CONFIG", SIMULATOR_CONFIG)
            .args(with(&["fees", "pay", "--day", day, "--concurrency", "2"]))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The kill moment, drawn from the seed.
        std::thread::sleep(std::time::Duration::from_millis(rng.random_range(20..300)));
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Orphaned chunks become unknown, then are confirmed or proven failed.
        json(&run(&["fees", "verify", "--day", day]));
        json(&run(&["fees", "verify", "--day", day]));
    }
    eprintln!("seed {seed}: {killed_mid_run} of 20 kills landed while settle ran");
    let before = json(&settle(&[
        "fees",
        "status",
        "--day",
        day,
        "--runs",
        "1000",
        "--database-url",
        &db,
    ]));
    let pay_runs = before["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["module"] == "pay")
        .count();
    eprintln!(
        "pay runs that finished: {pay_runs}; chunks {}",
        before["status"]["chunks"]
    );
    assert!(
        pay_runs <= 10,
        "most payouts were killed before they finished: {pay_runs}"
    );
    assert!(
        killed_mid_run >= 15,
        "seed {seed}: only {killed_mid_run} kills landed mid-run"
    );

    let mut state = String::new();
    for _ in 0..10 {
        json(&run(&["fees", "run", "--day", day]));
        let status = json(&settle(&[
            "fees",
            "status",
            "--day",
            day,
            "--database-url",
            &db,
        ]));
        state = status["status"]["state"].as_str().unwrap().to_owned();
        if state == "withdrawn" {
            break;
        }
    }
    assert_eq!(state, "withdrawn", "seed {seed}");
    let report = json(&run(&["fees", "report", "--day", day]));
    assert_eq!(report["agrees"], true, "seed {seed}: {report}");
    assert_eq!(report["duplicates"].as_array().unwrap().len(), 0);
    assert_eq!(report["bank_paid_krw"], generated["total_krw"]);
    assert_eq!(report["bank_withdrawn_krw"], generated["total_krw"]);
    let check = settle(&["ledger", "check", "--database-url", &db]);
    assert!(
        check.status.success(),
        "the ledger balances: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fees_pay_with_no_bank_configured_refuses_and_touches_nothing() {
    let dir = std::env::temp_dir().join(format!(
        "settle-cli-fees-no-bank-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("settle.db");
    // The installation names its accounts but no bank.
    let config = dir.join("settle.toml");
    let simulator = std::fs::read_to_string(SIMULATOR_CONFIG).unwrap();
    let without_bank = simulator.replace("[bank]\nkind = \"simulator\"\n", "");
    assert_ne!(without_bank, simulator);
    std::fs::write(&config, without_bank).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_settle"))
        .env("SETTLE_ID_SECRET", ID_SECRET)
        .env_remove("SETTLE_CONFIG")
        .args(["--config", config.to_str().unwrap()])
        .args(["fees", "pay", "--day", "2026-11-20", "--database-url"])
        .arg(format!("sqlite://{}", db.display()))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr: serde_json::Value = serde_json::from_slice(&output.stderr).unwrap();
    assert_eq!(stderr["code"], "bank_not_configured", "{stderr}");
    assert!(!db.exists(), "nothing is opened, nothing is paid");
    let _ = std::fs::remove_dir_all(&dir);
}
