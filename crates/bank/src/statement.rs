//! Statements through the connector: the [`Statement`] trait (an account's
//! movements between two KST dates, oldest first, one page at a time, resumable
//! from the page's [`StatementCursor`]) over each bank's 거래내역조회 — the KFTC
//! transaction list (`next`, paged by trace) and the NH transaction history
//! (`legacy`, paged by page number) — and over the in-process simulator.
//!
//! Reconciliation (the fee report, the demo's payroll books) reads the bank only
//! through this trait, never through the simulator's admin API. A line names the
//! transfer it belongs to by its printed content: the connectors print the
//! `bank_tran_id` on both passbooks of every transfer they send.

use async_trait::async_trait;
use money::Krw;
use serde::{Deserialize, Serialize};

use crate::BankError;
use crate::providers::Connector;
use crate::providers::legacy::Legacy;
use crate::providers::next::Next;
use crate::types::{AccountNumber, TranDate};

/// Pages one [`read_all`] reads at most, so a runaway statement cannot keep a
/// report reading.
pub const STATEMENT_PAGES_MAX: usize = 10_000;

/// One line of an account's statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementLine {
    pub tran_date: TranDate,
    /// `hhmmss` KST.
    pub tran_time: String,
    /// Money into the account (else out of it).
    pub incoming: bool,
    pub amount_krw: Krw,
    pub balance_after_krw: Krw,
    /// What the passbook prints: for settle's own transfers, the `bank_tran_id`.
    pub print_content: String,
}

/// Where the next page starts; opaque to callers (a KFTC trace, an NH page
/// number, a simulator sequence number), and stable: store it to resume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementCursor(pub String);

/// One page of a statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementPage {
    pub lines: Vec<StatementLine>,
    /// Pass back to read on; `None` on the last page.
    pub next: Option<StatementCursor>,
}

/// A bank account's statement, read through the bank's own 거래내역조회.
#[async_trait]
pub trait Statement: Send + Sync {
    /// One page of `account`'s movements from `dates.0` to `dates.1` (KST,
    /// inclusive), oldest first, starting at `cursor` (`None`: the first page).
    async fn statement_page(
        &self,
        account: &AccountNumber,
        dates: (TranDate, TranDate),
        cursor: Option<&StatementCursor>,
    ) -> Result<StatementPage, BankError>;
}

/// Every line of `account` between the dates, page after page (at most
/// [`STATEMENT_PAGES_MAX`] pages).
pub async fn read_all(
    statement: &dyn Statement,
    account: &AccountNumber,
    dates: (TranDate, TranDate),
) -> Result<Vec<StatementLine>, BankError> {
    let mut lines = Vec::new();
    let mut cursor = None;
    for _ in 0..STATEMENT_PAGES_MAX {
        let page = statement
            .statement_page(account, dates, cursor.as_ref())
            .await?;
        lines.extend(page.lines);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(lines),
        }
    }
    Err(BankError::InvalidRequest(format!(
        "the statement of {account} is longer than {STATEMENT_PAGES_MAX} pages"
    )))
}

fn bad_cursor(cursor: &StatementCursor) -> BankError {
    BankError::InvalidRequest(format!("statement cursor {:?}", cursor.0))
}

#[async_trait]
impl Statement for Connector<Next> {
    async fn statement_page(
        &self,
        account: &AccountNumber,
        dates: (TranDate, TranDate),
        cursor: Option<&StatementCursor>,
    ) -> Result<StatementPage, BankError> {
        let trace = cursor.map(|c| c.0.as_str());
        let page = self.transactions(account, dates, trace).await?;
        Ok(StatementPage {
            lines: page.lines,
            next: page.next_trace.map(StatementCursor),
        })
    }
}

#[async_trait]
impl Statement for Connector<Legacy> {
    async fn statement_page(
        &self,
        account: &AccountNumber,
        dates: (TranDate, TranDate),
        cursor: Option<&StatementCursor>,
    ) -> Result<StatementPage, BankError> {
        let page_no = match cursor {
            None => 1,
            Some(cursor) => cursor.0.parse().map_err(|_| bad_cursor(cursor))?,
        };
        let page = self.history(account, dates, page_no).await?;
        Ok(StatementPage {
            lines: page.lines,
            next: page.next_page.map(|n| StatementCursor(n.to_string())),
        })
    }
}
