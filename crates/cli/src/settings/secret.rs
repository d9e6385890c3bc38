//! Secrets of an installation — the id secret, the alert webhook URL, the KFTC
//! client credentials — and where each may come from: its environment variable
//! (`SETTLE_ID_SECRET`), a file named by `<VARIABLE>_FILE`, or a file named by
//! its `secrets.*_file` key. Never a command-line argument (any user of the
//! machine can read those in the process list), never a value in `settle.toml`.
//! A [`Secret`] prints `***` in every `Debug`, so no log line can hold one.

use std::fmt;
use std::path::{Path, PathBuf};

use super::Problem;

/// A secret's text; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The text itself, for the one call that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The largest secret file read (a secret is a line, not a document).
const SECRET_FILE_BYTES_MAX: u64 = 64 * 1024;

/// One secret and its three possible sources.
#[derive(Clone, Copy, Debug)]
pub struct SecretSpec {
    /// The variable holding the text itself; `<env>_FILE` holds a path.
    pub env: &'static str,
    /// The configuration key holding a path.
    pub key: &'static str,
}

pub const ID_SECRET: SecretSpec = SecretSpec {
    env: "SETTLE_ID_SECRET",
    key: "secrets.id_secret_file",
};
pub const WEBHOOK_URL: SecretSpec = SecretSpec {
    env: "SETTLE_PAYROLL_WEBHOOK_URL",
    key: "secrets.webhook_url_file",
};
pub const KFTC_CLIENT_ID: SecretSpec = SecretSpec {
    env: "SETTLE_KFTC_CLIENT_ID",
    key: "secrets.kftc_client_id_file",
};
pub const KFTC_CLIENT_SECRET: SecretSpec = SecretSpec {
    env: "SETTLE_KFTC_CLIENT_SECRET",
    key: "secrets.kftc_client_secret_file",
};
pub const KFTC_PASS_PHRASE: SecretSpec = SecretSpec {
    env: "SETTLE_KFTC_PASS_PHRASE",
    key: "secrets.kftc_pass_phrase_file",
};

impl SecretSpec {
    pub fn file_env(&self) -> String {
        format!("{}_FILE", self.env)
    }

    /// The secret from whichever one source is set (`None` when none is); two
    /// sources at once are refused rather than one silently preferred.
    pub fn resolve(&self, file_key: Option<&Path>) -> Result<Option<Secret>, Problem> {
        let file_env = self.file_env();
        let text = std::env::var(self.env).ok();
        let env_file = std::env::var_os(&file_env).map(PathBuf::from);
        let sources = [text.is_some(), env_file.is_some(), file_key.is_some()];
        if sources.iter().filter(|set| **set).count() > 1 {
            return Err(Problem::new(
                self.key,
                "secret_sources_conflict",
                format!(
                    "set one of {}, {file_env} or {}, not several",
                    self.env, self.key
                ),
            ));
        }
        if let Some(text) = text {
            return Ok(Some(Secret::new(text.trim())));
        }
        let (path, source) = match (env_file, file_key) {
            (Some(path), _) => (path, file_env),
            (None, Some(path)) => (path.to_path_buf(), self.key.to_owned()),
            (None, None) => return Ok(None),
        };
        read_secret_file(&path)
            .map(|text| Some(Secret::new(text.trim())))
            .map_err(|message| {
                Problem::new(
                    self.key,
                    "secret_file_unreadable",
                    format!("{source} {}: {message}", path.display()),
                )
            })
    }

    /// The secret, or a problem naming every place it may come from.
    pub fn require(&self, file_key: Option<&Path>, why: &str) -> Result<Secret, Problem> {
        self.resolve(file_key)?.ok_or_else(|| {
            Problem::new(
                self.key,
                "secret_missing",
                format!(
                    "{why}: set {} or {} (a path), or {} in the configuration",
                    self.env,
                    self.file_env(),
                    self.key
                ),
            )
        })
    }
}

fn read_secret_file(path: &Path) -> Result<String, String> {
    let metadata = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if metadata.len() > SECRET_FILE_BYTES_MAX {
        return Err(format!("larger than {SECRET_FILE_BYTES_MAX} bytes"));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_in_debug() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(***)");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn a_secret_is_read_from_its_file_key() {
        let dir = std::env::temp_dir().join(format!("settle-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kftc_pass_phrase");
        std::fs::write(&path, "pass phrase\n").unwrap();
        // No test sets this variable, so the file key is the one source.
        let secret = KFTC_PASS_PHRASE.resolve(Some(&path)).unwrap().unwrap();
        assert_eq!(secret.expose(), "pass phrase");
        let missing = KFTC_PASS_PHRASE
            .resolve(Some(&dir.join("absent")))
            .unwrap_err();
        assert_eq!(missing.code, "secret_file_unreadable");
        assert_eq!(missing.key, "secrets.kftc_pass_phrase_file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
