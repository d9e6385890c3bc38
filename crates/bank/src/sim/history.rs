//! An account's transaction list as both bank wires show it (거래내역조회): the
//! account's movements between two KST dates, oldest first, each with the balance
//! after it. The KFTC wire pages by a trace (the last movement's sequence number),
//! the NH wire by page number; both read through [`account_lines`].
//!
//! Running balances need every earlier movement, so the walk always starts at the
//! account's first movement; it is bounded by [`MOVEMENT_PAGES_MAX`].

use money::{Krw, Timestamp};

use super::Simulator;
use crate::BankError;
use crate::types::{AccountNumber, TranDate};

/// Pages of movements read to compute running balances, at most.
pub(crate) const MOVEMENT_PAGES_MAX: usize = 10_000;

/// One line of an account's transaction list.
#[derive(Clone, Debug)]
pub(crate) struct Line {
    pub seq: i64,
    pub at_ms: i64,
    pub incoming: bool,
    pub amount_krw: Krw,
    pub balance_after_krw: Krw,
    /// What the passbook prints: the transfer's `bank_tran_id`, else the kind.
    pub print: String,
}

/// Which lines to return.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub from: TranDate,
    pub to: TranDate,
    /// Only movements after this sequence number (a KFTC trace), 0 for all.
    pub after_seq: i64,
    /// Lines within the dates to skip first (an NH page offset).
    pub skip: usize,
    pub take: usize,
}

/// The lines of `account` in `window`, and whether more follow.
pub(crate) async fn account_lines(
    sim: &Simulator,
    account: &AccountNumber,
    window: Window,
) -> Result<(Vec<Line>, bool), BankError> {
    let mut balance = Krw::ZERO;
    let mut since = 0;
    let mut lines = Vec::new();
    let mut skipped = 0;
    for _ in 0..MOVEMENT_PAGES_MAX {
        let movements = sim.statement(Some(account), since).await?;
        let Some(last) = movements.last() else { break };
        since = last.seq;
        for m in &movements {
            let incoming = m.to_account == account.as_str();
            balance = if incoming {
                balance.checked_add(m.amount_krw)
            } else {
                balance.checked_sub(m.amount_krw)
            }
            .map_err(|_| BankError::InvalidRequest("balance overflow".into()))?;
            let day = TranDate::from_kst(Timestamp::from_unix_ms(m.at_ms));
            if m.seq <= window.after_seq || day < window.from || day > window.to {
                continue;
            }
            if skipped < window.skip {
                skipped += 1;
                continue;
            }
            if lines.len() == window.take {
                return Ok((lines, true));
            }
            lines.push(Line {
                seq: m.seq,
                at_ms: m.at_ms,
                incoming,
                amount_krw: m.amount_krw,
                balance_after_krw: balance,
                print: m.bank_tran_id.clone().unwrap_or_else(|| m.kind.clone()),
            });
        }
    }
    Ok((lines, false))
}
