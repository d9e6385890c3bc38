//! The installation's configuration: `settle.toml` (given by `--config` or
//! `SETTLE_CONFIG`), then `SETTLE_<SECTION>__<KEY>` environment variables, then
//! the command's own flags — read with `figment` into [`file::SettingsFile`]
//! (unknown keys refused at every depth) and parsed into one typed [`Settings`].
//! Every problem is named by its key path (`fees.settlement_account: …`) with a
//! stable code, and all of them are reported at once, not just the first.
//!
//! House accounts have no defaults: fee settlement and payroll must name theirs,
//! and one account named for two purposes is refused. No bank is configured
//! unless `bank.kind` says which (`simulator` in process, `bank-sim` over HTTP,
//! `http` a real bank). Secrets are never keys here ([`secret`]).

mod environment;
mod file;
mod parse;
pub mod secret;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use bank::{AccountNumber, BankCa, HolderName, TransportConfig};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use money::{DerivedIds, Krw};
use serde::{Deserialize, Serialize};

pub use secret::Secret;

use crate::commands::CliError;

/// Which bank the platform talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BankKind {
    /// The bank simulator inside this process (the demo, tests, a first look).
    Simulator,
    /// `settle bank-sim` over HTTP(S), with its published test credentials.
    BankSim,
    /// A real bank over HTTPS, with the installation's KFTC credentials.
    Http,
}

impl BankKind {
    pub fn name(self) -> &'static str {
        match self {
            BankKind::Simulator => "simulator",
            BankKind::BankSim => "bank-sim",
            BankKind::Http => "http",
        }
    }
}

/// A part of the platform a `serve` process can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The HTTP API, its docs and the web console.
    Api,
    /// Event delivery: embedded dispatchers, or NATS relays and workers.
    Dispatcher,
    /// The channel reconciler for unknown and stale transfers.
    Reconciler,
    /// The ledger's hold expiry worker.
    Expiry,
    /// The fee settlement scheduler.
    Fees,
    /// The payroll balance poller (its stages run with `dispatcher`).
    Payroll,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Api,
        Role::Dispatcher,
        Role::Reconciler,
        Role::Expiry,
        Role::Fees,
        Role::Payroll,
    ];
}

/// One thing wrong with the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The key path, `section.key`.
    pub key: String,
    /// Stable, for scripts and tests.
    pub code: &'static str,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, code: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            key: key.into(),
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} [{}]", self.key, self.message, self.code)
    }
}

/// Every problem found, in key order of discovery.
#[derive(Debug)]
pub struct Problems(pub Vec<Problem>);

impl From<Problem> for Problems {
    fn from(problem: Problem) -> Problems {
        Problems(vec![problem])
    }
}

impl From<Problems> for CliError {
    /// One problem keeps its own code; several are `config_invalid`.
    fn from(problems: Problems) -> CliError {
        let code = match problems.0.as_slice() {
            [one] => one.code,
            _ => "config_invalid",
        };
        let lines: Vec<String> = problems.0.iter().map(Problem::to_string).collect();
        CliError::new(code, format!("configuration: {}", lines.join("; ")))
    }
}

impl From<Problems> for anyhow::Error {
    fn from(problems: Problems) -> anyhow::Error {
        CliError::from(problems).into()
    }
}

/// A command's flags, applied over the file and the environment by key path.
#[derive(Default)]
pub struct Overrides(Vec<(&'static str, figment::value::Value)>);

impl Overrides {
    /// Sets `key` when the flag was given.
    pub fn set<T: Serialize>(&mut self, key: &'static str, value: Option<T>) -> &mut Overrides {
        if let Some(value) = value.and_then(|v| figment::value::Value::serialize(v).ok()) {
            self.0.push((key, value));
        }
        self
    }
}

#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    /// The core's database (and, by default, every component's).
    pub url: String,
    pub payroll_url: Option<String>,
    pub api_url: Option<String>,
    pub channel_url: Option<String>,
    pub connections_max: u32,
    pub acquire_timeout_ms: u64,
}

#[derive(Clone, Debug)]
pub struct EventsSettings {
    pub nats_url: Option<String>,
    pub nats_namespace: String,
}

#[derive(Clone, Debug)]
pub struct BankSettings {
    /// `None`: no bank configured.
    pub kind: Option<BankKind>,
    /// Set exactly when the kind speaks HTTP.
    pub url: Option<String>,
    pub ca: Option<BankCa>,
    pub timeout_ms: u64,
    pub calls_in_flight_max: usize,
    pub calls_per_s_max: Option<u32>,
    pub not_found_grace_ms: Option<i64>,
    /// The KFTC connector's request fields (required for `http`).
    pub kftc: Option<KftcFields>,
}

#[derive(Clone, Debug)]
pub struct KftcFields {
    pub institution_code: String,
    pub bank_code_std: String,
    pub client_name: String,
    pub scope: String,
    pub token_refresh_margin_ms: u64,
}

#[derive(Clone, Debug)]
pub struct ApiSettings {
    pub listen: String,
    pub require_approval: BTreeSet<api::approvals::Guarded>,
    pub approval_ttl_s: u32,
}

#[derive(Clone, Debug)]
pub struct ServeSettings {
    pub roles: Vec<Role>,
    pub fees_every_s: u64,
    pub poll_every_s: u64,
    pub shutdown_grace_ms: u64,
}

/// Fee settlement's accounts and limits.
#[derive(Clone, Debug)]
pub struct FeeSettings {
    pub institution_code: String,
    pub settlement_account: AccountNumber,
    pub settlement_holder: HolderName,
    pub corporate_account: AccountNumber,
    pub corporate_holder: HolderName,
    pub payout_chunk_krw_max: Krw,
    pub withdraw_chunk_krw_max: Krw,
    pub lock_lease_ms: Option<i64>,
}

/// Payroll's operating account: salaries are paid out of it, never fee money.
#[derive(Clone, Debug)]
pub struct PayrollSettings {
    pub payout_account: AccountNumber,
    pub payout_holder: HolderName,
}

/// The validated configuration of one installation.
#[derive(Clone, Debug)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub events: EventsSettings,
    pub bank: BankSettings,
    pub api: ApiSettings,
    pub serve: ServeSettings,
    pub fees: Option<FeeSettings>,
    pub payroll: Option<PayrollSettings>,
    secrets: file::SecretsFile,
    /// The file read, if any (for the summary).
    pub file: Option<PathBuf>,
}

/// The variable naming the configuration file when `--config` is not given.
pub const ENV_CONFIG: &str = "SETTLE_CONFIG";

impl Settings {
    /// Reads `file`, the environment and `overrides`, and parses the result.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Settings, Problems> {
        Settings::from_figment(&figment(file, overrides)?, file)
    }

    fn from_figment(figment: &Figment, file: Option<&Path>) -> Result<Settings, Problems> {
        let raw: file::SettingsFile = figment
            .extract_lossy()
            .map_err(|_| Problems(parse::structure_problems(figment)))?;
        let mut settings = parse::settings(raw)?;
        settings.file = file.map(Path::to_path_buf);
        Ok(settings)
    }

    /// Every problem `serve` would have with this configuration: its values,
    /// and its secrets even when the values have problems of their own.
    pub fn check(file: Option<&Path>) -> Result<Settings, Problems> {
        let figment = figment(file, &Overrides::default())?;
        match Settings::from_figment(&figment, file) {
            Ok(settings) => match settings.serve_problems() {
                problems if problems.is_empty() => Ok(settings),
                problems => Err(Problems(problems)),
            },
            Err(Problems(mut problems)) => {
                problems.extend(parse::secret_problems(&figment));
                Err(Problems(problems))
            }
        }
    }

    /// The demo's and tests' installation: the in-process simulator and its
    /// accounts. Never what a production command reads.
    pub fn demo() -> Result<Settings, Problems> {
        parse::settings(file::demo())
    }

    /// Fee settlement's configuration, or why there is none.
    pub fn fees_config(&self, ids: DerivedIds) -> Result<fees::FeesConfig, Problems> {
        let fees = self.fees.as_ref().ok_or_else(|| not_configured("fees"))?;
        let mut config = fees::FeesConfig::new(
            fees.settlement_account.clone(),
            fees.settlement_holder.clone(),
            fees.corporate_account.clone(),
            fees.corporate_holder.clone(),
            ids,
        );
        config.institution_code = fees.institution_code.clone();
        config.payout_chunk_krw_max = fees.payout_chunk_krw_max;
        config.withdraw_chunk_krw_max = fees.withdraw_chunk_krw_max;
        if let Some(lease_ms) = fees.lock_lease_ms {
            config.lock_lease_ms = lease_ms;
        }
        config.bank_calls_in_flight_max = self.bank.calls_in_flight_max;
        config.bank_calls_per_s_max = self.bank.calls_per_s_max;
        config.not_found_grace_ms = self.bank.not_found_grace_ms;
        Ok(config)
    }

    /// Payroll's accounts, or why there are none.
    pub fn payroll(&self) -> Result<&PayrollSettings, Problems> {
        self.payroll
            .as_ref()
            .ok_or_else(|| not_configured("payroll"))
    }

    /// The configured bank's kind, or `bank_not_configured`.
    pub fn bank_kind(&self) -> Result<BankKind, CliError> {
        self.bank.kind.ok_or_else(|| {
            CliError::new(
                "bank_not_configured",
                "no bank is configured: set bank.kind (\"http\" for a real bank, \"bank-sim\" \
                 for settle bank-sim, \"simulator\" for the in-process simulator) and bank.url",
            )
        })
    }

    /// How to reach the configured bank over HTTP: its URL, CA, timeout and,
    /// for the KFTC connector, its credentials.
    pub fn transport_config(&self) -> Result<TransportConfig, Problems> {
        let url = match (self.bank_kind(), &self.bank.url) {
            (Ok(BankKind::BankSim | BankKind::Http), Some(url)) => url,
            _ => {
                return Err(Problem::new(
                    "bank.kind",
                    "bank_not_over_http",
                    "this needs a bank over HTTP: bank.kind \"http\" or \"bank-sim\" with bank.url",
                )
                .into());
            }
        };
        let mut transport = TransportConfig::new(url);
        transport.extra_ca = self.bank.ca.clone();
        transport.timeout_ms = self.bank.timeout_ms;
        if self.bank.kind == Some(BankKind::Http) {
            parse::kftc_credentials(self, &mut transport)?;
        }
        Ok(transport)
    }

    /// The installation's id secret (`SETTLE_ID_SECRET`, `…_FILE` or
    /// `secrets.id_secret_file`); the published test secret is refused.
    pub fn ids(&self) -> Result<DerivedIds, Problems> {
        let secret = secret::ID_SECRET
            .require(
                self.secrets.id_secret_file.as_deref(),
                "no id secret (at least 32 random bytes, e.g. `openssl rand -hex 32`); every \
                 process of one installation needs the same one",
            )
            .map_err(|problem| match problem.code {
                "secret_missing" => Problem {
                    code: "id_secret_refused",
                    ..problem
                },
                _ => problem,
            })?;
        parse::ids(&secret).map_err(Problems::from)
    }

    /// The alert webhook, if one is configured.
    pub fn webhook_url(&self) -> Result<Option<Secret>, Problems> {
        Ok(secret::WEBHOOK_URL.resolve(self.secrets.webhook_url_file.as_deref())?)
    }

    /// Everything `settle serve` needs beyond what loading checked: the
    /// sections it cannot run without, a bank over HTTP and every secret.
    pub fn serve_problems(&self) -> Vec<Problem> {
        parse::serve_problems(self)
    }
}

/// The file, then the environment, then the flags.
fn figment(file: Option<&Path>, overrides: &Overrides) -> Result<Figment, Problems> {
    let mut figment = Figment::new();
    if let Some(path) = file {
        if !path.is_file() {
            return Err(Problem::new(
                "--config",
                "config_file_missing",
                format!("{} is not a readable file", path.display()),
            )
            .into());
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    // Only SETTLE_<SECTION>__<KEY>: the flags' own variables
    // (SETTLE_DATABASE_URL, SETTLE_ID_SECRET, …) are read elsewhere.
    figment = figment.merge(environment::Environment::read());
    for (key, value) in &overrides.0 {
        figment = figment.merge(Serialized::default(key, value.clone()));
    }
    Ok(figment)
}

fn not_configured(section: &str) -> Problems {
    let keys = match section {
        "fees" => {
            "fees.institution_code, fees.settlement_account, fees.settlement_holder, \
                   fees.corporate_account and fees.corporate_holder"
        }
        _ => "payroll.payout_account and payroll.payout_holder",
    };
    Problem::new(
        section,
        "section_missing",
        format!("not configured: name {keys} (there are no default accounts)"),
    )
    .into()
}

#[cfg(test)]
mod tests;
