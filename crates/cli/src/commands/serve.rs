//! `settle serve`: one process running the HTTP API and console plus the
//! background roles — the event transport (embedded dispatchers on the outbox, or
//! NATS relays and workers with `--nats-url`), the channel reconciler, the ledger's
//! hold expiry, the fee scheduler and the payroll poller and stages. `--roles`
//! picks which run, so roles can be scaled out as separate processes over one
//! database: every piece of background work is leased, so of several processes
//! one does it and the others stand by. Ctrl-C and SIGTERM stop every role within
//! `--shutdown-grace-ms` and drain in-flight requests; the exit status is 0.
//! Components that share a database URL share one pool.
//!
//! The work is in the crates; this module opens stores by URL, builds the handles
//! and wires the tasks. It holds no state of its own.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bank::providers::Facade;
use bank::routing::RoutingTable;
use bank::{AccountNumber, BankApi, HolderName, HttpBank, Transport, TransportConfig};
use channel::{Channel, ChannelConfig, InProcessCore};
use clap::{Args, ValueEnum};
use events::nats::NatsConfig;
use events::{Consumer, Dispatcher, DispatcherConfig, Shutdown, Wake};
use ledger::{ExpiryWorker, Ledger, LedgerConfig};
use money::{Clock, SystemClock};
use payroll::{Payroll, PayrollConfig};
use store::{Databases, Leases, Store, StoreOptions};
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
    /// Prefix of this deployment's JetStream streams (`<NS>_LEDGER`,
    /// `<NS>_PAYROLL`) and subjects: deployments sharing a NATS server must each
    /// have their own.
    #[arg(long, env = "SETTLE_NATS_NAMESPACE", default_value = "SETTLE")]
    nats_namespace: String,
    /// The bank (or `settle bank-sim`).
    #[arg(long, env = "SETTLE_BANK_URL", default_value = "http://127.0.0.1:8080")]
    bank_url: String,
    #[command(flatten)]
    bank_ca: super::BankCaArgs,
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
    /// Connections in each database's pool (one pool per distinct database URL,
    /// plus one connection for this process's leases). With every role on one
    /// PostgreSQL database a process holds at most this + 1 + the fee modules'
    /// try-locks in use.
    #[arg(long, env = "SETTLE_DATABASE_CONNECTIONS_MAX", default_value_t = 12)]
    database_connections_max: u32,
    /// After Ctrl-C or SIGTERM, how long the roles get to finish their current
    /// step (bank calls in flight are answered first) before they are cut; all
    /// work is resumable, so a cut loses nothing.
    #[arg(long, env = "SETTLE_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    shutdown_grace_ms: u64,
    /// The operating account payroll pays out of, and its holder. No default:
    /// it must be named, and must not be a fee account.
    #[arg(long, env = "SETTLE_PAYOUT_ACCOUNT")]
    payout_account: String,
    #[arg(long, env = "SETTLE_PAYOUT_HOLDER")]
    payout_holder: String,
    /// Actions a second ops key must approve (maker-checker), comma-separated:
    /// fees_withdraw, payroll_retry, payroll_rollback, providers_cohort,
    /// providers_override, ops_key_create, accounts_owner, or all. With fees_withdraw the fee
    /// scheduler leaves Withdraw to approved operator requests.
    #[arg(long, env = "SETTLE_REQUIRE_APPROVAL", default_value = "", value_parser = parse_guarded)]
    require_approval: std::collections::BTreeSet<api::approvals::Guarded>,
    /// How long a pending approval waits for its second key.
    #[arg(long, env = "SETTLE_APPROVAL_TTL_S", default_value_t = 86_400)]
    approval_ttl_s: u32,
}

pub(crate) fn parse_guarded(
    text: &str,
) -> Result<std::collections::BTreeSet<api::approvals::Guarded>, String> {
    api::approvals::Guarded::parse_list(text)
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

/// The platform's handles for one `serve` process.
struct Platform {
    databases: Databases,
    store: Store,
    leases: Leases,
    payroll_store: Store,
    payroll_leases: Leases,
    api_store: Store,
    /// The channel's tables are in the core's database (the same URL).
    channel_shares_core: bool,
    clock: Arc<dyn Clock>,
    ledger: Ledger,
    channel: Channel,
    bank: Arc<dyn BankApi>,
    /// The extra CA the bank's HTTPS certificate is checked against (`--bank-ca`).
    bank_ca: Option<bank::BankCa>,
    fees: fees::Fees,
    routing: RoutingTable,
    payroll: Payroll,
}

/// Opens the databases (one pool per distinct URL) and every component.
async fn open_platform(args: &ServeArgs) -> anyhow::Result<Platform> {
    let ids = super::id_secret::installation_ids()?;
    let url = args.db.url()?;
    let mut databases = Databases::new(StoreOptions {
        connections_max: args.database_connections_max.max(2),
        acquire_timeout_ms: 10_000,
        search_path: None,
    });
    let component_url = |given: &Option<String>, component: &str| {
        given.clone().unwrap_or_else(|| beside(&url, component))
    };
    let mut open = async |url: String, what: &str| {
        databases
            .open(&url)
            .await
            .with_context(|| format!("opening {what} at {}", store::redact(&url)))
    };
    let (store, leases) = open(url.clone(), "the core database").await?;
    let payroll_url = component_url(&args.payroll_database_url, "payroll");
    let (payroll_store, payroll_leases) = open(payroll_url, "payroll's database").await?;
    let api_url = component_url(&args.api_database_url, "api");
    let (api_store, _) = open(api_url, "the API's database").await?;
    let channel_url = component_url(&args.channel_database_url, "channel");
    let channel_shares_core = channel_url == url;
    let (channel_store, _) = open(channel_url, "the channel's database").await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ledger = Ledger::open(store.clone(), clock.clone(), LedgerConfig::default())
        .await
        .context("opening the ledger")?;
    let channel = Channel::open(
        channel_store,
        Arc::new(InProcessCore::new(ledger.clone())),
        clock.clone(),
        ChannelConfig::default(),
    )
    .await
    .context("opening the channel")?;
    let bank_ca = args.bank_ca.load()?;
    let fees_config = fees::FeesConfig {
        ids: ids.clone(),
        ..fees::bench::bench_config()?
    };
    let mut bank_transport = TransportConfig::new(&args.bank_url);
    bank_transport.extra_ca = bank_ca.clone();
    // Payouts and result inquiries share one limit: the fee pipeline's.
    bank_transport.concurrent_max = Some(fees_config.bank_calls_in_flight_max);
    bank_transport.idle_connections_per_host_max = fees_config.bank_calls_in_flight_max;
    let bank: Arc<dyn BankApi> = Arc::new(HttpBank::new(bank_transport)?);
    let payout_account = AccountNumber::new(&args.payout_account)?;
    super::house_accounts::payout_apart_from_fees(
        "--payout-account",
        &payout_account,
        &fees_config,
    )?;
    let fees = fees::Fees::open(ledger.clone(), bank.clone(), clock.clone(), fees_config)
        .await
        .context("opening fee settlement")?;
    let routing = RoutingTable::open(payroll_store.clone(), clock.clone()).await?;
    let payroll = open_payroll(
        args,
        &payroll_store,
        &ledger,
        &routing,
        &clock,
        bank_ca.as_ref(),
        ids,
    )
    .await?;
    Ok(Platform {
        databases,
        store,
        leases,
        payroll_store,
        payroll_leases,
        api_store,
        channel_shares_core,
        clock,
        ledger,
        channel,
        bank,
        bank_ca,
        fees,
        routing,
        payroll,
    })
}

async fn open_payroll(
    args: &ServeArgs,
    payroll_store: &Store,
    ledger: &Ledger,
    routing: &RoutingTable,
    clock: &Arc<dyn Clock>,
    bank_ca: Option<&bank::BankCa>,
    ids: money::DerivedIds,
) -> anyhow::Result<Payroll> {
    let mut transport = TransportConfig::new(&args.bank_url);
    transport.requests_per_s_max = None;
    transport.extra_ca = bank_ca.cloned();
    let transport = Transport::new(transport)?;
    let facade = Facade::connect(routing.clone(), &transport);
    Payroll::open(
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
    .context("opening payroll")
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let platform = open_platform(&args).await?;
    let shutdown = Shutdown::default();
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let roles = &args.roles;
    if roles.contains(&Role::Api) {
        spawn_api(&mut tasks, &args, &platform, &shutdown).await?;
    }
    if roles.contains(&Role::Dispatcher) {
        spawn_delivery(&mut tasks, &args, &platform, &shutdown).await?;
    }
    spawn_workers(&mut tasks, &args, &platform, &shutdown).await?;
    let roles_text: Vec<String> = roles
        .iter()
        .map(|r| format!("{r:?}").to_lowercase())
        .collect();
    tracing::info!(roles = %roles_text.join(","), "settle serve running; Ctrl-C or SIGTERM stops");
    let outcome = tokio::select! {
        signal = stop_signal() => {
            tracing::info!(signal = signal?, "stopping every role");
            Ok(())
        }
        Some(ended) = tasks.join_next() => match ended {
            // A role that ends on its own is an error: stop the rest and say why.
            Ok(Ok(())) => Err(anyhow::anyhow!("a role stopped by itself")),
            Ok(Err(error)) => Err(error),
            Err(error) => Err(anyhow::anyhow!("a role panicked: {error}")),
        },
    };
    shutdown.cancel();
    drain(&mut tasks, Duration::from_millis(args.shutdown_grace_ms)).await;
    platform.databases.close().await;
    outcome
}

/// Ctrl-C or SIGTERM, whichever comes first: both stop the process gracefully.
async fn stop_signal() -> anyhow::Result<&'static str> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        signal = tokio::signal::ctrl_c() => {
            signal.context("waiting for Ctrl-C")?;
            Ok("SIGINT")
        }
        _ = terminate.recv() => Ok("SIGTERM"),
    }
}

/// Waits up to `grace` for the roles to finish their current step, then cuts
/// the rest (everything they do is resumable from the stores).
async fn drain(tasks: &mut JoinSet<anyhow::Result<()>>, grace: Duration) {
    let finished = tokio::time::timeout(grace, async {
        while let Some(ended) = tasks.join_next().await {
            if let Ok(Err(error)) = ended {
                tracing::warn!(error = %format!("{error:#}"), "a role stopped with an error");
            }
        }
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            roles_cut = tasks.len(),
            grace_ms = grace.as_millis() as u64,
            "roles still busy after the shutdown grace were cut; they resume from the stores"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

async fn spawn_api(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    args: &ServeArgs,
    platform: &Platform,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let handles = api::Handles {
        ledger: Some(platform.ledger.clone()),
        channel: Some(platform.channel.clone()),
        fees: Some(platform.fees.clone()),
        payroll: Some(platform.payroll.clone()),
        events: Some(platform.store.clone()),
        routing: Some(platform.routing.clone()),
        bank: Some(platform.bank.clone()),
        statement: Some(Arc::new(fees::report::HttpStatement::with_ca(
            &args.bank_url,
            platform.bank_ca.as_ref(),
        )?)),
        clock: Some(platform.clock.clone()),
        probes: probes(args),
    };
    let config = api::ApiConfig {
        approvals_required: args.require_approval.clone(),
        approval_ttl_ms: i64::from(args.approval_ttl_s).saturating_mul(1_000),
        ..api::ApiConfig::default()
    };
    let state = api::AppState::new(platform.api_store.clone(), handles, config).await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "API and console listening");
    eprintln!("settle serve: API on http://{address}/v1, console on http://{address}/console/");
    let signal = shutdown.clone();
    tasks.spawn(async move {
        api::serve(listener, state, signal.wait())
            .await
            .context("the API server")
    });
    Ok(())
}

/// The background roles other than the API and event delivery.
async fn spawn_workers(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    args: &ServeArgs,
    platform: &Platform,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let roles = &args.roles;
    if roles.contains(&Role::Reconciler) {
        platform.channel.reconciler().check_core().await?;
        let (reconciler, signal) = (platform.channel.clone(), shutdown.clone());
        tasks.spawn(async move {
            reconciler.reconciler().run(signal.wait()).await;
            Ok(())
        });
    }
    if roles.contains(&Role::Expiry) {
        let worker = ExpiryWorker::new(platform.ledger.clone(), 1_000);
        let signal = shutdown.clone();
        tasks.spawn(async move {
            worker.run(signal.wait()).await;
            Ok(())
        });
    }
    if roles.contains(&Role::Fees) {
        let mut scheduler = fees::scheduler::Scheduler::new(
            platform.fees.clone(),
            Duration::from_secs(args.fees_every_s),
        );
        if args
            .require_approval
            .contains(&api::approvals::Guarded::FeesWithdraw)
        {
            // Each day's Withdraw waits for an operator's approved request.
            scheduler = scheduler.without(fees::Module::Withdraw);
        }
        let signal = shutdown.clone();
        tasks.spawn(async move {
            scheduler.run(signal.wait()).await;
            Ok(())
        });
    }
    if roles.contains(&Role::Payroll) {
        // A round in progress stops at shutdown (it resumes at the next start); a
        // dead-lettered stage raises an alert within seconds.
        let poller = payroll::poller::Poller::new(platform.payroll.clone())?;
        let every_ms = args.poll_every_s.max(1).saturating_mul(1_000);
        let signal = shutdown.clone();
        tasks.spawn(async move {
            poller.run(every_ms, signal.wait()).await;
            Ok(())
        });
        let (watcher, signal) = (platform.payroll.clone(), shutdown.clone());
        tasks.spawn(async move {
            watcher.watch_dead_letters(2_000, signal.wait()).await;
            Ok(())
        });
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

/// Event delivery: the channel history reads the core's `ledger` stream; the
/// payroll stages and alerts read the `payroll` stream of payroll's database.
/// Embedded: one dispatcher per consumer, each dispatching only while this
/// process holds the consumer's lease. NATS: one set of relays per stream (each
/// partition relayed by the process holding its lease) and workers per consumer.
async fn spawn_delivery(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    args: &ServeArgs,
    platform: &Platform,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let core = Delivery {
        store: &platform.store,
        leases: &platform.leases,
        nats: args.nats_url.as_deref(),
        namespace: &args.nats_namespace,
        clock: &platform.clock,
        shutdown,
    };
    core.relays(tasks, "ledger");
    // The channel has a database of its own; the history consumer reads the
    // core's outbox and writes there.
    // When the channel's tables are in the core's database the history writes
    // through the delivery's transaction (atomic with the watermark, one
    // connection per batch); otherwise into its own database.
    let history = platform.channel.history();
    let history = if platform.channel_shares_core {
        history.consumer_sharing_core_store()
    } else {
        history.consumer()
    };
    core.consumer(tasks, "ledger", Arc::new(history)).await?;
    let payroll = Delivery {
        store: &platform.payroll_store,
        leases: &platform.payroll_leases,
        ..core
    };
    payroll.relays(tasks, "payroll");
    spawn_status_gauges(tasks, platform, shutdown);
    for stage in platform.payroll.stage_consumers() {
        payroll.consumer(tasks, "payroll", Arc::new(stage)).await?;
    }
    payroll
        .consumer(
            tasks,
            "payroll",
            Arc::new(platform.payroll.alert_consumer()),
        )
        .await
}

/// How often the dispatcher role refreshes the backbone's gauges.
const STATUS_GAUGES_EVERY_MS: u64 = 15_000;

/// Keeps the backbone's Prometheus gauges (backlog, oldest unrelayed age,
/// consumer lag, parked keys) current from the tables.
fn spawn_status_gauges(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    platform: &Platform,
    shutdown: &Shutdown,
) {
    let (core, payroll) = (platform.store.clone(), platform.payroll_store.clone());
    let (clock, signal) = (platform.clock.clone(), shutdown.clone());
    tasks.spawn(async move {
        let mut stopped = std::pin::pin!(signal.wait());
        loop {
            for store in [&core, &payroll] {
                match events::status::status(store, clock.now()).await {
                    Ok(status) => events::status::record_gauges(&status),
                    Err(error) => tracing::warn!(%error, "could not read the backbone's status"),
                }
            }
            tokio::select! {
                _ = &mut stopped => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(STATUS_GAUGES_EVERY_MS)) => {}
            }
        }
    });
}

/// One database's outbox and how it is delivered.
#[derive(Clone, Copy)]
struct Delivery<'a> {
    store: &'a Store,
    leases: &'a Leases,
    nats: Option<&'a str>,
    namespace: &'a str,
    clock: &'a Arc<dyn Clock>,
    shutdown: &'a Shutdown,
}

impl Delivery<'_> {
    fn nats_config(&self, url: &str, stream: &str) -> NatsConfig {
        let namespace = self.namespace;
        NatsConfig {
            stream: format!("{}_{}", namespace.to_uppercase(), stream.to_uppercase()),
            subject_prefix: format!("{}-{stream}", namespace.to_lowercase()),
            ..NatsConfig::for_stream(url, stream)
        }
    }

    /// With NATS, the relays of `stream` (once per stream per process).
    fn relays(&self, tasks: &mut JoinSet<anyhow::Result<()>>, stream: &str) {
        let Some(url) = self.nats else { return };
        let config = self.nats_config(url, stream);
        let (store, clock, leases) = (self.store.clone(), self.clock.clone(), self.leases.clone());
        let signal = self.shutdown.clone();
        tasks.spawn(async move {
            events::nats::run_relays(store, config, clock, leases, signal)
                .await
                .context("NATS relays")
        });
    }

    /// Delivers `stream` to `consumer` until shutdown.
    async fn consumer<C: Consumer>(
        &self,
        tasks: &mut JoinSet<anyhow::Result<()>>,
        stream: &str,
        consumer: Arc<C>,
    ) -> anyhow::Result<()> {
        let signal = self.shutdown.clone();
        match self.nats {
            None => {
                let dispatcher = Dispatcher::new(
                    self.store.clone(),
                    consumer,
                    DispatcherConfig::default(),
                    self.clock.clone(),
                    Wake::new(),
                )
                .await?
                .with_leases(self.leases.clone());
                tasks.spawn(async move {
                    dispatcher
                        .run(signal.wait())
                        .await
                        .context("an event dispatcher")
                });
            }
            Some(url) => {
                let config = self.nats_config(url, stream);
                let (store, clock) = (self.store.clone(), self.clock.clone());
                tasks.spawn(async move {
                    events::nats::run_workers(store, config, consumer, clock, signal)
                        .await
                        .context("NATS workers")
                });
            }
        }
        Ok(())
    }
}
