//! The shape of `settle.toml` (and of its `SETTLE_<SECTION>__<KEY>` environment
//! overrides) exactly as written: plain values, every table refusing keys it
//! does not know, defaults for what may be left out. Nothing here is checked
//! beyond its type; [`super::Settings`] parses these values into typed ones and
//! names every problem with its key path. No secret has a key here, only a path
//! to a file holding it (`secrets.*_file`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{BankKind, Role};

/// The whole file. Sections an installation must fill in (`bank`, `fees`,
/// `payroll`) have no default: absent means "not configured", and a command
/// that needs one says so.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsFile {
    #[serde(default)]
    pub database: DatabaseFile,
    #[serde(default)]
    pub events: EventsFile,
    #[serde(default)]
    pub bank: BankFile,
    #[serde(default)]
    pub api: ApiFile,
    #[serde(default)]
    pub serve: ServeFile,
    pub fees: Option<FeesFile>,
    pub payroll: Option<PayrollFile>,
    #[serde(default)]
    pub secrets: SecretsFile,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseFile {
    /// `sqlite:PATH` or `postgres://…`; none: settle.db in the user's data directory.
    pub url: Option<String>,
    pub payroll_url: Option<String>,
    pub api_url: Option<String>,
    pub channel_url: Option<String>,
    pub connections_max: u32,
    pub acquire_timeout_ms: u64,
}

impl Default for DatabaseFile {
    fn default() -> DatabaseFile {
        DatabaseFile {
            url: None,
            payroll_url: None,
            api_url: None,
            channel_url: None,
            connections_max: 12,
            acquire_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsFile {
    pub nats_url: Option<String>,
    pub nats_namespace: String,
}

impl Default for EventsFile {
    fn default() -> EventsFile {
        EventsFile {
            nats_url: None,
            nats_namespace: "SETTLE".to_owned(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BankFile {
    /// None: no bank is configured, and every command that needs one refuses.
    pub kind: Option<BankKind>,
    pub url: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub timeout_ms: u64,
    pub calls_in_flight_max: usize,
    pub calls_per_s_max: Option<u32>,
    pub not_found_grace_ms: Option<i64>,
    pub kftc: Option<KftcFile>,
}

impl Default for BankFile {
    fn default() -> BankFile {
        BankFile {
            kind: None,
            url: None,
            ca_file: None,
            timeout_ms: 10_000,
            calls_in_flight_max: 50,
            calls_per_s_max: None,
            not_found_grace_ms: None,
            kftc: None,
        }
    }
}

/// The KFTC connector's fixed request fields (its credentials are secrets).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KftcFile {
    pub institution_code: Option<String>,
    pub bank_code_std: Option<String>,
    pub client_name: Option<String>,
    #[serde(default = "default_scope")]
    pub scope: String,
    #[serde(default = "default_token_refresh_margin_ms")]
    pub token_refresh_margin_ms: u64,
}

fn default_scope() -> String {
    "oob".to_owned()
}

fn default_token_refresh_margin_ms() -> u64 {
    10 * 60 * 1_000
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiFile {
    pub listen: String,
    pub require_approval: Vec<String>,
    pub approval_ttl_s: u32,
}

impl Default for ApiFile {
    fn default() -> ApiFile {
        ApiFile {
            listen: "127.0.0.1:8000".to_owned(),
            require_approval: Vec::new(),
            approval_ttl_s: 86_400,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeFile {
    pub roles: Vec<Role>,
    pub fees_every_s: u64,
    pub poll_every_s: u64,
    pub shutdown_grace_ms: u64,
}

impl Default for ServeFile {
    fn default() -> ServeFile {
        ServeFile {
            roles: Role::ALL.to_vec(),
            fees_every_s: 300,
            poll_every_s: 60,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// Fee settlement's accounts have no default: each must be named.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeesFile {
    pub institution_code: Option<String>,
    pub settlement_account: Option<String>,
    pub settlement_holder: Option<String>,
    pub corporate_account: Option<String>,
    pub corporate_holder: Option<String>,
    #[serde(default = "default_payout_chunk_krw_max")]
    pub payout_chunk_krw_max: i64,
    #[serde(default = "default_withdraw_chunk_krw_max")]
    pub withdraw_chunk_krw_max: i64,
    pub lock_lease_ms: Option<i64>,
}

fn default_payout_chunk_krw_max() -> i64 {
    100_000
}

fn default_withdraw_chunk_krw_max() -> i64 {
    10_000_000
}

/// Payroll's operating account has no default either.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PayrollFile {
    pub payout_account: Option<String>,
    pub payout_holder: Option<String>,
}

/// Paths of files holding secrets; the secrets themselves are never keys.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsFile {
    pub id_secret_file: Option<PathBuf>,
    pub webhook_url_file: Option<PathBuf>,
    pub kftc_client_id_file: Option<PathBuf>,
    pub kftc_client_secret_file: Option<PathBuf>,
    pub kftc_pass_phrase_file: Option<PathBuf>,
}

/// The demo's installation: the in-process simulator and the accounts it
/// provisions (fees settle on 1002000000001 and withdraw to 1002000000009;
/// salaries are paid out of 1002000000101).
pub fn demo() -> SettingsFile {
    let text = |s: &str| Some(s.to_owned());
    SettingsFile {
        bank: BankFile {
            kind: Some(BankKind::Simulator),
            ..BankFile::default()
        },
        fees: Some(FeesFile {
            institution_code: text("F202600001"),
            settlement_account: text("1002000000001"),
            settlement_holder: text("세틀주식회사"),
            corporate_account: text("1002000000009"),
            corporate_holder: text("세틀주식회사 법인"),
            payout_chunk_krw_max: default_payout_chunk_krw_max(),
            withdraw_chunk_krw_max: default_withdraw_chunk_krw_max(),
            lock_lease_ms: None,
        }),
        payroll: Some(PayrollFile {
            payout_account: text("1002000000101"),
            payout_holder: text("세틀주식회사"),
        }),
        ..SettingsFile::default()
    }
}

/// Every key path of the file (`section.key`, `bank.kftc.key`), in order: what
/// `examples/settle.toml` and docs/operations.md must document.
#[cfg(test)]
pub fn key_paths() -> Vec<String> {
    let full = SettingsFile {
        fees: Some(FeesFile {
            institution_code: None,
            settlement_account: None,
            settlement_holder: None,
            corporate_account: None,
            corporate_holder: None,
            payout_chunk_krw_max: 0,
            withdraw_chunk_krw_max: 0,
            lock_lease_ms: None,
        }),
        payroll: Some(PayrollFile {
            payout_account: None,
            payout_holder: None,
        }),
        bank: BankFile {
            kftc: Some(KftcFile {
                institution_code: None,
                bank_code_std: None,
                client_name: None,
                scope: String::new(),
                token_refresh_margin_ms: 0,
            }),
            ..BankFile::default()
        },
        ..SettingsFile::default()
    };
    let mut paths = Vec::new();
    if let Ok(value) = serde_json::to_value(&full) {
        collect_paths(&value, "", &mut paths);
    }
    paths
}

#[cfg(test)]
fn collect_paths(value: &serde_json::Value, prefix: &str, paths: &mut Vec<String>) {
    let Some(object) = value.as_object() else {
        return;
    };
    for (key, inner) in object {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if inner.is_object() {
            collect_paths(inner, &path, paths);
        } else {
            paths.push(path);
        }
    }
}
