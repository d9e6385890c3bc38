//! Accruals: a fee charged to a loan on a business day becomes a ledger transfer
//! from the fee source into the loan's fee account, coded by fee kind. Each accrual
//! is journaled in `fees` (day, loan, kind, amount) before the ledger applies it,
//! so Record can find a day's accruals and count only those the ledger applied.
//!
//! Accruing is idempotent by the accrual's id; this module never pays anything.

use bank::{AccountNumber, HolderName};
use ledger::{TransferRequest, TransferResult};
use money::{Krw, TransferId};
use serde::Serialize;

use crate::config::accounts;
use crate::db::{self, AccrualRow, LoanRow};
use crate::{BusinessDay, FeeKind, Fees, FeesError};

/// Loans registered per transaction and ledger call.
pub const LOANS_PER_CALL_MAX: usize = 4_096;
/// Accruals journaled per transaction and ledger call.
pub const ACCRUALS_PER_CALL_MAX: usize = 4_096;

/// A loan whose fees settle: its bank account pays the fees out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Loan {
    pub loan_id: u64,
    pub bank_account: AccountNumber,
    pub holder_name: HolderName,
}

/// One fee charged to one loan on one business day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Accrual {
    /// The ledger transfer's id, and so the accrual's idempotency key.
    pub id: TransferId,
    pub day: BusinessDay,
    pub loan_id: u64,
    pub kind: FeeKind,
    pub amount: Krw,
}

/// What [`Fees::accrue`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AccrueSummary {
    pub applied: usize,
    pub already_applied: usize,
    pub refused: usize,
}

impl Fees {
    /// Registers loans and opens their fee accounts (idempotent).
    pub async fn register_loans(&self, loans: &[Loan]) -> Result<(), FeesError> {
        for page in loans.chunks(LOANS_PER_CALL_MAX) {
            let accounts = page
                .iter()
                .map(|loan| accounts::loan_account(&self.config.ids, loan.loan_id))
                .collect::<Result<Vec<_>, _>>()?;
            accounts::check_opened(&self.ledger.create_accounts(&accounts).await?)?;
            let mut tx = self.store.begin().await?;
            for loan in page {
                db::insert_loan(
                    &mut tx,
                    &LoanRow {
                        loan_id: loan.loan_id,
                        bank_account: loan.bank_account.to_string(),
                        holder_name: loan.holder_name.to_string(),
                    },
                )
                .await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// Journals and applies accruals. The same accrual twice is applied once; an id
    /// reused with other fields is refused as invalid input.
    pub async fn accrue(&self, accruals: &[Accrual]) -> Result<AccrueSummary, FeesError> {
        let mut summary = AccrueSummary::default();
        let source = accounts::fee_source(&self.config.ids)?;
        for page in accruals.chunks(ACCRUALS_PER_CALL_MAX) {
            let now = self.now();
            let mut tx = self.store.begin().await?;
            let mut requests = Vec::with_capacity(page.len());
            for accrual in page {
                if !accrual.amount.is_positive() {
                    return Err(FeesError::Invalid(format!(
                        "accrual {} has a non-positive amount",
                        accrual.id
                    )));
                }
                let row = AccrualRow {
                    transfer_id: accrual.id.to_string(),
                    day: accrual.day.to_string(),
                    loan_id: accrual.loan_id,
                    kind: accrual.kind.code(),
                    amount_krw: accrual.amount.get(),
                };
                if !db::insert_accrual(&mut tx, &row, now.unix_ms()).await? {
                    let existing = db::accrual(&self.store, &row.transfer_id).await;
                    if !matches!(existing, Ok(Some(ref e)) if *e == row) {
                        tx.rollback().await?;
                        return Err(FeesError::Invalid(format!(
                            "accrual id {} was used before with other fields",
                            accrual.id
                        )));
                    }
                }
                requests.push(
                    TransferRequest::single(
                        accrual.id,
                        source,
                        accounts::loan_fees(&self.config.ids, accrual.loan_id)?,
                        accrual.amount,
                        now,
                    )
                    .map_err(|e| FeesError::Invalid(e.to_string()))?
                    .with_code(accrual.kind.code())
                    .with_user_data(accrual.day.as_yyyymmdd()),
                );
            }
            tx.commit().await?;
            for result in self.ledger.submit(requests).await? {
                match result {
                    TransferResult::Ok => summary.applied += 1,
                    TransferResult::Exists => summary.already_applied += 1,
                    other => {
                        tracing::warn!(result = other.code(), "the ledger refused an accrual");
                        summary.refused += 1;
                    }
                }
            }
        }
        metrics::counter!("fees_accruals_total").increment(summary.applied as u64);
        Ok(summary)
    }
}
