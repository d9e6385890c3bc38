//! `settle bench all`: runs every benchmark with the functions its own command
//! uses, draws the plots (docs/plots/*.svg) and rewrites docs/benchmarks.md.
//!
//! The document mixes generated blocks with hand-written prose. Only the text
//! between `<!-- bench-all:NAME -->` and `<!-- /bench-all:NAME -->` is generated;
//! everything outside the markers is kept as it is, and a block whose markers are
//! missing is appended at the end under its own heading. So other benchmarks'
//! sections and their reading notes survive a regeneration.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use super::ledger::{Params, Scenario};
use super::plot::{Chart, Series, write_svg};
use crate::progress;

/// What one `bench all` run measures; `quick` is a smoke test of the same code.
pub struct AllParams {
    pub quick: bool,
    pub docs_dir: PathBuf,
}

struct Sizes {
    ledger_transfers: usize,
    ledger_baseline_transfers: usize,
    ledger_accounts: usize,
    ledger_clients: usize,
    batch_sizes: &'static [usize],
    payout_items: usize,
    payout_latency_ms: u64,
    concurrencies: &'static [usize],
    events: usize,
    event_keys: usize,
    polling_accounts: usize,
    polling_rps: u32,
}

const FULL: Sizes = Sizes {
    ledger_transfers: 50_000,
    ledger_baseline_transfers: 5_000,
    ledger_accounts: 10_000,
    ledger_clients: 4_096,
    batch_sizes: &[1, 4, 16, 64, 256, 1_024, 4_096],
    payout_items: 200,
    payout_latency_ms: 50,
    concurrencies: &[1, 2, 5, 10, 25, 50],
    events: 50_000,
    event_keys: 1_000,
    polling_accounts: 1_000,
    polling_rps: 200,
};

const QUICK: Sizes = Sizes {
    ledger_transfers: 2_000,
    ledger_baseline_transfers: 300,
    ledger_accounts: 500,
    ledger_clients: 256,
    batch_sizes: &[1, 16, 256],
    payout_items: 10,
    payout_latency_ms: 10,
    concurrencies: &[1, 5, 25],
    events: 1_000,
    event_keys: 50,
    polling_accounts: 40,
    polling_rps: 200,
};

/// One generated block: its marker name, heading (used when appended) and text.
struct Block {
    name: &'static str,
    heading: &'static str,
    text: String,
}

pub async fn run(params: &AllParams) -> anyhow::Result<PathBuf> {
    let sizes = if params.quick { &QUICK } else { &FULL };
    let started = Instant::now();
    let plots = params.docs_dir.join("plots");
    std::fs::create_dir_all(&plots).with_context(|| format!("creating {}", plots.display()))?;
    let quick_flag = if params.quick { " --quick" } else { "" };
    let mut blocks = vec![Block {
        name: "machine",
        heading: "Machine",
        text: machine(quick_flag),
    }];
    blocks.push(ledger_sweep(sizes, &plots, quick_flag).await?);
    blocks.push(payout_sweep(sizes, &plots, quick_flag).await?);
    blocks.push(events(sizes, quick_flag).await?);
    blocks.push(polling(sizes, quick_flag).await?);
    let path = params.docs_dir.join("benchmarks.md");
    let existing = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
    let mut document = existing;
    for block in &blocks {
        document = splice(&document, block);
    }
    std::fs::write(&path, document).with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "bench all: wrote {} in {:.0}s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(path)
}

/// Replaces the block's marked text, or appends the block under its heading.
fn splice(document: &str, block: &Block) -> String {
    let open = format!("<!-- bench-all:{} -->", block.name);
    let close = format!("<!-- /bench-all:{} -->", block.name);
    let body = format!("{open}\n{}\n{close}", block.text.trim_end());
    if let (Some(start), Some(end)) = (document.find(&open), document.find(&close))
        && start < end
    {
        let mut out = String::with_capacity(document.len() + body.len());
        out.push_str(&document[..start]);
        out.push_str(&body);
        out.push_str(&document[end + close.len()..]);
        return out;
    }
    format!(
        "{}\n\n## {}\n\n{body}\n",
        document.trim_end(),
        block.heading
    )
}

fn machine(quick_flag: &str) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024 / 1024)
        .unwrap_or(0);
    let load = load_average();
    let build = if cfg!(debug_assertions) {
        "dev (unoptimised: figures are not representative)"
    } else {
        "release"
    };
    format!(
        "Generated by `target/release/settle bench all{quick_flag}` (the blocks between \
         `bench-all` markers; the prose around them is written by hand and kept).\n\n\
         | | |\n|---|---|\n| CPU | {cpu}, {cores} cores |\n| memory | {memory_gib} GiB |\n\
         | load average when the run started (1 min) | {load} |\n| build | {build} |\n| OS | {} {} |\n\n\
         The machine is shared: other engineers build and test on it, so figures taken \
         under load say so through the load average above.",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

async fn ledger_sweep(sizes: &Sizes, plots: &Path, quick_flag: &str) -> anyhow::Result<Block> {
    let base = Params {
        backend_url: None,
        backend: "sqlite",
        accounts: sizes.ledger_accounts,
        transfers: sizes.ledger_transfers,
        baseline_transfers: sizes.ledger_baseline_transfers,
        clients: sizes.ledger_clients,
        submission_transfers: 1,
        batch_transfers_max: 1,
        seed: 42,
    };
    let bar = progress::bar(sizes.batch_sizes.len() as u64 + 1, "ledger batch sweep");
    let baseline_tps = super::ledger::measure(
        &base,
        Scenario::Uniform,
        sizes.ledger_baseline_transfers,
        true,
    )
    .await?;
    bar.inc(1);
    let mut points = Vec::new();
    for batch in sizes.batch_sizes {
        let params = Params {
            batch_transfers_max: *batch,
            ..base.clone()
        };
        let tps = super::ledger::measure(&params, Scenario::Uniform, sizes.ledger_transfers, false)
            .await?;
        points.push((*batch as f64, tps));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (x_min, x_max) = (
        points.first().map_or(1.0, |p| p.0),
        points.last().map_or(1.0, |p| p.0),
    );
    write_svg(
        &plots.join("ledger_batch.svg"),
        &Chart {
            title: "Ledger throughput vs batch size (SQLite, uniform)",
            x_label: "batch_transfers_max (transfers per writer transaction)",
            y_label: "transfers/s",
            log_x: true,
            series: vec![
                Series {
                    label: "batching writer".to_owned(),
                    points: points.clone(),
                    reference: false,
                },
                Series {
                    label: "baseline: one transaction per transfer".to_owned(),
                    points: vec![(x_min, baseline_tps), (x_max, baseline_tps)],
                    reference: true,
                },
            ],
        },
    )?;
    let mut text = format!(
        "Batch-size sweep, measured side by side in one run: {} transfers between {} accounts \
         from {} concurrent callers (SQLite, `uniform`), once per `batch_transfers_max`, and \
         the unbatched baseline ({} transfers, one transaction each) once.\n\n\
         ```\ntarget/release/settle bench all{quick_flag}\n```\n\n\
         | batch_transfers_max | transfers/s | × baseline |\n|---|---|---|\n",
        sizes.ledger_transfers,
        sizes.ledger_accounts,
        sizes.ledger_clients,
        sizes.ledger_baseline_transfers
    );
    for (batch, tps) in &points {
        let _ = writeln!(
            text,
            "| {batch:.0} | {tps:.0} | {:.1} |",
            tps / baseline_tps.max(f64::MIN_POSITIVE)
        );
    }
    let _ = writeln!(
        text,
        "| baseline (1 per transaction) | {baseline_tps:.0} | 1.0 |"
    );
    let _ = write!(
        text,
        "\n![ledger throughput against batch size](plots/ledger_batch.svg)\n\n\
         Load average after the sweep: {}.",
        load_average()
    );
    Ok(Block {
        name: "ledger-batch",
        heading: "Core ledger: throughput against batch size",
        text,
    })
}

async fn payout_sweep(sizes: &Sizes, plots: &Path, quick_flag: &str) -> anyhow::Result<Block> {
    let bar = progress::bar(sizes.concurrencies.len() as u64, "payout concurrency sweep");
    let mut rows = Vec::new();
    for concurrency in sizes.concurrencies {
        let report = fees::bench::payout(
            &fees::bench::PayoutParams {
                items: sizes.payout_items,
                latency_ms: sizes.payout_latency_ms,
                concurrency: *concurrency,
                seed: 42,
            },
            &|_, _| {},
        )
        .await?;
        rows.push(report);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let measured: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.concurrency as f64, r.wall_s))
        .collect();
    let ideal: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.concurrency as f64, r.ideal_s))
        .collect();
    write_svg(
        &plots.join("payout_concurrency.svg"),
        &Chart {
            title: "Fee payout wall time vs concurrency",
            x_label: "calls in flight (C)",
            y_label: "seconds",
            log_x: true,
            series: vec![
                Series {
                    label: "measured fees::pay".to_owned(),
                    points: measured,
                    reference: false,
                },
                Series {
                    label: "ideal ⌈calls/C⌉·L".to_owned(),
                    points: ideal,
                    reference: true,
                },
            ],
        },
    )?;
    let calls = rows.first().map_or(0, |r| r.calls);
    let mut text = format!(
        "Concurrency sweep of one `fees::pay` ({} items, {calls} calls, L = {} ms per call, \
         bank simulator over loopback HTTP), each against the ideal ⌈calls/C⌉·L, in one run.\n\n\
         ```\ntarget/release/settle bench all{quick_flag}\n\
         # one point: target/release/settle bench payout --items {} --latency-ms {} --concurrency 50 --json\n```\n\n\
         | C | ideal (s) | wall (s) | ratio |\n|---|---|---|---|\n",
        sizes.payout_items, sizes.payout_latency_ms, sizes.payout_items, sizes.payout_latency_ms
    );
    for r in &rows {
        let _ = writeln!(
            text,
            "| {} | {:.2} | {:.2} | {:.3} |",
            r.concurrency, r.ideal_s, r.wall_s, r.ratio
        );
    }
    let _ = write!(
        text,
        "\n![payout wall time against concurrency, with the ideal](plots/payout_concurrency.svg)\n\n\
         Load average after the sweep: {}.",
        load_average()
    );
    Ok(Block {
        name: "payout-concurrency",
        heading: "Fee payouts: wall time against concurrency",
        text,
    })
}

async fn events(sizes: &Sizes, quick_flag: &str) -> anyhow::Result<Block> {
    let bar = progress::bar(1, "event backbone");
    let report = events::bench::run(&events::bench::BenchOptions {
        transport: events::bench::BenchTransport::Embedded,
        events: sizes.events,
        keys: sizes.event_keys,
        rate_per_s: None,
        database_url: None,
        nats_url: events::nats::nats_url_from_env(),
        timeout_ms: 600_000,
    })
    .await?;
    bar.finish_and_clear();
    let text = format!(
        "```\ntarget/release/settle bench all{quick_flag}\n\
         # the same: target/release/settle bench events --transport embedded --events {} --keys {} --json\n```\n\n\
         | transport | backend | events | keys | events/s | lag p50 (ms) | lag p99 (ms) |\n\
         |---|---|---|---|---|---|---|\n| {} | {} | {} | {} | {:.0} | {} | {} |\n\n\
         Load average after the run: {}.",
        sizes.events,
        sizes.event_keys,
        report.transport,
        report.backend,
        report.events,
        report.keys,
        report.eps,
        report.p50_ms,
        report.p99_ms,
        load_average()
    );
    Ok(Block {
        name: "events",
        heading: "Event backbone, regenerated",
        text,
    })
}

async fn polling(sizes: &Sizes, quick_flag: &str) -> anyhow::Result<Block> {
    let bar = progress::bar(1, "balance polling");
    let report = payroll::bench::polling(&payroll::bench::PollingParams {
        accounts: sizes.polling_accounts,
        requests_per_s: sizes.polling_rps,
        concurrent_max: 16,
    })
    .await?;
    bar.finish_and_clear();
    let text = format!(
        "```\ntarget/release/settle bench all{quick_flag}\n\
         # the same: target/release/settle bench polling --accounts {} --rps {} --json\n```\n\n\
         | accounts | R (req/s) | ideal (s) | wall (s) | ratio | refused for rate |\n\
         |---|---|---|---|---|---|\n| {} | {} | {:.2} | {:.2} | {:.3} | {} |\n\n\
         Load average after the run: {}.",
        sizes.polling_accounts,
        sizes.polling_rps,
        report.accounts,
        report.rps,
        report.ideal_s,
        report.wall_s,
        report.ratio,
        report.rejected_rate_total,
        load_average()
    );
    Ok(Block {
        name: "polling",
        heading: "Balance polling, regenerated",
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str) -> Block {
        Block {
            name: "x",
            heading: "X",
            text: text.to_owned(),
        }
    }

    #[test]
    fn a_marked_block_is_replaced_and_the_prose_around_it_kept() {
        let document =
            "# B\n\nprose before\n<!-- bench-all:x -->\nold\n<!-- /bench-all:x -->\nprose after\n";
        let out = splice(document, &block("new"));
        assert_eq!(
            out,
            "# B\n\nprose before\n<!-- bench-all:x -->\nnew\n<!-- /bench-all:x -->\nprose after\n"
        );
        assert_eq!(splice(&out, &block("new")), out, "regenerating is stable");
    }

    #[test]
    fn a_block_without_markers_is_appended_under_its_heading() {
        let out = splice("# B\n\nhand-written\n", &block("first"));
        assert!(out.starts_with("# B\n\nhand-written\n\n## X\n\n<!-- bench-all:x -->\nfirst\n"));
        let again = splice(&out, &block("second"));
        assert_eq!(again.matches("## X").count(), 1);
        assert!(again.contains("second") && !again.contains("first"));
    }
}
