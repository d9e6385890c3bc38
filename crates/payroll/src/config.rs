//! Payroll configuration: throttles, limits, the payout source account, the alert
//! webhook and what to do per kind of business failure. Validated once in
//! [`PayrollConfig::validate`]; the rest of the crate trusts it.

use bank::{AccountNumber, HolderName};
use money::{DerivedIds, Krw};
use serde::{Deserialize, Serialize};

use crate::PayrollError;

/// What a business failure leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The deposit waits at its stage until an operator calls `retry`.
    WaitForRetry,
    /// The completed stages are compensated and the deposit is `rolled_back`.
    RollBack,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::WaitForRetry => "wait_for_retry",
            OnFailure::RollBack => "roll_back",
        }
    }
}

/// A failure no retry can fix by itself: a person has to act.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    AccountFrozen,
    HolderNameChanged,
    InsufficientFunds,
    /// Another provider already started this deposit (the duplicate guard).
    AlreadySettled,
    /// The provider's split does not fit the deposit, or the payout needs more
    /// chunks than allowed.
    BadAmounts,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::AccountFrozen => "account_frozen",
            FailureKind::HolderNameChanged => "holder_name_changed",
            FailureKind::InsufficientFunds => "insufficient_funds",
            FailureKind::AlreadySettled => "already_settled",
            FailureKind::BadAmounts => "bad_amounts",
        }
    }

    /// The business failure a definite bank refusal stands for, if it is one.
    pub fn from_bank(error: &bank::BankError) -> Option<FailureKind> {
        match error {
            bank::BankError::AccountFrozen => Some(FailureKind::AccountFrozen),
            bank::BankError::HolderNameMismatch => Some(FailureKind::HolderNameChanged),
            bank::BankError::InsufficientFunds => Some(FailureKind::InsufficientFunds),
            _ => None,
        }
    }

    /// Same, from a result inquiry's failure code.
    pub fn from_code(code: &str) -> Option<FailureKind> {
        match code {
            "account_frozen" => Some(FailureKind::AccountFrozen),
            "holder_name_mismatch" => Some(FailureKind::HolderNameChanged),
            "insufficient_funds" => Some(FailureKind::InsufficientFunds),
            _ => None,
        }
    }
}

/// Per failure kind, what happens next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailurePolicy {
    pub account_frozen: OnFailure,
    pub holder_name_changed: OnFailure,
    pub insufficient_funds: OnFailure,
    pub already_settled: OnFailure,
    pub bad_amounts: OnFailure,
}

impl Default for FailurePolicy {
    fn default() -> FailurePolicy {
        FailurePolicy {
            account_frozen: OnFailure::WaitForRetry,
            holder_name_changed: OnFailure::WaitForRetry,
            insufficient_funds: OnFailure::WaitForRetry,
            already_settled: OnFailure::RollBack,
            bad_amounts: OnFailure::WaitForRetry,
        }
    }
}

impl FailurePolicy {
    pub fn for_kind(&self, kind: FailureKind) -> OnFailure {
        match kind {
            FailureKind::AccountFrozen => self.account_frozen,
            FailureKind::HolderNameChanged => self.holder_name_changed,
            FailureKind::InsufficientFunds => self.insufficient_funds,
            FailureKind::AlreadySettled => self.already_settled,
            FailureKind::BadAmounts => self.bad_amounts,
        }
    }
}

/// Everything payroll needs to know.
#[derive(Clone, Debug)]
pub struct PayrollConfig {
    /// The 10-character institution code that starts every payout `bank_tran_id`.
    pub institution_code: String,
    /// settle's operating account that pays users out, and its holder.
    pub payout_from_account: AccountNumber,
    pub payout_from_holder: HolderName,
    /// Largest single payout call (the bank's per-call limit).
    pub payout_chunk_max_krw: Krw,
    /// Most chunks one payout may take; more is a `bad_amounts` failure.
    pub payout_chunks_max: u32,
    /// Balance requests the poller starts per second, at most.
    pub poll_requests_per_s_max: u32,
    /// Balance requests the poller has in flight at once, at most.
    pub poll_concurrent_max: usize,
    /// Users read per page while polling.
    pub poll_users_page_max: u32,
    /// Deposit pages read per account per round (the rest waits for the next round).
    pub poll_deposit_pages_max: u32,
    /// Slack-compatible incoming webhook; `None` records alerts without sending.
    pub webhook_url: Option<String>,
    pub webhook_timeout_ms: u64,
    pub failure_policy: FailurePolicy,
    /// How long a claim on (deposit, stage) holds without being renewed; a
    /// process that dies holding one delays that stage this long. Renewed before
    /// each payout chunk.
    pub claim_lease_ms: i64,
    /// A deposit not finished and untouched this long is stuck.
    pub stuck_after_ms: i64,
    /// Keys every ledger id payroll derives (accounts, stage transfers) with the
    /// installation's secret, so no client can claim one first.
    pub ids: DerivedIds,
}

impl PayrollConfig {
    pub fn new(
        payout_from_account: AccountNumber,
        payout_from_holder: HolderName,
        ids: DerivedIds,
    ) -> PayrollConfig {
        PayrollConfig {
            institution_code: "P202500001".to_owned(),
            payout_from_account,
            payout_from_holder,
            payout_chunk_max_krw: Krw::new(100_000),
            payout_chunks_max: 4_096,
            poll_requests_per_s_max: 200,
            poll_concurrent_max: 16,
            poll_users_page_max: 500,
            poll_deposit_pages_max: 4,
            webhook_url: None,
            webhook_timeout_ms: 5_000,
            failure_policy: FailurePolicy::default(),
            claim_lease_ms: 30_000,
            stuck_after_ms: 5 * 60_000,
            ids,
        }
    }

    pub fn validate(&self) -> Result<(), PayrollError> {
        let bad = |what: &str| Err(PayrollError::InvalidConfig(what.to_owned()));
        if bank::BankTranId::from_sequence(&self.institution_code, 0).is_err() {
            return bad("institution_code must be 10 upper-case letters or digits");
        }
        if !self.payout_chunk_max_krw.is_positive() {
            return bad("payout_chunk_max_krw must be positive");
        }
        if self.payout_chunks_max == 0 || self.payout_chunks_max > CHUNKS_PER_ATTEMPT {
            return bad("payout_chunks_max must be 1..=4096");
        }
        if self.poll_requests_per_s_max == 0
            || self.poll_concurrent_max == 0
            || self.poll_users_page_max == 0
            || self.poll_deposit_pages_max == 0
        {
            return bad("poll limits must be positive");
        }
        if !(100..=3_600_000).contains(&self.claim_lease_ms) {
            return bad("claim_lease_ms must be 100..=3600000");
        }
        if self.stuck_after_ms <= 0 {
            return bad("stuck_after_ms must be positive");
        }
        Ok(())
    }
}

/// Chunks per payout attempt in the `bank_tran_id` encoding.
pub(crate) const CHUNKS_PER_ATTEMPT: u32 = 4_096;
/// Operator retries per deposit in the `bank_tran_id` encoding.
pub(crate) const ATTEMPTS_MAX: u32 = 64;
