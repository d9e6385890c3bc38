//! `settle serve` as a real child process: a key made by `settle keys create` on
//! the same database works against it, readiness sees the bank, an ops action is
//! audited under the key, `--roles` runs only what it names, and Ctrl-C (SIGINT)
//! stops every role with a clean exit.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

async fn bank_sim(database_url: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_settle"))
        .args([
            "bank-sim",
            "--port",
            "0",
            "--profile",
            "test",
            "--database-url",
            database_url,
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .await
        .unwrap();
    let address = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    (child, format!("http://{address}"))
}

/// The installation's id secret the test's processes share.
const ID_SECRET: &str = "serve-test-id-secret-0123456789abcdef";

async fn serve(database_url: &str, bank_url: &str, roles: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_settle"))
        // serve names no house account by default: the payout account is given.
        .env("SETTLE_PAYOUT_ACCOUNT", "1002000000002")
        .env("SETTLE_PAYOUT_HOLDER", "세틀주식회사")
        .env("SETTLE_ID_SECRET", ID_SECRET)
        .args([
            "serve",
            "--database-url",
            database_url,
            "--bank-url",
            bank_url,
            "--listen",
            "127.0.0.1:0",
            "--roles",
            roles,
        ])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("settle serve: API on ") {
                return rest.split("/v1").next().unwrap().to_owned();
            }
        }
        panic!("settle serve ended before it listened");
    })
    .await
    .unwrap();
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, base)
}

async fn interrupt_and_wait(mut child: Child) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("settle serve stops within 30 s of Ctrl-C")
        .unwrap();
    assert!(exit.success(), "settle serve exited with {exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_with_a_cli_key_audits_ops_actions_and_stops_on_ctrl_c() {
    let dir = std::env::temp_dir().join(format!("settle-serve-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let database_url = format!("sqlite://{}", dir.join("settle.db").display());
    let (_sim, bank_url) =
        bank_sim(&format!("sqlite://{}", dir.join("banksim.db").display())).await;

    let created = Command::new(env!("CARGO_BIN_EXE_settle"))
        .args([
            "keys",
            "create",
            "--role",
            "ops",
            "--database-url",
            &database_url,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let key = created["key"].as_str().unwrap().to_owned();

    let (child, base) = serve(
        &database_url,
        &bank_url,
        "api,dispatcher,reconciler,expiry,fees,payroll",
    )
    .await;
    let http = reqwest::Client::new();
    let ready: serde_json::Value = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["checks"]["bank"], "ok");
    let me: serde_json::Value = http
        .get(format!("{base}/v1/me"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "ops");
    let response = http
        .post(format!("{base}/v1/providers/cohort"))
        .bearer_auth(&key)
        .json(&serde_json::json!({ "percent": 20 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let audit: serde_json::Value = http
        .get(format!("{base}/v1/audit"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<(&str, &str)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["action"].as_str().unwrap(),
                row["key_id"].as_str().unwrap(),
            )
        })
        .collect();
    let key_id = created["key_id"].as_str().unwrap();
    assert_eq!(
        actions,
        vec![("providers.cohort", key_id), ("keys.create", "cli")]
    );
    interrupt_and_wait(child).await;

    // A process with only the workers runs no API: nothing listens for it, and it
    // still stops cleanly.
    let worker = Command::new(env!("CARGO_BIN_EXE_settle"))
        // serve names no house account by default: the payout account is given.
        .env("SETTLE_PAYOUT_ACCOUNT", "1002000000002")
        .env("SETTLE_PAYOUT_HOLDER", "세틀주식회사")
        .env("SETTLE_ID_SECRET", ID_SECRET)
        .args([
            "serve",
            "--database-url",
            &database_url,
            "--bank-url",
            &bank_url,
            "--roles",
            "dispatcher,reconciler,expiry",
        ])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    interrupt_and_wait(worker).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn serve_refuses_to_start_without_an_id_secret_or_with_the_test_one() {
    let dir = std::env::temp_dir().join(format!("settle-serve-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let database_url = format!("sqlite://{}", dir.join("settle.db").display());
    for secret in [
        None,
        Some("too-short"),
        Some("settle-test-only-id-secret-00001"),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_settle"));
        command
            .env_remove("SETTLE_ID_SECRET")
            .env_remove("SETTLE_ID_SECRET_FILE")
            .env("SETTLE_PAYOUT_ACCOUNT", "1002000000002")
            .env("SETTLE_PAYOUT_HOLDER", "세틀주식회사")
            .args([
                "serve",
                "--database-url",
                &database_url,
                "--listen",
                "127.0.0.1:0",
            ]);
        if let Some(secret) = secret {
            command.env("SETTLE_ID_SECRET", secret);
        }
        let output = tokio::time::timeout(Duration::from_secs(30), command.output())
            .await
            .expect("serve refuses at once")
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{secret:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("id_secret_refused"), "{secret:?}: {stderr}");
        assert!(stderr.contains("SETTLE_ID_SECRET"), "{secret:?}: {stderr}");
    }
    assert!(
        !dir.join("settle.db").exists(),
        "no database is touched before the secret is known"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
