//! The `legacy` provider's NH-style calls: each builds exactly one [`nh`] request
//! from settle's types and reads its answer back into them. Pure: the time and the
//! inquiry numbers are passed in, nothing is sent here.
//!
//! Every answer is checked before it is believed: the header must echo our call,
//! our `IsTuno` and our institution, the `Rpcd` goes through the code table, and a
//! success must name the amount and accounts we sent. An answer that fails a check
//! is outcome unknown.

use money::{Krw, Timestamp};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::nh::{self, *};
use crate::providers::{WireMethod, WireRequest, unreadable};
use crate::statement::StatementLine;
use crate::transport::LegacySettings;
use crate::types::{
    AccountNumber, BankTranId, HolderName, TranDate, TransferInquiry, TransferKind,
    TransferOutcome, TransferReceipt, TransferRequest,
};
use crate::wire::error_from_response;
use crate::{BankError, ErrorClass};

fn request<T: Serialize>(call: Call, body: &T) -> Result<WireRequest, BankError> {
    let body = serde_json::to_value(body)
        .map_err(|error| BankError::InvalidRequest(format!("unencodable {}: {error}", call.api)))?;
    Ok(WireRequest {
        operation: call.api,
        path: call.path,
        body,
        method: WireMethod::PostJson,
        authorized: false,
    })
}

/// The header of one request: `IsTuno` is `id`, the date and time are given.
fn header(
    settings: &LegacySettings,
    call: Call,
    id: &BankTranId,
    tsymd: &str,
    trtm: &str,
) -> RequestHeader {
    RequestHeader {
        api_nm: call.api.to_owned(),
        tsymd: tsymd.to_owned(),
        trtm: trtm.to_owned(),
        iscd: settings.iscd.clone(),
        fintech_apsno: settings.fintech_apsno.clone(),
        api_svc_cd: call.service.to_owned(),
        is_tuno: id.to_string(),
        access_token: settings.access_token.expose().to_owned(),
    }
}

/// The header of an inquiry sent `now`.
fn inquiry_header(
    settings: &LegacySettings,
    call: Call,
    id: &BankTranId,
    now: Timestamp,
) -> RequestHeader {
    let (tsymd, trtm) = kst_date_time(now);
    header(settings, call, id, &tsymd, &trtm)
}

/// Reads an answer: NH answers business results with HTTP 200 and a header;
/// anything else came from a proxy or the server's own limits and goes through
/// the shared mapping (429 → rate limited, 5xx → unknown).
fn read<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, BankError> {
    if status != 200 {
        return Err(error_from_response(status, body));
    }
    serde_json::from_slice(body).map_err(|error| unreadable(status, error))
}

fn wrong(what: String) -> BankError {
    BankError::Unrecognized {
        status: 200,
        code: what,
    }
}

/// The deposit call for the bank settle pays into.
fn deposit_call(settings: &LegacySettings) -> Call {
    if NH_BANK_CODES.contains(&settings.bank_code.as_str()) {
        DEPOSIT_NH
    } else {
        DEPOSIT_OTHER
    }
}

fn holder_call(settings: &LegacySettings) -> Call {
    if NH_BANK_CODES.contains(&settings.bank_code.as_str()) {
        HOLDER_NH
    } else {
        HOLDER_OTHER
    }
}

/// 입금이체: from settle's contracted account into `payout.to_account`.
pub fn deposit(
    settings: &LegacySettings,
    payout: &TransferRequest,
    now: Timestamp,
) -> Result<WireRequest, BankError> {
    let call = deposit_call(settings);
    let (_, trtm) = kst_date_time(now);
    let body = DepositRequest {
        header: header(
            settings,
            call,
            &payout.bank_tran_id,
            &payout.tran_date.to_string(),
            &trtm,
        ),
        bncd: settings.bank_code.clone(),
        acno: payout.to_account.to_string(),
        tram: amount_text(payout.amount_krw),
        // Both passbooks print the id, so a statement names the transfer.
        dract_otlt: print_content(payout.bank_tran_id.as_str()),
        mract_otlt: print_content(payout.bank_tran_id.as_str()),
        dract_acno: payout.from_account.to_string(),
    };
    request(call, &body)
}

pub fn parse_deposit(
    settings: &LegacySettings,
    payout: &TransferRequest,
    status: u16,
    body: &[u8],
) -> Result<TransferReceipt, BankError> {
    let answer: HeaderAnswer = read(status, body)?;
    let sent = header(
        settings,
        deposit_call(settings),
        &payout.bank_tran_id,
        "",
        "",
    );
    check_answer(&sent, &answer.header)?;
    receipt(TransferKind::Deposit, payout, &answer.header)
}

fn receipt(
    kind: TransferKind,
    request: &TransferRequest,
    answer: &AnswerHeader,
) -> Result<TransferReceipt, BankError> {
    let processed = parse_date_time(&answer.tsymd, &answer.trtm)
        .ok_or_else(|| wrong(format!("Tsymd/Trtm {:?} {:?}", answer.tsymd, answer.trtm)))?;
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

/// 출금이체: from a consenting user's account into settle's contracted account.
pub fn withdraw(
    settings: &LegacySettings,
    pull: &TransferRequest,
    now: Timestamp,
) -> Result<WireRequest, BankError> {
    let (_, trtm) = kst_date_time(now);
    let body = WithdrawRequest {
        header: header(
            settings,
            WITHDRAW,
            &pull.bank_tran_id,
            &pull.tran_date.to_string(),
            &trtm,
        ),
        fin_acno: pull.from_account.to_string(),
        tram: amount_text(pull.amount_krw),
        dract_otlt: print_content(pull.bank_tran_id.as_str()),
        mract_otlt: print_content(pull.bank_tran_id.as_str()),
        mract_acno: pull.to_account.to_string(),
    };
    request(WITHDRAW, &body)
}

pub fn parse_withdraw(
    settings: &LegacySettings,
    pull: &TransferRequest,
    status: u16,
    body: &[u8],
) -> Result<TransferReceipt, BankError> {
    let answer: WithdrawAnswer = read(status, body)?;
    let sent = header(settings, WITHDRAW, &pull.bank_tran_id, "", "");
    check_answer(&sent, &answer.header)?;
    if answer.fin_acno != pull.from_account.as_str() {
        return Err(wrong(format!(
            "answer for {} names FinAcno {}",
            pull.bank_tran_id, answer.fin_acno
        )));
    }
    receipt(TransferKind::Withdraw, pull, &answer.header)
}

/// 이체결과조회 of the transfer `inquiry` names (its original is required: the
/// inquiry names the call and amount). `id` is this inquiry's own `IsTuno`.
pub fn result(
    settings: &LegacySettings,
    inquiry: &TransferInquiry,
    id: &BankTranId,
    now: Timestamp,
) -> Result<WireRequest, BankError> {
    let original = inquiry.original.as_ref().ok_or_else(|| {
        BankError::InvalidRequest("a legacy result inquiry names the original transfer".into())
    })?;
    let body = ResultRequest {
        header: inquiry_header(settings, RESULT, id, now),
        org_api_nm: match original.kind {
            TransferKind::Deposit => deposit_call(settings).api,
            TransferKind::Withdraw => WITHDRAW.api,
        }
        .to_owned(),
        org_is_tuno: inquiry.bank_tran_id.to_string(),
        org_tsymd: inquiry.tran_date.to_string(),
        tram: amount_text(original.request.amount_krw),
    };
    request(RESULT, &body)
}

/// Reads a result inquiry. A refusal of the *inquiry* (not found, a rate limit)
/// is an error of this call; the original's refusal is its final answer,
/// [`TransferOutcome::Failed`].
pub fn parse_result(
    settings: &LegacySettings,
    inquiry: &TransferInquiry,
    id: &BankTranId,
    status: u16,
    body: &[u8],
) -> Result<TransferOutcome, BankError> {
    let answer: ResultAnswer = read(status, body)?;
    check_answer(&header(settings, RESULT, id, "", ""), &answer.header)?;
    if answer.org_is_tuno != inquiry.bank_tran_id.as_str() {
        return Err(wrong(format!(
            "OrgIsTuno echoed as {:?}",
            answer.org_is_tuno
        )));
    }
    match super::codes::table().classify(&answer.org_rpcd) {
        Ok(()) => succeeded(inquiry, &answer),
        Err(error) if error.class() == ErrorClass::Refused => Ok(TransferOutcome::Failed {
            code: error.code().to_owned(),
            message: answer.org_rsms.clone(),
        }),
        Err(error) => Err(error),
    }
}

fn succeeded(
    inquiry: &TransferInquiry,
    answer: &ResultAnswer,
) -> Result<TransferOutcome, BankError> {
    let original = inquiry
        .original
        .as_ref()
        .ok_or_else(|| wrong("no original to check the answer against".into()))?;
    let sent = &original.request;
    let same = parse_amount("Tram", &answer.tram)? == sent.amount_krw
        && answer.dract_acno == sent.from_account.as_str()
        && answer.mract_acno == sent.to_account.as_str();
    if !same {
        // The bank's record differs from what we sent: never call that "paid".
        return Err(wrong(format!(
            "the bank's record of {} differs",
            inquiry.bank_tran_id
        )));
    }
    let processed = parse_date_time(&answer.header.tsymd, &answer.header.trtm)
        .ok_or_else(|| wrong("Tsymd/Trtm".into()))?;
    Ok(TransferOutcome::Succeeded {
        receipt: TransferReceipt {
            bank_tran_id: inquiry.bank_tran_id.clone(),
            tran_date: inquiry.tran_date,
            kind: original.kind,
            from_account: sent.from_account.clone(),
            to_account: sent.to_account.clone(),
            amount_krw: sent.amount_krw,
            processed_at_ms: processed.unix_ms(),
        },
    })
}

/// 잔액조회 (`FinAcno` carries the account number: assumed, see [`nh`]).
pub fn balance(
    settings: &LegacySettings,
    account: &AccountNumber,
    id: &BankTranId,
    now: Timestamp,
) -> Result<WireRequest, BankError> {
    let body = BalanceRequest {
        header: inquiry_header(settings, BALANCE, id, now),
        fin_acno: account.to_string(),
    };
    request(BALANCE, &body)
}

/// The ledger balance (`Ldbl`) of the account asked.
pub fn parse_balance(
    settings: &LegacySettings,
    account: &AccountNumber,
    id: &BankTranId,
    status: u16,
    body: &[u8],
) -> Result<Krw, BankError> {
    let answer: BalanceAnswer = read(status, body)?;
    check_answer(&header(settings, BALANCE, id, "", ""), &answer.header)?;
    if answer.fin_acno != account.as_str() {
        return Err(wrong(format!("FinAcno echoed as {:?}", answer.fin_acno)));
    }
    parse_amount("Ldbl", &answer.ldbl)
}

/// 예금주조회.
pub fn holder(
    settings: &LegacySettings,
    account: &AccountNumber,
    id: &BankTranId,
    now: Timestamp,
) -> Result<WireRequest, BankError> {
    let call = holder_call(settings);
    let body = HolderRequest {
        header: inquiry_header(settings, call, id, now),
        bncd: settings.bank_code.clone(),
        acno: account.to_string(),
    };
    request(call, &body)
}

/// The holder's name of the account asked, as the bank has it now.
pub fn parse_holder(
    settings: &LegacySettings,
    account: &AccountNumber,
    id: &BankTranId,
    status: u16,
    body: &[u8],
) -> Result<HolderName, BankError> {
    let answer: HolderAnswer = read(status, body)?;
    check_answer(
        &header(settings, holder_call(settings), id, "", ""),
        &answer.header,
    )?;
    if answer.acno != account.as_str() {
        return Err(wrong(format!("Acno echoed as {:?}", answer.acno)));
    }
    nh::holder(&answer.dpnm)
}

/// One page of 거래내역조회.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryPage {
    pub lines: Vec<StatementLine>,
    /// The page to ask next; `None` on the last page.
    pub next_page: Option<u32>,
}

/// 거래내역조회 of `account` between two dates, oldest first, page `page_no` (1…).
pub fn history(
    settings: &LegacySettings,
    account: &AccountNumber,
    (from, to): (TranDate, TranDate),
    page_no: u32,
    id: &BankTranId,
    now: Timestamp,
) -> Result<WireRequest, BankError> {
    if !(1..=HISTORY_PAGE_NO_MAX).contains(&page_no) {
        return Err(BankError::InvalidRequest(format!("PageNo {page_no}")));
    }
    let body = HistoryRequest {
        header: inquiry_header(settings, HISTORY, id, now),
        bncd: settings.bank_code.clone(),
        acno: account.to_string(),
        insymd: from.to_string(),
        ineymd: to.to_string(),
        trns_dsnc: "A".to_owned(),
        lnsq: "ASC".to_owned(),
        page_no: page_no.to_string(),
        dmcnt: HISTORY_PAGE_MAX.to_string(),
    };
    request(HISTORY, &body)
}

pub fn parse_history(
    settings: &LegacySettings,
    page_no: u32,
    id: &BankTranId,
    status: u16,
    body: &[u8],
) -> Result<HistoryPage, BankError> {
    let answer: HistoryAnswer = read(status, body)?;
    check_answer(&header(settings, HISTORY, id, "", ""), &answer.header)?;
    if answer.rec.len() > HISTORY_PAGE_MAX as usize {
        return Err(wrong(format!("{} lines in one page", answer.rec.len())));
    }
    // A cancelled line (`Ccyn` 1) moved no money; the bank lists it for the passbook.
    let lines = answer
        .rec
        .iter()
        .filter(|line| line.ccyn != "1")
        .map(statement_line)
        .collect::<Result<Vec<_>, BankError>>()?;
    let next_page = match answer.ctnt_data_yn.as_str() {
        "Y" if page_no < HISTORY_PAGE_NO_MAX => Some(page_no + 1),
        "Y" => return Err(wrong("more pages than PageNo can name".into())),
        _ => None,
    };
    Ok(HistoryPage { lines, next_page })
}

fn statement_line(line: &HistoryLine) -> Result<StatementLine, BankError> {
    Ok(StatementLine {
        tran_date: TranDate::parse(&line.trdd)
            .map_err(|_| wrong(format!("Trdd {:?}", line.trdd)))?,
        tran_time: line.txtm.clone(),
        incoming: match line.mnrc_drot_dsnc.as_str() {
            "1" | "2" => true,
            "3" | "4" => false,
            other => return Err(wrong(format!("MnrcDrotDsnc {other:?}"))),
        },
        amount_krw: parse_amount("Tram", &line.tram)?,
        balance_after_krw: parse_amount("AftrBlnc", &line.aftr_blnc)?,
        print_content: line.bnpr_cntn.clone(),
    })
}
