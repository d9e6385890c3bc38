//! `settle keys create --role ops|service|customer [--customer ID] [--expires-in-days N]`:
//! makes an API key, prints it once as JSON, and keeps only its hash. `settle keys
//! list` shows every key (never the key itself) with its expiry and last use;
//! `settle keys revoke --key-id ID` revokes one and `settle keys rotate --key-id ID`
//! gives it a new secret (printed once), the old one refused from the next request
//! on by every process. Every change is written to the API's audit log with the
//! actor `cli`, before it runs and again with its outcome.
//!
//! The command line works on the database directly, as the installation's owner:
//! maker-checker applies to API keys (`settle approvals` is an API client).

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use money::{Clock, SystemClock};

use super::{CliError, DatabaseArgs};

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Creates an API key and prints it (the only time it is shown).
    Create(CreateArgs),
    /// Lists every key (ids, roles, grants, revocation), never the key itself.
    List(StoreArgs),
    /// Revokes a key.
    Revoke(RevokeArgs),
    /// Gives a key a new secret (same id, role and grants), printed once; the old
    /// secret stops working at once.
    Rotate(RotateArgs),
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The key's id (`key_…`), as `list` shows it.
    #[arg(long)]
    key_id: String,
    /// A new expiry, this many days from now (default: keep the old one).
    #[arg(long)]
    expires_in_days: Option<u32>,
}

/// Milliseconds in a day.
const DAY_MS: i64 = 24 * 60 * 60 * 1_000;

fn expiry(days: Option<u32>, now_ms: i64) -> Option<i64> {
    days.map(|days| now_ms.saturating_add(i64::from(days).saturating_mul(DAY_MS)))
}

/// Writes a CLI action's audit rows around `work`: intent, then its outcome.
async fn audited<T>(
    store: &store::Store,
    action: &str,
    target: &str,
    details: serde_json::Value,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let intent = api::db::append_audit(
        store,
        SystemClock.now().unix_ms(),
        "cli",
        action,
        target,
        &details,
    )
    .await?;
    let result = work.await;
    let outcome = match &result {
        Ok(_) => serde_json::json!({ "outcome": "ok", "of": intent }),
        Err(error) => serde_json::json!({
            "outcome": "failed", "of": intent,
            "code": error.downcast_ref::<CliError>().map_or("internal_error", |e| e.code.as_str()),
        }),
    };
    api::db::append_audit(
        store,
        SystemClock.now().unix_ms(),
        "cli",
        action,
        target,
        &outcome,
    )
    .await?;
    result
}

async fn rotate(args: RotateArgs) -> anyhow::Result<()> {
    let store = open(&args.store).await?;
    let now_ms = SystemClock.now().unix_ms();
    let expires_at_ms = expiry(args.expires_in_days, now_ms);
    let details = serde_json::json!({ "expires_at_ms": expires_at_ms });
    let rotated = audited(&store, "keys.rotate", &args.key_id, details, async {
        api::auth::rotate_key(&store, &args.key_id, expires_at_ms, now_ms)
            .await
            .map_err(|error| CliError::new(error.code, error.message))?
            .ok_or_else(|| {
                CliError::new("not_found", format!("no live key {}", args.key_id)).into()
            })
    })
    .await?;
    println!("{}", serde_json::to_string_pretty(&rotated)?);
    Ok(())
}

#[derive(Args, Debug)]
pub struct StoreArgs {
    #[command(flatten)]
    db: DatabaseArgs,
    /// The API's database, as given to `settle serve`.
    #[arg(long, env = "SETTLE_API_DATABASE_URL")]
    api_database_url: Option<String>,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The key's id (`key_…`), as `list` shows it.
    #[arg(long)]
    key_id: String,
}

pub(super) async fn open(args: &StoreArgs) -> anyhow::Result<store::Store> {
    let url = match &args.api_database_url {
        Some(url) => url.clone(),
        None => super::serve::beside(&args.db.url()?, "api"),
    };
    let store = store::Store::connect(&url)
        .await
        .with_context(|| format!("opening {}", store::redact(&url)))?;
    store
        .migrate(api::db::COMPONENT, api::db::MIGRATIONS)
        .await?;
    Ok(store)
}

async fn list(args: StoreArgs) -> anyhow::Result<()> {
    let store = open(&args).await?;
    let keys = api::db::list_keys(&store, 100_000).await?;
    println!("{}", serde_json::to_string_pretty(&keys)?);
    Ok(())
}

async fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    let store = open(&args.store).await?;
    if !api::db::key_is_live(&store, &args.key_id).await? {
        return Err(CliError::new("not_found", format!("no live key {}", args.key_id)).into());
    }
    let now_ms = SystemClock.now().unix_ms();
    let details = serde_json::json!({});
    audited(&store, "keys.revoke", &args.key_id, details, async {
        if api::db::revoke_key(&store, &args.key_id, now_ms).await? {
            Ok(())
        } else {
            Err(CliError::new("not_found", format!("no live key {}", args.key_id)).into())
        }
    })
    .await?;
    println!(
        "{}",
        serde_json::json!({ "key_id": args.key_id, "revoked_at_ms": now_ms })
    );
    Ok(())
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KeyRole {
    Ops,
    Service,
    Customer,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    db: DatabaseArgs,
    /// The API's database, as given to `settle serve` (default: derived from the
    /// main one the same way).
    #[arg(long, env = "SETTLE_API_DATABASE_URL")]
    api_database_url: Option<String>,
    #[arg(long, value_enum)]
    role: KeyRole,
    /// The customer (a UUID) a customer key may act for.
    #[arg(long)]
    customer: Option<String>,
    /// Let a service key move money on house accounts (settlement, corporate,
    /// lender, suspense, operating…); without it, only customer accounts.
    #[arg(long)]
    grant_house_accounts: bool,
    /// The key stops working this many days from now (default: never).
    #[arg(long)]
    expires_in_days: Option<u32>,
    #[command(flatten)]
    approval: super::ApprovalArgs,
}

pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create(args) => create(args).await,
        KeysCommand::List(args) => list(args).await,
        KeysCommand::Revoke(args) => revoke(args).await,
        KeysCommand::Rotate(args) => rotate(args).await,
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let url = match &args.api_database_url {
        Some(url) => url.clone(),
        None => super::serve::beside(&args.db.url()?, "api"),
    };
    let store = store::Store::connect(&url)
        .await
        .with_context(|| format!("opening {}", store::redact(&url)))?;
    store
        .migrate(api::db::COMPONENT, api::db::MIGRATIONS)
        .await?;
    let role = match args.role {
        KeyRole::Ops => api::Role::Ops,
        KeyRole::Service => api::Role::Service,
        KeyRole::Customer => api::Role::Customer,
    };
    let now_ms = SystemClock.now().unix_ms();
    // The first ops key is made here; once one works, a new ops key under
    // maker-checker is asked for through the API.
    if role == api::Role::Ops && api::db::live_ops_key_exists(&store, now_ms).await? {
        args.approval
            .refuse_if_required(api::approvals::Guarded::OpsKeyCreate, "POST /v1/keys")?;
    }
    let grants: &[api::auth::Grant] = if args.grant_house_accounts {
        &[api::auth::Grant::HouseAccounts]
    } else {
        &[]
    };
    let spec = api::auth::KeySpec::new(
        role,
        args.customer.as_deref(),
        grants,
        expiry(args.expires_in_days, now_ms),
        now_ms,
    )
    .map_err(|error| CliError::new(error.code, error.message))?;
    let minted = api::auth::mint(None);
    let details = serde_json::json!({
        "role": role, "customer_id": spec.customer_id, "grants": grants,
        "expires_at_ms": spec.expires_at_ms,
    });
    let key_id = minted.0.clone();
    let created = audited(&store, "keys.create", &key_id, details, async {
        api::auth::store_key(&store, minted, &spec, "cli", now_ms, None)
            .await
            .map_err(|error| CliError::new(error.code, error.message).into())
    })
    .await?;
    println!("{}", serde_json::to_string_pretty(&created)?);
    Ok(())
}
