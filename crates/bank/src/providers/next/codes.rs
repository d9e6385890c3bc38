//! The KFTC answer-code table: `codes.csv` beside this file, compiled in with
//! `include_str!`, parsed and validated once, then used by the connector to class
//! every `rsp_code` / `bank_rsp_code` pair and by the simulator to pick the code it
//! answers for each outcome — one table, so the two cannot drift.
//!
//! This module never guesses: a code that is not in the table is outcome unknown.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::BankError;

/// The table as shipped with the crate.
const TABLE_CSV: &str = include_str!("codes.csv");
/// More rows than this is a broken file, not a code table.
const ROWS_MAX: usize = 512;
const COLUMNS: usize = 6;

/// Which layer answered: the open-banking centre or the participating bank.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    Api,
    Bank,
}

/// What an answer code means for settle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Class {
    Success,
    /// An api-layer code that defers to the bank's own code.
    Bank,
    /// Not success: the error (refused, transient or unknown) the answer becomes.
    Failure(BankError),
}

/// One parsed row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub layer: Layer,
    pub code: String,
    pub class: Class,
}

/// The whole validated table, indexed both ways.
#[derive(Debug)]
pub struct CodeTable {
    by_code: HashMap<(Layer, String), Class>,
    /// The first code of each layer for each error code, for the simulator.
    by_reason: HashMap<(Layer, &'static str), String>,
}

/// Why `codes.csv` was refused. Only a broken build can see one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("codes.csv line {line}: {reason}")]
pub struct TableError {
    pub line: usize,
    pub reason: String,
}

impl CodeTable {
    /// Parses and validates a table: known layers, classes and reasons; the class
    /// of each reason agrees with [`BankError::class`]; no code twice; one success
    /// per layer.
    pub fn parse(text: &str) -> Result<CodeTable, TableError> {
        let mut by_code = HashMap::new();
        let mut by_reason = HashMap::new();
        let mut header_seen = false;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let raw = raw.trim();
            if raw.is_empty() || raw.starts_with('#') {
                continue;
            }
            if !header_seen {
                header_seen = true;
                if raw != "layer,code,class,reason,source,meaning" {
                    return Err(TableError {
                        line,
                        reason: "unexpected header".into(),
                    });
                }
                continue;
            }
            if by_code.len() >= ROWS_MAX {
                return Err(TableError {
                    line,
                    reason: format!("over {ROWS_MAX} rows"),
                });
            }
            let row = parse_row(raw).map_err(|reason| TableError { line, reason })?;
            if let Class::Failure(error) = &row.class {
                by_reason
                    .entry((row.layer, error.code()))
                    .or_insert_with(|| row.code.clone());
            }
            let plain = match row.class {
                Class::Success => Some("ok"),
                Class::Bank => Some("bank"),
                Class::Failure(_) => None,
            };
            if let Some(plain) = plain {
                by_reason
                    .entry((row.layer, plain))
                    .or_insert_with(|| row.code.clone());
            }
            if by_code
                .insert((row.layer, row.code.clone()), row.class)
                .is_some()
            {
                return Err(TableError {
                    line,
                    reason: format!("code {} twice", row.code),
                });
            }
        }
        for layer in [Layer::Api, Layer::Bank] {
            if !by_reason.contains_key(&(layer, "ok")) {
                return Err(TableError {
                    line: 0,
                    reason: format!("no success code for {layer:?}"),
                });
            }
        }
        Ok(CodeTable { by_code, by_reason })
    }

    /// The class of one code; `None` when the table does not know it.
    pub fn class(&self, layer: Layer, code: &str) -> Option<&Class> {
        self.by_code.get(&(layer, code.to_owned()))
    }

    /// The code a layer answers for an outcome (`"ok"` or a [`BankError::code`]).
    pub fn code_for(&self, layer: Layer, reason: &str) -> Option<&str> {
        self.by_reason
            .iter()
            .find(|((l, r), _)| *l == layer && *r == reason)
            .map(|(_, code)| code.as_str())
    }

    /// Classes an answer: the api code first, the bank code when the api code
    /// defers to it (or when the api says success, to catch a bank refusal inside
    /// a successful envelope). Unknown codes are outcome unknown.
    pub fn classify(&self, rsp_code: &str, bank_rsp_code: Option<&str>) -> Result<(), BankError> {
        let unknown = |code: &str| BankError::Unrecognized {
            status: 200,
            code: code.to_owned(),
        };
        match self.class(Layer::Api, rsp_code) {
            None => Err(unknown(rsp_code)),
            Some(Class::Failure(error)) => Err(error.clone()),
            Some(Class::Success) | Some(Class::Bank) => {
                let Some(bank) = bank_rsp_code.filter(|c| !c.is_empty()) else {
                    // An api-level success for a call without a bank leg.
                    return match self.class(Layer::Api, rsp_code) {
                        Some(Class::Success) => Ok(()),
                        _ => Err(unknown(rsp_code)),
                    };
                };
                match self.class(Layer::Bank, bank) {
                    Some(Class::Success) => Ok(()),
                    Some(Class::Failure(error)) => Err(error.clone()),
                    Some(Class::Bank) | None => Err(unknown(&format!("{rsp_code}/{bank}"))),
                }
            }
        }
    }
}

fn parse_row(raw: &str) -> Result<Row, String> {
    let fields: Vec<&str> = raw.splitn(COLUMNS, ',').map(str::trim).collect();
    let [layer, code, class, reason, source, _meaning] = fields[..] else {
        return Err(format!("expected {COLUMNS} columns"));
    };
    let layer = match layer {
        "api" => Layer::Api,
        "bank" => Layer::Bank,
        other => return Err(format!("unknown layer {other:?}")),
    };
    let code_ok = match layer {
        Layer::Api => code.len() == 5 && code.bytes().all(|b| b.is_ascii_alphanumeric()),
        Layer::Bank => code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()),
    };
    if !code_ok {
        return Err(format!("code {code:?} is not a {layer:?} code"));
    }
    if !matches!(source, "spec" | "assumed") {
        return Err(format!("unknown source {source:?}"));
    }
    let class = match (class, reason) {
        ("success", "ok") => Class::Success,
        ("bank", "") if layer == Layer::Api => Class::Bank,
        (name, reason) => {
            let error = error_for(reason).ok_or_else(|| format!("unknown reason {reason:?}"))?;
            if error.class().name() != name {
                return Err(format!("{reason} is {}, not {name}", error.class().name()));
            }
            Class::Failure(error)
        }
    };
    Ok(Row {
        layer,
        code: code.to_owned(),
        class,
    })
}

/// The error a reason names (also for the `legacy` table). Neither wire carries the
/// per-call limit, so an over-limit refusal reports 0 (the bank did not say).
pub(crate) fn error_for(reason: &str) -> Option<BankError> {
    match reason {
        "bank_processing" => Some(BankError::Processing),
        "bank_timeout" => Some(BankError::Timeout { timeout_ms: 0 }),
        "bank_server_error" => Some(BankError::Server {
            status: 200,
            message: "answered by the bank".into(),
        }),
        "bank_auth_rejected" => Some(BankError::AuthRejected),
        other => BankError::definite_from_code(other, "answered by the bank", Some(0)),
    }
}

/// The shipped table. A table that fails validation is a build defect; the unit
/// test below refuses it before any binary ships, and at run time every code then
/// reads as unknown rather than panicking.
pub fn table() -> &'static CodeTable {
    static TABLE: OnceLock<CodeTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        CodeTable::parse(TABLE_CSV).unwrap_or_else(|error| {
            tracing::error!(%error, "the KFTC code table is invalid; every answer reads as unknown");
            CodeTable { by_code: HashMap::new(), by_reason: HashMap::new() }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorClass;

    #[test]
    fn the_shipped_table_is_valid_and_classes_each_kind_of_answer() {
        let table = CodeTable::parse(TABLE_CSV).unwrap();
        assert_eq!(table.classify("A0000", Some("000")), Ok(()));
        assert_eq!(
            table.classify("A0002", Some("815")),
            Err(BankError::HolderNameMismatch)
        );
        assert_eq!(
            table.classify("A0002", Some("419")),
            Err(BankError::AccountFrozen)
        );
        let transient = table.classify("A0009", None).unwrap_err();
        assert_eq!(transient.class(), ErrorClass::Transient);
        assert_eq!(
            table.classify("A0001", None).unwrap_err().class(),
            ErrorClass::Unknown
        );
        // Codes nobody wrote down are unknown, never a failure.
        assert!(
            table
                .classify("Z9999", None)
                .unwrap_err()
                .is_outcome_unknown()
        );
        assert!(
            table
                .classify("A0002", Some("999"))
                .unwrap_err()
                .is_outcome_unknown()
        );
        assert_eq!(
            table.code_for(Layer::Bank, "holder_name_mismatch"),
            Some("815")
        );
        assert_eq!(table.code_for(Layer::Api, "ok"), Some("A0000"));
    }

    #[test]
    fn a_table_that_contradicts_the_error_classes_is_refused() {
        let header = "layer,code,class,reason,source,meaning\napi,A0000,success,ok,spec,ok\nbank,000,success,ok,spec,ok\n";
        let wrong_class = format!("{header}bank,419,transient,account_frozen,spec,x\n");
        assert!(
            CodeTable::parse(&wrong_class)
                .unwrap_err()
                .reason
                .contains("refused")
        );
        let twice = format!("{header}bank,000,success,ok,spec,again\n");
        assert!(CodeTable::parse(&twice).is_err());
        let bad_reason = format!("{header}bank,401,refused,made_up,spec,x\n");
        assert!(CodeTable::parse(&bad_reason).is_err());
        assert!(CodeTable::parse("layer,code,class,reason,source,meaning\n").is_err());
    }
}
