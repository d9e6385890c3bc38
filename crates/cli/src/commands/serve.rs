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

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bank::providers::Facade;
use bank::routing::RoutingTable;
use bank::{BankApi, HttpBank, Transport};
use channel::{Channel, ChannelConfig, InProcessCore};
use clap::Args;
use events::nats::NatsConfig;
use events::{Consumer, Dispatcher, DispatcherConfig, Shutdown, Wake};
use ledger::{ExpiryWorker, Ledger, LedgerConfig};
use money::{Clock, SystemClock};
use payroll::{Payroll, PayrollConfig};
use store::{Databases, Leases, Store, StoreOptions};
use tokio::task::JoinSet;

use super::DatabaseArgs;
use crate::settings::{Overrides, Problems, Role, Settings};

/// Every flag overrides its key of the configuration (`--config`); secrets are
/// never flags.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    db: DatabaseArgs,
    /// Payroll's database (default: the main one on PostgreSQL; `<name>-payroll.db`
    /// beside a SQLite file, since payroll needs a writer of its own).
    /// Key `database.payroll_url`.
    #[arg(long, env = "SETTLE_PAYROLL_DATABASE_URL")]
    payroll_database_url: Option<String>,
    /// The API's tables: keys, ownership, idempotency, audit (default: the main
    /// database on PostgreSQL; `<name>-api.db` beside a SQLite file, so API
    /// bookkeeping never waits on the ledger's write lock). Key `database.api_url`.
    #[arg(long, env = "SETTLE_API_DATABASE_URL")]
    api_database_url: Option<String>,
    /// The channel's database (transfers, history read model); derived the same
    /// way. Key `database.channel_url`.
    #[arg(long, env = "SETTLE_CHANNEL_DATABASE_URL")]
    channel_database_url: Option<String>,
    /// Relay the outbox through NATS JetStream instead of in-process dispatchers.
    /// Key `events.nats_url`.
    #[arg(long, env = "SETTLE_NATS_URL")]
    nats_url: Option<String>,
    /// Prefix of this deployment's JetStream streams (`<NS>_LEDGER`,
    /// `<NS>_PAYROLL`) and subjects: deployments sharing a NATS server must each
    /// have their own. Key `events.nats_namespace` (default SETTLE).
    #[arg(long, env = "SETTLE_NATS_NAMESPACE")]
    nats_namespace: Option<String>,
    /// The bank's URL (`bank.kind` says which bank it is). Key `bank.url`.
    #[arg(long, env = "SETTLE_BANK_URL")]
    bank_url: Option<String>,
    #[command(flatten)]
    bank_ca: super::BankCaArgs,
    /// Where the API listens. Key `api.listen` (default 127.0.0.1:8000).
    #[arg(long, env = "SETTLE_LISTEN")]
    listen: Option<String>,
    /// The roles this process runs, comma-separated. Key `serve.roles` (default all).
    #[arg(long, value_enum, value_delimiter = ',')]
    roles: Option<Vec<Role>>,
    /// Seconds between fee scheduler ticks. Key `serve.fees_every_s` (default 300).
    #[arg(long)]
    fees_every_s: Option<u64>,
    /// Seconds between payroll poll rounds. Key `serve.poll_every_s` (default 60).
    #[arg(long)]
    poll_every_s: Option<u64>,
    /// Connections in each database's pool (one pool per distinct database URL,
    /// plus one connection for this process's leases). With every role on one
    /// PostgreSQL database a process holds at most this + 1 + the fee modules'
    /// try-locks in use. Key `database.connections_max` (default 12).
    #[arg(long, env = "SETTLE_DATABASE_CONNECTIONS_MAX")]
    database_connections_max: Option<u32>,
    /// After Ctrl-C or SIGTERM, how long the roles get to finish their current
    /// step (bank calls in flight are answered first) before they are cut; all
    /// work is resumable, so a cut loses nothing. Key `serve.shutdown_grace_ms`.
    #[arg(long, env = "SETTLE_SHUTDOWN_GRACE_MS")]
    shutdown_grace_ms: Option<u64>,
    /// The operating account payroll pays out of, and its holder. No default:
    /// it must be named, and must not be a fee account. Keys
    /// `payroll.payout_account`, `payroll.payout_holder`.
    #[arg(long, env = "SETTLE_PAYOUT_ACCOUNT")]
    payout_account: Option<String>,
    #[arg(long, env = "SETTLE_PAYOUT_HOLDER")]
    payout_holder: Option<String>,
    /// Actions a second ops key must approve (maker-checker), comma-separated:
    /// fees_withdraw, payroll_retry, payroll_rollback, providers_cohort,
    /// providers_override, ops_key_create, accounts_owner, or all. With fees_withdraw the fee
    /// scheduler leaves Withdraw to approved operator requests. Key `api.require_approval`.
    #[arg(long, env = "SETTLE_REQUIRE_APPROVAL")]
    require_approval: Option<String>,
    /// How long a pending approval waits for its second key. Key `api.approval_ttl_s`.
    #[arg(long, env = "SETTLE_APPROVAL_TTL_S")]
    approval_ttl_s: Option<u32>,
}

impl ServeArgs {
    /// The flags that were given, by the key each overrides.
    fn overrides(&self) -> Overrides {
        let mut set = Overrides::default();
        set.set("database.url", self.db.database_url.clone())
            .set("database.payroll_url", self.payroll_database_url.clone())
            .set("database.api_url", self.api_database_url.clone())
            .set("database.channel_url", self.channel_database_url.clone())
            .set("database.connections_max", self.database_connections_max)
            .set("events.nats_url", self.nats_url.clone())
            .set("events.nats_namespace", self.nats_namespace.clone())
            .set("bank.url", self.bank_url.clone())
            .set("bank.ca_file", self.bank_ca.bank_ca.clone())
            .set("api.listen", self.listen.clone())
            .set("api.approval_ttl_s", self.approval_ttl_s)
            .set(
                "api.require_approval",
                self.require_approval.as_ref().map(|list| {
                    list.split(',')
                        .map(str::trim)
                        .filter(|name| !name.is_empty())
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                }),
            )
            .set("serve.roles", self.roles.clone())
            .set("serve.fees_every_s", self.fees_every_s)
            .set("serve.poll_every_s", self.poll_every_s)
            .set("serve.shutdown_grace_ms", self.shutdown_grace_ms)
            .set("payroll.payout_account", self.payout_account.clone())
            .set("payroll.payout_holder", self.payout_holder.clone());
        set
    }
}

/// `--require-approval` as the CLI's guarded commands read it.
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
    fees: fees::Fees,
    routing: RoutingTable,
    payroll: Payroll,
}

/// Opens the databases (one pool per distinct URL) and every component.
async fn open_platform(settings: &Settings) -> anyhow::Result<Platform> {
    let ids = settings.ids()?;
    let database = &settings.database;
    let url = database.url.clone();
    let mut databases = Databases::new(StoreOptions {
        connections_max: database.connections_max,
        acquire_timeout_ms: database.acquire_timeout_ms,
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
    let payroll_url = component_url(&database.payroll_url, "payroll");
    let (payroll_store, payroll_leases) = open(payroll_url, "payroll's database").await?;
    let api_url = component_url(&database.api_url, "api");
    let (api_store, _) = open(api_url, "the API's database").await?;
    let channel_url = component_url(&database.channel_url, "channel");
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
    let fees_config = settings.fees_config(ids.clone())?;
    let mut bank_transport = settings.transport_config()?;
    // Payouts and result inquiries share one limit: the fee pipeline's.
    bank_transport.concurrent_max = Some(fees_config.bank_calls_in_flight_max);
    bank_transport.idle_connections_per_host_max = fees_config.bank_calls_in_flight_max;
    let bank: Arc<dyn BankApi> = Arc::new(HttpBank::new(bank_transport)?);
    let fees = fees::Fees::open(ledger.clone(), bank.clone(), clock.clone(), fees_config)
        .await
        .context("opening fee settlement")?;
    let routing = RoutingTable::open(payroll_store.clone(), clock.clone()).await?;
    let payroll = open_payroll(settings, &payroll_store, &ledger, &routing, &clock, ids).await?;
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
        fees,
        routing,
        payroll,
    })
}

async fn open_payroll(
    settings: &Settings,
    payroll_store: &Store,
    ledger: &Ledger,
    routing: &RoutingTable,
    clock: &Arc<dyn Clock>,
    ids: money::DerivedIds,
) -> anyhow::Result<Payroll> {
    let mut transport = settings.transport_config()?;
    // The poller throttles itself; the transport must not throttle below it.
    transport.requests_per_s_max = None;
    let transport = Transport::new(transport)?;
    let facade = Facade::connect(routing.clone(), &transport);
    let accounts = settings.payroll()?;
    let mut config = PayrollConfig::new(
        accounts.payout_account.clone(),
        accounts.payout_holder.clone(),
        ids,
    );
    config.webhook_url = settings.webhook_url()?.map(|url| url.expose().to_owned());
    Payroll::open(
        payroll_store.clone(),
        ledger.clone(),
        facade,
        clock.clone(),
        config,
    )
    .await
    .context("opening payroll")
}

/// The configuration `serve` runs with: the file, the environment, the flags;
/// every problem at once, before anything is opened.
fn settings(args: &ServeArgs, file: Option<&Path>) -> anyhow::Result<Settings> {
    let settings = Settings::load(file, &args.overrides())?;
    let problems = settings.serve_problems();
    if !problems.is_empty() {
        return Err(Problems(problems).into());
    }
    Ok(settings)
}

pub async fn run(args: ServeArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let settings = settings(&args, file)?;
    let platform = open_platform(&settings).await?;
    let shutdown = Shutdown::default();
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let roles = &settings.serve.roles;
    if roles.contains(&Role::Api) {
        spawn_api(&mut tasks, &settings, &platform, &shutdown).await?;
    }
    if roles.contains(&Role::Dispatcher) {
        spawn_delivery(&mut tasks, &settings, &platform, &shutdown).await?;
    }
    spawn_workers(&mut tasks, &settings, &platform, &shutdown).await?;
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
    drain(
        &mut tasks,
        Duration::from_millis(settings.serve.shutdown_grace_ms),
    )
    .await;
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
    settings: &Settings,
    platform: &Platform,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let bank_url = settings.bank.url.as_deref().unwrap_or_default();
    let handles = api::Handles {
        ledger: Some(platform.ledger.clone()),
        channel: Some(platform.channel.clone()),
        fees: Some(platform.fees.clone()),
        payroll: Some(platform.payroll.clone()),
        events: Some(platform.store.clone()),
        routing: Some(platform.routing.clone()),
        bank: Some(platform.bank.clone()),
        statement: Some(Arc::new(fees::report::HttpStatement::with_ca(
            bank_url,
            settings.bank.ca.as_ref(),
        )?)),
        clock: Some(platform.clock.clone()),
        probes: probes(settings, bank_url),
    };
    let config = api::ApiConfig {
        approvals_required: settings.api.require_approval.clone(),
        approval_ttl_ms: i64::from(settings.api.approval_ttl_s).saturating_mul(1_000),
        ..api::ApiConfig::default()
    };
    let state = api::AppState::new(platform.api_store.clone(), handles, config).await?;
    let listen = &settings.api.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
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
    settings: &Settings,
    platform: &Platform,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let roles = &settings.serve.roles;
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
            Duration::from_secs(settings.serve.fees_every_s),
        );
        if settings
            .api
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
        let every_ms = settings.serve.poll_every_s.max(1).saturating_mul(1_000);
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
fn probes(settings: &Settings, bank_url: &str) -> Vec<(String, api::Probe)> {
    let mut probes: Vec<(String, api::Probe)> = Vec::new();
    probes.push(("bank".to_owned(), tcp_probe(bank_url)));
    if let Some(nats_url) = &settings.events.nats_url {
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
    settings: &Settings,
    platform: &Platform,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let core = Delivery {
        store: &platform.store,
        leases: &platform.leases,
        nats: settings.events.nats_url.as_deref(),
        namespace: &settings.events.nats_namespace,
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
                let (store, clock, leases) =
                    (self.store.clone(), self.clock.clone(), self.leases.clone());
                tasks.spawn(async move {
                    events::nats::run_workers(store, config, consumer, clock, leases, signal)
                        .await
                        .context("NATS workers")
                });
            }
        }
        Ok(())
    }
}
