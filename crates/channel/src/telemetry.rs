//! The channel's metrics, named in one place. This module only records through the
//! `metrics` facade; it never installs an exporter.

use money::Timestamp;

use crate::db::InFlightStats;
use crate::reconciler::ReconcileReport;
use crate::state::TransferState;

/// A transfer's state when the service let go of it.
pub(crate) fn transfer_finished(state: TransferState) {
    metrics::counter!("channel_transfers_total", "state" => state.name()).increment(1);
}

/// A transfer refused because its user had one in flight.
pub(crate) fn refused_in_progress() {
    metrics::counter!("channel_transfers_in_progress_refused_total").increment(1);
}

/// How many transfers are in flight and unknown, and how old the oldest unknown is.
pub(crate) fn in_flight(stats: &InFlightStats, now: Timestamp) {
    metrics::gauge!("channel_transfers_in_flight").set(stats.in_flight as f64);
    metrics::gauge!("channel_transfers_unknown").set(stats.unknown as f64);
    let age_ms = stats
        .oldest_unknown_requested_at
        .map_or(0, |at| now.ms_since(at).max(0));
    metrics::gauge!("channel_transfers_unknown_oldest_age_ms").set(age_ms as f64);
}

pub(crate) fn reconciled(report: &ReconcileReport) {
    for (result, count) in [
        ("succeeded", report.succeeded),
        ("failed", report.failed),
        ("left_in_flight", report.left_in_flight),
        ("error", report.errors),
    ] {
        metrics::counter!("channel_reconciled_total", "result" => result).increment(count as u64);
    }
}

/// Entries the read model took from the core by range (gap fills and syncs).
pub(crate) fn fetched(entries: usize) {
    metrics::counter!("channel_history_fetched_entries_total").increment(entries as u64);
}
