//! The one place fees talks to the bank about chunks: it sends them (or asks the
//! result inquiry about them) in parallel up to the configured concurrency and
//! rate, and settles each answer as it arrives — post the hold for a confirmed
//! success, void it for a proven failure, leave an unknown outcome for Verify, and
//! put a chunk the bank did not process (transient) back to wait, same id, hold
//! kept, with capped backoff; the per-bank breaker pauses sending in an outage.
//!
//! Answers are written in small batches (group commit) by the same future that
//! drives the calls, so dropping that future — a crash — stops both at once and
//! leaves every chunk in a state a rerun resolves. This module never invents a
//! `bank_tran_id` and never sends a chunk that is not stored and held.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use bank::types::{TransferInquiry, TransferOutcome, TransferRequest as BankRequest};
use bank::{AccountNumber, BankError, BankTranId, ErrorClass, HolderName, TranDate};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use ledger::{TransferRequest, TransferResult};
use money::{Krw, TransferId};
use store::LockGuard;
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;

use crate::accounts;
use crate::db::{self, ChunkRow, LoanRow};
use crate::{Fees, FeesError};

/// What the bank said about one chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Money moved, exactly once.
    Succeeded,
    /// Proven failed; the code says why.
    Failed(String),
    /// The bank may or may not have moved money; only the inquiry can tell.
    Unknown(String),
    /// Not processed (429, maintenance, busy, nothing sent, or the breaker is
    /// open): the same id is sent again after a backoff; never blocks an item.
    Transient(String),
    /// The inquiry has not found it, but it is too soon to call that a failure.
    NotYetFound,
}

/// Failure codes that retrying cannot fix: the item is blocked for an operator.
pub(crate) fn is_permanent(reason: &str) -> bool {
    matches!(
        reason,
        "account_frozen"
            | "holder_name_mismatch"
            | "account_not_found"
            | "over_per_call_limit"
            | "bad_bank_tran_id"
            | "bad_amount"
            | "invalid_request"
    ) || reason.starts_with("ledger_")
}

/// Counts of one pipeline run, by verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub calls: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub unknown: i64,
    pub not_yet_found: i64,
    pub transient: i64,
}

/// Spaces call starts so no more than the configured rate begin per second.
struct Pacer {
    period: Option<Duration>,
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(per_s_max: Option<u32>) -> Pacer {
        Pacer {
            period: per_s_max.map(|per_s| Duration::from_secs(1) / per_s.max(1)),
            next: Mutex::new(Instant::now()),
        }
    }

    async fn wait(&self) {
        let Some(period) = self.period else {
            return;
        };
        let at = {
            let mut next = self.next.lock().await;
            let at = (*next).max(Instant::now());
            *next = at + period;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// Calls back with how many chunks have been answered so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Send + Sync);

impl Fees {
    /// The bank request a chunk stands for.
    pub(crate) fn bank_request(
        &self,
        chunk: &ChunkRow,
        loans: &HashMap<u64, LoanRow>,
    ) -> Result<BankRequest, FeesError> {
        let config = &self.config;
        let (from_account, to_account, holder_name) = if chunk.purpose == "withdraw" {
            (
                config.settlement_account.clone(),
                config.corporate_account.clone(),
                config.settlement_holder.clone(),
            )
        } else {
            let loan = loans.get(&chunk.loan_id).ok_or_else(|| {
                FeesError::Corrupt(format!("chunk {} names unknown loan", chunk.bank_tran_id))
            })?;
            (
                AccountNumber::new(&loan.bank_account)?,
                config.settlement_account.clone(),
                config.settlement_holder.clone(),
            )
        };
        Ok(BankRequest {
            bank_tran_id: BankTranId::new(&chunk.bank_tran_id)?,
            tran_date: TranDate::parse(&chunk.tran_date)?,
            from_account,
            to_account,
            holder_name: HolderName::new(holder_name.as_str())?,
            amount_krw: Krw::positive(chunk.amount_krw)?,
        })
    }

    fn chunk_code(chunk: &ChunkRow) -> u16 {
        if chunk.purpose == "withdraw" {
            accounts::CODE_WITHDRAW
        } else {
            chunk.kind
        }
    }

    /// Reserves each chunk in the ledger with a hold (idempotent by the chunk's
    /// derived id). Returns the chunks that are held; a chunk the ledger refused is
    /// marked failed with the ledger's reason and is never sent.
    pub(crate) async fn place_holds(
        &self,
        chunks: Vec<ChunkRow>,
    ) -> Result<Vec<ChunkRow>, FeesError> {
        let now = self.now();
        let settlement = accounts::settlement(&self.config.ids)?;
        let corporate = accounts::corporate(&self.config.ids)?;
        let mut held = Vec::with_capacity(chunks.len());
        let mut refused = Vec::new();
        for page in chunks.chunks(self.config.ledger_batch_transfers_max) {
            let mut requests = Vec::with_capacity(page.len());
            for chunk in page {
                let id = BankTranId::new(&chunk.bank_tran_id)?;
                let (debit, credit) = if chunk.purpose == "withdraw" {
                    (settlement, corporate)
                } else {
                    (
                        accounts::loan_fees(&self.config.ids, chunk.loan_id)?,
                        settlement,
                    )
                };
                let request = TransferRequest::pending(
                    accounts::hold(&self.config.ids, &id)?,
                    debit,
                    credit,
                    Krw::positive(chunk.amount_krw)?,
                    0,
                    now,
                )
                .map_err(|e| FeesError::Invalid(e.to_string()))?
                .with_code(Fees::chunk_code(chunk))
                .with_user_data(u64::try_from(chunk.chunk_no).unwrap_or(0));
                requests.push(request);
            }
            let ids: Vec<TransferId> = requests.iter().map(|r| r.id()).collect();
            let results = self.ledger.submit(requests).await?;
            for ((chunk, result), id) in page.iter().zip(results).zip(ids) {
                match result {
                    TransferResult::Ok | TransferResult::Exists => held.push(chunk.clone()),
                    TransferResult::ExistsWithDifferentFields => {
                        return Err(Fees::derived_id_taken(id, &chunk.bank_tran_id));
                    }
                    other => {
                        tracing::warn!(
                            bank_tran_id = chunk.bank_tran_id,
                            result = other.code(),
                            "ledger refused a chunk's hold"
                        );
                        refused.push((chunk.clone(), format!("ledger_{}", other.code())));
                    }
                }
            }
        }
        if !refused.is_empty() {
            let mut tx = self.store.begin().await?;
            for (chunk, reason) in &refused {
                db::move_chunk(
                    &mut tx,
                    &chunk.bank_tran_id,
                    &["reserved"],
                    "failed",
                    Some(reason),
                    now.unix_ms(),
                )
                .await?;
            }
            tx.commit().await?;
        }
        Ok(held)
    }

    /// A hold's derived id names another transfer: stop loudly (error log, metric,
    /// an error for the caller) without failing the chunk, so no item is blocked and
    /// the day cannot be verified, withdrawn or reported as agreeing meanwhile.
    fn derived_id_taken(id: TransferId, bank_tran_id: &str) -> FeesError {
        tracing::error!(
            transfer_id = %id,
            bank_tran_id,
            "a derived hold id already names another transfer; fee settlement stops"
        );
        metrics::counter!("fees_derived_id_collisions_total").increment(1);
        FeesError::DerivedIdTaken {
            id: id.to_string(),
            bank_tran_id: bank_tran_id.to_owned(),
        }
    }

    /// Marks chunks as sent, in one transaction, before any of them is sent: a
    /// crash from here on leaves them for the result inquiry, never for a resend.
    async fn mark_sent(&self, ids: &[String]) -> Result<(), FeesError> {
        let now_ms = self.now().unix_ms();
        let mut tx = self.store.begin().await?;
        for id in ids {
            if !db::move_chunk(&mut tx, id, &["reserved"], "sent", None, now_ms).await? {
                tx.rollback().await?;
                return Err(FeesError::Invariant(format!(
                    "chunk {id} left 'reserved' while its payout held the lock"
                )));
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sends held chunks (marking them `sent` window by window just before) and
    /// settles each answer.
    pub(crate) async fn send_chunks(
        &self,
        chunks: Vec<ChunkRow>,
        loans: &HashMap<u64, LoanRow>,
        guard: &mut LockGuard,
        progress: Option<Progress<'_>>,
    ) -> Result<Tally, FeesError> {
        let mut prepared = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let request = self.bank_request(&chunk, loans)?;
            prepared.push((chunk, request));
        }
        let fees = self.clone();
        self.pipeline(
            prepared,
            Some(&|(chunk, _): &(ChunkRow, BankRequest)| chunk.bank_tran_id.clone()),
            move |(chunk, request): (ChunkRow, BankRequest)| {
                let fees = fees.clone();
                async move {
                    // While the bank is paused nothing is sent; the chunk waits.
                    if fees.breaker.open_until(fees.now().unix_ms()).is_some() {
                        return (chunk, Verdict::Transient("circuit_open".into()));
                    }
                    let bank = &fees.bank;
                    let answer = if chunk.purpose == "withdraw" {
                        bank.withdraw_transfer(&request).await
                    } else {
                        bank.deposit_transfer(&request).await
                    };
                    // Refused credentials are not processed either: the chunk waits
                    // unblocked and the breaker pauses the bank (the connector logged it).
                    let transient = answer
                        .as_ref()
                        .is_err_and(|e| e.is_transient() || e.is_configuration());
                    fees.breaker.record(transient, fees.now().unix_ms());
                    let verdict = match answer {
                        Ok(receipt) if receipt_matches(&receipt, &request) => Verdict::Succeeded,
                        Ok(receipt) => {
                            tracing::error!(
                                ?receipt,
                                "the bank's receipt does not match the chunk"
                            );
                            Verdict::Unknown("receipt_mismatch".into())
                        }
                        Err(error) => match error.class() {
                            ErrorClass::Unknown => Verdict::Unknown(error.code().to_owned()),
                            ErrorClass::Transient | ErrorClass::Configuration => {
                                Verdict::Transient(error.code().to_owned())
                            }
                            ErrorClass::Refused => Verdict::Failed(error.code().to_owned()),
                        },
                    };
                    (chunk, verdict)
                }
            },
            guard,
            progress,
        )
        .await
    }

    /// The loans the payout chunks among `chunks` draw from.
    async fn loans_of_chunks(
        &self,
        chunks: &[ChunkRow],
    ) -> Result<HashMap<u64, LoanRow>, FeesError> {
        let mut ids: Vec<u64> = chunks
            .iter()
            .filter(|c| c.purpose != "withdraw")
            .map(|c| c.loan_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(db::loans(&self.store, &ids)
            .await?
            .into_iter()
            .map(|loan| (loan.loan_id, loan))
            .collect())
    }

    /// Asks the result inquiry about chunks whose outcome is unknown, and settles
    /// what it proves.
    pub(crate) async fn inquire_chunks(
        &self,
        chunks: Vec<ChunkRow>,
        guard: &mut LockGuard,
    ) -> Result<Tally, FeesError> {
        let bank = self.bank.clone();
        let grace_ms = self.not_found_grace_ms();
        let now_ms = self.now().unix_ms();
        // An inquiry names its original transfer (its leg and amount): the KFTC
        // result inquiry needs them, and every wire checks the answer against them.
        let loans = self.loans_of_chunks(&chunks).await?;
        let mut asked = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let request = self.bank_request(&chunk, &loans)?;
            let kind = if chunk.purpose == "withdraw" {
                bank::TransferKind::Withdraw
            } else {
                bank::TransferKind::Deposit
            };
            asked.push((chunk, TransferInquiry::of(kind, &request)));
        }
        self.pipeline(
            asked,
            None,
            move |(chunk, inquiry): (ChunkRow, TransferInquiry)| {
                let bank = bank.clone();
                async move {
                    let verdict = inquire(bank.as_ref(), &chunk, &inquiry, now_ms, grace_ms).await;
                    (chunk, verdict)
                }
            },
            guard,
            None,
        )
        .await
    }

    /// Runs `call` on every work item, at most `bank_calls_in_flight_max` at once and
    /// `bank_calls_per_s_max` started per second, and settles answers in batches
    /// as they arrive. With `sent_id`, each window of items is marked `sent` in one
    /// transaction just before it is dispatched, so a crash orphans at most a
    /// window plus the calls in flight.
    async fn pipeline<W, F, Fut>(
        &self,
        work: Vec<W>,
        sent_id: Option<&(dyn Fn(&W) -> String + Sync)>,
        call: F,
        guard: &mut LockGuard,
        progress: Option<Progress<'_>>,
    ) -> Result<Tally, FeesError>
    where
        F: Fn(W) -> Fut,
        Fut: Future<Output = (ChunkRow, Verdict)>,
    {
        let in_flight_max = self.config.bank_calls_in_flight_max;
        let batch_max = self.config.results_batch_max;
        let (answers, mut arrived) = mpsc::channel::<(ChunkRow, Verdict)>(batch_max);
        let pacer = Pacer::new(self.config.bank_calls_per_s_max);
        let producer = async {
            let pacer = &pacer;
            let call = &call;
            let mut queued = work.into_iter();
            let mut ready: VecDeque<W> = VecDeque::with_capacity(in_flight_max);
            let mut in_flight = FuturesUnordered::new();
            loop {
                while in_flight.len() < in_flight_max {
                    if ready.is_empty() {
                        if self.is_stopping() {
                            // Shutdown: no new window; the rest stays for the next run.
                            break;
                        }
                        let window: Vec<W> = queued.by_ref().take(in_flight_max).collect();
                        if window.is_empty() {
                            break;
                        }
                        if let Some(sent_id) = sent_id {
                            let ids: Vec<String> = window.iter().map(sent_id).collect();
                            let fees = self.clone();
                            tokio::spawn(async move { fees.mark_sent(&ids).await })
                                .await
                                .map_err(|e| {
                                    FeesError::Invariant(format!("a sent-marker died: {e}"))
                                })??;
                        }
                        ready.extend(window);
                    }
                    let Some(item) = ready.pop_front() else { break };
                    in_flight.push(async move {
                        pacer.wait().await;
                        call(item).await
                    });
                }
                let Some(answer) = in_flight.next().await else {
                    break;
                };
                if answers.send(answer).await.is_err() {
                    break;
                }
            }
            drop(answers);
            Ok::<(), FeesError>(())
        };
        let consumer = async {
            let mut tally = Tally::default();
            let mut batch = Vec::with_capacity(batch_max);
            loop {
                if arrived.recv_many(&mut batch, batch_max).await == 0 {
                    break;
                }
                let taken = std::mem::take(&mut batch);
                // A batch write, once started, finishes even if this payout is
                // dropped (a shutdown, a cancelled request): it runs on its own task.
                let fees = self.clone();
                let settled = tokio::spawn(async move { fees.settle_answers(taken).await })
                    .await
                    .map_err(|e| FeesError::Invariant(format!("a result writer died: {e}")))??;
                tally.calls += settled.calls;
                tally.succeeded += settled.succeeded;
                tally.failed += settled.failed;
                tally.unknown += settled.unknown;
                tally.not_yet_found += settled.not_yet_found;
                tally.transient += settled.transient;
                let now_ms = self.now().unix_ms();
                if !guard.renew(now_ms, self.config.lock_lease_ms).await? {
                    return Err(FeesError::LockLost(guard.name().to_owned()));
                }
                if let Some(progress) = progress {
                    progress(u64::try_from(tally.calls).unwrap_or(0));
                }
            }
            Ok::<Tally, FeesError>(tally)
        };
        let (produced, tally) = futures_util::future::join(producer, consumer).await;
        produced?;
        tally
    }

    /// Writes a batch of answers: ledger posts and voids first (idempotent by
    /// derived ids), then the chunks' new states in one transaction.
    pub(crate) async fn settle_answers(
        &self,
        answers: Vec<(ChunkRow, Verdict)>,
    ) -> Result<Tally, FeesError> {
        let now = self.now();
        let mut tally = Tally::default();
        let mut requests = Vec::new();
        let mut kinds = Vec::new();
        for (chunk, verdict) in &answers {
            let id = BankTranId::new(&chunk.bank_tran_id)?;
            let code = Fees::chunk_code(chunk);
            match verdict {
                Verdict::Succeeded => {
                    requests.push(
                        TransferRequest::post(
                            accounts::post(&self.config.ids, &id)?,
                            accounts::hold(&self.config.ids, &id)?,
                            None,
                            now,
                        )
                        .map_err(|e| FeesError::Invalid(e.to_string()))?
                        .with_code(code),
                    );
                    kinds.push((true, chunk.bank_tran_id.clone()));
                }
                Verdict::Failed(_) => {
                    requests.push(
                        TransferRequest::void(
                            accounts::void(&self.config.ids, &id)?,
                            accounts::hold(&self.config.ids, &id)?,
                            now,
                        )
                        .with_code(code),
                    );
                    kinds.push((false, chunk.bank_tran_id.clone()));
                }
                Verdict::Unknown(_) | Verdict::NotYetFound | Verdict::Transient(_) => {}
            }
        }
        let page_max = self.config.ledger_batch_transfers_max;
        let mut offset = 0;
        while offset < requests.len() {
            let end = (offset + page_max).min(requests.len());
            let results = self.ledger.submit(requests[offset..end].to_vec()).await?;
            for ((posting, id), result) in kinds[offset..end].iter().zip(results) {
                let fine = matches!(
                    (posting, result),
                    (_, TransferResult::Ok | TransferResult::Exists)
                        | (true, TransferResult::PendingTransferAlreadyPosted)
                        | (false, TransferResult::PendingTransferAlreadyVoided)
                );
                if !fine {
                    return Err(FeesError::Invariant(format!(
                        "chunk {id}: the ledger answered {} to a {}",
                        result.code(),
                        if *posting { "post" } else { "void" }
                    )));
                }
            }
            offset = end;
        }
        let mut tx = self.store.begin().await?;
        for (chunk, verdict) in &answers {
            tally.calls += 1;
            let id = chunk.bank_tran_id.as_str();
            let open = ["reserved", "sent", "unknown"];
            match verdict {
                Verdict::Succeeded => {
                    tally.succeeded += 1;
                    db::move_chunk(&mut tx, id, &open, "succeeded", None, now.unix_ms()).await?;
                }
                Verdict::Failed(reason) => {
                    tally.failed += 1;
                    db::move_chunk(&mut tx, id, &open, "failed", Some(reason), now.unix_ms())
                        .await?;
                }
                Verdict::Unknown(reason) => {
                    tally.unknown += 1;
                    db::move_chunk(
                        &mut tx,
                        id,
                        &["sent"],
                        "unknown",
                        Some(reason),
                        now.unix_ms(),
                    )
                    .await?;
                }
                Verdict::NotYetFound => tally.not_yet_found += 1,
                Verdict::Transient(reason) => {
                    tally.transient += 1;
                    let retry_at_ms = self.retry_at_ms(chunk, now.unix_ms());
                    db::requeue_chunk(&mut tx, id, reason, retry_at_ms, now.unix_ms()).await?;
                }
            }
        }
        tx.commit().await?;
        metrics::counter!("fees_chunks_settled_total", "verdict" => "succeeded")
            .increment(u64::try_from(tally.succeeded).unwrap_or(0));
        metrics::counter!("fees_chunks_settled_total", "verdict" => "failed")
            .increment(u64::try_from(tally.failed).unwrap_or(0));
        metrics::counter!("fees_chunks_settled_total", "verdict" => "unknown")
            .increment(u64::try_from(tally.unknown).unwrap_or(0));
        metrics::counter!("fees_chunks_settled_total", "verdict" => "transient")
            .increment(u64::try_from(tally.transient).unwrap_or(0));
        Ok(tally)
    }

    /// When a chunk the bank just did not process may be sent again: its own
    /// capped backoff, and never while the breaker is open.
    fn retry_at_ms(&self, chunk: &ChunkRow, now_ms: i64) -> i64 {
        let backoff = crate::breaker::backoff_ms(
            chunk.transient_answers.saturating_add(1),
            self.config.transient_backoff_ms_min,
            self.config.transient_backoff_ms_max,
        );
        let own = now_ms.saturating_add(backoff);
        self.breaker
            .open_until(now_ms)
            .map_or(own, |until| own.max(until))
    }

    /// `Some(until_ms)` while sending to the bank is paused.
    pub(crate) fn bank_paused_until(&self) -> Option<i64> {
        self.breaker.open_until(self.now().unix_ms())
    }
}

fn receipt_matches(receipt: &bank::types::TransferReceipt, request: &BankRequest) -> bool {
    receipt.bank_tran_id == request.bank_tran_id
        && receipt.amount_krw == request.amount_krw
        && receipt.from_account == request.from_account
        && receipt.to_account == request.to_account
}

/// One result inquiry. "Not found" proves failure only after the grace period,
/// counted from the moment the chunk's outcome became unknown.
async fn inquire(
    bank: &dyn bank::BankApi,
    chunk: &ChunkRow,
    inquiry: &TransferInquiry,
    now_ms: i64,
    grace_ms: i64,
) -> Verdict {
    match bank.transfer_result(inquiry).await {
        Ok(TransferOutcome::Succeeded { receipt }) => {
            if receipt.amount_krw.get() == chunk.amount_krw {
                Verdict::Succeeded
            } else {
                tracing::error!(
                    ?receipt,
                    chunk = chunk.bank_tran_id,
                    "inquiry receipt amount differs"
                );
                Verdict::Unknown("receipt_mismatch".into())
            }
        }
        Ok(TransferOutcome::Failed { code, .. }) => Verdict::Failed(code),
        // A chunk still marked `sent` was orphaned by a payout that stopped (the
        // inquiry runs only when no payout holds the lock): its request may still
        // be landing, so the grace period starts now, when it becomes `unknown`.
        Err(BankError::TransferNotFound) if chunk.state == "sent" => {
            Verdict::Unknown("orphaned_by_stopped_payout".into())
        }
        Err(BankError::TransferNotFound) => {
            if now_ms.saturating_sub(chunk.updated_at_ms) >= grace_ms {
                Verdict::Failed("not_found_at_bank".into())
            } else {
                Verdict::NotYetFound
            }
        }
        Err(error) => Verdict::Unknown(error.code().to_owned()),
    }
}
