//! The "legacy" provider: the old bank's API (string amounts, camelCase
//! abbreviations, HTTP 200 with result codes). Its shapes and conversions live in
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

/// The legacy connector on `transport` (its registration in [`super::providers!`]).
pub fn connect(transport: crate::Transport) -> std::sync::Arc<dyn super::BankingProvider> {
    std::sync::Arc::new(super::Connector::new(Legacy, transport))
}

/// The "legacy" provider's wire shape.
#[derive(Clone, Copy, Debug, Default)]
pub struct Legacy;

impl ProviderWire for Legacy {
    const NAME: ProviderName = ProviderName::Legacy;

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
        since_cursor: i64,
        status: u16,
        body: &[u8],
    ) -> Result<DepositPage, BankError> {
        transformers::parse_list_deposits(since_cursor, status, body)
    }

    fn get_deposit(&self, deposit: &DepositId) -> Result<WireRequest, BankError> {
        transformers::get_deposit(deposit)
    }

    fn parse_get_deposit(&self, status: u16, body: &[u8]) -> Result<VirtualDeposit, BankError> {
        transformers::parse_get_deposit(status, body)
    }

    fn get_balance(&self, account: &AccountNumber) -> Result<WireRequest, BankError> {
        transformers::get_balance(account)
    }

    fn parse_get_balance(
        &self,
        _sent: &WireRequest,
        status: u16,
        body: &[u8],
    ) -> Result<Krw, BankError> {
        transformers::parse_balance(status, body)
    }

    fn payout(&self, payout: &TransferRequest) -> Result<WireRequest, BankError> {
        transformers::payout(payout)
    }

    fn parse_payout(
        &self,
        payout: &TransferRequest,
        status: u16,
        body: &[u8],
    ) -> Result<TransferReceipt, BankError> {
        transformers::parse_payout(payout, status, body)
    }

    fn payout_result(&self, inquiry: &TransferInquiry) -> Result<WireRequest, BankError> {
        transformers::payout_result(inquiry)
    }

    fn parse_payout_result(
        &self,
        inquiry: &TransferInquiry,
        status: u16,
        body: &[u8],
    ) -> Result<TransferOutcome, BankError> {
        transformers::parse_payout_result(inquiry, status, body)
    }
}
