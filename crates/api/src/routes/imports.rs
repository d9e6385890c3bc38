//! Data in over HTTP: `POST /v1/fees/loans/import`, `/v1/fees/accruals/import`
//! and `/v1/payroll/users/import` take `{"lines": [{…}, …], "dry_run": false}`
//! — each line a flat object with the fields of one line of the matching
//! `settle import` file — and hand them to the domain crate's importer
//! (`fees::import`, `payroll::import`), which checks every line and writes a clean
//! request in batches. Line numbers are positions in `lines`, from 1.
//!
//! Idempotent by content: sending the same lines again changes nothing (they are
//! `unchanged`). A request with any refused line writes nothing and answers 400
//! `invalid_input` with `details.reason = import_refused` and the report. Bulk
//! loads go through the CLI; a request holds at most [`IMPORT_API_LINES_MAX`]
//! lines (and the API's body limit).

use std::future::Future;

use axum::response::Response;
use money::import::{ImportReport, LineError, Record, record_from_object};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Json, Shared, answer};
use crate::auth::Caller;
use crate::error::ApiError;

/// Lines one import request may hold.
pub const IMPORT_API_LINES_MAX: usize = 1_000;

/// The body of an import request.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ImportRequest")]
pub struct ImportBody {
    /// One object per line: the fields of one line of the matching `settle
    /// import` file (strings or integers).
    #[schemars(length(max = 1000))]
    lines: Vec<Map<String, Value>>,
    #[serde(default)]
    dry_run: bool,
}

/// The body's lines as records, or the refusal of those that are not flat.
fn records(body: ImportBody) -> Result<(Vec<Record>, bool), ApiError> {
    if body.lines.len() > IMPORT_API_LINES_MAX {
        return Err(ApiError::invalid(
            "too_many_lines",
            format!("an import request holds at most {IMPORT_API_LINES_MAX} lines"),
        ));
    }
    let mut records = Vec::with_capacity(body.lines.len());
    let mut unreadable: Vec<LineError> = Vec::new();
    for (object, line) in body.lines.into_iter().zip(1u64..) {
        match record_from_object(line, object) {
            Ok(record) => records.push(record),
            Err(error) => unreadable.push(error),
        }
    }
    if !unreadable.is_empty() {
        let mut report = ImportReport::new(records.len() + unreadable.len(), body.dry_run);
        for error in unreadable {
            report.error(error);
        }
        return Err(refused(report));
    }
    Ok((records, body.dry_run))
}

fn refused(report: ImportReport) -> ApiError {
    ApiError::new(
        "invalid_input",
        format!(
            "{} of {} lines refused; nothing was written",
            report.error_lines, report.lines_read
        ),
    )
    .with_details(json!({ "reason": "import_refused", "report": report }))
}

/// A report with refused lines is the request's error (and its audit outcome).
fn clean(report: ImportReport) -> Result<ImportReport, ApiError> {
    if report.is_clean() {
        Ok(report)
    } else {
        Err(refused(report))
    }
}

fn no_progress(_done: u64) {}

/// Reads the body's lines, then runs `import` on them under an audit row named
/// `action`; a report with refused lines is the answer's error.
async fn audited_import<F, Fut>(
    state: &Shared,
    caller: &Caller,
    action: &str,
    body: ImportBody,
    import: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(Vec<Record>, bool) -> Fut,
    Fut: Future<Output = Result<ImportReport, ApiError>>,
{
    let (records, dry_run) = records(body)?;
    let details = json!({ "lines": records.len(), "dry_run": dry_run });
    let report = state
        .audited(caller, action, "", details, async {
            clean(import(records, dry_run).await?)
        })
        .await?;
    Ok(answer(200, report))
}

pub async fn loans(
    state: Shared,
    caller: Caller,
    Json(body): Json<ImportBody>,
) -> Result<Response, ApiError> {
    let importer = state.fees()?.importer();
    audited_import(&state, &caller, "fees.import_loans", body, |records, dry_run| async move {
        Ok(importer.loans(&records, dry_run, &no_progress).await?)
    })
    .await
}

pub async fn accruals(
    state: Shared,
    caller: Caller,
    Json(body): Json<ImportBody>,
) -> Result<Response, ApiError> {
    let importer = state.fees()?.importer();
    audited_import(&state, &caller, "fees.import_accruals", body, |records, dry_run| async move {
        Ok(importer.accruals(&records, dry_run, &no_progress).await?)
    })
    .await
}

pub async fn payroll_users(
    state: Shared,
    caller: Caller,
    Json(body): Json<ImportBody>,
) -> Result<Response, ApiError> {
    let importer = state.payroll()?.importer();
    audited_import(&state, &caller, "payroll.import_users", body, |records, dry_run| async move {
        Ok(importer.users(&records, dry_run, &no_progress).await?)
    })
    .await
}
