//! The "legacy" provider's wire shapes and their conversions: abbreviated camelCase
//! field names, amounts as decimal *strings* of won, dates as `YYYY-MM-DD`, deposit
//! ids as bare sequence numbers, and every business answer as HTTP 200 with a
//! result code (`rsltCd`, `"0000"` = success) instead of an HTTP status.
//!
//! Pure functions and types; no I/O. The simulator's legacy endpoints use the same
//! types, so client and server cannot disagree on the shape.

use money::Krw;
use serde::{Deserialize, Serialize};

use crate::BankError;
use crate::providers::{WireRequest, unreadable};
use crate::types::{
    AccountNumber, BankTranId, DepositId, DepositPage, HolderName, TranDate, TransferInquiry,
    TransferKind, TransferOutcome, TransferReceipt, TransferRequest, UserId, VirtualDeposit,
};
use crate::wire::error_from_response;

pub const PATH_PAYOUT: &str = "/legacy/payout";
pub const PATH_PAYOUT_INQUIRY: &str = "/legacy/payout/inquiry";
pub const PATH_BALANCE: &str = "/legacy/balance";
pub const PATH_VACCT_ISSUE: &str = "/legacy/vacct/issue";
pub const PATH_VACCT_DEPOSIT: &str = "/legacy/vacct/deposit";
pub const PATH_VACCT_DEPOSITS: &str = "/legacy/vacct/deposits";

/// Deposits asked for per page (`cnt`).
pub const DEPOSITS_PAGE_MAX: u32 = 100;

pub const RESULT_OK: &str = "0000";

/// The legacy result code for an error, and back. Codes the legacy bank documents
/// as "system error" or "timeout" stay outcome unknown.
pub fn result_code(error: &BankError) -> &'static str {
    match error {
        BankError::AccountFrozen => "E001",
        BankError::HolderNameMismatch => "E002",
        BankError::OverPerCallLimit { .. } => "E003",
        BankError::InsufficientFunds => "E004",
        BankError::AccountNotFound => "E005",
        BankError::TransferNotFound => "E006",
        BankError::DepositNotFound => "E007",
        BankError::Maintenance => "E009",
        BankError::RateLimited => "E029",
        BankError::Busy | BankError::AuthRejected => "E030",
        BankError::BadTranId(_) | BankError::BadAmount(_) | BankError::InvalidRequest(_) => "E400",
        BankError::Timeout { .. } | BankError::Processing => "E504",
        BankError::Connection(_)
        | BankError::NotSent(_)
        | BankError::Server { .. }
        | BankError::Unrecognized { .. } => "E999",
    }
}

pub fn error_from_result(code: &str, message: &str, limit_amt: Option<&str>) -> BankError {
    match code {
        "E001" => BankError::AccountFrozen,
        "E002" => BankError::HolderNameMismatch,
        "E003" => BankError::OverPerCallLimit {
            limit_krw: limit_amt
                .and_then(|a| Krw::parse(a).ok())
                .map_or(0, Krw::get),
        },
        "E004" => BankError::InsufficientFunds,
        "E005" => BankError::AccountNotFound,
        "E006" => BankError::TransferNotFound,
        "E007" => BankError::DepositNotFound,
        "E009" => BankError::Maintenance,
        "E029" => BankError::RateLimited,
        "E030" => BankError::Busy,
        "E400" => BankError::InvalidRequest(message.to_owned()),
        "E504" => BankError::Timeout { timeout_ms: 0 },
        "E999" => BankError::Server {
            status: 200,
            message: message.to_owned(),
        },
        other => BankError::Unrecognized {
            status: 200,
            code: other.to_owned(),
        },
    }
}

/// `20250301` ↔ `2025-03-01`.
pub fn legacy_date(date: TranDate) -> String {
    let text = date.to_string();
    format!("{}-{}-{}", &text[0..4], &text[4..6], &text[6..8])
}

pub fn parse_legacy_date(text: &str) -> Result<TranDate, BankError> {
    let parts: Vec<&str> = text.split('-').collect();
    match parts.as_slice() {
        [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
            TranDate::parse(&format!("{y}{m}{d}"))
        }
        _ => Err(BankError::InvalidRequest(format!(
            "tranDt {text:?} is not YYYY-MM-DD"
        ))),
    }
}

pub fn parse_amount(text: &str) -> Result<Krw, BankError> {
    Krw::parse(text).map_err(|error| BankError::BadAmount(error.to_string()))
}

/// The result fields every legacy answer carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacyResult {
    pub rslt_cd: String,
    pub rslt_msg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lmt_amt: Option<String>,
}

impl LegacyResult {
    pub fn ok() -> LegacyResult {
        LegacyResult {
            rslt_cd: RESULT_OK.to_owned(),
            rslt_msg: "정상처리".to_owned(),
            lmt_amt: None,
        }
    }

    pub fn from_error(error: &BankError) -> LegacyResult {
        LegacyResult {
            rslt_cd: result_code(error).to_owned(),
            rslt_msg: error.to_string(),
            lmt_amt: error.limit_krw().map(|l| l.to_string()),
        }
    }

    fn into_result(self) -> Result<(), BankError> {
        if self.rslt_cd == RESULT_OK {
            Ok(())
        } else {
            Err(error_from_result(
                &self.rslt_cd,
                &self.rslt_msg,
                self.lmt_amt.as_deref(),
            ))
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayoutReq {
    pub tran_no: String,
    pub tran_dt: String,
    pub out_acct_no: String,
    pub in_acct_no: String,
    pub in_acct_nm: String,
    pub tr_amt: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayoutRes {
    #[serde(flatten)]
    pub result: LegacyResult,
    #[serde(default)]
    pub tran_no: Option<String>,
    #[serde(default)]
    pub tr_amt: Option<String>,
    #[serde(default)]
    pub prcs_tm: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InquiryReq {
    pub tran_no: String,
    pub tran_dt: String,
}

/// `prcsStat`: `"Y"` processed (money moved), `"N"` refused (`errCd` says why).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InquiryRes {
    #[serde(flatten)]
    pub result: LegacyResult,
    #[serde(default)]
    pub prcs_stat: Option<String>,
    #[serde(default)]
    pub err_cd: Option<String>,
    #[serde(default)]
    pub err_msg: Option<String>,
    #[serde(default)]
    pub out_acct_no: Option<String>,
    #[serde(default)]
    pub in_acct_no: Option<String>,
    #[serde(default)]
    pub tr_amt: Option<String>,
    #[serde(default)]
    pub prcs_tm: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BalanceReq {
    pub acct_no: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BalanceRes {
    #[serde(flatten)]
    pub result: LegacyResult,
    #[serde(default)]
    pub bal_amt: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueReq {
    pub cust_id: String,
    pub cust_nm: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueRes {
    #[serde(flatten)]
    pub result: LegacyResult,
    #[serde(default)]
    pub vacct_no: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositReq {
    pub dpst_seq: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositItem {
    pub dpst_seq: i64,
    pub vacct_no: String,
    pub dpst_nm: String,
    pub dpst_amt: String,
    pub rpy_amt: String,
    pub hld_amt: String,
    pub dpst_tm: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositRes {
    #[serde(flatten)]
    pub result: LegacyResult,
    #[serde(default)]
    pub item: Option<DepositItem>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositsReq {
    pub vacct_no: String,
    pub from_seq: i64,
    pub cnt: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepositsRes {
    #[serde(flatten)]
    pub result: LegacyResult,
    #[serde(default)]
    pub list: Vec<DepositItem>,
}

impl DepositItem {
    pub fn from_deposit(deposit: &VirtualDeposit) -> DepositItem {
        DepositItem {
            dpst_seq: deposit.deposit_id.sequence(),
            vacct_no: deposit.account_number.to_string(),
            dpst_nm: deposit.depositor_name.clone(),
            dpst_amt: deposit.amount_krw.get().to_string(),
            rpy_amt: deposit.repayment_krw.get().to_string(),
            hld_amt: deposit.suspended_krw.get().to_string(),
            dpst_tm: deposit.at_ms,
        }
    }

    fn into_deposit(self, status: u16) -> Result<VirtualDeposit, BankError> {
        let bad = |what: &str| unreadable(status, format!("legacy deposit has a bad {what}"));
        Ok(VirtualDeposit {
            deposit_id: DepositId::from_sequence(self.dpst_seq).map_err(|_| bad("dpstSeq"))?,
            account_number: AccountNumber::new(&self.vacct_no).map_err(|_| bad("vacctNo"))?,
            depositor_name: self.dpst_nm,
            amount_krw: parse_amount(&self.dpst_amt).map_err(|_| bad("dpstAmt"))?,
            repayment_krw: parse_amount(&self.rpy_amt).map_err(|_| bad("rpyAmt"))?,
            suspended_krw: parse_amount(&self.hld_amt).map_err(|_| bad("hldAmt"))?,
            cursor: self.dpst_seq,
            at_ms: self.dpst_tm,
        })
    }
}

fn request<T: Serialize>(
    operation: &'static str,
    path: &'static str,
    body: &T,
) -> Result<WireRequest, BankError> {
    let body = serde_json::to_value(body)
        .map_err(|error| BankError::InvalidRequest(format!("unencodable {operation}: {error}")))?;
    Ok(WireRequest {
        operation,
        path,
        body,
        method: crate::providers::WireMethod::PostJson,
        authorized: false,
    })
}

/// Legacy answers business results with HTTP 200; anything else came from a
/// proxy or the server's own limits and goes through the shared mapping.
fn parse<T: serde::de::DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, BankError> {
    if status != 200 {
        return Err(error_from_response(status, body));
    }
    serde_json::from_slice(body).map_err(|error| unreadable(status, error))
}

pub fn payout(payout: &TransferRequest) -> Result<WireRequest, BankError> {
    let body = PayoutReq {
        tran_no: payout.bank_tran_id.to_string(),
        tran_dt: legacy_date(payout.tran_date),
        out_acct_no: payout.from_account.to_string(),
        in_acct_no: payout.to_account.to_string(),
        in_acct_nm: payout.holder_name.to_string(),
        tr_amt: payout.amount_krw.get().to_string(),
    };
    request("legacy_payout", PATH_PAYOUT, &body)
}

pub fn parse_payout(
    payout: &TransferRequest,
    status: u16,
    body: &[u8],
) -> Result<TransferReceipt, BankError> {
    let answer: PayoutRes = parse(status, body)?;
    answer.result.into_result()?;
    // A success that does not echo our id and amount is not a success we can trust.
    let amount = answer.tr_amt.as_deref().map(parse_amount).transpose();
    if answer.tran_no.as_deref() != Some(payout.bank_tran_id.as_str())
        || amount.ok().flatten() != Some(payout.amount_krw)
    {
        return Err(unreadable(
            status,
            "legacy payout echo does not match the request",
        ));
    }
    Ok(TransferReceipt {
        bank_tran_id: payout.bank_tran_id.clone(),
        tran_date: payout.tran_date,
        kind: TransferKind::Deposit,
        from_account: payout.from_account.clone(),
        to_account: payout.to_account.clone(),
        amount_krw: payout.amount_krw,
        processed_at_ms: answer.prcs_tm.unwrap_or(0),
    })
}

pub fn payout_result(inquiry: &TransferInquiry) -> Result<WireRequest, BankError> {
    let body = InquiryReq {
        tran_no: inquiry.bank_tran_id.to_string(),
        tran_dt: legacy_date(inquiry.tran_date),
    };
    request("legacy_payout_result", PATH_PAYOUT_INQUIRY, &body)
}

pub fn parse_payout_result(
    inquiry: &TransferInquiry,
    status: u16,
    body: &[u8],
) -> Result<TransferOutcome, BankError> {
    let answer: InquiryRes = parse(status, body)?;
    answer.result.into_result()?;
    let bad = |what: &str| unreadable(status, format!("legacy inquiry has a bad {what}"));
    match answer.prcs_stat.as_deref() {
        Some("Y") => Ok(TransferOutcome::Succeeded {
            receipt: TransferReceipt {
                bank_tran_id: inquiry.bank_tran_id.clone(),
                tran_date: inquiry.tran_date,
                kind: TransferKind::Deposit,
                from_account: AccountNumber::new(answer.out_acct_no.as_deref().unwrap_or(""))
                    .map_err(|_| bad("outAcctNo"))?,
                to_account: AccountNumber::new(answer.in_acct_no.as_deref().unwrap_or(""))
                    .map_err(|_| bad("inAcctNo"))?,
                amount_krw: parse_amount(answer.tr_amt.as_deref().unwrap_or(""))
                    .map_err(|_| bad("trAmt"))?,
                processed_at_ms: answer.prcs_tm.unwrap_or(0),
            },
        }),
        Some("N") => {
            let code = answer.err_cd.unwrap_or_default();
            let message = answer.err_msg.unwrap_or_default();
            let error = error_from_result(&code, &message, None);
            if error.is_outcome_unknown() {
                return Err(bad("errCd"));
            }
            Ok(TransferOutcome::Failed {
                code: error.code().to_owned(),
                message,
            })
        }
        _ => Err(bad("prcsStat")),
    }
}

pub fn get_balance(account: &AccountNumber) -> Result<WireRequest, BankError> {
    request(
        "legacy_balance",
        PATH_BALANCE,
        &BalanceReq {
            acct_no: account.to_string(),
        },
    )
}

pub fn parse_balance(status: u16, body: &[u8]) -> Result<Krw, BankError> {
    let answer: BalanceRes = parse(status, body)?;
    answer.result.into_result()?;
    parse_amount(answer.bal_amt.as_deref().unwrap_or(""))
        .map_err(|_| unreadable(status, "legacy balance has a bad balAmt"))
}

pub fn issue_account(user: UserId, holder: &HolderName) -> Result<WireRequest, BankError> {
    let body = IssueReq {
        cust_id: user.to_string(),
        cust_nm: holder.to_string(),
    };
    request("legacy_issue_account", PATH_VACCT_ISSUE, &body)
}

pub fn parse_issue_account(status: u16, body: &[u8]) -> Result<AccountNumber, BankError> {
    let answer: IssueRes = parse(status, body)?;
    answer.result.into_result()?;
    AccountNumber::new(answer.vacct_no.as_deref().unwrap_or(""))
        .map_err(|_| unreadable(status, "legacy issue has a bad vacctNo"))
}

pub fn get_deposit(deposit: &DepositId) -> Result<WireRequest, BankError> {
    request(
        "legacy_get_deposit",
        PATH_VACCT_DEPOSIT,
        &DepositReq {
            dpst_seq: deposit.sequence(),
        },
    )
}

pub fn parse_get_deposit(status: u16, body: &[u8]) -> Result<VirtualDeposit, BankError> {
    let answer: DepositRes = parse(status, body)?;
    answer.result.into_result()?;
    answer
        .item
        .ok_or_else(|| unreadable(status, "legacy deposit answer has no item"))?
        .into_deposit(status)
}

pub fn list_deposits(account: &AccountNumber, since_cursor: i64) -> Result<WireRequest, BankError> {
    let body = DepositsReq {
        vacct_no: account.to_string(),
        from_seq: since_cursor,
        cnt: DEPOSITS_PAGE_MAX,
    };
    request("legacy_list_deposits", PATH_VACCT_DEPOSITS, &body)
}

pub fn parse_list_deposits(
    since_cursor: i64,
    status: u16,
    body: &[u8],
) -> Result<DepositPage, BankError> {
    let answer: DepositsRes = parse(status, body)?;
    answer.result.into_result()?;
    let deposits = answer
        .list
        .into_iter()
        .map(|item| item.into_deposit(status))
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = deposits.last().map_or(since_cursor, |d| d.cursor);
    Ok(DepositPage {
        deposits,
        next_cursor,
    })
}

/// Parses a legacy payout request on the simulator's side.
pub fn payout_request_from_wire(req: PayoutReq) -> Result<TransferRequest, BankError> {
    Ok(TransferRequest {
        bank_tran_id: BankTranId::new(&req.tran_no)?,
        tran_date: parse_legacy_date(&req.tran_dt)?,
        from_account: AccountNumber::new(&req.out_acct_no)?,
        to_account: AccountNumber::new(&req.in_acct_no)?,
        holder_name: HolderName::new(&req.in_acct_nm)?,
        amount_krw: parse_amount(&req.tr_amt)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_codes_round_trip_and_system_errors_stay_unknown() {
        for error in [
            BankError::AccountFrozen,
            BankError::HolderNameMismatch,
            BankError::OverPerCallLimit { limit_krw: 100_000 },
            BankError::InsufficientFunds,
            BankError::Maintenance,
        ] {
            let result = LegacyResult::from_error(&error);
            assert_eq!(
                error_from_result(&result.rslt_cd, &result.rslt_msg, result.lmt_amt.as_deref()),
                error
            );
        }
        assert!(error_from_result("E999", "boom", None).is_outcome_unknown());
        assert!(error_from_result("E123", "new code", None).is_outcome_unknown());
    }

    #[test]
    fn legacy_dates_and_amounts_are_strings() {
        let date = TranDate::parse("20250301").unwrap();
        assert_eq!(legacy_date(date), "2025-03-01");
        assert_eq!(parse_legacy_date("2025-03-01").unwrap(), date);
        assert!(parse_legacy_date("20250301").is_err());
        assert_eq!(parse_amount("100000").unwrap(), Krw::new(100_000));
        assert_eq!(parse_amount("1.5").unwrap_err().code(), "bad_amount");
    }
}
