//! The bank as the parent sees it: the simulator in the parent's own process
//! (the crash harness), or a `settle bank-sim` process reached over its admin
//! HTTP API (the cluster run). Workload setup (accounts, salaries, repayments
//! due) and the checks (statements, conservation) go through this one surface,
//! so each workload's setup and check is written once for both.
//!
//! It never moves money for settle: transfers go through `BankApi` in the code
//! under test; this only sets up the world and reads the statement.

use async_trait::async_trait;
use bank::sim::{AdminClient, Movement, OpenAccount, Salary, Simulator, StatementBody};
use bank::{AccountNumber, BankError};
use fees::report::{HttpStatement, Statement};
use fees::workload::BankAdmin;
use money::Krw;

use crate::TortureError;

/// Statement pages read at most in one pass (the simulator's page is 500 rows).
const STATEMENT_PAGES_MAX: usize = 100_000;

/// The simulator, in process or over HTTP.
#[derive(Clone)]
pub(crate) enum BankSide {
    Local(Simulator),
    Remote(RemoteBank),
}

/// A `settle bank-sim` process.
#[derive(Clone)]
pub(crate) struct RemoteBank {
    admin: AdminClient,
    statement: std::sync::Arc<HttpStatement>,
    http: reqwest::Client,
    base_url: String,
}

impl RemoteBank {
    pub fn new(base_url: &str) -> Result<RemoteBank, TortureError> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        Ok(RemoteBank {
            admin: AdminClient::new(&base_url),
            statement: std::sync::Arc::new(HttpStatement::new(&base_url)?),
            http: reqwest::Client::new(),
            base_url,
        })
    }

    async fn page(
        &self,
        account: Option<&AccountNumber>,
        since_seq: i64,
    ) -> Result<Vec<Movement>, TortureError> {
        let mut query = vec![("since_seq", since_seq.to_string())];
        if let Some(account) = account {
            query.push(("account", account.as_str().to_owned()));
        }
        let response = self
            .http
            .get(format!("{}/admin/statement", self.base_url))
            .query(&query)
            .send()
            .await
            .map_err(|e| TortureError::Bank(BankError::Connection(e.to_string())))?;
        let body: StatementBody = response
            .json()
            .await
            .map_err(|e| TortureError::Bank(BankError::Connection(e.to_string())))?;
        Ok(body.movements)
    }
}

impl BankSide {
    /// Where fee provisioning opens accounts and pays in.
    pub fn admin(&self) -> &dyn BankAdmin {
        match self {
            BankSide::Local(sim) => sim,
            BankSide::Remote(remote) => &remote.admin,
        }
    }

    /// The statement a fee day is reconciled against.
    pub fn statement(&self) -> &dyn Statement {
        match self {
            BankSide::Local(sim) => sim,
            BankSide::Remote(remote) => remote.statement.as_ref(),
        }
    }

    pub async fn open_account(&self, open: &OpenAccount) -> Result<(), TortureError> {
        Ok(self.admin().open_account(open).await?)
    }

    pub async fn pay_salary(&self, salary: &Salary) -> Result<(), TortureError> {
        Ok(self.admin().pay_in(salary).await?)
    }

    pub async fn set_repayment_due(
        &self,
        account: &AccountNumber,
        due: Krw,
    ) -> Result<(), TortureError> {
        match self {
            BankSide::Local(sim) => Ok(sim.set_repayment_due(account, due).await?),
            BankSide::Remote(remote) => {
                let response = remote
                    .http
                    .post(format!("{}/admin/repayment_due", remote.base_url))
                    .json(&serde_json::json!({"account_number": account, "amount_krw": due}))
                    .send()
                    .await
                    .map_err(|e| TortureError::Bank(BankError::Connection(e.to_string())))?;
                if !response.status().is_success() {
                    return Err(TortureError::Child(format!(
                        "setting the repayment due of {account}: HTTP {}",
                        response.status()
                    )));
                }
                Ok(())
            }
        }
    }

    /// Every movement (of `account`, or of the whole bank), oldest first.
    pub async fn movements(
        &self,
        account: Option<&AccountNumber>,
    ) -> Result<Vec<Movement>, TortureError> {
        let mut all = Vec::new();
        let mut since = 0;
        for _ in 0..STATEMENT_PAGES_MAX {
            let page = match self {
                BankSide::Local(sim) => sim.statement(account, since).await?,
                BankSide::Remote(remote) => remote.page(account, since).await?,
            };
            let Some(last) = page.last() else {
                return Ok(all);
            };
            since = last.seq;
            all.extend(page);
        }
        Err(TortureError::Invalid(format!(
            "the statement is longer than {STATEMENT_PAGES_MAX} pages"
        )))
    }

    /// The simulator's own conservation check: balances add up to the money
    /// paid in from outside (the HTTP statement refuses to answer otherwise).
    pub async fn conservation(&self) -> Result<Krw, String> {
        match self {
            BankSide::Local(sim) => sim.check_conservation().await.map_err(|e| e.to_string()),
            BankSide::Remote(remote) => remote
                .admin
                .statement()
                .await
                .map(|body| body.balances_total_krw)
                .map_err(|e| e.to_string()),
        }
    }
}

#[async_trait]
impl Statement for BankSide {
    async fn statement_page(
        &self,
        account: &AccountNumber,
        dates: (bank::TranDate, bank::TranDate),
        cursor: Option<&bank::StatementCursor>,
    ) -> Result<bank::StatementPage, BankError> {
        self.statement()
            .statement_page(account, dates, cursor)
            .await
    }
}
