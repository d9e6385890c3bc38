//! The demo's report: what ran where, each part's counts, amounts and time, the
//! bank's statement against the ledger, and every invariant as a named check.
//! Phases fill it with numbers they read back from the stores (ledger, bank
//! statement, the fees, channel, payroll and events tables), never with the
//! workload generator's own counters. Printed for people, or as one JSON document
//! (`--json`) for machines; the exit status is non-zero when any check fails.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// Set for `--json`: stdout carries only the report.
static QUIET: AtomicBool = AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// A line of progress for people; nothing under `--json`.
pub fn note(text: &str) {
    if !QUIET.load(Ordering::Relaxed) {
        println!("{text}");
    }
}

/// One part of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Part {
    pub name: String,
    pub seconds: f64,
    /// What happened, counted from the stores: `(what, how many)`.
    pub counts: Vec<(String, i64)>,
    /// Money moved, summed from the stores: `(what, won)`.
    pub amounts_krw: Vec<(String, i64)>,
}

impl Part {
    pub fn new(name: &str, seconds: f64) -> Part {
        Part {
            name: name.to_owned(),
            seconds,
            counts: Vec::new(),
            amounts_krw: Vec::new(),
        }
    }

    pub fn count(mut self, what: &str, value: impl TryInto<i64>) -> Part {
        self.counts
            .push((what.to_owned(), value.try_into().unwrap_or(i64::MAX)));
        self
    }

    pub fn amount(mut self, what: &str, krw: i64) -> Part {
        self.amounts_krw.push((what.to_owned(), krw));
        self
    }
}

/// One invariant or expectation, checked against the stores.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// Which part of DESIGN.md's invariants (or which phase) it belongs to.
    pub group: String,
    pub name: String,
    pub ok: bool,
    /// The numbers behind the verdict, for a failure to be readable.
    pub detail: String,
}

impl Check {
    pub fn new(group: &str, name: &str, ok: bool, detail: impl Into<String>) -> Check {
        Check {
            group: group.to_owned(),
            name: name.to_owned(),
            ok,
            detail: detail.into(),
        }
    }
}

/// A line of the bank-to-ledger reconciliation.
#[derive(Clone, Debug, Serialize)]
pub struct Reconciliation {
    pub what: String,
    pub bank_krw: i64,
    pub ledger_krw: i64,
    pub agrees: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Shape {
    pub database: String,
    pub events: String,
    pub bank: String,
    pub scale: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub shape: Shape,
    pub parts: Vec<Part>,
    pub reconciliation: Vec<Reconciliation>,
    pub checks: Vec<Check>,
    pub seconds: f64,
    pub ok: bool,
}

impl Report {
    pub fn new(shape: Shape) -> Report {
        Report {
            shape,
            parts: Vec::new(),
            reconciliation: Vec::new(),
            checks: Vec::new(),
            seconds: 0.0,
            ok: true,
        }
    }

    pub fn add(&mut self, part: Part, checks: Vec<Check>) {
        self.parts.push(part);
        self.checks.extend(checks);
    }

    pub fn finish(&mut self, seconds: f64) {
        self.seconds = seconds;
        self.ok = self.checks.iter().all(|c| c.ok) && self.reconciliation.iter().all(|r| r.agrees);
    }

    pub fn print(&self) {
        println!();
        println!("settle demo report");
        println!("  database: {}", self.shape.database);
        println!("  events:   {}", self.shape.events);
        println!("  bank:     {}", self.shape.bank);
        println!("  scale:    {}", self.shape.scale);
        for part in &self.parts {
            println!();
            println!("{} ({:.1}s)", part.name, part.seconds);
            for (what, count) in &part.counts {
                println!("  {what:<52} {:>16}", group_digits(*count));
            }
            for (what, krw) in &part.amounts_krw {
                println!("  {what:<52} {:>12} KRW", group_digits(*krw));
            }
        }
        println!();
        println!("bank statement against the ledger");
        for line in &self.reconciliation {
            println!(
                "  [{}] {:<40} bank {:>16}  ledger {:>16}",
                verdict(line.agrees),
                line.what,
                group_digits(line.bank_krw),
                group_digits(line.ledger_krw)
            );
        }
        let mut group = "";
        println!();
        println!("invariants");
        for check in &self.checks {
            if check.group != group {
                group = &check.group;
                println!("  {group}");
            }
            println!("    [{}] {}", verdict(check.ok), check.name);
            if !check.ok {
                println!("           {}", check.detail);
            }
        }
        let failed = self.checks.iter().filter(|c| !c.ok).count();
        println!();
        println!(
            "{} checks, {} failed; finished in {:.1}s",
            self.checks.len(),
            failed,
            self.seconds
        );
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { " ok " } else { "FAIL" }
}

/// 1234567 → "1,234,567".
pub fn group_digits(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if value < 0 {
        out.push('-');
    }
    for (index, c) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_grouped_by_thousands() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1_000), "1,000");
        assert_eq!(group_digits(-1_234_567), "-1,234,567");
        assert_eq!(group_digits(i64::MIN), "-9,223,372,036,854,775,808");
    }

    #[test]
    fn a_failed_check_or_reconciliation_fails_the_report() {
        let shape = Shape {
            database: "d".into(),
            events: "e".into(),
            bank: "b".into(),
            scale: "small".into(),
        };
        let mut report = Report::new(shape.clone());
        report.add(Part::new("p", 1.0), vec![Check::new("g", "n", true, "")]);
        report.finish(1.0);
        assert!(report.ok);
        report.checks.push(Check::new("g", "bad", false, "1 != 2"));
        report.finish(1.0);
        assert!(!report.ok);
        let mut report = Report::new(shape);
        report.reconciliation.push(Reconciliation {
            what: "x".into(),
            bank_krw: 1,
            ledger_krw: 2,
            agrees: false,
        });
        report.finish(1.0);
        assert!(!report.ok);
    }
}
