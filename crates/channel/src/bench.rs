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
            keyset_samples: 1_000,
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
    /// The machine's 1-minute load average when the timing ended.
    pub load_avg_1m: Option<f64>,
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
    // A page is named by how many newer entries come before it: the newest page,
    // one in the middle, the oldest.
    let depths = [0, (n / 2).min(n - page.min(n)), (n - page).max(0)];
    // Depths take turns within each round, so a noisy moment on a shared machine
    // hits every depth alike and "flat with depth" compares like with like.
    let keyset = time_rounds(params.keyset_samples, depths, n, |skipped| {
        db::history_page(store, account, n - skipped + 1, params.page_entries)
    })
    .await?;
    let offset = time_rounds(params.offset_samples, depths, n, |skipped| {
        db::history_page_by_offset(store, account, skipped, params.page_entries)
    })
    .await?;
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
        load_avg_1m: load_avg_1m(),
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

/// Times `samples` rounds of one read per depth (after a warm-up round) and checks
/// each page starts where it should, so both methods are known to read the same
/// page. Returns the milliseconds per depth.
async fn time_rounds<F, Fut>(
    samples: usize,
    depths: [i64; 3],
    newest_seq: i64,
    mut read: F,
) -> Result<[Vec<f64>; 3], ChannelError>
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<ledger::Entry>, ChannelError>>,
{
    let mut millis: [Vec<f64>; 3] = Default::default();
    for round in 0..=samples {
        for (slot, skipped) in depths.iter().enumerate() {
            let started = Instant::now();
            let page = read(*skipped).await?;
            let elapsed_ms = started.elapsed().as_secs_f64() * 1_000.0;
            let expected_first = newest_seq - skipped;
            if page.first().map(|e| e.seq) != Some(expected_first) {
                return Err(ChannelError::Corrupt(format!(
                    "bench page should start at seq {expected_first}"
                )));
            }
            if round > 0 {
                millis[slot].push(elapsed_ms);
            }
        }
    }
    Ok(millis)
}

/// The 1-minute load average (Linux), so a noisy run can be recognised as such.
fn load_avg_1m() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
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
