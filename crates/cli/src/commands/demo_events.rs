//! The demo's event transport, chosen once per run: the embedded dispatcher (one
//! per consumer, polling the outbox of the store that produced the events), or,
//! with `--nats-url`, NATS JetStream (one relay per partition publishing that
//! outbox to a stream of this run's own, and one pull worker per consumer and
//! partition). Phases start the consumers they need, wait on the stores for the
//! effect, and stop them; nothing here decides that an event is finished — the
//! backbone's watermark in the database does.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use events::nats::{NatsConfig, Relay, Worker};
use events::{Consumer, Dispatcher, DispatcherConfig, RetryPolicy, Shutdown, Wake};
use money::Clock;
use store::Store;
use tokio::task::JoinSet;

/// Partitions of a demo stream: enough to show per-key routing, few enough for
/// two cores (each consumer has a worker per partition).
const NATS_PARTITIONS: u32 = 4;
/// How often a condition the demo waits for is read again.
const WAIT_POLL_MS: u64 = 20;

/// Where events travel in this run.
#[derive(Clone, Debug)]
pub enum Transport {
    Embedded,
    Nats { url: String },
}

impl Transport {
    pub fn describe(&self) -> String {
        match self {
            Transport::Embedded => "in-process outbox dispatcher".to_owned(),
            Transport::Nats { url } => format!("NATS JetStream at {url}"),
        }
    }
}

/// The consumers of one store's outbox, running until [`Backbone::stop`].
pub struct Backbone {
    store: Store,
    clock: Arc<dyn Clock>,
    shutdown: Shutdown,
    tasks: JoinSet<()>,
    nats: Option<(async_nats::jetstream::Context, NatsConfig)>,
}

impl Backbone {
    /// Starts the transport for `store`'s outbox stream `label` (`ledger`,
    /// `payroll`); on NATS, a JetStream stream named after it and this run, and
    /// its relays.
    pub async fn start(
        transport: &Transport,
        store: &Store,
        clock: Arc<dyn Clock>,
        label: &str,
    ) -> anyhow::Result<Backbone> {
        let shutdown = Shutdown::default();
        let mut tasks = JoinSet::new();
        let nats = match transport {
            Transport::Embedded => None,
            Transport::Nats { url } => {
                let run = uuid::Uuid::now_v7().simple().to_string();
                let config = NatsConfig {
                    url: url.clone(),
                    outbox_stream: label.to_owned(),
                    stream: format!("SETTLE_DEMO_{}_{run}", label.to_uppercase()),
                    subject_prefix: format!("settle-demo-{label}-{run}"),
                    partitions: NATS_PARTITIONS,
                    fetch_wait_ms: 10,
                    poll_interval_ms: 10,
                    release_check_ms: 200,
                    ..NatsConfig::default()
                };
                let js = events::nats::connect(&config).await?;
                let leases = store::Leases::new(store);
                for partition in 0..config.partitions {
                    let relay = Relay::acquire(
                        store.clone(),
                        js.clone(),
                        config.clone(),
                        partition,
                        clock.clone(),
                        &leases,
                    )
                    .await?
                    .ok_or_else(|| {
                        anyhow::anyhow!("another relay holds partition {partition} of a new stream")
                    })?;
                    tasks.spawn(relay.run(shutdown.clone().wait()));
                }
                Some((js, config))
            }
        };
        Ok(Backbone {
            store: store.clone(),
            clock,
            shutdown,
            tasks,
            nats,
        })
    }

    /// Delivers this store's events to `consumer` until the backbone stops.
    pub async fn spawn<C: Consumer>(
        &mut self,
        consumer: Arc<C>,
        retry: RetryPolicy,
    ) -> anyhow::Result<()> {
        let config = DispatcherConfig {
            poll_interval_ms: 10,
            retry,
            ..DispatcherConfig::default()
        };
        self.spawn_with(consumer, config).await
    }

    /// Same, with the consumer's own dispatcher limits (embedded); on NATS only
    /// their retry policy applies.
    pub async fn spawn_with<C: Consumer>(
        &mut self,
        consumer: Arc<C>,
        config: DispatcherConfig,
    ) -> anyhow::Result<()> {
        match &self.nats {
            None => {
                let dispatcher = Dispatcher::new(
                    self.store.clone(),
                    consumer,
                    config,
                    self.clock.clone(),
                    Wake::new(),
                )
                .await?;
                let shutdown = self.shutdown.clone();
                self.tasks.spawn(async move {
                    if let Err(error) = dispatcher.run(shutdown.wait()).await {
                        tracing::error!(%error, "demo dispatcher stopped");
                    }
                });
            }
            Some((js, nats)) => {
                let config = NatsConfig {
                    retry: config.retry,
                    ..nats.clone()
                };
                for partition in 0..config.partitions {
                    let worker = Worker::new(
                        self.store.clone(),
                        js,
                        consumer.clone(),
                        config.clone(),
                        partition,
                        self.clock.clone(),
                    )
                    .await?;
                    self.tasks.spawn(worker.run(self.shutdown.clone().wait()));
                }
            }
        }
        Ok(())
    }

    /// Stops every relay, dispatcher and worker, and deletes the run's stream.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
        if let Some((js, config)) = self.nats.take() {
            js.delete_stream(config.stream.as_str())
                .await
                .map_err(|error| anyhow::anyhow!("deleting the demo stream: {error}"))?;
        }
        Ok(())
    }
}

/// A retry policy with short delays: the demo's faults are deliberate and its
/// waits should be seconds, not the production minutes.
pub fn quick_retry(retry_attempts_max: u32) -> RetryPolicy {
    RetryPolicy {
        retry_attempts_max,
        backoff_min_ms: 5,
        backoff_max_ms: 200,
        jitter: true,
        jitter_seed: None,
    }
}

/// Reads `check` every few milliseconds until it is true; an error after
/// `timeout` names what never happened.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let started = Instant::now();
    loop {
        if check().await? {
            return Ok(());
        }
        if started.elapsed() > timeout {
            anyhow::bail!(
                "gave up after {:.0}s waiting until {what}",
                timeout.as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(WAIT_POLL_MS)).await;
    }
}
