//! Importing a lender's payroll users (`settle import payroll-users`,
//! `POST /v1/payroll/users/import`). A line is `user_id, holder_name,
//! payout_account, payout_holder` (optional: the holder's name), the repayment
//! and suspension rules `advance_krw` and `suspend_percent`, and one
//! `virtual_account_<provider>` column per provider ([`ProviderName::ALL`]):
//! the user's virtual account at that provider, which the lender already has.
//! The account of the provider routing picks for the user now is required: it is
//! the one the poller reads. An import opens the users' ledger wallets and writes
//! the users; it calls no bank and no provider.
//!
//! Every line is checked before anything is written (fields, duplicates in the
//! file, a virtual account held by another user, the stored users: the same
//! fields are unchanged, other fields `exists_with_different_fields`). A file
//! with any bad line writes nothing; a clean one is written in batches of
//! [`IMPORT_BATCH_LINES`], one transaction each.

use std::collections::BTreeMap;

use bank::providers::ProviderName;
use bank::routing::RoutingTable;
use bank::{AccountNumber, HolderName, UserId};
use ledger::Ledger;
use money::import::{
    Fields, IMPORT_BATCH_LINES, ImportReport, LineError, Record, dedupe, parse_integer,
};
use money::{Clock, DerivedIds};
use std::sync::Arc;

use crate::db::{self, ImportedUser, UserRow};
use crate::{Payroll, PayrollError, books};

/// Called with the number of lines done so far (for a progress bar).
pub type Progress<'a> = &'a (dyn Fn(u64) + Send + Sync);

/// The column of a provider's virtual account.
pub fn virtual_account_column(provider: ProviderName) -> String {
    format!("virtual_account_{provider}")
}

/// Writes imported payroll users. Needs no bank: an importing process opens
/// payroll's store, the routing table and the ledger.
#[derive(Clone)]
pub struct Importer {
    store: store::Store,
    ledger: Ledger,
    routing: RoutingTable,
    ids: DerivedIds,
    clock: Arc<dyn Clock>,
}

impl Payroll {
    /// An importer on this handle's stores, routing table and ids.
    pub fn importer(&self) -> Importer {
        Importer {
            store: self.inner.store.clone(),
            ledger: self.inner.ledger.clone(),
            routing: self.inner.facade.routing().clone(),
            ids: self.inner.config.ids.clone(),
            clock: self.inner.clock.clone(),
        }
    }
}

/// One checked line.
struct UserLine {
    user_id: UserId,
    user: ImportedUser,
}

fn parse_user(record: &Record) -> Result<UserLine, Vec<LineError>> {
    let mut fields = Fields::new(record);
    let user_id = fields.parse("user_id", "invalid_user_id", UserId::parse);
    let holder = fields.parse("holder_name", "invalid_holder_name", HolderName::new);
    let payout_account = fields.parse(
        "payout_account",
        "invalid_payout_account",
        AccountNumber::new,
    );
    let payout_holder =
        fields.parse_optional("payout_holder", "invalid_payout_holder", HolderName::new);
    let advance = fields.parse("advance_krw", "invalid_advance", |text| {
        parse_integer(text, 0, i64::MAX)
    });
    let suspend = fields.parse("suspend_percent", "invalid_suspend_percent", |text| {
        parse_integer(text, 0, 100)
    });
    let mut virtual_accounts = BTreeMap::new();
    let mut accounts_ok = true;
    for provider in ProviderName::ALL {
        let column = virtual_account_column(provider);
        match fields.parse_optional(&column, "invalid_virtual_account", AccountNumber::new) {
            Some(Some(account)) => {
                virtual_accounts.insert(provider.to_string(), account.to_string());
            }
            Some(None) => {}
            None => accounts_ok = false,
        }
    }
    if accounts_ok && virtual_accounts.is_empty() {
        fields.error(
            &virtual_account_column(ProviderName::ALL[0]),
            "missing_virtual_account",
            "a user needs a virtual account at one provider at least",
        );
    }
    let line = match (
        user_id,
        holder,
        payout_account,
        payout_holder,
        advance,
        suspend,
    ) {
        (
            Some(user_id),
            Some(holder),
            Some(payout),
            Some(payout_holder),
            Some(advance),
            Some(suspend),
        ) => Some(UserLine {
            user_id,
            user: ImportedUser {
                payout_holder: payout_holder.unwrap_or_else(|| holder.clone()).to_string(),
                holder_name: holder.to_string(),
                payout_account: payout.to_string(),
                advance_krw: advance,
                suspend_percent: suspend,
                virtual_accounts,
            },
        }),
        _ => None,
    };
    fields.finish(line)
}

/// The fields of `stored` that differ from `wanted`.
fn differences(stored: &ImportedUser, wanted: &ImportedUser) -> Vec<String> {
    let mut differ = Vec::new();
    let pairs = [
        ("holder_name", stored.holder_name == wanted.holder_name),
        (
            "payout_account",
            stored.payout_account == wanted.payout_account,
        ),
        (
            "payout_holder",
            stored.payout_holder == wanted.payout_holder,
        ),
        ("advance_krw", stored.advance_krw == wanted.advance_krw),
        (
            "suspend_percent",
            stored.suspend_percent == wanted.suspend_percent,
        ),
    ];
    differ.extend(
        pairs
            .iter()
            .filter(|(_, same)| !same)
            .map(|(n, _)| (*n).to_owned()),
    );
    for provider in ProviderName::ALL {
        let name = provider.as_str();
        if stored.virtual_accounts.get(name) != wanted.virtual_accounts.get(name) {
            differ.push(virtual_account_column(provider));
        }
    }
    differ
}

impl Importer {
    /// Migrates payroll's tables (and the outbox) and opens payroll's shared
    /// ledger accounts, as [`Payroll::open`] does.
    pub async fn open(
        store: store::Store,
        ledger: Ledger,
        routing: RoutingTable,
        ids: DerivedIds,
        clock: Arc<dyn Clock>,
    ) -> Result<Importer, PayrollError> {
        events::migrate(&store).await?;
        db::migrate(&store).await?;
        books::open_shared(&ledger, &ids).await?;
        Ok(Importer {
            store,
            ledger,
            routing,
            ids,
            clock,
        })
    }

    /// Imports payroll user lines; see the module's header.
    pub async fn users(
        &self,
        records: &[Record],
        dry_run: bool,
        progress: Progress<'_>,
    ) -> Result<ImportReport, PayrollError> {
        let mut report = ImportReport::new(records.len(), dry_run);
        let mut lines = Vec::with_capacity(records.len());
        for record in records {
            match parse_user(record) {
                Ok(line) => lines.push((record.line, line.user_id, line.user)),
                Err(errors) => report.line_errors(errors),
            }
        }
        let lines = dedupe(lines, &mut report);
        let new = self.check(lines, &mut report).await?;
        report.to_apply = new.len() as u64;
        if !report.is_clean() || dry_run {
            report.sort_errors();
            return Ok(report);
        }
        let mut done = report.unchanged;
        for batch in new.chunks(IMPORT_BATCH_LINES) {
            if let Err(error) = self.write(batch, &mut report).await? {
                report.error(error);
                return Ok(report);
            }
            done += batch.len() as u64;
            progress(done);
        }
        Ok(report)
    }

    /// The new lines with the account the poller reads; errors for the rest.
    async fn check(
        &self,
        lines: Vec<(u64, UserId, ImportedUser)>,
        report: &mut ImportReport,
    ) -> Result<Vec<(u64, UserRow, ImportedUser)>, PayrollError> {
        let ids: Vec<String> = lines.iter().map(|(_, id, _)| id.to_string()).collect();
        let stored = db::imported_users(&self.store, &ids).await?;
        let mut in_file: BTreeMap<(String, String), UserId> = BTreeMap::new();
        let mut new = Vec::new();
        for (line, user_id, user) in lines {
            let current = self.routing.provider_for(user_id).await?;
            if let Some(existing) = stored.get(&user_id.to_string()) {
                let mut existing = existing.clone();
                if let Some(account) = existing.virtual_accounts.remove("") {
                    existing
                        .virtual_accounts
                        .insert(current.to_string(), account);
                }
                let differ = differences(&existing, &user);
                if differ.is_empty() {
                    report.unchanged += 1;
                } else {
                    report.error(LineError::new(
                        line,
                        &differ[0],
                        "exists_with_different_fields",
                        format!("user {user_id} is stored with other {}", differ.join(", ")),
                    ));
                }
                continue;
            }
            match self
                .check_new(line, user_id, &user, current, &mut in_file)
                .await?
            {
                Ok(row) => new.push((line, row, user)),
                Err(error) => report.error(error),
            }
        }
        Ok(new)
    }

    async fn check_new(
        &self,
        line: u64,
        user_id: UserId,
        user: &ImportedUser,
        current: ProviderName,
        in_file: &mut BTreeMap<(String, String), UserId>,
    ) -> Result<Result<UserRow, LineError>, PayrollError> {
        for (provider, account) in &user.virtual_accounts {
            let column = format!("virtual_account_{provider}");
            let key = (provider.clone(), account.clone());
            if let Some(other) = in_file.get(&key).filter(|other| **other != user_id) {
                let message =
                    format!("user {other} earlier in the file has {account} at {provider}");
                return Ok(Err(LineError::new(
                    line,
                    &column,
                    "virtual_account_taken",
                    message,
                )));
            }
            in_file.insert(key, user_id);
            if let Some(other) = db::virtual_account_holder(&self.store, provider, account).await? {
                let message = format!("user {other} has {account}");
                return Ok(Err(LineError::new(
                    line,
                    &column,
                    "virtual_account_taken",
                    message,
                )));
            }
        }
        let Some(polled) = user.virtual_accounts.get(current.as_str()) else {
            return Ok(Err(LineError::new(
                line,
                &virtual_account_column(current),
                "missing_virtual_account",
                format!(
                    "routing sends user {user_id} to {current}: its virtual account is required"
                ),
            )));
        };
        Ok(Ok(UserRow {
            user_id: user_id.to_string(),
            holder_name: user.holder_name.clone(),
            virtual_account: polled.clone(),
            payout_account: user.payout_account.clone(),
            payout_holder: user.payout_holder.clone(),
            advance_krw: user.advance_krw,
            suspend_percent: user.suspend_percent,
            last_balance_krw: 0,
            deposit_cursor: 0,
        }))
    }

    /// Opens a batch's wallets, then writes its users and their virtual
    /// accounts in one transaction. A user stored meanwhile rolls it back.
    async fn write(
        &self,
        batch: &[(u64, UserRow, ImportedUser)],
        report: &mut ImportReport,
    ) -> Result<Result<(), LineError>, PayrollError> {
        let ids: Vec<String> = batch
            .iter()
            .map(|(_, row, _)| row.user_id.clone())
            .collect();
        books::open_wallets(&self.ledger, &self.ids, &ids).await?;
        let now_ms = self.clock.now().unix_ms();
        let mut tx = self.store.begin().await?;
        for (line, row, user) in batch {
            if !db::insert_user(&mut tx, row, now_ms).await? {
                tx.rollback().await?;
                return Ok(Err(LineError::new(
                    *line,
                    "user_id",
                    "exists_with_different_fields",
                    format!(
                        "user {} was stored by another writer meanwhile; import again to compare",
                        row.user_id
                    ),
                )));
            }
            for (provider, account) in &user.virtual_accounts {
                db::insert_virtual_account(&mut tx, &row.user_id, provider, account).await?;
            }
        }
        tx.commit().await?;
        report.batches_committed += 1;
        report.applied += batch.len() as u64;
        metrics::counter!("payroll_users_enrolled_total").increment(batch.len() as u64);
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[(&str, &str)]) -> Record {
        Record {
            line: 3,
            fields: fields
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_user_line_names_each_bad_field_and_needs_a_virtual_account() {
        let bad = record(&[
            ("user_id", "not-a-uuid"),
            ("holder_name", "김민지"),
            ("payout_account", "1002003004005"),
            ("advance_krw", "-5"),
            ("suspend_percent", "101"),
            ("virtual_acount_next", "79000000000001"),
        ]);
        let found: Vec<(String, &str)> = match parse_user(&bad) {
            Err(errors) => errors.into_iter().map(|e| (e.field, e.code)).collect(),
            Ok(_) => panic!("a bad line was accepted"),
        };
        assert_eq!(
            found,
            vec![
                ("user_id".to_owned(), "invalid_user_id"),
                ("advance_krw".to_owned(), "invalid_advance"),
                ("suspend_percent".to_owned(), "invalid_suspend_percent"),
                (
                    "virtual_account_legacy".to_owned(),
                    "missing_virtual_account"
                ),
                ("virtual_acount_next".to_owned(), "unknown_field"),
            ]
        );
    }
}
