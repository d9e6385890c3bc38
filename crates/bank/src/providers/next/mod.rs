//! The "next" provider: a KFTC open banking v2.0 connector. Transfers (입금이체,
//! 출금이체), the result inquiry (이체결과조회), balance (잔액조회), the holder
//! check (수취조회 over the real-name inquiry) and the transaction list
//! (거래내역조회) speak the KFTC wire ([`kftc`], built and read in [`kftc_calls`]),
//! with an OAuth 2.0 client-credentials token ([`token`]) and every answer code
//! classed through the table in `codes.csv` ([`codes`]). Virtual accounts are not
//! part of KFTC open banking; they stay on the provider's extension endpoints
//! ([`transformers`]).
//!
//! It never sends anything itself; [`super::Connector`] does. Before each payout
//! it asks the holder check, so a renamed account is refused before money moves.

pub mod bank_api;
pub mod codes;
pub mod kftc;
pub mod kftc_calls;
pub mod token;
pub mod transformers;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use money::{Clock, Krw};

use super::{Connector, ProviderName, ProviderWire, WireRequest};
use crate::BankError;
use crate::transport::{KftcSettings, Transport};
use crate::types::{
    AccountNumber, BankTranId, DepositId, DepositPage, HolderName, TranDate, TransferInquiry,
    TransferKind, TransferOutcome, TransferReceipt, TransferRequest, UserId, VirtualDeposit,
};
use kftc_calls::TransactionPage;
use token::TokenCache;

/// `bank_tran_id`s have 9 base-36 characters after the `U`.
const TRAN_TAIL_SPACE: u64 = 36u64.pow(9);

/// The "next" provider's wire: its KFTC settings, a clock for `tran_dtime`, and
/// the ids of its own inquiries.
#[derive(Clone)]
pub struct Next {
    settings: KftcSettings,
    clock: Arc<dyn Clock>,
    /// Tails of the connector's own inquiry ids; starts at a random point so two
    /// processes (or a restart) do not reuse an id on the same day.
    inquiry_sequence: Arc<AtomicU64>,
}

impl fmt::Debug for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Next {
    pub fn new(settings: KftcSettings, clock: Arc<dyn Clock>) -> Next {
        Next {
            settings,
            clock,
            inquiry_sequence: Arc::new(AtomicU64::new(
                uuid::Uuid::new_v4().as_u64_pair().0 % TRAN_TAIL_SPACE,
            )),
        }
    }

    /// A fresh id for one of the connector's own inquiries.
    pub fn inquiry_id(&self) -> Result<BankTranId, BankError> {
        let n = self.inquiry_sequence.fetch_add(1, Ordering::Relaxed) % TRAN_TAIL_SPACE;
        BankTranId::from_sequence(&self.settings.institution_code, n)
    }

    fn now(&self) -> money::Timestamp {
        self.clock.now()
    }
}

/// The `next` connector on the system clock (its registration in the providers list).
pub fn connect(transport: Transport) -> Arc<dyn super::BankingProvider> {
    Arc::new(connector(transport, Arc::new(money::SystemClock)))
}

/// The `next` connector on `transport` on the system clock.
pub fn connect_kftc(transport: Transport) -> Connector<Next> {
    connector(transport, Arc::new(money::SystemClock))
}

/// The `next` connector on `transport`, with its token cache.
pub fn connector(transport: Transport, clock: Arc<dyn Clock>) -> Connector<Next> {
    let wire = Next::new(transport.config().kftc.clone(), clock.clone());
    let token = Arc::new(TokenCache::new(transport.clone(), clock));
    Connector::new(wire, transport).with_token(token)
}

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
        kftc_calls::balance(&self.settings, account, &self.inquiry_id()?, self.now())
    }

    fn parse_get_balance(
        &self,
        sent: &WireRequest,
        status: u16,
        body: &[u8],
    ) -> Result<Krw, BankError> {
        kftc_calls::parse_balance(&sent_id(sent)?, status, body)
    }

    fn payout(&self, payout: &TransferRequest) -> Result<WireRequest, BankError> {
        kftc_calls::deposit(&self.settings, payout, self.now())
    }

    fn parse_payout(
        &self,
        payout: &TransferRequest,
        status: u16,
        body: &[u8],
    ) -> Result<TransferReceipt, BankError> {
        kftc_calls::parse_deposit(payout, status, body)
    }

    fn payout_result(&self, inquiry: &TransferInquiry) -> Result<WireRequest, BankError> {
        kftc_calls::result(inquiry, self.now())
    }

    fn parse_payout_result(
        &self,
        inquiry: &TransferInquiry,
        _sent: &WireRequest,
        status: u16,
        body: &[u8],
    ) -> Result<TransferOutcome, BankError> {
        kftc_calls::parse_result(inquiry, status, body)
    }

    fn holder_check(&self, payout: &TransferRequest) -> Option<Result<WireRequest, BankError>> {
        Some(self.inquiry_id().and_then(|id| {
            kftc_calls::real_name(&self.settings, &payout.to_account, &id, self.now())
        }))
    }

    fn parse_holder_check(
        &self,
        payout: &TransferRequest,
        sent: &WireRequest,
        status: u16,
        body: &[u8],
    ) -> Result<(), BankError> {
        let holder = kftc_calls::parse_real_name(&sent_id(sent)?, status, body)?;
        if holder == payout.holder_name {
            Ok(())
        } else {
            Err(BankError::HolderNameMismatch)
        }
    }
}

/// The `bank_tran_id` a request we built carries.
fn sent_id(sent: &WireRequest) -> Result<BankTranId, BankError> {
    sent.body
        .get("bank_tran_id")
        .and_then(|v| v.as_str())
        .ok_or_else(|| BankError::InvalidRequest("request without bank_tran_id".into()))
        .and_then(BankTranId::new)
}

/// Calls of the KFTC connector outside the provider facade.
impl Connector<Next> {
    /// 수취조회: the holder's name of `account` as the bank has it now.
    pub async fn account_holder(&self, account: &AccountNumber) -> Result<HolderName, BankError> {
        let wire = self.wire();
        let id = wire.inquiry_id()?;
        let (status, body) = self
            .send(kftc_calls::real_name(
                &wire.settings,
                account,
                &id,
                wire.now(),
            ))
            .await?;
        kftc_calls::parse_real_name(&id, status, &body)
    }

    /// 출금이체 from a consenting user's account.
    pub async fn withdraw(&self, pull: &TransferRequest) -> Result<TransferReceipt, BankError> {
        let wire = self.wire();
        let (status, body) = self
            .send(kftc_calls::withdraw(&wire.settings, pull, wire.now()))
            .await?;
        kftc_calls::parse_withdraw(pull, status, &body)
    }

    /// 이체결과조회 of a withdraw or deposit transfer.
    pub async fn result(&self, inquiry: &TransferInquiry) -> Result<TransferOutcome, BankError> {
        let wire = self.wire();
        let (status, body) = self.send(kftc_calls::result(inquiry, wire.now())).await?;
        kftc_calls::parse_result(inquiry, status, &body)
    }

    /// 거래내역조회: one page of `account`'s lines between two dates; pass the
    /// page's `next_trace` back to read on.
    pub async fn transactions(
        &self,
        account: &AccountNumber,
        dates: (TranDate, TranDate),
        trace: Option<&str>,
    ) -> Result<TransactionPage, BankError> {
        let wire = self.wire();
        let id = wire.inquiry_id()?;
        let request =
            kftc_calls::transactions(&wire.settings, account, dates, trace, &id, wire.now());
        let (status, body) = self.send(request).await?;
        kftc_calls::parse_transactions(&id, status, &body)
    }
}

/// The kind of transfer a payout is, for inquiries built from it.
pub const PAYOUT_KIND: TransferKind = TransferKind::Deposit;
