//! From [`SettingsFile`] to [`Settings`]: each value parsed into its type (an
//! account number, a holder name, a bounded count), every failure collected
//! as a [`Problem`] under its key path rather than stopping at the first.

use std::collections::BTreeSet;

use bank::{AccountNumber, BankCa, HolderName, KftcSettings, TransportConfig};
use figment::Figment;
use money::{DerivedIds, Krw};

use super::file::{self, SettingsFile};
use super::secret::{self, Secret};
use super::{
    ApiSettings, BankKind, BankSettings, DatabaseSettings, EventsSettings, FeeSettings, KftcFields,
    PayrollSettings, Problem, Problems, ServeSettings, Settings,
};

/// The sections of the file, each checked on its own so that a problem in one
/// does not hide those in another.
const SECTIONS: [&str; 8] = [
    "database", "events", "bank", "api", "serve", "fees", "payroll", "secrets",
];

/// Why the file did not fit its shape: unknown keys, wrong types, per section.
pub fn structure_problems(figment: &Figment) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Ok(top) = figment.extract_lossy::<figment::value::Dict>() {
        for key in top.keys().filter(|key| !SECTIONS.contains(&key.as_str())) {
            problems.push(Problem::new(
                key.as_str(),
                "unknown_key",
                format!(
                    "not a section of settle.toml (sections: {})",
                    SECTIONS.join(", ")
                ),
            ));
        }
    }
    section::<file::DatabaseFile>(figment, "database", &mut problems);
    section::<file::EventsFile>(figment, "events", &mut problems);
    section::<file::BankFile>(figment, "bank", &mut problems);
    section::<file::ApiFile>(figment, "api", &mut problems);
    section::<file::ServeFile>(figment, "serve", &mut problems);
    section::<file::FeesFile>(figment, "fees", &mut problems);
    section::<file::PayrollFile>(figment, "payroll", &mut problems);
    section::<file::SecretsFile>(figment, "secrets", &mut problems);
    if problems.is_empty() {
        // The whole did not parse but no section says why: report the whole.
        if let Err(error) = figment.extract_lossy::<SettingsFile>() {
            problems.extend(error.into_iter().map(figment_problem));
        }
    }
    problems
}

fn section<T: serde::de::DeserializeOwned>(
    figment: &Figment,
    name: &str,
    problems: &mut Vec<Problem>,
) {
    if !figment.contains(name) {
        return;
    }
    if let Err(error) = figment.extract_inner_lossy::<T>(name) {
        problems.extend(error.into_iter().map(|mut error| {
            // An inner extraction names its section last; it is the first key.
            if error.path.last().is_some_and(|last| last == name) {
                error.path.pop();
                error.path.insert(0, name.to_owned());
            }
            figment_problem(error)
        }));
    }
}

fn figment_problem(error: figment::Error) -> Problem {
    use figment::error::Kind;
    let mut key = error.path.join(".");
    let code = match &error.kind {
        Kind::UnknownField(field, _) => {
            if error.path.last() != Some(field) {
                key = if key.is_empty() {
                    field.clone()
                } else {
                    format!("{key}.{field}")
                };
            }
            "unknown_key"
        }
        Kind::MissingField(_) => "missing",
        Kind::InvalidType(..) => "bad_type",
        _ => "bad_value",
    };
    let from = match &error.metadata {
        Some(metadata) => match (&error.profile, &metadata.source) {
            (_, Some(figment::Source::File(path))) => format!(" (in {})", path.display()),
            (Some(profile), _) if metadata.name.contains("environment") => {
                format!(" (from {})", metadata.interpolate(profile, &error.path))
            }
            _ => format!(" (from {})", metadata.name),
        },
        None => String::new(),
    };
    let key = if key.is_empty() {
        "settle.toml".to_owned()
    } else {
        key
    };
    Problem::new(key, code, format!("{}{from}", error.kind))
}

/// Every value parsed; all problems at once.
pub fn settings(raw: SettingsFile) -> Result<Settings, Problems> {
    let mut problems = Vec::new();
    distinct_accounts(raw.fees.as_ref(), raw.payroll.as_ref(), &mut problems);
    let database = database(raw.database, &mut problems);
    let events = events(raw.events, &mut problems);
    let bank = bank(raw.bank, &mut problems);
    let api = api(raw.api, &mut problems);
    let serve = serve(raw.serve, &mut problems);
    let fees = raw.fees.map(|f| fees(f, &mut problems));
    let payroll = raw.payroll.map(|p| payroll(p, &mut problems));
    let (Some(database), Some(fees), Some(payroll)) =
        (database, transpose(fees), transpose(payroll))
    else {
        return Err(Problems(problems));
    };
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    Ok(Settings {
        database,
        events,
        bank,
        api,
        serve,
        fees,
        payroll,
        secrets: raw.secrets,
        file: None,
    })
}

/// A section that was given but had problems is `None` inside `Some`.
fn transpose<T>(value: Option<Option<T>>) -> Option<Option<T>> {
    match value {
        None => Some(None),
        Some(None) => None,
        Some(Some(value)) => Some(Some(value)),
    }
}

fn database(raw: file::DatabaseFile, problems: &mut Vec<Problem>) -> Option<DatabaseSettings> {
    let urls = [
        ("database.url", &raw.url),
        ("database.payroll_url", &raw.payroll_url),
        ("database.api_url", &raw.api_url),
        ("database.channel_url", &raw.channel_url),
    ];
    for (key, url) in urls {
        if let Some(url) = url
            && !["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
        {
            problems.push(Problem::new(
                key,
                "bad_database_url",
                format!("{}: not sqlite:PATH or postgres://…", store::redact(url)),
            ));
        }
    }
    within(
        problems,
        "database.connections_max",
        raw.connections_max.into(),
        2,
        100,
    );
    within(
        problems,
        "database.acquire_timeout_ms",
        raw.acquire_timeout_ms,
        1,
        600_000,
    );
    let url = match raw.url {
        Some(url) => url,
        None => match store::default_database_url() {
            Ok(url) => url,
            Err(error) => {
                problems.push(Problem::new("database.url", "missing", error.to_string()));
                return None;
            }
        },
    };
    Some(DatabaseSettings {
        url,
        payroll_url: raw.payroll_url,
        api_url: raw.api_url,
        channel_url: raw.channel_url,
        connections_max: raw.connections_max,
        acquire_timeout_ms: raw.acquire_timeout_ms,
    })
}

/// A signed value for [`within`]: a negative one is out of every range.
fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// Refuses `value` outside `min..=max`.
fn within(problems: &mut Vec<Problem>, key: &str, value: u64, min: u64, max: u64) {
    if !(min..=max).contains(&value) {
        problems.push(Problem::new(
            key,
            "out_of_range",
            format!("{value} is not within {min}..={max}"),
        ));
    }
}

fn events(raw: file::EventsFile, problems: &mut Vec<Problem>) -> EventsSettings {
    if let Some(url) = &raw.nats_url
        && !["nats://", "tls://"].iter().any(|s| url.starts_with(s))
    {
        problems.push(Problem::new(
            "events.nats_url",
            "bad_url",
            format!("{url}: not nats://… or tls://…"),
        ));
    }
    let namespace_ok = !raw.nats_namespace.is_empty()
        && raw.nats_namespace.len() <= 32
        && raw
            .nats_namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !namespace_ok {
        problems.push(Problem::new(
            "events.nats_namespace",
            "bad_value",
            "1 to 32 letters, digits or underscores",
        ));
    }
    EventsSettings {
        nats_url: raw.nats_url,
        nats_namespace: raw.nats_namespace,
    }
}

fn bank(raw: file::BankFile, problems: &mut Vec<Problem>) -> BankSettings {
    match (raw.kind, &raw.url) {
        (Some(BankKind::Simulator), Some(_)) => problems.push(Problem::new(
            "bank.url",
            "bank_url_unused",
            "the in-process simulator has no URL; remove bank.url or set bank.kind",
        )),
        (Some(kind @ (BankKind::BankSim | BankKind::Http)), None) => problems.push(Problem::new(
            "bank.url",
            "missing",
            format!("bank.kind \"{}\" needs the bank's URL", kind.name()),
        )),
        (None, Some(_)) => problems.push(Problem::new(
            "bank.kind",
            "missing",
            "bank.url is set: say which bank it is, \"http\" (a real bank) or \"bank-sim\"",
        )),
        _ => {}
    }
    if let Some(url) = &raw.url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        problems.push(Problem::new(
            "bank.url",
            "bad_url",
            format!("{url}: not http://… or https://…"),
        ));
    }
    let ca = raw.ca_file.as_ref().and_then(|path| {
        BankCa::load(path)
            .map_err(|e| problems.push(Problem::new("bank.ca_file", e.code(), e.to_string())))
            .ok()
    });
    within(problems, "bank.timeout_ms", raw.timeout_ms, 100, 600_000);
    within(
        problems,
        "bank.calls_in_flight_max",
        raw.calls_in_flight_max as u64,
        1,
        1_000,
    );
    if let Some(grace_ms) = raw.not_found_grace_ms {
        within(
            problems,
            "bank.not_found_grace_ms",
            unsigned(grace_ms),
            0,
            86_400_000,
        );
    }
    let kftc = kftc(raw.kind, raw.kftc, problems);
    BankSettings {
        kind: raw.kind,
        url: raw.url,
        ca,
        timeout_ms: raw.timeout_ms,
        calls_in_flight_max: raw.calls_in_flight_max,
        calls_per_s_max: raw.calls_per_s_max,
        not_found_grace_ms: raw.not_found_grace_ms,
        kftc,
    }
}

fn kftc(
    kind: Option<BankKind>,
    raw: Option<file::KftcFile>,
    problems: &mut Vec<Problem>,
) -> Option<KftcFields> {
    let Some(raw) = raw else {
        if kind == Some(BankKind::Http) {
            problems.push(Problem::new(
                "bank.kftc",
                "section_missing",
                "a real bank needs bank.kftc.institution_code, bank_code_std and client_name",
            ));
        }
        return None;
    };
    let institution_code = required(problems, "bank.kftc.institution_code", raw.institution_code)
        .and_then(|code| institution_code(problems, "bank.kftc.institution_code", code));
    let bank_code_std = required(problems, "bank.kftc.bank_code_std", raw.bank_code_std);
    if let Some(code) = &bank_code_std
        && !(code.len() == 3 && code.chars().all(|c| c.is_ascii_digit()))
    {
        problems.push(Problem::new(
            "bank.kftc.bank_code_std",
            "bad_value",
            format!("{code:?}: three digits"),
        ));
    }
    let client_name = required(problems, "bank.kftc.client_name", raw.client_name);
    Some(KftcFields {
        institution_code: institution_code?,
        bank_code_std: bank_code_std?,
        client_name: client_name?,
        scope: raw.scope,
        token_refresh_margin_ms: raw.token_refresh_margin_ms,
    })
}

fn required(problems: &mut Vec<Problem>, key: &str, value: Option<String>) -> Option<String> {
    match value {
        Some(value) if !value.trim().is_empty() => Some(value),
        _ => {
            problems.push(Problem::new(
                key,
                "missing",
                "required, and has no default: the installation must name it",
            ));
            None
        }
    }
}

/// The code every `bank_tran_id` starts with: it must make valid ids.
fn institution_code(problems: &mut Vec<Problem>, key: &str, code: String) -> Option<String> {
    match bank::BankTranId::from_sequence(&code, 0) {
        Ok(_) => Some(code),
        Err(error) => {
            problems.push(Problem::new(key, "bad_institution_code", error.to_string()));
            None
        }
    }
}

fn api(raw: file::ApiFile, problems: &mut Vec<Problem>) -> ApiSettings {
    if raw.listen.parse::<std::net::SocketAddr>().is_err() {
        problems.push(Problem::new(
            "api.listen",
            "bad_address",
            format!(
                "{:?}: not an address and port such as 127.0.0.1:8000",
                raw.listen
            ),
        ));
    }
    let require_approval =
        match api::approvals::Guarded::parse_list(&raw.require_approval.join(",")) {
            Ok(set) => set,
            Err(error) => {
                problems.push(Problem::new("api.require_approval", "bad_value", error));
                BTreeSet::new()
            }
        };
    within(
        problems,
        "api.approval_ttl_s",
        raw.approval_ttl_s.into(),
        60,
        30 * 86_400,
    );
    ApiSettings {
        listen: raw.listen,
        require_approval,
        approval_ttl_s: raw.approval_ttl_s,
    }
}

fn serve(raw: file::ServeFile, problems: &mut Vec<Problem>) -> ServeSettings {
    if raw.roles.is_empty() {
        problems.push(Problem::new(
            "serve.roles",
            "bad_value",
            "at least one role",
        ));
    }
    within(problems, "serve.fees_every_s", raw.fees_every_s, 1, 86_400);
    within(problems, "serve.poll_every_s", raw.poll_every_s, 1, 86_400);
    within(
        problems,
        "serve.shutdown_grace_ms",
        raw.shutdown_grace_ms,
        0,
        600_000,
    );
    ServeSettings {
        roles: raw.roles,
        fees_every_s: raw.fees_every_s,
        poll_every_s: raw.poll_every_s,
        shutdown_grace_ms: raw.shutdown_grace_ms,
    }
}

fn account(problems: &mut Vec<Problem>, key: &str, raw: Option<String>) -> Option<AccountNumber> {
    let text = required(problems, key, raw)?;
    AccountNumber::new(&text)
        .map_err(|e| problems.push(Problem::new(key, "bad_account", e.to_string())))
        .ok()
}

fn holder(problems: &mut Vec<Problem>, key: &str, raw: Option<String>) -> Option<HolderName> {
    let text = required(problems, key, raw)?;
    HolderName::new(&text)
        .map_err(|e| problems.push(Problem::new(key, "bad_holder", e.to_string())))
        .ok()
}

fn chunk_max(problems: &mut Vec<Problem>, key: &str, won: i64) -> Option<Krw> {
    Krw::positive(won)
        .map_err(|e| problems.push(Problem::new(key, "bad_amount", e.to_string())))
        .ok()
}

fn fees(raw: file::FeesFile, problems: &mut Vec<Problem>) -> Option<FeeSettings> {
    let code = required(problems, "fees.institution_code", raw.institution_code)
        .and_then(|code| institution_code(problems, "fees.institution_code", code));
    let settlement_account = account(problems, "fees.settlement_account", raw.settlement_account);
    let settlement_holder = holder(problems, "fees.settlement_holder", raw.settlement_holder);
    let corporate_account = account(problems, "fees.corporate_account", raw.corporate_account);
    let corporate_holder = holder(problems, "fees.corporate_holder", raw.corporate_holder);
    let payout_max = chunk_max(
        problems,
        "fees.payout_chunk_krw_max",
        raw.payout_chunk_krw_max,
    );
    let withdraw_max = chunk_max(
        problems,
        "fees.withdraw_chunk_krw_max",
        raw.withdraw_chunk_krw_max,
    );
    if let Some(lease_ms) = raw.lock_lease_ms {
        within(
            problems,
            "fees.lock_lease_ms",
            unsigned(lease_ms),
            1,
            86_400_000,
        );
    }
    Some(FeeSettings {
        institution_code: code?,
        settlement_account: settlement_account?,
        settlement_holder: settlement_holder?,
        corporate_account: corporate_account?,
        corporate_holder: corporate_holder?,
        payout_chunk_krw_max: payout_max?,
        withdraw_chunk_krw_max: withdraw_max?,
        lock_lease_ms: raw.lock_lease_ms,
    })
}

fn payroll(raw: file::PayrollFile, problems: &mut Vec<Problem>) -> Option<PayrollSettings> {
    let payout_account = account(problems, "payroll.payout_account", raw.payout_account);
    let payout_holder = holder(problems, "payroll.payout_holder", raw.payout_holder);
    Some(PayrollSettings {
        payout_account: payout_account?,
        payout_holder: payout_holder?,
    })
}

/// Each house account serves one purpose: the payout operating account, the
/// fee settlement account and the corporate account are three accounts. Read
/// from the raw values, so a clash is reported beside any other problem (an
/// account that does not parse is reported on its own).
fn distinct_accounts(
    fees: Option<&file::FeesFile>,
    payroll: Option<&file::PayrollFile>,
    problems: &mut Vec<Problem>,
) {
    let mut named: Vec<(&str, AccountNumber)> = Vec::new();
    let mut add = |key: &'static str, raw: Option<&String>| {
        if let Some(account) = raw.and_then(|text| AccountNumber::new(text).ok()) {
            named.push((key, account));
        }
    };
    if let Some(payroll) = payroll {
        add("payroll.payout_account", payroll.payout_account.as_ref());
    }
    if let Some(fees) = fees {
        add("fees.settlement_account", fees.settlement_account.as_ref());
        add("fees.corporate_account", fees.corporate_account.as_ref());
    }
    let named: Vec<(&str, &AccountNumber)> = named.iter().map(|(k, a)| (*k, a)).collect();
    for (key, other, account) in crate::commands::house_accounts::clashes(&named) {
        problems.push(Problem::new(
            other,
            "accounts_not_distinct",
            format!("{key} and {other} both name account {account}; each purpose needs its own"),
        ));
    }
}

/// The KFTC connector's fields and credentials for a real bank.
pub fn kftc_credentials(
    settings: &Settings,
    transport: &mut TransportConfig,
) -> Result<(), Problems> {
    let mut problems = Vec::new();
    let secrets = &settings.secrets;
    let why = "a real bank needs the KFTC credentials it issued";
    let mut take = |spec: secret::SecretSpec, path: Option<&std::path::Path>| {
        spec.require(path, why)
            .map_err(|problem| problems.push(problem))
            .ok()
    };
    let client_id = take(
        secret::KFTC_CLIENT_ID,
        secrets.kftc_client_id_file.as_deref(),
    );
    let client_secret = take(
        secret::KFTC_CLIENT_SECRET,
        secrets.kftc_client_secret_file.as_deref(),
    );
    let pass_phrase = take(
        secret::KFTC_PASS_PHRASE,
        secrets.kftc_pass_phrase_file.as_deref(),
    );
    let fields = settings.bank.kftc.as_ref();
    let (Some(client_id), Some(client_secret), Some(pass_phrase), Some(fields)) =
        (client_id, client_secret, pass_phrase, fields)
    else {
        if fields.is_none() {
            problems.push(Problem::new("bank.kftc", "section_missing", why));
        }
        return Err(Problems(problems));
    };
    transport.client_id = client_id.expose().to_owned();
    transport.kftc = KftcSettings {
        client_secret: bank::providers::next::token::Secret::new(client_secret.expose()),
        scope: fields.scope.clone(),
        bank_code_std: fields.bank_code_std.clone(),
        institution_code: fields.institution_code.clone(),
        client_name: fields.client_name.clone(),
        pass_phrase: bank::providers::next::token::Secret::new(pass_phrase.expose()),
        token_refresh_margin_ms: fields.token_refresh_margin_ms,
    };
    Ok(())
}

/// The id secret as the derivation key; the published test secret is refused.
pub fn ids(secret: &Secret) -> Result<DerivedIds, Problem> {
    let key = secret::ID_SECRET.key;
    let env = secret::ID_SECRET.env;
    let ids = DerivedIds::new(secret.expose().as_bytes())
        .map_err(|e| Problem::new(key, "id_secret_refused", format!("{env}: {e}")))?;
    if ids.is_test_secret() {
        return Err(Problem::new(
            key,
            "id_secret_refused",
            format!("{env} is the published test secret; generate one of your own"),
        ));
    }
    Ok(ids)
}

/// What `serve` needs: fees, payroll, a bank over HTTP, every secret.
pub fn serve_problems(settings: &Settings) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Err(Problems(found)) = settings.fees_config(DerivedIds::for_tests()) {
        problems.extend(found);
    }
    if let Err(Problems(found)) = settings.payroll() {
        problems.extend(found);
    }
    match settings.bank.kind {
        None => problems.push(Problem::new(
            "bank.kind",
            "bank_not_configured",
            "serve needs a bank: \"http\" (a real bank) or \"bank-sim\", with bank.url",
        )),
        Some(BankKind::Simulator) => problems.push(Problem::new(
            "bank.kind",
            "bank_not_over_http",
            "serve talks to a bank over HTTP: \"http\" or \"bank-sim\" (the demo runs the \
             in-process simulator)",
        )),
        Some(_) => {
            if let Err(Problems(found)) = settings.transport_config() {
                problems.extend(found);
            }
        }
    }
    if let Err(Problems(found)) = settings.ids() {
        problems.extend(found);
    }
    if let Err(Problems(found)) = settings.webhook_url() {
        problems.extend(found);
    }
    problems
}

/// The secrets' problems read straight from `figment`, for a configuration
/// whose values did not parse (so that they are reported together).
pub fn secret_problems(figment: &Figment) -> Vec<Problem> {
    let files: file::SecretsFile = figment.extract_inner_lossy("secrets").unwrap_or_default();
    let mut problems = Vec::new();
    let id = secret::ID_SECRET.require(files.id_secret_file.as_deref(), "no id secret");
    match id.and_then(|secret| ids(&secret)) {
        Ok(_) => {}
        Err(problem) => problems.push(problem),
    }
    if let Err(problem) = secret::WEBHOOK_URL.resolve(files.webhook_url_file.as_deref()) {
        problems.push(problem);
    }
    let kind = figment.extract_inner_lossy::<BankKind>("bank.kind").ok();
    if kind == Some(BankKind::Http) {
        let why = "a real bank needs the KFTC credentials it issued";
        for (spec, path) in [
            (secret::KFTC_CLIENT_ID, &files.kftc_client_id_file),
            (secret::KFTC_CLIENT_SECRET, &files.kftc_client_secret_file),
            (secret::KFTC_PASS_PHRASE, &files.kftc_pass_phrase_file),
        ] {
            if let Err(problem) = spec.require(path.as_deref(), why) {
                problems.push(problem);
            }
        }
    }
    problems
}
