//! `settle torture …`: the reliability suite's command line. The work is in the
//! `torture` crate; this module parses flags, draws the progress bar and prints
//! the JSON summary (non-zero exit when any invariant broke).
//!
//! - `settle torture --workload fees --cycles 200 --seed 7`: the crash harness.
//! - `settle torture matrix --workload fees`: bank fault kinds × rates.
//! - `settle torture sim --seed 7`: one deterministic simulation (trace hash).
//! - `settle torture cluster --minutes 30`: several `settle serve` processes,
//!   a bank-sim and a private broker under kills (`torture::cluster`).
//! - `settle torture child …` (hidden): what the harness starts and kills.

use clap::{Args, Subcommand};
use torture::faults::{FaultKind, MATRIX_RATES_PCT};
use torture::harness::{Plan, Summary};
use torture::{TortureError, Workload};

use super::CliError;
use crate::progress;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TortureArgs {
    #[command(subcommand)]
    command: Option<TortureCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum TortureCommand {
    /// Every bank fault kind at 0, 10 and 30 %, one crash run each.
    Matrix(MatrixArgs),
    /// One deterministic simulation of fee settlement; prints its trace hash.
    Sim(SimArgs),
    /// Several `settle serve` processes over one PostgreSQL schema, a bank-sim
    /// and a private nats-server, SIGKILLed under load; then every invariant.
    Cluster(ClusterArgs),
    /// The child process the harness starts and kills.
    #[command(hide = true)]
    Child(ChildArgs),
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// fees, channel, relay or payroll.
    #[arg(long, default_value = "fees")]
    workload: String,
    /// Kill-and-restart cycles before the last, unkilled child finishes the work.
    #[arg(long, default_value_t = 20)]
    cycles: u64,
    /// Decides every kill, fail point and schedule (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// PostgreSQL server (a fresh schema is made and dropped); default: SQLite.
    #[arg(long)]
    database_url: Option<String>,
    /// Bank faults: all, none, or a list of timeout,5xx,429,frozen,renamed,maintenance,slow.
    #[arg(long, default_value = "none")]
    faults: String,
    /// Rate of each listed fault, in percent (channel: share of misbehaving core calls).
    #[arg(long, default_value_t = 0)]
    fault_rate_pct: u32,
    /// Latest kill, in ms after the child is ready.
    #[arg(long, default_value_t = 1_500)]
    kill_ms_max: u64,
    /// Share of cycles that end at a fail point instead of a timed kill.
    #[arg(long, default_value_t = 25)]
    failpoint_pct: u32,
    /// PostgreSQL: share of cycles in which the run's backends are terminated.
    #[arg(long, default_value_t = 0)]
    pg_drop_pct: u32,
    /// Relay: share of cycles in which the private nats-server is killed and restarted.
    #[arg(long, default_value_t = 0)]
    nats_restart_pct: u32,
    /// Keep the stores and child logs.
    #[arg(long)]
    keep: bool,
}

#[derive(Args, Debug)]
struct MatrixArgs {
    #[arg(long, default_value = "fees")]
    workload: String,
    /// Cycles per cell.
    #[arg(long, default_value_t = 5)]
    cycles: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    database_url: Option<String>,
}

#[derive(Args, Debug)]
struct SimArgs {
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seeds to run, from --seed on.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    #[arg(long, default_value_t = 40)]
    loans: usize,
    #[arg(long, default_value = "timeout,5xx,429,frozen,maintenance")]
    faults: String,
    #[arg(long, default_value_t = 10)]
    fault_rate_pct: u32,
}

#[derive(Args, Debug)]
struct ClusterArgs {
    /// Minutes of load and kills (quiescing and checks come after).
    #[arg(long, default_value_t = 5)]
    minutes: u64,
    /// Decides every kill and the clients' choices (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// The PostgreSQL server (a fresh schema is made and dropped).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// A kill every uniform(min..=max) seconds.
    #[arg(long, default_value_t = 2)]
    kill_every_s_min: u64,
    #[arg(long, default_value_t = 6)]
    kill_every_s_max: u64,
    /// Share of kills that hit the broker.
    #[arg(long, default_value_t = 20)]
    broker_kill_pct: u32,
    /// PostgreSQL connections all serve processes together may hold (a login
    /// role with this CONNECTION LIMIT).
    #[arg(long, default_value_t = 60)]
    connections_max: u32,
    /// Each serve process's --database-connections-max.
    #[arg(long, default_value_t = 12)]
    serve_connections_max: u32,
    /// Keep the schema, the bank's file and the processes' logs.
    #[arg(long)]
    keep: bool,
}

#[derive(Args, Debug)]
struct ChildArgs {
    #[arg(long)]
    workload: String,
    #[arg(long)]
    database_url: String,
    #[arg(long)]
    bank_url: Option<String>,
    #[arg(long)]
    seed: u64,
    #[arg(long)]
    cycle: u64,
    #[arg(long)]
    failpoint_after_calls: Option<u64>,
    #[arg(long, default_value_t = 0)]
    items: u64,
    #[arg(long, default_value_t = 0)]
    fault_rate_pct: u32,
    #[arg(long)]
    nats_url: Option<String>,
}

fn invalid(error: TortureError) -> anyhow::Error {
    CliError::new(error.code(), error.to_string()).into()
}

pub async fn run(args: TortureArgs) -> anyhow::Result<()> {
    match args.command {
        Some(TortureCommand::Child(child)) => run_child(child).await,
        Some(TortureCommand::Matrix(matrix)) => run_matrix(matrix).await,
        Some(TortureCommand::Sim(sim)) => run_sim(sim).await,
        Some(TortureCommand::Cluster(cluster)) => run_cluster(cluster).await,
        None => {
            let plan = plan(&args.run)?;
            eprintln!(
                "torture seed {} (replay: {})",
                plan.seed,
                torture::harness::replay_command(&plan)
            );
            let summary = run_plan(&plan).await?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            verdict(&[summary])
        }
    }
}

fn plan(args: &RunArgs) -> anyhow::Result<Plan> {
    let workload = Workload::parse(&args.workload).map_err(invalid)?;
    let mut plan = Plan::new(workload, std::env::current_exe()?);
    plan.cycles = args.cycles;
    plan.seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    plan.database_url = args.database_url.clone();
    plan.faults = FaultKind::parse_list(&args.faults).map_err(invalid)?;
    plan.fault_rate_pct = args.fault_rate_pct;
    plan.kill_ms_max = args.kill_ms_max.max(plan.kill_ms_min);
    plan.failpoint_pct = args.failpoint_pct;
    plan.pg_drop_pct = args.pg_drop_pct;
    plan.nats_restart_pct = args.nats_restart_pct;
    plan.keep = args.keep;
    Ok(plan)
}

async fn run_plan(plan: &Plan) -> anyhow::Result<Summary> {
    let bar = progress::bar(plan.cycles, &format!("torture {}", plan.workload.name()));
    let summary = torture::harness::run(plan, &|done, _| bar.set_position(done)).await;
    bar.finish_and_clear();
    Ok(summary?)
}

fn verdict(summaries: &[Summary]) -> anyhow::Result<()> {
    let violations: usize = summaries.iter().map(|s| s.violations).sum();
    if violations > 0 {
        let seeds: Vec<String> = summaries
            .iter()
            .filter(|s| s.violations > 0)
            .map(|s| s.replay.clone())
            .collect();
        return Err(CliError::new(
            "invariant_violated",
            format!(
                "{violations} invariant violations; replay with: {}",
                seeds.join(" | ")
            ),
        )
        .into());
    }
    Ok(())
}

async fn run_matrix(args: MatrixArgs) -> anyhow::Result<()> {
    let workload = Workload::parse(&args.workload).map_err(invalid)?;
    let mut summaries = Vec::new();
    for kind in FaultKind::ALL {
        for rate_pct in MATRIX_RATES_PCT {
            if rate_pct == 0 && kind != FaultKind::ALL[0] {
                // A 0 % rate is the same run for every kind.
                continue;
            }
            let mut plan = Plan::new(workload, std::env::current_exe()?);
            plan.cycles = args.cycles;
            plan.seed = args.seed;
            plan.database_url = args.database_url.clone();
            plan.faults = vec![kind];
            plan.fault_rate_pct = rate_pct;
            eprintln!("matrix cell: {} at {rate_pct} %", kind.name());
            summaries.push(run_plan(&plan).await?);
        }
    }
    let cells: Vec<serde_json::Value> = summaries
        .iter()
        .map(|s| {
            serde_json::json!({
                "faults": s.faults,
                "fault_rate_pct": s.fault_rate_pct,
                "cycles": s.cycles,
                "kills": s.kills + s.failpoint_deaths,
                "operations": s.operations,
                "faults_injected": s.faults_injected.total(),
                "violations": s.violations,
                "seed": s.seed,
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({"workload": workload, "cells": cells}))?
    );
    verdict(&summaries)
}

async fn run_sim(args: SimArgs) -> anyhow::Result<()> {
    let faults = FaultKind::parse_list(&args.faults).map_err(invalid)?;
    let mut reports = Vec::new();
    for seed in args.seed..args.seed.saturating_add(args.seeds.max(1)) {
        let mut plan = torture::simulation::SimPlan::new(seed);
        plan.loans = args.loans;
        plan.faults = faults.clone();
        plan.fault_rate_pct = args.fault_rate_pct;
        let dir =
            std::env::temp_dir().join(format!("settle-sim-{}", uuid::Uuid::now_v7().simple()));
        let report = torture::simulation::run(&plan, &dir).await;
        let _ = std::fs::remove_dir_all(&dir);
        let report = report.map_err(invalid)?;
        if report.violations > 0 {
            eprintln!("seed {seed} broke an invariant; replay: {}", report.replay);
        }
        reports.push(report);
    }
    println!("{}", serde_json::to_string_pretty(&reports)?);
    let violations: usize = reports.iter().map(|r| r.violations).sum();
    if violations > 0 {
        return Err(CliError::new("invariant_violated", format!("{violations} violations")).into());
    }
    Ok(())
}

async fn run_cluster(args: ClusterArgs) -> anyhow::Result<()> {
    let mut plan = torture::cluster::ClusterPlan::new(std::env::current_exe()?, &args.database_url);
    plan.seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    plan.load_ms = args.minutes.saturating_mul(60_000);
    plan.kill_every_ms_min = args.kill_every_s_min.saturating_mul(1_000).max(1);
    plan.kill_every_ms_max = args
        .kill_every_s_max
        .saturating_mul(1_000)
        .max(plan.kill_every_ms_min);
    plan.broker_kill_pct = args.broker_kill_pct;
    plan.connections_max = args.connections_max;
    plan.serve_connections_max = args.serve_connections_max;
    plan.keep = args.keep;
    let summary = torture::cluster::run(&plan, &|line| eprintln!("{line}"))
        .await
        .map_err(invalid)?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if summary.violations > 0 {
        return Err(CliError::new(
            "invariant_violated",
            format!(
                "{} invariant violations (lost {}, doubled {}, wrong-stream {}); replay with: {}",
                summary.violations,
                summary.events_lost,
                summary.effects_doubled,
                summary.wrong_stream,
                summary.replay
            ),
        )
        .into());
    }
    Ok(())
}

async fn run_child(args: ChildArgs) -> anyhow::Result<()> {
    let workload = Workload::parse(&args.workload).map_err(invalid)?;
    torture::child::run(torture::child::ChildArgs {
        workload,
        database_url: args.database_url,
        bank_url: args.bank_url,
        seed: args.seed,
        cycle: args.cycle,
        failpoint_after_calls: args.failpoint_after_calls,
        items: args.items,
        fault_rate_pct: args.fault_rate_pct,
        nats_url: args.nats_url.filter(|url| !url.is_empty()),
    })
    .await?;
    Ok(())
}
