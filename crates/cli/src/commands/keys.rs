//! `settle keys create --role ops|service|customer [--customer ID]`: makes an API
//! key, prints it once as JSON, and keeps only its hash. The creation is written
//! to the API's audit log with the actor `cli`.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use money::{Clock, SystemClock};

use super::{CliError, DatabaseArgs};

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Creates an API key and prints it (the only time it is shown).
    Create(CreateArgs),
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
