//! `settle ledger …`: operator and script access to the core ledger. Output is one
//! JSON document on stdout; errors are JSON on stderr with a stable code.
//! Exit status: 0 applied, 2 bad input, 3 a valid request the ledger refused.

use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use ledger::{AccountFlags, Ledger, LedgerConfig, NewAccount, TransferInput};
use money::{AccountId, Clock, SystemClock, TransferId};

use super::{CliError, DatabaseArgs};

#[derive(Subcommand, Debug)]
pub enum LedgerCommand {
    /// Open an account (idempotent by id).
    CreateAccount(CreateAccountArgs),
    /// Submit one transfer: single, pending (a hold), post or void.
    Transfer(TransferArgs),
    /// Look up an account or a transfer by id.
    Lookup(LookupArgs),
    /// An account's balances.
    Balance {
        /// The account id (UUID or ULID).
        account_id: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// An account's entries in seq order.
    Entries {
        account_id: String,
        /// First seq to show.
        #[arg(long, default_value_t = 1)]
        from_seq: i64,
        /// Entries to show (at most 1,000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Check every ledger invariant over the whole store.
    Check {
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Args, Debug)]
pub struct CreateAccountArgs {
    /// The new account's id (UUID or ULID), chosen by you.
    #[arg(long)]
    id: String,
    /// The account's kind in your chart of accounts.
    #[arg(long, default_value_t = 1)]
    code: u16,
    /// The account may never be overdrawn (a customer's money).
    #[arg(long)]
    debits_must_not_exceed_credits: bool,
    /// Credits may never exceed debits (e.g. a loan).
    #[arg(long)]
    credits_must_not_exceed_debits: bool,
    #[command(flatten)]
    db: DatabaseArgs,
}

#[derive(Args, Debug)]
pub struct TransferArgs {
    /// The transfer's id, which is also its idempotency key.
    #[arg(long)]
    id: String,
    /// single, pending, post or void.
    #[arg(long, default_value = "single")]
    kind: String,
    #[arg(long)]
    debit: Option<String>,
    #[arg(long)]
    credit: Option<String>,
    /// Whole won, e.g. 250000.
    #[arg(long, allow_hyphen_values = true)]
    amount: Option<String>,
    /// For post and void: the hold to settle.
    #[arg(long)]
    pending_id: Option<String>,
    /// For pending: expire the hold after this many ms (0 = never).
    #[arg(long)]
    timeout_ms: Option<i64>,
    #[arg(long)]
    code: Option<u16>,
    #[command(flatten)]
    db: DatabaseArgs,
}

/// Exactly one of `--account` and `--transfer` (a group over the struct would also
/// take in the flattened database arguments and ask for an unnamed one).
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("what").args(["account", "transfer"]).required(true)))]
pub struct LookupArgs {
    #[arg(long)]
    account: Option<String>,
    #[arg(long)]
    transfer: Option<String>,
    #[command(flatten)]
    db: DatabaseArgs,
}

pub async fn open(db: &DatabaseArgs) -> anyhow::Result<Ledger> {
    let url = db.url()?;
    let store = store::Store::connect(&url)
        .await
        .with_context(|| format!("opening the database {}", store::redact(&url)))?;
    Ok(Ledger::open(store, Arc::new(SystemClock), LedgerConfig::default()).await?)
}

fn print(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn account_id(text: &str) -> Result<AccountId, CliError> {
    AccountId::parse(text).map_err(|e| CliError::new(e.code(), format!("account id: {e}")))
}

pub async fn run(command: LedgerCommand) -> anyhow::Result<()> {
    match command {
        LedgerCommand::CreateAccount(args) => {
            let flags = AccountFlags {
                debits_must_not_exceed_credits: args.debits_must_not_exceed_credits,
                credits_must_not_exceed_debits: args.credits_must_not_exceed_debits,
            };
            let new = NewAccount::new(account_id(&args.id)?, args.code, flags)
                .map_err(|e| CliError::new(e.code(), e.to_string()))?;
            let ledger = open(&args.db).await?;
            let result = ledger
                .create_accounts(&[new])
                .await?
                .pop()
                .context("no result")?;
            let account = ledger.lookup_accounts(&[new.id()]).await?.pop();
            print(&serde_json::json!({"result": result.code(), "account": account}))?;
            if result == ledger::CreateAccountResult::ExistsWithDifferentFields {
                return Err(CliError::new(
                    result.code(),
                    "an account with this id exists with other fields",
                )
                .into());
            }
            Ok(())
        }
        LedgerCommand::Transfer(args) => {
            let amount = args
                .amount
                .as_deref()
                .map(money::Krw::parse)
                .transpose()
                .map_err(|e| CliError::new(e.code(), e.to_string()))?;
            let input = TransferInput {
                id: args.id,
                kind: Some(args.kind),
                debit_account_id: args.debit,
                credit_account_id: args.credit,
                amount: amount.map(|a| a.get()),
                pending_id: args.pending_id,
                timeout_ms: args.timeout_ms,
                code: args.code,
                ..TransferInput::default()
            };
            let request = input
                .parse(SystemClock.now())
                .map_err(|e| CliError::new(e.code(), e.to_string()))?;
            let ledger = open(&args.db).await?;
            let result = ledger.transfer(request).await?;
            let transfer = ledger.lookup_transfers(&[request.id()]).await?.pop();
            print(
                &serde_json::json!({"id": request.id(), "result": result.code(), "transfer": transfer}),
            )?;
            if !result.is_applied() {
                return Err(RefusedError(result).into());
            }
            Ok(())
        }
        LedgerCommand::Lookup(args) => {
            let ledger = open(&args.db).await?;
            if let Some(id) = args.account {
                let account = ledger.lookup_accounts(&[account_id(&id)?]).await?.pop();
                let account = account.ok_or_else(|| {
                    CliError::new("account_not_found", format!("no account {id}"))
                })?;
                print(&serde_json::to_value(account)?)
            } else if let Some(id) = args.transfer {
                let id = TransferId::parse(&id)
                    .map_err(|e| CliError::new(e.code(), format!("transfer id: {e}")))?;
                print(&serde_json::to_value(ledger.outcome(id).await?)?)
            } else {
                Err(CliError::new("missing_field", "give --account or --transfer").into())
            }
        }
        LedgerCommand::Balance { account_id: id, db } => {
            let ledger = open(&db).await?;
            let account = ledger
                .lookup_accounts(&[account_id(&id)?])
                .await?
                .pop()
                .ok_or_else(|| CliError::new("account_not_found", format!("no account {id}")))?;
            print(&serde_json::json!({
                "account_id": account.id,
                "debits_pending": account.debits_pending,
                "debits_posted": account.debits_posted,
                "credits_pending": account.credits_pending,
                "credits_posted": account.credits_posted,
                "credit_balance": account.credit_balance(),
                "available_credit_balance": account.available_credit_balance(),
                "seq": account.seq,
            }))
        }
        LedgerCommand::Entries {
            account_id: id,
            from_seq,
            limit,
            db,
        } => {
            let ledger = open(&db).await?;
            let entries = ledger.entries(account_id(&id)?, from_seq, limit).await?;
            print(&serde_json::to_value(entries)?)
        }
        LedgerCommand::Check { db } => {
            let ledger = open(&db).await?;
            let totals = ledger.totals().await?;
            let checks: Vec<_> = totals
                .invariants()
                .into_iter()
                .map(|(name, holds)| serde_json::json!({"invariant": name, "ok": holds}))
                .collect();
            print(&serde_json::json!({
                "accounts": totals.accounts,
                "debits_posted": totals.debits_posted.to_string(),
                "credits_posted": totals.credits_posted.to_string(),
                "invariants": checks,
            }))?;
            if !totals.all_hold() {
                anyhow::bail!("a ledger invariant is broken");
            }
            Ok(())
        }
    }
}

/// A valid transfer the ledger refused (exit status 3); the JSON on stdout says why.
#[derive(Debug, thiserror::Error)]
#[error("the ledger refused the transfer: {}", .0.code())]
pub struct RefusedError(pub ledger::TransferResult);

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::LookupArgs;

    #[derive(Parser, Debug)]
    struct Lookup {
        #[command(flatten)]
        args: LookupArgs,
    }

    #[test]
    fn lookup_takes_a_transfer_or_an_account_as_the_readme_shows_and_not_both() {
        let db = ["--database-url", "sqlite:///tmp/readme.db"];
        let id = "0192f1a8-7b2c-7d3e-8f40-0000000000a1";
        let parse = |extra: &[&str]| {
            let mut line = vec!["lookup"];
            line.extend_from_slice(extra);
            line.extend_from_slice(&db);
            Lookup::try_parse_from(line)
        };
        assert_eq!(
            parse(&["--transfer", id]).unwrap().args.transfer.as_deref(),
            Some(id)
        );
        assert!(parse(&["--account", id]).is_ok());
        assert!(parse(&[]).is_err(), "one of them is required");
        assert!(parse(&["--account", id, "--transfer", id]).is_err());
    }
}
