//! What a fee settlement deployment is configured with: the house bank accounts,
//! the bank's per-call limits, and every limit on fees' own work (`*_max`).

use bank::{AccountNumber, HolderName};
use money::{DerivedIds, Krw};

use crate::FeesError;

/// Limits and accounts of one deployment.
#[derive(Clone, Debug)]
pub struct FeesConfig {
    /// The 10-character institution code that starts every `bank_tran_id`.
    pub institution_code: String,
    /// Where every payout chunk lands, and its holder's name as the bank has it.
    pub settlement_account: AccountNumber,
    pub settlement_holder: HolderName,
    /// Where each day's total is withdrawn to.
    pub corporate_account: AccountNumber,
    pub corporate_holder: HolderName,
    /// The bank's per-call limit on deposit transfers (payout chunks).
    pub payout_chunk_krw_max: Krw,
    /// The bank's per-call limit on withdraw transfers.
    pub withdraw_chunk_krw_max: Krw,
    /// Bank calls in flight at once.
    pub bank_calls_in_flight_max: usize,
    /// Bank calls started per second; `None`: only the concurrency cap applies.
    pub bank_calls_per_s_max: Option<u32>,
    /// A module's lock lease on SQLite; renewed while it works.
    pub lock_lease_ms: i64,
    /// A result inquiry answering "not found" proves failure only once the chunk's
    /// outcome has been unknown this long (a slow request might still land
    /// before). `None`: the connector's own ([`bank::BankApi::not_found_grace_ms`]).
    pub not_found_grace_ms: Option<i64>,
    /// Attempts (distinct `bank_tran_id`s) per chunk refused for a reason that is
    /// not final before the item is blocked. Transient answers (429, maintenance,
    /// busy, nothing sent) never count: the same id waits and is sent again.
    pub chunk_attempts_max: i64,
    /// Attempts per chunk when the earlier ones were never found at the bank.
    pub chunk_attempts_not_found_max: i64,
    /// After a transient answer a chunk waits this long before it is sent again,
    /// doubling per answer up to `transient_backoff_ms_max`.
    pub transient_backoff_ms_min: i64,
    pub transient_backoff_ms_max: i64,
    /// Transient answers in a row that pause all sending to this bank…
    pub breaker_transients_to_open: u32,
    /// …for this long; then sending resumes by itself.
    pub breaker_open_ms: i64,
    /// Results written per transaction while a payout runs.
    pub results_batch_max: usize,
    /// Holds, posts or voids per ledger submission.
    pub ledger_batch_transfers_max: usize,
    /// Accruals per business day Record accepts.
    pub day_accruals_max: usize,
    /// Rows per page when reading a bank statement.
    pub statement_pages_max: usize,
    /// Keys every id fees derives (accounts, holds, posts, voids) with the
    /// installation's secret, so no client can claim one first.
    pub ids: DerivedIds,
}

impl FeesConfig {
    /// A deployment against the simulator's conventions and the open-banking limits.
    pub fn new(
        settlement_account: AccountNumber,
        settlement_holder: HolderName,
        corporate_account: AccountNumber,
        corporate_holder: HolderName,
        ids: DerivedIds,
    ) -> FeesConfig {
        FeesConfig {
            institution_code: "F202600001".to_owned(),
            settlement_account,
            settlement_holder,
            corporate_account,
            corporate_holder,
            payout_chunk_krw_max: Krw::new(100_000),
            withdraw_chunk_krw_max: Krw::new(10_000_000),
            bank_calls_in_flight_max: 50,
            bank_calls_per_s_max: None,
            lock_lease_ms: 10 * 60 * 1_000,
            not_found_grace_ms: None,
            chunk_attempts_max: 5,
            chunk_attempts_not_found_max: 50,
            transient_backoff_ms_min: 1_000,
            transient_backoff_ms_max: 2 * 3_600_000,
            breaker_transients_to_open: 16,
            breaker_open_ms: 30_000,
            results_batch_max: 256,
            ledger_batch_transfers_max: 4_096,
            day_accruals_max: 1_000_000,
            statement_pages_max: 100_000,
            ids,
        }
    }

    pub(crate) fn check(&self) -> Result<(), FeesError> {
        let code_ok = self.institution_code.len() == 10
            && self
                .institution_code
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !code_ok {
            return Err(FeesError::Invalid(format!(
                "institution code {:?} must be 10 upper-case letters or digits",
                self.institution_code
            )));
        }
        if !self.payout_chunk_krw_max.is_positive() || !self.withdraw_chunk_krw_max.is_positive() {
            return Err(FeesError::Invalid(
                "per-call limits must be positive".into(),
            ));
        }
        if self.bank_calls_in_flight_max == 0
            || self.results_batch_max == 0
            || self.ledger_batch_transfers_max == 0
            || self.chunk_attempts_max < 1
            || self.chunk_attempts_not_found_max < 1
            || self.bank_calls_per_s_max == Some(0)
            || self.transient_backoff_ms_min < 0
            || self.transient_backoff_ms_max < self.transient_backoff_ms_min
            || self.breaker_transients_to_open == 0
            || self.breaker_open_ms < 0
        {
            return Err(FeesError::Invalid(
                "concurrency, batch sizes, attempts and rate must be positive".into(),
            ));
        }
        if self.settlement_account == self.corporate_account {
            return Err(FeesError::Invalid(
                "the settlement and corporate accounts must differ".into(),
            ));
        }
        Ok(())
    }
}

/// The ledger accounts and transfer ids fees uses. Every id is derived from what it
/// stands for, so a retry after a crash names the same thing, and keyed by the
/// installation's secret ([`DerivedIds`]), so a client cannot compute one and claim
/// it first (the names — institution code, day, sequence — are public).
pub mod accounts {
    use bank::BankTranId;
    use ledger::{AccountFlags, CreateAccountResult, Ledger, NewAccount};
    use money::{AccountId, DerivedIds, TransferId};
    use uuid::Uuid;

    use crate::FeesError;

    /// The domain of every id fees derives.
    const DOMAIN: &str = "fees";

    /// Account codes in the ledger's chart of accounts.
    pub const CODE_FEE_SOURCE: u16 = 7000;
    pub const CODE_LOAN_FEES: u16 = 7001;
    pub const CODE_SETTLEMENT: u16 = 7002;
    pub const CODE_CORPORATE: u16 = 7003;
    /// Transfer code of a withdraw hold, post or void.
    pub const CODE_WITHDRAW: u16 = 7110;

    fn derived(ids: &DerivedIds, text: &str) -> Uuid {
        ids.uuid(DOMAIN, text)
    }

    fn account(ids: &DerivedIds, text: &str) -> Result<AccountId, FeesError> {
        AccountId::from_uuid(derived(ids, text)).map_err(|e| FeesError::Invalid(e.to_string()))
    }

    fn transfer(ids: &DerivedIds, text: &str) -> Result<TransferId, FeesError> {
        TransferId::from_uuid(derived(ids, text)).map_err(|e| FeesError::Invalid(e.to_string()))
    }

    /// Where accrued fees come from: borrowers' charges, before they are settled.
    pub fn fee_source(ids: &DerivedIds) -> Result<AccountId, FeesError> {
        account(ids, "account/fee-source")
    }

    /// The fee account of one loan: credited by accruals, debited by payouts; it is
    /// never overdrawn, so more than was accrued can never be paid.
    pub fn loan_fees(ids: &DerivedIds, loan_id: u64) -> Result<AccountId, FeesError> {
        account(ids, &format!("account/loan/{loan_id}"))
    }

    /// The settlement account's book: credited by payouts, debited by withdraws.
    pub fn settlement(ids: &DerivedIds) -> Result<AccountId, FeesError> {
        account(ids, "account/settlement")
    }

    pub fn corporate(ids: &DerivedIds) -> Result<AccountId, FeesError> {
        account(ids, "account/corporate")
    }

    /// The accrual an import journals for (day, loan, kind): one per key, so
    /// importing the same line twice names the same ledger transfer.
    pub fn imported_accrual(
        ids: &DerivedIds,
        day: crate::BusinessDay,
        loan_id: u64,
        kind: crate::FeeKind,
    ) -> Result<TransferId, FeesError> {
        transfer(ids, &format!("accrual/{day}/{loan_id}/{kind}"))
    }

    /// The hold that reserves a chunk before it is sent.
    pub fn hold(ids: &DerivedIds, id: &BankTranId) -> Result<TransferId, FeesError> {
        transfer(ids, &format!("hold/{id}"))
    }

    /// The post of a chunk the bank confirmed.
    pub fn post(ids: &DerivedIds, id: &BankTranId) -> Result<TransferId, FeesError> {
        transfer(ids, &format!("post/{id}"))
    }

    /// The void of a chunk the bank proved failed.
    pub fn void(ids: &DerivedIds, id: &BankTranId) -> Result<TransferId, FeesError> {
        transfer(ids, &format!("void/{id}"))
    }

    fn never_overdrawn() -> AccountFlags {
        AccountFlags {
            debits_must_not_exceed_credits: true,
            ..AccountFlags::default()
        }
    }

    pub(crate) fn loan_account(ids: &DerivedIds, loan_id: u64) -> Result<NewAccount, FeesError> {
        NewAccount::new(loan_fees(ids, loan_id)?, CODE_LOAN_FEES, never_overdrawn())
            .map(|a| a.with_user_data(loan_id))
            .map_err(|e| FeesError::Invalid(e.to_string()))
    }

    /// Opens the fee source, settlement and corporate accounts (idempotent).
    pub(crate) async fn open_house_accounts(
        ledger: &Ledger,
        ids: &DerivedIds,
    ) -> Result<(), FeesError> {
        let invalid = |e: ledger::InvalidAccount| FeesError::Invalid(e.to_string());
        let wanted = [
            NewAccount::new(fee_source(ids)?, CODE_FEE_SOURCE, AccountFlags::default())
                .map_err(invalid)?,
            NewAccount::new(settlement(ids)?, CODE_SETTLEMENT, never_overdrawn())
                .map_err(invalid)?,
            NewAccount::new(corporate(ids)?, CODE_CORPORATE, AccountFlags::default())
                .map_err(invalid)?,
        ];
        check_opened(&ledger.create_accounts(&wanted).await?)
    }

    pub(crate) fn check_opened(results: &[CreateAccountResult]) -> Result<(), FeesError> {
        for result in results {
            if !matches!(
                result,
                CreateAccountResult::Ok | CreateAccountResult::Exists
            ) {
                return Err(FeesError::LedgerRefused {
                    what: "opening a fee account".into(),
                    result: result.code(),
                });
            }
        }
        Ok(())
    }
}
