//! The `BankApi` trait: the calls settle makes to a bank, modelled on Korean open
//! banking. Implemented by the HTTP client ([`crate::HttpBank`]) and by the
//! in-process simulator ([`crate::sim::Simulator`]).
//!
//! Implementations never retry a money-moving call on their own: an outcome-unknown
//! error goes back to the caller, who asks [`BankApi::transfer_result`] first.

use async_trait::async_trait;

use crate::BankError;
use crate::types::{
    AccountRequest, Balance, DepositLookup, DepositPage, DepositsRequest, Holder,
    IssueVirtualAccount, TransferInquiry, TransferOutcome, TransferReceipt, TransferRequest,
    VirtualAccount, VirtualDeposit,
};

#[async_trait]
pub trait BankApi: Send + Sync {
    /// 입금이체: pays `amount_krw` from settle's account into `to_account`. The same
    /// `bank_tran_id` sent again returns the first call's result and moves nothing.
    async fn deposit_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<TransferReceipt, BankError>;

    /// 출금이체: pulls `amount_krw` from a consenting user's `from_account`.
    async fn withdraw_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<TransferReceipt, BankError>;

    /// 이체결과조회: what became of a transfer. [`BankError::TransferNotFound`] means
    /// the bank never committed it.
    async fn transfer_result(
        &self,
        inquiry: &TransferInquiry,
    ) -> Result<TransferOutcome, BankError>;

    /// 잔액조회.
    async fn balance(&self, request: &AccountRequest) -> Result<Balance, BankError>;

    /// 수취인조회: the holder's name as the bank has it now.
    async fn account_holder(&self, request: &AccountRequest) -> Result<Holder, BankError>;

    /// Issues the user's virtual account, or returns the one already issued.
    async fn issue_virtual_account(
        &self,
        request: &IssueVirtualAccount,
    ) -> Result<VirtualAccount, BankError>;

    /// Deposits into virtual accounts after a cursor, oldest first, one page.
    async fn virtual_deposits(&self, request: &DepositsRequest) -> Result<DepositPage, BankError>;

    /// One virtual-account deposit by id.
    async fn virtual_deposit(&self, request: &DepositLookup) -> Result<VirtualDeposit, BankError>;

    /// How long after a transfer's outcome became unknown a "not found" from
    /// [`BankApi::transfer_result`] proves it never landed: the longest a request
    /// of ours can still be on its way into this bank. Per connector.
    fn not_found_grace_ms(&self) -> u64 {
        DEFAULT_NOT_FOUND_GRACE_MS
    }
}

/// The not-found grace of a connector that states none.
pub const DEFAULT_NOT_FOUND_GRACE_MS: u64 = 60_000;
