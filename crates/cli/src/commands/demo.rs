//! `settle demo`: the main job. Runs the platform end to end on scratch data and
//! ends with a report in which every invariant of DESIGN.md is checked; the exit
//! status is non-zero if any fails.
//!
//! The shape is chosen by flags: by default a fresh SQLite file in a temporary
//! directory, the in-process outbox dispatcher and an in-process bank simulator;
//! `--database-url postgres://…` (scratch schemas), `--nats-url` (events through
//! JetStream) and `--bank-url` (a fresh `settle bank-sim`) swap each part. The
//! phases live beside this file: `demo_channel`, `demo_fees`, `demo_payroll`
//! (with the dead letter), on the shared `demo_bank`, `demo_events` and
//! `demo_report`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};
use ledger::{
    AccountFlags, ExpiryWorker, Ledger, LedgerConfig, NewAccount, TransferRequest, TransferResult,
};
use money::{AccountId, Clock, Krw, SystemClock, TransferId};
use rand::{Rng, SeedableRng};

use super::demo_bank::DemoBank;
use super::demo_events::Transport;
use super::demo_report::{Check, Part, Report, Shape, note};
use crate::progress;
use crate::scratch::ScratchDb;

/// How big a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scale {
    /// A fast run for tests: every phase, small numbers.
    Small,
    /// The sizes: 2,000 loans, 4,000 payroll users, 50,000 payments.
    Full,
}

/// The sizes of one run.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    customers: usize,
    payments: usize,
    channel_transfers: usize,
    loans: usize,
    payroll_users: usize,
}

impl Scale {
    fn sizes(self) -> Sizes {
        match self {
            Scale::Full => Sizes {
                customers: 2_000,
                payments: 50_000,
                channel_transfers: 300,
                loans: 2_000,
                payroll_users: 4_000,
            },
            Scale::Small => Sizes {
                customers: 200,
                payments: 2_000,
                channel_transfers: 40,
                loans: 100,
                payroll_users: 40,
            },
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scale::Full => "full",
            Scale::Small => "small",
        }
    }
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Run on this database instead of a scratch SQLite file (postgres://… gets a
    /// scratch schema).
    #[arg(long)]
    database_url: Option<String>,
    /// Relay events through this NATS JetStream server instead of the in-process
    /// dispatcher (each run uses streams of its own and deletes them).
    #[arg(long)]
    nats_url: Option<String>,
    /// Use the bank at this URL (a fresh `settle bank-sim`) instead of an
    /// in-process simulator.
    #[arg(long)]
    bank_url: Option<String>,
    #[command(flatten)]
    bank_ca: super::BankCaArgs,
    /// full: the sizes; small: a quick run of every phase.
    #[arg(long, value_enum, default_value = "full")]
    scale: Scale,
    /// Largest single salary payout call. The in-process bank accepts up to
    /// 2,000,000 per call; a `settle bank-sim` needs `--deposit-amount-max-krw`
    /// at least this.
    #[arg(long, default_value_t = 1_000_000)]
    payout_chunk_max_krw: i64,
    /// Print the report as one JSON document on stdout (progress lines go away).
    #[arg(long)]
    json: bool,
    /// After the report, serve the API and the web console on the demo's data
    /// until Ctrl-C, and print the URL and an ops key.
    #[arg(long)]
    serve: bool,
    /// The port `--serve` listens on (127.0.0.1; 0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    serve_port: u16,
    /// Seed of the workload.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Keep the scratch database afterwards and print where it is.
    #[arg(long)]
    keep: bool,
}

/// The in-process bank's per-call limit on deposit transfers. Fees chunk their
/// payouts at 100,000 by their own configuration; salaries go in larger calls.
pub const DEMO_BANK_DEPOSIT_MAX_KRW: i64 = 2_000_000;
/// Payments per pipelined round: enough for the writer to batch, bounded memory.
const PAYMENTS_PER_ROUND: usize = 2_000;

/// Ids in the demo are derived from the seed, so a run can be reproduced.
struct Ids {
    seed: u64,
    next: u128,
}

impl Ids {
    fn transfer(&mut self) -> anyhow::Result<TransferId> {
        self.next += 1;
        Ok(TransferId::from_u128(
            u128::from(self.seed) << 96 | 0x7_0000_0000 | self.next,
        )?)
    }
    fn account(&mut self) -> anyhow::Result<AccountId> {
        self.next += 1;
        Ok(AccountId::from_u128(
            u128::from(self.seed) << 96 | 0xa_0000_0000 | self.next,
        )?)
    }
}

#[derive(Default)]
struct Tally {
    results: BTreeMap<&'static str, u64>,
}

impl Tally {
    fn add(&mut self, results: &[TransferResult]) {
        for result in results {
            *self.results.entry(result.code()).or_default() += 1;
        }
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.payout_chunk_max_krw <= 0
        || (args.bank_url.is_none() && args.payout_chunk_max_krw > DEMO_BANK_DEPOSIT_MAX_KRW)
    {
        return Err(super::CliError::new(
            "demo_invalid",
            format!(
                "--payout-chunk-max-krw must be 1..={DEMO_BANK_DEPOSIT_MAX_KRW} with the \
                 in-process bank"
            ),
        )
        .into());
    }
    super::demo_report::set_quiet(args.json);
    let sizes = args.scale.sizes();
    let started = Instant::now();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let scratch = ScratchDb::create(args.database_url.as_deref(), "demo").await?;
    let transport = match &args.nats_url {
        Some(url) => Transport::Nats { url: url.clone() },
        None => Transport::Embedded,
    };
    let bank = DemoBank::start(
        args.bank_url.as_deref(),
        args.bank_ca.load()?,
        args.seed,
        clock.clone(),
    )
    .await?;
    let shape = Shape {
        database: match &args.database_url {
            Some(_) => format!(
                "PostgreSQL {} (scratch schemas)",
                store::redact(&scratch.url)
            ),
            None => format!("SQLite in {}", store::redact(&scratch.url)),
        },
        events: transport.describe(),
        bank: bank.describe(),
        scale: args.scale.name().to_owned(),
    };
    note(&format!(
        "settle demo ({} scale) — {}; {}; {}",
        shape.scale, shape.database, shape.events, shape.bank
    ));
    let mut report = Report::new(shape);
    let ledger = Ledger::open(
        scratch.store.clone(),
        clock.clone(),
        LedgerConfig::default(),
    )
    .await?;

    let (core, channel) =
        core_phases(&args, sizes, &ledger, &scratch, &transport, clock.clone()).await?;
    for (part, checks) in core {
        report.add(part, checks);
    }

    // A business day of fees, settled through the bank.
    let fees = super::demo_fees::run(&ledger, &bank, clock.clone(), sizes.loans, args.seed).await?;
    report.add(fees.part, fees.checks);
    report.reconciliation.extend(fees.reconciliation);
    let fees = fees.fees;

    // A month of salaries, and the dead letter it leaves on purpose.
    let payroll = super::demo_payroll::run(
        super::demo_payroll::PayrollParams {
            database_url: args.database_url.as_deref(),
            transport: &transport,
            users: sizes.payroll_users,
            payout_chunk_max_krw: args.payout_chunk_max_krw,
            seed: args.seed,
        },
        &ledger,
        &bank,
        clock.clone(),
    )
    .await?;
    for (part, checks) in payroll.parts {
        report.add(part, checks);
    }
    report.reconciliation.extend(payroll.reconciliation);
    let payroll = payroll.live;

    // The whole ledger and the whole bank, read back at the end.
    let totals = ledger.totals().await?;
    let conserved = bank.conserved_total().await;
    let group = "ledger (DESIGN: debits = credits; flags hold; seq 1..n without gaps)";
    let mut checks: Vec<Check> = totals
        .invariants()
        .into_iter()
        .map(|(name, holds)| {
            Check::new(
                group,
                name,
                holds,
                format!(
                    "posted {} / {}, pending {} / {}, {} accounts with broken entries, {} breaking flags",
                    totals.debits_posted,
                    totals.credits_posted,
                    totals.debits_pending,
                    totals.credits_pending,
                    totals.accounts_with_broken_entries,
                    totals.accounts_breaking_flags
                ),
            )
        })
        .collect();
    checks.push(Check::new(
        "bank",
        "the bank's balances add up to the money that entered it",
        conserved.is_ok(),
        match &conserved {
            Ok(total) => format!("{total} in the bank"),
            Err(error) => format!("{error:#}"),
        },
    ));
    let ledger_part = Part::new("the books at the end", 0.0)
        .count("ledger accounts", totals.accounts)
        .amount(
            "posted debits (= credits)",
            i64::try_from(totals.debits_posted).unwrap_or(i64::MAX),
        )
        .amount(
            "pending debits (= credits)",
            i64::try_from(totals.debits_pending).unwrap_or(i64::MAX),
        )
        .amount(
            "money in the bank",
            conserved.as_ref().map(|k| k.get()).unwrap_or(0),
        );
    report.add(ledger_part, checks);
    report.finish(started.elapsed().as_secs_f64());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print();
    }

    if args.serve {
        super::demo_serve::serve(
            super::demo_serve::Live {
                core_store: &scratch.store,
                ledger: &ledger,
                channel: &channel.channel,
                fees: &fees,
                payroll: &payroll,
                bank: &bank,
                clock: clock.clone(),
            },
            args.serve_port,
        )
        .await?;
    }
    drop(fees);
    payroll.close().await?;
    drop(channel.channel);
    channel.db.finish(false).await?;
    drop(ledger);
    bank.stop().await?;
    let location = scratch.url.clone();
    scratch.finish(args.keep).await?;
    if args.keep {
        note(&format!("kept the data at {}", store::redact(&location)));
    }
    anyhow::ensure!(report.ok, "an invariant failed: see the report above");
    Ok(())
}

/// The core ledger's phases: accounts, funding, the channel, customer payments,
/// holds and the safety rails.
async fn core_phases(
    args: &DemoArgs,
    sizes: Sizes,
    ledger: &Ledger,
    scratch: &ScratchDb,
    transport: &Transport,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Vec<(Part, Vec<Check>)>, super::demo_channel::ChannelLive)> {
    let phase = Instant::now();
    let mut ids = Ids {
        seed: args.seed,
        next: 0,
    };
    let mut rng = rand::rngs::SmallRng::seed_from_u64(args.seed);
    let mut tally = Tally::default();

    // A chart of accounts — the company's bank account and its customers, whose
    // accounts may never be overdrawn.
    let bank = ids.account()?;
    let mut news = vec![NewAccount::new(bank, 100, AccountFlags::default())?];
    let customer_flags = AccountFlags {
        debits_must_not_exceed_credits: true,
        ..AccountFlags::default()
    };
    let mut customers = Vec::with_capacity(sizes.customers);
    for _ in 0..sizes.customers {
        let id = ids.account()?;
        customers.push(id);
        news.push(NewAccount::new(id, 200, customer_flags)?);
    }
    for chunk in news.chunks(ledger.config().accounts_per_call_max) {
        ledger.create_accounts(chunk).await?;
    }

    // Fund every customer.
    let now = SystemClock.now();
    let mut funding = Vec::with_capacity(customers.len());
    for customer in &customers {
        let amount = Krw::new(rng.random_range(10_000..=1_000_000));
        funding.push(vec![TransferRequest::single(
            ids.transfer()?,
            bank,
            *customer,
            amount,
            now,
        )?]);
    }
    let funding_requests: Vec<TransferRequest> = funding.iter().flatten().copied().collect();
    let bar = progress::bar(funding.len() as u64, "funding customers");
    for round in funding.chunks(PAYMENTS_PER_ROUND) {
        let results = ledger.submit_pipelined(round.to_vec()).await?;
        tally.add(&results.concat());
        bar.inc(round.len() as u64);
    }
    bar.finish_and_clear();
    let funded_krw = customer_credits(ledger, &customers).await?;
    note(&format!(
        "  funded {} customers in {:.2}s",
        customers.len(),
        phase.elapsed().as_secs_f64()
    ));
    let funding_part = Part::new("accounts and funding", phase.elapsed().as_secs_f64())
        .count("customer accounts", customers.len())
        .amount("credited to customers", funded_krw);

    // The channel layer in front of a core that loses answers (early, so that the
    // history read model has a modest outbox to catch up on).
    let (channel_part, channel_checks, channel) = super::demo_channel::run(
        super::demo_channel::ChannelParams {
            core_store: &scratch.store,
            database_url: args.database_url.as_deref(),
            transport,
            customers: &customers,
            transfers: sizes.channel_transfers,
            seed: args.seed,
        },
        clock,
    )
    .await?;

    // Customers pay each other; some try to spend more than they have.
    let phase = Instant::now();
    let bar = progress::bar(sizes.payments as u64, "customer payments");
    let mut remaining = sizes.payments;
    let mut payments_tally = Tally::default();
    while remaining > 0 {
        let round = remaining.min(PAYMENTS_PER_ROUND);
        let now = SystemClock.now();
        let mut submissions = Vec::with_capacity(round);
        for _ in 0..round {
            let from = customers[rng.random_range(0..customers.len())];
            let mut to = customers[rng.random_range(0..customers.len())];
            if to == from {
                to = bank;
            }
            let amount = Krw::new(rng.random_range(1_000..=200_000));
            submissions.push(vec![TransferRequest::single(
                ids.transfer()?,
                from,
                to,
                amount,
                now,
            )?]);
        }
        let results = ledger.submit_pipelined(submissions).await?;
        payments_tally.add(&results.concat());
        bar.inc(round as u64);
        remaining -= round;
    }
    bar.finish_and_clear();
    let payments_s = phase.elapsed().as_secs_f64();
    note(&format!(
        "  {} payments in {:.2}s ({:.0}/s through the batching writer)",
        sizes.payments,
        payments_s,
        sizes.payments as f64 / payments_s.max(1e-9)
    ));
    let mut payments_part = Part::new("customer payments", payments_s).count(
        "payments per second (batching writer)",
        (sizes.payments as f64 / payments_s.max(1e-9)) as i64,
    );
    for (code, count) in &payments_tally.results {
        payments_part = payments_part.count(&format!("ledger answered {code}"), *count);
    }

    // Holds — card-style authorisations posted in full, in part, voided, or left
    // to expire.
    let phase = Instant::now();
    let now = SystemClock.now();
    let mut holds = Vec::new();
    for (index, customer) in customers.iter().take(400).enumerate() {
        let timeout_ms = if index % 4 == 3 { 1 } else { 0 };
        holds.push(TransferRequest::pending(
            ids.transfer()?,
            *customer,
            bank,
            Krw::new(5_000),
            timeout_ms,
            now,
        )?);
    }
    let hold_results = ledger.submit(holds.clone()).await?;
    tally.add(&hold_results);
    let mut settle = Vec::new();
    for (index, (hold, result)) in holds.iter().zip(&hold_results).enumerate() {
        if *result != TransferResult::Ok {
            continue;
        }
        match index % 4 {
            0 => settle.push(TransferRequest::post(
                ids.transfer()?,
                hold.id(),
                None,
                now,
            )?),
            1 => settle.push(TransferRequest::post(
                ids.transfer()?,
                hold.id(),
                Some(Krw::new(3_000)),
                now,
            )?),
            2 => settle.push(TransferRequest::void(ids.transfer()?, hold.id(), now)),
            _ => {}
        }
    }
    tally.add(&ledger.submit(settle).await?);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let worker = ExpiryWorker::new(ledger.clone(), 100);
    let mut expired = 0;
    while let ledger::ExpiryStep::Done(count) = worker.run_once().await? {
        expired += count;
    }
    let hold_ids: Vec<TransferId> = holds.iter().map(|h| h.id()).collect();
    let holds_found = ledger.lookup_transfers(&hold_ids).await?.len();

    // The safety rails — retries, changed fields, a late arrival and a linked
    // chain that must fail whole.
    let retry: Vec<TransferRequest> = funding_requests.iter().take(1_000).copied().collect();
    let credits_before = customer_credits(ledger, &customers).await?;
    let retried = ledger.submit(retry).await?;
    let credits_after = customer_credits(ledger, &customers).await?;
    let all_exist = retried.iter().all(|r| *r == TransferResult::Exists);
    tally.add(&retried);
    let first = funding_requests[0];
    let changed = TransferRequest::single(
        first.id(),
        bank,
        customers[0],
        Krw::new(1),
        SystemClock.now(),
    )?;
    let changed_result = ledger.transfer(changed).await?;
    let late = TransferRequest::single(
        ids.transfer()?,
        bank,
        customers[1],
        Krw::new(1),
        SystemClock.now().plus_ms(-120_000),
    )?;
    let late_result = ledger.transfer(late).await?;
    let poor = customers[2];
    let balance = ledger
        .lookup_accounts(&[poor])
        .await?
        .pop()
        .and_then(|a| a.available_credit_balance())
        .unwrap_or(Krw::ZERO);
    let now = SystemClock.now();
    let chain = vec![
        TransferRequest::single(ids.transfer()?, poor, bank, Krw::new(1), now)?.linked(true),
        TransferRequest::single(
            ids.transfer()?,
            poor,
            bank,
            balance.checked_add(Krw::new(1))?,
            now,
        )?,
    ];
    let chain_results = ledger.submit(chain).await?;
    tally.add(&[changed_result, late_result]);
    tally.add(&chain_results);
    let late_found = ledger.lookup_transfers(&[late.id()]).await?;
    let group = "transfers (DESIGN: a transfer id never moves money twice)";
    let checks = vec![
        Check::new(
            group,
            "a resubmitted transfer id moves money once",
            all_exist && credits_before == credits_after,
            format!(
                "{} resubmissions answered exists: {all_exist}; customer credits {credits_before} → {credits_after}",
                retried.len()
            ),
        ),
        Check::new(
            group,
            "a changed request under a used id is refused",
            changed_result == TransferResult::ExistsWithDifferentFields,
            format!("{changed_result:?}"),
        ),
        Check::new(
            group,
            "a request older than the late window is rejected and never applied",
            late_result == TransferResult::Late && late_found.is_empty(),
            format!("{late_result:?}"),
        ),
        Check::new(
            group,
            "a linked chain with a failing member applies nothing",
            chain_results
                == [
                    TransferResult::LinkedEventFailed,
                    TransferResult::ExceedsCredits,
                ],
            format!("{chain_results:?}"),
        ),
    ];
    let mut rails_part = Part::new("holds and safety rails", phase.elapsed().as_secs_f64())
        .count("holds placed", holds_found)
        .count("holds expired by the worker", expired);
    for (code, count) in &tally.results {
        rails_part = rails_part.count(&format!("ledger answered {code}"), *count);
    }
    Ok((
        vec![
            (funding_part, Vec::new()),
            (channel_part, channel_checks),
            (payments_part, Vec::new()),
            (rails_part, checks),
        ],
        channel,
    ))
}

/// Credits posted to the customers' accounts, read from the ledger.
async fn customer_credits(ledger: &Ledger, customers: &[AccountId]) -> anyhow::Result<i64> {
    let mut total = Krw::ZERO;
    for chunk in customers.chunks(ledger.config().accounts_per_call_max.max(1)) {
        for account in ledger.lookup_accounts(chunk).await? {
            total = total.checked_add(account.credits_posted)?;
        }
    }
    Ok(total.get())
}
