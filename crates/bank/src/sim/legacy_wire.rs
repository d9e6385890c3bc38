//! The simulator's endpoints of the legacy provider: its NH-style wire
//! ([`super::nh_wire`]) and its virtual-account extension endpoints in the shape of
//! [`crate::providers::legacy::transformers`] (HTTP 200 with a result code from the
//! same table for every business answer, string amounts).
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

use super::server::{SimServer, parse_body};
use crate::providers::legacy::transformers::{
    self as legacy, DepositItem, DepositReq, DepositRes, DepositsReq, DepositsRes, IssueReq,
    IssueRes, LegacyResult,
};
use crate::types::{
    AccountNumber, DepositId, DepositLookup, DepositsRequest, HolderName, IssueVirtualAccount,
    UserId,
};
use crate::{BankApi, BankError};

pub(super) fn routes() -> Router<SimServer> {
    Router::new()
        .merge(super::nh_wire::routes())
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
