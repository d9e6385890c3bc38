//! The provider facade: settle's banking providers ("legacy" and "next") behind
//! one [`BankingProvider`] trait, hyperswitch-style. A provider (one folder each) is
//! a [`ProviderWire`]: it only builds requests in its own wire shape and parses its
//! own answers; [`Connector`] does the sending through the shared [`Transport`]
//! (limits, timeouts, metrics), adding the bearer token of a wire that needs one.
//! Adding a provider touches one folder, its `pub mod` line, and one line in the
//! `providers!` list below.
//!
//! Which provider serves a user is decided by [`crate::routing`]; this module never
//! reads the routing table and never retries a payout.

pub mod legacy;
pub mod next;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use money::Krw;
use serde::{Deserialize, Serialize};

use crate::BankError;
use crate::routing::{RoutingError, RoutingTable, SettlementStart};
use crate::transport::{Body, Transport};
use crate::types::{
    AccountNumber, DepositId, DepositPage, HolderName, TransferInquiry, TransferOutcome,
    TransferReceipt, TransferRequest, UserId, VirtualDeposit,
};
use next::token::{AccessToken, TokenCache};

/// Declares the providers: each line names the variant, its wire name, and the
/// function in its folder that connects it. The enum, [`ProviderName::ALL`],
/// [`ProviderName::as_str`] and [`connect`] all come from this one list, so a third
/// bank is one folder and one line here.
macro_rules! providers {
    ($($variant:ident => $name:literal, $connect:path;)+) => {
        /// The banking providers settle can route a user to.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[repr(usize)]
        pub enum ProviderName {
            $(#[serde(rename = $name)] $variant,)+
        }

        impl ProviderName {
            /// Every provider, in declaration order (`ALL[p as usize] == p`).
            pub const ALL: [ProviderName; [$($name),+].len()] = [$(ProviderName::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ProviderName::$variant => $name,)+
                }
            }
        }

        /// Builds a provider by name on a transport.
        pub fn connect(name: ProviderName, transport: Transport) -> Arc<dyn BankingProvider> {
            match name {
                $(ProviderName::$variant => $connect(transport),)+
            }
        }
    };
}

providers! {
    Legacy => "legacy", legacy::connect;
    Next => "next", next::connect;
}

impl ProviderName {
    pub fn parse(text: &str) -> Option<ProviderName> {
        ProviderName::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What settle asks of a banking provider, whatever its wire shape.
#[async_trait]
pub trait BankingProvider: Send + Sync {
    fn name(&self) -> ProviderName;

    /// The user's virtual account number (issued on first use).
    async fn account_number(
        &self,
        user: UserId,
        holder: &HolderName,
    ) -> Result<AccountNumber, BankError>;

    /// Deposits into one virtual account after a cursor.
    async fn deposits(
        &self,
        account: &AccountNumber,
        since_cursor: i64,
    ) -> Result<DepositPage, BankError>;

    /// How much of a deposit the provider swept to repay the user's advance.
    async fn repayment_amount(&self, user: UserId, deposit: &DepositId) -> Result<Krw, BankError>;

    /// How much of a deposit the provider holds (suspended) instead of releasing.
    async fn suspend_amount(&self, user: UserId, deposit: &DepositId) -> Result<Krw, BankError>;

    async fn balance(&self, account: &AccountNumber) -> Result<Krw, BankError>;

    /// Pays out (a deposit transfer). Never retried here: see [`BankError::is_outcome_unknown`].
    async fn payout(&self, payout: &TransferRequest) -> Result<TransferReceipt, BankError>;

    /// What became of a payout.
    async fn payout_result(&self, inquiry: &TransferInquiry) -> Result<TransferOutcome, BankError>;
}

/// One HTTP call a provider wants made: where, how, and with which fields.
#[derive(Clone, Debug, PartialEq)]
pub struct WireRequest {
    pub operation: &'static str,
    pub path: &'static str,
    /// The JSON body, or for [`WireMethod::GetQuery`] the query's fields.
    pub body: serde_json::Value,
    pub method: WireMethod,
    /// Sent with the connector's bearer token.
    pub authorized: bool,
}

/// How a [`WireRequest`] travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireMethod {
    PostJson,
    GetQuery,
}

/// A provider's wire shape: pure request building and response parsing, no I/O.
/// `status` and `body` are the raw HTTP answer.
pub trait ProviderWire: Send + Sync + 'static {
    const NAME: ProviderName;

    fn issue_account(&self, user: UserId, holder: &HolderName) -> Result<WireRequest, BankError>;
    fn parse_issue_account(&self, status: u16, body: &[u8]) -> Result<AccountNumber, BankError>;

    fn list_deposits(
        &self,
        account: &AccountNumber,
        since_cursor: i64,
    ) -> Result<WireRequest, BankError>;
    fn parse_list_deposits(
        &self,
        since_cursor: i64,
        status: u16,
        body: &[u8],
    ) -> Result<DepositPage, BankError>;

    fn get_deposit(&self, deposit: &DepositId) -> Result<WireRequest, BankError>;
    fn parse_get_deposit(&self, status: u16, body: &[u8]) -> Result<VirtualDeposit, BankError>;

    fn get_balance(&self, account: &AccountNumber) -> Result<WireRequest, BankError>;
    /// `sent` is the request [`ProviderWire::get_balance`] built, for echo checks.
    fn parse_get_balance(
        &self,
        sent: &WireRequest,
        status: u16,
        body: &[u8],
    ) -> Result<Krw, BankError>;

    fn payout(&self, payout: &TransferRequest) -> Result<WireRequest, BankError>;
    fn parse_payout(
        &self,
        payout: &TransferRequest,
        status: u16,
        body: &[u8],
    ) -> Result<TransferReceipt, BankError>;

    fn payout_result(&self, inquiry: &TransferInquiry) -> Result<WireRequest, BankError>;
    /// `sent` is the request [`ProviderWire::payout_result`] built, for echo checks.
    fn parse_payout_result(
        &self,
        inquiry: &TransferInquiry,
        sent: &WireRequest,
        status: u16,
        body: &[u8],
    ) -> Result<TransferOutcome, BankError>;

    /// The holder check (수취조회) to make before paying `payout`, if this wire
    /// has one; `None` sends the payout directly.
    fn holder_check(&self, _payout: &TransferRequest) -> Option<Result<WireRequest, BankError>> {
        None
    }

    /// Reads the holder check's answer: `Ok` to go on paying, a definite
    /// [`BankError::HolderNameMismatch`] when the account holder is someone else.
    fn parse_holder_check(
        &self,
        _payout: &TransferRequest,
        _sent: &WireRequest,
        _status: u16,
        _body: &[u8],
    ) -> Result<(), BankError> {
        Ok(())
    }
}

/// The shared half of every provider: sends what a [`ProviderWire`] builds.
#[derive(Clone, Debug)]
pub struct Connector<W> {
    wire: W,
    transport: Transport,
    /// The OAuth token of a wire whose requests are `authorized`; shared by clones
    /// so a refresh happens once for all of them.
    token: Option<Arc<TokenCache>>,
}

impl<W: ProviderWire> Connector<W> {
    pub fn new(wire: W, transport: Transport) -> Connector<W> {
        Connector {
            wire,
            transport,
            token: None,
        }
    }

    /// Sends `authorized` requests with a bearer token from `token`.
    pub fn with_token(mut self, token: Arc<TokenCache>) -> Connector<W> {
        self.token = Some(token);
        self
    }

    pub fn wire(&self) -> &W {
        &self.wire
    }

    /// The transport this connector sends through (its limits and settings).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The token cache, when this connector has one (tests count its fetches).
    pub fn token_cache(&self) -> Option<&Arc<TokenCache>> {
        self.token.as_ref()
    }

    pub(crate) async fn send(
        &self,
        request: Result<WireRequest, BankError>,
    ) -> Result<(u16, Vec<u8>), BankError> {
        let request = request?;
        let token = match (&self.token, request.authorized) {
            (Some(cache), true) => Some(cache.token().await?),
            _ => None,
        };
        let body = match request.method {
            WireMethod::PostJson => Body::Json(&request.body),
            WireMethod::GetQuery => Body::Query(&request.body),
        };
        let bearer = token.as_ref().map(AccessToken::bearer);
        let answer = self
            .transport
            .call(request.operation, request.path, body, bearer)
            .await?;
        if answer.0 == 401
            && let (Some(cache), Some(token)) = (&self.token, &token)
        {
            // The bank refused the token: the next call fetches a fresh one.
            cache.invalidate(token).await;
        }
        Ok(answer)
    }

    async fn deposit(
        &self,
        user: UserId,
        deposit: &DepositId,
    ) -> Result<VirtualDeposit, BankError> {
        let (status, body) = self.send(self.wire.get_deposit(deposit)).await?;
        let found = self.wire.parse_get_deposit(status, &body)?;
        tracing::debug!(%user, deposit = %found.deposit_id, provider = %W::NAME, "deposit read");
        Ok(found)
    }
}

#[async_trait]
impl<W: ProviderWire> BankingProvider for Connector<W> {
    fn name(&self) -> ProviderName {
        W::NAME
    }

    async fn account_number(
        &self,
        user: UserId,
        holder: &HolderName,
    ) -> Result<AccountNumber, BankError> {
        let (status, body) = self.send(self.wire.issue_account(user, holder)).await?;
        self.wire.parse_issue_account(status, &body)
    }

    async fn deposits(
        &self,
        account: &AccountNumber,
        since_cursor: i64,
    ) -> Result<DepositPage, BankError> {
        let (status, body) = self
            .send(self.wire.list_deposits(account, since_cursor))
            .await?;
        self.wire.parse_list_deposits(since_cursor, status, &body)
    }

    async fn repayment_amount(&self, user: UserId, deposit: &DepositId) -> Result<Krw, BankError> {
        Ok(self.deposit(user, deposit).await?.repayment_krw)
    }

    async fn suspend_amount(&self, user: UserId, deposit: &DepositId) -> Result<Krw, BankError> {
        Ok(self.deposit(user, deposit).await?.suspended_krw)
    }

    async fn balance(&self, account: &AccountNumber) -> Result<Krw, BankError> {
        let request = self.wire.get_balance(account)?;
        let (status, body) = self.send(Ok(request.clone())).await?;
        self.wire.parse_get_balance(&request, status, &body)
    }

    async fn payout(&self, payout: &TransferRequest) -> Result<TransferReceipt, BankError> {
        if let Some(check) = self.wire.holder_check(payout) {
            let check = check?;
            let (status, body) = self.send(Ok(check.clone())).await?;
            if let Err(error) = self.wire.parse_holder_check(payout, &check, status, &body) {
                if error == BankError::HolderNameMismatch {
                    // The alert hook: payroll classes this as a changed holder
                    // name and alerts; this counter and line are the bank's side.
                    metrics::counter!("bank_holder_mismatches_total", "provider" => W::NAME.as_str())
                        .increment(1);
                    tracing::warn!(bank_tran_id = %payout.bank_tran_id, provider = %W::NAME, "holder check refused the payout: the account holder's name differs");
                }
                return Err(error);
            }
        }
        let (status, body) = self.send(self.wire.payout(payout)).await?;
        let result = self.wire.parse_payout(payout, status, &body);
        let label = result.as_ref().map_or_else(|e| e.code(), |_| "ok");
        metrics::counter!("bank_provider_payouts_total", "provider" => W::NAME.as_str(), "outcome" => label)
            .increment(1);
        result
    }

    async fn payout_result(&self, inquiry: &TransferInquiry) -> Result<TransferOutcome, BankError> {
        let request = self.wire.payout_result(inquiry)?;
        let (status, body) = self.send(Ok(request.clone())).await?;
        self.wire
            .parse_payout_result(inquiry, &request, status, &body)
    }
}

/// The facade settle calls: routes each user to a provider through the routing
/// table, and guards each deposit so only one provider ever settles it.
#[derive(Clone)]
pub struct Facade {
    routing: RoutingTable,
    /// One provider per [`ProviderName`], at index `name as usize`.
    providers: Arc<[Arc<dyn BankingProvider>; ProviderName::ALL.len()]>,
}

impl Facade {
    /// Every provider of [`ProviderName::ALL`], connected on one transport.
    pub fn connect(routing: RoutingTable, transport: &Transport) -> Facade {
        let providers = ProviderName::ALL.map(|name| connect(name, transport.clone()));
        Facade {
            routing,
            providers: Arc::new(providers),
        }
    }

    /// A facade over providers built elsewhere (wrapped for tests, or on separate
    /// transports): exactly one per [`ProviderName`], in any order.
    pub fn with_providers(
        routing: RoutingTable,
        given: impl IntoIterator<Item = Arc<dyn BankingProvider>>,
    ) -> Result<Facade, BankError> {
        let mut slots: [Option<Arc<dyn BankingProvider>>; ProviderName::ALL.len()] =
            Default::default();
        for provider in given {
            let slot = &mut slots[provider.name() as usize];
            if slot.replace(provider).is_some() {
                return Err(BankError::InvalidRequest("a provider given twice".into()));
            }
        }
        let mut providers = Vec::with_capacity(slots.len());
        for (name, slot) in ProviderName::ALL.into_iter().zip(slots) {
            providers.push(slot.ok_or_else(|| {
                BankError::InvalidRequest(format!("no provider given for {name}"))
            })?);
        }
        let providers = providers
            .try_into()
            .map_err(|_| BankError::InvalidRequest("provider count".into()))?;
        Ok(Facade {
            routing,
            providers: Arc::new(providers),
        })
    }

    pub fn routing(&self) -> &RoutingTable {
        &self.routing
    }

    pub fn provider(&self, name: ProviderName) -> Arc<dyn BankingProvider> {
        // In bounds by construction: the discriminants are 0..ALL.len().
        Arc::clone(&self.providers[name as usize])
    }

    /// The provider that serves `user` right now (read fresh on every call, so a
    /// switch is seen by the next call).
    pub async fn provider_for(
        &self,
        user: UserId,
    ) -> Result<Arc<dyn BankingProvider>, RoutingError> {
        Ok(self.provider(self.routing.provider_for(user).await?))
    }

    /// Claims `deposit` for `provider`; see [`RoutingTable::start_settlement`].
    pub async fn start_settlement(
        &self,
        deposit: &DepositId,
        provider: ProviderName,
    ) -> Result<SettlementStart, RoutingError> {
        self.routing.start_settlement(deposit, provider).await
    }
}

/// The one place a refusal of settle's bank credentials is reported: an error log
/// and the `bank_credentials_refused` gauge (1 until a call is accepted again),
/// which an operator alerts on. Returns the error to hand back.
pub(crate) fn credentials_refused(connector: &'static str, detail: &str) -> BankError {
    tracing::error!(
        connector,
        detail,
        "the bank refused settle's credentials: fix the bank credentials in the configuration; nothing is sent until then"
    );
    metrics::gauge!("bank_credentials_refused", "connector" => connector).set(1.0);
    BankError::CredentialsRefused(detail.to_owned())
}

/// Clears the `bank_credentials_refused` gauge after the bank accepted us.
pub(crate) fn credentials_accepted(connector: &'static str) {
    metrics::gauge!("bank_credentials_refused", "connector" => connector).set(0.0);
}

/// Maps a provider's status + body to a definite error when the body names one,
/// else to the shared open-banking mapping (5xx, 429, unknown → unknown).
pub(crate) fn unreadable(status: u16, error: impl fmt::Display) -> BankError {
    BankError::Unrecognized {
        status,
        code: format!("unreadable body: {error}"),
    }
}
