//! Keeps the habits of STYLE.md honest across the workspace: no `unwrap`/`expect`/
//! `panic!` in library or binary code outside tests, no floats in money code, no
//! unbounded channels, no `utils`/`helpers` files, and no source file past a length
//! that stops being readable.

use std::path::{Path, PathBuf};

const FILE_LINES_MAX: usize = 1_500;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn source_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let crates = workspace_root().join("crates");
    let mut stack = vec![crates];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                // Tests, benches, examples and fuzz targets may unwrap.
                if !matches!(name, "tests" | "benches" | "examples" | "fuzz" | "target") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The lines of a file that are not in a `#[cfg(test)]` module (which by our
/// convention sits at the end of a file) and are not comments.
fn production_lines(text: &str) -> Vec<(usize, &str)> {
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(")
            && trimmed.contains("test")
            && !trimmed.contains("not(test")
        {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        lines.push((index + 1, line));
    }
    lines
}

fn is_test_support(path: &Path) -> bool {
    // Compiled only with the `testing` feature, for tests.
    path.ends_with("store/src/testing.rs")
}

#[test]
fn no_unwrap_expect_or_panic_outside_tests() {
    let mut offences = Vec::new();
    for path in source_files().iter().filter(|p| !is_test_support(p)) {
        let text = std::fs::read_to_string(path).unwrap();
        for (number, line) in production_lines(&text) {
            for pattern in [
                ".unwrap()",
                ".expect(",
                "panic!(",
                "unimplemented!(",
                "todo!(",
            ] {
                if line.contains(pattern) {
                    offences.push(format!("{}:{number}: {}", path.display(), line.trim()));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "unwrap/expect/panic outside tests:\n{}",
        offences.join("\n")
    );
}

#[test]
fn money_code_has_no_floats() {
    let mut offences = Vec::new();
    for path in source_files() {
        let text = path.to_string_lossy();
        if !(text.contains("crates/money/") || text.contains("crates/ledger/")) {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for (number, line) in production_lines(&source) {
            // Metrics take f64 by API; that is measurement, not money.
            let measurement = line.contains("metrics::") || line.contains(".record(");
            if (line.contains("f64") || line.contains("f32")) && !measurement {
                offences.push(format!("{}:{number}: {}", path.display(), line.trim()));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "floats in money code:\n{}",
        offences.join("\n")
    );
}

#[test]
fn no_unbounded_channels() {
    let mut offences = Vec::new();
    for path in source_files() {
        let source = std::fs::read_to_string(&path).unwrap();
        for (number, line) in production_lines(&source) {
            if line.contains("unbounded_channel") || line.contains("mpsc::unbounded") {
                offences.push(format!("{}:{number}: {}", path.display(), line.trim()));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "unbounded channels:\n{}",
        offences.join("\n")
    );
}

#[test]
fn files_are_named_after_concepts_and_stay_readable() {
    for path in source_files() {
        let name = path.file_stem().and_then(|n| n.to_str()).unwrap_or("");
        assert!(
            !matches!(name, "utils" | "helpers" | "manager" | "misc"),
            "{} is named after no concept",
            path.display()
        );
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(
            lines <= FILE_LINES_MAX,
            "{} has {lines} lines (max {FILE_LINES_MAX})",
            path.display()
        );
    }
}
