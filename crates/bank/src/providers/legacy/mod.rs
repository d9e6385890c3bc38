//! The "legacy" provider: an NH-style connector. Transfers (입금이체, 출금이체),
//! the result inquiry (이체결과조회), balance (잔액조회), the holder check
//! (예금주조회) and the transaction list (거래내역조회) speak the NH `Header` /
//! `REC` wire ([`nh`], built and read in [`nh_calls`]) with the institution's
//! transaction number (`IsTuno` = the `bank_tran_id`) and every `Rpcd` classed
//! through the table in `codes.csv` ([`codes`]). Virtual accounts stay on the
//! provider's extension endpoints ([`transformers`]).
//!
//! It never sends anything itself; [`super::Connector`] does. Before each payout
//! it asks the holder check, so a renamed account is refused before money moves.

pub mod codes;
pub mod nh;
pub mod nh_calls;
pub mod transformers;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use money::{Clock, Krw};

use super::{Connector, ProviderName, ProviderWire, WireRequest};
use crate::BankError;
use crate::transport::{LegacySettings, Transport};
use crate::types::{
    AccountNumber, BankTranId, DepositId, DepositPage, HolderName, TranDate, TransferInquiry,
    TransferOutcome, TransferReceipt, TransferRequest, UserId, VirtualDeposit,
};
use nh_calls::HistoryPage;

/// `IsTuno`s of the connector's own inquiries have 9 base-36 characters after the `U`.
const TRAN_TAIL_SPACE: u64 = 36u64.pow(9);

/// The legacy connector on the system clock (its registration in the providers list).
pub fn connect(transport: Transport) -> Arc<dyn super::BankingProvider> {
    Arc::new(connector(transport, Arc::new(money::SystemClock)))
}

/// The legacy connector on `transport`.
pub fn connector(transport: Transport, clock: Arc<dyn Clock>) -> Connector<Legacy> {
    let wire = Legacy::new(transport.config().legacy.clone(), clock);
    Connector::new(wire, transport)
}

/// The "legacy" provider's wire: its NH settings, a clock for `Tsymd`/`Trtm`, and
/// the numbers of its own inquiries.
#[derive(Clone)]
pub struct Legacy {
    settings: LegacySettings,
    clock: Arc<dyn Clock>,
    /// Tails of the connector's own inquiry numbers; starts at a random point so
    /// two processes (or a restart) do not reuse one on the same day.
    inquiry_sequence: Arc<AtomicU64>,
}

impl fmt::Debug for Legacy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Legacy")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Legacy {
    pub fn new(settings: LegacySettings, clock: Arc<dyn Clock>) -> Legacy {
        Legacy {
            settings,
            clock,
            inquiry_sequence: Arc::new(AtomicU64::new(
                uuid::Uuid::new_v4().as_u64_pair().0 % TRAN_TAIL_SPACE,
            )),
        }
    }

    /// A fresh `IsTuno` for one of the connector's own inquiries.
    pub fn inquiry_id(&self) -> Result<BankTranId, BankError> {
        let n = self.inquiry_sequence.fetch_add(1, Ordering::Relaxed) % TRAN_TAIL_SPACE;
        BankTranId::from_sequence(&self.settings.institution_code, n)
    }

    pub fn settings(&self) -> &LegacySettings {
        &self.settings
    }

    fn now(&self) -> money::Timestamp {
        self.clock.now()
    }
}

/// The `IsTuno` (and the account, for inquiries naming one) a request we built carries.
fn sent_id(sent: &WireRequest) -> Result<BankTranId, BankError> {
    sent.body
        .pointer("/Header/IsTuno")
        .and_then(|v| v.as_str())
        .ok_or_else(|| BankError::InvalidRequest("request without IsTuno".into()))
        .and_then(BankTranId::new)
}

fn sent_account(sent: &WireRequest, field: &str) -> Result<AccountNumber, BankError> {
    sent.body
        .get(field)
        .and_then(|v| v.as_str())
        .ok_or_else(|| BankError::InvalidRequest(format!("request without {field}")))
        .and_then(AccountNumber::new)
}

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
        nh_calls::balance(&self.settings, account, &self.inquiry_id()?, self.now())
    }

    fn parse_get_balance(
        &self,
        sent: &WireRequest,
        status: u16,
        body: &[u8],
    ) -> Result<Krw, BankError> {
        let account = sent_account(sent, "FinAcno")?;
        nh_calls::parse_balance(&self.settings, &account, &sent_id(sent)?, status, body)
    }

    fn payout(&self, payout: &TransferRequest) -> Result<WireRequest, BankError> {
        nh_calls::deposit(&self.settings, payout, self.now())
    }

    fn parse_payout(
        &self,
        payout: &TransferRequest,
        status: u16,
        body: &[u8],
    ) -> Result<TransferReceipt, BankError> {
        nh_calls::parse_deposit(&self.settings, payout, status, body)
    }

    fn payout_result(&self, inquiry: &TransferInquiry) -> Result<WireRequest, BankError> {
        nh_calls::result(&self.settings, inquiry, &self.inquiry_id()?, self.now())
    }

    fn parse_payout_result(
        &self,
        inquiry: &TransferInquiry,
        sent: &WireRequest,
        status: u16,
        body: &[u8],
    ) -> Result<TransferOutcome, BankError> {
        nh_calls::parse_result(&self.settings, inquiry, &sent_id(sent)?, status, body)
    }

    fn holder_check(&self, payout: &TransferRequest) -> Option<Result<WireRequest, BankError>> {
        Some(
            self.inquiry_id().and_then(|id| {
                nh_calls::holder(&self.settings, &payout.to_account, &id, self.now())
            }),
        )
    }

    fn parse_holder_check(
        &self,
        payout: &TransferRequest,
        sent: &WireRequest,
        status: u16,
        body: &[u8],
    ) -> Result<(), BankError> {
        let id = sent_id(sent)?;
        let holder = nh_calls::parse_holder(&self.settings, &payout.to_account, &id, status, body)?;
        if holder == payout.holder_name {
            Ok(())
        } else {
            Err(BankError::HolderNameMismatch)
        }
    }
}

/// Calls of the legacy connector outside the provider facade.
impl Connector<Legacy> {
    /// 예금주조회: the holder's name of `account` as the bank has it now.
    pub async fn account_holder(&self, account: &AccountNumber) -> Result<HolderName, BankError> {
        let wire = self.wire();
        let id = wire.inquiry_id()?;
        let request = nh_calls::holder(&wire.settings, account, &id, wire.now());
        let (status, body) = self.send(request).await?;
        nh_calls::parse_holder(&wire.settings, account, &id, status, &body)
    }

    /// 출금이체 from a consenting user's account.
    pub async fn withdraw(&self, pull: &TransferRequest) -> Result<TransferReceipt, BankError> {
        let wire = self.wire();
        let request = nh_calls::withdraw(&wire.settings, pull, wire.now());
        let (status, body) = self.send(request).await?;
        nh_calls::parse_withdraw(&wire.settings, pull, status, &body)
    }

    /// 이체결과조회 of a withdraw or deposit transfer.
    pub async fn result(&self, inquiry: &TransferInquiry) -> Result<TransferOutcome, BankError> {
        let wire = self.wire();
        let id = wire.inquiry_id()?;
        let request = nh_calls::result(&wire.settings, inquiry, &id, wire.now());
        let (status, body) = self.send(request).await?;
        nh_calls::parse_result(&wire.settings, inquiry, &id, status, &body)
    }

    /// 거래내역조회: one page (1…) of `account`'s lines between two dates; ask the
    /// page's `next_page` to read on.
    pub async fn history(
        &self,
        account: &AccountNumber,
        dates: (TranDate, TranDate),
        page_no: u32,
    ) -> Result<HistoryPage, BankError> {
        let wire = self.wire();
        let id = wire.inquiry_id()?;
        let request = nh_calls::history(&wire.settings, account, dates, page_no, &id, wire.now());
        let (status, body) = self.send(request).await?;
        nh_calls::parse_history(&wire.settings, page_no, &id, status, &body)
    }
}
