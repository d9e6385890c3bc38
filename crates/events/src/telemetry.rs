//! The backbone's metrics, named in one place: events published, handled, retried
//! and dead-lettered, and the lag from `created_at` to handling. This module only
//! records through the `metrics` facade; it never installs an exporter.

/// Events the relay published and the broker acknowledged.
pub(crate) fn published(count: usize) {
    metrics::counter!("events_published_total").increment(count as u64);
}

/// One event applied by a consumer, `lag_ms` after it was written.
pub(crate) fn handled(consumer: &str, lag_ms: i64) {
    metrics::counter!("events_handled_total", "consumer" => consumer.to_owned()).increment(1);
    metrics::histogram!("events_lag_ms", "consumer" => consumer.to_owned()).record(lag_ms as f64);
}

/// One failed attempt that will be tried again.
pub(crate) fn retried(consumer: &str) {
    metrics::counter!("events_retried_total", "consumer" => consumer.to_owned()).increment(1);
}

/// One event moved to the dead-letter table.
pub(crate) fn dead_lettered(consumer: &str) {
    metrics::counter!("events_dead_lettered_total", "consumer" => consumer.to_owned()).increment(1);
}

/// An event of another stream refused by a worker (a routing bug).
pub(crate) fn misdelivered(consumer: &str) {
    metrics::counter!("events_misdelivered_total", "consumer" => consumer.to_owned()).increment(1);
}

/// Events the repair sweep delivered from the outbox because the broker never did.
pub(crate) fn repaired(consumer: &str, count: usize) {
    metrics::counter!("events_repaired_total", "consumer" => consumer.to_owned())
        .increment(count as u64);
}
