//! The day's reconciliation: what the ledger says was paid per fee kind (and
//! withdrawn) against what the bank's statement shows for the same
//! `bank_tran_id`s, to the won. Also catches what must never happen: an id on the
//! statement twice, or money the bank moved for a chunk fees believes failed.

use std::collections::{BTreeMap, HashMap};

use std::sync::Arc;

use async_trait::async_trait;
use bank::statement::{StatementCursor, StatementPage};
use bank::{AccountNumber, BankError, TranDate};
use money::{Krw, TransferId};
use serde::Serialize;

use crate::chunking::Purpose;
use crate::config::accounts;
use crate::db;
use crate::{BusinessDay, FeeKind, Fees, FeesError};

/// The bank statement the report reads: [`bank::Statement`], the bank's own
/// 거래내역조회 through a connector (or the in-process simulator's), never the
/// simulator's admin API.
pub use bank::Statement;

/// The statement of a bank over HTTP(S), read through the KFTC connector's
/// 거래내역조회 (`settle fees report --bank-url …`).
pub struct HttpStatement {
    connector: bank::providers::Connector<bank::providers::next::Next>,
}

impl HttpStatement {
    pub fn new(base_url: &str) -> Result<HttpStatement, BankError> {
        HttpStatement::with_ca(base_url, None)
    }

    /// A statement client that also trusts `ca` (a bank with a private CA).
    pub fn with_ca(base_url: &str, ca: Option<&bank::BankCa>) -> Result<HttpStatement, BankError> {
        let mut config = bank::TransportConfig::new(base_url);
        config.extra_ca = ca.cloned();
        let transport = bank::Transport::new(config)?;
        Ok(HttpStatement {
            connector: bank::providers::next::connector(transport, Arc::new(money::SystemClock)),
        })
    }
}

#[async_trait]
impl Statement for HttpStatement {
    async fn statement_page(
        &self,
        account: &AccountNumber,
        dates: (TranDate, TranDate),
        cursor: Option<&StatementCursor>,
    ) -> Result<StatementPage, BankError> {
        self.connector.statement_page(account, dates, cursor).await
    }
}

/// One fee kind's line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct KindLine {
    pub kind: FeeKind,
    pub recorded_krw: Krw,
    pub ledger_krw: Krw,
    pub bank_krw: Krw,
    pub agrees: bool,
}

/// The whole day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct DayReport {
    pub day: BusinessDay,
    pub kinds: Vec<KindLine>,
    pub ledger_paid_krw: Krw,
    pub bank_paid_krw: Krw,
    pub ledger_withdrawn_krw: Krw,
    pub bank_withdrawn_krw: Krw,
    /// Ids that appear on the statement more than once.
    pub duplicates: Vec<String>,
    /// Ids the bank moved money for that fees does not count as succeeded.
    pub unaccounted: Vec<String>,
    /// Items not (fully) paid, each with why: a day with any is not agreeing.
    pub unpaid: Vec<UnpaidItem>,
    /// The ledger and the bank show the same money (per kind, withdrawn), no id
    /// twice and nothing unaccounted — whether or not every item is paid.
    pub books_agree: bool,
    /// The books agree and every item is paid.
    pub agrees: bool,
}

/// An item of the day that is not fully paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct UnpaidItem {
    pub loan_id: u64,
    pub kind: FeeKind,
    pub amount_krw: Krw,
    pub unpaid_krw: Krw,
    /// `blocked: <refusal>`, `waiting_for_bank: <transient answer>`,
    /// `outcome_unknown`, or `not_sent`.
    pub reason: String,
}

/// Items not fully paid by their succeeded payout chunks, with why.
fn unpaid_items(
    items: &[db::ItemRow],
    chunks: &[db::ChunkRow],
) -> Result<Vec<UnpaidItem>, FeesError> {
    let mut paid: HashMap<(u64, u16), Krw> = HashMap::new();
    let mut latest: HashMap<(u64, u16, i64), &db::ChunkRow> = HashMap::new();
    for chunk in chunks
        .iter()
        .filter(|c| c.purpose == Purpose::Payout.as_str())
    {
        if chunk.state == "succeeded" {
            let total = paid.entry((chunk.loan_id, chunk.kind)).or_insert(Krw::ZERO);
            *total = total.checked_add(Krw::new(chunk.amount_krw))?;
        }
        let key = (chunk.loan_id, chunk.kind, chunk.chunk_no);
        if latest
            .get(&key)
            .is_none_or(|seen| seen.attempt < chunk.attempt)
        {
            latest.insert(key, chunk);
        }
    }
    let mut unpaid = Vec::new();
    for item in items {
        let amount = Krw::new(item.amount_krw);
        let paid_krw = paid
            .get(&(item.loan_id, item.kind))
            .copied()
            .unwrap_or_default();
        if paid_krw >= amount {
            continue;
        }
        let open = latest
            .iter()
            .filter(|((loan, kind, _), chunk)| {
                *loan == item.loan_id && *kind == item.kind && chunk.state != "succeeded"
            })
            .map(|(_, chunk)| *chunk)
            .min_by_key(|chunk| chunk.chunk_no);
        let reason = match open {
            Some(chunk) if chunk.state == "failed" => {
                format!("blocked: {}", chunk.reason.as_deref().unwrap_or("refused"))
            }
            Some(chunk) if chunk.state == "reserved" && chunk.transient_answers > 0 => format!(
                "waiting_for_bank: {}",
                chunk.reason.as_deref().unwrap_or("not processed")
            ),
            Some(chunk) if chunk.state == "sent" || chunk.state == "unknown" => {
                "outcome_unknown".to_owned()
            }
            _ => "not_sent".to_owned(),
        };
        unpaid.push(UnpaidItem {
            loan_id: item.loan_id,
            kind: FeeKind::from_code(item.kind)
                .ok_or_else(|| FeesError::Corrupt(format!("fee kind code {}", item.kind)))?,
            amount_krw: amount,
            unpaid_krw: amount.checked_sub(paid_krw)?,
            reason,
        });
    }
    Ok(unpaid)
}

impl Fees {
    /// Reconciles day D's ledger with the bank statement of the settlement account.
    pub async fn report(
        &self,
        day: BusinessDay,
        statement: &dyn Statement,
    ) -> Result<DayReport, FeesError> {
        let key = day.to_string();
        let mut chunks = db::chunks(&self.store, &key, Purpose::Payout.as_str()).await?;
        chunks.extend(db::chunks(&self.store, &key, Purpose::Withdraw.as_str()).await?);
        let by_id: HashMap<&str, &db::ChunkRow> = chunks
            .iter()
            .map(|c| (c.bank_tran_id.as_str(), c))
            .collect();

        // The ledger's side: the posts of succeeded chunks, as the ledger stored them.
        let mut ledger_by_code: BTreeMap<u16, Krw> = BTreeMap::new();
        let succeeded: Vec<&db::ChunkRow> =
            chunks.iter().filter(|c| c.state == "succeeded").collect();
        for page in succeeded.chunks(self.ledger.config().lookup_ids_max) {
            let ids = page
                .iter()
                .map(|c| accounts::post(&self.config.ids, &bank::BankTranId::new(&c.bank_tran_id)?))
                .collect::<Result<Vec<TransferId>, FeesError>>()?;
            let found = self.ledger.lookup_transfers(&ids).await?;
            if found.len() != ids.len() {
                return Err(FeesError::Invariant(format!(
                    "{} succeeded chunks of {day} have no post in the ledger",
                    ids.len() - found.len()
                )));
            }
            for transfer in found {
                let total = ledger_by_code.entry(transfer.code).or_insert(Krw::ZERO);
                *total = total.checked_add(transfer.amount)?;
            }
        }

        // The bank's side: every line of the settlement account's statement from
        // day D to today that prints one of our ids (the connectors print the
        // `bank_tran_id` on both passbooks of each transfer).
        let mut bank_by_code: BTreeMap<u16, Krw> = BTreeMap::new();
        let mut seen: HashMap<String, u32> = HashMap::new();
        let mut unaccounted = Vec::new();
        let from = TranDate::from_kst(day.starts_at());
        let dates = (from, TranDate::from_kst(self.now()).max(from));
        let mut cursor = None;
        for _ in 0..self.config.statement_pages_max {
            let page = statement
                .statement_page(&self.config.settlement_account, dates, cursor.as_ref())
                .await?;
            for line in &page.lines {
                let id = line.print_content.as_str();
                let Some(chunk) = by_id.get(id) else { continue };
                *seen.entry(id.to_owned()).or_default() += 1;
                let code = if chunk.purpose == "withdraw" {
                    accounts::CODE_WITHDRAW
                } else {
                    chunk.kind
                };
                let total = bank_by_code.entry(code).or_insert(Krw::ZERO);
                *total = total.checked_add(line.amount_krw)?;
                if chunk.state != "succeeded" {
                    unaccounted.push(id.to_owned());
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let duplicates: Vec<String> = seen
            .into_iter()
            .filter(|(_, count)| *count > 1)
            .map(|(id, _)| id)
            .collect();

        let mut recorded_by_code: BTreeMap<u16, Krw> = BTreeMap::new();
        let items = db::items(&self.store, &key).await?;
        let unpaid = unpaid_items(&items, &chunks)?;
        for item in &items {
            let total = recorded_by_code.entry(item.kind).or_insert(Krw::ZERO);
            *total = total.checked_add(Krw::new(item.amount_krw))?;
        }
        let mut kinds = Vec::new();
        for kind in FeeKind::ALL {
            let code = kind.code();
            let ledger_krw = ledger_by_code.get(&code).copied().unwrap_or_default();
            let bank_krw = bank_by_code.get(&code).copied().unwrap_or_default();
            kinds.push(KindLine {
                kind,
                recorded_krw: recorded_by_code.get(&code).copied().unwrap_or_default(),
                ledger_krw,
                bank_krw,
                agrees: ledger_krw == bank_krw,
            });
        }
        let ledger_paid_krw = Krw::checked_sum(kinds.iter().map(|k| k.ledger_krw))?;
        let bank_paid_krw = Krw::checked_sum(kinds.iter().map(|k| k.bank_krw))?;
        let ledger_withdrawn_krw = ledger_by_code
            .get(&accounts::CODE_WITHDRAW)
            .copied()
            .unwrap_or_default();
        let bank_withdrawn_krw = bank_by_code
            .get(&accounts::CODE_WITHDRAW)
            .copied()
            .unwrap_or_default();
        let books_agree = kinds.iter().all(|k| k.agrees)
            && ledger_withdrawn_krw == bank_withdrawn_krw
            && duplicates.is_empty()
            && unaccounted.is_empty();
        let agrees = books_agree && unpaid.is_empty();
        Ok(DayReport {
            day,
            kinds,
            ledger_paid_krw,
            bank_paid_krw,
            ledger_withdrawn_krw,
            bank_withdrawn_krw,
            duplicates,
            unaccounted,
            unpaid,
            books_agree,
            agrees,
        })
    }
}
