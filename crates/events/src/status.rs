//! The backbone as an operator sees it: per stream the outbox rows not yet
//! relayed and the age of the oldest, per consumer the events it has not
//! finished and the keys parked behind dead letters, per relay partition the
//! process that leads it and since when. Read from the tables, so every process
//! (and `settle events status` on its own) sees the same figures.
//!
//! This module only reads. Consumer lag counts outbox rows beyond each key's
//! watermark: a scan of the consumer's stream, fine for an operator's command or
//! a metrics tick every few seconds, not for a hot path.

use money::Timestamp;
use serde::Serialize;
use store::Store;

use crate::outbox::EventsError;

/// One outbox stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct StreamStatus {
    pub stream: String,
    /// Rows ever written.
    pub events: i64,
    /// Rows the relay has not published yet (NATS transport; the embedded
    /// dispatcher reads the outbox itself and never marks rows relayed).
    pub unrelayed: i64,
    /// Age of the oldest unrelayed row, if any.
    pub oldest_unrelayed_age_ms: Option<i64>,
}

/// One consumer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ConsumerStatus {
    pub consumer: String,
    pub stream: String,
    /// Events of its stream it has not finished (including those waiting behind
    /// a parked key).
    pub lag_events: i64,
    pub parked_keys: i64,
}

/// Who relays one partition of one stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RelayLeader {
    pub stream: String,
    pub partition: i64,
    pub holder: String,
    pub since_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct BackboneStatus {
    pub streams: Vec<StreamStatus>,
    pub consumers: Vec<ConsumerStatus>,
    pub relay_leaders: Vec<RelayLeader>,
}

/// The backbone's status now.
pub async fn status(store: &Store, now: Timestamp) -> Result<BackboneStatus, EventsError> {
    let streams: Vec<(String, i64, i64, Option<i64>)> = store::on_pool!(
        store,
        sqlx::query_as(
            "SELECT stream, COUNT(*),
                    COALESCE(SUM(CASE WHEN relayed_at_ms IS NULL THEN 1 ELSE 0 END), 0),
                    MIN(CASE WHEN relayed_at_ms IS NULL THEN created_at_ms END)
             FROM outbox GROUP BY stream ORDER BY stream"
        ),
        fetch_all
    )?;
    let streams = streams
        .into_iter()
        .map(|(stream, events, unrelayed, oldest)| StreamStatus {
            stream,
            events,
            unrelayed,
            oldest_unrelayed_age_ms: oldest.map(|at| now.unix_ms().saturating_sub(at).max(0)),
        })
        .collect();
    let mut consumers = Vec::new();
    for (consumer, stream) in consumer_streams(store).await? {
        consumers.push(consumer_status(store, consumer, stream).await?);
    }
    let relay_leaders: Vec<(String, i64, String, i64)> = store::on_pool!(
        store,
        sqlx::query_as(
            "SELECT stream, partition, holder, since_ms FROM event_relay_leaders
             ORDER BY stream, partition"
        ),
        fetch_all
    )?;
    Ok(BackboneStatus {
        streams,
        consumers,
        relay_leaders: relay_leaders
            .into_iter()
            .map(|(stream, partition, holder, since_ms)| RelayLeader {
                stream,
                partition,
                holder,
                since_ms,
            })
            .collect(),
    })
}

/// Every consumer that has finished at least one event, with the stream of
/// the keys it keeps watermarks on.
async fn consumer_streams(store: &Store) -> Result<Vec<(String, String)>, EventsError> {
    let rows: Vec<(String, String)> = store::on_pool!(
        store,
        sqlx::query_as(
            "SELECT c.consumer, MIN(o.stream) FROM event_consumer_keys c
             JOIN outbox o ON o.key = c.key AND o.seq = c.seq_done
             GROUP BY c.consumer ORDER BY c.consumer"
        ),
        fetch_all
    )?;
    Ok(rows)
}

async fn consumer_status(
    store: &Store,
    consumer: String,
    stream: String,
) -> Result<ConsumerStatus, EventsError> {
    let lag_events: i64 = store::on_pool!(
        store,
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox o
             LEFT JOIN event_consumer_keys c ON c.consumer = $1 AND c.key = o.key
             WHERE o.stream = $2 AND o.seq > COALESCE(c.seq_done, 0)"
        )
        .bind(&consumer)
        .bind(&stream),
        fetch_one
    )?;
    let parked_keys: i64 = store::on_pool!(
        store,
        sqlx::query_scalar(
            "SELECT COUNT(DISTINCT key) FROM event_dead_letters
             WHERE consumer = $1 AND state = 'parked'"
        )
        .bind(&consumer),
        fetch_one
    )?;
    Ok(ConsumerStatus {
        consumer,
        stream,
        lag_events,
        parked_keys,
    })
}

/// Sets the backbone's gauges (`events_outbox_unrelayed`,
/// `events_outbox_oldest_unrelayed_age_ms`, `events_consumer_lag`,
/// `events_consumer_parked_keys`) from a status.
pub fn record_gauges(status: &BackboneStatus) {
    for stream in &status.streams {
        let label = stream.stream.clone();
        metrics::gauge!("events_outbox_unrelayed", "stream" => label.clone())
            .set(stream.unrelayed as f64);
        metrics::gauge!("events_outbox_oldest_unrelayed_age_ms", "stream" => label)
            .set(stream.oldest_unrelayed_age_ms.unwrap_or(0) as f64);
    }
    for consumer in &status.consumers {
        let label = consumer.consumer.clone();
        metrics::gauge!("events_consumer_lag", "consumer" => label.clone())
            .set(consumer.lag_events as f64);
        metrics::gauge!("events_consumer_parked_keys", "consumer" => label)
            .set(consumer.parked_keys as f64);
    }
}
