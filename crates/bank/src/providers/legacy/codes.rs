//! The `legacy` (NH-style) answer-code table: `codes.csv` beside this file, compiled
//! in with `include_str!`, parsed and validated once, then used by the connector to
//! class every `Rpcd` and by the simulator to pick the code it answers for each
//! outcome — one table, so the two cannot drift.
//!
//! This module never guesses: a code that is not in the table is outcome unknown.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::BankError;
use crate::providers::next::codes::{TableError, error_for};

/// The table as shipped with the crate.
const TABLE_CSV: &str = include_str!("codes.csv");
/// More rows than this is a broken file, not a code table.
const ROWS_MAX: usize = 512;
const COLUMNS: usize = 5;
const HEADER: &str = "code,class,reason,source,meaning";
/// The `Rpcd` of a processed call.
pub const SUCCESS: &str = "00000";

/// What one `Rpcd` means for settle: `None` is success, else the error it becomes.
type Meaning = Option<BankError>;

/// The whole validated table, indexed both ways.
#[derive(Debug)]
pub struct CodeTable {
    by_code: HashMap<String, Meaning>,
    /// The first code for each outcome (`"ok"` or a [`BankError::code`]).
    by_reason: HashMap<&'static str, String>,
}

impl CodeTable {
    /// Parses and validates a table: known classes and reasons; the class of each
    /// reason agrees with [`BankError::class`]; no code twice; one success code.
    pub fn parse(text: &str) -> Result<CodeTable, TableError> {
        let mut table = CodeTable {
            by_code: HashMap::new(),
            by_reason: HashMap::new(),
        };
        let mut header_seen = false;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let raw = raw.trim();
            if raw.is_empty() || raw.starts_with('#') {
                continue;
            }
            let refuse = |reason: String| TableError { line, reason };
            if !header_seen {
                header_seen = true;
                if raw != HEADER {
                    return Err(refuse("unexpected header".into()));
                }
                continue;
            }
            if table.by_code.len() >= ROWS_MAX {
                return Err(refuse(format!("over {ROWS_MAX} rows")));
            }
            let (code, meaning) = parse_row(raw).map_err(refuse)?;
            let reason = meaning.as_ref().map_or("ok", BankError::code);
            table
                .by_reason
                .entry(reason)
                .or_insert_with(|| code.clone());
            if table.by_code.insert(code.clone(), meaning).is_some() {
                return Err(refuse(format!("code {code} twice")));
            }
        }
        if !table.by_reason.contains_key("ok") {
            return Err(TableError {
                line: 0,
                reason: "no success code".into(),
            });
        }
        Ok(table)
    }

    /// Classes an `Rpcd`: `Ok` for success, else its error; unknown codes are
    /// outcome unknown.
    pub fn classify(&self, rpcd: &str) -> Result<(), BankError> {
        match self.by_code.get(rpcd) {
            Some(None) => Ok(()),
            Some(Some(error)) => Err(error.clone()),
            None => Err(BankError::Unrecognized {
                status: 200,
                code: rpcd.to_owned(),
            }),
        }
    }

    /// The code the bank answers for an outcome (`"ok"` or a [`BankError::code`]).
    pub fn code_for(&self, reason: &str) -> Option<&str> {
        self.by_reason.get(reason).map(String::as_str)
    }
}

fn parse_row(raw: &str) -> Result<(String, Meaning), String> {
    let fields: Vec<&str> = raw.splitn(COLUMNS, ',').map(str::trim).collect();
    let [code, class, reason, source, _meaning] = fields[..] else {
        return Err(format!("expected {COLUMNS} columns"));
    };
    if code.len() != 5 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!("code {code:?} is not an Rpcd"));
    }
    if !matches!(source, "spec" | "assumed") {
        return Err(format!("unknown source {source:?}"));
    }
    let meaning = match (class, reason) {
        ("success", "ok") => None,
        (name, reason) => {
            let error = error_for(reason).ok_or_else(|| format!("unknown reason {reason:?}"))?;
            if error.class().name() != name {
                return Err(format!("{reason} is {}, not {name}", error.class().name()));
            }
            Some(error)
        }
    };
    Ok((code.to_owned(), meaning))
}

/// The shipped table. A table that fails validation is a build defect; the unit
/// test below refuses it before any binary ships, and at run time every code then
/// reads as unknown rather than panicking.
pub fn table() -> &'static CodeTable {
    static TABLE: OnceLock<CodeTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        CodeTable::parse(TABLE_CSV).unwrap_or_else(|error| {
            tracing::error!(%error, "the legacy code table is invalid; every answer reads as unknown");
            CodeTable {
                by_code: HashMap::new(),
                by_reason: HashMap::new(),
            }
        })
    })
}

/// The simulator's side: the `Rpcd` it answers for an outcome. A reason the table
/// has no code for is answered "processing", which every client reads as unknown.
pub fn answer_code(outcome: &Result<(), BankError>) -> String {
    let table = table();
    let reason = match outcome {
        Ok(()) => "ok",
        Err(error) => error.code(),
    };
    table
        .code_for(reason)
        .or_else(|| table.code_for("bank_processing"))
        .unwrap_or("E0015")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorClass;

    #[test]
    fn the_shipped_table_is_valid_and_classes_each_kind_of_answer() {
        let table = CodeTable::parse(TABLE_CSV).unwrap();
        assert_eq!(table.classify(SUCCESS), Ok(()));
        assert_eq!(table.classify("E0002"), Err(BankError::HolderNameMismatch));
        let classes = [
            ("E0001", ErrorClass::Refused),
            ("E0011", ErrorClass::Transient),
            ("E0012", ErrorClass::Transient),
            ("E0015", ErrorClass::Unknown),
            ("E0099", ErrorClass::Unknown),
        ];
        for (code, class) in classes {
            assert_eq!(table.classify(code).unwrap_err().class(), class, "{code}");
        }
        // Codes nobody wrote down are unknown, never a failure.
        assert!(table.classify("Z9999").unwrap_err().is_outcome_unknown());
        assert_eq!(table.code_for("account_frozen"), Some("E0001"));
        assert_eq!(answer_code(&Ok(())), SUCCESS);
        assert_eq!(answer_code(&Err(BankError::RateLimited)), "E0012");
    }

    #[test]
    fn a_table_that_contradicts_the_error_classes_is_refused() {
        let header = format!("{HEADER}\n00000,success,ok,spec,ok\n");
        let wrong_class = format!("{header}E0001,transient,account_frozen,spec,x\n");
        assert!(
            CodeTable::parse(&wrong_class)
                .unwrap_err()
                .reason
                .contains("refused")
        );
        let twice = format!("{header}00000,success,ok,spec,again\n");
        assert!(CodeTable::parse(&twice).is_err());
        let bad_reason = format!("{header}E0001,refused,made_up,spec,x\n");
        assert!(CodeTable::parse(&bad_reason).is_err());
        let bad_code = format!("{header}E01,refused,account_frozen,spec,x\n");
        assert!(CodeTable::parse(&bad_code).is_err());
        assert!(CodeTable::parse(&format!("{HEADER}\n")).is_err());
    }
}
