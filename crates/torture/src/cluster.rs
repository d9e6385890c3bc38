//! The cluster run (`settle torture cluster`): settle in its production shape,
//! under kills. `settle bank-sim` as its own process, a private `nats-server
//! -js`, and four `settle serve` processes with split roles (`api`;
//! `dispatcher` ×2; `fees,payroll,reconciler,expiry`) over one PostgreSQL
//! schema. Load comes through the HTTP API only (ledger and channel transfers
//! from concurrent clients, an operator calling fee modules); fee days and a
//! payroll month are set up through the crates' own functions (as the crash
//! harness does) and settled by the processes. Throughout, seeded random
//! serve processes and the broker are SIGKILLed and restarted. Then the load
//! stops, the cluster quiesces, every process is stopped with SIGTERM, and the
//! stores are checked: the backbone ([`crate::cluster_check`]), the history
//! read model, fee days, payroll deposits and the ledger.
//!
//! The seed decides every kill (time, target, restart delay) and the clients'
//! choices; each kill is logged as it happens.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bank::{BankApi, HttpBank, TransportConfig};
use channel::{Channel, ChannelConfig, InProcessCore};
use ledger::{Ledger, LedgerConfig};
use money::{Clock, SystemClock, TransferId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::TortureError;
use crate::bank_side::{BankSide, RemoteBank};
use crate::check::{Check, Checks, ledger_invariants};
use crate::cluster_check::{self, ConsumerSpec};
use crate::cluster_load::{self, ApiClient, Shared};
use crate::cluster_procs::{Cluster, StopOutcome, default_shape};
use crate::fees_workload::FeesParent;
use crate::payroll_workload::PayrollParent;
use crate::scratch::Scratch;

/// The longest load phase one run may ask for (24 h).
pub const LOAD_MS_MAX: u64 = 24 * 3_600 * 1_000;
/// Salary rounds paid during the load (a payroll month: each round pays one
/// salary to each of the payroll workload's users, split over the load).
const SALARY_ROUNDS: u64 = 4;
const SALARIES_PER_ROUND: u64 = 12;
/// How often the parent looks at its processes and the clock.
const TICK_MS: u64 = 200;

/// Everything a cluster run needs; the same plan and seed replay its decisions.
#[derive(Clone, Debug)]
pub struct ClusterPlan {
    pub seed: u64,
    /// How long the load (and the kills) go on.
    pub load_ms: u64,
    /// A PostgreSQL server; the run makes and drops its own schema there.
    pub database_url: String,
    /// The `settle` binary.
    pub program: PathBuf,
    /// A kill lands every uniform(min..=max) ms.
    pub kill_every_ms_min: u64,
    pub kill_every_ms_max: u64,
    /// Share of kills that hit the broker instead of a serve process.
    pub broker_kill_pct: u32,
    pub ledger_clients: usize,
    pub channel_clients: usize,
    pub house_accounts: usize,
    /// Quiescing ends when everything is delivered, or nothing moved this long.
    pub quiesce_stall_ms: u64,
    pub quiesce_max_ms: u64,
    pub fees_every_s: u64,
    /// PostgreSQL connections all serve processes together may hold (a login
    /// role with this `CONNECTION LIMIT`), so the run cannot starve a shared server.
    pub connections_max: u32,
    /// Each serve process's `--database-connections-max` (its pool; it holds
    /// this + 1 for its leases + the fee modules' try-locks in use).
    pub serve_connections_max: u32,
    pub keep: bool,
}

impl ClusterPlan {
    pub fn new(program: PathBuf, database_url: &str) -> ClusterPlan {
        ClusterPlan {
            seed: 1,
            load_ms: 60_000,
            database_url: database_url.to_owned(),
            program,
            kill_every_ms_min: 2_000,
            kill_every_ms_max: 6_000,
            broker_kill_pct: 20,
            ledger_clients: 4,
            channel_clients: 4,
            house_accounts: 16,
            // Longer than the channel's late window plus its margin, so a
            // transfer waiting for the reconciler is not taken for a stall.
            quiesce_stall_ms: 100_000,
            quiesce_max_ms: 300_000,
            fees_every_s: 2,
            // 4 × (12 + 1 lease connection) + the fee modules' try-locks. A
            // smaller pool starves the history consumer (each of its events
            // takes more connections from the pool its worker's batch
            // transaction already holds one of): see docs/reliability.md.
            connections_max: 60,
            serve_connections_max: 12,
            keep: false,
        }
    }

    fn validate(&self) -> Result<(), TortureError> {
        if !self.database_url.starts_with("postgres") {
            return Err(TortureError::Invalid(
                "the cluster run needs a PostgreSQL --database-url (several processes share it)"
                    .into(),
            ));
        }
        if self.load_ms > LOAD_MS_MAX || self.kill_every_ms_min > self.kill_every_ms_max {
            return Err(TortureError::Invalid(format!(
                "load at most {LOAD_MS_MAX} ms; kill_every_ms_min ≤ kill_every_ms_max"
            )));
        }
        if self.broker_kill_pct > 100 || self.kill_every_ms_min == 0 {
            return Err(TortureError::Invalid(
                "broker_kill_pct is 0..=100 and kills are at least 1 ms apart".into(),
            ));
        }
        Ok(())
    }

    /// The command line that replays this plan.
    pub fn replay_command(&self) -> String {
        format!(
            "settle torture cluster --seed {} --minutes {} --database-url postgres://…",
            self.seed,
            self.load_ms.div_ceil(60_000)
        )
    }
}

/// What a cluster run did and found. `violations == 0` is the only passing verdict.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterSummary {
    pub seed: u64,
    pub load_ms: u64,
    pub processes: Vec<String>,
    /// SIGKILLs per process kind (`api`, `dispatcher`, `workers`).
    pub kills: BTreeMap<String, u64>,
    pub broker_kills: u64,
    /// Exits nobody asked for (each restarted), per kind, with samples.
    pub unplanned_exits: BTreeMap<String, u64>,
    pub unplanned_exit_samples: Vec<String>,
    /// What the API clients did.
    pub load: serde_json::Value,
    pub fee_days: usize,
    pub salaries: u64,
    /// Outbox rows per stream, and the backbone's verdict per stream.
    pub streams: serde_json::Value,
    pub events_lost: u64,
    pub effects_doubled: u64,
    pub wrong_stream: u64,
    pub history: serde_json::Value,
    /// The most PostgreSQL connections the serve processes held at once, of
    /// the run's cap; and log lines where a process could not get one (the
    /// server refused it over the cap, or its pool waited out its timeout).
    pub connections_peak: u64,
    pub connections_max: u32,
    pub connections_refused: u64,
    pub quiesce_ms: u64,
    pub quiesce_complete: bool,
    /// How each serve process ended on SIGTERM.
    pub stops: Vec<StopOutcome>,
    pub checks: Vec<Check>,
    pub violations: usize,
    pub elapsed_ms: u64,
    pub kept_at: Option<String>,
    pub replay: String,
}

/// Progress lines for the operator (kills, phases).
pub type Say<'a> = &'a (dyn Fn(&str) + Sync);

/// The parent's handles for the checks: its own small pool on the run's
/// schema, the ledger, the channel, and the consumers the backbone must serve.
struct Checker {
    store: store::Store,
    ledger: Ledger,
    channel: Channel,
    consumers: Vec<ConsumerSpec>,
}

/// The workloads' parents: they set up fee days and salaries, and check them.
struct Workloads {
    fees: FeesParent,
    payroll: PayrollParent,
}

async fn open_parents(
    scratch: &Scratch,
    bank_url: &str,
    seed: u64,
) -> Result<(Checker, Workloads), TortureError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = crate::scratch::connect_small(&scratch.parent_url).await?;
    let ledger = Ledger::open(store.clone(), clock.clone(), LedgerConfig::default()).await?;
    let channel = Channel::open(
        store.clone(),
        Arc::new(InProcessCore::new(ledger.clone())),
        clock,
        ChannelConfig::default(),
    )
    .await?;
    let bank = BankSide::Remote(RemoteBank::new(bank_url)?);
    // Payroll first: it opens the operating account with its balance, which
    // is also the fees' settlement account.
    let payroll = PayrollParent::open(&scratch.parent_url, bank_url, bank.clone(), seed).await?;
    let mut transport = TransportConfig::new(bank_url);
    transport.requests_per_s_max = None;
    let api: Arc<dyn BankApi> = Arc::new(HttpBank::new(transport)?);
    let mut fees = FeesParent::open(&scratch.parent_url, api, bank, seed).await?;
    fees.before_cycle().await?;
    let mut consumers = vec![ConsumerSpec::of(&channel.history().consumer())];
    for stage in payroll.payroll().stage_consumers() {
        consumers.push(ConsumerSpec::of(&stage));
    }
    consumers.push(ConsumerSpec::of(&payroll.payroll().alert_consumer()));
    let checker = Checker {
        store,
        ledger,
        channel,
        consumers,
    };
    Ok((checker, Workloads { fees, payroll }))
}

/// Runs a whole cluster plan and checks the invariants.
pub async fn run(plan: &ClusterPlan, say: Say<'_>) -> Result<ClusterSummary, TortureError> {
    plan.validate()?;
    let started = Instant::now();
    let mut scratch = Scratch::create(Some(&plan.database_url), "cluster").await?;
    scratch.limit_connections(plan.connections_max).await?;
    say(&format!(
        "cluster seed {} in {} (replay: {})",
        plan.seed,
        scratch.dir.display(),
        plan.replay_command()
    ));
    let outcome = run_in(plan, &scratch, say).await;
    let mut summary = match outcome {
        Ok(summary) => summary,
        Err(error) => {
            // The schema, the files and the logs stay for whoever debugs it.
            tracing::error!(%error, kept_at = %scratch.dir.display(), "the cluster run could not finish");
            return Err(error);
        }
    };
    summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let keep = plan.keep || summary.violations > 0;
    if keep {
        summary.kept_at = Some(scratch.dir.display().to_string());
    }
    scratch.finish(keep).await?;
    Ok(summary)
}

async fn run_in(
    plan: &ClusterPlan,
    scratch: &Scratch,
    say: Say<'_>,
) -> Result<ClusterSummary, TortureError> {
    let mut cluster = Cluster::start(
        &plan.program,
        &scratch.url,
        &scratch.dir,
        default_shape(),
        plan.fees_every_s,
        plan.serve_connections_max,
    )
    .await?;
    let (checker, workloads) = open_parents(scratch, &cluster.bank_url, plan.seed).await?;
    let ops_key = cluster_load::cli_key(&plan.program, &scratch.url, "ops").await?;
    let service_key = cluster_load::cli_key(&plan.program, &scratch.url, "service").await?;
    cluster.start_serves().await?;
    say(&format!(
        "cluster up: bank {}, broker {}, API {}",
        cluster.bank_url,
        cluster.nats.url(),
        cluster.api_url
    ));
    let shared = Shared::new();
    let days = Arc::new(std::sync::Mutex::new(workloads.fees.day_names()));
    let mut clients = start_clients(plan, &cluster, &ops_key, &service_key, &days, &shared).await?;
    let feeder = tokio::spawn(feed(workloads, days, plan.load_ms));
    let admin = crate::scratch::connect_small(&plan.database_url).await?;
    let app = scratch.application_name().unwrap_or_default().to_owned();
    let mut peak = drive_load(plan, &mut cluster, &admin, &app, say).await?;
    say("load done; stopping the clients and restarting every process");
    shared.stop.store(true, Ordering::Relaxed);
    cluster.restart_all()?;
    while clients.join_next().await.is_some() {}
    let workloads = feeder
        .await
        .map_err(|e| TortureError::Child(format!("the salary and fee-day feeder: {e}")))??;
    let quiesce_started = Instant::now();
    let quiesced = quiesce(
        plan,
        &mut cluster,
        &checker,
        &workloads,
        &shared,
        &admin,
        &app,
        &mut peak,
        say,
    )
    .await?;
    let quiesce_ms = u64::try_from(quiesce_started.elapsed().as_millis()).unwrap_or(u64::MAX);
    admin.close().await;
    let mut summary = ClusterSummary {
        seed: plan.seed,
        load_ms: plan.load_ms,
        processes: (0..cluster.serve_count())
            .map(|i| cluster.serve_name(i).to_owned())
            .collect(),
        kills: cluster.kills.clone(),
        broker_kills: cluster.nats.restarts,
        unplanned_exits: cluster.unplanned_exits.clone(),
        unplanned_exit_samples: cluster.unplanned_exit_samples.clone(),
        load: serde_json::to_value(&shared.counters).unwrap_or_default(),
        fee_days: workloads.fees.days(),
        salaries: workloads.payroll.salaries(),
        streams: serde_json::Value::Null,
        events_lost: 0,
        effects_doubled: 0,
        wrong_stream: 0,
        history: serde_json::Value::Null,
        connections_peak: peak,
        connections_max: plan.connections_max,
        connections_refused: cluster.log_lines_with(&[
            "too many connections",
            "pool timed out while waiting for an open connection",
        ]),
        quiesce_ms,
        quiesce_complete: quiesced,
        stops: Vec::new(),
        checks: Vec::new(),
        violations: 0,
        elapsed_ms: 0,
        kept_at: None,
        replay: plan.replay_command(),
    };
    summary.stops = cluster.stop_serves().await;
    say("serve processes stopped; checking the stores");
    let verdict = verdict(&mut summary, &checker, &workloads, &shared).await;
    cluster.stop().await;
    verdict?;
    Ok(summary)
}

/// Opens the accounts and keys the clients need, through the API, and starts
/// the clients.
async fn start_clients(
    plan: &ClusterPlan,
    cluster: &Cluster,
    ops_key: &str,
    service_key: &str,
    days: &Arc<std::sync::Mutex<Vec<String>>>,
    shared: &Arc<Shared>,
) -> Result<tokio::task::JoinSet<()>, TortureError> {
    let ops = ApiClient::new(&cluster.api_url, ops_key)?;
    let service = ApiClient::new(&cluster.api_url, service_key)?;
    let mut clients = tokio::task::JoinSet::new();
    let mut house = Vec::new();
    for _ in 0..plan.house_accounts.max(2) {
        house.push(service.open_account(None, &shared.counters).await?);
    }
    let house = Arc::new(house);
    for n in 0..plan.ledger_clients {
        clients.spawn(cluster_load::ledger_client(
            service.clone(),
            house.clone(),
            plan.seed ^ (n as u64).rotate_left(17),
            shared.clone(),
        ));
    }
    // A customer may credit only customer accounts: each pays the others.
    let mut customers = Vec::new();
    for _ in 0..plan.channel_clients.max(2) {
        let customer = uuid::Uuid::now_v7().to_string();
        let account = service
            .open_account(Some(&customer), &shared.counters)
            .await?;
        let key = ops.customer_key(&customer, &shared.counters).await?;
        customers.push((account, key));
    }
    let accounts: Vec<String> = customers.iter().map(|(a, _)| a.clone()).collect();
    for (n, (account, key)) in customers.into_iter().enumerate().take(plan.channel_clients) {
        let others: Vec<String> = accounts
            .iter()
            .filter(|a| **a != account)
            .cloned()
            .collect();
        clients.spawn(cluster_load::channel_client(
            ApiClient::new(&cluster.api_url, &key)?,
            account,
            Arc::new(others),
            plan.seed ^ (n as u64).rotate_left(29) ^ 0xc4a1,
            shared.clone(),
        ));
    }
    clients.spawn(cluster_load::fee_operator(
        ops,
        days.clone(),
        plan.seed ^ 0xfee,
        shared.clone(),
    ));
    Ok(clients)
}

/// Pays the payroll month's salaries in rounds spread over the load, and
/// keeps two fee days open; hands the workloads back at the end.
async fn feed(
    mut workloads: Workloads,
    days: Arc<std::sync::Mutex<Vec<String>>>,
    load_ms: u64,
) -> Result<Workloads, TortureError> {
    let pause = Duration::from_millis(load_ms / SALARY_ROUNDS);
    for _ in 0..SALARY_ROUNDS {
        workloads.payroll.pay_salaries(SALARIES_PER_ROUND).await?;
        workloads.fees.before_cycle().await?;
        *days.lock().unwrap_or_else(|p| p.into_inner()) = workloads.fees.day_names();
        tokio::time::sleep(pause).await;
    }
    Ok(workloads)
}

/// The load phase's kills: every few seconds the broker or a random serve
/// process, each printed; restarts as they fall due. Returns the peak of
/// connections seen.
async fn drive_load(
    plan: &ClusterPlan,
    cluster: &mut Cluster,
    admin: &store::Store,
    app: &str,
    say: Say<'_>,
) -> Result<u64, TortureError> {
    let mut rng = SmallRng::seed_from_u64(plan.seed);
    let mut peak = 0;
    let started = Instant::now();
    let load = Duration::from_millis(plan.load_ms);
    let mut next_kill = started + kill_pause(&mut rng, plan);
    let mut restarts: Vec<(Instant, usize)> = Vec::new();
    let mut last_sample = started;
    while started.elapsed() < load {
        tokio::time::sleep(Duration::from_millis(TICK_MS)).await;
        let now = Instant::now();
        cluster.supervise().await?;
        for (_, index) in restarts.iter().filter(|(at, _)| *at <= now) {
            cluster.restart_serve(*index)?;
        }
        restarts.retain(|(at, _)| *at > now);
        if now >= next_kill {
            next_kill = now + kill_pause(&mut rng, plan);
            let at_s = started.elapsed().as_secs_f64();
            if rng.random_range(0..100) < plan.broker_kill_pct {
                say(&format!("{at_s:7.1}s SIGKILL broker (restarted at once)"));
                cluster.kill_broker().await?;
            } else {
                let index = rng.random_range(0..cluster.serve_count());
                let delay = Duration::from_millis(rng.random_range(200..2_000));
                say(&format!(
                    "{at_s:7.1}s SIGKILL {} (restart in {} ms)",
                    cluster.serve_name(index),
                    delay.as_millis()
                ));
                cluster.kill_serve(index).await?;
                restarts.push((now + delay, index));
            }
        }
        if now.duration_since(last_sample) >= Duration::from_secs(1) {
            last_sample = now;
            peak = peak.max(Cluster::connections(admin, app).await);
        }
    }
    Ok(peak)
}

fn kill_pause(rng: &mut SmallRng, plan: &ClusterPlan) -> Duration {
    Duration::from_millis(rng.random_range(plan.kill_every_ms_min..=plan.kill_every_ms_max))
}

/// Waits until everything is delivered and settled, or nothing moved for
/// `quiesce_stall_ms`, or `quiesce_max_ms` passed; restarts whatever exits.
#[allow(clippy::too_many_arguments)]
async fn quiesce(
    plan: &ClusterPlan,
    cluster: &mut Cluster,
    checker: &Checker,
    workloads: &Workloads,
    shared: &Shared,
    admin: &store::Store,
    app: &str,
    peak: &mut u64,
    say: Say<'_>,
) -> Result<bool, TortureError> {
    let started = Instant::now();
    let mut in_flight: Vec<TransferId> = Vec::new();
    for id in shared.confirmed.channel.lock().await.iter() {
        if let Ok(id) = TransferId::parse(id) {
            in_flight.push(id);
        }
    }
    let mut last_change = Instant::now();
    let mut last_fingerprint = String::new();
    loop {
        cluster.supervise().await?;
        *peak = (*peak).max(Cluster::connections(admin, app).await);
        let backbone = cluster_check::backbone(&checker.store, &checker.consumers).await?;
        let mut still = Vec::new();
        for id in in_flight {
            let transfer = checker.channel.transfers().get(id).await?;
            if transfer.is_some_and(|t| t.state.is_in_flight()) {
                still.push(id);
            }
        }
        in_flight = still;
        let days_open = workloads.fees.unfinished_days().await?;
        let deposits_open = workloads.payroll.open_deposits().await?;
        let fingerprint = format!(
            "{} unrelayed, {} undelivered (watermarks {}), {} channel transfers in flight, \
             {days_open} fee days open, {deposits_open} deposits open",
            backbone.unrelayed(),
            backbone.lost(),
            backbone.watermark_total,
            in_flight.len()
        );
        if backbone.complete() && in_flight.is_empty() && days_open == 0 && deposits_open == 0 {
            let ms = started.elapsed().as_millis();
            say(&format!("quiesced in {ms} ms: {fingerprint}"));
            return Ok(true);
        }
        if fingerprint != last_fingerprint {
            say(&format!("quiescing: {fingerprint}"));
            last_fingerprint = fingerprint;
            last_change = Instant::now();
        }
        let stalled = last_change.elapsed() >= Duration::from_millis(plan.quiesce_stall_ms);
        if stalled || started.elapsed() >= Duration::from_millis(plan.quiesce_max_ms) {
            say(&format!("not quiesced: {last_fingerprint}"));
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Every check, from the stores, once the processes stopped.
async fn verdict(
    summary: &mut ClusterSummary,
    checker: &Checker,
    workloads: &Workloads,
    shared: &Shared,
) -> Result<(), TortureError> {
    let mut checks = Checks::default();
    checks.add(
        "cluster: the serve processes stayed within the run's connection budget",
        summary.connections_refused == 0,
        format!(
            "peak {} of {}; {} log lines of connections refused or waited out",
            summary.connections_peak, summary.connections_max, summary.connections_refused
        ),
    );
    checks.add(
        "cluster: the cluster quiesced (everything delivered and settled)",
        summary.quiesce_complete,
        format!("after {} ms", summary.quiesce_ms),
    );
    let not_clean: Vec<String> = summary
        .stops
        .iter()
        .filter(|s| s.exit_code != Some(0))
        .map(|s| format!("{}: {:?}", s.name, s.exit_code))
        .collect();
    checks.add(
        "cluster: every serve process stops on SIGTERM with exit 0",
        not_clean.is_empty(),
        not_clean.join("; "),
    );
    let backbone = cluster_check::backbone(&checker.store, &checker.consumers).await?;
    cluster_check::backbone_checks(&backbone, &mut checks);
    let history = cluster_check::history_equals_core(
        &checker.ledger,
        &checker.channel,
        &backbone.ledger_keys,
        &mut checks,
    )
    .await?;
    cluster_check::parked_letters(&checker.store, &mut checks).await?;
    cluster_check::client_checks(&checker.ledger, &checker.channel, shared, &mut checks).await?;
    checks.extend(workloads.fees.check().await?);
    checks.extend(workloads.payroll.check().await?);
    ledger_invariants(&checker.ledger, &mut checks).await?;
    let reruns = cluster_check::payroll_stage_reruns(workloads.payroll.payroll()).await?;
    summary.streams = serde_json::to_value(&backbone.streams).unwrap_or_default();
    summary.events_lost = backbone.lost();
    summary.effects_doubled = reruns + history.entries_wrong;
    summary.wrong_stream =
        backbone.wrong_stream + backbone.misdeliveries + backbone.rows_on_wrong_stream;
    summary.history = serde_json::to_value(&history).unwrap_or_default();
    summary.violations = checks.violations();
    summary.checks = checks.0;
    Ok(())
}
