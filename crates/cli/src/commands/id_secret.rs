//! The installation's id secret ([`money::DerivedIds`]): every process that touches
//! fees or payroll over a real database must use the same one, or the ids it derives
//! name nothing. It comes from the environment only — `SETTLE_ID_SECRET` (the text
//! itself) or `SETTLE_ID_SECRET_FILE` (a path to a file holding it) — never from a
//! command-line argument, which any user of the machine can read in the process list.
//! The fixed test secret is refused here: anyone can compute ids under it.

use money::DerivedIds;

use super::CliError;

/// The variable holding the secret itself.
pub const ENV_SECRET: &str = "SETTLE_ID_SECRET";
/// The variable holding a path to a file with the secret.
pub const ENV_SECRET_FILE: &str = "SETTLE_ID_SECRET_FILE";

/// Reads the installation's secret, or says clearly why there is none.
pub fn installation_ids() -> anyhow::Result<DerivedIds> {
    let text = match (std::env::var(ENV_SECRET), std::env::var(ENV_SECRET_FILE)) {
        (Ok(_), Ok(_)) => {
            return Err(refused(format!(
                "set {ENV_SECRET} or {ENV_SECRET_FILE}, not both"
            )));
        }
        (Ok(text), Err(_)) => text,
        (Err(_), Ok(path)) => read_file(&path)?,
        (Err(_), Err(_)) => {
            return Err(refused(format!(
                "no id secret: set {ENV_SECRET} (at least {} random bytes, e.g. `openssl rand \
                 -hex 32`) or {ENV_SECRET_FILE}; every process of one installation needs the same \
                 secret",
                money::ID_SECRET_BYTES_MIN
            )));
        }
    };
    let ids = DerivedIds::new(text.trim().as_bytes())
        .map_err(|error| refused(format!("{ENV_SECRET}: {error}")))?;
    if ids.is_test_secret() {
        return Err(refused(format!(
            "{ENV_SECRET} is the published test secret; generate one of your own"
        )));
    }
    Ok(ids)
}

fn read_file(path: &str) -> anyhow::Result<String> {
    let metadata = std::fs::metadata(path)
        .map_err(|error| refused(format!("{ENV_SECRET_FILE} {path}: {error}")))?;
    let size_max = u64::try_from(money::ID_SECRET_BYTES_MAX).unwrap_or(u64::MAX);
    if metadata.len() > size_max {
        return Err(refused(format!(
            "{ENV_SECRET_FILE} {path} is larger than {size_max} bytes"
        )));
    }
    std::fs::read_to_string(path)
        .map_err(|error| refused(format!("{ENV_SECRET_FILE} {path}: {error}")))
}

fn refused(message: String) -> anyhow::Error {
    CliError::new("id_secret_refused", message).into()
}
