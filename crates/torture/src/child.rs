//! The child process: `settle torture child …` runs one workload against the
//! run's stores until it is done, is killed, or reaches its fail point. It keeps
//! no state of its own: everything it needs to resume is in the stores, as for a
//! production process restarted after a crash.
//!
//! It speaks to the parent in lines on stdout: `ready` once its stores are open,
//! `op <what> <outcome>` per operation, `fault <kind>` per fault it injects
//! itself (channel), `failpoint <name>` just before it exits
//! at a fail point, and `done` when nothing is left to do.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bank::types::{
    AccountRequest, Balance, DepositLookup, DepositPage, DepositsRequest, Holder,
    IssueVirtualAccount, TransferInquiry, TransferOutcome, TransferReceipt, TransferRequest,
    VirtualAccount, VirtualDeposit,
};
use bank::{BankApi, BankError};

use crate::{
    TortureError, Workload, channel_workload, fees_workload, payroll_workload, relay_workload,
};

/// Exit status of a child that stopped at a fail point.
pub const FAILPOINT_EXIT_CODE: i32 = 86;

/// What the parent tells one child.
#[derive(Clone, Debug)]
pub struct ChildArgs {
    pub workload: Workload,
    pub database_url: String,
    /// The bank simulator the parent serves (fees).
    pub bank_url: Option<String>,
    pub seed: u64,
    /// Which restart this is; mixed into the child's schedule.
    pub cycle: u64,
    /// Die right after the n-th money-moving call reached the bank (or the core),
    /// before its answer is recorded.
    pub failpoint_after_calls: Option<u64>,
    /// Relay: the private NATS server.
    pub nats_url: Option<String>,
    /// Channel and relay: transfers in the whole run.
    pub items: u64,
    /// Channel: share of core calls that misbehave, in percent.
    pub fault_rate_pct: u32,
}

/// The child's stdout protocol.
pub struct Out {
    stdout: std::io::Stdout,
}

impl Out {
    pub fn new() -> Out {
        Out {
            stdout: std::io::stdout(),
        }
    }

    pub fn line(&mut self, text: &str) -> Result<(), TortureError> {
        let mut lock = self.stdout.lock();
        writeln!(lock, "{text}")?;
        lock.flush()?;
        Ok(())
    }

    pub fn op(&mut self, what: &str, outcome: &str) -> Result<(), TortureError> {
        self.line(&format!("op {what} {outcome}"))
    }
}

impl Default for Out {
    fn default() -> Out {
        Out::new()
    }
}

/// Ends the process at a fail point: no destructor runs, nothing is flushed to
/// the stores, open transactions die with their connections — a crash.
pub(crate) fn die_at(failpoint: &str) -> ! {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "failpoint {failpoint}");
    let _ = stdout.flush();
    std::process::exit(FAILPOINT_EXIT_CODE)
}

/// Runs the child's workload.
pub async fn run(args: ChildArgs) -> Result<(), TortureError> {
    let mut out = Out::new();
    match args.workload {
        Workload::Fees => {
            let bank_url = args.bank_url.as_deref().ok_or_else(|| {
                TortureError::Invalid("the fees workload needs --bank-url".into())
            })?;
            let mut bank = fees_workload::http_bank(bank_url)?;
            if let Some(calls) = args.failpoint_after_calls {
                bank = Arc::new(DieAfterBankCalls {
                    inner: bank,
                    left: AtomicU64::new(calls.max(1)),
                });
            }
            fees_workload::run_child(&args, bank, &mut out).await
        }
        Workload::Channel => channel_workload::run_child(&args, &mut out).await,
        Workload::Relay => relay_workload::run_child(&args, &mut out).await,
        Workload::Payroll => payroll_workload::run_child(&args, &mut out).await,
    }
}

/// Fail point `after-bank-call-before-record`: the n-th money-moving call reaches
/// the bank (money may have moved), and the process dies before anyone records
/// the answer.
struct DieAfterBankCalls {
    inner: Arc<dyn BankApi>,
    left: AtomicU64,
}

impl DieAfterBankCalls {
    fn after_call(&self) {
        if self.left.fetch_sub(1, Ordering::SeqCst) == 1 {
            die_at("after-bank-call-before-record");
        }
    }
}

#[async_trait]
impl BankApi for DieAfterBankCalls {
    async fn deposit_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<TransferReceipt, BankError> {
        let answer = self.inner.deposit_transfer(request).await;
        self.after_call();
        answer
    }

    async fn withdraw_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<TransferReceipt, BankError> {
        let answer = self.inner.withdraw_transfer(request).await;
        self.after_call();
        answer
    }

    async fn transfer_result(
        &self,
        inquiry: &TransferInquiry,
    ) -> Result<TransferOutcome, BankError> {
        self.inner.transfer_result(inquiry).await
    }

    async fn balance(&self, request: &AccountRequest) -> Result<Balance, BankError> {
        self.inner.balance(request).await
    }

    async fn account_holder(&self, request: &AccountRequest) -> Result<Holder, BankError> {
        self.inner.account_holder(request).await
    }

    async fn issue_virtual_account(
        &self,
        request: &IssueVirtualAccount,
    ) -> Result<VirtualAccount, BankError> {
        self.inner.issue_virtual_account(request).await
    }

    async fn virtual_deposits(&self, request: &DepositsRequest) -> Result<DepositPage, BankError> {
        self.inner.virtual_deposits(request).await
    }

    async fn virtual_deposit(&self, request: &DepositLookup) -> Result<VirtualDeposit, BankError> {
        self.inner.virtual_deposit(request).await
    }
}
