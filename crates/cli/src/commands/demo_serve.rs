//! `settle demo --serve`: after the report, the HTTP API and the web console on
//! the demo's live handles (ledger, channel, fees, payroll, dead letters, provider
//! routing, the bank) until Ctrl-C. The api's own tables (keys, audit) go in the
//! core's scratch store; the ops key is created through the api's key store and
//! printed once.

use std::sync::Arc;

use channel::Channel;
use fees::Fees;
use ledger::Ledger;
use money::Clock;
use store::Store;
use tokio::net::TcpListener;

use super::demo_bank::DemoBank;
use super::demo_payroll::PayrollLive;

/// What the demo leaves running.
pub struct Live<'a> {
    pub core_store: &'a Store,
    pub ledger: &'a Ledger,
    pub channel: &'a Channel,
    pub fees: &'a Fees,
    pub payroll: &'a PayrollLive,
    pub bank: &'a DemoBank,
    pub clock: Arc<dyn Clock>,
}

pub async fn serve(live: Live<'_>, port: u16) -> anyhow::Result<()> {
    let handles = api::Handles {
        ledger: Some(live.ledger.clone()),
        channel: Some(live.channel.clone()),
        fees: Some(live.fees.clone()),
        payroll: Some(live.payroll.payroll.clone()),
        events: Some(live.payroll.db.store.clone()),
        routing: Some(live.payroll.routing.clone()),
        bank: Some(live.bank.api.clone()),
        statement: Some(live.bank.statement_handle()),
        clock: Some(live.clock.clone()),
        probes: Vec::new(),
    };
    let state =
        api::AppState::new(live.core_store.clone(), handles, api::ApiConfig::default()).await?;
    let key = api::auth::create_key(
        live.core_store,
        api::Role::Ops,
        None,
        "settle demo --serve",
        live.clock.now().unix_ms(),
    )
    .await
    .map_err(|error| anyhow::anyhow!("creating the ops key: {}: {}", error.code, error.message))?;
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let address = listener.local_addr()?;
    println!();
    println!("serving the demo's data until Ctrl-C:");
    println!("  console   http://{address}/console/");
    println!("  API       http://{address}/v1/  (OpenAPI at /openapi.json)");
    println!("  ops key   {}  (key id {})", key.key, key.key_id);
    api::serve(listener, state, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
