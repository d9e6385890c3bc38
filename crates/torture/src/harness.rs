//! The crash harness, the parent's side. It makes the run's stores, serves the
//! bank simulator over HTTP (so the bank outlives every child), and then, cycle
//! after cycle, starts a child `settle torture child …`, lets it work for a
//! seeded random time and SIGKILLs it — or lets it die at a named fail point —
//! optionally terminating its PostgreSQL backends first. A last child runs
//! without a kill until the work is done; then every invariant is checked.
//!
//! The seed decides every kill time, fail point and connection drop, and the
//! workloads' own schedules; `settle torture --seed S` replays a run's plan
//! (process timing still varies: what a kill interrupts is not reproducible to
//! the instruction, which is the point of killing at many places).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bank::sim::{FaultsInjected, Profile, SimConfig, Simulator};
use money::SystemClock;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::bank_side::BankSide;
use crate::channel_workload::ChannelParent;
use crate::check::{Check, Checks};
use crate::child::FAILPOINT_EXIT_CODE;
use crate::faults::{self, FaultKind};
use crate::fees_workload::FeesParent;
use crate::nats_server::PrivateNats;
use crate::payroll_workload::PayrollParent;
use crate::relay_workload::RelayParent;
use crate::scratch::Scratch;
use crate::{TortureError, Workload};

/// Cycles one run may have.
pub const CYCLES_MAX: u64 = 100_000;
/// How long a child may take to open its stores and say `ready`.
const READY_TIMEOUT_MS: u64 = 120_000;
/// How long the last child may take to finish the work.
const FINAL_TIMEOUT_MS: u64 = 600_000;
/// Last children started before the run gives up on finishing the work.
const FINAL_ATTEMPTS_MAX: u32 = 3;
/// Channel transfers per cycle of the plan (plus a fixed tail).
const CHANNEL_ITEMS_PER_CYCLE: u64 = 40;
/// Relay transfers per cycle of the plan: a child writes and relays a few
/// hundred a second.
const RELAY_ITEMS_PER_CYCLE: u64 = 250;

/// Everything a run needs; the same plan and seed replay the same decisions.
#[derive(Clone, Debug)]
pub struct Plan {
    pub workload: Workload,
    pub cycles: u64,
    pub seed: u64,
    /// None or sqlite…: a SQLite file; postgres://…: a fresh schema there.
    pub database_url: Option<String>,
    /// The `settle` binary to start as the child.
    pub program: PathBuf,
    pub faults: Vec<FaultKind>,
    pub fault_rate_pct: u32,
    /// A timed kill lands this long after the child said `ready`.
    pub kill_ms_min: u64,
    pub kill_ms_max: u64,
    /// Share of cycles that end at a fail point instead of a timed kill.
    pub failpoint_pct: u32,
    /// PostgreSQL: terminate the run's backends in this share of cycles.
    pub pg_drop_pct: u32,
    /// Relay: SIGKILL and restart the private nats-server in this share of cycles.
    pub nats_restart_pct: u32,
    /// Keep the stores (always kept when an invariant broke).
    pub keep: bool,
}

impl Plan {
    pub fn new(workload: Workload, program: PathBuf) -> Plan {
        Plan {
            workload,
            cycles: 20,
            seed: 1,
            database_url: None,
            program,
            faults: Vec::new(),
            fault_rate_pct: 0,
            kill_ms_min: 30,
            kill_ms_max: 1_500,
            failpoint_pct: 25,
            pg_drop_pct: 0,
            nats_restart_pct: 0,
            keep: false,
        }
    }

    fn validate(&self) -> Result<(), TortureError> {
        if self.cycles > CYCLES_MAX {
            return Err(TortureError::Invalid(format!(
                "at most {CYCLES_MAX} cycles, not {}",
                self.cycles
            )));
        }
        if self.kill_ms_min > self.kill_ms_max {
            return Err(TortureError::Invalid(
                "kill_ms_min must not exceed kill_ms_max".into(),
            ));
        }
        if self.failpoint_pct > 100
            || self.pg_drop_pct > 100
            || self.nats_restart_pct > 100
            || self.fault_rate_pct > 100
        {
            return Err(TortureError::Invalid("percentages are 0..=100".into()));
        }
        Ok(())
    }
}

/// What a run did and found. `violations == 0` is the only passing verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub workload: Workload,
    pub seed: u64,
    pub backend: &'static str,
    pub cycles: u64,
    /// Children SIGKILLed by the parent.
    pub kills: u64,
    /// Children that died at a fail point.
    pub failpoint_deaths: u64,
    /// Children that finished the work before their kill was due.
    pub finished_early: u64,
    /// Children that exited with an error (e.g. a terminated database backend).
    pub child_errors: u64,
    /// Children that panicked: always a bug.
    pub child_panics: u64,
    /// Operations the children reported (module calls, submits, reconciles).
    pub operations: u64,
    pub faults: Vec<&'static str>,
    pub fault_rate_pct: u32,
    /// Faults the bank simulator injected.
    pub faults_injected: FaultsInjected,
    /// Channel: core calls that misbehaved (lost answers, delays, stragglers).
    pub core_faults_injected: u64,
    pub pg_backends_terminated: u64,
    /// Relay: restarts of the private nats-server while a child worked.
    pub nats_restarts: u64,
    /// Fee days or channel transfers the run settled.
    pub work_items: u64,
    pub checks: Vec<Check>,
    pub violations: usize,
    pub elapsed_ms: u64,
    /// Where the stores and child logs were left, if kept.
    pub kept_at: Option<String>,
    /// The command that replays this run's plan.
    pub replay: String,
}

/// Progress after each cycle: (cycles done, cycles planned).
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

enum Parent {
    Fees(FeesParent),
    Channel(ChannelParent),
    Relay(RelayParent),
    Payroll(PayrollParent),
}

/// How one child ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    Killed,
    Failpoint,
    Done,
    Error(String),
    Panic(String),
}

struct Counters {
    operations: u64,
    core_faults: u64,
    pg_backends_terminated: u64,
}

/// What may disturb a child while it works, besides its kill.
struct Disturbances<'a> {
    scratch: &'a Scratch,
    nats: Option<&'a mut PrivateNats>,
    /// After `ready`: terminate the run's PostgreSQL backends.
    drop_backends_after: Option<Duration>,
    /// After `ready`: restart the private nats-server.
    restart_nats_after: Option<Duration>,
}

/// Runs a whole torture plan and checks the invariants.
pub async fn run(plan: &Plan, progress: Progress<'_>) -> Result<Summary, TortureError> {
    plan.validate()?;
    let started = Instant::now();
    let scratch = Scratch::create(plan.database_url.as_deref(), plan.workload.name()).await?;
    let outcome = run_in(plan, &scratch, progress).await;
    let mut summary = match outcome {
        Ok(summary) => summary,
        Err(error) => {
            // The stores and the children's logs stay for whoever debugs it.
            tracing::error!(%error, kept_at = %scratch.dir.display(), replay = %replay_command(plan), "the torture run could not finish");
            return Err(error);
        }
    };
    summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if plan.keep || summary.violations > 0 {
        summary.kept_at = Some(scratch.dir.display().to_string());
        scratch.finish(true).await?;
    } else {
        scratch.finish(false).await?;
    }
    Ok(summary)
}

async fn run_in(
    plan: &Plan,
    scratch: &Scratch,
    progress: Progress<'_>,
) -> Result<Summary, TortureError> {
    let mut rng = SmallRng::seed_from_u64(plan.seed);
    // The bank simulator lives in the parent, on its own SQLite file.
    let sim_store = store::Store::connect(&format!(
        "sqlite://{}",
        scratch.dir.join("banksim.db").display()
    ))
    .await?;
    let mut sim_config = SimConfig::for_profile(Profile::Test, plan.seed);
    sim_config.faults = faults::rates(&plan.faults, plan.fault_rate_pct)?;
    // Longer than the child's 1 s client timeout; a dead child's held answer
    // is dropped with its connection.
    sim_config.timeout_hold_ms = 2_000;
    let sim = Simulator::open(sim_store, sim_config, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bank_url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bank::sim::serve_simulator(sim.clone(), listener, async {
        let _ = stopped.await;
    }));

    let items = match plan.workload {
        Workload::Relay => plan.cycles * RELAY_ITEMS_PER_CYCLE + 500,
        _ => plan.cycles * CHANNEL_ITEMS_PER_CYCLE + 200,
    };
    let mut nats = match plan.workload {
        Workload::Relay => Some(PrivateNats::start(&scratch.dir.join("nats")).await?),
        _ => None,
    };
    let nats_url = nats.as_ref().map(|n| n.url()).unwrap_or_default();
    let mut parent = match plan.workload {
        Workload::Fees => Parent::Fees(
            FeesParent::open(
                &scratch.parent_url,
                Arc::new(sim.clone()),
                BankSide::Local(sim.clone()),
                plan.seed,
            )
            .await?,
        ),
        Workload::Channel => {
            Parent::Channel(ChannelParent::open(&scratch.parent_url, plan.seed, items).await?)
        }
        Workload::Relay => {
            Parent::Relay(RelayParent::open(&scratch.parent_url, plan.seed, items).await?)
        }
        Workload::Payroll => Parent::Payroll(
            PayrollParent::open(
                &scratch.parent_url,
                &bank_url,
                BankSide::Local(sim.clone()),
                plan.seed,
            )
            .await?,
        ),
    };
    let child_log = scratch.dir.join("children.log");
    let spawn = |cycle: u64, failpoint_after_calls: Option<u64>| {
        let mut command = tokio::process::Command::new(&plan.program);
        command
            .args(["torture", "child", "--workload", plan.workload.name()])
            .args(["--database-url", &scratch.url])
            .args(["--bank-url", &bank_url])
            .args(["--seed", &plan.seed.to_string()])
            .args(["--cycle", &cycle.to_string()])
            .args(["--items", &items.to_string()])
            .args(["--nats-url", &nats_url])
            .args(["--fault-rate-pct", &plan.fault_rate_pct.to_string()]);
        if let Some(calls) = failpoint_after_calls {
            command.args(["--failpoint-after-calls", &calls.to_string()]);
        }
        command
    };

    let mut summary = Summary {
        workload: plan.workload,
        seed: plan.seed,
        backend: if scratch.application_name().is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        cycles: plan.cycles,
        kills: 0,
        failpoint_deaths: 0,
        finished_early: 0,
        child_errors: 0,
        child_panics: 0,
        operations: 0,
        faults: plan.faults.iter().map(|f| f.name()).collect(),
        fault_rate_pct: plan.fault_rate_pct,
        faults_injected: FaultsInjected::default(),
        core_faults_injected: 0,
        pg_backends_terminated: 0,
        nats_restarts: 0,
        work_items: 0,
        checks: Vec::new(),
        violations: 0,
        elapsed_ms: 0,
        kept_at: None,
        replay: String::new(),
    };
    let mut counters = Counters {
        operations: 0,
        core_faults: 0,
        pg_backends_terminated: 0,
    };
    let mut child_failures = Vec::new();
    for cycle in 0..plan.cycles {
        match &mut parent {
            Parent::Fees(fees) => fees.before_cycle().await?,
            Parent::Payroll(payroll) => payroll.before_cycle().await?,
            Parent::Channel(_) | Parent::Relay(_) => {}
        }
        let failpoint = (plan.workload.has_failpoint()
            && rng.random_range(0..100) < plan.failpoint_pct)
            .then(|| rng.random_range(1..60));
        let mut kill_after_ms = rng.random_range(plan.kill_ms_min..=plan.kill_ms_max);
        if failpoint.is_some() {
            // The fail point ends this child; the kill only stops one that
            // finished its work without reaching it.
            kill_after_ms = kill_after_ms.saturating_mul(4);
        }
        let drop_at_ms = (scratch.application_name().is_some()
            && rng.random_range(0..100) < plan.pg_drop_pct)
            .then(|| rng.random_range(0..=kill_after_ms));
        let restart_at_ms = (nats.is_some() && rng.random_range(0..100) < plan.nats_restart_pct)
            .then(|| rng.random_range(0..=kill_after_ms));
        let mut command = spawn(cycle, failpoint);
        let disturbances = Disturbances {
            scratch,
            nats: nats.as_mut(),
            drop_backends_after: drop_at_ms.map(Duration::from_millis),
            restart_nats_after: restart_at_ms.map(Duration::from_millis),
        };
        let ending = drive(
            &mut command,
            &child_log,
            Some(Duration::from_millis(kill_after_ms)),
            disturbances,
            &mut counters,
        )
        .await?;
        match ending {
            Ending::Killed => summary.kills += 1,
            Ending::Failpoint => summary.failpoint_deaths += 1,
            Ending::Done => summary.finished_early += 1,
            Ending::Error(message) => {
                summary.child_errors += 1;
                child_failures.push(format!("cycle {cycle}: {message}"));
            }
            Ending::Panic(message) => {
                summary.child_panics += 1;
                child_failures.push(format!("cycle {cycle}: panic: {message}"));
            }
        }
        progress(cycle + 1, plan.cycles);
    }
    // The last child finishes the work; a few tries, in case it too meets a
    // transient failure.
    if let Parent::Fees(fees) = &mut parent {
        fees.before_cycle().await?;
    }
    let mut finished = false;
    let mut last_failure = String::new();
    for attempt in 0..FINAL_ATTEMPTS_MAX {
        let mut command = spawn(plan.cycles + u64::from(attempt), None);
        let disturbances = Disturbances {
            scratch,
            nats: None,
            drop_backends_after: None,
            restart_nats_after: None,
        };
        match drive(&mut command, &child_log, None, disturbances, &mut counters).await? {
            Ending::Done => {
                finished = true;
                break;
            }
            Ending::Panic(message) => {
                summary.child_panics += 1;
                last_failure = format!("panic: {message}");
            }
            other => last_failure = format!("{other:?}"),
        }
    }
    summary.operations = counters.operations;
    summary.core_faults_injected = counters.core_faults;
    summary.pg_backends_terminated = counters.pg_backends_terminated;
    summary.nats_restarts = nats.as_ref().map(|n| n.restarts).unwrap_or(0);
    let mut checks = Checks::default();
    checks.add(
        "the last child finishes the work without a kill",
        finished,
        last_failure,
    );
    checks.add(
        "no child panicked",
        summary.child_panics == 0,
        child_failures
            .iter()
            .filter(|f| f.contains("panic"))
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("; "),
    );
    match &parent {
        Parent::Fees(fees) => {
            checks.extend(fees.check().await?);
            summary.work_items = fees.days() as u64;
        }
        Parent::Channel(channel) => {
            checks.extend(channel.check().await?);
            summary.work_items = items;
        }
        Parent::Relay(relay) => {
            checks.extend(relay.check().await?);
            summary.work_items = items;
        }
        Parent::Payroll(payroll) => {
            checks.extend(payroll.check().await?);
            summary.work_items = payroll.salaries();
        }
    }
    if let Some(nats) = nats {
        nats.stop().await;
    }
    summary.faults_injected = sim.faults_injected();
    summary.violations = checks.violations();
    summary.checks = checks.0;
    summary.replay = replay_command(plan);
    if !child_failures.is_empty() {
        tracing::info!(failures = ?child_failures.iter().take(5).collect::<Vec<_>>(), "children that exited with an error");
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(summary)
}

/// The command line that replays `plan`.
pub fn replay_command(plan: &Plan) -> String {
    let mut line = format!(
        "settle torture --workload {} --cycles {} --seed {}",
        plan.workload.name(),
        plan.cycles,
        plan.seed
    );
    if !plan.faults.is_empty() {
        let names: Vec<&str> = plan.faults.iter().map(|f| f.name()).collect();
        line.push_str(&format!(" --faults {}", names.join(",")));
    }
    if plan.fault_rate_pct > 0 {
        line.push_str(&format!(" --fault-rate-pct {}", plan.fault_rate_pct));
    }
    if plan.nats_restart_pct > 0 {
        line.push_str(&format!(" --nats-restart-pct {}", plan.nats_restart_pct));
    }
    if plan
        .database_url
        .as_deref()
        .is_some_and(|u| u.starts_with("postgres"))
    {
        line.push_str(" --database-url postgres://…");
        if plan.pg_drop_pct > 0 {
            line.push_str(&format!(" --pg-drop-pct {}", plan.pg_drop_pct));
        }
    }
    line
}

/// Starts one child and follows it until it ends: killed after `kill_after`
/// (counted from its `ready`), or by itself.
async fn drive(
    command: &mut tokio::process::Command,
    child_log: &std::path::Path,
    kill_after: Option<Duration>,
    mut disturbances: Disturbances<'_>,
    counters: &mut Counters,
) -> Result<Ending, TortureError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(child_log)?;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| TortureError::Child("stdout is not piped".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3_600);
    let ready_by = Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
    let mut kill_at = far;
    let mut drop_at = far;
    let mut restart_at = far;
    let mut give_up_at = ready_by;
    let mut saw_done = false;
    let mut saw_failpoint = false;
    let mut killed = false;
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                if line == "ready" {
                    let now = Instant::now();
                    if let Some(after) = kill_after {
                        kill_at = now + after;
                    }
                    if let Some(at) = disturbances.drop_backends_after {
                        drop_at = now + at;
                    }
                    if let Some(at) = disturbances.restart_nats_after {
                        restart_at = now + at;
                    }
                    give_up_at = now + Duration::from_millis(FINAL_TIMEOUT_MS);
                } else if line.starts_with("op ") {
                    counters.operations += 1;
                } else if line.starts_with("fault ") {
                    counters.core_faults += 1;
                } else if line == "done" {
                    saw_done = true;
                } else if line.starts_with("failpoint ") {
                    saw_failpoint = true;
                }
            }
            () = tokio::time::sleep_until(kill_at.into()) => {
                child.start_kill()?;
                killed = true;
                kill_at = far;
            }
            () = tokio::time::sleep_until(drop_at.into()) => {
                drop_at = far;
                counters.pg_backends_terminated +=
                    terminate_backends(disturbances.scratch).await?;
            }
            () = tokio::time::sleep_until(restart_at.into()) => {
                restart_at = far;
                if let Some(nats) = disturbances.nats.as_mut() {
                    nats.restart().await?;
                }
            }
            () = tokio::time::sleep_until(give_up_at.into()) => {
                child.start_kill()?;
                let _ = child.wait().await;
                return Ok(Ending::Error("the child did not finish in time".into()));
            }
        }
    }
    let status = child.wait().await?;
    Ok(if killed && !saw_done {
        Ending::Killed
    } else if saw_failpoint || status.code() == Some(FAILPOINT_EXIT_CODE) {
        Ending::Failpoint
    } else if status.success() && saw_done {
        Ending::Done
    } else if status.code() == Some(101) {
        Ending::Panic(format!("exit status {status}; see {}", child_log.display()))
    } else {
        Ending::Error(format!("exit status {status}; see {}", child_log.display()))
    })
}

/// PostgreSQL: terminates every backend of this run's children.
async fn terminate_backends(scratch: &Scratch) -> Result<u64, TortureError> {
    let (Some(server), Some(name)) = (scratch.server_url(), scratch.application_name()) else {
        return Ok(0);
    };
    let admin = store::Store::connect(server).await?;
    let mut count = 0;
    if let store::Store::Postgres(pool) = &admin {
        let terminated: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()) AS t",
        )
        .bind(name)
        .fetch_one(pool)
        .await?;
        count = u64::try_from(terminated).unwrap_or(0);
    }
    admin.close().await;
    Ok(count)
}
