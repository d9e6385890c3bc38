//! Transfers: requests (valid by construction), stored transfers, and the complete
//! set of results a caller can get back.
//!
//! A request that is malformed or names things that do not exist is *rejected*: it
//! never becomes a transfer and leaves no trace, so a corrected retry may succeed.
//! A valid request refused by a balance limit or by lateness *fails*: the failure is
//! recorded and the id stays failed with that first reason forever.

use money::{AccountId, Krw, MoneyError, Timestamp, TransferId};
use serde::{Deserialize, Serialize};

/// What a transfer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferKind {
    /// Moves `amount` at once.
    Single {
        debit_account_id: AccountId,
        credit_account_id: AccountId,
        amount: Krw,
    },
    /// Reserves `amount` (a hold) until posted, voided or expired. `timeout_ms` 0
    /// means the hold never expires.
    Pending {
        debit_account_id: AccountId,
        credit_account_id: AccountId,
        amount: Krw,
        timeout_ms: i64,
    },
    /// Settles a hold, in full (`amount: None`) or in part.
    Post {
        pending_id: TransferId,
        amount: Option<Krw>,
    },
    /// Releases a hold.
    Void { pending_id: TransferId },
}

/// How far a client's `requested_at_ms` may be ahead of the ledger's clock by
/// default (clock skew); further is refused, so a request cannot be dated past the
/// late window's reach (e.g. the year 10000).
pub const REQUESTED_AT_FUTURE_SKEW_MS_DEFAULT: i64 = 60_000;

/// The longest a hold may wait before it expires: 30 days.
pub const PENDING_TIMEOUT_MS_MAX: i64 = 30 * 24 * 60 * 60 * 1000;

/// A transfer request that passed every check that needs no database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferRequest {
    id: TransferId,
    kind: TransferKind,
    code: u16,
    user_data: u64,
    linked: bool,
    requested_at: Timestamp,
}

/// Why a request was refused before it reached the ledger. Nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTransfer {
    #[error("{field}: {source}")]
    Id {
        field: &'static str,
        source: money::IdError,
    },
    #[error(transparent)]
    Amount(#[from] MoneyError),
    #[error("the debit and credit accounts must be different")]
    AccountsMustBeDifferent,
    #[error("field {0} is required for this kind of transfer")]
    MissingField(&'static str),
    #[error("field {0} does not apply to this kind of transfer")]
    FieldNotAllowed(&'static str),
    #[error("unknown transfer kind {0:?}; use single, pending, post or void")]
    UnknownKind(String),
    #[error("timeout_ms must be between 0 and {PENDING_TIMEOUT_MS_MAX}")]
    TimeoutOutOfRange,
    #[error(
        "requested_at_ms is {ahead_ms} ms in the future; at most {skew_ms} ms of clock skew is allowed"
    )]
    RequestedInFuture { ahead_ms: i64, skew_ms: i64 },
}

impl InvalidTransfer {
    pub fn code(&self) -> &'static str {
        match self {
            InvalidTransfer::Id { source, .. } => source.code(),
            InvalidTransfer::Amount(source) => source.code(),
            InvalidTransfer::AccountsMustBeDifferent => "accounts_must_be_different",
            InvalidTransfer::MissingField(_) => "missing_field",
            InvalidTransfer::FieldNotAllowed(_) => "field_not_allowed",
            InvalidTransfer::UnknownKind(_) => "unknown_transfer_kind",
            InvalidTransfer::TimeoutOutOfRange => "timeout_out_of_range",
            InvalidTransfer::RequestedInFuture { .. } => "requested_at_in_future",
        }
    }
}

impl TransferRequest {
    /// Moves `amount` from `debit` to `credit` now.
    pub fn single(
        id: TransferId,
        debit: AccountId,
        credit: AccountId,
        amount: Krw,
        requested_at: Timestamp,
    ) -> Result<TransferRequest, InvalidTransfer> {
        check_movement(debit, credit, amount)?;
        Ok(TransferRequest::with_kind(
            id,
            TransferKind::Single {
                debit_account_id: debit,
                credit_account_id: credit,
                amount,
            },
            requested_at,
        ))
    }

    /// Holds `amount` from `debit` for `credit`, expiring after `timeout_ms` (0 = never).
    pub fn pending(
        id: TransferId,
        debit: AccountId,
        credit: AccountId,
        amount: Krw,
        timeout_ms: i64,
        requested_at: Timestamp,
    ) -> Result<TransferRequest, InvalidTransfer> {
        check_movement(debit, credit, amount)?;
        if !(0..=PENDING_TIMEOUT_MS_MAX).contains(&timeout_ms) {
            return Err(InvalidTransfer::TimeoutOutOfRange);
        }
        Ok(TransferRequest::with_kind(
            id,
            TransferKind::Pending {
                debit_account_id: debit,
                credit_account_id: credit,
                amount,
                timeout_ms,
            },
            requested_at,
        ))
    }

    /// Posts the hold `pending_id`: all of it, or `amount` of it.
    pub fn post(
        id: TransferId,
        pending_id: TransferId,
        amount: Option<Krw>,
        requested_at: Timestamp,
    ) -> Result<TransferRequest, InvalidTransfer> {
        if let Some(amount) = amount {
            Krw::positive(amount.get())?;
        }
        Ok(TransferRequest::with_kind(
            id,
            TransferKind::Post { pending_id, amount },
            requested_at,
        ))
    }

    /// Voids the hold `pending_id`.
    pub fn void(
        id: TransferId,
        pending_id: TransferId,
        requested_at: Timestamp,
    ) -> TransferRequest {
        TransferRequest::with_kind(id, TransferKind::Void { pending_id }, requested_at)
    }

    fn with_kind(id: TransferId, kind: TransferKind, requested_at: Timestamp) -> TransferRequest {
        TransferRequest {
            id,
            kind,
            code: 0,
            user_data: 0,
            linked: false,
            requested_at,
        }
    }

    /// The transfer's kind in the caller's chart (e.g. a fee kind).
    pub fn with_code(mut self, code: u16) -> TransferRequest {
        self.code = code;
        self
    }

    pub fn with_user_data(mut self, user_data: u64) -> TransferRequest {
        self.user_data = user_data;
        self
    }

    /// Links this transfer to the next one in the same submission: the chain
    /// succeeds or fails as a whole. The last transfer of a chain is not linked.
    pub fn linked(mut self, linked: bool) -> TransferRequest {
        self.linked = linked;
        self
    }

    pub fn id(&self) -> TransferId {
        self.id
    }
    pub fn kind(&self) -> &TransferKind {
        &self.kind
    }
    pub fn code(&self) -> u16 {
        self.code
    }
    pub fn user_data(&self) -> u64 {
        self.user_data
    }
    pub fn is_linked(&self) -> bool {
        self.linked
    }
    pub fn requested_at(&self) -> Timestamp {
        self.requested_at
    }

    /// The fields that make two requests "the same request" for idempotency.
    /// `requested_at` is not one of them: a retry is the same transfer.
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        let (debit, credit, amount, pending_id, timeout_ms) = match self.kind {
            TransferKind::Single {
                debit_account_id,
                credit_account_id,
                amount,
            } => (
                Some(debit_account_id),
                Some(credit_account_id),
                Some(amount),
                None,
                0,
            ),
            TransferKind::Pending {
                debit_account_id,
                credit_account_id,
                amount,
                timeout_ms,
            } => (
                Some(debit_account_id),
                Some(credit_account_id),
                Some(amount),
                None,
                timeout_ms,
            ),
            TransferKind::Post { pending_id, amount } => (None, None, amount, Some(pending_id), 0),
            TransferKind::Void { pending_id } => (None, None, None, Some(pending_id), 0),
        };
        Fingerprint {
            kind: KindTag::of(&self.kind),
            debit,
            credit,
            amount,
            pending_id,
            timeout_ms,
            code: self.code,
            user_data: self.user_data,
            linked: self.linked,
        }
    }
}

fn check_movement(debit: AccountId, credit: AccountId, amount: Krw) -> Result<(), InvalidTransfer> {
    Krw::positive(amount.get())?;
    if debit == credit {
        return Err(InvalidTransfer::AccountsMustBeDifferent);
    }
    Ok(())
}

/// The four kinds, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KindTag {
    Single,
    Pending,
    Post,
    Void,
}

impl KindTag {
    fn of(kind: &TransferKind) -> KindTag {
        match kind {
            TransferKind::Single { .. } => KindTag::Single,
            TransferKind::Pending { .. } => KindTag::Pending,
            TransferKind::Post { .. } => KindTag::Post,
            TransferKind::Void { .. } => KindTag::Void,
        }
    }

    pub(crate) fn to_i64(self) -> i64 {
        match self {
            KindTag::Single => 0,
            KindTag::Pending => 1,
            KindTag::Post => 2,
            KindTag::Void => 3,
        }
    }

    pub(crate) fn from_i64(value: i64) -> Option<KindTag> {
        match value {
            0 => Some(KindTag::Single),
            1 => Some(KindTag::Pending),
            2 => Some(KindTag::Post),
            3 => Some(KindTag::Void),
            _ => None,
        }
    }
}

/// The idempotency-relevant fields of a request, as a comparable value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    pub kind: KindTag,
    pub debit: Option<AccountId>,
    pub credit: Option<AccountId>,
    /// For a post, `None` means "the full held amount".
    pub amount: Option<Krw>,
    pub pending_id: Option<TransferId>,
    pub timeout_ms: i64,
    pub code: u16,
    pub user_data: u64,
    pub linked: bool,
}

/// Where a hold stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PendingState {
    Pending,
    Posted,
    Voided,
    Expired,
}

impl PendingState {
    pub(crate) fn to_i64(self) -> i64 {
        match self {
            PendingState::Pending => 1,
            PendingState::Posted => 2,
            PendingState::Voided => 3,
            PendingState::Expired => 4,
        }
    }

    pub(crate) fn from_i64(value: i64) -> Option<PendingState> {
        match value {
            1 => Some(PendingState::Pending),
            2 => Some(PendingState::Posted),
            3 => Some(PendingState::Voided),
            4 => Some(PendingState::Expired),
            _ => None,
        }
    }
}

/// A transfer the ledger applied. Post and void transfers name the accounts of the
/// hold they settle; `amount` is what they posted or released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Transfer {
    pub id: TransferId,
    pub kind: KindTag,
    pub debit_account_id: AccountId,
    pub credit_account_id: AccountId,
    pub amount: Krw,
    pub pending_id: Option<TransferId>,
    /// A post that asked for "the full amount" (no explicit amount).
    pub post_full_amount: bool,
    pub timeout_ms: i64,
    pub code: u16,
    pub user_data: u64,
    pub linked: bool,
    pub requested_at: Timestamp,
    pub created_at: Timestamp,
    /// Only for pending transfers.
    pub pending_state: Option<PendingState>,
    /// Only for pending transfers with a timeout.
    pub expires_at: Option<Timestamp>,
}

impl Transfer {
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        let movement = matches!(self.kind, KindTag::Single | KindTag::Pending);
        Fingerprint {
            kind: self.kind,
            debit: movement.then_some(self.debit_account_id),
            credit: movement.then_some(self.credit_account_id),
            amount: match self.kind {
                KindTag::Single | KindTag::Pending => Some(self.amount),
                KindTag::Post if self.post_full_amount => None,
                KindTag::Post => Some(self.amount),
                KindTag::Void => None,
            },
            pending_id: self.pending_id,
            timeout_ms: self.timeout_ms,
            code: self.code,
            user_data: self.user_data,
            linked: self.linked,
        }
    }
}

/// A recorded failure: the request as it was made, and why it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TransferFailure {
    pub id: TransferId,
    pub request: Fingerprint,
    pub requested_at: Timestamp,
    pub result: TransferResult,
    pub failed_at: Timestamp,
}

/// Everything that can happen to one transfer request. Callers branch on it; tests
/// assert it. [`TransferResult::code`] is the stable wire name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferResult {
    Ok,
    /// Applied earlier with the same fields; nothing changed now.
    Exists,
    /// The id is taken by a request with other fields; nothing changed.
    ExistsWithDifferentFields,
    // Failures: recorded, and the id stays failed with this reason.
    /// The debit account may not go below zero and would.
    ExceedsCredits,
    /// The credit account's credits may not exceed its debits and would.
    ExceedsDebits,
    /// `requested_at` is older than the late window: the request arrived too late
    /// to be applied, so a reconciler that gave up on it is never contradicted.
    Late,
    // Rejections: nothing recorded.
    DebitAccountNotFound,
    CreditAccountNotFound,
    PendingTransferNotFound,
    PendingTransferNotPending,
    PendingTransferAlreadyPosted,
    PendingTransferAlreadyVoided,
    PendingTransferExpired,
    ExceedsPendingTransferAmount,
    /// A balance would no longer fit in 64 bits.
    OverflowsBalance,
    /// Another transfer of the same linked chain failed; this one was not applied.
    LinkedEventFailed,
    /// The submission's last transfer is linked: the chain has no end.
    LinkedEventChainOpen,
}

impl TransferResult {
    pub fn code(self) -> &'static str {
        match self {
            TransferResult::Ok => "ok",
            TransferResult::Exists => "exists",
            TransferResult::ExistsWithDifferentFields => "exists_with_different_fields",
            TransferResult::ExceedsCredits => "exceeds_credits",
            TransferResult::ExceedsDebits => "exceeds_debits",
            TransferResult::Late => "late",
            TransferResult::DebitAccountNotFound => "debit_account_not_found",
            TransferResult::CreditAccountNotFound => "credit_account_not_found",
            TransferResult::PendingTransferNotFound => "pending_transfer_not_found",
            TransferResult::PendingTransferNotPending => "pending_transfer_not_pending",
            TransferResult::PendingTransferAlreadyPosted => "pending_transfer_already_posted",
            TransferResult::PendingTransferAlreadyVoided => "pending_transfer_already_voided",
            TransferResult::PendingTransferExpired => "pending_transfer_expired",
            TransferResult::ExceedsPendingTransferAmount => "exceeds_pending_transfer_amount",
            TransferResult::OverflowsBalance => "overflows_balance",
            TransferResult::LinkedEventFailed => "linked_event_failed",
            TransferResult::LinkedEventChainOpen => "linked_event_chain_open",
        }
    }

    pub(crate) fn from_code(code: &str) -> Option<TransferResult> {
        ALL_RESULTS.iter().copied().find(|r| r.code() == code)
    }

    /// Money moved (now or earlier) for this id.
    pub fn is_applied(self) -> bool {
        matches!(self, TransferResult::Ok | TransferResult::Exists)
    }

    /// A failure that is recorded: the id can never succeed afterwards.
    pub fn is_recorded_failure(self) -> bool {
        matches!(
            self,
            TransferResult::ExceedsCredits | TransferResult::ExceedsDebits | TransferResult::Late
        )
    }
}

const ALL_RESULTS: [TransferResult; 17] = [
    TransferResult::Ok,
    TransferResult::Exists,
    TransferResult::ExistsWithDifferentFields,
    TransferResult::ExceedsCredits,
    TransferResult::ExceedsDebits,
    TransferResult::Late,
    TransferResult::DebitAccountNotFound,
    TransferResult::CreditAccountNotFound,
    TransferResult::PendingTransferNotFound,
    TransferResult::PendingTransferNotPending,
    TransferResult::PendingTransferAlreadyPosted,
    TransferResult::PendingTransferAlreadyVoided,
    TransferResult::PendingTransferExpired,
    TransferResult::ExceedsPendingTransferAmount,
    TransferResult::OverflowsBalance,
    TransferResult::LinkedEventFailed,
    TransferResult::LinkedEventChainOpen,
];

/// What the ledger knows about a transfer id: the question a reconciler asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TransferOutcome {
    Applied { transfer: Transfer },
    Failed { result: TransferResult },
    NotFound,
}

/// A transfer request as it arrives over JSON or the command line, before parsing.
/// Amounts are JSON integers; unknown fields are refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferInput {
    #[schemars(schema_with = "money::id_schema")]
    pub id: String,
    /// single (default), pending, post or void.
    #[serde(default)]
    #[schemars(extend("enum" = ["single", "pending", "post", "void"]))]
    pub kind: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "money::id_schema")]
    pub debit_account_id: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "money::id_schema")]
    pub credit_account_id: Option<String>,
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub amount: Option<i64>,
    #[serde(default)]
    #[schemars(schema_with = "money::id_schema")]
    pub pending_id: Option<String>,
    /// Only for pending transfers; 0 means no timeout.
    #[serde(default)]
    #[schemars(range(min = 0, max = PENDING_TIMEOUT_MS_MAX))]
    pub timeout_ms: Option<i64>,
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default)]
    pub user_data: Option<u64>,
    #[serde(default)]
    pub linked: Option<bool>,
    /// Unix milliseconds; defaults to the time the ledger receives it.
    #[serde(default)]
    pub requested_at_ms: Option<i64>,
}

impl TransferInput {
    /// Parses into a request; `now` fills in a missing `requested_at_ms`, and a
    /// `requested_at_ms` more than [`REQUESTED_AT_FUTURE_SKEW_MS_DEFAULT`] ahead of
    /// it is refused.
    pub fn parse(&self, now: Timestamp) -> Result<TransferRequest, InvalidTransfer> {
        self.parse_within(now, REQUESTED_AT_FUTURE_SKEW_MS_DEFAULT)
    }

    /// [`TransferInput::parse`] with another allowed clock skew.
    pub fn parse_within(
        &self,
        now: Timestamp,
        future_skew_ms: i64,
    ) -> Result<TransferRequest, InvalidTransfer> {
        let id = parse_id::<TransferId>("id", &self.id)?;
        let requested_at = self
            .requested_at_ms
            .map(Timestamp::from_unix_ms)
            .unwrap_or(now);
        let ahead_ms = requested_at.unix_ms().saturating_sub(now.unix_ms());
        if ahead_ms > future_skew_ms.max(0) {
            return Err(InvalidTransfer::RequestedInFuture {
                ahead_ms,
                skew_ms: future_skew_ms.max(0),
            });
        }
        let amount = self.amount.map(Krw::positive).transpose()?;
        let kind = self.kind.as_deref().unwrap_or("single");
        let request = match kind {
            "single" | "pending" => {
                if self.pending_id.is_some() {
                    return Err(InvalidTransfer::FieldNotAllowed("pending_id"));
                }
                let debit = parse_id::<AccountId>(
                    "debit_account_id",
                    self.debit_account_id
                        .as_deref()
                        .ok_or(InvalidTransfer::MissingField("debit_account_id"))?,
                )?;
                let credit = parse_id::<AccountId>(
                    "credit_account_id",
                    self.credit_account_id
                        .as_deref()
                        .ok_or(InvalidTransfer::MissingField("credit_account_id"))?,
                )?;
                let amount = amount.ok_or(InvalidTransfer::MissingField("amount"))?;
                if kind == "single" {
                    if self.timeout_ms.is_some() {
                        return Err(InvalidTransfer::FieldNotAllowed("timeout_ms"));
                    }
                    TransferRequest::single(id, debit, credit, amount, requested_at)?
                } else {
                    let timeout_ms = self.timeout_ms.unwrap_or(0);
                    TransferRequest::pending(id, debit, credit, amount, timeout_ms, requested_at)?
                }
            }
            "post" | "void" => {
                for (present, field) in [
                    (self.debit_account_id.is_some(), "debit_account_id"),
                    (self.credit_account_id.is_some(), "credit_account_id"),
                    (self.timeout_ms.is_some(), "timeout_ms"),
                ] {
                    if present {
                        return Err(InvalidTransfer::FieldNotAllowed(field));
                    }
                }
                let pending_id = parse_id::<TransferId>(
                    "pending_id",
                    self.pending_id
                        .as_deref()
                        .ok_or(InvalidTransfer::MissingField("pending_id"))?,
                )?;
                if kind == "post" {
                    TransferRequest::post(id, pending_id, amount, requested_at)?
                } else {
                    if amount.is_some() {
                        return Err(InvalidTransfer::FieldNotAllowed("amount"));
                    }
                    TransferRequest::void(id, pending_id, requested_at)
                }
            }
            other => return Err(InvalidTransfer::UnknownKind(other.to_owned())),
        };
        Ok(request
            .with_code(self.code.unwrap_or(0))
            .with_user_data(self.user_data.unwrap_or(0))
            .linked(self.linked.unwrap_or(false)))
    }
}

fn parse_id<T: std::str::FromStr<Err = money::IdError>>(
    field: &'static str,
    text: &str,
) -> Result<T, InvalidTransfer> {
    text.parse::<T>()
        .map_err(|source| InvalidTransfer::Id { field, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: serde_json::Value) -> Result<TransferRequest, InvalidTransfer> {
        serde_json::from_value::<TransferInput>(json)
            .unwrap()
            .parse(Timestamp::from_unix_ms(1))
    }

    const A: &str = "0192f1a8-7b2c-7d3e-8f40-000000000001";
    const B: &str = "0192f1a8-7b2c-7d3e-8f40-000000000002";
    const T: &str = "0192f1a8-7b2c-7d3e-8f40-0000000000f1";

    #[test]
    fn a_well_formed_single_transfer_parses() {
        let request = input(serde_json::json!({
            "id": T, "debit_account_id": A, "credit_account_id": B, "amount": 500
        }))
        .unwrap();
        assert!(
            matches!(request.kind(), TransferKind::Single { amount, .. } if amount.get() == 500)
        );
        assert_eq!(request.requested_at(), Timestamp::from_unix_ms(1));
    }

    #[test]
    fn bad_input_is_refused_with_a_stable_code() {
        let cases = [
            (
                serde_json::json!({"id": "nope", "debit_account_id": A, "credit_account_id": B, "amount": 1}),
                "id_malformed",
            ),
            (
                serde_json::json!({"id": T, "debit_account_id": A, "credit_account_id": B, "amount": -5}),
                "amount_not_positive",
            ),
            (
                serde_json::json!({"id": T, "debit_account_id": A, "credit_account_id": B, "amount": 0}),
                "amount_not_positive",
            ),
            (
                serde_json::json!({"id": T, "debit_account_id": A, "credit_account_id": A, "amount": 5}),
                "accounts_must_be_different",
            ),
            (
                serde_json::json!({"id": T, "debit_account_id": A, "amount": 5}),
                "missing_field",
            ),
            (
                serde_json::json!({"id": T, "kind": "void", "pending_id": A, "amount": 5}),
                "field_not_allowed",
            ),
            (
                serde_json::json!({"id": T, "kind": "refund", "pending_id": A}),
                "unknown_transfer_kind",
            ),
            (
                serde_json::json!({"id": T, "kind": "pending", "debit_account_id": A, "credit_account_id": B, "amount": 5, "timeout_ms": -1}),
                "timeout_out_of_range",
            ),
            (
                serde_json::json!({"id": "00000000-0000-0000-0000-000000000000", "kind": "void", "pending_id": A}),
                "id_reserved",
            ),
        ];
        for (json, code) in cases {
            let error = input(json.clone()).unwrap_err();
            assert_eq!(error.code(), code, "{json}");
        }
    }

    #[test]
    fn floats_overflow_and_unknown_fields_do_not_deserialize() {
        for json in [
            serde_json::json!({"id": T, "amount": 1.5}),
            serde_json::json!({"id": T, "amount": 9_223_372_036_854_775_808u64}),
            serde_json::json!({"id": T, "amout": 1}),
        ] {
            assert!(serde_json::from_value::<TransferInput>(json).is_err());
        }
    }

    #[test]
    fn every_result_code_round_trips() {
        for result in ALL_RESULTS {
            assert_eq!(TransferResult::from_code(result.code()), Some(result));
        }
    }
}
