//! The vocabulary of importing a lender's data (loans, accruals, payroll users):
//! a [`Record`] is one line of a file or one object of an API body as named
//! fields of text; [`Fields`] reads a record's fields, each with a stable error
//! code, and refuses the fields nobody asked for; [`ImportReport`] is what an
//! import (or a dry run) answers. The domain crates own what a line means and
//! where it is written; this module does no I/O.
//!
//! An import checks every line before it writes any: a file with one bad line
//! applies nothing. A clean file is then applied in batches of
//! [`IMPORT_BATCH_LINES`], one transaction each.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// Lines written per transaction when a clean file is applied.
pub const IMPORT_BATCH_LINES: usize = 1_000;
/// The longest line (or API object) an import reads, in bytes.
pub const IMPORT_LINE_BYTES_MAX: usize = 4_096;
/// The largest file an import reads, in bytes.
pub const IMPORT_FILE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// The most lines one file may hold.
pub const IMPORT_FILE_LINES_MAX: usize = 1_000_000;
/// Fields one line may hold.
pub const IMPORT_FIELDS_MAX: usize = 32;
/// Line errors a report lists; the rest are only counted.
pub const IMPORT_ERRORS_LISTED_MAX: usize = 1_000;

/// One line of input: its 1-based line number (the data line in a CSV file,
/// counting the header as line 1; the position in an API body's `lines`) and
/// its fields as text. An empty text is an absent field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub line: u64,
    pub fields: Vec<(String, String)>,
}

/// Why one line was refused: where, which field (empty for the line itself),
/// a stable code and a sentence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct LineError {
    pub line: u64,
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl LineError {
    pub fn new(
        line: u64,
        field: &str,
        code: &'static str,
        message: impl Into<String>,
    ) -> LineError {
        LineError {
            line,
            field: field.to_owned(),
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "line {}: {}: {}", self.line, self.code, self.message)
        } else {
            write!(
                f,
                "line {} field {}: {}: {}",
                self.line, self.field, self.code, self.message
            )
        }
    }
}

/// Reads one record's fields. Every field read is marked; [`Fields::finish`]
/// refuses the unread ones (`unknown_field`), so a misspelt column is never
/// silently dropped.
pub struct Fields<'a> {
    record: &'a Record,
    used: Vec<bool>,
    errors: Vec<LineError>,
}

impl<'a> Fields<'a> {
    pub fn new(record: &'a Record) -> Fields<'a> {
        let mut errors = Vec::new();
        if record.fields.len() > IMPORT_FIELDS_MAX {
            errors.push(LineError::new(
                record.line,
                "",
                "too_many_fields",
                format!("a line holds at most {IMPORT_FIELDS_MAX} fields"),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut used = vec![false; record.fields.len()];
        for (index, (name, _)) in record.fields.iter().enumerate() {
            if !seen.insert(name.as_str()) {
                // Named once as a duplicate; never read, never "unknown" too.
                used[index] = true;
                errors.push(LineError::new(
                    record.line,
                    name,
                    "duplicate_field",
                    "the field is given twice",
                ));
            }
        }
        Fields {
            record,
            used,
            errors,
        }
    }

    pub fn line(&self) -> u64 {
        self.record.line
    }

    /// The field's text; `None` when it is absent or empty.
    pub fn optional(&mut self, name: &str) -> Option<&'a str> {
        let record = self.record;
        let index = record.fields.iter().position(|(n, _)| n == name)?;
        self.used[index] = true;
        Some(record.fields[index].1.as_str()).filter(|text| !text.is_empty())
    }

    /// The field's text; a `missing_field` error when it is absent or empty.
    pub fn required(&mut self, name: &str) -> Option<&'a str> {
        let text = self.optional(name);
        if text.is_none() {
            self.error(name, "missing_field", "the field is required");
        }
        text
    }

    /// The required field parsed by `parse`; a failure is `code` on that field.
    pub fn parse<T, E: fmt::Display>(
        &mut self,
        name: &str,
        code: &'static str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let text = self.required(name)?;
        self.parse_text(name, code, text, parse)
    }

    /// The optional field parsed by `parse`: `Some(None)` when absent.
    pub fn parse_optional<T, E: fmt::Display>(
        &mut self,
        name: &str,
        code: &'static str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<Option<T>> {
        match self.optional(name) {
            None => Some(None),
            Some(text) => self.parse_text(name, code, text, parse).map(Some),
        }
    }

    fn parse_text<T, E: fmt::Display>(
        &mut self,
        name: &str,
        code: &'static str,
        text: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        match parse(text) {
            Ok(value) => Some(value),
            Err(error) => {
                self.error(name, code, error.to_string());
                None
            }
        }
    }

    pub fn error(&mut self, field: &str, code: &'static str, message: impl Into<String>) {
        self.errors
            .push(LineError::new(self.record.line, field, code, message));
    }

    /// `value` if every field was known and valid, else every error of the line.
    pub fn finish<T>(mut self, value: Option<T>) -> Result<T, Vec<LineError>> {
        for (index, (name, _)) in self.record.fields.iter().enumerate() {
            if !self.used[index] {
                self.errors.push(LineError::new(
                    self.record.line,
                    name,
                    "unknown_field",
                    "no such field",
                ));
            }
        }
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => Err(self.errors),
        }
    }
}

/// A whole number in `min..=max`, written in plain decimal digits (an optional
/// leading `-`): no sign `+`, no separators, no fraction, no exponent.
pub fn parse_integer(text: &str, min: i64, max: i64) -> Result<i64, String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not a whole number"));
    }
    match text.parse::<i64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(format!("{text:?} is not within {min}..={max}")),
    }
}

/// A JSON object as a record; nested objects, arrays, floats and booleans are
/// refused (a line is flat).
pub fn record_from_object(
    line: u64,
    object: serde_json::Map<String, serde_json::Value>,
) -> Result<Record, LineError> {
    use serde_json::Value;
    let mut fields = Vec::with_capacity(object.len());
    for (name, value) in object {
        let text = match value {
            Value::String(text) => text,
            Value::Number(number) if number.is_i64() || number.is_u64() => number.to_string(),
            Value::Null => String::new(),
            _ => {
                return Err(LineError::new(
                    line,
                    &name,
                    "invalid_value",
                    "a value is a string, an integer or null",
                ));
            }
        };
        fields.push((name, text));
    }
    Ok(Record { line, fields })
}

/// How a line stands against what is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Its key is new: the import writes it.
    New,
    /// Its key is stored with the same fields: nothing to do.
    Unchanged,
    /// Its key is stored with other fields: an error, nothing is written.
    Conflict,
}

/// Lines with their keys, the in-file duplicates resolved: a second line with
/// the same key and the same value is unchanged, one with another value is a
/// `duplicate_key` error naming the first line.
pub fn dedupe<K: Ord + Clone + fmt::Debug, T: PartialEq>(
    lines: Vec<(u64, K, T)>,
    report: &mut ImportReport,
) -> Vec<(u64, K, T)> {
    let mut first: BTreeMap<K, usize> = BTreeMap::new();
    let mut kept: Vec<(u64, K, T)> = Vec::with_capacity(lines.len());
    for (line, key, value) in lines {
        match first.get(&key) {
            None => {
                first.insert(key.clone(), kept.len());
                kept.push((line, key, value));
            }
            Some(&index) if kept[index].2 == value => report.unchanged += 1,
            Some(&index) => report.error(LineError::new(
                line,
                "",
                "duplicate_key",
                format!("key {key:?} is on line {} with other fields", kept[index].0),
            )),
        }
    }
    kept
}

/// What an import did, or with `dry_run` would do. Counts are lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ImportReport {
    pub dry_run: bool,
    pub lines_read: u64,
    /// New lines written (0 on a dry run).
    pub applied: u64,
    /// New lines a dry run would write (equal to `applied` on a real run).
    pub to_apply: u64,
    /// Lines whose key was stored (or earlier in the file) with the same fields.
    pub unchanged: u64,
    /// Lines refused; at most [`IMPORT_ERRORS_LISTED_MAX`] are listed in `errors`.
    pub error_lines: u64,
    pub errors: Vec<LineError>,
    /// Lines per transaction, and the transactions committed.
    pub batch_lines: u64,
    pub batches_committed: u64,
}

impl ImportReport {
    pub fn new(lines_read: usize, dry_run: bool) -> ImportReport {
        ImportReport {
            dry_run,
            lines_read: lines_read as u64,
            batch_lines: IMPORT_BATCH_LINES as u64,
            ..ImportReport::default()
        }
    }

    /// Records one refused line.
    pub fn error(&mut self, error: LineError) {
        self.line_errors(vec![error]);
    }

    /// Records the errors of one refused line (counted once).
    pub fn line_errors(&mut self, errors: Vec<LineError>) {
        if errors.is_empty() {
            return;
        }
        self.error_lines += 1;
        for error in errors {
            if self.errors.len() < IMPORT_ERRORS_LISTED_MAX {
                self.errors.push(error);
            }
        }
    }

    /// True when no line was refused: only then is anything written.
    pub fn is_clean(&self) -> bool {
        self.error_lines == 0
    }

    /// Sorts the listed errors by line, for a report that reads top to bottom.
    pub fn sort_errors(&mut self) {
        self.errors.sort_by_key(|e| e.line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(line: u64, fields: &[(&str, &str)]) -> Record {
        Record {
            line,
            fields: fields
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn fields_name_every_missing_bad_duplicate_and_unknown_field() {
        let line = record(
            7,
            &[("a", "12"), ("b", "x"), ("c", "1"), ("c", "2"), ("zz", "?")],
        );
        let mut fields = Fields::new(&line);
        let a = fields.parse("a", "bad_a", |t| parse_integer(t, 0, 100));
        let b = fields.parse("b", "bad_b", |t| parse_integer(t, 0, 100));
        let _ = fields.optional("c");
        let d = fields.required("d");
        assert_eq!(a, Some(12));
        let errors = fields.finish(b.zip(d)).unwrap_err();
        let found: Vec<(&str, &str)> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            found,
            vec![
                ("c", "duplicate_field"),
                ("b", "bad_b"),
                ("d", "missing_field"),
                ("zz", "unknown_field"),
            ]
        );
        assert!(errors.iter().all(|e| e.line == 7));
    }

    #[test]
    fn integers_are_plain_digits_in_range() {
        assert_eq!(parse_integer("0", 0, 9), Ok(0));
        assert_eq!(parse_integer("-3", -5, 9), Ok(-3));
        for bad in ["", "-", "+1", "1.0", "1e3", "1,000", " 1", "10"] {
            assert!(parse_integer(bad, 0, 9).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_duplicate_key_is_unchanged_with_the_same_value_and_an_error_otherwise() {
        let mut report = ImportReport::new(4, false);
        let kept = dedupe(
            vec![(2, 1, "x"), (3, 1, "x"), (4, 1, "y"), (5, 2, "z")],
            &mut report,
        );
        assert_eq!(kept, vec![(2, 1, "x"), (5, 2, "z")]);
        assert_eq!(report.unchanged, 1);
        assert_eq!(report.error_lines, 1);
        assert_eq!(report.errors[0].line, 4);
        assert_eq!(report.errors[0].code, "duplicate_key");
    }
}
