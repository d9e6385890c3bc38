//! `settle serve`: one process running the HTTP API and console plus the
//! background roles — the event transport (embedded dispatchers on the outbox, or
//! NATS relays and workers with `--nats-url`), the channel reconciler, the ledger's
//! hold expiry, the fee scheduler and the payroll poller and stages. `--roles`
//! picks which run, so roles can be scaled out as separate processes over one
//! database. Ctrl-C stops every role and drains in-flight requests.
//!
//! The work is in the crates; this module opens stores by URL, builds the handles
//! and wires the tasks. It holds no state of its own.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bank::providers::{self, Facade, ProviderName};
use bank::routing::RoutingTable;
use bank::{AccountNumber, BankApi, HolderName, HttpBank, Transport, TransportConfig};
use channel::{Channel, ChannelConfig, InProcessCore};
use clap::{Args, ValueEnum};
use events::nats::NatsConfig;
use events::{Consumer, Dispatcher, DispatcherConfig, Shutdown, Wake};
use ledger::{ExpiryWorker, Ledger, LedgerConfig};
use money::{Clock, SystemClock};
use payroll::{Payroll, PayrollConfig};
use store::Store;
use tokio::task::JoinSet;

use super::DatabaseArgs;

/// A part of the platform a `serve` process can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// The HTTP API, its docs and the web console.
    Api,
    /// Event delivery: embedded dispatchers, or NATS relays and workers.
    Dispatcher,
    /// The channel reconciler for unknown and stale transfers.
    Reconciler,
    /// The ledger's hold expiry worker.
    Expiry,
    /// The fee settlement scheduler.
    Fees,
    /// The payroll balance poller (its stages run with `dispatcher`).
    Payroll,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    db: DatabaseArgs,
    /// Payroll's database (default: the main one on PostgreSQL; `<name>-payroll.db`
    /// beside a SQLite file, since payroll needs a writer of its own).
    #[arg(long, env = "SETTLE_PAYROLL_DATABASE_URL")]
    payroll_database_url: Option<String>,
    /// The API's tables: keys, ownership, idempotency, audit (default: the main
    /// database on PostgreSQL; `<name>-api.db` beside a SQLite file, so API
    /// bookkeeping never waits on the ledger's write lock).
    #[arg(long, env = "SETTLE_API_DATABASE_URL")]
    api_database_url: Option<String>,
    /// The channel's database (transfers, history read model); derived the same way.
    #[arg(long, env = "SETTLE_CHANNEL_DATABASE_URL")]
    channel_database_url: Option<String>,
    /// Relay the outbox through NATS JetStream instead of in-process dispatchers.
    #[arg(long, env = "SETTLE_NATS_URL")]
    nats_url: Option<String>,
    /// The bank (or `settle bank-sim`).
    #[arg(long, env = "SETTLE_BANK_URL", default_value = "http://127.0.0.1:8080")]
    bank_url: String,
    /// Where the API listens.
    #[arg(long, env = "SETTLE_LISTEN", default_value = "127.0.0.1:8000")]
    listen: String,
    /// The roles this process runs, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "api,dispatcher,reconciler,expiry,fees,payroll"
    )]
    roles: Vec<Role>,
    /// Seconds between fee scheduler ticks.
    #[arg(long, default_value_t = 300)]
    fees_every_s: u64,
    /// Seconds between payroll poll rounds.
    #[arg(long, default_value_t = 60)]
    poll_every_s: u64,
    /// The operating account payroll pays out of, and its holder.
    #[arg(long, default_value = "1002000000001")]
    payout_account: String,
    #[arg(long, default_value = "세틀주식회사")]
    payout_holder: String,
}

/// A component's database derived from the main URL: the same database on
/// PostgreSQL, a file `<name>-<component>.db` beside a SQLite file (SQLite has one
/// writer per file).
pub fn beside(main: &str, component: &str) -> String {
    if let Some(path) = main
        .strip_prefix("sqlite://")
        .or_else(|| main.strip_prefix("sqlite:"))
    {
        let path = std::path::Path::new(path);
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("settle");
        return format!(
            "sqlite://{}",
            path.with_file_name(format!("{stem}-{component}.db"))
                .display()
        );
    }
    main.to_owned()
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let ids = super::id_secret::installation_ids()?;
    let url = args.db.url()?;
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("opening {}", store::redact(&url)))?;
    let payroll_url = args
        .payroll_database_url
        .clone()
        .unwrap_or_else(|| beside(&url, "payroll"));
    let payroll_store = Store::connect(&payroll_url)
        .await
        .with_context(|| format!("opening payroll's {}", store::redact(&payroll_url)))?;
    let api_url = args
        .api_database_url
        .clone()
        .unwrap_or_else(|| beside(&url, "api"));
    let api_store = Store::connect(&api_url)
        .await
        .with_context(|| format!("opening the API's {}", store::redact(&api_url)))?;
    let channel_url = args
        .channel_database_url
        .clone()
        .unwrap_or_else(|| beside(&url, "channel"));
    let channel_store = Store::connect(&channel_url)
        .await
        .with_context(|| format!("opening the channel's {}", store::redact(&channel_url)))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ledger = Ledger::open(store.clone(), clock.clone(), LedgerConfig::default())
        .await
        .context("opening the ledger")?;
    let channel = Channel::open(
        channel_store.clone(),
        Arc::new(InProcessCore::new(ledger.clone())),
        clock.clone(),
        ChannelConfig::default(),
    )
    .await
    .context("opening the channel")?;
    let bank: Arc<dyn BankApi> = Arc::new(HttpBank::new(TransportConfig::new(&args.bank_url))?);
    let fees = fees::Fees::open(
        ledger.clone(),
        bank.clone(),
        clock.clone(),
        fees::FeesConfig {
            ids: ids.clone(),
            ..fees::bench::bench_config()?
        },
    )
    .await
    .context("opening fee settlement")?;
    let routing = RoutingTable::open(payroll_store.clone(), clock.clone()).await?;
    let mut transport = TransportConfig::new(&args.bank_url);
    transport.requests_per_s_max = None;
    let transport = Transport::new(transport)?;
    let facade = Facade::new(
        routing.clone(),
        providers::connect(ProviderName::Legacy, transport.clone()),
        providers::connect(ProviderName::Next, transport),
    );
    let payroll = Payroll::open(
        payroll_store.clone(),
        ledger.clone(),
        facade,
        clock.clone(),
        PayrollConfig::new(
            AccountNumber::new(&args.payout_account)?,
            HolderName::new(&args.payout_holder)?,
            ids,
        ),
    )
    .await
    .context("opening payroll")?;

    let shutdown = Shutdown::default();
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let roles = &args.roles;
    if roles.contains(&Role::Api) {
        let handles = api::Handles {
            ledger: Some(ledger.clone()),
            channel: Some(channel.clone()),
            fees: Some(fees.clone()),
            payroll: Some(payroll.clone()),
            events: Some(store.clone()),
            routing: Some(routing.clone()),
            bank: Some(bank.clone()),
            statement: Some(Arc::new(fees::report::HttpStatement::new(&args.bank_url))),
            clock: Some(clock.clone()),
            probes: probes(&args),
        };
        let state =
            api::AppState::new(api_store.clone(), handles, api::ApiConfig::default()).await?;
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        tracing::info!(address = %listener.local_addr()?, "API and console listening");
        eprintln!(
            "settle serve: API on http://{}/v1, console on http://{}/console/",
            listener.local_addr()?,
            listener.local_addr()?
        );
        let signal = shutdown.clone();
        tasks.spawn(async move {
            api::serve(listener, state, signal.wait())
                .await
                .context("the API server")
        });
    }
    if roles.contains(&Role::Dispatcher) {
        // The channel has a database of its own; the history consumer reads the
        // core's outbox and writes there.
        let history = Arc::new(channel.history().consumer());
        deliver(
            &mut tasks, &args, &store, "core", history, &clock, &shutdown,
        )
        .await?;
        for stage in payroll.stage_consumers() {
            deliver(
                &mut tasks,
                &args,
                &payroll_store,
                "payroll",
                Arc::new(stage),
                &clock,
                &shutdown,
            )
            .await?;
        }
        let alerts = Arc::new(payroll.alert_consumer());
        deliver(
            &mut tasks,
            &args,
            &payroll_store,
            "payroll",
            alerts,
            &clock,
            &shutdown,
        )
        .await?;
    }
    if roles.contains(&Role::Reconciler) {
        channel.reconciler().check_core().await?;
        let (reconciler, signal) = (channel.clone(), shutdown.clone());
        tasks.spawn(async move {
            reconciler.reconciler().run(signal.wait()).await;
            Ok(())
        });
    }
    if roles.contains(&Role::Expiry) {
        let (worker, signal) = (ExpiryWorker::new(ledger.clone(), 1_000), shutdown.clone());
        tasks.spawn(async move {
            worker.run(signal.wait()).await;
            Ok(())
        });
    }
    if roles.contains(&Role::Fees) {
        let scheduler =
            fees::scheduler::Scheduler::new(fees.clone(), Duration::from_secs(args.fees_every_s));
        let signal = shutdown.clone();
        tasks.spawn(async move {
            scheduler.run(signal.wait()).await;
            Ok(())
        });
    }
    if roles.contains(&Role::Payroll) {
        let poller = payroll::poller::Poller::new(payroll.clone())?;
        let every = Duration::from_secs(args.poll_every_s.max(1));
        let signal = shutdown.clone();
        tasks.spawn(async move {
            let mut stopped = std::pin::pin!(signal.wait());
            loop {
                match poller.run_round().await {
                    Ok(report) => tracing::info!(?report, "payroll poll round"),
                    Err(error) => {
                        tracing::warn!(%error, code = error.code(), "payroll poll round failed")
                    }
                }
                tokio::select! {
                    _ = &mut stopped => return Ok(()),
                    _ = tokio::time::sleep(every) => {}
                }
            }
        });
    }
    let roles_text: Vec<String> = roles
        .iter()
        .map(|r| format!("{r:?}").to_lowercase())
        .collect();
    tracing::info!(roles = %roles_text.join(","), "settle serve running; Ctrl-C stops");
    tokio::select! {
        signal = tokio::signal::ctrl_c() => {
            signal.context("waiting for Ctrl-C")?;
            tracing::info!("Ctrl-C: stopping every role");
        }
        Some(ended) = tasks.join_next() => {
            // A role that ends on its own is an error: stop the rest and say why.
            shutdown.cancel();
            while tasks.join_next().await.is_some() {}
            return match ended {
                Ok(Ok(())) => Err(anyhow::anyhow!("a role stopped by itself")),
                Ok(Err(error)) => Err(error),
                Err(error) => Err(anyhow::anyhow!("a role panicked: {error}")),
            };
        }
    }
    shutdown.cancel();
    while let Some(ended) = tasks.join_next().await {
        if let Ok(Err(error)) = ended {
            tracing::warn!(error = %format!("{error:#}"), "a role stopped with an error");
        }
    }
    Ok(())
}

/// Readiness checks of what this process talks to beyond its databases.
fn probes(args: &ServeArgs) -> Vec<(String, api::Probe)> {
    let mut probes: Vec<(String, api::Probe)> = Vec::new();
    let bank_url = args.bank_url.clone();
    probes.push(("bank".to_owned(), tcp_probe(&bank_url)));
    if let Some(nats_url) = &args.nats_url {
        probes.push(("nats".to_owned(), tcp_probe(nats_url)));
    }
    probes
}

/// A probe that opens a TCP connection to a URL's host and port.
fn tcp_probe(url: &str) -> api::Probe {
    let address = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or("")
        .to_owned();
    Arc::new(move || {
        let address = address.clone();
        Box::pin(async move {
            tokio::net::TcpStream::connect(&address)
                .await
                .map(|_| ())
                .map_err(|error| format!("{address}: {error}"))
        })
    })
}

/// Delivers `store`'s outbox to `consumer` until shutdown: an embedded dispatcher,
/// or with `--nats-url` the relays and workers of stream `SETTLE_<LABEL>`.
async fn deliver<C: Consumer>(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    args: &ServeArgs,
    store: &Store,
    label: &str,
    consumer: Arc<C>,
    clock: &Arc<dyn Clock>,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    match &args.nats_url {
        None => {
            let dispatcher = Dispatcher::new(
                store.clone(),
                consumer,
                DispatcherConfig::default(),
                clock.clone(),
                Wake::new(),
            )
            .await?;
            let signal = shutdown.clone();
            tasks.spawn(async move {
                dispatcher
                    .run(signal.wait())
                    .await
                    .context("an event dispatcher")
            });
        }
        Some(url) => {
            let config = NatsConfig {
                url: url.clone(),
                stream: format!("SETTLE_{}", label.to_uppercase()),
                subject_prefix: format!("settle-{label}"),
                ..NatsConfig::default()
            };
            let (store, clock, signal) = (store.clone(), clock.clone(), shutdown.clone());
            tasks.spawn(async move {
                events::nats::run_all(store, config, consumer, clock, signal)
                    .await
                    .context("NATS relay and workers")
            });
        }
    }
    Ok(())
}
