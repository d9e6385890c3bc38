//! `HttpBank`: [`BankApi`] over HTTP against the open-banking wire API (the
//! simulator's, or a bank that speaks it). It owns only the mapping of calls to
//! paths and of answers to types; sending, limits and timeouts are the transport's.
//!
//! It never retries a transfer and never turns an unparseable 2xx into a failure:
//! a 2xx it cannot read is outcome unknown.

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::transport::{Transport, TransportConfig};
use crate::types::{
    AccountRequest, Balance, DepositLookup, DepositPage, DepositsRequest, Holder,
    IssueVirtualAccount, TransferInquiry, TransferOutcome, TransferReceipt, TransferRequest,
    VirtualAccount, VirtualDeposit,
};
use crate::wire::{self, error_from_response};
use crate::{BankApi, BankError};

/// A [`BankApi`] that calls a bank over HTTP. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpBank {
    transport: Transport,
}

impl HttpBank {
    pub fn new(config: TransportConfig) -> Result<HttpBank, BankError> {
        Ok(HttpBank {
            transport: Transport::new(config)?,
        })
    }

    async fn call<B, R>(
        &self,
        operation: &'static str,
        path: &str,
        body: &B,
    ) -> Result<R, BankError>
    where
        B: Serialize + ?Sized + Sync,
        R: DeserializeOwned,
    {
        let (status, bytes) = self.transport.post_json(operation, path, body).await?;
        if !(200..300).contains(&status) {
            return Err(error_from_response(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|error| BankError::Unrecognized {
            status,
            code: format!("unreadable body: {error}"),
        })
    }
}

#[async_trait]
impl BankApi for HttpBank {
    async fn deposit_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<TransferReceipt, BankError> {
        self.call("deposit_transfer", wire::PATH_DEPOSIT_TRANSFER, request)
            .await
    }

    async fn withdraw_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<TransferReceipt, BankError> {
        self.call("withdraw_transfer", wire::PATH_WITHDRAW_TRANSFER, request)
            .await
    }

    async fn transfer_result(
        &self,
        inquiry: &TransferInquiry,
    ) -> Result<TransferOutcome, BankError> {
        self.call("transfer_result", wire::PATH_TRANSFER_RESULT, inquiry)
            .await
    }

    async fn balance(&self, request: &AccountRequest) -> Result<Balance, BankError> {
        self.call("balance", wire::PATH_BALANCE, request).await
    }

    async fn account_holder(&self, request: &AccountRequest) -> Result<Holder, BankError> {
        self.call("account_holder", wire::PATH_ACCOUNT_HOLDER, request)
            .await
    }

    async fn issue_virtual_account(
        &self,
        request: &IssueVirtualAccount,
    ) -> Result<VirtualAccount, BankError> {
        self.call("issue_virtual_account", wire::PATH_VIRTUAL_ACCOUNT, request)
            .await
    }

    async fn virtual_deposits(&self, request: &DepositsRequest) -> Result<DepositPage, BankError> {
        self.call("virtual_deposits", wire::PATH_VIRTUAL_DEPOSITS, request)
            .await
    }

    async fn virtual_deposit(&self, request: &DepositLookup) -> Result<VirtualDeposit, BankError> {
        self.call("virtual_deposit", wire::PATH_VIRTUAL_DEPOSIT, request)
            .await
    }

    fn not_found_grace_ms(&self) -> u64 {
        self.transport.config().not_found_grace_ms
    }
}
