//! Bounded load over loopback (ignored by default; run with `--ignored`):
//! 1,000 concurrent customers, each with its own key and account, read their
//! history and make channel transfers for 30 s. The only refusals allowed are the
//! intended ones (409 transfer in progress, 429 rate limited). Side by side, the
//! same workload calls the channel in process, without HTTP, so the report can
//! say what the HTTP layer costs. Prints one JSON line per run.
//!
//! `LOAD_CUSTOMERS`, `LOAD_SECONDS` and `LOAD_WRITES` (write permits) override the defaults.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use channel::{NewTransfer, UserId};
use common::{Backend, HOUSE, TestApp};
use events::{Dispatcher, DispatcherConfig, Wake};
use ledger::{AccountFlags, NewAccount, TransferRequest};
use money::{AccountId, Clock, Krw, SystemClock, TransferId};
use serde_json::json;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Customer {
    user: String,
    account: String,
    key: String,
}

#[derive(Default)]
struct Tally {
    reads_us: Vec<u64>,
    transfers_us: Vec<u64>,
    ok: u64,
    in_progress: u64,
    rate_limited: u64,
    errors: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.reads_us.extend(other.reads_us);
        self.transfers_us.extend(other.transfers_us);
        self.ok += other.ok;
        self.in_progress += other.in_progress;
        self.rate_limited += other.rate_limited;
        self.errors.extend(other.errors.into_iter().take(5));
    }
}

fn percentile_ms(samples: &mut [u64], per_mille: usize) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let index = (samples.len() * per_mille / 1000).min(samples.len() - 1);
    samples[index] as f64 / 1000.0
}

async fn customers(app: &TestApp, count: usize) -> Vec<Customer> {
    let mut customers = Vec::with_capacity(count);
    let mut accounts = Vec::with_capacity(count);
    let mut funding = Vec::with_capacity(count);
    let now = SystemClock.now();
    for _ in 0..count {
        let user = uuid::Uuid::now_v7().to_string();
        let account = AccountId::parse(&uuid::Uuid::now_v7().to_string()).unwrap();
        accounts.push(
            NewAccount::new(
                account,
                1,
                AccountFlags {
                    debits_must_not_exceed_credits: true,
                    ..AccountFlags::default()
                },
            )
            .unwrap(),
        );
        funding.push(
            TransferRequest::single(
                TransferId::parse(&uuid::Uuid::now_v7().to_string()).unwrap(),
                AccountId::parse(HOUSE).unwrap(),
                account,
                Krw::new(10_000_000),
                now,
            )
            .unwrap(),
        );
        api::db::claim_account(
            &app.api_db.store,
            &account.to_string(),
            &api::db::AccountClass::Customer(user.clone()),
            0,
        )
        .await
        .unwrap();
        let key = app.customer_key(&user).await;
        customers.push(Customer {
            user,
            account: account.to_string(),
            key,
        });
    }
    app.ledger.create_accounts(&accounts).await.unwrap();
    app.ledger.submit(funding).await.unwrap();
    customers
}

async fn over_http(app: Arc<TestApp>, customers: Arc<Vec<Customer>>, seconds: u64) -> (Tally, f64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..customers.len() {
        let (app, customers) = (app.clone(), customers.clone());
        tasks.spawn(async move {
            let me = &customers[index];
            let to = &customers[(index + 1) % customers.len()].account;
            let mut tally = Tally::default();
            let mut before_seq: Option<i64> = None;
            while Instant::now() < deadline {
                let path = match before_seq {
                    Some(seq) => format!(
                        "/v1/accounts/{}/history?limit=20&before_seq={seq}",
                        me.account
                    ),
                    None => format!("/v1/accounts/{}/history?limit=20", me.account),
                };
                let t = Instant::now();
                let response = app
                    .http
                    .get(app.url(&path))
                    .bearer_auth(&me.key)
                    .send()
                    .await;
                let elapsed = t.elapsed().as_micros() as u64;
                match response {
                    Ok(r) if r.status() == 200 => {
                        let page: serde_json::Value = r.json().await.unwrap_or_default();
                        before_seq = page["next_before_seq"].as_i64();
                        tally.reads_us.push(elapsed);
                        tally.ok += 1;
                    }
                    Ok(r) if r.status() == 429 => tally.rate_limited += 1,
                    Ok(r) => tally.errors.push(format!(
                        "history {}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    Err(error) => tally.errors.push(format!("history: {error}")),
                }
                let body = json!({
                    "id": uuid::Uuid::now_v7().to_string(),
                    "from_account_id": me.account,
                    "to_account_id": to,
                    "amount_krw": 1 + (index % 97),
                });
                let t = Instant::now();
                let response = app
                    .http
                    .post(app.url("/v1/channel/transfers"))
                    .bearer_auth(&me.key)
                    .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
                    .json(&body)
                    .send()
                    .await;
                let elapsed = t.elapsed().as_micros() as u64;
                match response {
                    Ok(r) if r.status() == 201 => {
                        tally.transfers_us.push(elapsed);
                        tally.ok += 1;
                    }
                    Ok(r) if r.status() == 409 => tally.in_progress += 1,
                    Ok(r) if r.status() == 429 => tally.rate_limited += 1,
                    Ok(r) => tally.errors.push(format!(
                        "transfer {}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    Err(error) => tally.errors.push(format!("transfer: {error}")),
                }
            }
            tally
        });
    }
    let mut total = Tally::default();
    while let Some(tally) = tasks.join_next().await {
        total.merge(tally.unwrap());
    }
    (total, started.elapsed().as_secs_f64())
}

async fn in_process(
    app: Arc<TestApp>,
    customers: Arc<Vec<Customer>>,
    seconds: u64,
) -> (Tally, f64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..customers.len() {
        let (app, customers) = (app.clone(), customers.clone());
        tasks.spawn(async move {
            let me = &customers[index];
            let account = AccountId::parse(&me.account).unwrap();
            let to = AccountId::parse(&customers[(index + 1) % customers.len()].account).unwrap();
            let user = UserId::parse(&me.user).unwrap();
            let mut tally = Tally::default();
            let mut before_seq: Option<i64> = None;
            while Instant::now() < deadline {
                let t = Instant::now();
                match app.channel.history().history(account, before_seq, 20).await {
                    Ok(page) => {
                        before_seq = page.next_before_seq;
                        tally.reads_us.push(t.elapsed().as_micros() as u64);
                        tally.ok += 1;
                    }
                    Err(error) => tally.errors.push(format!("history: {error}")),
                }
                let id = TransferId::parse(&uuid::Uuid::now_v7().to_string()).unwrap();
                let new =
                    NewTransfer::new(id, user, account, to, Krw::new(1 + (index as i64 % 97)))
                        .unwrap();
                let t = Instant::now();
                match app.channel.transfers().submit(new).await {
                    Ok(_) => {
                        tally.transfers_us.push(t.elapsed().as_micros() as u64);
                        tally.ok += 1;
                    }
                    Err(channel::ChannelError::TransferInProgress { .. }) => tally.in_progress += 1,
                    Err(error) => tally.errors.push(format!("transfer: {error}")),
                }
            }
            tally
        });
    }
    let mut total = Tally::default();
    while let Some(tally) = tasks.join_next().await {
        total.merge(tally.unwrap());
    }
    (total, started.elapsed().as_secs_f64())
}

async fn run(backend: Backend) {
    let count = env_or("LOAD_CUSTOMERS", 1_000) as usize;
    let seconds = env_or("LOAD_SECONDS", 30);
    let defaults = api::ApiConfig::default();
    let config = api::ApiConfig {
        request_timeout_ms: 30_000,
        writes_in_flight_max: env_or("LOAD_WRITES", defaults.writes_in_flight_max as u64) as usize,
        ..defaults
    };
    let config_writes = config.writes_in_flight_max;
    let Some(app) = TestApp::start_with(backend, config).await else {
        return;
    };
    // The history read model is fed by the ledger's events, as in `settle serve`.
    let dispatcher = Dispatcher::new(
        app.db.store.clone(),
        Arc::new(app.channel.history().consumer()),
        DispatcherConfig {
            poll_interval_ms: 20,
            ..DispatcherConfig::default()
        },
        Arc::new(SystemClock),
        Wake::new(),
    )
    .await
    .unwrap();
    let stop = events::Shutdown::default();
    let dispatching = tokio::spawn(dispatcher.run(stop.clone().wait()));
    let app = Arc::new(app);
    let customers = Arc::new(customers(&app, count).await);

    let mut report = serde_json::Map::new();
    report.insert(
        "backend".into(),
        json!(format!("{backend:?}").to_lowercase()),
    );
    report.insert("customers".into(), json!(count));
    report.insert("seconds".into(), json!(seconds));
    report.insert("writes_in_flight_max".into(), json!(config_writes));
    for (name, (mut tally, elapsed)) in [
        (
            "http",
            over_http(app.clone(), customers.clone(), seconds).await,
        ),
        (
            "in_process",
            in_process(app.clone(), customers.clone(), seconds).await,
        ),
    ] {
        assert!(
            tally.errors.is_empty(),
            "{name}: unintended errors: {:?}",
            &tally.errors[..tally.errors.len().min(5)]
        );
        report.insert(
            name.into(),
            json!({
                "ok_per_s": (tally.ok as f64 / elapsed).round(),
                "transfers": tally.transfers_us.len(),
                "reads": tally.reads_us.len(),
                "in_progress_409": tally.in_progress,
                "rate_limited_429": tally.rate_limited,
                "read_p50_ms": percentile_ms(&mut tally.reads_us, 500),
                "read_p99_ms": percentile_ms(&mut tally.reads_us, 990),
                "transfer_p50_ms": percentile_ms(&mut tally.transfers_us, 500),
                "transfer_p99_ms": percentile_ms(&mut tally.transfers_us, 990),
            }),
        );
    }
    stop.cancel();
    let _ = dispatching.await;
    let totals = app.ledger.totals().await.unwrap();
    assert!(totals.all_hold(), "{totals:?}");
    println!("API_LOAD {}", serde_json::Value::Object(report));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load: 2 × 30 s; run with --ignored"]
async fn load_1000_customers_read_history_and_transfer_sqlite() {
    run(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load: 2 × 30 s; run with --ignored"]
async fn load_1000_customers_read_history_and_transfer_postgres() {
    run(Backend::Postgres).await;
}
