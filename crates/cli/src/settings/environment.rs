//! `SETTLE_<SECTION>__<KEY>` variables as a figment provider. Values stay text
//! (an account number or a bank code such as `097` is not a number), except a
//! value written as a list (`[api,fees]`); numbers and booleans are read from
//! text when their key wants one (`extract_lossy`). Variables without `__`
//! (`SETTLE_DATABASE_URL`, `SETTLE_ID_SECRET`, …) belong to the flags and the
//! secrets, not to this provider.

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

/// The variables' common prefix.
const PREFIX: &str = "SETTLE_";

/// A snapshot of the process's `SETTLE_…__…` variables.
pub struct Environment {
    variables: Vec<(String, String)>,
}

impl Environment {
    pub fn read() -> Environment {
        let variables = std::env::vars()
            .filter(|(name, _)| name.starts_with(PREFIX) && name.contains("__"))
            .collect();
        Environment { variables }
    }
}

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable").interpolater(|_: &Profile, path: &[&str]| {
            format!("{PREFIX}{}", path.join("__").to_uppercase())
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut dict = Dict::new();
        for (name, text) in &self.variables {
            let path = name[PREFIX.len()..].to_lowercase().replace("__", ".");
            let value = if text.trim_start().starts_with('[') {
                text.parse::<Value>()
                    .unwrap_or_else(|_| Value::from(text.clone()))
            } else {
                Value::from(text.clone())
            };
            let keys: Vec<&str> = path.split('.').collect();
            insert(&mut dict, &keys, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Puts `value` at `keys` in `dict`, making the tables on the way.
fn insert(dict: &mut Dict, keys: &[&str], value: Value) {
    let Some((first, rest)) = keys.split_first() else {
        return;
    };
    if rest.is_empty() {
        dict.insert((*first).to_owned(), value);
        return;
    }
    let entry = dict
        .entry((*first).to_owned())
        .or_insert_with(|| Value::from(Dict::new()));
    if !matches!(entry, Value::Dict(..)) {
        // A key set both as a value and as a table: the table wins.
        *entry = Value::from(Dict::new());
    }
    if let Value::Dict(_, inner) = entry {
        insert(inner, rest, value);
    }
}
