//! The README's command lines run as written: every `settle …` line, in README
//! order, in each spelling that needs no placeholder (its alternatives one by
//! one, its optional `[…]` parts left out), on one fresh
//! SQLite database (given through `SETTLE_DATABASE_URL`, as a reader would set
//! it) with the in-process bank, from the repository's root (the README's
//! paths, such as `examples/settle-simulator.toml`, are relative to it).
//! Long-running commands (`serve`, `demo`, `bank-sim`, `bench`, `torture`) and
//! `config` (its lines name an installation's own files) have their own tests
//! and are left out; a generated day is made small. Each must exit 0, in order (the ledger lines
//! build on each other, the fee lines settle the generated day). Every line in
//! every spelling is parsed by `commands::readme_lines`.

#[allow(dead_code)]
#[path = "../src/readme.rs"]
mod readme;

use std::process::Command;

const README: &str = include_str!("../../../README.md");
const LONG_RUNNING: [&str; 7] = [
    "serve", "demo", "bank-sim", "bench", "torture", "config", "import",
];

#[test]
fn every_readme_command_line_that_runs_as_written_runs() {
    let dir = std::env::temp_dir().join(format!("settle-readme-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let database_url = format!("sqlite://{}", dir.join("settle.db").display());
    let mut ran = 0;
    let mut failed = Vec::new();
    for line in readme::command_lines(README) {
        if LONG_RUNNING.contains(&line.words[1].as_str()) {
            continue;
        }
        for words in readme::runnable_variants(&line.words) {
            // A day of 2,000 loans is the README's scale; the test's is 20.
            let words: Vec<String> = words
                .into_iter()
                .map(|w| if w == "2000" { "20".to_owned() } else { w })
                .collect();
            let output = Command::new(env!("CARGO_BIN_EXE_settle"))
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
                .args(&words[1..])
                .envs(line.env.iter().map(|(k, v)| (k, v)))
                .env("SETTLE_DATABASE_URL", &database_url)
                .env("SETTLE_ID_SECRET", "readme-test-id-secret-0123456789abcdef")
                .env("SETTLE_BANK_URL", "http://127.0.0.1:9")
                .output()
                .unwrap();
            ran += 1;
            let code = output.status.code();
            eprintln!(
                "README line {}: exit {code:?}: {}",
                line.line,
                words.join(" ")
            );
            if code != Some(0) {
                failed.push(format!(
                    "README line {}: {} → exit {code:?}: {}",
                    line.line,
                    words.join(" "),
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ran >= 20, "only {ran} README lines ran");
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
