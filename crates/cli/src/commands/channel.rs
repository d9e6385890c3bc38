//! `settle channel …`: operator access to the channel side. Output is one JSON
//! document on stdout; errors are JSON on stderr with a stable code. The work is in
//! the `channel` crate; this module only parses arguments and wires stores.

use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use money::SystemClock;

use super::DatabaseArgs;
use super::bench::BackendArg;

#[derive(Subcommand, Debug)]
pub enum ChannelCommand {
    /// Settle `unknown` and stale in-flight transfers by asking the core (one step).
    Reconcile(ReconcileArgs),
}

#[derive(Args, Debug)]
pub struct ReconcileArgs {
    /// The core ledger's database.
    #[command(flatten)]
    db: DatabaseArgs,
    /// The channel's own database (default: the core's database URL).
    #[arg(long, env = "SETTLE_CHANNEL_DATABASE_URL")]
    channel_database_url: Option<String>,
}

pub async fn run(command: ChannelCommand) -> anyhow::Result<()> {
    match command {
        ChannelCommand::Reconcile(args) => reconcile(args).await,
    }
}

async fn reconcile(args: ReconcileArgs) -> anyhow::Result<()> {
    let core_url = args.db.url()?;
    let channel_url = args
        .channel_database_url
        .unwrap_or_else(|| core_url.clone());
    let core_store = store::Store::connect(&core_url)
        .await
        .with_context(|| format!("opening the core's database {}", store::redact(&core_url)))?;
    let clock = Arc::new(SystemClock);
    let ledger = ledger::Ledger::open(core_store, clock.clone(), ledger::LedgerConfig::default())
        .await
        .context("opening the core ledger")?;
    let channel_store = store::Store::connect(&channel_url).await.with_context(|| {
        format!(
            "opening the channel's database {}",
            store::redact(&channel_url)
        )
    })?;
    let channel = ::channel::Channel::open(
        channel_store,
        Arc::new(::channel::InProcessCore::new(ledger)),
        clock,
        ::channel::ChannelConfig::default(),
    )
    .await
    .context("opening the channel")?;
    channel.reconciler().check_core().await?;
    let report = channel.reconciler().run_once().await?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

#[derive(Args, Debug)]
pub struct HistoryBenchArgs {
    /// Entries of the one benchmark account, bulk-loaded into the read model.
    #[arg(long, default_value_t = 1_000_000)]
    entries: i64,
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: BackendArg,
    /// PostgreSQL server for `--backend postgres` (a scratch schema is created and
    /// dropped); default DATABASE_URL or postgres://root@127.0.0.1:5432/test.
    #[arg(long)]
    database_url: Option<String>,
    /// Entries per page read.
    #[arg(long, default_value_t = 50)]
    page_entries: usize,
    /// Timed reads per position, keyset.
    #[arg(long, default_value_t = 1_000)]
    keyset_samples: usize,
    /// Timed reads per position, OFFSET (slow when deep).
    #[arg(long, default_value_t = 30)]
    offset_samples: usize,
    /// One JSON line.
    #[arg(long)]
    json: bool,
}

/// `settle bench history`: keyset against OFFSET page reads on a scratch database.
pub async fn run_bench(args: HistoryBenchArgs) -> anyhow::Result<()> {
    let base_url = match args.backend {
        BackendArg::Sqlite => None,
        BackendArg::Postgres => Some(
            args.database_url
                .or_else(|| {
                    std::env::var("DATABASE_URL")
                        .ok()
                        .filter(|u| u.starts_with("postgres"))
                })
                .unwrap_or_else(|| "postgres://root@127.0.0.1:5432/test".to_owned()),
        ),
    };
    let scratch = crate::scratch::ScratchDb::create(base_url.as_deref(), "history").await?;
    let params = ::channel::bench::HistoryBenchParams {
        entries: args.entries,
        page_entries: args.page_entries,
        keyset_samples: args.keyset_samples,
        offset_samples: args.offset_samples,
    };
    let outcome = ::channel::bench::run(&scratch.store, &params).await;
    scratch.finish(false).await?;
    let report = outcome?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "history bench ({}, {} entries, {} per page): keyset p99 {:.3} ms shallow, {:.3} ms deep; \
             OFFSET p99 {:.3} ms shallow, {:.3} ms deep; OFFSET/keyset at depth {:.1}x",
            report.backend,
            report.entries,
            report.page_entries,
            report.keyset_p99_ms_shallow,
            report.keyset_p99_ms_deep,
            report.offset_p99_ms_shallow,
            report.offset_p99_ms_deep,
            report.ratio
        );
    }
    Ok(())
}
