//! The consumer contract and the single place where an event meets a consumer.
//!
//! This module owns the completion record: a consumer has finished `(key, seq)`
//! exactly when `event_consumer_keys.seq_done` for its key has reached `seq`, and
//! that row is moved forward in the same transaction, behind the same savepoint, as
//! the consumer's own effect. It must never call a consumer outside a transaction,
//! never let a key's seq advance by more than one, and never commit an effect
//! without its completion record.

use std::future::Future;

use money::{Clock, Timestamp};
use store::{Store, Tx};

use crate::outbox::{Event, EventsError};
use crate::telemetry;

/// Whatever a consumer's `handle` returns when it cannot finish now.
pub type HandleError = Box<dyn std::error::Error + Send + Sync>;

/// A durable reader of events. The framework delivers each event of the declared
/// kinds once per key in seq order and records completion in `tx`; effects written
/// through `tx` therefore happen exactly once.
pub trait Consumer: Send + Sync + 'static {
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
            Ok(Outcome::Failed(error.to_string()))
        }
    }
}

/// Delivers events of distinct keys in one transaction: one commit for the whole
/// batch, one outcome per event in input order. A backbone failure turns every
/// unfinished outcome into [`Outcome::Transient`].
pub(crate) async fn deliver_batch<C: Consumer>(
    store: &Store,
    consumer: &C,
    events: &[Event],
    clock: &dyn Clock,
) -> Vec<Outcome> {
    let transient = |error: EventsError| -> Vec<Outcome> {
        let message = error.to_string();
        events
            .iter()
            .map(|_| Outcome::Transient(message.clone()))
            .collect()
    };
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
    let now = clock.now();
    for (event, outcome) in events.iter().zip(&outcomes) {
        if *outcome == Outcome::Applied {
            telemetry::handled(consumer.name(), lag_ms(now, event.created_at));
        }
    }
    outcomes
}

fn lag_ms(now: Timestamp, created_at: Timestamp) -> i64 {
    now.ms_since(created_at).max(0)
}
