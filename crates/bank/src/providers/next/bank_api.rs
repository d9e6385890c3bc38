//! The KFTC connector as a [`BankApi`]: what fees (and any caller of the plain
//! bank interface) uses to pay and inquire over the KFTC wire. Transfers and
//! inquiries are the connector's own calls; virtual accounts are the provider's
//! extension endpoints. Nothing is retried here.

use async_trait::async_trait;

use super::Next;
use crate::providers::{BankingProvider, Connector, ProviderWire};
use crate::types::{
    AccountRequest, Balance, DepositLookup, DepositPage, DepositsRequest, Holder,
    IssueVirtualAccount, TransferInquiry, TransferOutcome, TransferReceipt, TransferRequest,
    VirtualAccount, VirtualDeposit,
};
use crate::{BankApi, BankError};

#[async_trait]
impl BankApi for Connector<Next> {
    /// 입금이체, after the holder check (수취조회) of the credited account.
    async fn deposit_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<TransferReceipt, BankError> {
        self.payout(request).await
    }

    async fn withdraw_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<TransferReceipt, BankError> {
        self.withdraw(request).await
    }

    /// Needs the inquiry's original transfer (the KFTC inquiry names its leg and amount).
    async fn transfer_result(
        &self,
        inquiry: &TransferInquiry,
    ) -> Result<TransferOutcome, BankError> {
        self.result(inquiry).await
    }

    async fn balance(&self, request: &AccountRequest) -> Result<Balance, BankError> {
        let balance_krw = BankingProvider::balance(self, &request.account_number).await?;
        Ok(Balance {
            account_number: request.account_number.clone(),
            balance_krw,
        })
    }

    async fn account_holder(&self, request: &AccountRequest) -> Result<Holder, BankError> {
        let holder_name = Connector::<Next>::account_holder(self, &request.account_number).await?;
        Ok(Holder {
            account_number: request.account_number.clone(),
            holder_name,
        })
    }

    async fn issue_virtual_account(
        &self,
        request: &IssueVirtualAccount,
    ) -> Result<VirtualAccount, BankError> {
        let account_number = self
            .account_number(request.user_id, &request.holder_name)
            .await?;
        Ok(VirtualAccount {
            user_id: request.user_id,
            account_number,
            holder_name: request.holder_name.clone(),
        })
    }

    async fn virtual_deposits(&self, request: &DepositsRequest) -> Result<DepositPage, BankError> {
        let Some(account) = &request.account_number else {
            return Err(BankError::InvalidRequest(
                "the KFTC connector lists one virtual account at a time".into(),
            ));
        };
        self.deposits(account, request.since_cursor).await
    }

    async fn virtual_deposit(&self, request: &DepositLookup) -> Result<VirtualDeposit, BankError> {
        let wire = self.wire();
        let (status, body) = self.send(wire.get_deposit(&request.deposit_id)).await?;
        wire.parse_get_deposit(status, &body)
    }

    fn not_found_grace_ms(&self) -> u64 {
        self.transport().config().not_found_grace_ms
    }
}

/// The KFTC connector on `transport` as a plain [`BankApi`] (what `settle fees`
/// pays and inquires through).
pub fn kftc_bank(transport: crate::Transport) -> std::sync::Arc<dyn BankApi> {
    std::sync::Arc::new(super::connect_kftc(transport))
}
