//! The KFTC open banking v2.0 wire, as its public specification describes it:
//! paths, request and answer shapes, the `bank_tran_id` / `api_tran_id` checks and
//! the KST date-times. The connector ([`super::Next`]) builds requests with these
//! types and parses answers with them; the simulator parses requests and writes
//! answers with the very same types, so the two speak one wire.
//!
//! Requests refuse unknown fields at every depth (the simulator is strict, as the
//! centre is). Answers tolerate extra fields: a bank adding one must not turn a
//! paid transfer into an unreadable answer. Amounts travel as strings of digits.
//! Pure: no I/O, no clock (times are passed in).

use money::{Krw, Timestamp};
use serde::{Deserialize, Serialize};

use super::codes::{self, Layer};
use crate::BankError;
use crate::types::{AccountNumber, BankTranId, HolderName, TranDate};

pub const PATH_TOKEN: &str = "/oauth/2.0/token";
pub const PATH_DEPOSIT: &str = "/v2.0/transfer/deposit/acnt_num";
pub const PATH_WITHDRAW: &str = "/v2.0/transfer/withdraw/acnt_num";
pub const PATH_RESULT: &str = "/v2.0/transfer/result";
pub const PATH_BALANCE: &str = "/v2.0/account/balance/acnt_num";
pub const PATH_REAL_NAME: &str = "/v2.0/inquiry/real_name";
pub const PATH_TRANSACTIONS: &str = "/v2.0/account/transaction_list/acnt_num";

/// `cntr_account_type` of an ordinary account (as opposed to a pooled one).
pub const CONTRACT_ACCOUNT: &str = "N";
/// `check_type` of the result inquiry: which leg the original transfer was.
pub const CHECK_WITHDRAW: &str = "1";
pub const CHECK_DEPOSIT: &str = "2";
/// Longest `api_tran_id` the spec allows (aNS(40)).
pub const API_TRAN_ID_CHARS_MAX: usize = 40;
/// Longest print content (AH(20)) in characters.
pub const PRINT_CHARS_MAX: usize = 20;
/// Transaction lines per page the connector accepts from one answer.
pub const TRANSACTIONS_PAGE_MAX: usize = 500;

// ---- token ----

/// `POST /oauth/2.0/token`, form-encoded, client-credentials grant.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub client_id: String,
    pub client_secret: String,
    pub scope: String,
    pub grant_type: String,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scope", &self.scope)
            .field("grant_type", &self.grant_type)
            .finish()
    }
}

/// The token endpoint's answer.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenAnswer {
    pub access_token: String,
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    pub scope: String,
    pub client_use_code: String,
}

impl std::fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAnswer")
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

// ---- 입금이체 ----

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    pub cntr_account_type: String,
    pub cntr_account_num: String,
    pub wd_pass_phrase: String,
    pub wd_print_content: String,
    pub name_check_option: String,
    pub tran_dtime: String,
    pub req_cnt: String,
    pub req_list: Vec<DepositItem>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositItem {
    pub tran_no: String,
    pub bank_tran_id: String,
    pub bank_code_std: String,
    pub account_num: String,
    pub account_holder_name: String,
    pub print_content: String,
    pub tran_amt: String,
    pub req_client_name: String,
    pub req_client_bank_code: String,
    pub req_client_account_num: String,
    pub req_client_num: String,
    pub transfer_purpose: String,
}

/// The envelope every answer carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub api_tran_id: String,
    pub api_tran_dtm: String,
    pub rsp_code: String,
    pub rsp_message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositAnswer {
    #[serde(flatten)]
    pub envelope: Envelope,
    #[serde(default)]
    pub wd_bank_code_std: String,
    #[serde(default)]
    pub wd_account_num_masked: String,
    #[serde(default)]
    pub wd_account_holder_name: String,
    #[serde(default)]
    pub res_cnt: String,
    #[serde(default)]
    pub res_list: Vec<DepositResult>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositResult {
    pub tran_no: String,
    pub bank_tran_id: String,
    pub bank_tran_date: String,
    pub bank_code_tran: String,
    pub bank_rsp_code: String,
    pub bank_rsp_message: String,
    pub bank_code_std: String,
    pub account_num_masked: String,
    pub account_holder_name: String,
    pub tran_amt: String,
}

// ---- 출금이체 ----

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawRequest {
    pub bank_tran_id: String,
    pub cntr_account_type: String,
    pub cntr_account_num: String,
    pub dps_print_content: String,
    pub wd_bank_code_std: String,
    pub wd_account_num: String,
    pub wd_account_holder_name: String,
    pub wd_print_content: String,
    pub tran_amt: String,
    pub tran_dtime: String,
    pub req_client_name: String,
    pub req_client_bank_code: String,
    pub req_client_account_num: String,
    pub req_client_num: String,
    pub transfer_purpose: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawAnswer {
    #[serde(flatten)]
    pub envelope: Envelope,
    #[serde(default)]
    pub bank_tran_id: String,
    #[serde(default)]
    pub bank_tran_date: String,
    #[serde(default)]
    pub bank_code_tran: String,
    #[serde(default)]
    pub bank_rsp_code: String,
    #[serde(default)]
    pub bank_rsp_message: String,
    #[serde(default)]
    pub dps_account_num_masked: String,
    #[serde(default)]
    pub account_num_masked: String,
    #[serde(default)]
    pub tran_amt: String,
}

// ---- 이체결과조회 ----

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultRequest {
    pub check_type: String,
    pub tran_dtime: String,
    pub req_cnt: String,
    pub req_list: Vec<ResultItem>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultItem {
    pub tran_no: String,
    pub org_bank_tran_id: String,
    pub org_bank_tran_date: String,
    pub org_tran_amt: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultAnswer {
    #[serde(flatten)]
    pub envelope: Envelope,
    #[serde(default)]
    pub res_cnt: String,
    #[serde(default)]
    pub res_list: Vec<ResultLine>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultLine {
    pub tran_no: String,
    pub bank_tran_id: String,
    pub bank_tran_date: String,
    pub bank_code_tran: String,
    pub bank_rsp_code: String,
    pub bank_rsp_message: String,
    pub wd_account_num_masked: String,
    pub dps_account_num_masked: String,
    pub dps_account_holder_name: String,
    pub tran_amt: String,
}

// ---- 잔액조회 (GET) ----

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceQuery {
    pub bank_tran_id: String,
    pub bank_code_std: String,
    pub account_num: String,
    pub tran_dtime: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceAnswer {
    #[serde(flatten)]
    pub envelope: Envelope,
    #[serde(default)]
    pub bank_tran_id: String,
    #[serde(default)]
    pub bank_tran_date: String,
    #[serde(default)]
    pub bank_code_tran: String,
    #[serde(default)]
    pub bank_rsp_code: String,
    #[serde(default)]
    pub bank_rsp_message: String,
    #[serde(default)]
    pub balance_amt: String,
    #[serde(default)]
    pub available_amt: String,
}

// ---- 수취조회 / 계좌실명조회 ----

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealNameRequest {
    pub bank_tran_id: String,
    pub bank_code_std: String,
    pub account_num: String,
    pub account_holder_info_type: String,
    pub account_holder_info: String,
    pub tran_dtime: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealNameAnswer {
    #[serde(flatten)]
    pub envelope: Envelope,
    #[serde(default)]
    pub bank_tran_id: String,
    #[serde(default)]
    pub bank_tran_date: String,
    #[serde(default)]
    pub bank_code_tran: String,
    #[serde(default)]
    pub bank_rsp_code: String,
    #[serde(default)]
    pub bank_rsp_message: String,
    #[serde(default)]
    pub account_num: String,
    #[serde(default)]
    pub account_holder_name: String,
}

// ---- 거래내역조회 (GET, paged) ----

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionsQuery {
    pub bank_tran_id: String,
    pub bank_code_std: String,
    pub account_num: String,
    /// `A` all, `I` in, `O` out.
    pub inquiry_type: String,
    /// `D` by date, `T` by time.
    pub inquiry_base: String,
    pub from_date: String,
    pub to_date: String,
    /// `A` ascending, `D` descending.
    pub sort_order: String,
    pub tran_dtime: String,
    /// The previous page's trace, empty on the first page (the spec's spelling).
    #[serde(default)]
    pub befor_inquiry_trace_info: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionsAnswer {
    #[serde(flatten)]
    pub envelope: Envelope,
    #[serde(default)]
    pub bank_tran_id: String,
    #[serde(default)]
    pub bank_rsp_code: String,
    #[serde(default)]
    pub bank_rsp_message: String,
    #[serde(default)]
    pub page_record_cnt: String,
    /// `Y` when another page follows.
    #[serde(default)]
    pub next_page_yn: String,
    #[serde(default)]
    pub befor_inquiry_trace_info: String,
    #[serde(default)]
    pub res_list: Vec<TransactionLine>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionLine {
    pub tran_date: String,
    pub tran_time: String,
    /// `입금` (in) or `출금` (out).
    pub inout_type: String,
    pub print_content: String,
    pub tran_amt: String,
    pub after_balance_amt: String,
}

// ---- checks shared by every answer ----

/// Checks the envelope: a well-formed `api_tran_id` (the centre's id for this call,
/// kept in our logs for support) and the answer codes through the table.
pub fn check_envelope(envelope: &Envelope, bank_rsp_code: Option<&str>) -> Result<(), BankError> {
    check_api_tran_id(envelope)?;
    tracing::debug!(api_tran_id = %envelope.api_tran_id, rsp_code = %envelope.rsp_code, bank_rsp_code = ?bank_rsp_code, "kftc answer");
    codes::table().classify(&envelope.rsp_code, bank_rsp_code)
}

/// Checks the centre's id of this call is present and well formed.
pub fn check_api_tran_id(envelope: &Envelope) -> Result<(), BankError> {
    let id = &envelope.api_tran_id;
    let id_ok = !id.is_empty()
        && id.chars().count() <= API_TRAN_ID_CHARS_MAX
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !id_ok {
        // Without the centre's id the answer cannot be trusted either way.
        return Err(BankError::Unrecognized {
            status: 200,
            code: format!("api_tran_id {id:?}"),
        });
    }
    Ok(())
}

/// Checks that the bank echoed our `bank_tran_id`; a different id is not our answer.
pub fn check_echo(ours: &BankTranId, echoed: &str) -> Result<(), BankError> {
    if ours.as_str() == echoed {
        Ok(())
    } else {
        Err(BankError::Unrecognized {
            status: 200,
            code: format!("bank_tran_id echoed as {echoed:?}, sent {ours}"),
        })
    }
}

/// `tran_amt` as the wire writes it.
pub fn amount_text(amount: Krw) -> String {
    amount.get().to_string()
}

/// Parses a `tran_amt`-style string of digits.
pub fn parse_amount(field: &str, text: &str) -> Result<Krw, BankError> {
    if text.is_empty() || text.len() > 15 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BankError::Unrecognized {
            status: 200,
            code: format!("{field} {text:?} is not an amount"),
        });
    }
    Krw::parse(text).map_err(|e| BankError::Unrecognized {
        status: 200,
        code: format!("{field}: {e}"),
    })
}

/// Shortens print content to what the wire allows.
pub fn print_content(text: &str) -> String {
    text.chars().take(PRINT_CHARS_MAX).collect()
}

/// Masks an account number as the centre shows it: all but the last three digits
/// of the middle hidden.
pub fn mask_account(account: &AccountNumber) -> String {
    let text = account.as_str();
    let keep_head = 4.min(text.len());
    let keep_tail = 3.min(text.len() - keep_head);
    let hidden = text.len() - keep_head - keep_tail;
    format!(
        "{}{}{}",
        &text[..keep_head],
        "*".repeat(hidden),
        &text[text.len() - keep_tail..]
    )
}

/// True when `masked` (as the centre shows it) can be `account`.
pub fn masked_matches(masked: &str, account: &AccountNumber) -> bool {
    masked.len() == account.as_str().len()
        && masked
            .bytes()
            .zip(account.as_str().bytes())
            .all(|(m, a)| m == b'*' || m == a)
}

/// The holder name as the wire carries it, validated.
pub fn holder(text: &str) -> Result<HolderName, BankError> {
    HolderName::new(text).map_err(|_| BankError::Unrecognized {
        status: 200,
        code: format!("account_holder_name {text:?}"),
    })
}

// ---- KST date-times ----

const KST_OFFSET_MS: i64 = 9 * 60 * 60 * 1_000;

/// `tran_dtime`: `YYYYMMDDhhmmss` in KST.
pub fn tran_dtime(at: Timestamp) -> String {
    let (date, ms_of_day) = kst_parts(at);
    let s = ms_of_day / 1_000;
    format!("{date}{:02}{:02}{:02}", s / 3_600, s / 60 % 60, s % 60)
}

/// `api_tran_dtm`: `YYYYMMDDhhmmssSSS` in KST.
pub fn api_tran_dtm(at: Timestamp) -> String {
    let (_, ms_of_day) = kst_parts(at);
    format!("{}{:03}", tran_dtime(at), ms_of_day % 1_000)
}

fn kst_parts(at: Timestamp) -> (TranDate, i64) {
    let ms_of_day = at
        .unix_ms()
        .saturating_add(KST_OFFSET_MS)
        .rem_euclid(86_400_000);
    (TranDate::from_kst(at), ms_of_day)
}

/// Parses `api_tran_dtm` back to a timestamp; `None` when malformed.
pub fn parse_api_tran_dtm(text: &str) -> Option<Timestamp> {
    if text.len() != 17 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let date = TranDate::parse(&text[0..8]).ok()?;
    let field = |range: std::ops::Range<usize>| text[range].parse::<i64>().ok();
    let (h, m, s, ms) = (
        field(8..10)?,
        field(10..12)?,
        field(12..14)?,
        field(14..17)?,
    );
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    let midnight_kst_ms = days_from_civil(&date.to_string())? * 86_400_000 - KST_OFFSET_MS;
    Some(Timestamp::from_unix_ms(
        midnight_kst_ms + ((h * 60 + m) * 60 + s) * 1_000 + ms,
    ))
}

/// Days since 1970-01-01 of a `YYYYMMDD` date (proleptic Gregorian).
fn days_from_civil(text: &str) -> Option<i64> {
    let year: i64 = text.get(0..4)?.parse().ok()?;
    let month: i64 = text.get(4..6)?.parse().ok()?;
    let day: i64 = text.get(6..8)?.parse().ok()?;
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

/// The simulator's side: the codes it answers for an outcome, from the same table.
pub fn answer_codes(outcome: &Result<(), BankError>) -> (String, String) {
    let table = codes::table();
    let reason = match outcome {
        Ok(()) => "ok",
        Err(error) => error.code(),
    };
    if let Some(bank) = table.code_for(Layer::Bank, reason) {
        let api = if reason == "ok" {
            table.code_for(Layer::Api, "ok")
        } else {
            table.code_for(Layer::Api, "bank")
        };
        // An api-layer row for the same reason wins when the centre itself answers.
        if let Some(api_own) = table
            .code_for(Layer::Api, reason)
            .filter(|_| reason != "ok")
        {
            return (api_own.to_owned(), String::new());
        }
        return (api.unwrap_or("A0002").to_owned(), bank.to_owned());
    }
    match table.code_for(Layer::Api, reason) {
        Some(api) => (api.to_owned(), String::new()),
        // A reason the table has no code for: the simulator says "processing",
        // which every client must treat as unknown.
        None => (
            table
                .code_for(Layer::Api, "bank_processing")
                .unwrap_or("A0001")
                .to_owned(),
            String::new(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kst_date_times_round_trip() {
        // 2025-03-01 09:30:15.250 KST.
        let at = Timestamp::from_unix_ms(1_740_789_015_250);
        assert_eq!(tran_dtime(at), "20250301093015");
        assert_eq!(api_tran_dtm(at), "20250301093015250");
        assert_eq!(parse_api_tran_dtm(&api_tran_dtm(at)), Some(at));
        assert_eq!(parse_api_tran_dtm("2025030109301525"), None);
        assert_eq!(parse_api_tran_dtm("20250301253015250"), None);
    }

    #[test]
    fn masks_hide_the_middle_and_still_match() {
        let account = AccountNumber::new("1002000000002").unwrap();
        let masked = mask_account(&account);
        assert_eq!(masked, "1002******002");
        assert!(masked_matches(&masked, &account));
        assert!(!masked_matches(
            &masked,
            &AccountNumber::new("1002000000003").unwrap()
        ));
    }

    #[test]
    fn the_simulator_answers_the_table_codes() {
        assert_eq!(answer_codes(&Ok(())), ("A0000".into(), "000".into()));
        assert_eq!(
            answer_codes(&Err(BankError::HolderNameMismatch)),
            ("A0002".into(), "815".into())
        );
        assert_eq!(
            answer_codes(&Err(BankError::RateLimited)),
            ("A0019".into(), String::new())
        );
    }
}
