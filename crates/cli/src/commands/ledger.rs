//! `settle ledger …`: operator and script access to the core ledger, JSON out.

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum LedgerCommand {}

pub async fn run(command: LedgerCommand) -> anyhow::Result<()> {
    match command {}
}
