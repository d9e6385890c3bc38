//! Importing a lender's loans and daily accruals (`settle import loans|accruals`,
//! `POST /v1/fees/loans/import`, `POST /v1/fees/accruals/import`).
//!
//! A loan line is `loan_id, bank_account, holder_name`: the loan's fee account is
//! opened in the ledger and the loan registered, as [`Fees::register_loans`]
//! does. An accrual line is `loan_id, day, kind, amount_krw`: one accrual per
//! (loan, day, kind), journaled and applied as [`Fees::accrue`] does, under a
//! transfer id derived from that key ([`accounts::imported_accrual`]), so no
//! client can claim it and the same line imported twice is one accrual.
//!
//! Every line is checked before anything is written (fields, duplicates in the
//! file, the stored rows: the same key with the same fields is unchanged, with
//! other fields `exists_with_different_fields`; an accrual's loan must exist and
//! its day must not be recorded yet). A file with any bad line writes nothing; a
//! clean one is written in batches of [`IMPORT_BATCH_LINES`], one transaction
//! each. This module never pays anything and never calls a bank.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bank::{AccountNumber, HolderName};
use ledger::{Ledger, TransferRequest, TransferResult};
use money::import::{
    Fields, IMPORT_BATCH_LINES, ImportReport, LineError, Record, Verdict, dedupe, parse_integer,
};
use money::{Clock, DerivedIds, Krw};

use crate::accrual::Loan;
use crate::config::accounts;
use crate::db::{self, AccrualRow, LoanRow};
use crate::{BusinessDay, FeeKind, Fees, FeesError};

/// Called with the number of lines done so far (for a progress bar).
pub type Progress<'a> = &'a (dyn Fn(u64) + Send + Sync);

/// One accrual line, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccrualLine {
    pub loan_id: u64,
    pub day: BusinessDay,
    pub kind: FeeKind,
    pub amount: Krw,
}

/// Writes imported loans and accruals. Needs no bank: an importing process
/// only opens the ledger.
#[derive(Clone)]
pub struct Importer {
    ledger: Ledger,
    ids: DerivedIds,
    clock: Arc<dyn Clock>,
}

impl Fees {
    /// An importer on this handle's ledger and ids.
    pub fn importer(&self) -> Importer {
        Importer {
            ledger: self.ledger.clone(),
            ids: self.config.ids.clone(),
            clock: self.clock.clone(),
        }
    }
}

fn parse_loan(record: &Record) -> Result<Loan, Vec<LineError>> {
    let mut fields = Fields::new(record);
    let loan_id = fields.parse("loan_id", "invalid_loan_id", parse_loan_id);
    let bank_account = fields.parse("bank_account", "invalid_bank_account", AccountNumber::new);
    let holder_name = fields.parse("holder_name", "invalid_holder_name", HolderName::new);
    let loan = match (loan_id, bank_account, holder_name) {
        (Some(loan_id), Some(bank_account), Some(holder_name)) => Some(Loan {
            loan_id,
            bank_account,
            holder_name,
        }),
        _ => None,
    };
    fields.finish(loan)
}

fn parse_loan_id(text: &str) -> Result<u64, String> {
    parse_integer(text, 1, i64::MAX).map(|id| id.unsigned_abs())
}

fn parse_accrual(record: &Record) -> Result<AccrualLine, Vec<LineError>> {
    let mut fields = Fields::new(record);
    let loan_id = fields.parse("loan_id", "invalid_loan_id", parse_loan_id);
    let day = fields.parse("day", "invalid_day", BusinessDay::parse);
    let kind = fields.parse("kind", "invalid_kind", |text| {
        FeeKind::parse(text).ok_or_else(|| {
            let names: Vec<&str> = FeeKind::ALL.iter().map(|k| k.name()).collect();
            format!("{text:?} is not one of {}", names.join(", "))
        })
    });
    let amount = fields.parse("amount_krw", "invalid_amount", |text| {
        parse_integer(text, 1, i64::MAX).map(Krw::new)
    });
    let line = match (loan_id, day, kind, amount) {
        (Some(loan_id), Some(day), Some(kind), Some(amount)) => Some(AccrualLine {
            loan_id,
            day,
            kind,
            amount,
        }),
        _ => None,
    };
    fields.finish(line)
}

fn loan_row(loan: &Loan) -> LoanRow {
    LoanRow {
        loan_id: loan.loan_id,
        bank_account: loan.bank_account.to_string(),
        holder_name: loan.holder_name.to_string(),
    }
}

/// The fields of `stored` that differ from `wanted`, for the error message.
fn loan_differences(stored: &LoanRow, wanted: &LoanRow) -> Vec<&'static str> {
    let mut differ = Vec::new();
    if stored.bank_account != wanted.bank_account {
        differ.push("bank_account");
    }
    if stored.holder_name != wanted.holder_name {
        differ.push("holder_name");
    }
    differ
}

fn conflict(line: u64, what: &str, differ: &[&str]) -> LineError {
    LineError::new(
        line,
        differ.first().copied().unwrap_or(""),
        "exists_with_different_fields",
        format!("{what} is stored with other {}", differ.join(", ")),
    )
}

impl Importer {
    /// Migrates fees' tables and opens the house accounts accruals come from.
    pub async fn open(
        ledger: Ledger,
        ids: DerivedIds,
        clock: Arc<dyn Clock>,
    ) -> Result<Importer, FeesError> {
        ledger
            .store()
            .migrate(db::COMPONENT, db::MIGRATIONS)
            .await?;
        accounts::open_house_accounts(&ledger, &ids).await?;
        Ok(Importer { ledger, ids, clock })
    }

    /// Imports loan lines; see the module's header.
    pub async fn loans(
        &self,
        records: &[Record],
        dry_run: bool,
        progress: Progress<'_>,
    ) -> Result<ImportReport, FeesError> {
        let mut report = ImportReport::new(records.len(), dry_run);
        let mut lines = Vec::with_capacity(records.len());
        for record in records {
            match parse_loan(record) {
                Ok(loan) => lines.push((record.line, loan.loan_id, loan_row(&loan))),
                Err(errors) => report.line_errors(errors),
            }
        }
        let lines = dedupe(lines, &mut report);
        let stored: BTreeMap<u64, LoanRow> = self
            .stored_loans(lines.iter().map(|(_, id, _)| *id))
            .await?;
        let mut new = Vec::new();
        for (line, loan_id, row) in lines {
            match stored.get(&loan_id) {
                None => new.push((line, row)),
                Some(existing) if *existing == row => report.unchanged += 1,
                Some(existing) => report.error(conflict(
                    line,
                    &format!("loan {loan_id}"),
                    &loan_differences(existing, &row),
                )),
            }
        }
        report.to_apply = new.len() as u64;
        if !report.is_clean() || dry_run {
            report.sort_errors();
            return Ok(report);
        }
        let mut done = report.unchanged;
        for batch in new.chunks(IMPORT_BATCH_LINES) {
            if let Err(error) = self.write_loans(batch, &mut report).await? {
                report.error(error);
                return Ok(report);
            }
            done += batch.len() as u64;
            progress(done);
        }
        Ok(report)
    }

    async fn stored_loans(
        &self,
        ids: impl Iterator<Item = u64>,
    ) -> Result<BTreeMap<u64, LoanRow>, FeesError> {
        let ids: Vec<u64> = ids.collect();
        Ok(db::loans(self.ledger.store(), &ids)
            .await?
            .into_iter()
            .map(|row| (row.loan_id, row))
            .collect())
    }

    /// Opens a batch's fee accounts, then registers its loans in one
    /// transaction. A loan stored meanwhile with other fields rolls the batch
    /// back and is the line's error.
    async fn write_loans(
        &self,
        batch: &[(u64, LoanRow)],
        report: &mut ImportReport,
    ) -> Result<Result<(), LineError>, FeesError> {
        let wanted = batch
            .iter()
            .map(|(_, row)| accounts::loan_account(&self.ids, row.loan_id))
            .collect::<Result<Vec<_>, _>>()?;
        accounts::check_opened(&self.ledger.create_accounts(&wanted).await?)?;
        let mut tx = self.ledger.store().begin().await?;
        let mut unchanged = 0;
        for (line, row) in batch {
            if db::insert_loan(&mut tx, row).await? {
                continue;
            }
            match db::loan_in(&mut tx, row.loan_id).await? {
                Some(existing) if existing == *row => unchanged += 1,
                existing => {
                    tx.rollback().await?;
                    let differ = existing.map_or_else(Vec::new, |e| loan_differences(&e, row));
                    return Ok(Err(conflict(
                        *line,
                        &format!("loan {}", row.loan_id),
                        &differ,
                    )));
                }
            }
        }
        tx.commit().await?;
        report.batches_committed += 1;
        report.unchanged += unchanged;
        report.applied += batch.len() as u64 - unchanged;
        Ok(Ok(()))
    }

    /// Imports accrual lines; see the module's header.
    pub async fn accruals(
        &self,
        records: &[Record],
        dry_run: bool,
        progress: Progress<'_>,
    ) -> Result<ImportReport, FeesError> {
        let mut report = ImportReport::new(records.len(), dry_run);
        let mut lines = Vec::with_capacity(records.len());
        for record in records {
            match parse_accrual(record) {
                Ok(accrual) => lines.push((
                    record.line,
                    (accrual.loan_id, accrual.day, accrual.kind),
                    accrual,
                )),
                Err(errors) => report.line_errors(errors),
            }
        }
        let lines = dedupe(lines, &mut report);
        let lines = self.check_accruals(lines, &mut report).await?;
        report.to_apply = lines
            .iter()
            .filter(|(_, _, verdict)| *verdict == Verdict::New)
            .count() as u64;
        if !report.is_clean() || dry_run {
            report.sort_errors();
            return Ok(report);
        }
        let mut done = 0;
        for batch in lines.chunks(IMPORT_BATCH_LINES) {
            if let Err(error) = self.write_accruals(batch, &mut report).await? {
                report.error(error);
                return Ok(report);
            }
            done += batch.len() as u64;
            progress(done);
        }
        Ok(report)
    }

    /// Each line's row and verdict against the store; errors for lines whose
    /// loan is unknown, whose day is recorded, or whose key is stored with
    /// another amount.
    async fn check_accruals(
        &self,
        lines: Vec<(u64, (u64, BusinessDay, FeeKind), AccrualLine)>,
        report: &mut ImportReport,
    ) -> Result<Vec<(u64, AccrualRow, Verdict)>, FeesError> {
        let store = self.ledger.store();
        let loans = self
            .stored_loans(lines.iter().map(|(_, key, _)| key.0))
            .await?;
        let mut recorded = BTreeSet::new();
        for day in lines
            .iter()
            .map(|(_, key, _)| key.1)
            .collect::<BTreeSet<_>>()
        {
            if db::day(store, &day.to_string()).await?.is_some() {
                recorded.insert(day);
            }
        }
        let mut rows = Vec::with_capacity(lines.len());
        for (line, _, accrual) in &lines {
            let id =
                accounts::imported_accrual(&self.ids, accrual.day, accrual.loan_id, accrual.kind)?;
            rows.push((
                *line,
                AccrualRow {
                    transfer_id: id.to_string(),
                    day: accrual.day.to_string(),
                    loan_id: accrual.loan_id,
                    kind: accrual.kind.code(),
                    amount_krw: accrual.amount.get(),
                },
            ));
        }
        let ids: Vec<String> = rows
            .iter()
            .map(|(_, row)| row.transfer_id.clone())
            .collect();
        let stored: BTreeMap<String, AccrualRow> = db::accruals_by_id(store, &ids)
            .await?
            .into_iter()
            .map(|row| (row.transfer_id.clone(), row))
            .collect();
        let mut checked = Vec::with_capacity(rows.len());
        for ((line, row), (_, _, accrual)) in rows.into_iter().zip(&lines) {
            let verdict = match stored.get(&row.transfer_id) {
                None => Verdict::New,
                Some(existing) if *existing == row => Verdict::Unchanged,
                Some(_) => Verdict::Conflict,
            };
            let error = if verdict == Verdict::Conflict {
                Some(conflict(
                    line,
                    &format!(
                        "the accrual of loan {} on {} for {}",
                        accrual.loan_id, accrual.day, accrual.kind
                    ),
                    &["amount_krw"],
                ))
            } else if !loans.contains_key(&accrual.loan_id) {
                Some(LineError::new(
                    line,
                    "loan_id",
                    "unknown_loan",
                    format!("loan {} was never imported", accrual.loan_id),
                ))
            } else if verdict == Verdict::New && recorded.contains(&accrual.day) {
                Some(LineError::new(
                    line,
                    "day",
                    "day_already_recorded",
                    format!(
                        "{} is recorded: a new accrual would never be settled",
                        accrual.day
                    ),
                ))
            } else {
                None
            };
            match error {
                Some(error) => report.error(error),
                None => {
                    if verdict == Verdict::Unchanged {
                        report.unchanged += 1;
                    }
                    checked.push((line, row, verdict));
                }
            }
        }
        Ok(checked)
    }

    /// Journals a batch's new accruals in one transaction, then has the ledger
    /// apply the whole batch — unchanged lines too: an import cut short after
    /// its journal committed is completed by importing the file again (the
    /// ledger answers `exists` for what it applied before).
    async fn write_accruals(
        &self,
        batch: &[(u64, AccrualRow, Verdict)],
        report: &mut ImportReport,
    ) -> Result<Result<(), LineError>, FeesError> {
        let source = accounts::fee_source(&self.ids)?;
        let now = self.clock.now();
        let mut tx = self.ledger.store().begin().await?;
        let mut requests = Vec::with_capacity(batch.len());
        for (line, row, verdict) in batch {
            if *verdict == Verdict::New
                && !db::insert_accrual(&mut tx, row, now.unix_ms()).await?
                && db::accrual_in(&mut tx, &row.transfer_id).await?.as_ref() != Some(row)
            {
                tx.rollback().await?;
                return Ok(Err(conflict(*line, "the accrual", &["amount_krw"])));
            }
            let id = money::TransferId::parse(&row.transfer_id)
                .map_err(|e| FeesError::Corrupt(e.to_string()))?;
            let request = TransferRequest::single(
                id,
                source,
                accounts::loan_fees(&self.ids, row.loan_id)?,
                Krw::new(row.amount_krw),
                now,
            )
            .map_err(|e| FeesError::Invalid(e.to_string()))?
            .with_code(row.kind)
            .with_user_data(
                BusinessDay::parse(&row.day)
                    .map_err(|e| FeesError::Corrupt(e.to_string()))?
                    .as_yyyymmdd(),
            );
            requests.push(request);
        }
        tx.commit().await?;
        report.batches_committed += 1;
        let results = self.ledger.submit(requests).await?;
        let applied_before = report.applied;
        for ((line, _, verdict), result) in batch.iter().zip(results) {
            match (result, verdict) {
                (TransferResult::Ok, Verdict::New) => report.applied += 1,
                (TransferResult::Ok, _) => {
                    // Journaled by an import cut short before the ledger applied it.
                    report.unchanged = report.unchanged.saturating_sub(1);
                    report.applied += 1;
                }
                (TransferResult::Exists, Verdict::New) => report.applied += 1,
                (TransferResult::Exists, _) => {}
                (other, _) => {
                    return Ok(Err(LineError::new(
                        *line,
                        "",
                        "ledger_refused",
                        format!("the ledger refused the accrual: {}", other.code()),
                    )));
                }
            }
        }
        metrics::counter!("fees_accruals_total").increment(report.applied - applied_before);
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[(&str, &str)]) -> Record {
        Record {
            line: 2,
            fields: fields
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn codes(errors: Vec<LineError>) -> Vec<(String, &'static str)> {
        errors.into_iter().map(|e| (e.field, e.code)).collect()
    }

    #[test]
    fn an_accrual_line_names_each_bad_field() {
        let good = record(&[
            ("loan_id", "7"),
            ("day", "2026-11-20"),
            ("kind", "tax"),
            ("amount_krw", "1200"),
        ]);
        assert_eq!(parse_accrual(&good).unwrap().amount, Krw::new(1_200));
        let bad = record(&[
            ("loan_id", "0"),
            ("day", "2026-02-30"),
            ("kind", "vat"),
            ("amount_krw", "12.5"),
            ("memo", "x"),
        ]);
        assert_eq!(
            codes(parse_accrual(&bad).unwrap_err()),
            vec![
                ("loan_id".to_owned(), "invalid_loan_id"),
                ("day".to_owned(), "invalid_day"),
                ("kind".to_owned(), "invalid_kind"),
                ("amount_krw".to_owned(), "invalid_amount"),
                ("memo".to_owned(), "unknown_field"),
            ]
        );
    }

    #[test]
    fn a_loan_line_needs_every_field() {
        let bad = record(&[("loan_id", "9"), ("bank_account", "12")]);
        assert_eq!(
            codes(parse_loan(&bad).unwrap_err()),
            vec![
                ("bank_account".to_owned(), "invalid_bank_account"),
                ("holder_name".to_owned(), "missing_field"),
            ]
        );
    }
}
