//! `settle keys create --role ops|service|customer [--customer ID]`: makes an API
//! key, prints it once as JSON, and keeps only its hash. `settle keys list` shows
//! every key (never the key itself); `settle keys revoke --key-id ID` revokes one,
//! refused from the next request on by every process. Creations and revokes are
//! written to the API's audit log with the actor `cli`.

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
    api::db::append_audit(
        &store,
        now_ms,
        "cli",
        "keys.revoke",
        &args.key_id,
        &serde_json::json!({}),
    )
    .await?;
    if !api::db::revoke_key(&store, &args.key_id, now_ms).await? {
        return Err(CliError::new("not_found", format!("no live key {}", args.key_id)).into());
    }
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
}

pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create(args) => create(args).await,
        KeysCommand::List(args) => list(args).await,
        KeysCommand::Revoke(args) => revoke(args).await,
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
    let grants: &[api::auth::Grant] = if args.grant_house_accounts {
        &[api::auth::Grant::HouseAccounts]
    } else {
        &[]
    };
    let created = api::auth::create_key_granted(
        &store,
        role,
        args.customer.as_deref(),
        grants,
        "cli",
        now_ms,
    )
    .await
    .map_err(|error| CliError::new(error.code, error.message))?;
    api::db::append_audit(
        &store,
        now_ms,
        "cli",
        "keys.create",
        &created.key_id,
        &serde_json::json!({
            "role": role, "customer_id": created.customer_id, "grants": grants,
        }),
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&created)?);
    Ok(())
}
