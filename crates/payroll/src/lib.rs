//! Salary settlement. Users each have a virtual account issued by their banking
//! provider; the [`poller::Poller`] polls every virtual account's balance under a
//! requests/s and concurrency cap and turns each new deposit into a `payroll_deposits`
//! row plus a `payroll.deposit_detected` event in one transaction. Five consumers on
//! the event backbone ([`stages`]), keyed by user so each user's deposits go through
//! each stage in order, then settle the deposit: compute → repay → suspend → payout
//! → complete. A business failure raises a deduplicated alert ([`alerts`]) and,
//! per failure kind, waits for an operator's [`Payroll::retry`] or rolls back
//! (decided first, compensated after as its own step: [`rollback`]). Every stage
//! works under a claim on (deposit, stage) ([`claims`]), so several processes
//! do each thing once.
//!
//! `payroll` never settles a deposit twice: the bank's deposit id is the primary key
//! of a deposit, the provider guard (`bank_settlements`) is claimed in the compute
//! transaction, ledger transfer ids and `bank_tran_id`s are derived from
//! (deposit, purpose), and a payout whose outcome is unknown is asked about before
//! anything is sent again.

pub mod alerts;
pub mod bench;
pub mod books;
mod claims;
mod config;
mod db;
mod error;
pub mod import;
mod operations;
mod payout;
pub mod poller;
mod prepared;
mod rollback;
mod stages;
pub mod state;
mod workers;

use std::sync::Arc;

use bank::providers::Facade;
use bank::{AccountNumber, HolderName, UserId};
use ledger::Ledger;
use money::{Clock, Krw, Timestamp};
use serde::Serialize;
use store::{Store, Tx};

pub use claims::ClaimView;
pub use config::{FailureKind, FailurePolicy, OnFailure, PayrollConfig};
pub use db::AlertRow;
pub use error::PayrollError;
pub use operations::{ActionRow, DepositDetail, REASON_CHARS_MAX, REASON_DEAD_LETTERED};
pub use stages::StageConsumer;
pub use state::{DepositState, Stage};
pub use workers::{Workers, WorkersConfig};

/// Rows one status or listing call returns at most.
pub const LIST_ROWS_MAX: i64 = 10_000;
/// Users one [`Payroll::enrol_many`] transaction writes at most.
pub const ENROL_BATCH_MAX: usize = 500;
/// Virtual accounts [`Payroll::enrol_many`] asks providers for at once.
const ENROL_CONCURRENT_MAX: usize = 32;
/// 429s one enrolment may meet before [`Payroll::enrol_many`] gives up.
const ENROL_REFUSALS_MAX: u32 = 100;

/// A handle on salary settlement. Cheap to clone.
#[derive(Clone)]
pub struct Payroll {
    inner: Arc<Inner>,
}

struct Inner {
    /// Payroll's tables, the outbox and the provider routing table live here.
    store: Store,
    /// The ledger may live in another database: stages call it inside their own
    /// transaction, and SQLite has one writer per file.
    ledger: Ledger,
    facade: Facade,
    clock: Arc<dyn Clock>,
    config: PayrollConfig,
    /// Sends alerts to the webhook.
    http: reqwest::Client,
    /// This process's name on its claims: unique per `Payroll::open`.
    owner: String,
}

/// A user to enrol.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub user_id: UserId,
    pub holder_name: HolderName,
    /// The user's own bank account that payouts go to, and its holder.
    pub payout_account: AccountNumber,
    pub payout_holder: HolderName,
    /// Salary advance outstanding.
    pub advance_krw: Krw,
    /// At least this share of what is left after repayment is held (0..=100).
    pub suspend_percent: u8,
}

/// One deposit as operators see it.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct DepositView {
    pub deposit_id: String,
    pub user_id: String,
    pub account: String,
    pub bank_cursor: i64,
    pub amount_krw: i64,
    pub detected_at_ms: i64,
    pub state: DepositState,
    pub waiting_stage: Option<Stage>,
    pub waiting_reason: Option<String>,
    pub provider: Option<String>,
    pub repayment_krw: i64,
    pub suspend_krw: i64,
    pub payout_krw: i64,
    pub attempt: i64,
    /// Last state change (or operator action).
    pub updated_at_ms: i64,
}

impl From<db::DepositRow> for DepositView {
    fn from(row: db::DepositRow) -> DepositView {
        DepositView {
            deposit_id: row.deposit_id,
            user_id: row.user_id,
            account: row.account,
            bank_cursor: row.bank_cursor,
            amount_krw: row.amount_krw,
            detected_at_ms: row.detected_at_ms,
            state: row.state,
            waiting_stage: row.waiting_stage,
            waiting_reason: row.waiting_reason,
            provider: row.provider,
            repayment_krw: row.repayment_krw,
            suspend_krw: row.suspend_krw,
            payout_krw: row.payout_krw,
            attempt: row.attempt,
            updated_at_ms: row.updated_at_ms,
        }
    }
}

/// The pipeline at a glance.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Status {
    pub users: i64,
    pub per_state: Vec<(String, i64)>,
    /// Deposits neither completed nor rolled back and untouched for `stuck_after_ms`.
    pub stuck: Vec<DepositView>,
    pub alerts: Vec<AlertRow>,
}

impl Payroll {
    /// Migrates payroll's tables (and the outbox) in `store` and opens payroll's
    /// ledger accounts. The facade's routing table must live in `store` too: the
    /// provider guard is claimed in the stage's transaction.
    pub async fn open(
        store: Store,
        ledger: Ledger,
        facade: Facade,
        clock: Arc<dyn Clock>,
        config: PayrollConfig,
    ) -> Result<Payroll, PayrollError> {
        config.validate()?;
        if shares_one_sqlite_file(&store, ledger.store()) {
            return Err(PayrollError::InvalidConfig(
                "on SQLite the ledger needs its own file: stages call the ledger inside payroll's \
                 write transaction, and a SQLite file has one writer"
                    .into(),
            ));
        }
        events::migrate(&store).await?;
        db::migrate(&store).await?;
        books::open_shared(&ledger, &config.ids).await?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(config.webhook_timeout_ms))
            .build()
            .map_err(|error| PayrollError::InvalidConfig(format!("HTTP client: {error}")))?;
        Ok(Payroll {
            inner: Arc::new(Inner {
                store,
                ledger,
                facade,
                clock,
                config,
                http,
                owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    pub fn facade(&self) -> &Facade {
        &self.inner.facade
    }

    pub fn config(&self) -> &PayrollConfig {
        &self.inner.config
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// The stage consumers and the alert consumer, one dispatcher each.
    pub fn stage_consumers(&self) -> Vec<StageConsumer> {
        Stage::ALL
            .into_iter()
            .map(|stage| StageConsumer::new(stage, self.clone()))
            .collect()
    }

    pub fn alert_consumer(&self) -> alerts::AlertConsumer {
        alerts::AlertConsumer::new(self.clone())
    }

    /// Enrols a user: issues their virtual account through their provider and opens
    /// their ledger wallet. Enrolling twice changes nothing.
    #[tracing::instrument(skip_all, fields(user = %user.user_id))]
    pub async fn enrol(&self, user: &NewUser) -> Result<AccountNumber, PayrollError> {
        if user.suspend_percent > 100 || user.advance_krw.get() < 0 {
            return Err(PayrollError::InvalidConfig(
                "suspend_percent must be 0..=100 and advance_krw not negative".into(),
            ));
        }
        let provider = self.inner.facade.provider_for(user.user_id).await?;
        let account = provider
            .account_number(user.user_id, &user.holder_name)
            .await?;
        books::open_wallet(
            &self.inner.ledger,
            &self.inner.config.ids,
            &user.user_id.to_string(),
        )
        .await?;
        let mut tx = self.inner.store.begin().await?;
        db::insert_user(&mut tx, &user_row(user, &account), self.now().unix_ms()).await?;
        tx.commit().await?;
        metrics::counter!("payroll_users_enrolled_total").increment(1);
        Ok(account)
    }

    /// Enrols many users, in order: virtual accounts issued by their providers
    /// ([`ENROL_CONCURRENT_MAX`] at once; a 429 waits and asks again, it moves
    /// nothing), wallets opened in one ledger call and users written in one
    /// transaction per [`ENROL_BATCH_MAX`]. Enrolling twice changes nothing.
    /// Returns each user's virtual account.
    pub async fn enrol_many(&self, users: &[NewUser]) -> Result<Vec<AccountNumber>, PayrollError> {
        if users
            .iter()
            .any(|user| user.suspend_percent > 100 || user.advance_krw.get() < 0)
        {
            return Err(PayrollError::InvalidConfig(
                "suspend_percent must be 0..=100 and advance_krw not negative".into(),
            ));
        }
        let mut accounts = Vec::with_capacity(users.len());
        for batch in users.chunks(ENROL_BATCH_MAX) {
            // Tasks, not one stream: the calls' work spreads over the runtime's threads.
            let mut tasks = tokio::task::JoinSet::new();
            let mut slots: Vec<Option<AccountNumber>> = vec![None; batch.len()];
            for (index, user) in batch.iter().enumerate() {
                let (payroll, user) = (self.clone(), user.clone());
                tasks.spawn(async move { (index, payroll.issue_account(&user).await) });
                if tasks.len() >= ENROL_CONCURRENT_MAX
                    && let Some(joined) = tasks.join_next().await
                {
                    let (index, account) = joined.map_err(|e| {
                        PayrollError::Corrupt(format!("enrolment task failed: {e}"))
                    })?;
                    slots[index] = Some(account?);
                }
            }
            while let Some(joined) = tasks.join_next().await {
                let (index, account) = joined
                    .map_err(|e| PayrollError::Corrupt(format!("enrolment task failed: {e}")))?;
                slots[index] = Some(account?);
            }
            let issued: Vec<AccountNumber> = slots.into_iter().flatten().collect();
            if issued.len() != batch.len() {
                return Err(PayrollError::Corrupt("an enrolment went missing".into()));
            }
            let ids: Vec<String> = batch.iter().map(|u| u.user_id.to_string()).collect();
            books::open_wallets(&self.inner.ledger, &self.inner.config.ids, &ids).await?;
            let now_ms = self.now().unix_ms();
            let mut tx = self.inner.store.begin().await?;
            for (user, account) in batch.iter().zip(&issued) {
                db::insert_user(&mut tx, &user_row(user, account), now_ms).await?;
            }
            tx.commit().await?;
            metrics::counter!("payroll_users_enrolled_total")
                .increment(u64::try_from(batch.len()).unwrap_or(0));
            accounts.extend(issued);
        }
        Ok(accounts)
    }

    /// The user's virtual account from their current provider.
    async fn issue_account(&self, user: &NewUser) -> Result<AccountNumber, PayrollError> {
        let provider = self.inner.facade.provider_for(user.user_id).await?;
        let mut refusals = 0;
        loop {
            match provider
                .account_number(user.user_id, &user.holder_name)
                .await
            {
                Ok(account) => return Ok(account),
                Err(bank::BankError::RateLimited) if refusals < ENROL_REFUSALS_MAX => {
                    refusals += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    pub async fn deposit(&self, deposit_id: &str) -> Result<DepositView, PayrollError> {
        db::deposit(&self.inner.store, deposit_id)
            .await?
            .map(DepositView::from)
            .ok_or_else(|| PayrollError::UnknownDeposit(deposit_id.to_owned()))
    }

    /// Every deposit, oldest first (at most [`LIST_ROWS_MAX`]).
    pub async fn deposits(&self) -> Result<Vec<DepositView>, PayrollError> {
        Ok(db::deposits(&self.inner.store, LIST_ROWS_MAX)
            .await?
            .into_iter()
            .map(DepositView::from)
            .collect())
    }

    /// Counts per state, stuck deposits and the newest alerts.
    pub async fn status(&self, stuck_after_ms: i64) -> Result<Status, PayrollError> {
        let store = &self.inner.store;
        let before_ms = self.now().unix_ms().saturating_sub(stuck_after_ms);
        Ok(Status {
            users: db::user_count(store).await?,
            per_state: db::state_counts(store).await?,
            stuck: db::stuck(store, before_ms, LIST_ROWS_MAX)
                .await?
                .into_iter()
                .map(DepositView::from)
                .collect(),
            alerts: db::alerts(store, LIST_ROWS_MAX).await?,
        })
    }

    pub async fn alerts(&self) -> Result<Vec<AlertRow>, PayrollError> {
        db::alerts(&self.inner.store, LIST_ROWS_MAX).await
    }

    /// The order stages ran in: `(deposit_id, user_id, stage)`, oldest first.
    pub async fn stage_log(&self) -> Result<Vec<(String, String, String)>, PayrollError> {
        db::stage_log(&self.inner.store, LIST_ROWS_MAX.saturating_mul(10)).await
    }

    /// Appends `kind` for the user's next seq and remembers which deposit it is about.
    pub(crate) async fn emit(
        &self,
        tx: &mut Tx,
        user_id: &str,
        kind: &'static str,
        deposit_id: &str,
    ) -> Result<String, PayrollError> {
        let key = user_key(user_id);
        let seq = db::next_seq(tx, user_id).await?;
        events::append(
            tx,
            &[events::NewEvent {
                kind,
                key: key.clone(),
                seq,
            }],
            self.now(),
        )
        .await?;
        let event_id = events::event_id(kind, &key, seq).hyphenated().to_string();
        db::map_event(tx, &event_id, deposit_id).await?;
        Ok(event_id)
    }
}

fn user_row(user: &NewUser, account: &AccountNumber) -> db::UserRow {
    db::UserRow {
        user_id: user.user_id.to_string(),
        holder_name: user.holder_name.to_string(),
        virtual_account: account.to_string(),
        payout_account: user.payout_account.to_string(),
        payout_holder: user.payout_holder.to_string(),
        advance_krw: user.advance_krw.get(),
        suspend_percent: i64::from(user.suspend_percent),
        last_balance_krw: 0,
        deposit_cursor: 0,
    }
}

/// True when both stores are one SQLite file (a deadlock waiting to happen).
fn shares_one_sqlite_file(a: &Store, b: &Store) -> bool {
    match (a, b) {
        (Store::Sqlite(a), Store::Sqlite(b)) => {
            a.connect_options().get_filename() == b.connect_options().get_filename()
        }
        _ => false,
    }
}

/// The backbone key of a user's events: one FIFO line per user.
pub fn user_key(user_id: &str) -> String {
    format!("payroll:{user_id}")
}
