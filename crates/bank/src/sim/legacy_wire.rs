//! The simulator's endpoints in the legacy provider's wire shape (see
//! [`crate::providers::legacy::transformers`]): HTTP 200 with a result code for every
//! business answer, string amounts, `YYYY-MM-DD` dates.
//!
//! These handlers only translate; every decision is the [`super::Simulator`]'s, so
//! both wire shapes see the same accounts, transfers and faults.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::server::{SimServer, parse_body, run_transfer};
use crate::providers::legacy::transformers::{
    self as legacy, BalanceReq, BalanceRes, DepositItem, DepositReq, DepositRes, DepositsReq,
    DepositsRes, InquiryReq, InquiryRes, IssueReq, IssueRes, LegacyResult, PayoutReq, PayoutRes,
};
use crate::types::{
    AccountNumber, AccountRequest, BankTranId, DepositId, DepositLookup, DepositsRequest,
    HolderName, IssueVirtualAccount, TransferInquiry, TransferKind, TransferOutcome, UserId,
};
use crate::{BankApi, BankError};

pub(super) fn routes() -> Router<SimServer> {
    Router::new()
        .route(legacy::PATH_PAYOUT, post(payout))
        .route(legacy::PATH_PAYOUT_INQUIRY, post(inquiry))
        .route(legacy::PATH_BALANCE, post(balance))
        .route(legacy::PATH_VACCT_ISSUE, post(issue))
        .route(legacy::PATH_VACCT_DEPOSIT, post(deposit))
        .route(legacy::PATH_VACCT_DEPOSITS, post(deposits))
}

/// Legacy answers: always HTTP 200, the result code says what happened.
fn reply<T: Serialize>(answer: T) -> Response {
    Json(answer).into_response()
}

fn read<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, LegacyResult> {
    parse_body(body).map_err(|_| {
        LegacyResult::from_error(&BankError::InvalidRequest("malformed request".into()))
    })
}

async fn payout(State(server): State<SimServer>, body: Result<Bytes, BytesRejection>) -> Response {
    let answer = async {
        let req: PayoutReq = read(body)?;
        let request =
            legacy::payout_request_from_wire(req).map_err(|e| LegacyResult::from_error(&e))?;
        let receipt = run_transfer(&server, TransferKind::Deposit, &request)
            .await
            .map_err(|e| LegacyResult::from_error(&e))?;
        Ok::<_, LegacyResult>(PayoutRes {
            result: LegacyResult::ok(),
            tran_no: Some(receipt.bank_tran_id.to_string()),
            tr_amt: Some(receipt.amount_krw.get().to_string()),
            prcs_tm: Some(receipt.processed_at_ms),
        })
    }
    .await;
    reply(answer.unwrap_or_else(|result| PayoutRes {
        result,
        tran_no: None,
        tr_amt: None,
        prcs_tm: None,
    }))
}

async fn inquiry(State(server): State<SimServer>, body: Result<Bytes, BytesRejection>) -> Response {
    let answer = async {
        let req: InquiryReq = read(body)?;
        let inquiry = (|| {
            Ok::<_, BankError>(TransferInquiry {
                bank_tran_id: BankTranId::new(&req.tran_no)?,
                tran_date: legacy::parse_legacy_date(&req.tran_dt)?,
                original: None,
            })
        })()
        .map_err(|e| LegacyResult::from_error(&e))?;
        let outcome = server
            .sim
            .transfer_result(&inquiry)
            .await
            .map_err(|e| LegacyResult::from_error(&e))?;
        let mut res = InquiryRes {
            result: LegacyResult::ok(),
            prcs_stat: None,
            err_cd: None,
            err_msg: None,
            out_acct_no: None,
            in_acct_no: None,
            tr_amt: None,
            prcs_tm: None,
        };
        match outcome {
            TransferOutcome::Succeeded { receipt } => {
                res.prcs_stat = Some("Y".into());
                res.out_acct_no = Some(receipt.from_account.to_string());
                res.in_acct_no = Some(receipt.to_account.to_string());
                res.tr_amt = Some(receipt.amount_krw.get().to_string());
                res.prcs_tm = Some(receipt.processed_at_ms);
            }
            TransferOutcome::Failed { code, message } => {
                let error = BankError::definite_from_code(&code, &message, None)
                    .unwrap_or(BankError::InvalidRequest(message.clone()));
                res.prcs_stat = Some("N".into());
                res.err_cd = Some(legacy::result_code(&error).to_owned());
                res.err_msg = Some(message);
            }
        }
        Ok::<_, LegacyResult>(res)
    }
    .await;
    reply(answer.unwrap_or_else(|result| InquiryRes {
        result,
        prcs_stat: None,
        err_cd: None,
        err_msg: None,
        out_acct_no: None,
        in_acct_no: None,
        tr_amt: None,
        prcs_tm: None,
    }))
}

async fn balance(State(server): State<SimServer>, body: Result<Bytes, BytesRejection>) -> Response {
    let answer = async {
        let req: BalanceReq = read(body)?;
        let account = AccountNumber::new(&req.acct_no).map_err(|e| LegacyResult::from_error(&e))?;
        let balance = server
            .sim
            .balance(&AccountRequest {
                account_number: account,
            })
            .await
            .map_err(|e| LegacyResult::from_error(&e))?;
        Ok::<_, LegacyResult>(BalanceRes {
            result: LegacyResult::ok(),
            bal_amt: Some(balance.balance_krw.get().to_string()),
        })
    }
    .await;
    reply(answer.unwrap_or_else(|result| BalanceRes {
        result,
        bal_amt: None,
    }))
}

async fn issue(State(server): State<SimServer>, body: Result<Bytes, BytesRejection>) -> Response {
    let answer = async {
        let req: IssueReq = read(body)?;
        let request = (|| {
            Ok::<_, BankError>(IssueVirtualAccount {
                user_id: UserId::parse(&req.cust_id)?,
                holder_name: HolderName::new(&req.cust_nm)?,
            })
        })()
        .map_err(|e| LegacyResult::from_error(&e))?;
        let account = server
            .sim
            .issue_virtual_account(&request)
            .await
            .map_err(|e| LegacyResult::from_error(&e))?;
        Ok::<_, LegacyResult>(IssueRes {
            result: LegacyResult::ok(),
            vacct_no: Some(account.account_number.to_string()),
        })
    }
    .await;
    reply(answer.unwrap_or_else(|result| IssueRes {
        result,
        vacct_no: None,
    }))
}

async fn deposit(State(server): State<SimServer>, body: Result<Bytes, BytesRejection>) -> Response {
    let answer = async {
        let req: DepositReq = read(body)?;
        let deposit_id =
            DepositId::from_sequence(req.dpst_seq).map_err(|e| LegacyResult::from_error(&e))?;
        let found = server
            .sim
            .virtual_deposit(&DepositLookup { deposit_id })
            .await
            .map_err(|e| LegacyResult::from_error(&e))?;
        Ok::<_, LegacyResult>(DepositRes {
            result: LegacyResult::ok(),
            item: Some(DepositItem::from_deposit(&found)),
        })
    }
    .await;
    reply(answer.unwrap_or_else(|result| DepositRes { result, item: None }))
}

async fn deposits(
    State(server): State<SimServer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let answer = async {
        let req: DepositsReq = read(body)?;
        let account =
            AccountNumber::new(&req.vacct_no).map_err(|e| LegacyResult::from_error(&e))?;
        let page = server
            .sim
            .virtual_deposits(&DepositsRequest {
                account_number: Some(account),
                since_cursor: req.from_seq,
                limit: req.cnt,
            })
            .await
            .map_err(|e| LegacyResult::from_error(&e))?;
        Ok::<_, LegacyResult>(DepositsRes {
            result: LegacyResult::ok(),
            list: page
                .deposits
                .iter()
                .map(DepositItem::from_deposit)
                .collect(),
        })
    }
    .await;
    reply(answer.unwrap_or_else(|result| DepositsRes {
        result,
        list: Vec::new(),
    }))
}
