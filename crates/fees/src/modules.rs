//! The four modules of a business day — Record, Pay, Verify, Withdraw — and the
//! frame they share: a try-lock per (module, day) that answers `busy` at once, a
//! precondition that turns work already done into `already_done`, and a run record
//! (module, day, trigger, started, finished, outcome, counts) for every call.
//!
//! Only [`Fees::pay`] creates payout chunks, and only [`Fees::withdraw`] creates
//! withdraw chunks. A chunk is stored with its `bank_tran_id` and held in the
//! ledger before it is sent; a failed chunk is retried only under a new id, after
//! its old id was proven failed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use money::Krw;
use serde::Serialize;
use store::LockGuard;
use tracing::Instrument;

use crate::chunking::{self, Purpose};
use crate::db::{self, ChunkRow, DayRow, LoanRow};
use crate::sending::{Progress, Tally, is_permanent};
use crate::{BusinessDay, FeeKind, Fees, FeesError};

/// How long Verify waits for Pay's lock before it answers `busy`.
const VERIFY_WAITS_FOR_PAY_MS: u64 = 2_000;
/// How often it tries meanwhile.
const VERIFY_PAY_LOCK_POLL_MS: u64 = 25;

/// One of the four modules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Module {
    Record,
    Pay,
    Verify,
    Withdraw,
}

impl Module {
    pub const ALL: [Module; 4] = [
        Module::Record,
        Module::Pay,
        Module::Verify,
        Module::Withdraw,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Module::Record => "record",
            Module::Pay => "pay",
            Module::Verify => "verify",
            Module::Withdraw => "withdraw",
        }
    }

    fn lock_name(self, day: BusinessDay) -> String {
        format!("fees:{}:{day}", self.name())
    }
}

/// Who asked for a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Scheduler,
    Operator,
}

impl Trigger {
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Scheduler => "scheduler",
            Trigger::Operator => "operator",
        }
    }
}

/// How a module call ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "detail")]
pub enum Outcome {
    /// It did its work (possibly leaving some for a later run, see the counts).
    Done,
    /// Another caller holds this module's lock for this day.
    Busy,
    /// Its work was already done; nothing changed.
    AlreadyDone,
    /// Its precondition does not hold yet (e.g. Pay before Record).
    NotReady(String),
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Busy => "busy",
            Outcome::AlreadyDone => "already_done",
            Outcome::NotReady(_) => "not_ready",
        }
    }
}

/// What a module call reports, and what its run record holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RunReport {
    pub module: Module,
    pub day: BusinessDay,
    pub trigger: Trigger,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub counts: BTreeMap<&'static str, i64>,
}

/// Where a day stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DayState {
    /// Accruals are collected into items; payouts may be under way.
    Recorded,
    /// Every item is paid (or blocked for an operator) and every chunk confirmed.
    Verified,
    /// The day's paid total has moved to the corporate account.
    Withdrawn,
}

impl DayState {
    fn parse(text: &str) -> Result<DayState, FeesError> {
        match text {
            "recorded" => Ok(DayState::Recorded),
            "verified" => Ok(DayState::Verified),
            "withdrawn" => Ok(DayState::Withdrawn),
            other => Err(FeesError::Corrupt(format!("day state {other:?}"))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            DayState::Recorded => "recorded",
            DayState::Verified => "verified",
            DayState::Withdrawn => "withdrawn",
        }
    }

    /// The one transition function of a day: forward, one step at a time.
    fn advance(self, to: DayState) -> Result<DayState, FeesError> {
        match (self, to) {
            (DayState::Recorded, DayState::Verified)
            | (DayState::Verified, DayState::Withdrawn) => Ok(to),
            _ => Err(FeesError::Invariant(format!(
                "a day cannot move from {} to {}",
                self.name(),
                to.name()
            ))),
        }
    }
}

/// Where a chunk stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkState {
    /// Stored with its id and held in the ledger; never sent.
    Reserved,
    /// Handed to the bank; no answer recorded (a stopped payout leaves these).
    Sent,
    /// The bank may or may not have moved money; the result inquiry will tell.
    Unknown,
    Succeeded,
    Failed,
}

/// An item the bank refuses for now: an operator must look.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct BlockedItem {
    pub loan_id: u64,
    pub kind: FeeKind,
    pub amount_krw: Krw,
    pub unpaid_krw: Krw,
    pub reason: String,
}

/// A day as an operator sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct DayStatus {
    pub day: BusinessDay,
    pub state: DayState,
    pub items: i64,
    pub total_krw: Krw,
    pub paid_krw: Krw,
    pub items_paid: i64,
    pub items_blocked: i64,
    pub chunks: BTreeMap<&'static str, i64>,
    pub withdrawn_krw: Krw,
    pub blocked: Vec<BlockedItem>,
}

/// Where each (item, chunk number) stands, from its attempts.
#[derive(Debug)]
struct ChunkPlan {
    /// Chunks to send now: reserved ones left over, plus new attempts.
    to_send: Vec<ChunkRow>,
    /// New attempts to store (also in `to_send`).
    new: Vec<ChunkRow>,
    /// Chunk numbers whose latest attempt is sent or unknown.
    open: i64,
    /// Reserved chunks waiting out a transient answer's backoff, and the earliest
    /// time one of them may be sent.
    waiting: i64,
    waiting_until_ms: Option<i64>,
    /// Items fully paid.
    items_paid: i64,
    paid_krw: Krw,
    blocked: Vec<BlockedItem>,
}

/// Groups attempts by (loan, kind, chunk number) for one purpose.
fn latest_attempts(chunks: &[ChunkRow]) -> HashMap<(u64, u16, i64), &ChunkRow> {
    let mut latest: HashMap<(u64, u16, i64), &ChunkRow> = HashMap::new();
    for chunk in chunks {
        let key = (chunk.loan_id, chunk.kind, chunk.chunk_no);
        match latest.get(&key) {
            Some(seen) if seen.attempt >= chunk.attempt => {}
            _ => {
                latest.insert(key, chunk);
            }
        }
    }
    latest
}

fn chunk_state(text: &str) -> Result<ChunkState, FeesError> {
    match text {
        "reserved" => Ok(ChunkState::Reserved),
        "sent" => Ok(ChunkState::Sent),
        "unknown" => Ok(ChunkState::Unknown),
        "succeeded" => Ok(ChunkState::Succeeded),
        "failed" => Ok(ChunkState::Failed),
        other => Err(FeesError::Corrupt(format!("chunk state {other:?}"))),
    }
}

impl Fees {
    /// Whether a chunk that failed with `reason` on its `attempt`-th id is blocked
    /// for an operator rather than retried. "Not found at the bank" (a send lost to
    /// a crash or the network) has a larger allowance than a refusal.
    fn gives_up(&self, reason: &str, attempt: i64) -> bool {
        let attempts_max = if reason == "not_found_at_bank" {
            self.config.chunk_attempts_not_found_max
        } else {
            self.config.chunk_attempts_max
        };
        is_permanent(reason) || attempt >= attempts_max
    }

    async fn lock(&self, module: Module, day: BusinessDay) -> Result<Option<LockGuard>, FeesError> {
        Ok(self
            .store
            .try_lock(
                &module.lock_name(day),
                self.now().unix_ms(),
                self.config.lock_lease_ms,
            )
            .await?)
    }

    /// Verify borrows Pay's lock. A Pay that only looks (nothing to send) holds it
    /// for a few queries, and every scheduler tick of every process starts one,
    /// so Verify waits that long rather than answer `busy` to each tick and never
    /// verify; a Pay that is really sending holds it longer than the wait, and
    /// Verify comes back on a later tick.
    async fn lock_pay_for_verify(&self, day: BusinessDay) -> Result<Option<LockGuard>, FeesError> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(VERIFY_WAITS_FOR_PAY_MS);
        loop {
            if let Some(guard) = self.lock(Module::Pay, day).await? {
                return Ok(Some(guard));
            }
            if tokio::time::Instant::now() >= deadline || self.is_stopping() {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(VERIFY_PAY_LOCK_POLL_MS)).await;
        }
    }

    /// Records the run and builds its report.
    async fn finish(
        &self,
        module: Module,
        day: BusinessDay,
        trigger: Trigger,
        started_at_ms: i64,
        outcome: Outcome,
        counts: BTreeMap<&'static str, i64>,
    ) -> Result<RunReport, FeesError> {
        let report = RunReport {
            module,
            day,
            trigger,
            outcome,
            started_at_ms,
            finished_at_ms: self.now().unix_ms(),
            counts,
        };
        let detail = match &report.outcome {
            Outcome::NotReady(why) => why.clone(),
            _ => String::new(),
        };
        db::insert_run(
            &self.store,
            &db::RunRow {
                id: 0,
                module: module.name().to_owned(),
                day: day.to_string(),
                trigger: trigger.name().to_owned(),
                started_at_ms,
                finished_at_ms: report.finished_at_ms,
                outcome: report.outcome.name().to_owned(),
                detail,
                counts: serde_json::to_string(&report.counts).unwrap_or_default(),
            },
        )
        .await?;
        metrics::counter!("fees_runs_total", "module" => module.name(), "outcome" => report.outcome.name())
            .increment(1);
        tracing::info!(module = module.name(), %day, trigger = trigger.name(), outcome = report.outcome.name(), counts = ?report.counts, "fee module run");
        Ok(report)
    }

    /// The frame every module shares: lock, body, release, run record.
    async fn run_module(
        &self,
        module: Module,
        day: BusinessDay,
        trigger: Trigger,
        progress: Option<Progress<'_>>,
    ) -> Result<RunReport, FeesError> {
        let span = tracing::info_span!("fees_module", module = module.name(), %day);
        self.run_module_in_span(module, day, trigger, progress)
            .instrument(span)
            .await
    }

    async fn run_module_in_span(
        &self,
        module: Module,
        day: BusinessDay,
        trigger: Trigger,
        progress: Option<Progress<'_>>,
    ) -> Result<RunReport, FeesError> {
        let started_at_ms = self.now().unix_ms();
        let Some(mut guard) = self.lock(module, day).await? else {
            return self
                .finish(
                    module,
                    day,
                    trigger,
                    started_at_ms,
                    Outcome::Busy,
                    BTreeMap::new(),
                )
                .await;
        };
        let mut counts = BTreeMap::new();
        let body = match module {
            Module::Record => self.record_locked(day, &mut counts).await,
            Module::Pay => {
                self.pay_locked(day, &mut guard, &mut counts, progress)
                    .await
            }
            Module::Verify => self.verify_locked(day, &mut guard, &mut counts).await,
            Module::Withdraw => self.withdraw_locked(day, &mut guard, &mut counts).await,
        };
        if let Err(error) = guard.release().await {
            tracing::warn!(%error, "could not release a fee module lock; its lease will lapse");
        }
        let outcome = match body {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::error!(module = module.name(), %day, error = %error, "fee module failed");
                let mut failed = BTreeMap::new();
                failed.insert("error", 1);
                let _ = self
                    .finish(
                        module,
                        day,
                        trigger,
                        started_at_ms,
                        Outcome::NotReady(format!("error: {error}")),
                        failed,
                    )
                    .await;
                return Err(error);
            }
        };
        self.finish(module, day, trigger, started_at_ms, outcome, counts)
            .await
    }

    /// Record: collects day D's accruals into settlement items per (loan, kind).
    /// Precondition: D is closed in Seoul and not recorded yet.
    pub async fn record(&self, day: BusinessDay, trigger: Trigger) -> Result<RunReport, FeesError> {
        self.run_module(Module::Record, day, trigger, None).await
    }

    /// Pay: pays every unpaid item of D to the settlement account in chunks.
    pub async fn pay(&self, day: BusinessDay, trigger: Trigger) -> Result<RunReport, FeesError> {
        self.run_module(Module::Pay, day, trigger, None).await
    }

    /// Pay, calling `progress` with the number of chunks answered so far.
    pub async fn pay_with_progress(
        &self,
        day: BusinessDay,
        trigger: Trigger,
        progress: Progress<'_>,
    ) -> Result<RunReport, FeesError> {
        self.run_module(Module::Pay, day, trigger, Some(progress))
            .await
    }

    /// Verify: settles unknown outcomes by inquiry and marks D verified when every
    /// item is paid (or blocked for an operator) and every chunk confirmed.
    pub async fn verify(&self, day: BusinessDay, trigger: Trigger) -> Result<RunReport, FeesError> {
        self.run_module(Module::Verify, day, trigger, None).await
    }

    /// Withdraw: moves D's paid total from the settlement account to the corporate
    /// account, once.
    pub async fn withdraw(
        &self,
        day: BusinessDay,
        trigger: Trigger,
    ) -> Result<RunReport, FeesError> {
        self.run_module(Module::Withdraw, day, trigger, None).await
    }

    async fn record_locked(
        &self,
        day: BusinessDay,
        counts: &mut BTreeMap<&'static str, i64>,
    ) -> Result<Outcome, FeesError> {
        let key = day.to_string();
        if db::day(&self.store, &key).await?.is_some() {
            return Ok(Outcome::AlreadyDone);
        }
        if !day.is_closed_at(self.now()) {
            return Ok(Outcome::NotReady(format!("{day} is not closed yet")));
        }
        let limit = self.config.day_accruals_max;
        let accruals = db::accruals_of_day(&self.store, &key, limit.saturating_add(1)).await?;
        if accruals.len() > limit {
            return Err(FeesError::Invalid(format!(
                "{day} has more than {limit} accruals"
            )));
        }
        // Only accruals the ledger applied count: the journal row is written first,
        // so a crash can leave one the ledger never saw.
        let mut applied = std::collections::HashSet::new();
        for page in accruals.chunks(self.ledger.config().lookup_ids_max) {
            let ids = page
                .iter()
                .map(|a| money::TransferId::parse(&a.transfer_id))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| FeesError::Corrupt(e.to_string()))?;
            for transfer in self.ledger.lookup_transfers(&ids).await? {
                applied.insert(transfer.id.to_string());
            }
        }
        let mut items: BTreeMap<(u64, u16), Krw> = BTreeMap::new();
        let mut unapplied = 0;
        for accrual in &accruals {
            if !applied.contains(&accrual.transfer_id) {
                unapplied += 1;
                continue;
            }
            let amount = items
                .entry((accrual.loan_id, accrual.kind))
                .or_insert(Krw::ZERO);
            *amount = amount.checked_add(Krw::new(accrual.amount_krw))?;
        }
        let total = Krw::checked_sum(items.values().copied())?;
        let mut tx = self.store.begin().await?;
        let item_count = i64::try_from(items.len()).unwrap_or(i64::MAX);
        if !db::insert_day(&mut tx, &key, item_count, total.get(), self.now().unix_ms()).await? {
            tx.rollback().await?;
            return Ok(Outcome::AlreadyDone);
        }
        for ((loan_id, kind), amount) in &items {
            db::insert_item(&mut tx, &key, *loan_id, *kind, amount.get()).await?;
        }
        tx.commit().await?;
        counts.insert("items", item_count);
        counts.insert("total_krw", total.get());
        counts.insert(
            "accruals",
            i64::try_from(accruals.len()).unwrap_or(i64::MAX),
        );
        counts.insert("accruals_unapplied", unapplied);
        Ok(Outcome::Done)
    }

    /// Works out, for one day's payout items, which chunks to send and what stands.
    fn plan_payouts(
        &self,
        day: BusinessDay,
        items: &[db::ItemRow],
        chunks: &[ChunkRow],
    ) -> Result<ChunkPlan, FeesError> {
        let latest = latest_attempts(chunks);
        let now_ms = self.now().unix_ms();
        let tran_date = bank::TranDate::from_kst(self.now()).to_string();
        let mut plan = ChunkPlan {
            to_send: Vec::new(),
            new: Vec::new(),
            open: 0,
            waiting: 0,
            waiting_until_ms: None,
            items_paid: 0,
            paid_krw: Krw::ZERO,
            blocked: Vec::new(),
        };
        for item in items {
            let kind = FeeKind::from_code(item.kind)
                .ok_or_else(|| FeesError::Corrupt(format!("fee kind code {}", item.kind)))?;
            let amounts =
                chunking::split(Krw::new(item.amount_krw), self.config.payout_chunk_krw_max)?;
            let mut paid = Krw::ZERO;
            let mut blocked_reason = None;
            for (chunk_no, amount) in amounts.iter().enumerate() {
                let chunk_no = i64::try_from(chunk_no).unwrap_or(i64::MAX);
                let next_attempt = |attempt: i64| ChunkRow {
                    bank_tran_id: String::new(),
                    purpose: Purpose::Payout.as_str().to_owned(),
                    day: day.to_string(),
                    loan_id: item.loan_id,
                    kind: item.kind,
                    chunk_no,
                    attempt,
                    amount_krw: amount.get(),
                    tran_date: tran_date.clone(),
                    state: "reserved".to_owned(),
                    reason: None,
                    sent_at_ms: None,
                    updated_at_ms: 0,
                    transient_answers: 0,
                    retry_at_ms: None,
                };
                match latest.get(&(item.loan_id, item.kind, chunk_no)) {
                    None => plan.new.push(next_attempt(1)),
                    Some(chunk) => match chunk_state(&chunk.state)? {
                        ChunkState::Reserved => match chunk.retry_at_ms {
                            Some(at_ms) if at_ms > now_ms => {
                                plan.waiting += 1;
                                plan.waiting_until_ms =
                                    Some(plan.waiting_until_ms.map_or(at_ms, |m| m.min(at_ms)));
                            }
                            _ => plan.to_send.push((*chunk).clone()),
                        },
                        ChunkState::Sent | ChunkState::Unknown => plan.open += 1,
                        ChunkState::Succeeded => paid = paid.checked_add(*amount)?,
                        ChunkState::Failed => {
                            let reason = chunk.reason.clone().unwrap_or_default();
                            if self.gives_up(&reason, chunk.attempt) {
                                blocked_reason = Some(reason);
                            } else {
                                plan.new.push(next_attempt(chunk.attempt + 1));
                            }
                        }
                    },
                }
            }
            plan.paid_krw = plan.paid_krw.checked_add(paid)?;
            if paid.get() == item.amount_krw {
                plan.items_paid += 1;
            }
            if let Some(reason) = blocked_reason {
                plan.blocked.push(BlockedItem {
                    loan_id: item.loan_id,
                    kind,
                    amount_krw: Krw::new(item.amount_krw),
                    unpaid_krw: Krw::new(item.amount_krw).checked_sub(paid)?,
                    reason,
                });
            }
        }
        Ok(plan)
    }

    /// Stores new chunk attempts with fresh ids from the day's sequence, in one
    /// transaction.
    async fn store_new_chunks(
        &self,
        day: BusinessDay,
        purpose: Purpose,
        mut new: Vec<ChunkRow>,
    ) -> Result<Vec<ChunkRow>, FeesError> {
        if new.is_empty() {
            return Ok(new);
        }
        let key = day.to_string();
        let now_ms = self.now().unix_ms();
        let count = i64::try_from(new.len()).unwrap_or(i64::MAX);
        let mut tx = self.store.begin().await?;
        let first = db::take_sequences(&mut tx, &key, purpose == Purpose::Withdraw, count).await?;
        for (offset, chunk) in new.iter_mut().enumerate() {
            let sequence = first + i64::try_from(offset).unwrap_or(i64::MAX);
            chunk.bank_tran_id =
                chunking::bank_tran_id(&self.config.institution_code, purpose, day, sequence)?
                    .to_string();
            chunk.updated_at_ms = now_ms;
            db::insert_chunk(&mut tx, chunk, now_ms).await?;
        }
        tx.commit().await?;
        Ok(new)
    }

    async fn loans_of(&self, items: &[db::ItemRow]) -> Result<HashMap<u64, LoanRow>, FeesError> {
        let mut ids: Vec<u64> = items.iter().map(|i| i.loan_id).collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(db::loans(&self.store, &ids)
            .await?
            .into_iter()
            .map(|loan| (loan.loan_id, loan))
            .collect())
    }

    async fn pay_locked(
        &self,
        day: BusinessDay,
        guard: &mut LockGuard,
        counts: &mut BTreeMap<&'static str, i64>,
        progress: Option<Progress<'_>>,
    ) -> Result<Outcome, FeesError> {
        let key = day.to_string();
        let Some(day_row) = db::day(&self.store, &key).await? else {
            return Ok(Outcome::NotReady(format!("{day} is not recorded")));
        };
        if DayState::parse(&day_row.state)? != DayState::Recorded {
            return Ok(Outcome::AlreadyDone);
        }
        let items = db::items(&self.store, &key).await?;
        let chunks = db::chunks(&self.store, &key, Purpose::Payout.as_str()).await?;
        let plan = self.plan_payouts(day, &items, &chunks)?;
        counts.insert("chunks_awaiting_verify", plan.open);
        counts.insert("chunks_waiting_for_bank", plan.waiting);
        counts.insert(
            "items_blocked",
            i64::try_from(plan.blocked.len()).unwrap_or(0),
        );
        if plan.to_send.is_empty() && plan.new.is_empty() {
            if let Some(until_ms) = plan.waiting_until_ms {
                return Ok(Outcome::NotReady(format!(
                    "{} chunks wait for the bank (the first until {until_ms} ms)",
                    plan.waiting
                )));
            }
            return Ok(Outcome::AlreadyDone);
        }
        if let Some(until_ms) = self.bank_paused_until() {
            return Ok(Outcome::NotReady(format!(
                "sending to the bank is paused until {until_ms} ms (it kept answering 'not \
                 processed')"
            )));
        }
        let created = self
            .store_new_chunks(day, Purpose::Payout, plan.new)
            .await?;
        counts.insert("chunks_created", i64::try_from(created.len()).unwrap_or(0));
        let mut to_send = plan.to_send;
        to_send.extend(created);
        let held = self.place_holds(to_send).await?;
        let loans = self.loans_of(&items).await?;
        let tally = self.send_chunks(held, &loans, guard, progress).await?;
        add_tally(counts, &tally);
        counts.insert(
            "bank_breaker_opened_total",
            i64::try_from(self.breaker.opened_total()).unwrap_or(i64::MAX),
        );
        if self.is_stopping() {
            counts.insert("stopped_after_window", 1);
        }
        Ok(Outcome::Done)
    }

    async fn verify_locked(
        &self,
        day: BusinessDay,
        guard: &mut LockGuard,
        counts: &mut BTreeMap<&'static str, i64>,
    ) -> Result<Outcome, FeesError> {
        let key = day.to_string();
        let Some(day_row) = db::day(&self.store, &key).await? else {
            return Ok(Outcome::NotReady(format!("{day} is not recorded")));
        };
        if DayState::parse(&day_row.state)? != DayState::Recorded {
            return Ok(Outcome::AlreadyDone);
        }
        // A payout in progress owns its chunks' answers; asking about them now
        // could call a request still on its way "not found".
        let Some(pay_guard) = self.lock_pay_for_verify(day).await? else {
            return Ok(Outcome::Busy);
        };
        let outcome = self
            .verify_with_payouts_stopped(day, &day_row, guard, counts)
            .await;
        if let Err(error) = pay_guard.release().await {
            tracing::warn!(%error, "could not release the payout lock Verify borrowed");
        }
        outcome
    }

    async fn verify_with_payouts_stopped(
        &self,
        day: BusinessDay,
        day_row: &DayRow,
        guard: &mut LockGuard,
        counts: &mut BTreeMap<&'static str, i64>,
    ) -> Result<Outcome, FeesError> {
        let key = day.to_string();
        let chunks = db::chunks(&self.store, &key, Purpose::Payout.as_str()).await?;
        let open: Vec<ChunkRow> = chunks
            .iter()
            .filter(|c| c.state == "sent" || c.state == "unknown")
            .cloned()
            .collect();
        let tally = self.inquire_chunks(open, guard).await?;
        add_tally(counts, &tally);
        let items = db::items(&self.store, &key).await?;
        let chunks = db::chunks(&self.store, &key, Purpose::Payout.as_str()).await?;
        let plan = self.plan_payouts(day, &items, &chunks)?;
        let blocked = i64::try_from(plan.blocked.len()).unwrap_or(i64::MAX);
        counts.insert("items_paid", plan.items_paid);
        counts.insert("items_blocked", blocked);
        counts.insert("chunks_open", plan.open);
        counts.insert(
            "chunks_back_to_pay",
            i64::try_from(plan.new.len() + plan.to_send.len()).unwrap_or(0),
        );
        counts.insert("chunks_waiting_for_bank", plan.waiting);
        let settled = plan.open == 0
            && plan.waiting == 0
            && plan.new.is_empty()
            && plan.to_send.is_empty()
            && plan.items_paid + blocked == day_row.items;
        if !settled {
            return Ok(if tally.calls > 0 {
                Outcome::Done
            } else {
                Outcome::NotReady("items are still being paid".into())
            });
        }
        DayState::Recorded.advance(DayState::Verified)?;
        let mut tx = self.store.begin().await?;
        let moved = db::advance_day(
            &mut tx,
            &key,
            DayState::Recorded.name(),
            DayState::Verified.name(),
            plan.paid_krw.get(),
            blocked,
            self.now().unix_ms(),
        )
        .await?;
        tx.commit().await?;
        if !moved {
            return Ok(Outcome::AlreadyDone);
        }
        counts.insert("paid_krw", plan.paid_krw.get());
        Ok(Outcome::Done)
    }

    async fn withdraw_locked(
        &self,
        day: BusinessDay,
        guard: &mut LockGuard,
        counts: &mut BTreeMap<&'static str, i64>,
    ) -> Result<Outcome, FeesError> {
        let key = day.to_string();
        let Some(day_row) = db::day(&self.store, &key).await? else {
            return Ok(Outcome::NotReady(format!("{day} is not recorded")));
        };
        match DayState::parse(&day_row.state)? {
            DayState::Recorded => return Ok(Outcome::NotReady(format!("{day} is not verified"))),
            DayState::Withdrawn => return Ok(Outcome::AlreadyDone),
            DayState::Verified => {}
        }
        let paid = Krw::new(day_row.paid_krw);
        let mut pending_work = false;
        if paid.is_positive() {
            let chunks = db::chunks(&self.store, &key, Purpose::Withdraw.as_str()).await?;
            // First settle what an earlier run left unknown.
            let open: Vec<ChunkRow> = chunks
                .iter()
                .filter(|c| c.state == "sent" || c.state == "unknown")
                .cloned()
                .collect();
            let inquired = self.inquire_chunks(open, guard).await?;
            add_tally(counts, &inquired);
            let chunks = db::chunks(&self.store, &key, Purpose::Withdraw.as_str()).await?;
            let latest = latest_attempts(&chunks);
            let amounts = chunking::split(paid, self.config.withdraw_chunk_krw_max)?;
            let tran_date = bank::TranDate::from_kst(self.now()).to_string();
            let mut to_send = Vec::new();
            let mut new = Vec::new();
            for (chunk_no, amount) in amounts.iter().enumerate() {
                let chunk_no = i64::try_from(chunk_no).unwrap_or(i64::MAX);
                let attempt = |attempt: i64| ChunkRow {
                    bank_tran_id: String::new(),
                    purpose: Purpose::Withdraw.as_str().to_owned(),
                    day: key.clone(),
                    loan_id: 0,
                    kind: 0,
                    chunk_no,
                    attempt,
                    amount_krw: amount.get(),
                    tran_date: tran_date.clone(),
                    state: "reserved".to_owned(),
                    reason: None,
                    sent_at_ms: None,
                    updated_at_ms: 0,
                    transient_answers: 0,
                    retry_at_ms: None,
                };
                match latest.get(&(0, 0, chunk_no)) {
                    None => new.push(attempt(1)),
                    Some(chunk) => match chunk_state(&chunk.state)? {
                        ChunkState::Reserved
                            if chunk
                                .retry_at_ms
                                .is_some_and(|at_ms| at_ms > self.now().unix_ms()) =>
                        {
                            pending_work = true;
                        }
                        ChunkState::Reserved => to_send.push((*chunk).clone()),
                        ChunkState::Sent | ChunkState::Unknown => pending_work = true,
                        ChunkState::Succeeded => {}
                        ChunkState::Failed => {
                            let reason = chunk.reason.clone().unwrap_or_default();
                            if self.gives_up(&reason, chunk.attempt) {
                                return Ok(Outcome::NotReady(format!(
                                    "the withdraw of {day} is blocked: {reason}"
                                )));
                            }
                            new.push(attempt(chunk.attempt + 1));
                        }
                    },
                }
            }
            let created = self.store_new_chunks(day, Purpose::Withdraw, new).await?;
            to_send.extend(created);
            if !to_send.is_empty() && self.bank_paused_until().is_some() {
                pending_work = true;
            } else if !to_send.is_empty() {
                let held = self.place_holds(to_send).await?;
                let sent = self.send_chunks(held, &HashMap::new(), guard, None).await?;
                add_tally(counts, &sent);
            }
            let chunks = db::chunks(&self.store, &key, Purpose::Withdraw.as_str()).await?;
            let latest = latest_attempts(&chunks);
            let done = (0..amounts.len()).all(|chunk_no| {
                let chunk_no = i64::try_from(chunk_no).unwrap_or(i64::MAX);
                latest
                    .get(&(0, 0, chunk_no))
                    .is_some_and(|c| c.state == "succeeded")
            });
            if !done {
                pending_work = true;
            }
        }
        if pending_work {
            return Ok(Outcome::NotReady(
                "the withdraw's outcome is not confirmed yet".into(),
            ));
        }
        DayState::Verified.advance(DayState::Withdrawn)?;
        let mut tx = self.store.begin().await?;
        let moved = db::advance_day(
            &mut tx,
            &key,
            DayState::Verified.name(),
            DayState::Withdrawn.name(),
            day_row.paid_krw,
            day_row.blocked_items,
            self.now().unix_ms(),
        )
        .await?;
        tx.commit().await?;
        if !moved {
            return Ok(Outcome::AlreadyDone);
        }
        counts.insert("withdrawn_krw", paid.get());
        Ok(Outcome::Done)
    }

    /// How many payout chunks a Pay of D would send now (for progress bars).
    pub async fn chunks_to_send(&self, day: BusinessDay) -> Result<u64, FeesError> {
        let key = day.to_string();
        let items = db::items(&self.store, &key).await?;
        let chunks = db::chunks(&self.store, &key, Purpose::Payout.as_str()).await?;
        let plan = self.plan_payouts(day, &items, &chunks)?;
        Ok(u64::try_from(plan.new.len() + plan.to_send.len()).unwrap_or(u64::MAX))
    }

    /// Per-day, per-stage status for operators.
    pub async fn status(&self, day: BusinessDay) -> Result<Option<DayStatus>, FeesError> {
        let key = day.to_string();
        let Some(row) = db::day(&self.store, &key).await? else {
            return Ok(None);
        };
        let items = db::items(&self.store, &key).await?;
        let payouts = db::chunks(&self.store, &key, Purpose::Payout.as_str()).await?;
        let plan = self.plan_payouts(day, &items, &payouts)?;
        let mut chunks = BTreeMap::new();
        for chunk in &payouts {
            let state: &'static str = match chunk_state(&chunk.state)? {
                ChunkState::Reserved => "reserved",
                ChunkState::Sent => "sent",
                ChunkState::Unknown => "unknown",
                ChunkState::Succeeded => "succeeded",
                ChunkState::Failed => "failed",
            };
            *chunks.entry(state).or_insert(0) += 1;
        }
        let withdraws = db::chunks(&self.store, &key, Purpose::Withdraw.as_str()).await?;
        let withdrawn = Krw::checked_sum(
            withdraws
                .iter()
                .filter(|c| c.state == "succeeded")
                .map(|c| Krw::new(c.amount_krw)),
        )?;
        Ok(Some(DayStatus {
            day,
            state: DayState::parse(&row.state)?,
            items: row.items,
            total_krw: Krw::new(row.total_krw),
            paid_krw: plan.paid_krw,
            items_paid: plan.items_paid,
            items_blocked: i64::try_from(plan.blocked.len()).unwrap_or(i64::MAX),
            chunks,
            withdrawn_krw: withdrawn,
            blocked: plan.blocked,
        }))
    }

    /// Every recorded day (or only those not yet withdrawn), oldest first.
    pub async fn days(&self, include_withdrawn: bool) -> Result<Vec<BusinessDay>, FeesError> {
        db::days(&self.store, include_withdrawn, DAYS_LISTED_MAX)
            .await?
            .into_iter()
            .map(|row| Ok(BusinessDay::parse(&row.day)?))
            .collect()
    }

    /// Days with accruals that are not recorded yet, oldest first.
    pub async fn unrecorded_days(&self) -> Result<Vec<BusinessDay>, FeesError> {
        db::unrecorded_days(&self.store, DAYS_LISTED_MAX)
            .await?
            .into_iter()
            .map(|day| Ok(BusinessDay::parse(&day)?))
            .collect()
    }

    /// The latest runs of D, newest first, as JSON values.
    pub async fn runs(
        &self,
        day: BusinessDay,
        limit: i64,
    ) -> Result<Vec<serde_json::Value>, FeesError> {
        Ok(db::runs(&self.store, &day.to_string(), limit.clamp(1, RUNS_LISTED_MAX))
            .await?
            .into_iter()
            .map(|run| {
                serde_json::json!({
                    "id": run.id,
                    "module": run.module,
                    "trigger": run.trigger,
                    "started_at_ms": run.started_at_ms,
                    "finished_at_ms": run.finished_at_ms,
                    "outcome": run.outcome,
                    "detail": run.detail,
                    "counts": serde_json::from_str::<serde_json::Value>(&run.counts).unwrap_or_default(),
                })
            })
            .collect())
    }
}

/// Days one listing returns.
pub const DAYS_LISTED_MAX: i64 = 366;
/// Runs one listing returns.
pub const RUNS_LISTED_MAX: i64 = 1_000;

fn add_tally(counts: &mut BTreeMap<&'static str, i64>, tally: &Tally) {
    for (name, value) in [
        ("calls", tally.calls),
        ("succeeded", tally.succeeded),
        ("failed", tally.failed),
        ("unknown", tally.unknown),
        ("not_yet_found", tally.not_yet_found),
        ("transient", tally.transient),
    ] {
        *counts.entry(name).or_insert(0) += value;
    }
}
