//! Paying the remainder of a deposit out to the user's own bank account, in chunks
//! under the bank's per-call limit. Each chunk's `bank_tran_id` is derived from
//! (deposit, attempt, chunk). The calls happen outside any transaction (the
//! stage's prepare step); a chunk the bank confirmed is then recorded in the
//! stage's transaction and never sent again.
//!
//! The unknown-outcome discipline: this module asks the transfer result inquiry
//! before it sends a chunk (a crash may have left it sent), and after any answer
//! that leaves the outcome unknown; it never sends an id the bank may already have
//! without asking first, and never sends under a new id to get around an unknown.

use bank::providers::{BankingProvider, ProviderName};
use bank::types::{TransferInquiry, TransferOutcome, TransferRequest};
use bank::{AccountNumber, BankError, BankTranId, DepositId, HolderName, TranDate};
use money::{Krw, Timestamp};

use crate::books::{self, Movement};
use crate::claims::{self, Claim};
use crate::config::{ATTEMPTS_MAX, CHUNKS_PER_ATTEMPT, FailureKind};
use crate::db::{self, DepositRow};
use crate::prepared::{PaidChunk, Prepared};
use crate::{Payroll, PayrollError};

enum Chunk {
    Paid,
    Refused { kind: FailureKind, message: String },
}

/// How many calls a payout of `amount` takes.
pub(crate) fn chunk_count(amount: Krw, chunk_max: Krw) -> u64 {
    if !amount.is_positive() || !chunk_max.is_positive() {
        return 0;
    }
    let (amount, max) = (amount.get().unsigned_abs(), chunk_max.get().unsigned_abs());
    amount.div_ceil(max)
}

/// The chunk amounts: as many full chunks as fit, then the rest.
fn chunks(amount: Krw, chunk_max: Krw) -> Vec<Krw> {
    let count = chunk_count(amount, chunk_max);
    let mut left = amount.get();
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    while left > 0 && chunk_max.is_positive() {
        let this = left.min(chunk_max.get());
        out.push(Krw::new(this));
        left -= this;
    }
    out
}

/// The `bank_tran_id` of one chunk of one attempt of a deposit's payout.
pub(crate) fn tran_id(
    institution_code: &str,
    deposit: &DepositId,
    attempt: i64,
    chunk: usize,
) -> Result<BankTranId, PayrollError> {
    let attempt = u64::try_from(attempt).unwrap_or(u64::MAX);
    let chunk = u64::try_from(chunk).unwrap_or(u64::MAX);
    let sequence = u64::try_from(deposit.sequence()).unwrap_or(u64::MAX);
    if attempt >= u64::from(ATTEMPTS_MAX) || chunk >= u64::from(CHUNKS_PER_ATTEMPT) {
        return Err(PayrollError::InvalidConfig(format!(
            "attempt {attempt} or chunk {chunk} of {deposit} is over the bank_tran_id encoding"
        )));
    }
    let value = sequence
        .checked_mul(u64::from(ATTEMPTS_MAX))
        .and_then(|v| v.checked_add(attempt))
        .and_then(|v| v.checked_mul(u64::from(CHUNKS_PER_ATTEMPT)))
        .and_then(|v| v.checked_add(chunk))
        .ok_or_else(|| {
            PayrollError::InvalidConfig(format!("{deposit} does not fit a bank_tran_id"))
        })?;
    Ok(BankTranId::from_sequence(institution_code, value)?)
}

/// The payout stage's bank work, outside any transaction: pays every chunk of the
/// deposit's current attempt that is not recorded yet, stopping at the first
/// refusal, and once every chunk is paid books the payout in the ledger. The
/// stage's transaction records what this returns.
pub(crate) async fn prepare(
    payroll: &Payroll,
    deposit: &DepositRow,
    claim: &Claim,
) -> Result<Prepared, PayrollError> {
    let config = &payroll.inner.config;
    let store = payroll.store();
    let user = db::user(store, &deposit.user_id)
        .await?
        .ok_or_else(|| PayrollError::UnknownUser(deposit.user_id.clone()))?;
    let amount = Krw::new(deposit.payout_krw);
    let plan = chunks(amount, config.payout_chunk_max_krw);
    let recorded = db::paid_chunks(db::Reader::Pool(store), &deposit.deposit_id).await?;
    let provider_name = deposit
        .provider
        .as_deref()
        .and_then(ProviderName::parse)
        .ok_or_else(|| {
            PayrollError::Corrupt(format!("deposit {} has no provider", deposit.deposit_id))
        })?;
    let provider = payroll.inner.facade.provider(provider_name);
    let bank_deposit = DepositId::new(&deposit.deposit_id)?;
    let tran_date = TranDate::from_kst(Timestamp::from_unix_ms(deposit.attempt_at_ms));
    let to_account = AccountNumber::new(&user.payout_account)?;
    let holder_name = HolderName::new(&user.payout_holder)?;
    let mut paid = Vec::new();
    for (index, chunk_amount) in plan.iter().enumerate() {
        let chunk = i64::try_from(index).unwrap_or(i64::MAX);
        if let Some((_, amount_krw)) = recorded.iter().find(|(c, _)| *c == chunk) {
            if *amount_krw != chunk_amount.get() {
                return Err(PayrollError::Corrupt(format!(
                    "chunk {chunk} of {} was paid as {amount_krw}, planned {chunk_amount}",
                    deposit.deposit_id
                )));
            }
            continue;
        }
        let request = TransferRequest {
            bank_tran_id: tran_id(
                &config.institution_code,
                &bank_deposit,
                deposit.attempt,
                index,
            )?,
            tran_date,
            from_account: config.payout_from_account.clone(),
            to_account: to_account.clone(),
            holder_name: holder_name.clone(),
            amount_krw: *chunk_amount,
        };
        // Still ours? A process paused past its lease stops before the bank.
        let (now_ms, lease_ms) = (payroll.now().unix_ms(), config.claim_lease_ms);
        if !claims::renew(store, claim, now_ms, lease_ms).await? {
            return Err(stale(claim));
        }
        match settle_chunk(provider.as_ref(), &request).await? {
            Chunk::Paid => {
                metrics::counter!("payroll_payout_chunks_total", "outcome" => "paid").increment(1);
                paid.push(PaidChunk {
                    chunk,
                    bank_tran_id: request.bank_tran_id.to_string(),
                    amount_krw: chunk_amount.get(),
                });
            }
            Chunk::Refused { kind, message } => {
                metrics::counter!("payroll_payout_chunks_total", "outcome" => kind.as_str())
                    .increment(1);
                return Ok(Prepared::Payout {
                    attempt: deposit.attempt,
                    paid,
                    refused: Some((kind, message)),
                });
            }
        }
    }
    // Every chunk is at the user's bank: the ledger follows.
    if !claims::renew(store, claim, payroll.now().unix_ms(), config.claim_lease_ms).await? {
        return Err(stale(claim));
    }
    books::apply(
        &payroll.inner.ledger,
        &payroll.inner.config.ids,
        &deposit.deposit_id,
        "payout",
        Movement::Move {
            debit: books::wallet(&payroll.inner.config.ids, &deposit.user_id)?,
            credit: books::payout(&payroll.inner.config.ids)?,
            amount,
        },
        payroll.now(),
    )
    .await?;
    Ok(Prepared::Payout {
        attempt: deposit.attempt,
        paid,
        refused: None,
    })
}

fn stale(claim: &Claim) -> PayrollError {
    PayrollError::StaleClaim {
        deposit: claim.deposit_id.clone(),
        stage: claim.stage.as_str(),
        token: claim.token,
    }
}

/// Asks first, sends only what the bank has never seen, asks again on an unknown.
async fn settle_chunk(
    provider: &dyn BankingProvider,
    request: &TransferRequest,
) -> Result<Chunk, PayrollError> {
    let inquiry = TransferInquiry::of(bank::TransferKind::Deposit, request);
    if let Some(known) = ask(provider, &inquiry, request).await? {
        return Ok(known);
    }
    match provider.payout(request).await {
        Ok(receipt) if receipt.amount_krw == request.amount_krw => Ok(Chunk::Paid),
        Ok(receipt) => Err(PayrollError::Corrupt(format!(
            "the bank paid {} for {}, asked {}",
            receipt.amount_krw, request.bank_tran_id, request.amount_krw
        ))),
        Err(error) if error.is_outcome_unknown() => match ask(provider, &inquiry, request).await {
            Ok(Some(known)) => Ok(known),
            _ => Err(PayrollError::OutcomeUnknown {
                bank_tran_id: request.bank_tran_id.to_string(),
            }),
        },
        Err(error) => Ok(refusal(&error)
            .map(|(kind, message)| Chunk::Refused { kind, message })
            .ok_or(PayrollError::Bank(error))?),
    }
}

/// The bank's answer about a chunk, or `None` when it has never seen it.
async fn ask(
    provider: &dyn BankingProvider,
    inquiry: &TransferInquiry,
    request: &TransferRequest,
) -> Result<Option<Chunk>, PayrollError> {
    match provider.payout_result(inquiry).await {
        Ok(TransferOutcome::Succeeded { receipt }) if receipt.amount_krw == request.amount_krw => {
            Ok(Some(Chunk::Paid))
        }
        Ok(TransferOutcome::Succeeded { receipt }) => Err(PayrollError::Corrupt(format!(
            "the bank paid {} for {}, asked {}",
            receipt.amount_krw, request.bank_tran_id, request.amount_krw
        ))),
        Ok(TransferOutcome::Failed { code, message }) => {
            let kind = FailureKind::from_code(&code).unwrap_or(FailureKind::BadAmounts);
            Ok(Some(Chunk::Refused {
                kind,
                message: format!("{}: {code}: {message}", request.bank_tran_id),
            }))
        }
        Err(BankError::TransferNotFound) => Ok(None),
        Err(error) => Err(PayrollError::Bank(error)),
    }
}

/// A definite refusal that a person must act on; transient ones (429, maintenance)
/// are `None` and go back to the backbone's backoff.
fn refusal(error: &BankError) -> Option<(FailureKind, String)> {
    if let Some(kind) = FailureKind::from_bank(error) {
        return Some((kind, error.to_string()));
    }
    match error {
        BankError::OverPerCallLimit { .. }
        | BankError::AccountNotFound
        | BankError::BadAmount(_)
        | BankError::InvalidRequest(_)
        | BankError::BadTranId(_) => Some((FailureKind::BadAmounts, error.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_stay_under_the_limit_and_add_up() {
        let parts = chunks(Krw::new(250_000), Krw::new(100_000));
        assert_eq!(
            parts,
            vec![Krw::new(100_000), Krw::new(100_000), Krw::new(50_000)]
        );
        assert_eq!(chunk_count(Krw::new(250_000), Krw::new(100_000)), 3);
        assert!(chunks(Krw::ZERO, Krw::new(100_000)).is_empty());
    }

    #[test]
    fn tran_ids_differ_per_deposit_attempt_and_chunk() {
        let a = DepositId::from_sequence(7).unwrap();
        let b = DepositId::from_sequence(8).unwrap();
        let ids = [
            tran_id("P202500001", &a, 0, 0).unwrap(),
            tran_id("P202500001", &a, 0, 1).unwrap(),
            tran_id("P202500001", &a, 1, 0).unwrap(),
            tran_id("P202500001", &b, 0, 0).unwrap(),
        ];
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        assert!(tran_id("P202500001", &a, 64, 0).is_err());
    }
}
