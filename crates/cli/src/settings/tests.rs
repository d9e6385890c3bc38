//! The configuration's own rules: the example is valid and documents every
//! key, every problem is named at once by its key path, flags win.

#[cfg(test)]
use std::path::{Path, PathBuf};

use super::file::key_paths;
use super::*;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/settle.toml");
const OPERATIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/operations.md");

/// A scratch settle.toml holding `text`.
fn file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("settle-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn problems(path: &Path) -> Vec<Problem> {
    match Settings::load(Some(path), &Overrides::default()) {
        Ok(settings) => panic!("{path:?} loaded: {settings:?}"),
        Err(Problems(problems)) => problems,
    }
}

fn keyed(problems: &[Problem]) -> Vec<(&str, &str)> {
    problems.iter().map(|p| (p.key.as_str(), p.code)).collect()
}

#[test]
fn the_example_is_a_valid_configuration() {
    let settings = Settings::load(Some(Path::new(EXAMPLE)), &Overrides::default()).unwrap();
    let fees = settings.fees.as_ref().unwrap();
    assert_eq!(fees.settlement_account.to_string(), "1002000000001");
    assert_eq!(settings.bank.kind, Some(BankKind::Http));
    assert_eq!(settings.serve.roles, Role::ALL);
    // What serve still needs are secrets, which no file holds.
    for problem in settings.serve_problems() {
        assert!(
            ["secret_missing", "id_secret_refused"].contains(&problem.code)
                && problem.key.starts_with("secrets."),
            "{problem}"
        );
    }
}

#[test]
fn every_key_is_documented_in_the_example_and_in_operations() {
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    let operations = std::fs::read_to_string(OPERATIONS).unwrap();
    let paths = key_paths();
    assert!(paths.len() > 40, "{paths:?}");
    for path in paths {
        let (section, key) = path.rsplit_once('.').unwrap();
        let section_start = example
            .find(&format!("\n[{section}]\n"))
            .unwrap_or_else(|| panic!("[{section}] is not in the example"));
        let body = &example[section_start + 1..];
        let body = &body[..body[1..].find("\n[").map_or(body.len(), |end| end + 1)];
        let documented = body.lines().any(|line| {
            let line = line.trim_start_matches(['#', ' ']);
            line.starts_with(&format!("{key} ="))
        });
        assert!(documented, "{path} is not in examples/settle.toml");
        assert!(
            operations.contains(&format!("`{path}`")),
            "{path} is not in docs/operations.md"
        );
    }
}

#[test]
fn every_structural_problem_is_named_at_once() {
    let path = file(
        "structure.toml",
        "[fees]\ninstitution_code = \"F202600001\"\nsettlement_acount = \"1\"\n\
         [serve]\nfees_every_s = \"often\"\n\
         [bank.kftc]\nclient_name = \"x\"\nextra = 1\n\
         [nonsense]\nkey = 1\n",
    );
    let problems = problems(&path);
    let keyed = keyed(&problems);
    for expected in [
        ("nonsense", "unknown_key"),
        ("fees.settlement_acount", "unknown_key"),
        ("serve.fees_every_s", "bad_type"),
        ("bank.kftc.extra", "unknown_key"),
    ] {
        assert!(keyed.contains(&expected), "{expected:?} not in {keyed:?}");
    }
}

#[test]
fn every_value_problem_is_named_at_once() {
    let path = file(
        "values.toml",
        "[bank]\nurl = \"ftp://bank\"\ncalls_in_flight_max = 0\n\
         [fees]\ninstitution_code = \"F2026\"\nsettlement_account = \"1002000000001\"\n\
         settlement_holder = \"세틀\"\ncorporate_account = \"12-ab\"\n\
         [payroll]\npayout_account = \"1002000000001\"\npayout_holder = \"세틀\"\n\
         [api]\nlisten = \"everywhere\"\nrequire_approval = [\"coffee\"]\n",
    );
    let problems = problems(&path);
    let keyed = keyed(&problems);
    for expected in [
        ("bank.kind", "missing"),
        ("bank.url", "bad_url"),
        ("bank.calls_in_flight_max", "out_of_range"),
        ("fees.institution_code", "bad_institution_code"),
        ("fees.corporate_account", "bad_account"),
        ("fees.corporate_holder", "missing"),
        ("api.listen", "bad_address"),
        ("api.require_approval", "bad_value"),
    ] {
        assert!(keyed.contains(&expected), "{expected:?} not in {keyed:?}");
    }
    let message = problems.iter().map(Problem::to_string).collect::<Vec<_>>();
    assert!(
        message.iter().all(|m| m.contains(": ") && m.ends_with(']')),
        "{message:?}"
    );
}

#[test]
fn one_account_for_two_purposes_is_refused_naming_both_keys() {
    let path = file(
        "twice.toml",
        "[fees]\ninstitution_code = \"F202600001\"\nsettlement_account = \"1002000000001\"\n\
         settlement_holder = \"세틀\"\ncorporate_account = \"1002000000009\"\n\
         corporate_holder = \"세틀 법인\"\n\
         [payroll]\npayout_account = \"1002000000001\"\npayout_holder = \"세틀\"\n",
    );
    let problems = problems(&path);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].code, "accounts_not_distinct");
    assert!(problems[0].message.contains("payroll.payout_account"));
    assert!(problems[0].message.contains("fees.settlement_account"));
    let error = CliError::from(Problems(problems));
    assert_eq!(error.code, "accounts_not_distinct");
}

#[test]
fn flags_override_the_file_and_a_missing_file_is_named() {
    let mut overrides = Overrides::default();
    overrides
        .set("payroll.payout_account", Some("1002000000077"))
        .set("serve.roles", Some(vec![Role::Api]))
        .set("bank.url", None::<String>);
    let settings = Settings::load(Some(Path::new(EXAMPLE)), &overrides).unwrap();
    let payroll = settings.payroll().unwrap();
    assert_eq!(payroll.payout_account.to_string(), "1002000000077");
    assert_eq!(settings.serve.roles, [Role::Api]);
    assert_eq!(
        settings.bank.url.as_deref(),
        Some("https://openapi.bank.example")
    );
    let missing = problems(Path::new("/nonexistent/settle.toml"));
    assert_eq!(keyed(&missing), [("--config", "config_file_missing")]);
}

#[test]
fn without_a_file_nothing_is_configured_and_the_demo_is() {
    let bare = Settings::load(None, &Overrides::default()).unwrap();
    assert_eq!(bare.bank_kind().unwrap_err().code, "bank_not_configured");
    let refused = bare
        .fees_config(money::DerivedIds::for_tests())
        .unwrap_err();
    assert_eq!(keyed(&refused.0), [("fees", "section_missing")]);
    let demo = Settings::demo().unwrap();
    assert_eq!(demo.bank_kind().unwrap(), BankKind::Simulator);
    demo.fees_config(money::DerivedIds::for_tests()).unwrap();
}
