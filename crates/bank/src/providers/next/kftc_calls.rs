//! The `next` provider's KFTC calls: each builds exactly one [`kftc`] request from
//! settle's types and reads its answer back into them. Pure: the time and the
//! inquiry ids are passed in, nothing is sent here.
//!
//! Every answer is checked before it is believed: a well-formed `api_tran_id`, the
//! codes through the table, our `bank_tran_id` echoed, the amount and the (masked)
//! account it went to. An answer that fails a check is outcome unknown.

use money::{Krw, Timestamp};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codes::{self, Class, Layer};
use super::kftc::{self, *};
use crate::providers::{WireMethod, WireRequest, unreadable};
pub use crate::statement::StatementLine;
use crate::transport::KftcSettings;
use crate::types::{
    AccountNumber, BankTranId, TranDate, TransferInquiry, TransferKind, TransferOutcome,
    TransferReceipt, TransferRequest,
};
use crate::wire::error_from_response;
use crate::{BankError, ErrorClass};

fn request<T: Serialize>(
    operation: &'static str,
    path: &'static str,
    method: WireMethod,
    body: &T,
) -> Result<WireRequest, BankError> {
    let body = serde_json::to_value(body)
        .map_err(|error| BankError::InvalidRequest(format!("unencodable {operation}: {error}")))?;
    Ok(WireRequest {
        operation,
        path,
        body,
        method,
        authorized: true,
    })
}

/// Reads an answer: a KFTC envelope whatever the status (the centre answers
/// refusals inside it); anything else goes through the shared HTTP mapping
/// (429 → rate limited, 5xx → unknown).
fn read<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, BankError> {
    match serde_json::from_slice::<T>(body) {
        Ok(answer) => Ok(answer),
        Err(_) if !(200..300).contains(&status) => Err(error_from_response(status, body)),
        Err(error) => Err(unreadable(status, error)),
    }
}

fn wrong(what: String) -> BankError {
    BankError::Unrecognized {
        status: 200,
        code: what,
    }
}

/// `tran_dtime` of a transfer: the caller's business date at the time of day now.
fn transfer_dtime(date: TranDate, now: Timestamp) -> String {
    let now_text = kftc::tran_dtime(now);
    format!("{date}{}", &now_text[8..])
}

pub fn deposit(
    settings: &KftcSettings,
    payout: &TransferRequest,
    now: Timestamp,
) -> Result<WireRequest, BankError> {
    let body = DepositRequest {
        cntr_account_type: CONTRACT_ACCOUNT.to_owned(),
        cntr_account_num: payout.from_account.to_string(),
        wd_pass_phrase: settings.pass_phrase.expose().to_owned(),
        // Both passbooks print the id, so a statement names the transfer.
        wd_print_content: print_content(payout.bank_tran_id.as_str()),
        name_check_option: "on".to_owned(),
        tran_dtime: transfer_dtime(payout.tran_date, now),
        req_cnt: "1".to_owned(),
        req_list: vec![DepositItem {
            tran_no: "1".to_owned(),
            bank_tran_id: payout.bank_tran_id.to_string(),
            bank_code_std: settings.bank_code_std.clone(),
            account_num: payout.to_account.to_string(),
            account_holder_name: payout.holder_name.to_string(),
            print_content: print_content(payout.bank_tran_id.as_str()),
            tran_amt: amount_text(payout.amount_krw),
            // The requesting customer of a payout is settle itself.
            req_client_name: settings.client_name.clone(),
            req_client_bank_code: settings.bank_code_std.clone(),
            req_client_account_num: payout.from_account.to_string(),
            req_client_num: payout.bank_tran_id.as_str()[11..].to_owned(),
            transfer_purpose: "TR".to_owned(),
        }],
    };
    request("kftc_deposit", PATH_DEPOSIT, WireMethod::PostJson, &body)
}

pub fn parse_deposit(
    payout: &TransferRequest,
    status: u16,
    body: &[u8],
) -> Result<TransferReceipt, BankError> {
    let answer: DepositAnswer = read(status, body)?;
    let line = answer.res_list.first();
    kftc::check_envelope(&answer.envelope, line.map(|l| l.bank_rsp_code.as_str()))?;
    let line = line.ok_or_else(|| wrong("a success without res_list".into()))?;
    check_echo(&payout.bank_tran_id, &line.bank_tran_id)?;
    let amount = parse_amount("tran_amt", &line.tran_amt)?;
    if amount != payout.amount_krw || !masked_matches(&line.account_num_masked, &payout.to_account)
    {
        return Err(wrong(format!(
            "answer for {} names {} to {}",
            payout.bank_tran_id, line.tran_amt, line.account_num_masked
        )));
    }
    receipt(TransferKind::Deposit, payout, &answer.envelope)
}

fn receipt(
    kind: TransferKind,
    request: &TransferRequest,
    envelope: &Envelope,
) -> Result<TransferReceipt, BankError> {
    let processed = parse_api_tran_dtm(&envelope.api_tran_dtm)
        .ok_or_else(|| wrong(format!("api_tran_dtm {:?}", envelope.api_tran_dtm)))?;
    Ok(TransferReceipt {
        bank_tran_id: request.bank_tran_id.clone(),
        tran_date: request.tran_date,
        kind,
        from_account: request.from_account.clone(),
        to_account: request.to_account.clone(),
        amount_krw: request.amount_krw,
        processed_at_ms: processed.unix_ms(),
    })
}

pub fn withdraw(
    settings: &KftcSettings,
    pull: &TransferRequest,
    now: Timestamp,
) -> Result<WireRequest, BankError> {
    let body = WithdrawRequest {
        bank_tran_id: pull.bank_tran_id.to_string(),
        cntr_account_type: CONTRACT_ACCOUNT.to_owned(),
        cntr_account_num: pull.to_account.to_string(),
        dps_print_content: print_content(pull.bank_tran_id.as_str()),
        wd_bank_code_std: settings.bank_code_std.clone(),
        wd_account_num: pull.from_account.to_string(),
        wd_account_holder_name: pull.holder_name.to_string(),
        wd_print_content: print_content(pull.bank_tran_id.as_str()),
        tran_amt: amount_text(pull.amount_krw),
        tran_dtime: transfer_dtime(pull.tran_date, now),
        req_client_name: pull.holder_name.to_string(),
        req_client_bank_code: settings.bank_code_std.clone(),
        req_client_account_num: pull.from_account.to_string(),
        req_client_num: pull.bank_tran_id.as_str()[11..].to_owned(),
        transfer_purpose: "TR".to_owned(),
    };
    request("kftc_withdraw", PATH_WITHDRAW, WireMethod::PostJson, &body)
}

pub fn parse_withdraw(
    pull: &TransferRequest,
    status: u16,
    body: &[u8],
) -> Result<TransferReceipt, BankError> {
    let answer: WithdrawAnswer = read(status, body)?;
    kftc::check_envelope(&answer.envelope, Some(&answer.bank_rsp_code))?;
    check_echo(&pull.bank_tran_id, &answer.bank_tran_id)?;
    let amount = parse_amount("tran_amt", &answer.tran_amt)?;
    if amount != pull.amount_krw || !masked_matches(&answer.account_num_masked, &pull.from_account)
    {
        return Err(wrong(format!("answer for {} differs", pull.bank_tran_id)));
    }
    receipt(TransferKind::Withdraw, pull, &answer.envelope)
}

pub fn result(inquiry: &TransferInquiry, now: Timestamp) -> Result<WireRequest, BankError> {
    let original = inquiry.original.as_ref().ok_or_else(|| {
        BankError::InvalidRequest("a KFTC result inquiry names the original transfer".into())
    })?;
    let body = ResultRequest {
        check_type: match original.kind {
            TransferKind::Deposit => CHECK_DEPOSIT,
            TransferKind::Withdraw => CHECK_WITHDRAW,
        }
        .to_owned(),
        tran_dtime: kftc::tran_dtime(now),
        req_cnt: "1".to_owned(),
        req_list: vec![ResultItem {
            tran_no: "1".to_owned(),
            org_bank_tran_id: inquiry.bank_tran_id.to_string(),
            org_bank_tran_date: inquiry.tran_date.to_string(),
            org_tran_amt: amount_text(original.request.amount_krw),
        }],
    };
    request("kftc_result", PATH_RESULT, WireMethod::PostJson, &body)
}

/// Reads a result inquiry. A refusal by the *centre* (a bad inquiry, a rate
/// limit) is an error of this call; a refusal by the *bank* is the original
/// transfer's final answer, [`TransferOutcome::Failed`].
pub fn parse_result(
    inquiry: &TransferInquiry,
    status: u16,
    body: &[u8],
) -> Result<TransferOutcome, BankError> {
    let answer: ResultAnswer = read(status, body)?;
    kftc::check_api_tran_id(&answer.envelope)?;
    let table = codes::table();
    match table.class(Layer::Api, &answer.envelope.rsp_code) {
        Some(Class::Success) | Some(Class::Bank) => {}
        Some(Class::Failure(error)) => return Err(error.clone()),
        None => return Err(wrong(answer.envelope.rsp_code.clone())),
    }
    let line = answer
        .res_list
        .first()
        .ok_or_else(|| wrong("a result answer without res_list".into()))?;
    check_echo(&inquiry.bank_tran_id, &line.bank_tran_id)?;
    match table.classify(&answer.envelope.rsp_code, Some(&line.bank_rsp_code)) {
        Ok(()) => succeeded(inquiry, line, &answer.envelope),
        Err(BankError::TransferNotFound) => Err(BankError::TransferNotFound),
        Err(error) if error.class() == ErrorClass::Refused => Ok(TransferOutcome::Failed {
            code: error.code().to_owned(),
            message: line.bank_rsp_message.clone(),
        }),
        Err(error) => Err(error),
    }
}

fn succeeded(
    inquiry: &TransferInquiry,
    line: &ResultLine,
    envelope: &Envelope,
) -> Result<TransferOutcome, BankError> {
    let original = inquiry
        .original
        .as_ref()
        .ok_or_else(|| wrong("no original to check the answer against".into()))?;
    let sent = &original.request;
    let amount = parse_amount("tran_amt", &line.tran_amt)?;
    let same = amount == sent.amount_krw
        && masked_matches(&line.wd_account_num_masked, &sent.from_account)
        && masked_matches(&line.dps_account_num_masked, &sent.to_account)
        && line.bank_tran_date == inquiry.tran_date.to_string();
    if !same {
        // The bank's record differs from what we sent: never call that "paid".
        return Err(wrong(format!(
            "the bank's record of {} differs",
            inquiry.bank_tran_id
        )));
    }
    Ok(TransferOutcome::Succeeded {
        receipt: receipt(original.kind, sent, envelope)?,
    })
}

pub fn balance(
    settings: &KftcSettings,
    account: &AccountNumber,
    id: &BankTranId,
    now: Timestamp,
) -> Result<WireRequest, BankError> {
    let query = BalanceQuery {
        bank_tran_id: id.to_string(),
        bank_code_std: settings.bank_code_std.clone(),
        account_num: account.to_string(),
        tran_dtime: kftc::tran_dtime(now),
    };
    request("kftc_balance", PATH_BALANCE, WireMethod::GetQuery, &query)
}

pub fn parse_balance(id: &BankTranId, status: u16, body: &[u8]) -> Result<Krw, BankError> {
    let answer: BalanceAnswer = read(status, body)?;
    kftc::check_envelope(&answer.envelope, Some(&answer.bank_rsp_code))?;
    check_echo(id, &answer.bank_tran_id)?;
    parse_amount("balance_amt", &answer.balance_amt)
}

pub fn real_name(
    settings: &KftcSettings,
    account: &AccountNumber,
    id: &BankTranId,
    now: Timestamp,
) -> Result<WireRequest, BankError> {
    let body = RealNameRequest {
        bank_tran_id: id.to_string(),
        bank_code_std: settings.bank_code_std.clone(),
        account_num: account.to_string(),
        account_holder_info_type: " ".to_owned(),
        account_holder_info: String::new(),
        tran_dtime: kftc::tran_dtime(now),
    };
    request(
        "kftc_real_name",
        PATH_REAL_NAME,
        WireMethod::PostJson,
        &body,
    )
}

/// Reads a holder inquiry: the holder's name as the bank has it now.
pub fn parse_real_name(
    id: &BankTranId,
    status: u16,
    body: &[u8],
) -> Result<crate::types::HolderName, BankError> {
    let answer: RealNameAnswer = read(status, body)?;
    kftc::check_envelope(&answer.envelope, Some(&answer.bank_rsp_code))?;
    check_echo(id, &answer.bank_tran_id)?;
    kftc::holder(&answer.account_holder_name)
}

/// One page of 거래내역조회.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionPage {
    pub lines: Vec<StatementLine>,
    /// Pass back to read the next page; `None` on the last page.
    pub next_trace: Option<String>,
}

pub fn transactions(
    settings: &KftcSettings,
    account: &AccountNumber,
    (from, to): (TranDate, TranDate),
    trace: Option<&str>,
    id: &BankTranId,
    now: Timestamp,
) -> Result<WireRequest, BankError> {
    let query = TransactionsQuery {
        bank_tran_id: id.to_string(),
        bank_code_std: settings.bank_code_std.clone(),
        account_num: account.to_string(),
        inquiry_type: "A".to_owned(),
        inquiry_base: "D".to_owned(),
        from_date: from.to_string(),
        to_date: to.to_string(),
        sort_order: "A".to_owned(),
        tran_dtime: kftc::tran_dtime(now),
        befor_inquiry_trace_info: trace.unwrap_or_default().to_owned(),
    };
    request(
        "kftc_transactions",
        PATH_TRANSACTIONS,
        WireMethod::GetQuery,
        &query,
    )
}

pub fn parse_transactions(
    id: &BankTranId,
    status: u16,
    body: &[u8],
) -> Result<TransactionPage, BankError> {
    let answer: TransactionsAnswer = read(status, body)?;
    kftc::check_envelope(&answer.envelope, Some(&answer.bank_rsp_code))?;
    check_echo(id, &answer.bank_tran_id)?;
    if answer.res_list.len() > TRANSACTIONS_PAGE_MAX {
        return Err(wrong(format!(
            "{} lines in one page",
            answer.res_list.len()
        )));
    }
    let lines = answer
        .res_list
        .iter()
        .map(|line| {
            Ok(StatementLine {
                tran_date: TranDate::parse(&line.tran_date)
                    .map_err(|_| wrong("tran_date".into()))?,
                tran_time: line.tran_time.clone(),
                incoming: match line.inout_type.as_str() {
                    "입금" => true,
                    "출금" => false,
                    other => return Err(wrong(format!("inout_type {other:?}"))),
                },
                amount_krw: parse_amount("tran_amt", &line.tran_amt)?,
                balance_after_krw: parse_amount("after_balance_amt", &line.after_balance_amt)?,
                print_content: line.print_content.clone(),
            })
        })
        .collect::<Result<Vec<_>, BankError>>()?;
    let next_trace = (answer.next_page_yn == "Y").then(|| answer.befor_inquiry_trace_info.clone());
    Ok(TransactionPage { lines, next_trace })
}
