//! Maker-checker holds on the command line too (issue 15, item 7): where the
//! installation requires a second ops key for an action (`SETTLE_REQUIRE_APPROVAL`,
//! as `settle serve` reads it), the CLI command that would do it alone —
//! `fees withdraw|run`, `payroll retry|rollback`, `keys create --role ops` once an
//! ops key works — refuses with `approval_required`, names the API request that
//! asks for the approval, and touches nothing. Without the setting they act.

use std::path::PathBuf;
use std::process::{Command, Output};

fn dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "settle-cli-approval-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn settle(require: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_settle"));
    command
        .env(
            "SETTLE_ID_SECRET",
            "approval-cli-test-secret-0123456789abcdef",
        )
        .env_remove("SETTLE_REQUIRE_APPROVAL")
        .args(args);
    if let Some(require) = require {
        command.env("SETTLE_REQUIRE_APPROVAL", require);
    }
    command.output().expect("settle runs")
}

/// The refusal: exit 2, `approval_required`, the API request named.
fn assert_refused(output: &Output, via: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let error: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap();
    assert_eq!(error["code"], "approval_required", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(via), "{message}");
    assert!(message.contains("settle approvals approve"), "{message}");
}

#[test]
fn guarded_commands_refuse_without_an_approval_and_touch_nothing() {
    let dir = dir();
    let db = format!("sqlite://{}", dir.join("settle.db").display());
    let day = "2026-11-20";
    for command in ["withdraw", "run"] {
        let output = settle(
            Some("fees_withdraw"),
            &["fees", command, "--day", day, "--database-url", &db],
        );
        assert_refused(&output, "POST /v1/fees/days/2026-11-20/withdraw");
    }
    for (action, guarded) in [("retry", "payroll_retry"), ("rollback", "payroll_rollback")] {
        let output = settle(
            Some(guarded),
            &["payroll", action, "D000000000042", "--database-url", &db],
        );
        assert_refused(
            &output,
            &format!("POST /v1/payroll/deposits/D000000000042/{action}"),
        );
    }
    // Refused before any store was opened: no database file was made.
    assert!(
        !dir.join("settle.db").exists(),
        "a refused command created the database"
    );
    // `all` covers every guarded action; one not listed is not held.
    let output = settle(
        Some("all"),
        &["fees", "withdraw", "--day", day, "--database-url", &db],
    );
    assert_refused(&output, "POST /v1/fees/days/2026-11-20/withdraw");
    let simulator_config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/settle-simulator.toml"
    );
    let output = settle(
        Some("payroll_retry"),
        &[
            "--config",
            simulator_config,
            "fees",
            "record",
            "--day",
            day,
            "--database-url",
            &db,
        ],
    );
    assert!(
        output.status.success(),
        "record is not guarded: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_second_ops_key_needs_the_api_once_the_first_works() {
    let dir = dir();
    let db = format!("sqlite://{}", dir.join("settle.db").display());
    let create = ["keys", "create", "--role", "ops", "--database-url", &db];
    // The first ops key is the installation's bootstrap: made here.
    let first = settle(Some("ops_key_create"), &create);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = settle(Some("ops_key_create"), &create);
    assert_refused(&second, "POST /v1/keys");
    // Service keys are not guarded, and without the setting an ops key is made.
    let service = settle(
        Some("ops_key_create"),
        &["keys", "create", "--role", "service", "--database-url", &db],
    );
    assert!(service.status.success());
    let unguarded = settle(None, &create);
    assert!(
        unguarded.status.success(),
        "{}",
        String::from_utf8_lossy(&unguarded.stderr)
    );
    let listed = settle(None, &["keys", "list", "--database-url", &db]);
    assert!(listed.status.success());
    let text = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(
        text.matches("\"ops\"").count(),
        2,
        "the refused create made no key: {text}"
    );
}
