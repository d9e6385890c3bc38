//! The "next" provider: speaks the open-banking v2.0 wire API (typed JSON, amounts
//! as integers, HTTP statuses with `{code, message}` errors). Its shapes live in
//! [`transformers`]; this file only names them as a [`ProviderWire`].
//!
//! It never sends anything itself; [`super::Connector`] does.

pub mod transformers;

use money::Krw;

use super::{ProviderName, ProviderWire, WireRequest};
use crate::BankError;
use crate::types::{
    AccountNumber, DepositId, DepositPage, HolderName, TransferInquiry, TransferOutcome,
    TransferReceipt, TransferRequest, UserId, VirtualDeposit,
};

/// The "next" provider's wire shape.
#[derive(Clone, Copy, Debug, Default)]
pub struct Next;

impl ProviderWire for Next {
    const NAME: ProviderName = ProviderName::Next;

    fn issue_account(&self, user: UserId, holder: &HolderName) -> Result<WireRequest, BankError> {
        transformers::issue_account(user, holder)
    }

    fn parse_issue_account(&self, status: u16, body: &[u8]) -> Result<AccountNumber, BankError> {
        transformers::parse_issue_account(status, body)
    }

    fn list_deposits(
        &self,
        account: &AccountNumber,
        since_cursor: i64,
    ) -> Result<WireRequest, BankError> {
        transformers::list_deposits(account, since_cursor)
    }

    fn parse_list_deposits(
        &self,
        _since_cursor: i64,
        status: u16,
        body: &[u8],
    ) -> Result<DepositPage, BankError> {
        transformers::parse::<DepositPage>(status, body)
    }

    fn get_deposit(&self, deposit: &DepositId) -> Result<WireRequest, BankError> {
        transformers::get_deposit(deposit)
    }

    fn parse_get_deposit(&self, status: u16, body: &[u8]) -> Result<VirtualDeposit, BankError> {
        transformers::parse::<VirtualDeposit>(status, body)
    }

    fn get_balance(&self, account: &AccountNumber) -> Result<WireRequest, BankError> {
        transformers::get_balance(account)
    }

    fn parse_get_balance(&self, status: u16, body: &[u8]) -> Result<Krw, BankError> {
        transformers::parse_balance(status, body)
    }

    fn payout(&self, payout: &TransferRequest) -> Result<WireRequest, BankError> {
        transformers::payout(payout)
    }

    fn parse_payout(
        &self,
        _payout: &TransferRequest,
        status: u16,
        body: &[u8],
    ) -> Result<TransferReceipt, BankError> {
        transformers::parse::<TransferReceipt>(status, body)
    }

    fn payout_result(&self, inquiry: &TransferInquiry) -> Result<WireRequest, BankError> {
        transformers::payout_result(inquiry)
    }

    fn parse_payout_result(
        &self,
        _inquiry: &TransferInquiry,
        status: u16,
        body: &[u8],
    ) -> Result<TransferOutcome, BankError> {
        transformers::parse::<TransferOutcome>(status, body)
    }
}
