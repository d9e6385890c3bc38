//! The "next" provider's virtual-account calls: issuing, listing and reading
//! deposits. KFTC open banking has no virtual accounts, so these stay on the
//! provider's own extension endpoints (the shapes in [`crate::types`]); every
//! money and inquiry call is KFTC, in [`super::kftc_calls`]. Pure functions.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::providers::{WireRequest, unreadable};
use crate::types::{
    AccountNumber, DepositLookup, DepositsRequest, HolderName, IssueVirtualAccount, UserId,
    VirtualAccount,
};
use crate::wire::{self, error_from_response};
use crate::{BankError, DepositId};

/// Deposits asked for per page.
pub const DEPOSITS_PAGE_MAX: u32 = 200;

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

/// Parses a 2xx body as `T`; anything else goes through the shared error mapping.
pub fn parse<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, BankError> {
    if !(200..300).contains(&status) {
        return Err(error_from_response(status, body));
    }
    serde_json::from_slice(body).map_err(|error| unreadable(status, error))
}

pub fn issue_account(user: UserId, holder: &HolderName) -> Result<WireRequest, BankError> {
    let body = IssueVirtualAccount {
        user_id: user,
        holder_name: holder.clone(),
    };
    request("next_issue_account", wire::PATH_VIRTUAL_ACCOUNT, &body)
}

pub fn parse_issue_account(status: u16, body: &[u8]) -> Result<AccountNumber, BankError> {
    parse::<VirtualAccount>(status, body).map(|account| account.account_number)
}

pub fn list_deposits(account: &AccountNumber, since_cursor: i64) -> Result<WireRequest, BankError> {
    let body = DepositsRequest {
        account_number: Some(account.clone()),
        since_cursor,
        limit: DEPOSITS_PAGE_MAX,
    };
    request("next_list_deposits", wire::PATH_VIRTUAL_DEPOSITS, &body)
}

pub fn get_deposit(deposit: &DepositId) -> Result<WireRequest, BankError> {
    let body = DepositLookup {
        deposit_id: deposit.clone(),
    };
    request("next_get_deposit", wire::PATH_VIRTUAL_DEPOSIT, &body)
}
