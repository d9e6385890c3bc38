//! The "legacy" provider's virtual-account extension endpoints (issue, list and
//! read deposits): not part of the NH developer-centre calls settle uses, so they
//! keep the provider's own shape — abbreviated camelCase field names, amounts as
//! decimal *strings* of won, deposit ids as bare sequence numbers, and every
//! business answer as HTTP 200 with a result code (`rsltCd`, an `Rpcd` of the NH
//! code table: `00000` = success). Money and inquiry calls are NH, in
//! [`super::nh_calls`].
//!
//! Pure functions and types; no I/O. The simulator's endpoints use the same
//! types, so client and server cannot disagree on the shape.

use money::Krw;
use serde::{Deserialize, Serialize};

use super::codes;
use crate::BankError;
use crate::providers::{WireRequest, unreadable};
use crate::types::{AccountNumber, DepositId, DepositPage, HolderName, UserId, VirtualDeposit};
use crate::wire::error_from_response;

pub const PATH_VACCT_ISSUE: &str = "/legacy/vacct/issue";
pub const PATH_VACCT_DEPOSIT: &str = "/legacy/vacct/deposit";
pub const PATH_VACCT_DEPOSITS: &str = "/legacy/vacct/deposits";

/// Deposits asked for per page (`cnt`).
pub const DEPOSITS_PAGE_MAX: u32 = 100;

pub fn parse_amount(text: &str) -> Result<Krw, BankError> {
    Krw::parse(text).map_err(|error| BankError::BadAmount(error.to_string()))
}

/// The result fields every extension answer carries: `rsltCd` is an `Rpcd` of
/// the same code table as the NH wire ([`super::codes`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacyResult {
    pub rslt_cd: String,
    pub rslt_msg: String,
}

impl LegacyResult {
    pub fn ok() -> LegacyResult {
        LegacyResult::of(&Ok(()))
    }

    pub fn from_error(error: &BankError) -> LegacyResult {
        LegacyResult::of(&Err(error.clone()))
    }

    fn of(outcome: &Result<(), BankError>) -> LegacyResult {
        LegacyResult {
            rslt_cd: codes::answer_code(outcome),
            rslt_msg: match outcome {
                Ok(()) => "정상처리".to_owned(),
                Err(error) => error.to_string(),
            },
        }
    }

    fn into_result(self) -> Result<(), BankError> {
        codes::table().classify(&self.rslt_cd)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_results_use_the_code_table() {
        for error in [
            BankError::AccountNotFound,
            BankError::DepositNotFound,
            BankError::Maintenance,
        ] {
            assert_eq!(LegacyResult::from_error(&error).into_result(), Err(error));
        }
        assert_eq!(LegacyResult::ok().into_result(), Ok(()));
        assert_eq!(parse_amount("100000").unwrap(), Krw::new(100_000));
        assert_eq!(parse_amount("1.5").unwrap_err().code(), "bad_amount");
    }
}
