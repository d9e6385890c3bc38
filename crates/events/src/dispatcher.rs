//! The embedded transport: an in-process dispatcher that reads the outbox and
//! delivers events to one consumer, per key in seq order, different keys in
//! parallel batches.
//!
//! It owns the in-memory key queues, the retry schedule and the scan cursor. It
//! never delivers two events of one key at once, never skips a seq (the database
//! watermark refuses it anyway), and never holds more than `queued_events_max`
//! events in memory.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::ExponentialBackoff;
use futures_util::FutureExt;
use money::{Clock, EventId};
use store::Store;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::consumer::{Consumer, Outcome, deliver_batch, on_store, seq_done, stream_of_consumer};
use crate::dead_letter;
use crate::outbox::{self, Cursor, Event, EventsError, Scanned};
use crate::retry::RetryPolicy;
use crate::telemetry;

/// What one step of background work did; tests step until `Idle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Something was read or delivered; step again.
    Done,
    /// Nothing to do until new events, a due retry or an operator action (on
    /// PostgreSQL, rows still hidden by an older transaction count as work).
    Idle,
}

/// A handle producers poke after committing events, so the dispatcher wakes at
/// once instead of at its next poll. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn new() -> Wake {
        Wake::default()
    }

    /// New events are committed.
    pub fn poke(&self) {
        self.0.notify_one();
    }

    async fn wait(&self) {
        self.0.notified().await;
    }
}

/// Dispatcher limits. Defaults suit `settle demo` on SQLite.
#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    /// Batches (transactions) in flight at once.
    pub concurrency_max: usize,
    /// Events in one batch transaction.
    pub batch_events_max: usize,
    /// Consecutive events of one key in one batch (handled in order).
    pub key_events_per_batch_max: usize,
    /// Rows read from the outbox per poll.
    pub poll_events_max: usize,
    /// Events held in memory; polling pauses at this bound.
    pub queued_events_max: usize,
    /// Events of one key read at once when draining a released or gapped key.
    pub key_backlog_events_max: usize,
    /// Longest sleep between polls when nobody pokes.
    pub poll_interval_ms: u64,
    /// How often a standby process (with leases) tries to become the consumer's
    /// dispatcher.
    pub takeover_ms: u64,
    pub retry: RetryPolicy,
}

impl Default for DispatcherConfig {
    fn default() -> DispatcherConfig {
        DispatcherConfig {
            concurrency_max: 4,
            batch_events_max: 512,
            key_events_per_batch_max: 32,
            poll_events_max: 4_096,
            queued_events_max: 65_536,
            key_backlog_events_max: 1_024,
            poll_interval_ms: 200,
            takeover_ms: 2_000,
            retry: RetryPolicy::default(),
        }
    }
}

impl DispatcherConfig {
    fn validate(&self) -> Result<(), EventsError> {
        for (name, value) in [
            ("concurrency_max", self.concurrency_max),
            ("batch_events_max", self.batch_events_max),
            ("key_events_per_batch_max", self.key_events_per_batch_max),
            ("poll_events_max", self.poll_events_max),
            ("queued_events_max", self.queued_events_max),
            ("key_backlog_events_max", self.key_backlog_events_max),
        ] {
            if value == 0 {
                return Err(EventsError::InvalidConfig(format!(
                    "{name} must be at least 1"
                )));
            }
        }
        self.retry.validate()
    }
}

/// One key's place in line.
#[derive(Default)]
struct KeyState {
    /// Events read but not finished, in seq order, no seq twice.
    queue: VecDeque<Scanned>,
    /// Failed attempts of the head event.
    failures: u32,
    backoff: Option<ExponentialBackoff>,
    last_error: String,
    /// The head is not tried before this instant (clock ms).
    not_before_ms: i64,
    /// A backlog read hit its limit: read again when the queue runs dry.
    more_in_outbox: bool,
    /// A released dead letter whose key is being drained.
    draining: Option<EventId>,
}

impl KeyState {
    fn insert(&mut self, scanned: Scanned) -> bool {
        let seq = scanned.event.seq;
        match self.queue.binary_search_by_key(&seq, |s| s.event.seq) {
            Ok(_) => false,
            Err(at) => {
                self.queue.insert(at, scanned);
                true
            }
        }
    }
}

/// The embedded dispatcher for one consumer.
pub struct Dispatcher<C: Consumer> {
    store: Store,
    consumer: Arc<C>,
    /// The outbox stream the consumer reads (its kinds' component).
    stream: String,
    /// With several processes over one database: only the holder of the
    /// consumer's lease dispatches, the others stand by.
    leases: Option<store::Leases>,
    config: DispatcherConfig,
    clock: Arc<dyn Clock>,
    wake: Wake,
    /// Only `concurrency_max` batch transactions run at once.
    permits: Arc<Semaphore>,
    cursor: Cursor,
    saved_cursor: Option<Cursor>,
    keys: HashMap<String, KeyState>,
    parked: HashSet<String>,
    queued_events: usize,
    /// The last poll found rows an older transaction still hides.
    rows_hidden: bool,
}

impl<C: Consumer> Dispatcher<C> {
    /// Prepares a dispatcher; it resumes from the consumer's saved cursor.
    pub async fn new(
        store: Store,
        consumer: Arc<C>,
        config: DispatcherConfig,
        clock: Arc<dyn Clock>,
        wake: Wake,
    ) -> Result<Dispatcher<C>, EventsError> {
        config.validate()?;
        let stream = stream_of_consumer(consumer.as_ref())?;
        let saved = saved_cursor(&store, consumer.name()).await?;
        let cursor = saved.unwrap_or_default();
        tracing::info!(
            consumer = consumer.name(),
            stream,
            ?cursor,
            "dispatcher starting"
        );
        Ok(Dispatcher {
            store,
            permits: Arc::new(Semaphore::new(config.concurrency_max)),
            consumer,
            stream,
            leases: None,
            config,
            clock,
            wake,
            cursor,
            saved_cursor: saved,
            keys: HashMap::new(),
            parked: HashSet::new(),
            queued_events: 0,
            rows_hidden: false,
        })
    }

    /// Dispatches only while this process holds the consumer's lease in
    /// `leases` (the production shape: several processes over one database, one
    /// dispatching, the rest standing by). Without it every process dispatches.
    pub fn with_leases(mut self, leases: store::Leases) -> Dispatcher<C> {
        self.leases = Some(leases);
        self
    }

    /// Forgets everything held in memory and resumes from the saved cursor: what
    /// a process does when it (again) becomes the consumer's dispatcher, since
    /// another process may have moved on meanwhile.
    async fn reset(&mut self) -> Result<(), EventsError> {
        let saved = saved_cursor(&self.store, self.consumer.name()).await?;
        self.cursor = saved.unwrap_or_default();
        self.saved_cursor = saved;
        self.keys.clear();
        self.parked.clear();
        self.queued_events = 0;
        self.rows_hidden = false;
        Ok(())
    }

    /// The handle producers poke after committing events.
    pub fn wake(&self) -> Wake {
        self.wake.clone()
    }

    /// Reads, delivers and settles one round: every ready key gets its next events
    /// delivered once. Returns `Idle` when there was nothing to do.
    #[tracing::instrument(skip_all, fields(consumer = self.consumer.name()))]
    pub async fn run_once(&mut self) -> Result<Step, EventsError> {
        let mut worked = self.refresh_letters().await?;
        worked |= self.poll().await?;
        let batches = self.ready_batches();
        if !batches.is_empty() {
            worked = true;
            let results = self.deliver(batches).await?;
            for (events, outcomes) in results {
                self.settle(events, outcomes).await?;
            }
        }
        self.save_cursor().await?;
        Ok(if worked { Step::Done } else { Step::Idle })
    }

    /// Steps until `shutdown` resolves, sleeping when idle until poked, a retry is
    /// due or `poll_interval_ms` passes. Errors are logged and retried. With
    /// leases, steps only while holding the consumer's lease and otherwise tries
    /// to take it every `takeover_ms`.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), EventsError> {
        let mut shutdown = std::pin::pin!(shutdown.fuse());
        let Some(leases) = self.leases.clone() else {
            self.serve(&mut shutdown, None).await;
            tracing::info!(consumer = self.consumer.name(), "dispatcher stopped");
            return Ok(());
        };
        let name = format!("events/dispatch/{}", self.consumer.name());
        loop {
            match leases.try_acquire(&name).await {
                Ok(Some(lease)) => {
                    tracing::info!(
                        consumer = self.consumer.name(),
                        "this process now dispatches the consumer"
                    );
                    let stopped = match self.reset().await {
                        Ok(()) => self.serve(&mut shutdown, Some(&lease)).await,
                        Err(error) => {
                            tracing::warn!(consumer = self.consumer.name(), %error, "could not resume the dispatcher");
                            false
                        }
                    };
                    lease.release().await;
                    if stopped {
                        break;
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(consumer = self.consumer.name(), %error, code = error.code(), "could not try the dispatcher's lease");
                }
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(Duration::from_millis(self.config.takeover_ms)) => {}
            }
        }
        tracing::info!(consumer = self.consumer.name(), "dispatcher stopped");
        Ok(())
    }

    /// Steps until shutdown (true) or until the lease, if any, is lost (false).
    async fn serve(
        &mut self,
        shutdown: &mut std::pin::Pin<&mut futures_util::future::Fuse<impl Future<Output = ()>>>,
        lease: Option<&store::Lease>,
    ) -> bool {
        loop {
            if shutdown.as_mut().now_or_never().is_some() {
                return true;
            }
            if let Some(lease) = lease
                && !lease.is_held().await
            {
                tracing::warn!(
                    consumer = self.consumer.name(),
                    "dispatcher lost its lease; standing by"
                );
                return false;
            }
            let step = match self.run_once().await {
                Ok(step) => step,
                Err(error) => {
                    tracing::warn!(consumer = self.consumer.name(), error = %error, code = error.code(), "dispatcher step failed; retrying");
                    Step::Idle
                }
            };
            if step == Step::Done && !self.rows_hidden {
                continue;
            }
            let wait_ms = if self.rows_hidden {
                HIDDEN_ROWS_PAUSE_MS
            } else {
                self.idle_wait_ms()
            };
            tokio::select! {
                _ = shutdown.as_mut() => return true,
                _ = self.wake.wait() => {}
                _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
            }
        }
    }

    /// Events held in memory (read, not yet finished).
    pub fn queued_events(&self) -> usize {
        self.queued_events
    }

    /// Nothing is held in memory and no outbox row lies beyond the scan. On
    /// PostgreSQL a step can be `Idle` while rows wait for an older transaction
    /// elsewhere in the cluster to end; this tells the two apart.
    pub async fn caught_up(&self) -> Result<bool, EventsError> {
        if self.queued_events > 0 {
            return Ok(false);
        }
        Ok(!outbox::exists_after(&self.store, &self.stream, self.cursor).await?)
    }

    fn idle_wait_ms(&self) -> u64 {
        let now_ms = self.clock.now().unix_ms();
        let next_due = self
            .keys
            .values()
            .filter(|k| !k.queue.is_empty())
            .map(|k| k.not_before_ms.saturating_sub(now_ms).max(1))
            .min();
        let poll_ms = self.config.poll_interval_ms.max(1);
        next_due.map_or(poll_ms, |due| {
            poll_ms.min(u64::try_from(due).unwrap_or(poll_ms))
        })
    }

    /// Learns which keys dead letters hold back and which an operator released.
    async fn refresh_letters(&mut self) -> Result<bool, EventsError> {
        let open = dead_letter::open(&self.store, self.consumer.name()).await?;
        let parked: HashSet<String> = open.parked_keys.into_iter().collect();
        for key in &parked {
            if let Some(state) = self.keys.remove(key) {
                self.queued_events = self.queued_events.saturating_sub(state.queue.len());
            }
        }
        self.parked = parked;
        let mut worked = false;
        for (key, id) in open.draining {
            if self.parked.contains(&key) {
                continue;
            }
            let already = self.keys.get(&key).is_some_and(|k| k.draining == Some(id));
            if already {
                continue;
            }
            tracing::info!(
                consumer = self.consumer.name(),
                key,
                "released key: picking its waiting events up"
            );
            self.keys.entry(key.clone()).or_default().draining = Some(id);
            self.load_backlog(&key).await?;
            worked = true;
        }
        Ok(worked)
    }

    /// Reads the key's unfinished events straight from the outbox.
    async fn load_backlog(&mut self, key: &str) -> Result<(), EventsError> {
        let done = seq_done(&self.store, self.consumer.name(), key).await?;
        let limit = self.config.key_backlog_events_max;
        let rows = outbox::key_backlog(&self.store, key, done, limit).await?;
        let state = self.keys.entry(key.to_owned()).or_default();
        state.more_in_outbox = rows.len() >= limit;
        for row in rows {
            if state.insert(row) {
                self.queued_events += 1;
            }
        }
        Ok(())
    }

    async fn poll(&mut self) -> Result<bool, EventsError> {
        let room = self
            .config
            .queued_events_max
            .saturating_sub(self.queued_events);
        if room == 0 {
            return Ok(false);
        }
        let limit = room.min(self.config.poll_events_max);
        let rows = outbox::scan_after(&self.store, &self.stream, self.cursor, limit).await?;
        let worked = !rows.is_empty();
        // On PostgreSQL rows can lie beyond the scan, hidden until an older
        // transaction elsewhere ends. That is work about to arrive, not idleness:
        // a stepping caller keeps stepping, and `run` pauses briefly.
        self.rows_hidden = !worked
            && self.store.backend() == store::Backend::Postgres
            && outbox::exists_after(&self.store, &self.stream, self.cursor).await?;
        for row in rows {
            self.cursor = self.cursor.max(row.cursor);
            if self.parked.contains(&row.event.key) {
                continue;
            }
            let state = self.keys.entry(row.event.key.clone()).or_default();
            if state.insert(row) {
                self.queued_events += 1;
            }
        }
        Ok(worked || self.rows_hidden)
    }

    /// The next events of every key whose head is due, packed into batches of
    /// distinct keys (up to `key_events_per_batch_max` consecutive events each).
    fn ready_batches(&self) -> Vec<Vec<Event>> {
        let now_ms = self.clock.now().unix_ms();
        let mut batches: Vec<Vec<Event>> = Vec::new();
        let mut current: Vec<Event> = Vec::new();
        for state in self.keys.values() {
            if state.queue.is_empty() || state.not_before_ms > now_ms {
                continue;
            }
            let take = if state.failures > 0 {
                1
            } else {
                self.config.key_events_per_batch_max
            };
            let room = self.config.batch_events_max.saturating_sub(current.len());
            if room < take.min(state.queue.len()) && !current.is_empty() {
                batches.push(std::mem::take(&mut current));
            }
            let room = self
                .config
                .batch_events_max
                .saturating_sub(current.len())
                .max(1);
            current.extend(
                state
                    .queue
                    .iter()
                    .take(take.min(room))
                    .map(|s| s.event.clone()),
            );
        }
        if !current.is_empty() {
            batches.push(current);
        }
        batches
    }

    async fn deliver(
        &self,
        batches: Vec<Vec<Event>>,
    ) -> Result<Vec<(Vec<Event>, Vec<Outcome>)>, EventsError> {
        let mut tasks = JoinSet::new();
        for events in batches {
            let store = self.store.clone();
            let consumer = self.consumer.clone();
            let clock = self.clock.clone();
            let permits = self.permits.clone();
            tasks.spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    let outcomes = events
                        .iter()
                        .map(|_| Outcome::Transient("dispatcher closed".into()))
                        .collect();
                    return (events, outcomes);
                };
                let outcomes =
                    deliver_batch(&store, consumer.as_ref(), &events, clock.as_ref()).await;
                (events, outcomes)
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(result) => results.push(result),
                // A panicking consumer loses nothing: its transaction was rolled
                // back and its keys' events stay queued, so they are tried again.
                Err(error) => {
                    tracing::error!(consumer = self.consumer.name(), error = %error, "delivery task failed")
                }
            }
        }
        Ok(results)
    }

    /// Applies one batch's outcomes to the key queues, in order per key.
    async fn settle(
        &mut self,
        events: Vec<Event>,
        outcomes: Vec<Outcome>,
    ) -> Result<(), EventsError> {
        let now = self.clock.now();
        let mut stopped: HashSet<String> = HashSet::new();
        for (event, outcome) in events.into_iter().zip(outcomes) {
            if stopped.contains(&event.key) {
                continue;
            }
            let Some(state) = self.keys.get_mut(&event.key) else {
                continue;
            };
            if state.queue.front().map(|s| s.event.seq) != Some(event.seq) {
                stopped.insert(event.key.clone());
                continue;
            }
            if outcome.is_finished() {
                state.queue.pop_front();
                self.queued_events = self.queued_events.saturating_sub(1);
                state.failures = 0;
                state.backoff = None;
                state.not_before_ms = 0;
                continue;
            }
            stopped.insert(event.key.clone());
            match outcome {
                Outcome::Failed(error) => {
                    state.failures += 1;
                    state.last_error = error;
                    let delay = if state.failures >= self.config.retry.retry_attempts_max {
                        None
                    } else {
                        state
                            .backoff
                            .get_or_insert_with(|| self.config.retry.backoff())
                            .next()
                    };
                    match delay {
                        Some(delay) => {
                            telemetry::retried(self.consumer.name());
                            tracing::debug!(key = %event.key, seq = event.seq, failures = state.failures, delay_ms = delay.as_millis() as u64, error = %state.last_error, "event failed; retrying later");
                            state.not_before_ms = now
                                .plus_ms(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
                                .unix_ms();
                        }
                        None => {
                            let attempts = i64::from(state.failures);
                            let last_error = state.last_error.clone();
                            dead_letter::park(
                                &self.store,
                                self.consumer.name(),
                                &event,
                                attempts,
                                &last_error,
                                now,
                            )
                            .await?;
                            if let Some(state) = self.keys.remove(&event.key) {
                                self.queued_events =
                                    self.queued_events.saturating_sub(state.queue.len());
                            }
                            self.parked.insert(event.key.clone());
                        }
                    }
                }
                Outcome::Transient(error) => {
                    tracing::warn!(key = %event.key, seq = event.seq, error = %error, "delivery failed in the backbone; retrying");
                    state.not_before_ms = now
                        .plus_ms(saturating_ms(self.config.retry.backoff_min_ms))
                        .unix_ms();
                }
                Outcome::Gap { expected_seq } => {
                    tracing::debug!(key = %event.key, seq = event.seq, expected_seq, "earlier event not finished; reading the key's backlog");
                    state.not_before_ms = now
                        .plus_ms(saturating_ms(self.config.poll_interval_ms))
                        .unix_ms();
                    self.load_backlog(&event.key).await?;
                    let head = self
                        .keys
                        .get(&event.key)
                        .and_then(|s| s.queue.front())
                        .map(|s| s.event.seq);
                    if head.is_some_and(|seq| seq > expected_seq) {
                        // The producer promised gapless seqs from 1: the missing one
                        // is either not committed yet or was never written.
                        tracing::warn!(key = %event.key, expected_seq, head_seq = ?head, "key waits for a seq that is not in the outbox");
                    }
                }
                Outcome::Applied | Outcome::Passed | Outcome::Duplicate => {}
            }
        }
        // Keys that ran dry: read more of a long backlog, finish a drain, or forget.
        let dry: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, s)| s.queue.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for key in dry {
            let (more, draining) = match self.keys.get(&key) {
                Some(state) => (state.more_in_outbox, state.draining),
                None => continue,
            };
            if more {
                self.load_backlog(&key).await?;
                if self.keys.get(&key).is_some_and(|s| !s.queue.is_empty()) {
                    continue;
                }
            }
            if let Some(id) = draining {
                dead_letter::drained(&self.store, self.consumer.name(), id).await?;
            }
            self.keys.remove(&key);
        }
        Ok(())
    }

    /// Saves how far the scan may safely resume after a restart: just before the
    /// oldest event still held in memory.
    async fn save_cursor(&mut self) -> Result<(), EventsError> {
        let oldest = self
            .keys
            .values()
            .filter_map(|s| s.queue.iter().map(|q| q.cursor).min())
            .min();
        let safe = oldest.map_or(self.cursor, |c| c.before().min(self.cursor));
        if self.saved_cursor == Some(safe) {
            return Ok(());
        }
        on_store!(&self.store, |pool| sqlx::query(
            "INSERT INTO event_consumer_cursors (consumer, xid, position) VALUES ($1, $2, $3)
             ON CONFLICT (consumer) DO UPDATE SET xid = excluded.xid, position = excluded.position"
        )
        .bind(self.consumer.name())
        .bind(safe.xid)
        .bind(safe.position)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        self.saved_cursor = Some(safe);
        Ok(())
    }
}

/// Where the consumer's outbox scan resumes, if it ever saved one.
async fn saved_cursor(store: &Store, consumer: &str) -> Result<Option<Cursor>, EventsError> {
    let saved: Option<(i64, i64)> = on_store!(store, |pool| sqlx::query_as(
        "SELECT xid, position FROM event_consumer_cursors WHERE consumer = $1"
    )
    .bind(consumer)
    .fetch_optional(pool)
    .await)?;
    Ok(saved.map(|(xid, position)| Cursor { xid, position }))
}

/// How long `run` pauses while rows wait for an older transaction to end.
const HIDDEN_ROWS_PAUSE_MS: u64 = 2;

fn saturating_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}
