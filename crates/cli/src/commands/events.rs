//! `settle events dlq …` (operator actions on dead letters) and `settle bench
//! events` (the event backbone benchmark). This file only parses arguments and
//! prints; the work lives in the `events` crate. Output is JSON on stdout; errors
//! are JSON on stderr with a stable code and exit status 2 for bad input.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use events::bench::{BenchOptions, BenchTransport};
use events::dead_letter::{self, OperatorAction};
use events::{DeadLetterState, EventsError};
use money::{Clock, EventId, SystemClock};

use super::{CliError, DatabaseArgs};

#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// Dead letters: events a consumer gave up on, holding their key's later events.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// The backbone now: per stream the unrelayed backlog and its oldest age, per
    /// consumer the lag and parked keys, per partition the relay leader (JSON).
    Status {
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// List dead letters, newest first.
    List {
        /// Only this consumer's letters.
        #[arg(long)]
        consumer: Option<String>,
        /// Only letters in this state.
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// Letters to show (at most 1,000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// One dead letter with its action history.
    Show(LetterArgs),
    /// Deliver a parked event again (fix the cause first); its key's later events follow.
    Replay(ActionArgs),
    /// Give a parked event up without its effect; its key's later events follow.
    Discard(ActionArgs),
}

#[derive(Args, Debug)]
pub struct LetterArgs {
    /// The event id (UUID).
    event_id: String,
    /// The consumer the letter belongs to.
    #[arg(long)]
    consumer: String,
    #[command(flatten)]
    db: DatabaseArgs,
}

#[derive(Args, Debug)]
pub struct ActionArgs {
    #[command(flatten)]
    letter: LetterArgs,
    /// Who is acting (recorded with the action).
    #[arg(long, env = "SETTLE_ACTOR")]
    actor: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StateArg {
    Parked,
    Replayed,
    Discarded,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TransportArg {
    Embedded,
    Nats,
}

#[derive(Args, Debug)]
pub struct BenchEventsArgs {
    #[arg(long, value_enum, default_value = "embedded")]
    transport: TransportArg,
    /// Events to produce.
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    /// Keys to spread them over.
    #[arg(long, default_value_t = 1_000)]
    keys: usize,
    /// Produce at this many events per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<u64>,
    /// Print one JSON line only.
    #[arg(long)]
    json: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
    /// sqlite:PATH or postgres://… (default: a temporary SQLite file).
    #[arg(long)]
    database_url: Option<String>,
    #[arg(long, env = "NATS_URL", default_value = events::nats::DEFAULT_NATS_URL)]
    nats_url: String,
}

fn user_error(error: EventsError) -> anyhow::Error {
    CliError::new(error.code(), error.to_string()).into()
}

fn parse_event_id(text: &str) -> anyhow::Result<EventId> {
    EventId::parse(text).map_err(|e| CliError::new(e.code(), format!("event id: {e}")).into())
}

async fn open(db: &DatabaseArgs) -> anyhow::Result<store::Store> {
    let url = db.url()?;
    let store = store::Store::connect(&url)
        .await
        .map_err(|e| CliError::new(e.code(), e.to_string()))?;
    events::migrate(&store).await.map_err(user_error)?;
    Ok(store)
}

fn print(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn run(command: EventsCommand) -> anyhow::Result<()> {
    let command = match command {
        EventsCommand::Dlq(command) => command,
        EventsCommand::Status { db } => {
            let store = open(&db).await?;
            let status = events::status::status(&store, SystemClock.now()).await?;
            return print(&status);
        }
    };
    match command {
        DlqCommand::List {
            consumer,
            state,
            limit,
            db,
        } => {
            let store = open(&db).await?;
            let state = state.map(|s| match s {
                StateArg::Parked => DeadLetterState::Parked,
                StateArg::Replayed => DeadLetterState::Replayed,
                StateArg::Discarded => DeadLetterState::Discarded,
            });
            let letters = dead_letter::list(&store, consumer.as_deref(), state, limit)
                .await
                .map_err(user_error)?;
            print(&letters)
        }
        DlqCommand::Show(args) => {
            let id = parse_event_id(&args.event_id)?;
            let store = open(&args.db).await?;
            let (letter, actions) = dead_letter::show(&store, &args.consumer, id)
                .await
                .map_err(user_error)?;
            print(&serde_json::json!({"dead_letter": letter, "actions": actions}))
        }
        DlqCommand::Replay(args) => act(args, OperatorAction::Replay).await,
        DlqCommand::Discard(args) => act(args, OperatorAction::Discard).await,
    }
}

async fn act(args: ActionArgs, action: OperatorAction) -> anyhow::Result<()> {
    let actor = args.actor.trim();
    if actor.is_empty() {
        return Err(CliError::new("actor_missing", "--actor must name who is acting").into());
    }
    let id = parse_event_id(&args.letter.event_id)?;
    let store = open(&args.letter.db).await?;
    let letter = dead_letter::resolve(
        &store,
        &args.letter.consumer,
        id,
        action,
        actor,
        SystemClock.now(),
    )
    .await
    .map_err(user_error)?;
    print(&letter)
}

/// `settle bench events`, dispatched from `bench.rs`.
pub async fn run_bench(args: BenchEventsArgs) -> anyhow::Result<()> {
    let options = BenchOptions {
        transport: match args.transport {
            TransportArg::Embedded => BenchTransport::Embedded,
            TransportArg::Nats => BenchTransport::Nats,
        },
        events: args.events,
        keys: args.keys,
        rate_per_s: args.rate,
        database_url: args.database_url,
        nats_url: args.nats_url,
        timeout_ms: args.timeout_s.saturating_mul(1_000),
    };
    if options.events == 0 || options.keys == 0 {
        return Err(
            CliError::new("bench_invalid", "--events and --keys must be at least 1").into(),
        );
    }
    let report = events::bench::run(&options)
        .await
        .context("events benchmark failed")?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "events bench ({}, {}): {} events over {} keys: {:.0} events/s, lag p50 {} ms, p99 {} ms, max {} ms",
            report.transport,
            report.backend,
            report.events,
            report.keys,
            report.eps,
            report.p50_ms,
            report.p99_ms,
            report.max_ms
        );
    }
    Ok(())
}
