//! The demo's bank: by default a bank simulator in this process (its own scratch
//! SQLite file, test-profile latency), served over HTTP on 127.0.0.1:0 so that the
//! payroll providers speak the real wire API to it; with `--bank-url`, a running
//! `settle bank-sim` (which must be fresh: the demo reads its whole statement).
//! The in-process bank's SQLite file lives on `/dev/shm` when there is one.
//!
//! Money-moving calls go through `BankApi` (fees) or the providers (payroll);
//! setting up the bank's side of the world (accounts, salaries, a frozen account)
//! goes through the simulator's admin API. The report reads the bank's statement
//! from here, never from the demo's own counters.

use std::sync::Arc;

use anyhow::Context;
use bank::sim::{AdminClient, Movement, OpenAccount, Profile, Salary, SimConfig, Simulator};
use bank::types::VirtualDeposit;
use bank::{AccountNumber, BankApi, HolderName, HttpBank, TransportConfig};
use fees::report::{HttpStatement, Statement};
use fees::workload::BankAdmin;
use money::{Clock, Krw};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::scratch::ScratchDb;

/// Statement pages read at most for one account (page size: the simulator's
/// `page_max`, 500), so a runaway statement cannot keep the report reading.
const STATEMENT_PAGES_MAX: usize = 10_000;

pub struct DemoBank {
    /// Where the bank answers over HTTP.
    pub base_url: String,
    /// The extra CA its HTTPS certificate is checked against (`--bank-ca`).
    pub ca: Option<bank::BankCa>,
    /// Deposit and withdraw transfers for the fee modules.
    pub api: Arc<dyn BankApi>,
    statement: Arc<dyn Statement>,
    admin: AdminClient,
    /// The admin calls `AdminClient` lacks (repayment due).
    http: reqwest::Client,
    local: Option<LocalBank>,
}

/// The in-process simulator and what it takes to stop it.
struct LocalBank {
    sim: Simulator,
    db: ScratchDb,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl DemoBank {
    /// A fresh in-process simulator, or the bank at `bank_url`.
    pub async fn start(
        bank_url: Option<&str>,
        ca: Option<bank::BankCa>,
        seed: u64,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<DemoBank> {
        let http = bank::tls::http_client(ca.as_ref()).build()?;
        match bank_url {
            Some(url) => {
                let base_url = url.trim_end_matches('/').to_owned();
                let admin = AdminClient::with_ca(&base_url, ca.as_ref())?;
                let first = admin
                    .statement()
                    .await
                    .with_context(|| format!("reading the statement of the bank at {base_url}"))?;
                if !first.movements.is_empty() {
                    return Err(super::CliError::new(
                        "bank_not_fresh",
                        format!(
                            "the bank at {base_url} already has {}+ movements; the demo reconciles \
                             the whole statement, so start a fresh `settle bank-sim` (e.g. with \
                             --database-url sqlite://$(mktemp -d)/bank.db)",
                            first.movements.len()
                        ),
                    )
                    .into());
                }
                let mut transport = TransportConfig::new(&base_url);
                transport.requests_per_s_max = None;
                transport.concurrent_max = Some(64);
                transport.extra_ca = ca.clone();
                Ok(DemoBank {
                    api: Arc::new(HttpBank::new(transport)?),
                    statement: Arc::new(HttpStatement::with_ca(&base_url, ca.as_ref())?),
                    ca,
                    admin,
                    http,
                    base_url,
                    local: None,
                })
            }
            None => {
                // The bank is a stand-in: its own fsyncs are not what the demo
                // shows, so its file goes to memory where there is a tmpfs.
                let shm = std::path::Path::new("/dev/shm");
                let db = if shm.is_dir() {
                    ScratchDb::create_sqlite_in(shm, "demo_bank").await?
                } else {
                    ScratchDb::create(None, "demo_bank").await?
                };
                let mut config = SimConfig::for_profile(Profile::Test, seed);
                // Every HTTP call the demo makes in parallel must fit.
                config.concurrent_max = 256;
                config.deposit_amount_max_krw = Krw::new(super::demo::DEMO_BANK_DEPOSIT_MAX_KRW);
                let sim = Simulator::open(db.store.clone(), config, clock).await?;
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                let base_url = format!("http://{}", listener.local_addr()?);
                let (stop, stopped) = oneshot::channel::<()>();
                let serving = sim.clone();
                let server = tokio::spawn(async move {
                    let shutdown = async move {
                        let _ = stopped.await;
                    };
                    if let Err(error) =
                        bank::sim::serve_simulator(serving, listener, shutdown).await
                    {
                        tracing::error!(%error, "the demo's bank simulator stopped");
                    }
                });
                Ok(DemoBank {
                    api: Arc::new(sim.clone()),
                    statement: Arc::new(sim.clone()),
                    admin: AdminClient::new(&base_url),
                    http,
                    base_url,
                    ca: None,
                    local: Some(LocalBank {
                        sim,
                        db,
                        stop,
                        server,
                    }),
                })
            }
        }
    }

    /// "in-process simulator" or the URL.
    pub fn describe(&self) -> String {
        match &self.local {
            Some(_) => format!("in-process simulator at {}", self.base_url),
            None => format!("HTTP bank at {}", self.base_url),
        }
    }

    /// The admin surface the fee workload provisions accounts through.
    pub fn fees_admin(&self) -> &dyn BankAdmin {
        match &self.local {
            Some(local) => &local.sim,
            None => &self.admin,
        }
    }

    pub fn statement(&self) -> &dyn Statement {
        self.statement.as_ref()
    }

    pub fn statement_handle(&self) -> Arc<dyn Statement> {
        self.statement.clone()
    }

    pub async fn open_account(
        &self,
        account: &AccountNumber,
        holder: &HolderName,
        balance_krw: Krw,
    ) -> anyhow::Result<()> {
        let open = OpenAccount {
            account_number: account.clone(),
            holder_name: holder.clone(),
            balance_krw,
        };
        match &self.local {
            Some(local) => local.sim.open_account(&open).await?,
            None => self.admin.open_account(&open).await?,
        }
        Ok(())
    }

    pub async fn pay_salary(
        &self,
        account: &AccountNumber,
        amount_krw: Krw,
    ) -> anyhow::Result<VirtualDeposit> {
        let salary = Salary {
            account_number: account.clone(),
            amount_krw,
            depositor_name: "(주)고용주".to_owned(),
        };
        Ok(match &self.local {
            Some(local) => local.sim.pay_salary(&salary).await?,
            None => self.admin.pay_salary(&salary).await?,
        })
    }

    pub async fn set_frozen(&self, account: &AccountNumber, frozen: bool) -> anyhow::Result<()> {
        match &self.local {
            Some(local) => local.sim.set_frozen(account, frozen).await?,
            None => self.admin.set_frozen(account, frozen).await?,
        }
        Ok(())
    }

    pub async fn set_repayment_due(&self, account: &AccountNumber, due: Krw) -> anyhow::Result<()> {
        match &self.local {
            Some(local) => local.sim.set_repayment_due(account, due).await?,
            None => {
                let response = self
                    .http
                    .post(format!("{}/admin/repayment_due", self.base_url))
                    .json(&serde_json::json!({"account_number": account, "amount_krw": due}))
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "setting the repayment due of {account}: HTTP {}",
                    response.status()
                );
            }
        }
        Ok(())
    }

    /// Every movement touching `account`, oldest first, as the simulator recorded
    /// it (with both accounts of each): the demo's own invariant checks. The fee
    /// report reconciles through [`DemoBank::statement`], the bank's 거래내역조회.
    pub async fn movements(&self, account: &AccountNumber) -> anyhow::Result<Vec<Movement>> {
        let mut all = Vec::new();
        let mut since = 0;
        for _ in 0..STATEMENT_PAGES_MAX {
            let page = match &self.local {
                Some(local) => local.sim.statement(Some(account), since).await?,
                None => {
                    self.admin
                        .statement_page(Some(account), since)
                        .await?
                        .movements
                }
            };
            let Some(last) = page.last() else {
                return Ok(all);
            };
            since = last.seq;
            all.extend(page);
        }
        anyhow::bail!("the statement of {account} is longer than the demo reads")
    }

    /// The bank's own conservation check (balances = money that entered), in won.
    pub async fn conserved_total(&self) -> anyhow::Result<Krw> {
        Ok(match &self.local {
            Some(local) => local.sim.check_conservation().await?,
            None => self.admin.statement().await?.balances_total_krw,
        })
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        if let Some(local) = self.local {
            let _ = local.stop.send(());
            let _ = local.server.await;
            drop(local.sim);
            local.db.finish(false).await?;
        }
        Ok(())
    }
}
