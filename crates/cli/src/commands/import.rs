//! `settle import loans|accruals|payroll-users FILE [--format csv|ndjson]
//! [--dry-run]`: reads a lender's file into records and hands them to the domain
//! crate that owns them (`fees::import`, `payroll::import`), which checks every
//! line and writes a clean file in batches. This module only reads files: the
//! size and line limits, CSV (a header line naming the columns) or NDJSON (one
//! flat JSON object per line; values are strings or integers). A line it cannot
//! read is a line error like any other, and then nothing is written.
//!
//! The report is JSON on stdout; a file with refused lines exits 2
//! (`import_refused`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use money::import::{
    IMPORT_FILE_BYTES_MAX, IMPORT_FILE_LINES_MAX, IMPORT_LINE_BYTES_MAX, ImportReport, LineError,
    Record, record_from_object,
};
use money::{Clock, SystemClock};

use super::{CliError, DatabaseArgs};
use crate::progress;
use crate::settings::{Overrides, Settings};

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Loans and their fee accounts: loan_id, bank_account, holder_name.
    Loans(FileArgs),
    /// Daily accruals per fee kind: loan_id, day, kind, amount_krw.
    Accruals(FileArgs),
    /// Payroll users: user_id, holder_name, payout_account, payout_holder,
    /// advance_krw, suspend_percent, virtual_account_<provider>…
    PayrollUsers(PayrollFileArgs),
}

#[derive(Args, Debug)]
pub struct FileArgs {
    /// The file to import.
    file: PathBuf,
    /// How the file is written (default: from its extension, .csv or .ndjson/.jsonl).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Check every line and report, writing nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    db: DatabaseArgs,
}

#[derive(Args, Debug)]
pub struct PayrollFileArgs {
    #[command(flatten)]
    file: FileArgs,
    /// Payroll's database, as `serve` derives it (the main one on PostgreSQL,
    /// `<name>-payroll.db` beside a SQLite file).
    #[arg(long, env = "SETTLE_PAYROLL_DATABASE_URL")]
    payroll_database_url: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
    Ndjson,
}

pub async fn run(command: ImportCommand, file: Option<&Path>) -> anyhow::Result<()> {
    match command {
        ImportCommand::Loans(args) => import_fees(args, "loans", file).await,
        ImportCommand::Accruals(args) => import_fees(args, "accruals", file).await,
        ImportCommand::PayrollUsers(args) => import_payroll_users(args, file).await,
    }
}

async fn open_ledger(url: &str) -> anyhow::Result<(ledger::Ledger, Arc<dyn Clock>)> {
    let store = store::Store::connect(url)
        .await
        .with_context(|| format!("opening {}", store::redact(url)))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ledger = ledger::Ledger::open(store, clock.clone(), ledger::LedgerConfig::default())
        .await
        .context("opening the ledger")?;
    Ok((ledger, clock))
}

/// The installation's id secret, from the configuration (file, environment).
fn installation_ids(db: &DatabaseArgs, file: Option<&Path>) -> anyhow::Result<money::DerivedIds> {
    let mut overrides = Overrides::default();
    overrides.set("database.url", db.database_url.clone());
    Ok(Settings::load(file, &overrides)?.ids()?)
}

async fn import_fees(args: FileArgs, what: &str, file: Option<&Path>) -> anyhow::Result<()> {
    let (records, unreadable) = read_file(&args.file, args.format)?;
    let dry_run = args.dry_run || !unreadable.is_empty();
    let (ledger, clock) = open_ledger(&args.db.url()?).await?;
    let ids = installation_ids(&args.db, file)?;
    let importer = fees::import::Importer::open(ledger, ids, clock).await?;
    let bar = progress::bar(records.len() as u64, &format!("importing {what}"));
    let tick = |done: u64| bar.set_position(done);
    let report = if what == "loans" {
        importer.loans(&records, dry_run, &tick).await?
    } else {
        importer.accruals(&records, dry_run, &tick).await?
    };
    bar.finish_and_clear();
    finish(report, unreadable, args.dry_run)
}

async fn import_payroll_users(args: PayrollFileArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let (records, unreadable) = read_file(&args.file.file, args.file.format)?;
    let dry_run = args.file.dry_run || !unreadable.is_empty();
    let ledger_url = args.file.db.url()?;
    let url = args
        .payroll_database_url
        .clone()
        .unwrap_or_else(|| super::serve::beside(&ledger_url, "payroll"));
    let (ledger, clock) = open_ledger(&ledger_url).await?;
    let store = store::Store::connect(&url)
        .await
        .with_context(|| format!("opening payroll's database {}", store::redact(&url)))?;
    let routing = bank::routing::RoutingTable::open(store.clone(), clock.clone()).await?;
    let ids = installation_ids(&args.file.db, file)?;
    let importer = payroll::import::Importer::open(store, ledger, routing, ids, clock).await?;
    let bar = progress::bar(records.len() as u64, "importing payroll users");
    let tick = |done: u64| bar.set_position(done);
    let report = importer.users(&records, dry_run, &tick).await?;
    bar.finish_and_clear();
    finish(report, unreadable, args.file.dry_run)
}

/// Prints the report (with the lines that could not be read) and exits 2 when
/// any line was refused.
fn finish(
    mut report: ImportReport,
    unreadable: Vec<LineError>,
    dry_run: bool,
) -> anyhow::Result<()> {
    report.lines_read += unreadable.len() as u64;
    report.dry_run = dry_run;
    for error in unreadable {
        report.error(error);
    }
    report.sort_errors();
    println!("{}", serde_json::to_string_pretty(&report)?);
    if report.is_clean() {
        return Ok(());
    }
    Err(CliError::new(
        "import_refused",
        format!(
            "{} of {} lines refused; nothing was written",
            report.error_lines, report.lines_read
        ),
    )
    .into())
}

/// The file's records and the errors of the lines that could not be read.
fn read_file(path: &Path, format: Option<Format>) -> anyhow::Result<(Vec<Record>, Vec<LineError>)> {
    let format = match format {
        Some(format) => format,
        None => match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => Format::Csv,
            Some("ndjson" | "jsonl") => Format::Ndjson,
            _ => {
                return Err(CliError::new(
                    "unknown_format",
                    "name the format with --format csv|ndjson (the extension does not say)",
                )
                .into());
            }
        },
    };
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if size > IMPORT_FILE_BYTES_MAX {
        return Err(CliError::new(
            "file_too_large",
            format!(
                "{} has {size} bytes; at most {IMPORT_FILE_BYTES_MAX}",
                path.display()
            ),
        )
        .into());
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| CliError::new("not_utf8", format!("{} is not UTF-8: {e}", path.display())))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (records, errors) = match format {
        Format::Csv => parse_csv(text),
        Format::Ndjson => parse_ndjson(text),
    };
    if records.len() + errors.len() > IMPORT_FILE_LINES_MAX {
        return Err(CliError::new(
            "too_many_lines",
            format!("a file holds at most {IMPORT_FILE_LINES_MAX} lines"),
        )
        .into());
    }
    Ok((records, errors))
}

fn too_long(line: u64, text: &str) -> Option<LineError> {
    (text.len() > IMPORT_LINE_BYTES_MAX).then(|| {
        LineError::new(
            line,
            "",
            "line_too_long",
            format!("a line holds at most {IMPORT_LINE_BYTES_MAX} bytes"),
        )
    })
}

/// CSV with a header line; line numbers count the header as line 1.
pub fn parse_csv(text: &str) -> (Vec<Record>, Vec<LineError>) {
    let mut records = Vec::new();
    let mut errors: Vec<LineError> = text
        .lines()
        .zip(1u64..)
        .filter_map(|(line, n)| too_long(n, line))
        .collect();
    if !errors.is_empty() {
        return (records, errors);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(header) => header.iter().map(str::to_owned).collect(),
        Err(error) => {
            errors.push(LineError::new(1, "", "invalid_csv", error.to_string()));
            return (records, errors);
        }
    };
    for row in reader.records() {
        match row {
            Ok(row) => {
                let line = row.position().map_or(0, |p| p.line());
                if row.len() != header.len() {
                    errors.push(LineError::new(
                        line,
                        "",
                        "wrong_field_count",
                        format!("{} fields; the header names {}", row.len(), header.len()),
                    ));
                    continue;
                }
                let fields = header
                    .iter()
                    .cloned()
                    .zip(row.iter().map(str::to_owned))
                    .collect();
                records.push(Record { line, fields });
            }
            Err(error) => {
                let line = error.position().map_or(0, |p| p.line());
                errors.push(LineError::new(line, "", "invalid_csv", error.to_string()));
            }
        }
    }
    (records, errors)
}

/// One flat JSON object per line (blank lines are skipped); a value is a
/// string, an integer or null (absent).
pub fn parse_ndjson(text: &str) -> (Vec<Record>, Vec<LineError>) {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for (raw, line) in text.lines().zip(1u64..) {
        if raw.trim().is_empty() {
            continue;
        }
        if let Some(error) = too_long(line, raw) {
            errors.push(error);
            continue;
        }
        let object: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(raw) {
            Ok(object) => object,
            Err(error) => {
                errors.push(LineError::new(line, "", "invalid_json", error.to_string()));
                continue;
            }
        };
        match record_from_object(line, object) {
            Ok(record) => records.push(record),
            Err(error) => errors.push(error),
        }
    }
    (records, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_are_numbered_from_the_header_and_bad_rows_are_named() {
        let text =
            "loan_id,bank_account,holder_name\n1,5000000000001,김민지\n2,\"50\"\"x\",이\n3,4\n";
        let (records, errors) = parse_csv(text);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].line, 2);
        assert_eq!(
            records[0].fields[2],
            ("holder_name".into(), "김민지".into())
        );
        assert_eq!(records[1].fields[1].1, "50\"x");
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].line, errors[0].code), (4, "wrong_field_count"));
    }

    #[test]
    fn ndjson_lines_are_flat_objects_of_strings_and_integers() {
        let text = "{\"loan_id\": 1, \"kind\": \"tax\"}\n\n{\"loan_id\": 1.5}\n{\"a\": {\"b\": 1}}\nnot json\n";
        let (records, errors) = parse_ndjson(text);
        assert_eq!(records.len(), 1);
        let loan_id = records[0].fields.iter().find(|(name, _)| name == "loan_id");
        assert_eq!(loan_id.map(|(_, value)| value.as_str()), Some("1"));
        let found: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.code)).collect();
        assert_eq!(
            found,
            vec![
                (3, "invalid_value"),
                (4, "invalid_value"),
                (5, "invalid_json")
            ]
        );
        let long = format!("{{\"a\": \"{}\"}}", "x".repeat(IMPORT_LINE_BYTES_MAX));
        assert_eq!(parse_ndjson(&long).1[0].code, "line_too_long");
    }
}
