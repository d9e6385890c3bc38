//! `settle bench history`: page-read latency of the history read model at shallow
//! and deep positions, keyset pagination against OFFSET, in the same run on the
//! same data. It bulk-loads synthetic entries straight into the read-model table of
//! the store it is given (a scratch database), and never touches a core.

use std::time::Instant;

use money::{AccountId, Clock, SystemClock, TransferId};
use serde::Serialize;
use store::Store;

use crate::db;
use crate::error::ChannelError;

/// What to measure.
#[derive(Clone, Debug)]
pub struct HistoryBenchParams {
    /// Entries of the one benchmark account.
    pub entries: i64,
    /// Entries per page read.
    pub page_entries: usize,
    /// Timed reads per position for keyset pages.
    pub keyset_samples: usize,
    /// Timed reads per position for OFFSET pages (slow when deep, so fewer).
    pub offset_samples: usize,
}

/// Bounds that keep a run finite.
pub const BENCH_ENTRIES_MAX: i64 = 10_000_000;
pub const BENCH_SAMPLES_MAX: usize = 100_000;
pub const BENCH_PAGE_ENTRIES_MAX: usize = 1_000;

impl Default for HistoryBenchParams {
    fn default() -> HistoryBenchParams {
        HistoryBenchParams {
            entries: 1_000_000,
            page_entries: 50,
            keyset_samples: 300,
            offset_samples: 30,
        }
    }
}

/// One JSON line of results. Latencies are milliseconds of wall time per page read.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryBenchReport {
    pub bench: &'static str,
    pub backend: &'static str,
    pub entries: i64,
    pub page_entries: usize,
    pub keyset_samples: usize,
    pub offset_samples: usize,
    pub load_ms: u64,
    pub keyset_p50_ms_shallow: f64,
    pub keyset_p99_ms_shallow: f64,
    pub keyset_p99_ms_middle: f64,
    pub keyset_p50_ms_deep: f64,
    pub keyset_p99_ms_deep: f64,
    pub offset_p50_ms_shallow: f64,
    pub offset_p99_ms_shallow: f64,
    pub offset_p99_ms_middle: f64,
    pub offset_p50_ms_deep: f64,
    pub offset_p99_ms_deep: f64,
    /// OFFSET's deep p99 over keyset's deep p99.
    pub ratio: f64,
}

/// Loads the data into `store` (which must be empty of channel data) and measures.
pub async fn run(
    store: &Store,
    params: &HistoryBenchParams,
) -> Result<HistoryBenchReport, ChannelError> {
    if !(1..=BENCH_ENTRIES_MAX).contains(&params.entries)
        || !(1..=BENCH_PAGE_ENTRIES_MAX).contains(&params.page_entries)
        || !(1..=BENCH_SAMPLES_MAX).contains(&params.keyset_samples)
        || !(1..=BENCH_SAMPLES_MAX).contains(&params.offset_samples)
    {
        return Err(ChannelError::InvalidConfig(format!(
            "need 1..={BENCH_ENTRIES_MAX} entries, 1..={BENCH_PAGE_ENTRIES_MAX} entries per page \
             and 1..={BENCH_SAMPLES_MAX} samples"
        )));
    }
    crate::migrate(store).await?;
    let account = AccountId::from_uuid(uuid::Uuid::now_v7())
        .map_err(|e| ChannelError::Corrupt(e.to_string()))?;
    let transfer = TransferId::from_uuid(uuid::Uuid::now_v7())
        .map_err(|e| ChannelError::Corrupt(e.to_string()))?;
    let started = Instant::now();
    db::bulk_load(store, account, transfer, params.entries, SystemClock.now()).await?;
    let load_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        entries = params.entries,
        load_ms,
        "history bench data loaded"
    );

    let page = params.page_entries as i64;
    let n = params.entries;
    // A page is named by how many newer entries come before it.
    let depths = [0, (n / 2).min(n - page.min(n)), (n - page).max(0)];
    let mut keyset = Vec::new();
    let mut offset = Vec::new();
    for skipped in depths {
        let before_seq = n - skipped + 1;
        let expected_first = n - skipped;
        keyset.push(
            time(params.keyset_samples, expected_first, || {
                db::history_page(store, account, before_seq, params.page_entries)
            })
            .await?,
        );
        offset.push(
            time(params.offset_samples, expected_first, || {
                db::history_page_by_offset(store, account, skipped, params.page_entries)
            })
            .await?,
        );
    }
    let keyset_p99_ms_deep = percentile(&keyset[2], 99);
    let offset_p99_ms_deep = percentile(&offset[2], 99);
    Ok(HistoryBenchReport {
        bench: "history",
        backend: store.backend().name(),
        entries: n,
        page_entries: params.page_entries,
        keyset_samples: params.keyset_samples,
        offset_samples: params.offset_samples,
        load_ms,
        keyset_p50_ms_shallow: percentile(&keyset[0], 50),
        keyset_p99_ms_shallow: percentile(&keyset[0], 99),
        keyset_p99_ms_middle: percentile(&keyset[1], 99),
        keyset_p50_ms_deep: percentile(&keyset[2], 50),
        keyset_p99_ms_deep,
        offset_p50_ms_shallow: percentile(&offset[0], 50),
        offset_p99_ms_shallow: percentile(&offset[0], 99),
        offset_p99_ms_middle: percentile(&offset[1], 99),
        offset_p50_ms_deep: percentile(&offset[2], 50),
        offset_p99_ms_deep,
        ratio: if keyset_p99_ms_deep > 0.0 {
            offset_p99_ms_deep / keyset_p99_ms_deep
        } else {
            0.0
        },
    })
}

/// Times `samples` reads (after two untimed warm-up reads) and checks each page
/// starts where it should, so both methods are known to read the same page.
async fn time<F, Fut>(
    samples: usize,
    expected_first: i64,
    mut read: F,
) -> Result<Vec<f64>, ChannelError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<ledger::Entry>, ChannelError>>,
{
    for _ in 0..2 {
        read().await?;
    }
    let mut millis = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let page = read().await?;
        millis.push(started.elapsed().as_secs_f64() * 1_000.0);
        if page.first().map(|e| e.seq) != Some(expected_first) {
            return Err(ChannelError::Corrupt(format!(
                "bench page should start at seq {expected_first}"
            )));
        }
    }
    Ok(millis)
}

fn percentile(samples: &[f64], pct: usize) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (sorted.len() * pct).div_ceil(100).clamp(1, sorted.len());
    let value = sorted[rank - 1];
    (value * 1_000.0).round() / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50), 50.0);
        assert_eq!(percentile(&samples, 99), 99.0);
        assert_eq!(percentile(&[3.0], 99), 3.0);
    }
}
