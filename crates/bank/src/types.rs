//! The bank boundary's vocabulary: validating newtypes (`BankTranId`, `TranDate`,
//! `AccountNumber`, `HolderName`, `UserId`, `DepositId`) and the typed requests and
//! responses of every [`crate::BankApi`] call. Amounts are [`money::Krw`] and travel
//! as JSON integers.
//!
//! This module does no I/O and never reads the clock: a `TranDate` is derived from a
//! `Timestamp` the caller supplies.

use std::fmt;

use money::{Krw, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::BankError;

/// Length of the institution code that starts every `bank_tran_id`.
pub const INSTITUTION_CODE_LEN: usize = 10;
/// Length of the caller-chosen tail after the `U`.
pub const TRAN_SUFFIX_LEN: usize = 9;
/// Longest holder name the bank stores, in characters.
pub const HOLDER_NAME_CHARS_MAX: usize = 40;

fn is_upper_alnum(byte: u8) -> bool {
    byte.is_ascii_uppercase() || byte.is_ascii_digit()
}

/// A transfer's caller-chosen id: a 10-character institution code, `U`, then 9
/// characters (upper-case letters or digits), e.g. `M202500001U000000042`. The bank
/// keeps it unique; sending it twice never moves money twice.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BankTranId(String);

impl BankTranId {
    pub fn new(text: &str) -> Result<BankTranId, BankError> {
        let bytes = text.as_bytes();
        let expected_len = INSTITUTION_CODE_LEN + 1 + TRAN_SUFFIX_LEN;
        if bytes.len() != expected_len {
            return Err(BankError::BadTranId(format!(
                "{text:?} must be {expected_len} characters, not {}",
                text.chars().count()
            )));
        }
        if bytes[INSTITUTION_CODE_LEN] != b'U' {
            return Err(BankError::BadTranId(format!(
                "{text:?} must have 'U' after the {INSTITUTION_CODE_LEN}-character institution code"
            )));
        }
        if !bytes.iter().copied().all(is_upper_alnum) {
            return Err(BankError::BadTranId(format!(
                "{text:?} may hold only upper-case letters and digits"
            )));
        }
        Ok(BankTranId(text.to_owned()))
    }

    /// Builds an id from an institution code and a sequence number (base 36).
    pub fn from_sequence(institution_code: &str, sequence: u64) -> Result<BankTranId, BankError> {
        const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut tail = [b'0'; TRAN_SUFFIX_LEN];
        let mut rest = sequence;
        for slot in tail.iter_mut().rev() {
            *slot = DIGITS[(rest % 36) as usize];
            rest /= 36;
        }
        if rest != 0 {
            return Err(BankError::BadTranId(format!(
                "sequence {sequence} does not fit in {TRAN_SUFFIX_LEN} characters"
            )));
        }
        let tail = String::from_utf8_lossy(&tail);
        BankTranId::new(&format!("{institution_code}U{tail}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BankTranId {
    type Error = BankError;
    fn try_from(text: String) -> Result<BankTranId, BankError> {
        BankTranId::new(&text)
    }
}

impl From<BankTranId> for String {
    fn from(id: BankTranId) -> String {
        id.0
    }
}

impl fmt::Display for BankTranId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BankTranId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BankTranId({})", self.0)
    }
}

/// A business day in Korea (KST, UTC+9) as the bank writes it: `YYYYMMDD`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TranDate {
    year: u16,
    month: u8,
    day: u8,
}

const KST_OFFSET_MS: i64 = 9 * 60 * 60 * 1_000;
const DAY_MS: i64 = 24 * 60 * 60 * 1_000;

impl TranDate {
    pub fn parse(text: &str) -> Result<TranDate, BankError> {
        let bad = || BankError::InvalidRequest(format!("tran_date {text:?} is not YYYYMMDD"));
        if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let year: u16 = text[0..4].parse().map_err(|_| bad())?;
        let month: u8 = text[4..6].parse().map_err(|_| bad())?;
        let day: u8 = text[6..8].parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(bad());
        }
        Ok(TranDate { year, month, day })
    }

    /// The KST calendar day that contains `at`.
    pub fn from_kst(at: Timestamp) -> TranDate {
        let days = at
            .unix_ms()
            .saturating_add(KST_OFFSET_MS)
            .div_euclid(DAY_MS);
        let (year, month, day) = civil_from_days(days);
        TranDate { year, month, day }
    }

    /// Minutes since KST midnight of `at` (0..1440), for maintenance windows.
    pub fn kst_minute_of_day(at: Timestamp) -> u32 {
        let ms = at
            .unix_ms()
            .saturating_add(KST_OFFSET_MS)
            .rem_euclid(DAY_MS);
        u32::try_from(ms / 60_000).unwrap_or(0)
    }
}

fn is_leap(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), walking
/// 400-year eras so the loop count is bounded. Years outside 0..=9999 clamp.
fn civil_from_days(days_since_epoch: i64) -> (u16, u8, u8) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
    let z = days_since_epoch + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        u16::try_from(year.clamp(0, 9_999)).unwrap_or(0),
        u8::try_from(month).unwrap_or(1),
        u8::try_from(day).unwrap_or(1),
    )
}

impl TryFrom<String> for TranDate {
    type Error = BankError;
    fn try_from(text: String) -> Result<TranDate, BankError> {
        TranDate::parse(&text)
    }
}

impl From<TranDate> for String {
    fn from(date: TranDate) -> String {
        date.to_string()
    }
}

impl fmt::Display for TranDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}{:02}{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Debug for TranDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TranDate({self})")
    }
}

/// A bank account number: 6 to 20 digits, no separators.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountNumber(String);

impl AccountNumber {
    pub fn new(text: &str) -> Result<AccountNumber, BankError> {
        if !(6..=20).contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BankError::InvalidRequest(format!(
                "account number {text:?} must be 6 to 20 digits"
            )));
        }
        Ok(AccountNumber(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AccountNumber {
    type Error = BankError;
    fn try_from(text: String) -> Result<AccountNumber, BankError> {
        AccountNumber::new(&text)
    }
}

impl From<AccountNumber> for String {
    fn from(number: AccountNumber) -> String {
        number.0
    }
}

impl fmt::Display for AccountNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An account holder's name as the bank records it (1 to 40 characters, no control
/// characters, no surrounding spaces).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HolderName(String);

impl HolderName {
    pub fn new(text: &str) -> Result<HolderName, BankError> {
        let chars = text.chars().count();
        if chars == 0
            || chars > HOLDER_NAME_CHARS_MAX
            || text.trim() != text
            || text.chars().any(char::is_control)
        {
            return Err(BankError::InvalidRequest(format!(
                "holder name {text:?} must be 1 to {HOLDER_NAME_CHARS_MAX} characters without surrounding spaces"
            )));
        }
        Ok(HolderName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HolderName {
    type Error = BankError;
    fn try_from(text: String) -> Result<HolderName, BankError> {
        HolderName::new(&text)
    }
}

impl From<HolderName> for String {
    fn from(name: HolderName) -> String {
        name.0
    }
}

impl fmt::Display for HolderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A settle user, as the bank facade routes them. A UUID.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(Uuid);

impl UserId {
    pub const fn from_uuid(uuid: Uuid) -> UserId {
        UserId(uuid)
    }

    pub fn parse(text: &str) -> Result<UserId, BankError> {
        Uuid::try_parse(text)
            .map(UserId)
            .map_err(|_| BankError::InvalidRequest(format!("user id {text:?} is not a UUID")))
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// A deposit into a virtual account, named by the bank: `D` and 12 digits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DepositId(String);

impl DepositId {
    pub fn new(text: &str) -> Result<DepositId, BankError> {
        let digits = text.strip_prefix('D').unwrap_or("");
        if digits.len() != 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BankError::InvalidRequest(format!(
                "deposit id {text:?} must be 'D' and 12 digits"
            )));
        }
        Ok(DepositId(text.to_owned()))
    }

    pub fn from_sequence(sequence: i64) -> Result<DepositId, BankError> {
        DepositId::new(&format!("D{sequence:012}"))
    }

    /// The bank's sequence number inside the id.
    pub fn sequence(&self) -> i64 {
        self.0[1..].parse().unwrap_or(0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DepositId {
    type Error = BankError;
    fn try_from(text: String) -> Result<DepositId, BankError> {
        DepositId::new(&text)
    }
}

impl From<DepositId> for String {
    fn from(id: DepositId) -> String {
        id.0
    }
}

impl fmt::Display for DepositId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which way a transfer moves money, seen from settle.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    /// 입금이체: settle's account pays into someone's account (a payout).
    Deposit,
    /// 출금이체: settle pulls money from a consenting user's account.
    Withdraw,
}

impl TransferKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Deposit => "deposit",
            TransferKind::Withdraw => "withdraw",
        }
    }

    pub fn parse(text: &str) -> Option<TransferKind> {
        match text {
            "deposit" => Some(TransferKind::Deposit),
            "withdraw" => Some(TransferKind::Withdraw),
            _ => None,
        }
    }
}

/// One deposit or withdraw transfer. `holder_name` is the name the caller expects
/// on the *other* party's account (the payee of a deposit transfer, the payer of a
/// withdraw transfer); the bank refuses the transfer if it differs.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TransferRequest {
    pub bank_tran_id: BankTranId,
    pub tran_date: TranDate,
    pub from_account: AccountNumber,
    pub to_account: AccountNumber,
    pub holder_name: HolderName,
    pub amount_krw: Krw,
}

/// The bank's record of a transfer that moved money.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TransferReceipt {
    pub bank_tran_id: BankTranId,
    pub tran_date: TranDate,
    pub kind: TransferKind,
    pub from_account: AccountNumber,
    pub to_account: AccountNumber,
    pub amount_krw: Krw,
    pub processed_at_ms: i64,
}

/// 이체결과조회: which transfer to look up.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TransferInquiry {
    pub bank_tran_id: BankTranId,
    pub tran_date: TranDate,
    /// The transfer as it was sent, when the caller has it. A KFTC inquiry must
    /// name the original leg and amount, and its answer shows accounts only
    /// masked, so that connector needs it to ask and to check the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<OriginalTransfer>,
}

/// The transfer an inquiry asks about, as the caller sent it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OriginalTransfer {
    pub kind: TransferKind,
    pub request: TransferRequest,
}

impl TransferInquiry {
    /// An inquiry by id and date only.
    pub fn new(bank_tran_id: BankTranId, tran_date: TranDate) -> TransferInquiry {
        TransferInquiry {
            bank_tran_id,
            tran_date,
            original: None,
        }
    }

    /// An inquiry about a transfer the caller sent (or was about to send).
    pub fn of(kind: TransferKind, request: &TransferRequest) -> TransferInquiry {
        TransferInquiry {
            bank_tran_id: request.bank_tran_id.clone(),
            tran_date: request.tran_date,
            original: Some(OriginalTransfer {
                kind,
                request: request.clone(),
            }),
        }
    }
}

/// What the bank knows about a transfer it has seen.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TransferOutcome {
    /// Money moved, exactly once.
    Succeeded { receipt: TransferReceipt },
    /// The bank refused it; no money moved. `code` is a [`BankError::code`].
    Failed { code: String, message: String },
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AccountRequest {
    pub account_number: AccountNumber,
}

/// 잔액조회.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Balance {
    pub account_number: AccountNumber,
    pub balance_krw: Krw,
}

/// 수취인조회.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Holder {
    pub account_number: AccountNumber,
    pub holder_name: HolderName,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct IssueVirtualAccount {
    pub user_id: UserId,
    pub holder_name: HolderName,
}

/// A user's one virtual account; issuing twice returns the same account.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct VirtualAccount {
    pub user_id: UserId,
    pub account_number: AccountNumber,
    pub holder_name: HolderName,
}

/// Deposits into virtual accounts after `since_cursor` (exclusive), oldest first.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DepositsRequest {
    /// Only this account's deposits; all virtual accounts when absent.
    pub account_number: Option<AccountNumber>,
    pub since_cursor: i64,
    /// At most this many; the bank caps it at its own page maximum.
    pub limit: u32,
}

/// A salary (or any money) that arrived in a virtual account, and how the bank
/// split it: `repayment_krw` swept to repay the user's advance, `suspended_krw`
/// held (for example because the account is frozen).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct VirtualDeposit {
    pub deposit_id: DepositId,
    pub account_number: AccountNumber,
    pub depositor_name: String,
    pub amount_krw: Krw,
    pub repayment_krw: Krw,
    pub suspended_krw: Krw,
    pub cursor: i64,
    pub at_ms: i64,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DepositPage {
    pub deposits: Vec<VirtualDeposit>,
    /// Pass back as `since_cursor` to continue; equal to the request's when empty.
    pub next_cursor: i64,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DepositLookup {
    pub deposit_id: DepositId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bank_tran_id_is_institution_code_u_and_nine_characters() {
        assert!(BankTranId::new("M202500001U000000042").is_ok());
        for bad in [
            "",
            "M202500001U00000004",
            "M202500001X000000042",
            "m202500001U000000042",
            "M202500001U00000004-",
            "M202500001U0000000420",
        ] {
            assert_eq!(
                BankTranId::new(bad).unwrap_err().code(),
                "bad_bank_tran_id",
                "{bad:?}"
            );
        }
        let id = BankTranId::from_sequence("M202500001", 36).unwrap();
        assert_eq!(id.as_str(), "M202500001U000000010");
        assert!(BankTranId::from_sequence("M202500001", u64::MAX).is_err());
    }

    #[test]
    fn tran_date_is_the_kst_calendar_day() {
        // 2024-02-29T15:00:00Z is 2024-03-01 00:00 in Seoul.
        let at = Timestamp::from_unix_ms(1_709_218_800_000);
        assert_eq!(TranDate::from_kst(at).to_string(), "20240301");
        assert_eq!(TranDate::from_kst(at.plus_ms(-1)).to_string(), "20240229");
        assert_eq!(TranDate::kst_minute_of_day(at), 0);
        assert!(TranDate::parse("20230229").is_err());
        assert!(TranDate::parse("20240229").is_ok());
        assert!(TranDate::parse("2024-02-2").is_err());
    }

    #[test]
    fn newtypes_refuse_bad_input_in_json() {
        assert!(serde_json::from_str::<AccountNumber>("\"12-34\"").is_err());
        assert!(serde_json::from_str::<HolderName>("\" Kim\"").is_err());
        assert!(serde_json::from_str::<DepositId>("\"D1\"").is_err());
        let id = DepositId::from_sequence(42).unwrap();
        assert_eq!(id.as_str(), "D000000000042");
        assert_eq!(id.sequence(), 42);
    }
}
