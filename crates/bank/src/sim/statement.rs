//! The in-process simulator as a [`Statement`]: the same transaction list its
//! wires serve (running balances, oldest first), paged by sequence number, for
//! tests and the embedded demo that have no HTTP bank.

use async_trait::async_trait;
use money::Timestamp;

use super::Simulator;
use super::history::{Window, account_lines};
use crate::BankError;
use crate::statement::{Statement, StatementCursor, StatementLine, StatementPage};
use crate::types::{AccountNumber, TranDate};

/// Lines per page.
const PAGE_LINES: usize = 500;

#[async_trait]
impl Statement for Simulator {
    async fn statement_page(
        &self,
        account: &AccountNumber,
        (from, to): (TranDate, TranDate),
        cursor: Option<&StatementCursor>,
    ) -> Result<StatementPage, BankError> {
        let after_seq = match cursor {
            None => 0,
            Some(cursor) => cursor.0.parse().map_err(|_| {
                BankError::InvalidRequest(format!("statement cursor {:?}", cursor.0))
            })?,
        };
        let window = Window {
            from,
            to,
            after_seq,
            skip: 0,
            take: PAGE_LINES,
        };
        let (lines, more) = account_lines(self, account, window).await?;
        let next = more
            .then(|| lines.last().map(|l| StatementCursor(l.seq.to_string())))
            .flatten();
        let lines = lines
            .into_iter()
            .map(|line| {
                let at = Timestamp::from_unix_ms(line.at_ms);
                StatementLine {
                    tran_date: TranDate::from_kst(at),
                    tran_time: crate::providers::next::kftc::tran_dtime(at)[8..].to_owned(),
                    incoming: line.incoming,
                    amount_krw: line.amount_krw,
                    balance_after_krw: line.balance_after_krw,
                    print_content: line.print,
                }
            })
            .collect();
        Ok(StatementPage { lines, next })
    }
}
