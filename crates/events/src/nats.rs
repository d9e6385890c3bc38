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

/// `NATS_URL`, or the default local server.
pub fn nats_url_from_env() -> String {
    std::env::var("NATS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_NATS_URL.to_owned())
}

/// Transport settings.
#[derive(Clone, Debug)]
pub struct NatsConfig {
    pub url: String,
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
    /// How long an idle worker sleeps before pulling again (a pull never waits).
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
    pub retry: RetryPolicy,
}

impl Default for NatsConfig {
    fn default() -> NatsConfig {
        NatsConfig {
            url: nats_url_from_env(),
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
            retry: RetryPolicy::default(),
        }
    }
}

impl NatsConfig {
    fn validate(&self) -> Result<(), EventsError> {
        if self.partitions == 0 || self.publish_batch_max == 0 || self.fetch_batch_max == 0 {
            return Err(EventsError::InvalidConfig(
                "partitions, publish_batch_max and fetch_batch_max must be at least 1".into(),
            ));
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

/// The advisory lock key of one relay partition of one stream.
fn relay_lock_key(config: &NatsConfig, partition: u32) -> i64 {
    0x5e77_0000_0000_0000_i64 ^ (key_hash(&config.stream) << 16) ^ i64::from(partition)
}

/// Publishes one partition's outbox rows to the stream.
pub struct Relay {
    store: Store,
    js: Context,
    config: NatsConfig,
    partition: u32,
    clock: Arc<dyn Clock>,
    /// PostgreSQL: the dedicated connection that holds this partition's advisory
    /// lock; dropping it releases the lock. SQLite runs one process, no lock.
    lock: Option<sqlx::PgConnection>,
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
    ) -> Result<Option<Relay>, EventsError> {
        config.validate()?;
        let lock = match &store {
            Store::Sqlite(_) => None,
            Store::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(relay_lock_key(&config, partition))
                    .fetch_one(&mut *conn)
                    .await?;
                if !held {
                    tracing::info!(partition, "another relay holds this partition");
                    return Ok(None);
                }
                // The lock lives as long as this connection: take it out of the
                // pool so it is never reused, and closing it releases the lock.
                Some(conn.detach())
            }
        };
        Ok(Some(Relay {
            store,
            js,
            config,
            partition,
            clock,
            lock,
        }))
    }

    /// Publishes up to `publish_batch_max` unrelayed rows, awaits their acks, and
    /// marks the acknowledged prefix relayed.
    #[tracing::instrument(skip_all, fields(partition = self.partition))]
    pub async fn run_once(&mut self) -> Result<Step, EventsError> {
        if let Some(lock) = self.lock.as_mut() {
            // A lost lock connection means a lost lock: stop rather than race.
            if let Err(error) = sqlx::query("SELECT 1").execute(&mut *lock).await {
                return Err(EventsError::RelayLockLost {
                    partition: self.partition,
                    reason: error.to_string(),
                });
            }
        }
        let rows = outbox::unrelayed(
            &self.store,
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
        outbox::mark_relayed(&self.store, &acked, self.clock.now()).await?;
        telemetry::published(acked.len());
        match failure {
            Some(error) => Err(error),
            None => Ok(Step::Done),
        }
    }

    /// Steps until `shutdown`, sleeping `poll_interval_ms` when idle; a failed
    /// step is logged and retried.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown.fuse());
        loop {
            let step = match self.run_once().await {
                Ok(step) => step,
                Err(error @ EventsError::RelayLockLost { .. }) => {
                    tracing::warn!(partition = self.partition, error = %error, "relay lost its partition lock; stepping down");
                    return;
                }
                Err(error) => {
                    tracing::warn!(partition = self.partition, error = %error, code = error.code(), "relay step failed; retrying");
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
    pull: PullConsumer,
    /// When released letters were last looked for; the check costs a query.
    released_checked_at: Option<std::time::Instant>,
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
        let durable = durable_name(consumer.name(), partition);
        let stream = js
            .get_stream(config.stream.as_str())
            .await
            .map_err(EventsError::nats)?;
        let pull: PullConsumer = stream
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
            .map_err(EventsError::nats)?;
        Ok(Worker {
            store,
            consumer,
            config,
            partition,
            clock,
            pull,
            released_checked_at: None,
        })
    }

    /// Picks up released keys, then pulls and delivers one batch.
    #[tracing::instrument(skip_all, fields(consumer = self.consumer.name(), partition = self.partition))]
    pub async fn run_once(&mut self) -> Result<Step, EventsError> {
        let due = self
            .released_checked_at
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(self.config.release_check_ms));
        let mut worked = false;
        if due {
            worked = self.drain_released().await?;
            self.released_checked_at = Some(std::time::Instant::now());
        }
        let started = std::time::Instant::now();
        let mut batch = self
            .pull
            .fetch()
            .max_messages(self.config.fetch_batch_max)
            .messages()
            .await
            .map_err(EventsError::nats)?;
        let mut messages = Vec::new();
        while let Some(message) = batch.next().await {
            let message = message.map_err(EventsError::nats)?;
            match serde_json::from_slice::<Event>(&message.payload) {
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
        if messages.is_empty() {
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

    /// Steps until `shutdown`; a failed step is logged and retried after a pause.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown.fuse());
        loop {
            if (&mut shutdown).now_or_never().is_some() {
                break;
            }
            let pause_ms = match self.run_once().await {
                Ok(Step::Done) => continue,
                Ok(Step::Idle) => self.config.fetch_wait_ms,
                Err(error) => {
                    tracing::warn!(partition = self.partition, error = %error, code = error.code(), "worker step failed; retrying");
                    self.config.poll_interval_ms
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(Duration::from_millis(pause_ms)) => {}
            }
        }
    }
}

/// Keeps trying to become `partition`'s relay, and runs it while it holds the
/// lock, until `shutdown`: if the process that holds the partition dies, this one
/// takes over within `relay_takeover_ms`.
async fn relay_seat(
    store: Store,
    js: Context,
    config: NatsConfig,
    partition: u32,
    clock: Arc<dyn Clock>,
    shutdown: Shutdown,
) {
    let mut stopped = std::pin::pin!(shutdown.clone().wait().fuse());
    loop {
        match Relay::acquire(
            store.clone(),
            js.clone(),
            config.clone(),
            partition,
            clock.clone(),
        )
        .await
        {
            Ok(Some(relay)) => relay.run(shutdown.clone().wait()).await,
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(partition, error = %error, code = error.code(), "could not try the relay lock; retrying");
            }
        }
        tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep(Duration::from_millis(config.relay_takeover_ms)) => {}
        }
    }
}

/// Runs a relay seat and a worker for every partition until `shutdown` is
/// cancelled; each partition is relayed by whichever process holds its lock.
pub async fn run_all<C: Consumer>(
    store: Store,
    config: NatsConfig,
    consumer: Arc<C>,
    clock: Arc<dyn Clock>,
    shutdown: Shutdown,
) -> Result<(), EventsError> {
    let js = connect(&config).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for partition in 0..config.partitions {
        tasks.spawn(relay_seat(
            store.clone(),
            js.clone(),
            config.clone(),
            partition,
            clock.clone(),
            shutdown.clone(),
        ));
        let worker = Worker::new(
            store.clone(),
            &js,
            consumer.clone(),
            config.clone(),
            partition,
            clock.clone(),
        )
        .await?;
        let signal = shutdown.clone();
        tasks.spawn(async move { worker.run(signal.wait()).await });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
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
}
