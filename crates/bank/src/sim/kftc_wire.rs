//! The simulator's endpoints in the KFTC open banking v2.0 wire, written and read
//! with the connector's own types ([`crate::providers::next::kftc`]) and answering
//! the codes of the same table. Requests need a bearer token from the simulator's
//! token endpoint; a missing or expired one is answered 401 with the table's
//! token code. Business answers are HTTP 200 with the codes in the envelope.
//!
//! These handlers only translate; every decision is the [`super::Simulator`]'s, so
//! this wire, the legacy wire and the native one see the same accounts and faults.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use money::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::history::{Window, account_lines};
use super::server::{SimServer, run_transfer};
use crate::providers::next::kftc::{self, *};
use crate::transport::SIMULATOR_CLIENT_SECRET;
use crate::types::{
    AccountNumber, AccountRequest, BankTranId, HolderName, TranDate, TransferKind, TransferRequest,
};
use crate::{BankApi, BankError};

/// Tokens the simulator remembers at once; the oldest goes first beyond this.
pub const TOKENS_MAX: usize = 1_024;
/// Lines per page of the transaction list.
const TRANSACTIONS_PAGE: usize = 100;

/// Issued tokens and when each expires (simulator clock, ms).
#[derive(Debug, Default)]
pub struct Tokens {
    by_token: Mutex<HashMap<String, i64>>,
}

impl Tokens {
    fn issue(&self, now_ms: i64, ttl_ms: i64) -> String {
        let token = format!("sim-{}", uuid::Uuid::new_v4().simple());
        let mut map = self.by_token.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, expires| *expires > now_ms);
        if map.len() >= TOKENS_MAX
            && let Some(oldest) = map.iter().min_by_key(|(_, e)| **e).map(|(t, _)| t.clone())
        {
            map.remove(&oldest);
        }
        map.insert(token.clone(), now_ms.saturating_add(ttl_ms));
        token
    }

    fn valid(&self, token: &str, now_ms: i64) -> bool {
        let map = self.by_token.lock().unwrap_or_else(|p| p.into_inner());
        map.get(token).is_some_and(|expires| *expires > now_ms)
    }
}

pub(super) fn routes() -> Router<SimServer> {
    Router::new()
        .route(PATH_TOKEN, post(token))
        .route(PATH_DEPOSIT, post(deposit))
        .route(PATH_WITHDRAW, post(withdraw))
        .route(PATH_RESULT, post(result))
        .route(PATH_BALANCE, get(balance))
        .route(PATH_REAL_NAME, post(real_name))
        .route(PATH_TRANSACTIONS, get(transactions))
}

fn now(server: &SimServer) -> Timestamp {
    server.sim.clock.now()
}

/// An envelope for `outcome`, with a fresh `api_tran_id`, and the bank code.
fn envelope(server: &SimServer, outcome: &Result<(), BankError>) -> (Envelope, String) {
    let (rsp_code, bank_rsp_code) = kftc::answer_codes(outcome);
    let message = match outcome {
        Ok(()) => String::new(),
        Err(error) => error.to_string(),
    };
    (
        Envelope {
            api_tran_id: uuid::Uuid::new_v4().hyphenated().to_string(),
            api_tran_dtm: api_tran_dtm(now(server)),
            rsp_code,
            rsp_message: message,
        },
        bank_rsp_code,
    )
}

fn reply<T: Serialize>(answer: T) -> Response {
    Json(answer).into_response()
}

/// The answer to a request the centre refuses before any bank sees it.
fn refuse(server: &SimServer, status: StatusCode, error: BankError) -> Response {
    let (envelope, _) = envelope(server, &Err(error));
    (status, Json(envelope)).into_response()
}

/// A request refused before any bank sees it: the status and why.
struct Refused(StatusCode, BankError);

/// Checks the bearer token; `Err` is the 401 answer.
fn authorize(server: &SimServer, headers: &HeaderMap) -> Result<(), Refused> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        Some(token) if server.tokens.valid(token, now(server).unix_ms()) => Ok(()),
        _ => Err(Refused(StatusCode::UNAUTHORIZED, BankError::AuthRejected)),
    }
}

/// Parses a strict JSON body; bad input is the table's malformed-request code.
fn strict<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, Refused> {
    let bytes = body.map_err(|r| Refused(r.status(), BankError::InvalidRequest(r.body_text())))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Refused(
            StatusCode::BAD_REQUEST,
            BankError::InvalidRequest(e.to_string()),
        )
    })
}

async fn token(State(server): State<SimServer>, body: Result<Bytes, BytesRejection>) -> Response {
    let Ok(bytes) = body else {
        return refuse(
            &server,
            StatusCode::BAD_REQUEST,
            BankError::InvalidRequest("no form".into()),
        );
    };
    let form: Result<TokenRequest, _> = serde_urlencoded_form(&bytes);
    let Ok(form) = form else {
        return refuse(
            &server,
            StatusCode::BAD_REQUEST,
            BankError::InvalidRequest("malformed form".into()),
        );
    };
    if form.grant_type != "client_credentials"
        || form.scope != "oob"
        || form.client_secret != SIMULATOR_CLIENT_SECRET
        || form.client_id.is_empty()
    {
        return refuse(
            &server,
            StatusCode::UNAUTHORIZED,
            BankError::CredentialsRefused("client credentials refused".into()),
        );
    }
    let ttl_s = server.sim.config.token_ttl_s;
    let access_token = server.tokens.issue(
        now(&server).unix_ms(),
        i64::try_from(ttl_s.saturating_mul(1_000)).unwrap_or(i64::MAX),
    );
    server.count_token();
    reply(TokenAnswer {
        access_token,
        token_type: "Bearer".into(),
        expires_in: ttl_s,
        scope: form.scope,
        client_use_code: form.client_id.chars().take(10).collect(),
    })
}

/// Reads a form body with the same strictness as JSON bodies.
fn serde_urlencoded_form<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ()> {
    let pairs: Vec<(String, String)> = url_pairs(bytes).ok_or(())?;
    let object: serde_json::Map<String, serde_json::Value> = pairs
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    serde_json::from_value(serde_json::Value::Object(object)).map_err(|_| ())
}

/// `a=b&c=d` with percent-decoding; `None` when malformed.
fn url_pairs(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

fn decode(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn parse_deposit(req: &DepositRequest) -> Result<TransferRequest, BankError> {
    let [item] = req.req_list.as_slice() else {
        return Err(BankError::InvalidRequest(
            "req_list must hold exactly one item".into(),
        ));
    };
    if req.cntr_account_type != CONTRACT_ACCOUNT || req.req_cnt != "1" || item.tran_no != "1" {
        return Err(BankError::InvalidRequest(
            "cntr_account_type, req_cnt or tran_no".into(),
        ));
    }
    if req.name_check_option != "on" {
        return Err(BankError::InvalidRequest(
            "name_check_option must be on".into(),
        ));
    }
    Ok(TransferRequest {
        bank_tran_id: BankTranId::new(&item.bank_tran_id)?,
        tran_date: date_of(&req.tran_dtime)?,
        from_account: AccountNumber::new(&req.cntr_account_num)?,
        to_account: AccountNumber::new(&item.account_num)?,
        holder_name: HolderName::new(&item.account_holder_name)?,
        amount_krw: parse_amount("tran_amt", &item.tran_amt)
            .map_err(|_| BankError::BadAmount(item.tran_amt.clone()))?,
    })
}

fn date_of(tran_dtime: &str) -> Result<TranDate, BankError> {
    if tran_dtime.len() != 14 || !tran_dtime.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BankError::InvalidRequest(format!(
            "tran_dtime {tran_dtime:?}"
        )));
    }
    TranDate::parse(&tran_dtime[..8])
}

async fn deposit(
    State(server): State<SimServer>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(Refused(status, error)) = authorize(&server, &headers) {
        return refuse(&server, status, error);
    }
    let req: DepositRequest = match strict(body) {
        Ok(req) => req,
        Err(Refused(status, error)) => return refuse(&server, status, error),
    };
    let request = match parse_deposit(&req) {
        Ok(request) => request,
        Err(error) => return refuse(&server, StatusCode::OK, error),
    };
    let outcome = run_transfer(&server, TransferKind::Deposit, &request).await;
    let (envelope, bank_rsp_code) =
        envelope(&server, &outcome.as_ref().map(|_| ()).map_err(Clone::clone));
    if bank_rsp_code.is_empty() {
        return reply(envelope);
    }
    reply(DepositAnswer {
        envelope,
        wd_bank_code_std: "097".into(),
        wd_account_num_masked: mask_account(&request.from_account),
        wd_account_holder_name: String::new(),
        res_cnt: "1".into(),
        res_list: vec![DepositResult {
            tran_no: "1".into(),
            bank_tran_id: request.bank_tran_id.to_string(),
            bank_tran_date: request.tran_date.to_string(),
            bank_code_tran: "097".into(),
            bank_rsp_message: outcome
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default(),
            bank_rsp_code,
            bank_code_std: "097".into(),
            account_num_masked: mask_account(&request.to_account),
            account_holder_name: request.holder_name.to_string(),
            tran_amt: amount_text(request.amount_krw),
        }],
    })
}

async fn withdraw(
    State(server): State<SimServer>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(Refused(status, error)) = authorize(&server, &headers) {
        return refuse(&server, status, error);
    }
    let req: WithdrawRequest = match strict(body) {
        Ok(req) => req,
        Err(Refused(status, error)) => return refuse(&server, status, error),
    };
    let parsed = (|| {
        Ok::<_, BankError>(TransferRequest {
            bank_tran_id: BankTranId::new(&req.bank_tran_id)?,
            tran_date: date_of(&req.tran_dtime)?,
            from_account: AccountNumber::new(&req.wd_account_num)?,
            to_account: AccountNumber::new(&req.cntr_account_num)?,
            holder_name: HolderName::new(&req.wd_account_holder_name)?,
            amount_krw: parse_amount("tran_amt", &req.tran_amt)
                .map_err(|_| BankError::BadAmount(req.tran_amt.clone()))?,
        })
    })();
    let request = match parsed {
        Ok(request) if req.cntr_account_type == CONTRACT_ACCOUNT => request,
        Ok(_) => {
            return refuse(
                &server,
                StatusCode::OK,
                BankError::InvalidRequest("cntr_account_type".into()),
            );
        }
        Err(error) => return refuse(&server, StatusCode::OK, error),
    };
    let outcome = run_transfer(&server, TransferKind::Withdraw, &request).await;
    let (envelope, bank_rsp_code) =
        envelope(&server, &outcome.as_ref().map(|_| ()).map_err(Clone::clone));
    if bank_rsp_code.is_empty() {
        return reply(envelope);
    }
    reply(WithdrawAnswer {
        envelope,
        bank_tran_id: request.bank_tran_id.to_string(),
        bank_tran_date: request.tran_date.to_string(),
        bank_code_tran: "097".into(),
        bank_rsp_message: outcome
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default(),
        bank_rsp_code,
        dps_account_num_masked: mask_account(&request.to_account),
        account_num_masked: mask_account(&request.from_account),
        tran_amt: amount_text(request.amount_krw),
    })
}

async fn result(
    State(server): State<SimServer>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(Refused(status, error)) = authorize(&server, &headers) {
        return refuse(&server, status, error);
    }
    let req: ResultRequest = match strict(body) {
        Ok(req) => req,
        Err(Refused(status, error)) => return refuse(&server, status, error),
    };
    let [item] = req.req_list.as_slice() else {
        return refuse(
            &server,
            StatusCode::OK,
            BankError::InvalidRequest("req_list".into()),
        );
    };
    let kind = match req.check_type.as_str() {
        CHECK_DEPOSIT => TransferKind::Deposit,
        CHECK_WITHDRAW => TransferKind::Withdraw,
        _ => {
            return refuse(
                &server,
                StatusCode::OK,
                BankError::InvalidRequest("check_type".into()),
            );
        }
    };
    let id = match BankTranId::new(&item.org_bank_tran_id) {
        Ok(id) => id,
        Err(error) => return refuse(&server, StatusCode::OK, error),
    };
    if let Err(error) = server.sim.enter_plain_call().await {
        return refuse(&server, StatusCode::OK, error);
    }
    let stored = match super::db::find_transfer(&server.sim.store, &id).await {
        Ok(stored) => stored,
        Err(error) => return refuse(&server, StatusCode::INTERNAL_SERVER_ERROR, error),
    };
    // The same transfer: id, date, leg and amount all as the inquiry names them.
    let found = stored.filter(|s| {
        s.receipt.tran_date.to_string() == item.org_bank_tran_date
            && s.receipt.kind == kind
            && amount_text(s.receipt.amount_krw) == item.org_tran_amt
    });
    let outcome = match &found {
        Some(stored) => stored.result().map(|_| ()),
        None => Err(BankError::TransferNotFound),
    };
    let (envelope, bank_rsp_code) = envelope(&server, &outcome);
    let line = ResultLine {
        tran_no: "1".into(),
        bank_tran_id: id.to_string(),
        bank_tran_date: item.org_bank_tran_date.clone(),
        bank_code_tran: "097".into(),
        bank_rsp_code,
        bank_rsp_message: outcome
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default(),
        wd_account_num_masked: found
            .as_ref()
            .map(|s| mask_account(&s.receipt.from_account))
            .unwrap_or_default(),
        dps_account_num_masked: found
            .as_ref()
            .map(|s| mask_account(&s.receipt.to_account))
            .unwrap_or_default(),
        dps_account_holder_name: String::new(),
        tran_amt: item.org_tran_amt.clone(),
    };
    reply(ResultAnswer {
        envelope,
        res_cnt: "1".into(),
        res_list: vec![line],
    })
}

async fn balance(
    State(server): State<SimServer>,
    headers: HeaderMap,
    query: Result<Query<BalanceQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(Refused(status, error)) = authorize(&server, &headers) {
        return refuse(&server, status, error);
    }
    let Ok(Query(q)) = query else {
        return refuse(
            &server,
            StatusCode::BAD_REQUEST,
            BankError::InvalidRequest("query".into()),
        );
    };
    let account = match (
        AccountNumber::new(&q.account_num),
        BankTranId::new(&q.bank_tran_id),
    ) {
        (Ok(account), Ok(_)) => account,
        (Err(e), _) | (_, Err(e)) => return refuse(&server, StatusCode::OK, e),
    };
    let answer = server
        .sim
        .balance(&AccountRequest {
            account_number: account,
        })
        .await;
    let (envelope, bank_rsp_code) =
        envelope(&server, &answer.as_ref().map(|_| ()).map_err(Clone::clone));
    let amount = answer
        .map(|b| amount_text(b.balance_krw))
        .unwrap_or_default();
    reply(BalanceAnswer {
        envelope,
        bank_tran_id: q.bank_tran_id,
        bank_tran_date: date_of(&q.tran_dtime)
            .map(|d| d.to_string())
            .unwrap_or_default(),
        bank_code_tran: "097".into(),
        bank_rsp_code,
        bank_rsp_message: String::new(),
        balance_amt: amount.clone(),
        available_amt: amount,
    })
}

async fn real_name(
    State(server): State<SimServer>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(Refused(status, error)) = authorize(&server, &headers) {
        return refuse(&server, status, error);
    }
    let req: RealNameRequest = match strict(body) {
        Ok(req) => req,
        Err(Refused(status, error)) => return refuse(&server, status, error),
    };
    let account = match (
        AccountNumber::new(&req.account_num),
        BankTranId::new(&req.bank_tran_id),
    ) {
        (Ok(account), Ok(_)) => account,
        (Err(e), _) | (_, Err(e)) => return refuse(&server, StatusCode::OK, e),
    };
    let answer = server
        .sim
        .account_holder(&AccountRequest {
            account_number: account.clone(),
        })
        .await;
    let (envelope, bank_rsp_code) =
        envelope(&server, &answer.as_ref().map(|_| ()).map_err(Clone::clone));
    reply(RealNameAnswer {
        envelope,
        bank_tran_id: req.bank_tran_id,
        bank_tran_date: date_of(&req.tran_dtime)
            .map(|d| d.to_string())
            .unwrap_or_default(),
        bank_code_tran: "097".into(),
        bank_rsp_code,
        bank_rsp_message: String::new(),
        account_num: account.to_string(),
        account_holder_name: answer
            .map(|h| h.holder_name.to_string())
            .unwrap_or_default(),
    })
}

async fn transactions(
    State(server): State<SimServer>,
    headers: HeaderMap,
    query: Result<Query<TransactionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(Refused(status, error)) = authorize(&server, &headers) {
        return refuse(&server, status, error);
    }
    let Ok(Query(q)) = query else {
        return refuse(
            &server,
            StatusCode::BAD_REQUEST,
            BankError::InvalidRequest("query".into()),
        );
    };
    let page = transaction_page(&server, &q).await;
    let (lines, next) = match page {
        Ok(page) => page,
        Err(error) => return refuse(&server, StatusCode::OK, error),
    };
    let (envelope, bank_rsp_code) = envelope(&server, &Ok(()));
    reply(TransactionsAnswer {
        envelope,
        bank_tran_id: q.bank_tran_id,
        bank_rsp_code,
        bank_rsp_message: String::new(),
        page_record_cnt: lines.len().to_string(),
        next_page_yn: if next.is_some() { "Y" } else { "N" }.into(),
        befor_inquiry_trace_info: next.unwrap_or_default(),
        res_list: lines,
    })
}

/// One page of an account's movements within the dates, with running balances;
/// the trace is the last movement's sequence number.
async fn transaction_page(
    server: &SimServer,
    q: &TransactionsQuery,
) -> Result<(Vec<TransactionLine>, Option<String>), BankError> {
    BankTranId::new(&q.bank_tran_id)?;
    let account = AccountNumber::new(&q.account_num)?;
    let (from, to) = (TranDate::parse(&q.from_date)?, TranDate::parse(&q.to_date)?);
    let after_seq: i64 = match q.befor_inquiry_trace_info.as_str() {
        "" => 0,
        text => text
            .parse()
            .map_err(|_| BankError::InvalidRequest("trace".into()))?,
    };
    server.sim.enter_plain_call().await?;
    let window = Window {
        from,
        to,
        after_seq,
        skip: 0,
        take: TRANSACTIONS_PAGE,
    };
    let (lines, more) = account_lines(&server.sim, &account, window).await?;
    let next = more
        .then(|| lines.last().map(|l| l.seq.to_string()))
        .flatten();
    let lines = lines
        .iter()
        .map(|line| {
            let at = Timestamp::from_unix_ms(line.at_ms);
            TransactionLine {
                tran_date: TranDate::from_kst(at).to_string(),
                tran_time: kftc::tran_dtime(at)[8..].to_owned(),
                inout_type: if line.incoming { "입금" } else { "출금" }.into(),
                print_content: print_content(&line.print),
                tran_amt: amount_text(line.amount_krw),
                after_balance_amt: amount_text(line.balance_after_krw),
            }
        })
        .collect();
    Ok((lines, next))
}
