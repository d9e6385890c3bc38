//! The consumer contract and the single place where an event meets a consumer.
//!
//! This module owns the completion record: a consumer has finished `(key, seq)`
//! exactly when `event_consumer_keys.seq_done` for its key has reached `seq`, and
//! that row is moved forward in the same transaction, behind the same savepoint, as
//! the consumer's own effect. It must never call a consumer outside a transaction,
//! never let a key's seq advance by more than one, and never commit an effect
//! without its completion record.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use money::{Clock, Timestamp};
use store::{Store, Tx};

use crate::outbox::{Event, EventsError};
use crate::telemetry;

/// Whatever a consumer's `handle` returns when it cannot finish now.
pub type HandleError = Box<dyn std::error::Error + Send + Sync>;

/// An answer from `prepare` or `handle` that says "not now, and not my fault":
/// another process holds the work (a claim, a lease), so the event is tried again
/// after a pause without counting as a failed attempt and never goes to the
/// dead-letter table for it. Return it boxed: `Err(Deferred::new("…").into())`.
#[derive(Debug, thiserror::Error)]
#[error("deferred: {reason}")]
pub struct Deferred {
    pub reason: String,
}

impl Deferred {
    pub fn new(reason: impl Into<String>) -> Deferred {
        Deferred {
            reason: reason.into(),
        }
    }
}

/// A failed attempt, or a deferral when the error is a [`Deferred`].
fn failure(error: &HandleError) -> Outcome {
    match error.downcast_ref::<Deferred>() {
        Some(deferred) => Outcome::Transient(deferred.to_string()),
        None => Outcome::Failed(error.to_string()),
    }
}

/// A durable reader of events. The framework delivers each event of the declared
/// kinds once per key in seq order and records completion in `tx`; effects written
/// through `tx` therefore happen exactly once.
pub trait Consumer: Send + Sync + 'static {
    /// Whether [`Consumer::prepare`] does anything. When it does, the backbone
    /// prepares and handles at most one event of the consumer's kinds per key per
    /// transaction, so such an event is prepared only after the key's earlier
    /// events committed.
    const PREPARES: bool = false;

    /// The durable name under which progress and dead letters are kept.
    fn name(&self) -> &str;

    /// The kinds this consumer acts on; other kinds of the same key are passed over
    /// in order without a call.
    fn kinds(&self) -> &[&str];

    /// Acts on one event. Load the current state by `event.id` / `event.key`;
    /// write effects through `tx`. An error rolls back everything written through
    /// `tx` for this event, and the event is retried with backoff.
    fn handle(
        &self,
        event: &Event,
        tx: &mut Tx,
    ) -> impl Future<Output = Result<(), HandleError>> + Send;

    /// Slow work for one event outside any transaction — a bank call that must not
    /// hold a database lock while it waits — called (only when
    /// [`Consumer::PREPARES`]) before every attempt to `handle` an event of the
    /// consumer's kinds. It may run for an event that then turns out finished, or
    /// run again after a crash, so it must be idempotent and leave recording its
    /// result to `handle`. An error counts as a failed attempt, like one from
    /// `handle`. Default: nothing.
    fn prepare(&self, _event: &Event) -> impl Future<Output = Result<(), HandleError>> + Send {
        std::future::ready(Ok(()))
    }
}

/// The one stream a consumer reads: the component of its kinds, which must all
/// be of one component (a consumer never straddles two streams).
pub fn stream_of_consumer<C: Consumer + ?Sized>(consumer: &C) -> Result<String, EventsError> {
    let mut stream: Option<&str> = None;
    for kind in consumer.kinds() {
        let of_kind = crate::outbox::stream_of(kind)?;
        match stream {
            None => stream = Some(of_kind),
            Some(seen) if seen == of_kind => {}
            Some(seen) => {
                return Err(EventsError::InvalidConfig(format!(
                    "consumer {} reads kinds of two streams ({seen} and {of_kind})",
                    consumer.name()
                )));
            }
        }
    }
    stream.map(str::to_owned).ok_or_else(|| {
        EventsError::InvalidConfig(format!("consumer {} declares no kinds", consumer.name()))
    })
}

/// What delivering one event came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The consumer's effect and the completion record committed together.
    Applied,
    /// Not a kind of this consumer: only the completion record moved.
    Passed,
    /// Already finished earlier: nothing happened.
    Duplicate,
    /// An earlier seq of this key is not finished yet: nothing happened.
    Gap { expected_seq: i64 },
    /// The consumer failed; counts toward `retry_attempts_max`.
    Failed(String),
    /// The backbone itself (database) failed; retried without counting.
    Transient(String),
}

impl Outcome {
    /// The event needs no more delivery.
    pub(crate) fn is_finished(&self) -> bool {
        matches!(
            self,
            Outcome::Applied | Outcome::Passed | Outcome::Duplicate
        )
    }
}

macro_rules! on_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            store::Tx::Sqlite(inner) => {
                let $conn = &mut **inner;
                $body
            }
            store::Tx::Postgres(inner) => {
                let $conn = &mut **inner;
                $body
            }
        }
    };
}
pub(crate) use on_tx;

macro_rules! on_store {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            store::Store::Sqlite($pool) => $body,
            store::Store::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_store;

async fn execute(tx: &mut Tx, sql: &'static str) -> Result<(), EventsError> {
    on_tx!(tx, |conn| sqlx::query(sql)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Moves `consumer`'s watermark for `event.key` from `seq - 1` to `seq`, or says
/// why it cannot.
async fn advance(
    tx: &mut Tx,
    consumer: &str,
    event: &Event,
) -> Result<Option<Outcome>, EventsError> {
    let moved = on_tx!(tx, |conn| sqlx::query(
        "UPDATE event_consumer_keys SET seq_done = $1
         WHERE consumer = $2 AND key = $3 AND seq_done = $4"
    )
    .bind(event.seq)
    .bind(consumer)
    .bind(&event.key)
    .bind(event.seq.saturating_sub(1))
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    if moved == 1 {
        return Ok(None);
    }
    if event.seq == 1 {
        let inserted = on_tx!(tx, |conn| sqlx::query(
            "INSERT INTO event_consumer_keys (consumer, key, seq_done) VALUES ($1, $2, 1)
             ON CONFLICT (consumer, key) DO NOTHING"
        )
        .bind(consumer)
        .bind(&event.key)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
        if inserted == 1 {
            return Ok(None);
        }
    }
    let done = seq_done_in(tx, consumer, &event.key).await?;
    if event.seq <= done {
        Ok(Some(Outcome::Duplicate))
    } else {
        Ok(Some(Outcome::Gap {
            expected_seq: done.saturating_add(1),
        }))
    }
}

async fn seq_done_in(tx: &mut Tx, consumer: &str, key: &str) -> Result<i64, EventsError> {
    let done: Option<i64> = on_tx!(tx, |conn| sqlx::query_scalar(
        "SELECT seq_done FROM event_consumer_keys WHERE consumer = $1 AND key = $2"
    )
    .bind(consumer)
    .bind(key)
    .fetch_optional(conn)
    .await)?;
    Ok(done.unwrap_or(0))
}

/// The highest seq of `key` that `consumer` has finished (0: none).
pub async fn seq_done(store: &Store, consumer: &str, key: &str) -> Result<i64, EventsError> {
    let done: Option<i64> = on_store!(store, |pool| sqlx::query_scalar(
        "SELECT seq_done FROM event_consumer_keys WHERE consumer = $1 AND key = $2"
    )
    .bind(consumer)
    .bind(key)
    .fetch_optional(pool)
    .await)?;
    Ok(done.unwrap_or(0))
}

/// Delivers one event inside `tx`, behind a savepoint so that a failing consumer
/// undoes only its own event.
async fn deliver_in_tx<C: Consumer>(
    tx: &mut Tx,
    consumer: &C,
    event: &Event,
) -> Result<Outcome, EventsError> {
    execute(tx, "SAVEPOINT settle_event").await?;
    if let Some(outcome) = advance(tx, consumer.name(), event).await? {
        execute(tx, "RELEASE SAVEPOINT settle_event").await?;
        return Ok(outcome);
    }
    if !consumer.kinds().iter().any(|kind| *kind == event.kind) {
        execute(tx, "RELEASE SAVEPOINT settle_event").await?;
        return Ok(Outcome::Passed);
    }
    match consumer.handle(event, tx).await {
        Ok(()) => {
            execute(tx, "RELEASE SAVEPOINT settle_event").await?;
            Ok(Outcome::Applied)
        }
        Err(error) => {
            execute(tx, "ROLLBACK TO SAVEPOINT settle_event").await?;
            execute(tx, "RELEASE SAVEPOINT settle_event").await?;
            Ok(failure(&error))
        }
    }
}

/// Delivers a batch, one outcome per event in input order. Without a `prepare`
/// step the whole batch is one transaction. With one, the batch goes in rounds —
/// the first event of the consumer's kinds of every key, then the second, … —
/// each round prepared concurrently outside any transaction and then handled in
/// one transaction, its keys in key order; a key whose event did not finish
/// takes no further part.
pub(crate) async fn deliver_batch<C: Consumer>(
    store: &Store,
    consumer: &C,
    events: &[Event],
    clock: &dyn Clock,
) -> Vec<Outcome> {
    if !C::PREPARES {
        return deliver_in_one_tx(store, consumer, events, clock).await;
    }
    let mut outcomes: Vec<Option<Outcome>> = vec![None; events.len()];
    // A key's n-th event of the consumer's kinds opens its round n; events of
    // other kinds (nothing to prepare) ride along in the round before them.
    let mut round_of: Vec<usize> = Vec::with_capacity(events.len());
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for event in events {
        let count = seen.entry(event.key.as_str()).or_insert(0);
        if consumer.kinds().iter().any(|kind| *kind == event.kind) {
            *count += 1;
        }
        round_of.push(count.saturating_sub(1));
    }
    let rounds = seen.values().copied().max().unwrap_or(0).max(1);
    let mut stopped: HashSet<&str> = HashSet::new();
    for round in 0..rounds {
        let mut members: Vec<usize> = (0..events.len())
            .filter(|&i| round_of[i] == round && !stopped.contains(events[i].key.as_str()))
            .collect();
        // Key order (stable within a key): consumers whose rounds run at once then
        // take per-key row locks in the same order and never deadlock on them.
        members.sort_by(|&a, &b| events[a].key.cmp(&events[b].key));
        let prepared = futures_util::future::join_all(members.iter().map(|&i| async move {
            let event = &events[i];
            if consumer.kinds().iter().any(|kind| *kind == event.kind) {
                consumer.prepare(event).await
            } else {
                Ok(())
            }
        }))
        .await;
        let mut ready: Vec<usize> = Vec::with_capacity(members.len());
        for (i, result) in members.into_iter().zip(prepared) {
            match result {
                Ok(()) => ready.push(i),
                Err(error) => {
                    outcomes[i] = Some(failure(&error));
                    stopped.insert(events[i].key.as_str());
                }
            }
        }
        let batch: Vec<Event> = ready.iter().map(|&i| events[i].clone()).collect();
        let delivered = deliver_in_one_tx(store, consumer, &batch, clock).await;
        for (i, outcome) in ready.into_iter().zip(delivered) {
            if !outcome.is_finished() {
                stopped.insert(events[i].key.as_str());
            }
            outcomes[i] = Some(outcome);
        }
    }
    outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| {
                Outcome::Transient("an earlier event of its key did not finish".into())
            })
        })
        .collect()
}

/// Delivers events of distinct keys in one transaction: one commit for the whole
/// batch, one outcome per event in input order. A backbone failure turns every
/// unfinished outcome into [`Outcome::Transient`].
async fn deliver_in_one_tx<C: Consumer>(
    store: &Store,
    consumer: &C,
    events: &[Event],
    clock: &dyn Clock,
) -> Vec<Outcome> {
    if events.is_empty() {
        return Vec::new();
    }
    let transient = |error: EventsError| -> Vec<Outcome> {
        let message = error.to_string();
        events
            .iter()
            .map(|_| Outcome::Transient(message.clone()))
            .collect()
    };
    if events.len() > 1 {
        match deliver_optimistic(store, consumer, events).await {
            Ok(Some(outcomes)) => {
                record_handled(consumer, events, &outcomes, clock);
                return outcomes;
            }
            // A handler failed or another process moved a watermark: redo the
            // batch carefully, one savepoint per event.
            Ok(None) => {}
            Err(error) => return transient(error),
        }
    }
    let mut tx = match store.begin().await {
        Ok(tx) => tx,
        Err(error) => return transient(error.into()),
    };
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        match deliver_in_tx(&mut tx, consumer, event).await {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) => {
                let _ = tx.rollback().await;
                return transient(error);
            }
        }
    }
    if let Err(error) = tx.commit().await {
        return transient(error.into());
    }
    record_handled(consumer, events, &outcomes, clock);
    outcomes
}

fn record_handled<C: Consumer>(
    consumer: &C,
    events: &[Event],
    outcomes: &[Outcome],
    clock: &dyn Clock,
) {
    let now = clock.now();
    for (event, outcome) in events.iter().zip(outcomes) {
        if *outcome == Outcome::Applied {
            telemetry::handled(consumer.name(), lag_ms(now, event.created_at));
        }
    }
}

/// Rows per statement when SQLite reads or writes watermarks in bulk.
const SQLITE_KEYS_PER_STATEMENT_MAX: usize = 500;

/// The fast path: one transaction, watermarks read (and locked on PostgreSQL) and
/// written in bulk, no savepoints. Returns `None`, with everything rolled back,
/// as soon as a handler fails or a watermark moved under us.
async fn deliver_optimistic<C: Consumer>(
    store: &Store,
    consumer: &C,
    events: &[Event],
) -> Result<Option<Vec<Outcome>>, EventsError> {
    let name = consumer.name();
    let mut keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut tx = store.begin().await?;
    let known = load_watermarks(&mut tx, name, &keys).await?;
    let mut moved: HashMap<&str, i64> = HashMap::new();
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        let current = moved
            .get(event.key.as_str())
            .or_else(|| known.get(event.key.as_str()))
            .copied()
            .unwrap_or(0);
        if event.seq <= current {
            outcomes.push(Outcome::Duplicate);
            continue;
        }
        if event.seq != current.saturating_add(1) {
            outcomes.push(Outcome::Gap {
                expected_seq: current.saturating_add(1),
            });
            continue;
        }
        if consumer.kinds().iter().any(|kind| *kind == event.kind) {
            if consumer.handle(event, &mut tx).await.is_err() {
                tx.rollback().await?;
                return Ok(None);
            }
            outcomes.push(Outcome::Applied);
        } else {
            outcomes.push(Outcome::Passed);
        }
        moved.insert(event.key.as_str(), event.seq);
    }
    let mut updates: Vec<(&str, i64, i64)> = Vec::new();
    let mut inserts: Vec<(&str, i64)> = Vec::new();
    for (key, seq) in moved {
        match known.get(key) {
            Some(old) => updates.push((key, seq, *old)),
            None => inserts.push((key, seq)),
        }
    }
    let written = write_watermarks(&mut tx, name, &updates, &inserts).await?;
    if written != (updates.len() + inserts.len()) as u64 {
        tx.rollback().await?;
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(outcomes))
}

async fn load_watermarks(
    tx: &mut Tx,
    consumer: &str,
    keys: &[&str],
) -> Result<HashMap<String, i64>, EventsError> {
    let mut found: HashMap<String, i64> = HashMap::with_capacity(keys.len());
    match tx {
        Tx::Sqlite(tx) => {
            for chunk in keys.chunks(SQLITE_KEYS_PER_STATEMENT_MAX) {
                let mut select = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                    "SELECT key, seq_done FROM event_consumer_keys WHERE consumer = ",
                );
                select.push_bind(consumer).push(" AND key IN (");
                let mut list = select.separated(", ");
                for key in chunk {
                    list.push_bind(*key);
                }
                select.push(")");
                let rows: Vec<(String, i64)> = select.build_query_as().fetch_all(&mut **tx).await?;
                found.extend(rows);
            }
        }
        Tx::Postgres(tx) => {
            // Locked in key order, so two processes never deadlock on them.
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT key, seq_done FROM event_consumer_keys
                 WHERE consumer = $1 AND key = ANY($2::text[]) ORDER BY key FOR UPDATE",
            )
            .bind(consumer)
            .bind(keys)
            .fetch_all(&mut **tx)
            .await?;
            found.extend(rows);
        }
    }
    Ok(found)
}

/// Moves watermarks from their old to their new seq (only if still at the old
/// one) and creates new ones (only if absent). Returns the rows written.
async fn write_watermarks(
    tx: &mut Tx,
    consumer: &str,
    updates: &[(&str, i64, i64)],
    inserts: &[(&str, i64)],
) -> Result<u64, EventsError> {
    let mut written = 0;
    match tx {
        Tx::Sqlite(tx) => {
            // SQLite: one writer at a time, and in-process statements are cheap.
            for (key, seq, old) in updates {
                written += sqlx::query(
                    "UPDATE event_consumer_keys SET seq_done = $1
                     WHERE consumer = $2 AND key = $3 AND seq_done = $4",
                )
                .bind(seq)
                .bind(consumer)
                .bind(key)
                .bind(old)
                .execute(&mut **tx)
                .await?
                .rows_affected();
            }
            for (key, seq) in inserts {
                written += sqlx::query(
                    "INSERT INTO event_consumer_keys (consumer, key, seq_done) VALUES ($1, $2, $3)
                     ON CONFLICT (consumer, key) DO NOTHING",
                )
                .bind(consumer)
                .bind(key)
                .bind(seq)
                .execute(&mut **tx)
                .await?
                .rows_affected();
            }
        }
        Tx::Postgres(tx) => {
            if !updates.is_empty() {
                let keys: Vec<&str> = updates.iter().map(|u| u.0).collect();
                let seqs: Vec<i64> = updates.iter().map(|u| u.1).collect();
                let olds: Vec<i64> = updates.iter().map(|u| u.2).collect();
                written += sqlx::query(
                    "UPDATE event_consumer_keys AS c SET seq_done = u.seq
                     FROM UNNEST($2::text[], $3::int8[], $4::int8[]) AS u(key, seq, old)
                     WHERE c.consumer = $1 AND c.key = u.key AND c.seq_done = u.old",
                )
                .bind(consumer)
                .bind(&keys)
                .bind(&seqs)
                .bind(&olds)
                .execute(&mut **tx)
                .await?
                .rows_affected();
            }
            if !inserts.is_empty() {
                let keys: Vec<&str> = inserts.iter().map(|i| i.0).collect();
                let seqs: Vec<i64> = inserts.iter().map(|i| i.1).collect();
                written += sqlx::query(
                    "INSERT INTO event_consumer_keys (consumer, key, seq_done)
                     SELECT $1, key, seq FROM UNNEST($2::text[], $3::int8[]) AS u(key, seq)
                     ON CONFLICT (consumer, key) DO NOTHING",
                )
                .bind(consumer)
                .bind(&keys)
                .bind(&seqs)
                .execute(&mut **tx)
                .await?
                .rows_affected();
            }
        }
    }
    Ok(written)
}

fn lag_ms(now: Timestamp, created_at: Timestamp) -> i64 {
    now.ms_since(created_at).max(0)
}
