//! `settle serve` in the production shape: real child processes over one
//! PostgreSQL schema and a private NATS JetStream server. A single dispatcher
//! process brings the history read model to the core after a burst that ends on
//! a key's last event, with no later event to reveal a gap; one process with every
//! role holds at most 20 connections after load; SIGTERM during load stops it
//! with exit 0 and nothing is lost; SIGTERM stops the roles within the shutdown
//! grace with the broker gone, and during a fee run against a bank answering in
//! 2.5 s once the window of calls in flight is answered.

use std::process::Stdio;
use std::time::{Duration, Instant};

use store::Store;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use torture::nats_server::PrivateNats;
use torture::scratch::Scratch;

/// The bound the backbone promises for repairing a lost last event.
const REPAIR_BOUND: Duration = Duration::from_secs(30);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A scratch schema on the test PostgreSQL, or `None` outside CI when it is down.
async fn scratch(label: &str) -> Option<Scratch> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned());
    match Scratch::create(Some(&url), label).await {
        Ok(scratch) => Some(scratch),
        Err(error) if !in_ci() => {
            eprintln!("skipping: PostgreSQL at {url} is unavailable: {error}");
            None
        }
        Err(error) => panic!("CI is set and PostgreSQL at {url} is unavailable: {error}"),
    }
}

fn settle() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_settle"));
    command.kill_on_drop(true);
    // No house account and no bank has a default: the installation names them,
    // here through SETTLE_<SECTION>__<KEY> variables (the flags override them).
    command
        .env("SETTLE_PAYOUT_ACCOUNT", "1002000000002")
        .env("SETTLE_PAYOUT_HOLDER", "세틀주식회사")
        .env("SETTLE_BANK__KIND", "bank-sim")
        .env("SETTLE_BANK__URL", "http://127.0.0.1:9")
        .env("SETTLE_FEES__INSTITUTION_CODE", "F202600001")
        .env("SETTLE_FEES__SETTLEMENT_ACCOUNT", "1002000000001")
        .env("SETTLE_FEES__SETTLEMENT_HOLDER", "세틀주식회사")
        .env("SETTLE_FEES__CORPORATE_ACCOUNT", "1002000000009")
        .env("SETTLE_FEES__CORPORATE_HOLDER", "세틀주식회사 법인")
        .env(
            "SETTLE_ID_SECRET",
            "production-shape-test-id-secret-0123456789",
        );
    command
}

/// Starts `settle serve` and waits until it says it runs; returns the API base
/// URL when the process serves the API.
async fn serve(url: &str, nats: &str, roles: &str, extra: &[&str]) -> (Child, Option<String>) {
    serve_with(url, Some(nats), "http://127.0.0.1:9", roles, extra).await
}

/// [`serve`] with the bank named, and without NATS (in-process dispatchers)
/// when `nats` is `None`.
async fn serve_with(
    url: &str,
    nats: Option<&str>,
    bank: &str,
    roles: &str,
    extra: &[&str],
) -> (Child, Option<String>) {
    let mut command = settle();
    command.args(["-v", "serve", "--database-url", url, "--bank-url", bank]);
    if let Some(nats) = nats {
        command.args(["--nats-url", nats, "--nats-namespace", "T"]);
    }
    let mut child = command
        .args(["--listen", "127.0.0.1:0", "--roles", roles])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        let mut base = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("settle serve: API on ") {
                base = rest.split("/v1").next().map(str::to_owned);
            }
            if line.contains("settle serve running") {
                return base;
            }
        }
        panic!("settle serve ended before it ran");
    })
    .await
    .expect("settle serve starts within 60 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, base)
}

async fn cli(args: &[&str]) -> serde_json::Value {
    let output = settle().args(args).output().await.unwrap();
    assert!(
        output.status.success() || output.status.code() == Some(3),
        "settle {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
}

async fn count(store: &Store, sql: &str) -> i64 {
    store::on_pool!(store, sqlx::query_scalar(sql), fetch_one).unwrap_or(-1)
}

/// Rows of the core's entries that the history read model lacks or has wrong.
const HISTORY_DIFFERS: &str = "SELECT COUNT(*) FROM ledger_entries e
     LEFT JOIN channel_history_entries h ON h.account_id = e.account_id AND h.seq = e.seq
     WHERE h.seq IS NULL";

async fn wait_until_history_equals_core(store: &Store, bound: Duration) -> (i64, Duration) {
    let started = Instant::now();
    loop {
        let missing = count(store, HISTORY_DIFFERS).await;
        if missing == 0 || started.elapsed() > bound {
            return (missing, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

async fn stop(mut child: Child, signal: &str, bound: Duration) -> std::process::ExitStatus {
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    tokio::time::timeout(bound, child.wait())
        .await
        .unwrap_or_else(|_| panic!("settle serve did not stop within {bound:?} of {signal}"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_dispatcher_brings_history_to_the_core_after_a_burst_ending_on_a_last_event() {
    let Some(scratch) = scratch("lastevent").await else {
        return;
    };
    let nats = PrivateNats::start(&scratch.dir.join("nats")).await.unwrap();
    let url = scratch.url.clone();
    let accounts: Vec<String> = (0..4).map(|_| id()).collect();
    for account in &accounts {
        cli(&[
            "ledger",
            "create-account",
            "--id",
            account,
            "--database-url",
            &url,
        ])
        .await;
    }
    let (dispatcher, _) = serve(&url, &nats.url(), "dispatcher", &[]).await;
    // A burst of 30 transfers; the last one is the only event of its pair of
    // keys' final seq, and nothing follows it.
    for n in 0..30 {
        let (debit, credit) = (&accounts[n % 3], &accounts[(n + 1) % 3]);
        let (debit, credit) = if n == 29 {
            (&accounts[0], &accounts[3])
        } else {
            (debit, credit)
        };
        cli(&[
            "ledger",
            "transfer",
            "--id",
            &id(),
            "--debit",
            debit,
            "--credit",
            credit,
            "--amount",
            "1000",
            "--database-url",
            &url,
        ])
        .await;
    }
    let store = Store::connect(&scratch.parent_url).await.unwrap();
    let (missing, took) = wait_until_history_equals_core(&store, REPAIR_BOUND).await;
    let entries = count(&store, "SELECT COUNT(*) FROM ledger_entries").await;
    let exit = stop(dispatcher, "-TERM", Duration::from_secs(20)).await;
    assert_eq!(entries, 60);
    assert_eq!(
        missing, 0,
        "history lacks {missing} of the core's {entries} entries after {took:?}"
    );
    assert!(exit.success(), "SIGTERM exits 0, got {exit}");
    store.close().await;
    nats.stop().await;
    scratch.finish(false).await.unwrap();
}

/// A service key for the API on `url`.
async fn service_key(url: &str) -> String {
    let created = cli(&[
        "keys",
        "create",
        "--role",
        "service",
        "--grant-house-accounts",
        "--database-url",
        url,
    ])
    .await;
    created["key"].as_str().unwrap().to_owned()
}

/// Opens `accounts` accounts, funds them from a house account, then moves money
/// between them with `writers` concurrent clients for `duration`. Returns the
/// transfer ids the API answered 200/201 to.
async fn load(
    base: &str,
    key: &str,
    accounts: usize,
    writers: usize,
    duration: Duration,
) -> Vec<String> {
    let http = reqwest::Client::new();
    let post = async |path: &str, body: serde_json::Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
    };
    let house = id();
    post("/v1/accounts", serde_json::json!({ "id": house }))
        .await
        .unwrap();
    let ids: Vec<String> = (0..accounts).map(|_| id()).collect();
    for account in &ids {
        post("/v1/accounts", serde_json::json!({ "id": account }))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + duration;
    let mut clients = tokio::task::JoinSet::new();
    for writer in 0..writers {
        let (http, base, key, ids, house) = (
            http.clone(),
            base.to_owned(),
            key.to_owned(),
            ids.clone(),
            house.clone(),
        );
        clients.spawn(async move {
            let mut accepted = Vec::new();
            let mut n = writer;
            while Instant::now() < deadline {
                let transfer = id();
                let debit = if n % 5 == 0 { &house } else { &ids[n % ids.len()] };
                let credit = &ids[(n * 7 + 1) % ids.len()];
                let sent = http
                    .post(format!("{base}/v1/transfers"))
                    .bearer_auth(&key)
                    .json(&serde_json::json!({ "id": transfer, "debit_account_id": debit, "credit_account_id": credit, "amount": 10 }))
                    .send()
                    .await;
                match sent {
                    Ok(answer) if answer.status().is_success() => accepted.push(transfer),
                    Ok(_) => {}
                    Err(_) => break,
                }
                n += writers;
            }
            accepted
        });
    }
    let mut accepted = Vec::new();
    while let Some(done) = clients.join_next().await {
        accepted.extend(done.unwrap());
    }
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_serve_process_with_every_role_holds_at_most_twenty_connections_after_load() {
    let Some(scratch) = scratch("budget").await else {
        return;
    };
    let nats = PrivateNats::start(&scratch.dir.join("nats")).await.unwrap();
    let key = service_key(&scratch.url).await;
    let roles = "api,dispatcher,reconciler,expiry,fees,payroll";
    let (child, base) = serve(&scratch.url, &nats.url(), roles, &[]).await;
    let accepted = load(&base.unwrap(), &key, 20, 16, Duration::from_secs(5)).await;
    let store = Store::connect(&scratch.parent_url).await.unwrap();
    let name = scratch.application_name().unwrap().to_owned();
    let held = count(
        &store,
        &format!("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = '{name}'"),
    )
    .await;
    eprintln!("{held} connections after {} transfers", accepted.len());
    let exit = stop(child, "-TERM", Duration::from_secs(20)).await;
    assert!(
        accepted.len() > 50,
        "the load ran ({} transfers)",
        accepted.len()
    );
    assert!(
        held <= 20,
        "one process with every role holds {held} connections"
    );
    assert!(held >= 2, "the count sees the process ({held})");
    assert!(exit.success(), "{exit}");
    store.close().await;
    nats.stop().await;
    scratch.finish(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_load_exits_zero_and_every_accepted_transfer_reaches_the_history() {
    let Some(scratch) = scratch("sigterm").await else {
        return;
    };
    let nats = PrivateNats::start(&scratch.dir.join("nats")).await.unwrap();
    let key = service_key(&scratch.url).await;
    let (api, base) = serve(&scratch.url, &nats.url(), "api", &[]).await;
    let (dispatcher, _) = serve(&scratch.url, &nats.url(), "dispatcher", &[]).await;
    let base = base.unwrap();
    let load = tokio::spawn({
        let (base, key) = (base.clone(), key.clone());
        async move { load(&base, &key, 20, 8, Duration::from_secs(6)).await }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The default grace is 10 s; the process must be gone well within it + margin.
    let exit = stop(dispatcher, "-TERM", Duration::from_secs(15)).await;
    assert!(exit.success(), "SIGTERM during load exits 0, got {exit}");
    let accepted = load.await.unwrap();
    let (dispatcher, _) = serve(&scratch.url, &nats.url(), "dispatcher", &[]).await;
    let store = Store::connect(&scratch.parent_url).await.unwrap();
    let (missing, took) = wait_until_history_equals_core(&store, REPAIR_BOUND).await;
    let in_core = count(&store, "SELECT COUNT(*) FROM ledger_transfers").await;
    assert!(
        accepted.len() > 50,
        "the load ran ({} transfers)",
        accepted.len()
    );
    assert!(
        in_core >= accepted.len() as i64,
        "every accepted transfer is in the core"
    );
    assert_eq!(missing, 0, "history lacks {missing} entries after {took:?}");
    assert!(
        stop(dispatcher, "-TERM", Duration::from_secs(20))
            .await
            .success()
    );
    assert!(stop(api, "-TERM", Duration::from_secs(20)).await.success());
    store.close().await;
    nats.stop().await;
    scratch.finish(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_cannot_get_its_connections_fails_fast_with_a_clear_error() {
    let Some(scratch) = scratch("budgetfail").await else {
        return;
    };
    // A role the server gives only two connections: the process wants five.
    let store = Store::connect(&scratch.parent_url).await.unwrap();
    let role = format!("settle_budget_{}", uuid::Uuid::now_v7().simple());
    let create = format!("CREATE ROLE {role} LOGIN CONNECTION LIMIT 2");
    store::on_pool!(&store, sqlx::query(&create), execute).unwrap();
    let server = scratch.server_url().unwrap().to_owned();
    let url = server.replacen("://root@", &format!("://{role}@"), 1);
    let started = Instant::now();
    let output = settle()
        .args(["serve", "--database-url", &url, "--roles", "expiry"])
        .args(["--database-connections-max", "5"])
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("it fails within 30 s, not at the first load")
        .unwrap();
    let took = started.elapsed();
    let drop = format!("DROP ROLE {role}");
    store::on_pool!(&store, sqlx::query(&drop), execute).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("database_connections_unavailable"),
        "{stderr}"
    );
    assert!(
        stderr.contains("too many connections"),
        "the server's reason is shown: {stderr}"
    );
    assert!(took < Duration::from_secs(15), "failed after {took:?}");
    store.close().await;
    scratch.finish(false).await.unwrap();
}

/// A process SIGTERMed after the broker died stops on its own, before its grace
/// would cut anything.
const NATS_DOWN_GRACE_MS: u64 = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_nats_down_stops_every_role_within_the_shutdown_grace() {
    let Some(scratch) = scratch("natsdown").await else {
        return;
    };
    if !torture::nats_server::binary().exists() {
        assert!(!in_ci(), "nats-server is missing in CI");
        eprintln!("skipping: no nats-server");
        return;
    }
    let nats = PrivateNats::start(&scratch.dir.join("nats")).await.unwrap();
    let key = service_key(&scratch.url).await;
    let grace = NATS_DOWN_GRACE_MS.to_string();
    let extra = ["--shutdown-grace-ms", grace.as_str()];
    let (api, base) = serve(&scratch.url, &nats.url(), "api", &extra).await;
    let roles = "dispatcher,reconciler,expiry,payroll";
    let (workers, _) = serve(&scratch.url, &nats.url(), roles, &extra).await;
    // The broker dies; transfers keep coming, so the relay has rows to publish
    // and the stage workers have streams they cannot reach.
    nats.stop().await;
    let accepted = load(&base.unwrap(), &key, 5, 4, Duration::from_secs(2)).await;
    assert!(
        !accepted.is_empty(),
        "the API took transfers with NATS down"
    );
    let asked = Instant::now();
    let exit = stop(workers, "-TERM", Duration::from_secs(30)).await;
    let took = asked.elapsed();
    eprintln!("SIGTERM with NATS down: exit {exit} after {took:?}");
    assert!(exit.success(), "SIGTERM with NATS down exits 0, got {exit}");
    // Every role stopped by itself: the grace cut nothing (roles that were still
    // connecting to the dead broker included).
    let bound = Duration::from_millis(NATS_DOWN_GRACE_MS);
    assert!(took < bound, "stopped after {took:?}, grace {bound:?}");
    let asked = Instant::now();
    let exit = stop(api, "-TERM", Duration::from_secs(30)).await;
    eprintln!(
        "and the API process: exit {exit} after {:?}",
        asked.elapsed()
    );
    assert!(exit.success(), "{exit}");
    let store = Store::connect(&scratch.parent_url).await.unwrap();
    let unrelayed = count(
        &store,
        "SELECT COUNT(*) FROM outbox WHERE relayed_at_ms IS NULL",
    )
    .await;
    assert!(unrelayed > 0, "the accepted transfers wait in the outbox");
    store.close().await;
    scratch.finish(false).await.unwrap();
}

async fn bank_sim(latency_ms: u64, dir: &std::path::Path) -> (Child, String) {
    let mut child = settle()
        .args([
            "bank-sim",
            "--port",
            "0",
            "--latency-ms",
            &latency_ms.to_string(),
        ])
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.join("bank.db").display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .await
        .unwrap();
    let address = first.trim().strip_prefix("listening on ").unwrap();
    (child, format!("http://{address}"))
}

const FEE_DAY: &str = "2026-11-19";
/// The bank's latency in the fee shutdown test, and the serve grace it runs with.
const BANK_LATENCY_MS: u64 = 2_500;
const FEES_GRACE_MS: u64 = 10_000;

async fn fees_cli(command: &str, url: &str, bank: &str, extra: &[&str]) -> serde_json::Value {
    let args = ["fees", command, "--day", FEE_DAY, "--database-url", url];
    let bank_args = ["--bank-url", bank];
    let all: Vec<&str> = args
        .iter()
        .chain(&bank_args)
        .chain(extra)
        .copied()
        .collect();
    cli(&all).await
}

/// The day's chunks per state, read from `fees status`.
async fn chunks(url: &str) -> serde_json::Value {
    cli(&["fees", "status", "--day", FEE_DAY, "--database-url", url]).await["status"]["chunks"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_fee_run_against_a_slow_bank_stops_after_the_window_in_flight() {
    let Some(scratch) = scratch("feestop").await else {
        return;
    };
    let (mut bank, bank_url) = bank_sim(BANK_LATENCY_MS, &scratch.dir).await;
    let generated = fees_cli("generate", &scratch.url, &bank_url, &["--loans", "30"]).await;
    fees_cli("record", &scratch.url, &bank_url, &[]).await;
    let grace = FEES_GRACE_MS.to_string();
    let extra = ["--shutdown-grace-ms", grace.as_str()];
    let (child, _) = serve_with(&scratch.url, None, &bank_url, "fees", &extra).await;
    // Wait until the scheduler's Pay has its first window at the bank.
    let started = Instant::now();
    while chunks(&scratch.url).await["sent"].as_i64().unwrap_or(0) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Pay never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let asked = Instant::now();
    let exit = stop(child, "-TERM", Duration::from_secs(60)).await;
    let took = asked.elapsed();
    let after = chunks(&scratch.url).await;
    eprintln!("SIGTERM during a fee run: exit {exit} after {took:?}; chunks {after}");
    assert!(exit.success(), "exit 0, got {exit}");
    // The window in flight is answered (2.5 s at most), then the run stops:
    // well inside the grace, and nothing is left sent without its answer.
    let bound = Duration::from_millis(BANK_LATENCY_MS + 6_000);
    assert!(took < bound, "stopped after {took:?}, bound {bound:?}");
    assert!(took < Duration::from_millis(FEES_GRACE_MS));
    assert_eq!(after["sent"].as_i64().unwrap_or(0), 0, "{after}");
    assert!(after["succeeded"].as_i64().unwrap_or(0) > 0, "{after}");
    assert!(
        after["reserved"].as_i64().unwrap_or(0) > 0,
        "the rest waits: {after}"
    );
    // The next run resumes where it stopped and pays the rest once.
    let resumed = fees_cli("run", &scratch.url, &bank_url, &[]).await;
    eprintln!("resumed: {resumed}");
    let report = fees_cli("report", &scratch.url, &bank_url, &[]).await;
    assert_eq!(report["agrees"], true, "{report}");
    assert_eq!(report["bank_paid_krw"], generated["total_krw"]);
    let submitted = bank::sim::AdminClient::new(&bank_url)
        .submissions()
        .await
        .unwrap();
    assert_eq!(submitted.repeated_total, 0, "{:?}", submitted.repeated);
    let _ = bank.start_kill();
    let _ = bank.wait().await;
    scratch.finish(false).await.unwrap();
}

/// `settle events status` read against the tables: the ledger stream's backlog
/// while no process relays it, and none once a dispatcher has relayed it.
async fn events_status(url: &str, store: &Store) -> serde_json::Value {
    let status = cli(&["events", "status", "--database-url", url]).await;
    let ledger = status["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "ledger")
        .cloned()
        .unwrap_or_else(|| panic!("no ledger stream: {status}"));
    let events = count(store, "SELECT COUNT(*) FROM outbox WHERE stream = 'ledger'").await;
    let unrelayed = count(
        store,
        "SELECT COUNT(*) FROM outbox WHERE stream = 'ledger' AND relayed_at_ms IS NULL",
    )
    .await;
    assert_eq!(ledger["events"], events, "{status}");
    assert_eq!(ledger["unrelayed"], unrelayed, "{status}");
    assert_eq!(ledger["oldest_unrelayed_age_ms"].is_null(), unrelayed == 0);
    for consumer in status["consumers"].as_array().unwrap() {
        let name = consumer["consumer"].as_str().unwrap();
        let lag = count(
            store,
            &format!(
                "SELECT COUNT(*) FROM outbox o WHERE o.stream = '{}' AND NOT EXISTS (
                     SELECT 1 FROM event_consumer_keys c
                     WHERE c.consumer = '{name}' AND c.key = o.key AND c.seq_done >= o.seq)",
                consumer["stream"].as_str().unwrap()
            ),
        )
        .await;
        assert_eq!(consumer["lag_events"], lag, "{name}: {status}");
    }
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_status_shows_a_backlog_while_no_relay_runs_and_none_after_as_the_tables_say() {
    let Some(scratch) = scratch("evstatus").await else {
        return;
    };
    if !torture::nats_server::binary().exists() {
        assert!(!in_ci(), "nats-server is missing in CI");
        eprintln!("skipping: no nats-server");
        return;
    }
    let nats = PrivateNats::start(&scratch.dir.join("nats")).await.unwrap();
    let key = service_key(&scratch.url).await;
    let (api, base) = serve(&scratch.url, &nats.url(), "api", &[]).await;
    let accepted = load(&base.unwrap(), &key, 5, 2, Duration::from_secs(1)).await;
    assert!(!accepted.is_empty());
    let store = Store::connect(&scratch.parent_url).await.unwrap();
    let before = events_status(&scratch.url, &store).await;
    let backlog = count(
        &store,
        "SELECT COUNT(*) FROM outbox WHERE stream = 'ledger' AND relayed_at_ms IS NULL",
    )
    .await;
    assert!(backlog > 0, "nothing relays yet: {before}");
    assert_eq!(before["relay_leaders"], serde_json::json!([]), "{before}");

    let (dispatcher, _) = serve(&scratch.url, &nats.url(), "dispatcher", &[]).await;
    let (missing, took) = wait_until_history_equals_core(&store, REPAIR_BOUND).await;
    assert_eq!(missing, 0, "history lacks {missing} entries after {took:?}");
    let after = events_status(&scratch.url, &store).await;
    let ledger = after["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "ledger")
        .unwrap()
        .clone();
    assert_eq!(ledger["unrelayed"], 0, "{after}");
    assert!(
        !after["relay_leaders"].as_array().unwrap().is_empty(),
        "the dispatcher leads the relay: {after}"
    );
    eprintln!("events status: backlog {backlog} before, {after}");
    assert!(
        stop(dispatcher, "-TERM", Duration::from_secs(20))
            .await
            .success()
    );
    assert!(stop(api, "-TERM", Duration::from_secs(20)).await.success());
    store.close().await;
    nats.stop().await;
    scratch.finish(false).await.unwrap();
}
