//! The simulator's endpoints in the NH-style wire of the `legacy` connector
//! (`POST /<ApiNm>.nh`), written and read with the connector's own types
//! ([`crate::providers::legacy::nh`]) and answering the codes of the same table.
//! Every answer is HTTP 200 with the request's header echoed and an `Rpcd`; a
//! request whose header does not parse is answered with an empty header (the
//! caller reads that as "not our answer", outcome unknown).
//!
//! These handlers only translate; every decision is the [`super::Simulator`]'s, so
//! this wire, the KFTC wire and the native one see the same accounts and faults.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use money::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::history::{Window, account_lines};
use super::server::{SimServer, run_transfer};
use crate::providers::legacy::codes;
use crate::providers::legacy::nh::{self, *};
use crate::transport::SIMULATOR_LEGACY_ACCESS_TOKEN;
use crate::types::{
    AccountNumber, AccountRequest, BankTranId, HolderName, TranDate, TransferKind, TransferRequest,
};
use crate::{BankApi, BankError};

/// The name the simulator records for a transfer to an account it does not know
/// (the transfer is then refused as `account_not_found`).
const UNKNOWN_HOLDER: &str = "미상";

pub(super) fn routes() -> Router<SimServer> {
    Router::new()
        .route(DEPOSIT_NH.path, post(deposit_nh))
        .route(DEPOSIT_OTHER.path, post(deposit_other))
        .route(WITHDRAW.path, post(withdraw))
        .route(RESULT.path, post(result))
        .route(BALANCE.path, post(balance))
        .route(HOLDER_NH.path, post(holder_nh))
        .route(HOLDER_OTHER.path, post(holder_other))
        .route(HISTORY.path, post(history))
}

fn reply<T: Serialize>(answer: T) -> Response {
    Json(answer).into_response()
}

/// A header-only answer to `sent` with the code of `error`.
fn refuse(sent: &RequestHeader, error: BankError) -> Response {
    reply(HeaderAnswer {
        header: AnswerHeader::answering(sent, &Err(error)),
    })
}

/// Parses a strict request of call `call` and checks its header. `Err` is the
/// answer: the refusal, echoing whatever header could be read.
fn parse<T: DeserializeOwned>(
    call: Call,
    body: Result<Bytes, BytesRejection>,
    header_of: fn(&T) -> &RequestHeader,
) -> Result<T, Box<Response>> {
    let malformed = |detail: String| BankError::InvalidRequest(detail);
    let refused = |header: &RequestHeader, error: BankError| Box::new(refuse(header, error));
    let bytes =
        body.map_err(|r| refused(&RequestHeader::default_for(call), malformed(r.body_text())))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| refused(&RequestHeader::default_for(call), malformed(e.to_string())))?;
    let header: RequestHeader = value
        .get("Header")
        .and_then(|h| serde_json::from_value(h.clone()).ok())
        .ok_or_else(|| {
            Box::new(reply(HeaderAnswer {
                header: AnswerHeader::default(),
            }))
        })?;
    let request: T =
        serde_json::from_value(value).map_err(|e| refused(&header, malformed(e.to_string())))?;
    check_header(call, header_of(&request)).map_err(|error| refused(&header, error))?;
    Ok(request)
}

/// The bank's checks of a header: its call, service, token and fields.
fn check_header(call: Call, header: &RequestHeader) -> Result<(), BankError> {
    if header.access_token != SIMULATOR_LEGACY_ACCESS_TOKEN {
        return Err(BankError::CredentialsRefused("AccessToken".into()));
    }
    let digits =
        |text: &str, len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_digit());
    let fields_ok = header.api_nm == call.api
        && header.api_svc_cd == call.service
        && !header.iscd.is_empty()
        && !header.fintech_apsno.is_empty()
        && digits(&header.trtm, 6)
        && TranDate::parse(&header.tsymd).is_ok();
    if !fields_ok {
        return Err(BankError::InvalidRequest(format!("header of {}", call.api)));
    }
    if header.is_tuno.is_empty() {
        return Err(BankError::BadTranId("IsTuno is empty".into()));
    }
    Ok(())
}

impl RequestHeader {
    /// An empty header naming `call`, to echo when the request's own is unreadable.
    fn default_for(call: Call) -> RequestHeader {
        RequestHeader {
            api_nm: call.api.to_owned(),
            tsymd: String::new(),
            trtm: String::new(),
            iscd: String::new(),
            fintech_apsno: String::new(),
            api_svc_cd: call.service.to_owned(),
            is_tuno: String::new(),
            access_token: String::new(),
        }
    }
}

/// The current holder of `account`, or a placeholder when it does not exist.
async fn holder_of(server: &SimServer, account: &AccountNumber) -> Result<HolderName, BankError> {
    match server.sim.holder_of(account).await? {
        Some(holder) => Ok(holder),
        None => HolderName::new(UNKNOWN_HOLDER),
    }
}

async fn deposit_nh(
    State(server): State<SimServer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    deposit(server, DEPOSIT_NH, body).await
}

async fn deposit_other(
    State(server): State<SimServer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    deposit(server, DEPOSIT_OTHER, body).await
}

async fn deposit(server: SimServer, call: Call, body: Result<Bytes, BytesRejection>) -> Response {
    let req: DepositRequest = match parse(call, body, |r: &DepositRequest| &r.header) {
        Ok(req) => req,
        Err(answer) => return *answer,
    };
    let is_nh = NH_BANK_CODES.contains(&req.bncd.as_str());
    if is_nh != (call == DEPOSIT_NH) {
        return refuse(
            &req.header,
            BankError::InvalidRequest(format!("Bncd {} on {}", req.bncd, call.api)),
        );
    }
    let parsed = async {
        let (bank_tran_id, tran_date, amount_krw) = transfer_fields(&req.header, &req.tram)?;
        let to_account = nh::account(&req.acno)?;
        Ok::<_, BankError>(TransferRequest {
            bank_tran_id,
            tran_date,
            from_account: nh::account(&req.dract_acno)?,
            holder_name: holder_of(&server, &to_account).await?,
            to_account,
            amount_krw,
        })
    }
    .await;
    let request = match parsed {
        Ok(request) => request,
        Err(error) => return refuse(&req.header, error),
    };
    let outcome = run_transfer(&server, TransferKind::Deposit, &request).await;
    reply(HeaderAnswer {
        header: AnswerHeader::answering(&req.header, &outcome.map(|_| ())),
    })
}

async fn withdraw(
    State(server): State<SimServer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: WithdrawRequest = match parse(WITHDRAW, body, |r: &WithdrawRequest| &r.header) {
        Ok(req) => req,
        Err(answer) => return *answer,
    };
    let parsed = async {
        let (bank_tran_id, tran_date, amount_krw) = transfer_fields(&req.header, &req.tram)?;
        let from_account = nh::account(&req.fin_acno)?;
        Ok::<_, BankError>(TransferRequest {
            bank_tran_id,
            tran_date,
            holder_name: holder_of(&server, &from_account).await?,
            from_account,
            to_account: nh::account(&req.mract_acno)?,
            amount_krw,
        })
    }
    .await;
    let request = match parsed {
        Ok(request) => request,
        Err(error) => return refuse(&req.header, error),
    };
    match run_transfer(&server, TransferKind::Withdraw, &request).await {
        Ok(_) => reply(WithdrawAnswer {
            header: AnswerHeader::answering(&req.header, &Ok(())),
            fin_acno: req.fin_acno.clone(),
            rgsn_ymd: req.header.tsymd.clone(),
        }),
        Err(error) => refuse(&req.header, error),
    }
}

async fn result(State(server): State<SimServer>, body: Result<Bytes, BytesRejection>) -> Response {
    let req: ResultRequest = match parse(RESULT, body, |r: &ResultRequest| &r.header) {
        Ok(req) => req,
        Err(answer) => return *answer,
    };
    let kind = if req.org_api_nm == WITHDRAW.api {
        TransferKind::Withdraw
    } else if req.org_api_nm == DEPOSIT_NH.api || req.org_api_nm == DEPOSIT_OTHER.api {
        TransferKind::Deposit
    } else {
        return refuse(&req.header, BankError::InvalidRequest("OrgApiNm".into()));
    };
    let id = match BankTranId::new(&req.org_is_tuno) {
        Ok(id) => id,
        Err(error) => return refuse(&req.header, error),
    };
    if let Err(error) = server.sim.enter_plain_call().await {
        return refuse(&req.header, error);
    }
    let stored = match super::db::find_transfer(&server.sim.store, &id).await {
        Ok(stored) => stored,
        Err(error) => return refuse(&req.header, error),
    };
    // The same transfer: number, date, leg and amount all as the inquiry names them.
    let found = stored.filter(|s| {
        s.receipt.tran_date.to_string() == req.org_tsymd
            && s.receipt.kind == kind
            && amount_text(s.receipt.amount_krw) == req.tram
    });
    let Some(found) = found else {
        return refuse(&req.header, BankError::TransferNotFound);
    };
    let original = found.result().map(|_| ());
    reply(ResultAnswer {
        header: AnswerHeader::answering(&req.header, &Ok(())),
        org_is_tuno: req.org_is_tuno.clone(),
        org_rpcd: codes::answer_code(&original),
        org_rsms: original.err().map(|e| e.to_string()).unwrap_or_default(),
        dract_acno: found.receipt.from_account.to_string(),
        mract_acno: found.receipt.to_account.to_string(),
        tram: amount_text(found.receipt.amount_krw),
    })
}

async fn balance(State(server): State<SimServer>, body: Result<Bytes, BytesRejection>) -> Response {
    let req: BalanceRequest = match parse(BALANCE, body, |r: &BalanceRequest| &r.header) {
        Ok(req) => req,
        Err(answer) => return *answer,
    };
    let answer = match nh::account(&req.fin_acno) {
        Ok(account) => {
            server
                .sim
                .balance(&AccountRequest {
                    account_number: account,
                })
                .await
        }
        Err(error) => Err(error),
    };
    match answer {
        Ok(balance) => reply(BalanceAnswer {
            header: AnswerHeader::answering(&req.header, &Ok(())),
            fin_acno: req.fin_acno.clone(),
            ldbl: amount_text(balance.balance_krw),
            rlpm_abamt: amount_text(balance.balance_krw),
        }),
        Err(error) => refuse(&req.header, error),
    }
}

async fn holder_nh(
    State(server): State<SimServer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    holder(server, HOLDER_NH, body).await
}

async fn holder_other(
    State(server): State<SimServer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    holder(server, HOLDER_OTHER, body).await
}

async fn holder(server: SimServer, call: Call, body: Result<Bytes, BytesRejection>) -> Response {
    let req: HolderRequest = match parse(call, body, |r: &HolderRequest| &r.header) {
        Ok(req) => req,
        Err(answer) => return *answer,
    };
    let answer = match nh::account(&req.acno) {
        Ok(account) => {
            server
                .sim
                .account_holder(&AccountRequest {
                    account_number: account,
                })
                .await
        }
        Err(error) => Err(error),
    };
    match answer {
        Ok(holder) => reply(HolderAnswer {
            header: AnswerHeader::answering(&req.header, &Ok(())),
            bncd: req.bncd.clone(),
            acno: req.acno.clone(),
            dpnm: holder.holder_name.to_string(),
        }),
        Err(error) => refuse(&req.header, error),
    }
}

async fn history(State(server): State<SimServer>, body: Result<Bytes, BytesRejection>) -> Response {
    let req: HistoryRequest = match parse(HISTORY, body, |r: &HistoryRequest| &r.header) {
        Ok(req) => req,
        Err(answer) => return *answer,
    };
    match history_page(&server, &req).await {
        Ok((rec, more)) => reply(HistoryAnswer {
            header: AnswerHeader::answering(&req.header, &Ok(())),
            ctnt_data_yn: if more { "Y" } else { "N" }.into(),
            tot_cnt: rec.len().to_string(),
            iqtcnt: rec.len().to_string(),
            rec,
        }),
        Err(error) => refuse(&req.header, error),
    }
}

/// One page (`PageNo`, `Dmcnt` lines) of an account's lines within the dates.
async fn history_page(
    server: &SimServer,
    req: &HistoryRequest,
) -> Result<(Vec<HistoryLine>, bool), BankError> {
    let account = nh::account(&req.acno)?;
    let (from, to) = (TranDate::parse(&req.insymd)?, TranDate::parse(&req.ineymd)?);
    let bad = |what: &str| BankError::InvalidRequest(what.to_owned());
    let page_no: usize = req.page_no.parse().map_err(|_| bad("PageNo"))?;
    let dmcnt: usize = req.dmcnt.parse().map_err(|_| bad("Dmcnt"))?;
    let page_ok = (1..=HISTORY_PAGE_NO_MAX as usize).contains(&page_no)
        && (1..=HISTORY_PAGE_MAX as usize).contains(&dmcnt);
    if !page_ok || req.trns_dsnc != "A" || req.lnsq != "ASC" || from > to {
        return Err(bad("PageNo, Dmcnt, TrnsDsnc, Lnsq or dates"));
    }
    server.sim.enter_plain_call().await?;
    let window = Window {
        from,
        to,
        after_seq: 0,
        skip: (page_no - 1) * dmcnt,
        take: dmcnt,
    };
    let (lines, more) = account_lines(&server.sim, &account, window).await?;
    let rec = lines
        .iter()
        .map(|line| {
            let (trdd, txtm) = kst_date_time(Timestamp::from_unix_ms(line.at_ms));
            HistoryLine {
                trdd,
                txtm,
                mnrc_drot_dsnc: if line.incoming { "2" } else { "3" }.into(),
                tram: amount_text(line.amount_krw),
                aftr_blnc: amount_text(line.balance_after_krw),
                trns_af_acnt_blnc_smbl_cd: "+".into(),
                smr: None,
                hnis_cd: "011".into(),
                hnbr_cd: "0000000".into(),
                ccyn: "0".into(),
                tuno: line.seq.to_string(),
                bnpr_cntn: line.print.chars().take(20).collect(),
            }
        })
        .collect();
    Ok((rec, more))
}
