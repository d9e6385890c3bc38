//! `settle demo`: the main job. Runs the platform end to end on scratch data (by
//! default a fresh SQLite file in a temporary directory) and ends with a report in
//! which every invariant is checked; the exit status is non-zero if any fails.
//!
//! Today it exercises the core ledger; each capability adds its phase here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use ledger::{
    AccountFlags, ExpiryWorker, Ledger, LedgerConfig, NewAccount, TransferRequest, TransferResult,
};
use money::{AccountId, Clock, Krw, SystemClock, TransferId};
use rand::{Rng, SeedableRng};

use crate::progress;
use crate::scratch::ScratchDb;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Run on this database instead of a scratch SQLite file (postgres://… gets a
    /// scratch schema).
    #[arg(long)]
    database_url: Option<String>,
    /// Customers to open.
    #[arg(long, default_value_t = 2_000)]
    customers: usize,
    /// Customer payments to make.
    #[arg(long, default_value_t = 50_000)]
    payments: usize,
    /// Customer transfers through the channel layer, with lost core answers.
    #[arg(long, default_value_t = 300)]
    channel_transfers: usize,
    /// Loans with fee accruals in the fee-settlement phase (0 skips it).
    #[arg(long, default_value_t = 2_000)]
    loans: usize,
    /// Seed of the workload.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Keep the scratch database afterwards and print where it is.
    #[arg(long)]
    keep: bool,
}

const DEMO_CUSTOMERS_MAX: usize = 1_000_000;
const DEMO_PAYMENTS_MAX: usize = 10_000_000;
const DEMO_LOANS_MAX: usize = 100_000;
const DEMO_CHANNEL_TRANSFERS_MAX: usize = 100_000;
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
    if !(2..=DEMO_CUSTOMERS_MAX).contains(&args.customers)
        || args.payments > DEMO_PAYMENTS_MAX
        || args.loans > DEMO_LOANS_MAX
        || args.channel_transfers > DEMO_CHANNEL_TRANSFERS_MAX
    {
        return Err(super::CliError::new(
            "demo_invalid",
            format!(
                "need 2..={DEMO_CUSTOMERS_MAX} customers, at most {DEMO_PAYMENTS_MAX} payments \
                 at most {DEMO_LOANS_MAX} loans and {DEMO_CHANNEL_TRANSFERS_MAX} channel transfers"
            ),
        )
        .into());
    }
    let started = Instant::now();
    let scratch = ScratchDb::create(args.database_url.as_deref(), "demo").await?;
    println!("settle demo — data in {}", store::redact(&scratch.url));
    let ledger = Ledger::open(
        scratch.store.clone(),
        Arc::new(SystemClock),
        LedgerConfig::default(),
    )
    .await?;
    let mut ids = Ids {
        seed: args.seed,
        next: 0,
    };
    let mut rng = rand::rngs::SmallRng::seed_from_u64(args.seed);
    let mut tally = Tally::default();

    // Phase 1: a chart of accounts — the company's bank account and its customers,
    // whose accounts may never be overdrawn.
    let bank = ids.account()?;
    let mut news = vec![NewAccount::new(bank, 100, AccountFlags::default())?];
    let customer_flags = AccountFlags {
        debits_must_not_exceed_credits: true,
        ..AccountFlags::default()
    };
    let mut customers = Vec::with_capacity(args.customers);
    for _ in 0..args.customers {
        let id = ids.account()?;
        customers.push(id);
        news.push(NewAccount::new(id, 200, customer_flags)?);
    }
    for chunk in news.chunks(ledger.config().accounts_per_call_max) {
        ledger.create_accounts(chunk).await?;
    }

    // Phase 2: fund every customer.
    let phase = Instant::now();
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
    println!(
        "  funded {} customers in {:.2}s",
        customers.len(),
        phase.elapsed().as_secs_f64()
    );

    // Phase 3: the channel layer in front of a core that loses answers (early,
    // so that the history read model has a modest outbox to catch up on).
    let channel_checks = if args.channel_transfers > 0 {
        super::demo_channel::run(
            &scratch.store,
            &customers,
            args.channel_transfers,
            args.seed,
        )
        .await?
        .checks
    } else {
        Vec::new()
    };

    // Phase 4: customers pay each other; some try to spend more than they have.
    let phase = Instant::now();
    let bar = progress::bar(args.payments as u64, "customer payments");
    let mut remaining = args.payments;
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
        tally.add(&results.concat());
        bar.inc(round as u64);
        remaining -= round;
    }
    bar.finish_and_clear();
    let payments_s = phase.elapsed().as_secs_f64();
    println!(
        "  {} payments in {:.2}s ({:.0}/s through the batching writer)",
        args.payments,
        payments_s,
        args.payments as f64 / payments_s.max(1e-9)
    );

    // Phase 5: holds — card-style authorisations posted in full, in part, voided,
    // or left to expire.
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
    println!(
        "  {} holds: posted, part-posted, voided, {expired} expired in {:.2}s",
        holds.len(),
        phase.elapsed().as_secs_f64()
    );

    // Phase 6: the safety rails — retries, changed fields, a late arrival and a
    // linked chain that must fail whole.
    let retry: Vec<TransferRequest> = funding_requests.iter().take(1_000).copied().collect();
    let retried = ledger.submit(retry).await?;
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

    // Phase 7: a business day of fees, settled through the bank simulator.
    let fee_checks = if args.loans > 0 {
        super::demo_fees::run(&ledger, args.loans, args.seed)
            .await?
            .checks
    } else {
        Vec::new()
    };

    // Report.
    let totals = ledger.totals().await?;
    let checks = vec![
        ("a resubmitted transfer id moves money once", all_exist),
        (
            "a changed request under a used id is refused",
            changed_result == TransferResult::ExistsWithDifferentFields,
        ),
        (
            "a request older than the late window is rejected",
            late_result == TransferResult::Late,
        ),
        (
            "a linked chain with a failing member applies nothing",
            chain_results
                == [
                    TransferResult::LinkedEventFailed,
                    TransferResult::ExceedsCredits,
                ],
        ),
    ];
    println!();
    println!("results by code:");
    for (code, count) in &tally.results {
        println!("  {code:<32} {count:>9}");
    }
    println!();
    println!(
        "ledger: {} accounts, posted debits {} = posted credits {}, pending {} / {}",
        totals.accounts,
        totals.debits_posted,
        totals.credits_posted,
        totals.debits_pending,
        totals.credits_pending
    );
    println!();
    println!("invariants:");
    let mut all_ok = true;
    let named = totals
        .invariants()
        .into_iter()
        .chain(checks)
        .map(|(name, holds)| (name.to_owned(), holds))
        .chain(channel_checks)
        .chain(fee_checks);
    for (name, holds) in named {
        all_ok &= holds;
        println!("  [{}] {name}", if holds { " ok " } else { "FAIL" });
    }
    println!();
    println!("finished in {:.2}s", started.elapsed().as_secs_f64());
    drop(ledger);
    let location = scratch.url.clone();
    scratch.finish(args.keep).await?;
    if args.keep {
        println!("kept the data at {}", store::redact(&location));
    }
    anyhow::ensure!(all_ok, "an invariant failed: see the report above");
    Ok(())
}
