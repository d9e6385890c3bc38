//! The production transport: a relay publishes outbox rows to a NATS JetStream
//! stream, and partition workers pull them and deliver them to a consumer.
//!
//! It owns the stream and consumer settings, the subject scheme
//! (`<prefix>.<partition>.<key>`), the relay's partition lock and the workers'
//! retry loop. It never marks a row relayed before the broker acknowledged it,
//! never acks a message before its delivery committed, and never decides on its own
//! that an event is finished: the database watermark does.
//!
//! A key always maps to one partition, and one worker reads a partition in stream
//! order; the database watermark refuses any event whose predecessor is not
//! finished, and the worker then delivers the missing ones from the outbox, so
//! redelivery order inside JetStream cannot break per-key order.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, AckKind, Context};
use futures_util::{FutureExt, StreamExt};
use money::Clock;
use store::Store;

use crate::consumer::{Consumer, Outcome, deliver_batch, seq_done};
use crate::dead_letter;
use crate::dispatcher::Step;
use crate::outbox::{self, Event, EventsError, key_hash};
use crate::retry::RetryPolicy;
use crate::shutdown::Shutdown;
use crate::telemetry;

/// The NATS server tests and the CLI use when `NATS_URL` names none.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// Longest a worker waits for the broker to answer one pull (a no-wait fetch is
/// answered at once; a pull lost across a broker restart is never answered).
const PULL_ANSWER_MS_MAX: u64 = 10_000;

/// The longest pause of a worker whose pulls keep coming back empty; an event
/// waits at most this long for an idle partition's worker.
const IDLE_PAUSE_MS_MAX: u64 = 250;

/// The pauses between tries to set up a consumer's workers at a broker that
/// does not answer: doubling from the first to the last.
const SETUP_RETRY_MS_MIN: u64 = 500;
const SETUP_RETRY_MS_MAX: u64 = 10_000;

/// `NATS_URL`, or the default local server.
pub fn nats_url_from_env() -> String {
    std::env::var("NATS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_NATS_URL.to_owned())
}

/// Transport settings for one outbox stream.
#[derive(Clone, Debug)]
pub struct NatsConfig {
    pub url: String,
    /// The outbox stream carried (the component of its kinds, e.g. `ledger`): the
    /// relay publishes only rows of this stream, and a worker refuses any other.
    pub outbox_stream: String,
    /// The JetStream stream name.
    pub stream: String,
    /// Subjects are `<subject_prefix>.<partition>.<key>`.
    pub subject_prefix: String,
    /// Keys are spread over this many partitions; one relay and one worker each.
    pub partitions: u32,
    /// How long the broker waits for an ack before redelivering.
    pub ack_wait_ms: u64,
    /// Rows published per relay step (acks awaited together).
    pub publish_batch_max: usize,
    /// Messages pulled per worker step; also the consumer's `max_ack_pending`.
    pub fetch_batch_max: usize,
    /// How long an idle worker sleeps before pulling again (a pull never waits);
    /// it doubles per empty pull in a row, up to 250 ms.
    pub fetch_wait_ms: u64,
    /// Sleep between relay polls when idle and not poked.
    pub poll_interval_ms: u64,
    /// The broker drops a second publish with the same `Nats-Msg-Id` within this window.
    pub duplicate_window_ms: u64,
    /// Events of one key read at once from the outbox when filling a gap.
    pub key_backlog_events_max: usize,
    /// Backbone (database) failures in a row before a worker gives a message back.
    pub transient_retries_max: u32,
    /// How often a worker looks for dead letters an operator released.
    pub release_check_ms: u64,
    /// How often a process that is not a partition's relay tries to become it.
    pub relay_takeover_ms: u64,
    /// The longest one relay or worker step may take (a broker that stopped
    /// answering mid-step): the step is abandoned, logged and tried again, so
    /// shutdown and broker restarts are always seen.
    pub step_timeout_ms: u64,
    /// How often a worker that keeps up checks its partition of the outbox for
    /// events its consumer has not finished (a lost message: nothing later on the
    /// key would reveal the gap).
    pub repair_every_ms: u64,
    /// Only rows older than this are repaired (younger ones may still be on
    /// their way through the broker).
    pub repair_after_ms: u64,
    /// Outbox rows read per repair query.
    pub repair_rows_max: usize,
    pub retry: RetryPolicy,
}

impl Default for NatsConfig {
    fn default() -> NatsConfig {
        NatsConfig {
            url: nats_url_from_env(),
            outbox_stream: String::new(),
            stream: "SETTLE_EVENTS".to_owned(),
            subject_prefix: "settle".to_owned(),
            partitions: 8,
            ack_wait_ms: 30_000,
            publish_batch_max: 1_024,
            fetch_batch_max: 512,
            fetch_wait_ms: 20,
            poll_interval_ms: 100,
            duplicate_window_ms: 120_000,
            key_backlog_events_max: 1_024,
            transient_retries_max: 50,
            release_check_ms: 1_000,
            relay_takeover_ms: 2_000,
            step_timeout_ms: 30_000,
            repair_every_ms: 5_000,
            repair_after_ms: 5_000,
            repair_rows_max: 2_000,
            retry: RetryPolicy::default(),
        }
    }
}

impl NatsConfig {
    /// The settings of one outbox stream: JetStream stream `SETTLE_<STREAM>` with
    /// subjects `settle-<stream>.<partition>.<key>`.
    pub fn for_stream(url: &str, outbox_stream: &str) -> NatsConfig {
        NatsConfig {
            url: url.to_owned(),
            outbox_stream: outbox_stream.to_owned(),
            stream: format!("SETTLE_{}", outbox_stream.to_uppercase()),
            subject_prefix: format!("settle-{outbox_stream}"),
            ..NatsConfig::default()
        }
    }

    fn validate(&self) -> Result<(), EventsError> {
        if self.partitions == 0
            || self.publish_batch_max == 0
            || self.fetch_batch_max == 0
            || self.repair_rows_max == 0
            || self.step_timeout_ms == 0
        {
            return Err(EventsError::InvalidConfig(
                "partitions, publish_batch_max, fetch_batch_max, repair_rows_max and \
                 step_timeout_ms must be at least 1"
                    .into(),
            ));
        }
        if crate::outbox::stream_of(&format!("{}.x", self.outbox_stream)).is_err() {
            return Err(EventsError::InvalidConfig(format!(
                "outbox_stream {:?} must name one component (lowercase letters, digits, '_')",
                self.outbox_stream
            )));
        }
        if self.subject_prefix.is_empty() || !self.subject_prefix.chars().all(subject_char) {
            return Err(EventsError::InvalidConfig(format!(
                "subject_prefix {:?} must be letters, digits, '_' or '-'",
                self.subject_prefix
            )));
        }
        self.retry.validate()
    }
}

fn subject_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// The partition a key's events travel in.
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    u32::try_from(key_hash(key) % i64::from(partitions.max(1))).unwrap_or(0)
}

/// The subject of one event. Keys that are not safe subject tokens travel under
/// their hash (the key itself is in the message).
pub fn subject(config: &NatsConfig, key: &str) -> String {
    let partition = partition_of(key, config.partitions);
    if !key.is_empty() && key.len() <= 128 && key.chars().all(subject_char) {
        format!("{}.{partition}.{key}", config.subject_prefix)
    } else {
        format!(
            "{}.{partition}.h{:08x}",
            config.subject_prefix,
            key_hash(key)
        )
    }
}

/// Connects and makes sure the stream exists.
pub async fn connect(config: &NatsConfig) -> Result<Context, EventsError> {
    config.validate()?;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(config.url.as_str())
        .await
        .map_err(EventsError::nats)?;
    let js = jetstream::new(client);
    js.get_or_create_stream(StreamConfig {
        name: config.stream.clone(),
        subjects: vec![format!("{}.>", config.subject_prefix)],
        storage: StorageType::File,
        duplicate_window: Duration::from_millis(config.duplicate_window_ms),
        ..StreamConfig::default()
    })
    .await
    .map_err(EventsError::nats)?;
    Ok(js)
}

/// The durable consumer of `consumer` on `partition`. JetStream names may not
/// contain `.`, `*`, `>` or whitespace (a name with a dot never gets an answer from
/// the API), so every character outside `[A-Za-z0-9_-]` becomes `_`:
/// `payroll.alerts` → `payroll_alerts-p0`.
pub fn durable_name(consumer: &str, partition: u32) -> String {
    let name: String = consumer
        .chars()
        .map(|c| if subject_char(c) { c } else { '_' })
        .collect();
    format!("{name}-p{partition}")
}

/// The lease name of one relay partition of one JetStream stream.
fn relay_lease_name(config: &NatsConfig, partition: u32) -> String {
    format!("events/relay/{}/{partition}", config.stream)
}

/// The lease name of one consumer's worker on one partition of one JetStream
/// stream: one process at a time pulls it, so a partition's messages reach one
/// worker in stream order and keys are never split between processes.
fn worker_lease_name(config: &NatsConfig, consumer: &str, partition: u32) -> String {
    format!("events/worker/{}/{consumer}/{partition}", config.stream)
}

/// Who this process is, in `event_relay_leaders`: host and pid.
fn holder_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}

/// Publishes one partition's outbox rows (of one stream) to the stream.
pub struct Relay {
    store: Store,
    js: Context,
    config: NatsConfig,
    partition: u32,
    clock: Arc<dyn Clock>,
    /// This process's lease on the partition: while held, no other process
    /// relays it. Released when the relay stops.
    lease: store::Lease,
}

impl Relay {
    /// Becomes the relay of `partition`, or returns `None` when another relay
    /// already is.
    pub async fn acquire(
        store: Store,
        js: Context,
        config: NatsConfig,
        partition: u32,
        clock: Arc<dyn Clock>,
        leases: &store::Leases,
    ) -> Result<Option<Relay>, EventsError> {
        config.validate()?;
        let Some(lease) = leases
            .try_acquire(&relay_lease_name(&config, partition))
            .await?
        else {
            return Ok(None);
        };
        outbox::record_relay_leader(
            &store,
            &config.outbox_stream,
            partition,
            &holder_name(),
            clock.now(),
        )
        .await?;
        tracing::info!(stream = %config.stream, partition, "this process now relays the partition");
        Ok(Some(Relay {
            store,
            js,
            config,
            partition,
            clock,
            lease,
        }))
    }

    /// Publishes up to `publish_batch_max` unrelayed rows of the stream, awaits
    /// their acks, and marks the acknowledged prefix relayed.
    #[tracing::instrument(skip_all, fields(stream = %self.config.outbox_stream, partition = self.partition))]
    pub async fn run_once(&mut self) -> Result<Step, EventsError> {
        // A lost lease means another process may relay now: stop rather than race.
        if !self.lease.is_held().await {
            return Err(EventsError::RelayLockLost {
                partition: self.partition,
                reason: "the lease connection failed".to_owned(),
            });
        }
        let rows = outbox::unrelayed(
            &self.store,
            &self.config.outbox_stream,
            self.partition,
            self.config.partitions,
            self.config.publish_batch_max,
        )
        .await?;
        if rows.is_empty() {
            return Ok(Step::Idle);
        }
        let mut pending = Vec::with_capacity(rows.len());
        let mut failure = None;
        for row in &rows {
            let payload = serde_json::to_vec(&row.event)
                .map_err(|error| EventsError::Corrupt(error.to_string()))?;
            let message = PublishMessage::build()
                .payload(payload.into())
                .message_id(format!("{}:{}", row.event.key, row.event.seq));
            match self
                .js
                .send_publish(subject(&self.config, &row.event.key), message)
                .await
            {
                Ok(ack) => pending.push((row.cursor.position, ack)),
                Err(error) => {
                    failure = Some(EventsError::nats(error));
                    break;
                }
            }
        }
        let mut acked = Vec::with_capacity(pending.len());
        for (position, ack) in pending {
            match ack.await {
                Ok(_) => acked.push(position),
                Err(error) => {
                    failure.get_or_insert(EventsError::nats(error));
                    break;
                }
            }
        }
        outbox::mark_relayed(
            &self.store,
            &self.config.outbox_stream,
            &acked,
            self.clock.now(),
        )
        .await?;
        telemetry::published(acked.len());
        match failure {
            Some(error) => Err(error),
            None => Ok(Step::Done),
        }
    }

    /// Stops relaying and gives the partition's lease back, so a standby takes
    /// over at once.
    pub async fn release(self) {
        self.lease.release().await;
    }

    /// Steps until `shutdown`, sleeping `poll_interval_ms` when idle; a failed
    /// or timed-out step is logged and retried. Gives the lease back on the way
    /// out.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown.fuse());
        let step_timeout = Duration::from_millis(self.config.step_timeout_ms);
        loop {
            let step = tokio::select! {
                _ = &mut shutdown => break,
                stepped = tokio::time::timeout(step_timeout, self.run_once()) => stepped,
            };
            let step = match step {
                Ok(Ok(step)) => step,
                Ok(Err(error @ EventsError::RelayLockLost { .. })) => {
                    tracing::warn!(partition = self.partition, error = %error, "relay lost its partition lease; stepping down");
                    break;
                }
                Ok(Err(error)) => {
                    tracing::warn!(partition = self.partition, error = %error, code = error.code(), "relay step failed; retrying");
                    Step::Idle
                }
                Err(_) => {
                    tracing::warn!(
                        partition = self.partition,
                        timeout_ms = self.config.step_timeout_ms,
                        "relay step timed out; retrying"
                    );
                    Step::Idle
                }
            };
            if step == Step::Done && (&mut shutdown).now_or_never().is_none() {
                continue;
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(Duration::from_millis(self.config.poll_interval_ms)) => {}
            }
        }
        self.lease.release().await;
    }
}

/// What a worker's retry loop made of one event.
enum Settled {
    Finished,
    /// The key is parked behind a dead letter; its events wait in the outbox.
    Parked,
    /// Backbone failures outlasted `transient_retries_max`; give the message back.
    GaveUp,
}

/// Pulls one partition and delivers to one consumer.
pub struct Worker<C: Consumer> {
    store: Store,
    consumer: Arc<C>,
    config: NatsConfig,
    partition: u32,
    clock: Arc<dyn Clock>,
    js: Context,
    pull: PullConsumer,
    /// When released letters were last looked for; the check costs a query.
    released_checked_at: Option<std::time::Instant>,
    /// When the outbox was last swept for events the consumer has not finished.
    repaired_at: Option<std::time::Instant>,
    /// The last fetch drained the partition: the worker keeps up, so a row the
    /// outbox has and the consumer has not finished is not merely in flight.
    keeping_up: bool,
    /// This process's lease on (consumer, partition), when several processes
    /// may run the consumer: checked before every step, given back at the end.
    lease: Option<store::Lease>,
}

impl<C: Consumer> Worker<C> {
    /// Creates (or reopens) the durable pull consumer `<name>-p<partition>`.
    pub async fn new(
        store: Store,
        js: &Context,
        consumer: Arc<C>,
        config: NatsConfig,
        partition: u32,
        clock: Arc<dyn Clock>,
    ) -> Result<Worker<C>, EventsError> {
        config.validate()?;
        let reads = crate::consumer::stream_of_consumer(consumer.as_ref())?;
        if reads != config.outbox_stream {
            return Err(EventsError::InvalidConfig(format!(
                "consumer {} reads stream {reads:?}, not the transport's {:?}",
                consumer.name(),
                config.outbox_stream
            )));
        }
        let pull = open_pull(js, &config, consumer.name(), partition).await?;
        Ok(Worker {
            store,
            js: js.clone(),
            consumer,
            config,
            partition,
            clock,
            pull,
            released_checked_at: None,
            repaired_at: None,
            keeping_up: false,
            lease: None,
        })
    }

    /// Runs only while `lease` is held: a step that finds it lost fails with
    /// [`EventsError::LeaseLost`] and [`Worker::run`] steps down.
    pub fn with_lease(mut self, lease: store::Lease) -> Worker<C> {
        self.lease = Some(lease);
        self
    }

    /// Picks up released keys, then pulls and delivers one batch.
    #[tracing::instrument(skip_all, fields(consumer = self.consumer.name(), partition = self.partition))]
    pub async fn run_once(&mut self) -> Result<Step, EventsError> {
        if let Some(lease) = &self.lease
            && !lease.is_held().await
        {
            return Err(EventsError::LeaseLost {
                lease: lease.name().to_owned(),
            });
        }
        let due = self
            .released_checked_at
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(self.config.release_check_ms));
        let mut worked = false;
        if due {
            worked = self.drain_released().await?;
            self.released_checked_at = Some(std::time::Instant::now());
        }
        let started = std::time::Instant::now();
        // Only the broker's part of a step is bounded here: a pull whose request
        // was lost across a broker restart never ends on its own. Delivery is
        // database work, bounded by the pool, and is never cut half way (a batch
        // rolled back at a timeout would be redone forever).
        // A no-wait pull is answered at once; one the broker does not answer
        // within this is lost, and the step fails so the worker recovers.
        let pull_timeout =
            Duration::from_millis(self.config.step_timeout_ms.min(PULL_ANSWER_MS_MAX));
        let pulled_messages = tokio::time::timeout(pull_timeout, async {
            let mut batch = self
                .pull
                .fetch()
                .max_messages(self.config.fetch_batch_max)
                .messages()
                .await
                .map_err(EventsError::nats)?;
            let mut received = Vec::new();
            while let Some(message) = batch.next().await {
                received.push(message.map_err(EventsError::nats)?);
            }
            Ok::<_, EventsError>(received)
        })
        .await
        .map_err(|_| EventsError::Nats("pulling from the broker timed out".to_owned()))??;
        let mut messages = Vec::new();
        let mut pulled: usize = 0;
        for message in pulled_messages {
            pulled += 1;
            match serde_json::from_slice::<Event>(&message.payload) {
                Ok(event) if !self.is_own_stream(&event) => {
                    self.refuse(&event).await?;
                    message
                        .ack_with(AckKind::Term)
                        .await
                        .map_err(EventsError::nats)?;
                }
                Ok(event) => messages.push((message, event)),
                Err(error) => {
                    tracing::error!(error = %error, subject = %message.subject, "unreadable event message; terminating it");
                    message
                        .ack_with(AckKind::Term)
                        .await
                        .map_err(EventsError::nats)?;
                }
            }
        }
        self.keeping_up = pulled < self.config.fetch_batch_max;
        if messages.is_empty() {
            if self.keeping_up {
                worked |= self.repair_if_due().await?;
            }
            return Ok(if worked { Step::Done } else { Step::Idle });
        }
        worked = true;
        let fetched_ms = started.elapsed().as_millis() as u64;
        let events: Vec<Event> = messages.iter().map(|(_, e)| e.clone()).collect();
        let outcomes = deliver_batch(
            &self.store,
            self.consumer.as_ref(),
            &events,
            self.clock.as_ref(),
        )
        .await;
        tracing::debug!(
            messages = events.len(),
            fetched_ms,
            delivered_ms = started.elapsed().as_millis() as u64,
            "batch delivered"
        );
        let mut unfinished: Vec<(async_nats::jetstream::Message, Event, Outcome)> = Vec::new();
        for ((message, event), outcome) in messages.into_iter().zip(outcomes) {
            let blocked = unfinished.iter().any(|(_, e, _)| e.key == event.key);
            if outcome.is_finished() && !blocked {
                message.ack().await.map_err(EventsError::nats)?;
            } else {
                unfinished.push((message, event, outcome));
            }
        }
        // Unfinished keys are settled one event at a time, in stream order.
        let mut parked_keys: Vec<String> = Vec::new();
        for (message, event, outcome) in unfinished {
            if parked_keys.contains(&event.key) {
                message.ack().await.map_err(EventsError::nats)?;
                continue;
            }
            let prior = match outcome {
                Outcome::Failed(error) => Some(error),
                _ => None,
            };
            match self.settle(&event, prior).await? {
                Settled::Finished => message.ack().await.map_err(EventsError::nats)?,
                Settled::Parked => {
                    parked_keys.push(event.key.clone());
                    message.ack().await.map_err(EventsError::nats)?;
                }
                Settled::GaveUp => {
                    let delay = Duration::from_millis(self.config.retry.backoff_max_ms);
                    message
                        .ack_with(AckKind::Nak(Some(delay)))
                        .await
                        .map_err(EventsError::nats)?;
                }
            }
        }
        Ok(if worked { Step::Done } else { Step::Idle })
    }

    fn is_own_stream(&self, event: &Event) -> bool {
        crate::outbox::stream_of(&event.kind).is_ok_and(|s| s == self.config.outbox_stream)
    }

    /// Records a message of another stream (a routing bug, never expected) where
    /// tests and operators see it, instead of handing it to the consumer.
    async fn refuse(&self, event: &Event) -> Result<(), EventsError> {
        let error = EventsError::WrongStream {
            consumer: self.consumer.name().to_owned(),
            expected: self.config.outbox_stream.clone(),
            kind: event.kind.clone(),
        };
        tracing::error!(error = %error, key = %event.key, seq = event.seq, "refusing an event of another stream");
        telemetry::misdelivered(self.consumer.name());
        outbox::record_misdelivery(&self.store, self.consumer.name(), event, self.clock.now()).await
    }

    /// Every `repair_every_ms`, while the worker keeps up: delivers, from the
    /// outbox, every event of this partition older than `repair_after_ms` that
    /// the consumer has not finished — a message lost on the way (a key's last
    /// event has no successor to reveal the gap), or one a killed process held
    /// unacked. Resumes where it stopped.
    async fn repair_if_due(&mut self) -> Result<bool, EventsError> {
        let due = self
            .repaired_at
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(self.config.repair_every_ms));
        if !due {
            return Ok(false);
        }
        self.repaired_at = Some(std::time::Instant::now());
        let name = self.consumer.name().to_owned();
        let cutoff_ms = self
            .clock
            .now()
            .unix_ms()
            .saturating_sub(i64::try_from(self.config.repair_after_ms).unwrap_or(i64::MAX));
        let cursor = outbox::repair_cursor(&self.store, &name, self.partition).await?;
        let scanned = outbox::repair_scan(
            &self.store,
            &outbox::RepairScope {
                stream: &self.config.outbox_stream,
                consumer: &name,
                partition: self.partition,
                partitions: self.config.partitions,
            },
            cursor,
            self.config.repair_rows_max,
        )
        .await?;
        let parked: HashSet<String> = dead_letter::open(&self.store, &name)
            .await?
            .parked_keys
            .into_iter()
            .collect();
        // Rows old enough to be repaired, in outbox order; a behind row of a
        // parked key waits for the operator and is stepped over.
        let mut rows = Vec::with_capacity(scanned.len());
        for (row, behind) in scanned {
            if row.event.created_at.unix_ms() > cutoff_ms {
                break;
            }
            let behind = behind && !parked.contains(&row.event.key);
            rows.push((row, behind));
        }
        let (repaired, cursor) = self.repair_rows(rows, cursor).await?;
        outbox::save_repair_cursor(&self.store, &name, self.partition, cursor).await?;
        if repaired > 0 {
            tracing::warn!(consumer = %name, partition = self.partition, repaired, "repaired events the consumer never finished");
            telemetry::repaired(&name, repaired);
        }
        Ok(repaired > 0)
    }

    /// Delivers the behind rows in batches of `fetch_batch_max` (one
    /// transaction each, as pulled messages are); an event the batch did not
    /// finish goes the careful way, one at a time with its gaps filled. Returns
    /// how many were repaired and the cursor past the last row that needs
    /// nothing more: an event still unfinished stops it, to be tried again.
    async fn repair_rows(
        &self,
        rows: Vec<(outbox::Scanned, bool)>,
        mut cursor: outbox::Cursor,
    ) -> Result<(usize, outbox::Cursor), EventsError> {
        let name = self.consumer.name();
        let mut repaired = 0usize;
        for chunk in rows.chunks(self.config.fetch_batch_max.max(1)) {
            let events: Vec<Event> = chunk
                .iter()
                .filter(|(_, behind)| *behind)
                .map(|(row, _)| row.event.clone())
                .collect();
            let outcomes = deliver_batch(
                &self.store,
                self.consumer.as_ref(),
                &events,
                self.clock.as_ref(),
            )
            .await;
            let mut outcomes = outcomes.into_iter();
            for (row, behind) in chunk {
                if *behind {
                    let finished = outcomes.next().is_some_and(|o| o.is_finished());
                    if !finished {
                        self.deliver_from_outbox(&row.event.key, Some(row.event.seq))
                            .await?;
                        let done = seq_done(&self.store, name, &row.event.key).await?;
                        if done < row.event.seq
                            && !dead_letter::is_parked(&self.store, name, &row.event.key).await?
                        {
                            return Ok((repaired, cursor));
                        }
                    }
                    repaired += 1;
                }
                cursor = row.cursor;
            }
        }
        Ok((repaired, cursor))
    }

    /// Delivers one event until it is finished, dead-lettered, or the backbone
    /// keeps failing. Missing predecessors are delivered first, from the outbox.
    async fn settle(
        &self,
        event: &Event,
        prior_failure: Option<String>,
    ) -> Result<Settled, EventsError> {
        let name = self.consumer.name();
        let mut failures: u32 = u32::from(prior_failure.is_some());
        let mut last_error = prior_failure.unwrap_or_default();
        let mut backoff = self.config.retry.backoff();
        let mut transient: u32 = 0;
        let mut gaps: u32 = 0;
        loop {
            if failures > 0 {
                if failures >= self.config.retry.retry_attempts_max {
                    dead_letter::park(
                        &self.store,
                        name,
                        event,
                        i64::from(failures),
                        &last_error,
                        self.clock.now(),
                    )
                    .await?;
                    return Ok(Settled::Parked);
                }
                let Some(delay) = backoff.next() else {
                    dead_letter::park(
                        &self.store,
                        name,
                        event,
                        i64::from(failures),
                        &last_error,
                        self.clock.now(),
                    )
                    .await?;
                    return Ok(Settled::Parked);
                };
                telemetry::retried(name);
                tokio::time::sleep(delay).await;
            }
            let outcome = deliver_batch(
                &self.store,
                self.consumer.as_ref(),
                std::slice::from_ref(event),
                self.clock.as_ref(),
            )
            .await
            .into_iter()
            .next()
            .unwrap_or(Outcome::Transient("no outcome".into()));
            match outcome {
                Outcome::Applied | Outcome::Passed | Outcome::Duplicate => {
                    return Ok(Settled::Finished);
                }
                Outcome::Failed(error) => {
                    failures += 1;
                    last_error = error;
                }
                Outcome::Transient(error) => {
                    transient += 1;
                    tracing::warn!(key = %event.key, seq = event.seq, error = %error, "backbone failure while delivering; retrying");
                    if transient >= self.config.transient_retries_max {
                        return Ok(Settled::GaveUp);
                    }
                    tokio::time::sleep(Duration::from_millis(
                        self.config.retry.backoff_min_ms.max(1),
                    ))
                    .await;
                }
                Outcome::Gap { expected_seq } => {
                    if dead_letter::is_parked(&self.store, name, &event.key).await? {
                        return Ok(Settled::Parked);
                    }
                    gaps += 1;
                    if gaps > self.config.transient_retries_max {
                        return Ok(Settled::GaveUp);
                    }
                    tracing::debug!(key = %event.key, seq = event.seq, expected_seq, "filling a gap from the outbox");
                    if !self
                        .deliver_from_outbox(&event.key, Some(event.seq - 1))
                        .await?
                    {
                        return Ok(Settled::Parked);
                    }
                }
            }
        }
    }

    /// Delivers the key's unfinished events from the outbox in seq order, up to
    /// `up_to_seq`. Returns false when the key got parked on the way.
    async fn deliver_from_outbox(
        &self,
        key: &str,
        up_to_seq: Option<i64>,
    ) -> Result<bool, EventsError> {
        let name = self.consumer.name();
        for _ in 0..self.config.transient_retries_max.max(1) {
            let done = seq_done(&self.store, name, key).await?;
            let rows =
                outbox::key_backlog(&self.store, key, done, self.config.key_backlog_events_max)
                    .await?;
            let rows: Vec<_> = rows
                .into_iter()
                .filter(|r| up_to_seq.is_none_or(|up_to| r.event.seq <= up_to))
                .collect();
            if rows.is_empty() {
                return Ok(true);
            }
            for row in rows {
                // Boxed: settle may come back here for an earlier gap.
                match Box::pin(self.settle(&row.event, None)).await? {
                    Settled::Finished => {}
                    Settled::Parked => return Ok(false),
                    Settled::GaveUp => return Ok(true),
                }
            }
        }
        Ok(true)
    }

    /// After a failed step: the outbox, not the broker, is the record, so the
    /// repair sweep runs whatever the broker does (a partition whose pulls go
    /// unanswered is still delivered, `repair_after_ms` late); after a broker
    /// failure the durable pull consumer is opened again too, in case the broker
    /// lost it in a restart. Both are bounded by `step_timeout_ms`; failures are
    /// logged and retried on the next failed step.
    async fn recover(&mut self, failure: &EventsError) {
        let bound = Duration::from_millis(self.config.step_timeout_ms);
        let repaired = tokio::time::timeout(bound, self.repair_if_due()).await;
        self.log_recovery("the repair sweep", repaired.map(|r| r.map(|_| ())));
        if !matches!(failure, EventsError::Nats(_)) {
            return;
        }
        let reopened = tokio::time::timeout(
            bound,
            open_pull(&self.js, &self.config, self.consumer.name(), self.partition),
        )
        .await;
        let reopened = match reopened {
            Ok(Ok(pull)) => {
                self.pull = pull;
                Ok(Ok(()))
            }
            Ok(Err(error)) => Ok(Err(error)),
            Err(elapsed) => Err(elapsed),
        };
        self.log_recovery("reopening the pull consumer", reopened);
    }

    fn log_recovery(
        &self,
        what: &str,
        outcome: Result<Result<(), EventsError>, tokio::time::error::Elapsed>,
    ) {
        let (consumer, partition) = (self.consumer.name(), self.partition);
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(consumer, partition, error = %error, "{what} after a failed step failed");
            }
            Err(_) => tracing::warn!(consumer, partition, "{what} after a failed step timed out"),
        }
    }

    /// Delivers the waiting events of keys an operator released in this partition.
    async fn drain_released(&self) -> Result<bool, EventsError> {
        let open = dead_letter::open(&self.store, self.consumer.name()).await?;
        let mut worked = false;
        for (key, id) in open.draining {
            if partition_of(&key, self.config.partitions) != self.partition {
                continue;
            }
            worked = true;
            tracing::info!(
                key,
                "released key: delivering its waiting events from the outbox"
            );
            if self.deliver_from_outbox(&key, None).await? {
                dead_letter::drained(&self.store, self.consumer.name(), id).await?;
            }
        }
        Ok(worked)
    }

    /// Steps until `shutdown`; a failed or timed-out step is logged and retried
    /// after a pause. A step cut short by shutdown or its timeout loses nothing:
    /// unacked messages come back and the watermark refuses repeats.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown.fuse());
        let mut idle_steps: u32 = 0;
        loop {
            let stepped = tokio::select! {
                _ = &mut shutdown => break,
                stepped = self.run_once() => stepped,
            };
            idle_steps = match stepped {
                Ok(Step::Idle) => idle_steps.saturating_add(1),
                _ => 0,
            };
            let pause_ms = match stepped {
                Ok(Step::Done) => continue,
                Ok(Step::Idle) => idle_pause_ms(self.config.fetch_wait_ms, idle_steps),
                Err(error @ EventsError::LeaseLost { .. }) => {
                    tracing::warn!(consumer = self.consumer.name(), partition = self.partition, error = %error, "worker lost its lease; stepping down");
                    break;
                }
                Err(error) => {
                    tracing::warn!(consumer = self.consumer.name(), partition = self.partition, error = %error, code = error.code(), "worker step failed; retrying");
                    self.recover(&error).await;
                    self.config.poll_interval_ms
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(Duration::from_millis(pause_ms)) => {}
            }
        }
        if let Some(lease) = self.lease.take() {
            lease.release().await;
        }
    }
}

/// How long a worker pauses after its `idle_steps`-th empty pull in a row:
/// `fetch_wait_ms`, doubling per empty pull up to [`IDLE_PAUSE_MS_MAX`]. Every
/// consumer of every process polls each partition; at a fixed 20 ms, two
/// dispatchers of a cluster sent the broker thousands of pulls a second while
/// idle, and it stopped answering some of them.
fn idle_pause_ms(fetch_wait_ms: u64, idle_steps: u32) -> u64 {
    let doublings = idle_steps.saturating_sub(1).min(16);
    fetch_wait_ms
        .saturating_mul(1u64 << doublings)
        .min(IDLE_PAUSE_MS_MAX.max(fetch_wait_ms))
}

/// Creates (or reopens) the durable pull consumer `<name>-p<partition>` of the
/// transport's JetStream stream.
async fn open_pull(
    js: &Context,
    config: &NatsConfig,
    consumer: &str,
    partition: u32,
) -> Result<PullConsumer, EventsError> {
    let durable = durable_name(consumer, partition);
    let stream = js
        .get_stream(config.stream.as_str())
        .await
        .map_err(EventsError::nats)?;
    stream
        .get_or_create_consumer(
            durable.as_str(),
            PullConfig {
                durable_name: Some(durable.clone()),
                filter_subject: format!("{}.{partition}.>", config.subject_prefix),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_millis(config.ack_wait_ms),
                deliver_policy: DeliverPolicy::All,
                max_ack_pending: i64::try_from(config.fetch_batch_max).unwrap_or(i64::MAX),
                ..PullConfig::default()
            },
        )
        .await
        .map_err(EventsError::nats)
}

/// Keeps trying to become `partition`'s relay, and runs it while it holds the
/// lease, until `shutdown`: if the process that holds the partition dies, this one
/// takes over within `relay_takeover_ms`.
async fn relay_seat(
    store: Store,
    js: Context,
    config: NatsConfig,
    partition: u32,
    clock: Arc<dyn Clock>,
    leases: store::Leases,
    shutdown: Shutdown,
) {
    let mut stopped = std::pin::pin!(shutdown.clone().wait().fuse());
    loop {
        let acquired = Relay::acquire(
            store.clone(),
            js.clone(),
            config.clone(),
            partition,
            clock.clone(),
            &leases,
        );
        let acquired = tokio::select! {
            _ = &mut stopped => return,
            acquired = tokio::time::timeout(Duration::from_millis(config.step_timeout_ms), acquired) => acquired,
        };
        match acquired {
            Ok(Ok(Some(relay))) => relay.run(shutdown.clone().wait()).await,
            Ok(Ok(None)) => {}
            Ok(Err(error)) => {
                tracing::warn!(partition, error = %error, code = error.code(), "could not try the relay lease; retrying");
            }
            Err(_) => tracing::warn!(partition, "trying the relay lease timed out; retrying"),
        }
        tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep(Duration::from_millis(config.relay_takeover_ms)) => {}
        }
    }
}

/// Runs a relay seat for every partition of `config`'s outbox stream until
/// `shutdown`: each partition is relayed by whichever process holds its lease
/// in `leases`. Run it once per stream per process, however many consumers.
pub async fn run_relays(
    store: Store,
    config: NatsConfig,
    clock: Arc<dyn Clock>,
    leases: store::Leases,
    shutdown: Shutdown,
) -> Result<(), EventsError> {
    // Connecting retries for as long as the broker is down: a stopping process
    // must not wait for it.
    let Some(js) = unless_stopped(&shutdown, connect(&config)).await else {
        return Ok(());
    };
    let js = js?;
    let mut tasks = tokio::task::JoinSet::new();
    for partition in 0..config.partitions {
        tasks.spawn(relay_seat(
            store.clone(),
            js.clone(),
            config.clone(),
            partition,
            clock.clone(),
            leases.clone(),
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Runs a worker seat for every partition, delivering to `consumer`, until
/// `shutdown`: each partition is pulled by whichever process holds its lease in
/// `leases` (see [`worker_seat`]). The consumer must read `config`'s outbox stream.
pub async fn run_workers<C: Consumer>(
    store: Store,
    config: NatsConfig,
    consumer: Arc<C>,
    clock: Arc<dyn Clock>,
    leases: store::Leases,
    shutdown: Shutdown,
) -> Result<(), EventsError> {
    config.validate()?;
    let reads = crate::consumer::stream_of_consumer(consumer.as_ref())?;
    if reads != config.outbox_stream {
        return Err(EventsError::InvalidConfig(format!(
            "consumer {} reads stream {reads:?}, not the transport's {:?}",
            consumer.name(),
            config.outbox_stream
        )));
    }
    // Connecting waits for as long as the broker is down: a stopping process
    // must not wait for it.
    let Some(js) = unless_stopped(&shutdown, connect(&config)).await else {
        return Ok(());
    };
    let js = js?;
    let mut tasks = tokio::task::JoinSet::new();
    for partition in 0..config.partitions {
        let seat = WorkerSeat {
            store: store.clone(),
            js: js.clone(),
            consumer: consumer.clone(),
            config: config.clone(),
            partition,
            clock: clock.clone(),
        };
        tasks.spawn(seat.run(leases.clone(), shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// The pause after a failed worker set-up that followed a pause of
/// `previous_ms`: doubling, within 0.5–10 s.
fn setup_retry_ms(previous_ms: u64) -> u64 {
    previous_ms
        .saturating_mul(2)
        .clamp(SETUP_RETRY_MS_MIN, SETUP_RETRY_MS_MAX)
}

/// One consumer's seat on one partition: what a process needs to become its
/// worker.
struct WorkerSeat<C: Consumer> {
    store: Store,
    js: Context,
    consumer: Arc<C>,
    config: NatsConfig,
    partition: u32,
    clock: Arc<dyn Clock>,
}

impl<C: Consumer> WorkerSeat<C> {
    /// Keeps trying to take the seat's lease, and runs the worker while it holds
    /// it, until `shutdown`: of several processes exactly one pulls the
    /// partition (two pulling one durable consumer split its keys, and every
    /// split key costs gap fills one event at a time); when it dies, another
    /// takes over within `relay_takeover_ms`. A broker that times out while it
    /// restarts or is busy is retried with a growing pause (0.5–10 s).
    async fn run(self, leases: store::Leases, shutdown: Shutdown) {
        let name = worker_lease_name(&self.config, self.consumer.name(), self.partition);
        let mut stopped = std::pin::pin!(shutdown.clone().wait().fuse());
        let mut pause_ms = self.config.relay_takeover_ms;
        loop {
            let bound = Duration::from_millis(self.config.step_timeout_ms);
            let opened = tokio::select! {
                _ = &mut stopped => return,
                opened = tokio::time::timeout(bound, self.open(&leases, &name)) => opened,
            };
            pause_ms = match opened {
                Ok(Ok(Some(worker))) => {
                    worker.run(shutdown.clone().wait()).await;
                    self.config.relay_takeover_ms
                }
                Ok(Ok(None)) => self.config.relay_takeover_ms,
                Ok(Err(error)) => {
                    let retry_in_ms = setup_retry_ms(pause_ms);
                    tracing::warn!(consumer = self.consumer.name(), partition = self.partition, error = %error, code = error.code(), retry_in_ms, "could not set up the worker; retrying");
                    retry_in_ms
                }
                Err(_) => {
                    let retry_in_ms = setup_retry_ms(pause_ms);
                    tracing::warn!(
                        consumer = self.consumer.name(),
                        partition = self.partition,
                        retry_in_ms,
                        "setting up the worker timed out; retrying"
                    );
                    retry_in_ms
                }
            };
            tokio::select! {
                _ = &mut stopped => return,
                _ = tokio::time::sleep(Duration::from_millis(pause_ms)) => {}
            }
        }
    }

    /// The worker, holding the seat's lease; `None` while another process holds
    /// it. The lease is given back when the durable consumer cannot be opened.
    async fn open(
        &self,
        leases: &store::Leases,
        name: &str,
    ) -> Result<Option<Worker<C>>, EventsError> {
        let Some(lease) = leases.try_acquire(name).await? else {
            return Ok(None);
        };
        let worker = Worker::new(
            self.store.clone(),
            &self.js,
            self.consumer.clone(),
            self.config.clone(),
            self.partition,
            self.clock.clone(),
        )
        .await;
        match worker {
            Ok(worker) => {
                tracing::info!(
                    consumer = self.consumer.name(),
                    partition = self.partition,
                    "this process now delivers the partition"
                );
                Ok(Some(worker.with_lease(lease)))
            }
            Err(error) => {
                lease.release().await;
                Err(error)
            }
        }
    }
}

/// `setup`'s result, or `None` when `shutdown` comes first.
async fn unless_stopped<T>(shutdown: &Shutdown, setup: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        () = shutdown.clone().wait() => None,
        done = setup => Some(done),
    }
}

/// The relays and one consumer's workers of one stream, for a process that
/// delivers a single consumer (tests, benchmarks). A process with several
/// consumers of one stream runs [`run_relays`] once and [`run_workers`] each.
pub async fn run_all<C: Consumer>(
    store: Store,
    config: NatsConfig,
    consumer: Arc<C>,
    clock: Arc<dyn Clock>,
    shutdown: Shutdown,
) -> Result<(), EventsError> {
    let leases = store::Leases::new(&store);
    let relays = run_relays(
        store.clone(),
        config.clone(),
        clock.clone(),
        leases.clone(),
        shutdown.clone(),
    );
    let workers = run_workers(store, config, consumer, clock, leases, shutdown);
    let (relayed, worked) = tokio::join!(relays, workers);
    relayed.and(worked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_names_are_valid_jetstream_names() {
        assert_eq!(durable_name("payroll.alerts", 0), "payroll_alerts-p0");
        assert_eq!(durable_name("channel.history", 3), "channel_history-p3");
        assert_eq!(durable_name("bench-probe_1", 7), "bench-probe_1-p7");
        assert_eq!(durable_name("a b*c>", 1), "a_b_c_-p1");
    }

    #[test]
    fn an_idle_worker_pauses_longer_up_to_the_cap() {
        assert_eq!(idle_pause_ms(20, 1), 20);
        assert_eq!(idle_pause_ms(20, 2), 40);
        assert_eq!(idle_pause_ms(20, 4), 160);
        assert_eq!(idle_pause_ms(20, 5), IDLE_PAUSE_MS_MAX);
        assert_eq!(idle_pause_ms(20, u32::MAX), IDLE_PAUSE_MS_MAX);
        // A configured pause above the cap is kept as configured.
        assert_eq!(idle_pause_ms(1_000, 3), 1_000);
    }
}
