//! `settle fees …` as a real child process on a fresh SQLite file, with the
//! in-process bank simulator beside it: a generated day is recorded, paid,
//! verified and withdrawn by `fees run`, `fees report` agrees with the bank
//! statement to the won, and running everything again changes nothing.

use std::process::{Command, Output};

fn settle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_settle"))
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
