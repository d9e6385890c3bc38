//! `settle audit verify`: walks the API's hash-chained audit log and names the
//! first edited, unchained or missing row (exit status 2), or says how many rows
//! hold.

use clap::Subcommand;

use super::CliError;
use super::keys::{StoreArgs, open};

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Checks every row's hash and link; a broken chain exits non-zero.
    Verify(StoreArgs),
}

pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify(args) => {
            let store = open(&args).await?;
            match api::db::verify_audit(&store).await? {
                Ok(rows) => {
                    println!("{}", serde_json::json!({ "intact": true, "rows": rows }));
                    Ok(())
                }
                Err(broken) => Err(CliError::new(
                    "audit_chain_broken",
                    format!("audit row {} fails the chain: {}", broken.id, broken.why),
                )
                .into()),
            }
        }
    }
}
