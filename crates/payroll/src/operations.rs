//! A way out of every state: what an operator sees about one deposit
//! ([`Payroll::detail`]: why it is where it is, who holds it, what was done to
//! it) and the three actions on it — retry the stage it stands at, roll it back
//! (compensations follow as their own step), or mark it resolved with a reason.
//! Each action is written to `payroll_actions` in the transaction that takes it,
//! supersedes every claim on the deposit (a worker still holding an older one
//! records nothing afterwards), and is refused while a worker holds a live
//! claim. Also: dead-lettered stage events raise an alert ([`Payroll::alert_dead_letters`]).
//!
//! This module owns `payroll_actions`; it never calls a bank.

use events::{DeadLetterState, OperatorAction};
use serde::Serialize;
use store::{Store, Tx, on_pool, on_tx};

use crate::claims::{self, ClaimView};
use crate::db::{self, AlertRow, DepositRow};
use crate::state::{DepositState, KIND_ALERT, Stage, Step};
use crate::{DepositView, LIST_ROWS_MAX, Payroll, PayrollError};

/// Longest reason an operator may give.
pub const REASON_CHARS_MAX: usize = 500;
/// Dead letters one scan looks at, newest first.
const DEAD_LETTERS_SCAN_MAX: usize = 1_000;
/// The alert reason of a stage event the backbone dead-lettered.
pub const REASON_DEAD_LETTERED: &str = "dead_lettered";

pub(crate) const SCHEMA_SQLITE: &str = "
CREATE TABLE payroll_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    deposit_id TEXT NOT NULL REFERENCES payroll_deposits (deposit_id),
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX payroll_actions_deposit ON payroll_actions (deposit_id, id);";

pub(crate) const SCHEMA_POSTGRES: &str = "
CREATE TABLE payroll_actions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    deposit_id TEXT NOT NULL REFERENCES payroll_deposits (deposit_id),
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX payroll_actions_deposit ON payroll_actions (deposit_id, id);";

/// One operator action as recorded.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct ActionRow {
    pub action: String,
    pub actor: String,
    pub reason: Option<String>,
    pub from_state: String,
    pub to_state: String,
    pub at_ms: i64,
}

/// Everything an operator needs to decide about one deposit.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct DepositDetail {
    pub deposit: DepositView,
    /// Why it stands where it stands, in a sentence.
    pub why: String,
    /// The actions that apply now: `retry`, `rollback`, `resolve`.
    pub actions_possible: Vec<&'static str>,
    /// Untouched for the configured `stuck_after_ms` and not finished.
    pub stuck: bool,
    pub claims: Vec<ClaimView>,
    pub alerts: Vec<AlertRow>,
    pub actions: Vec<ActionRow>,
}

/// The stage a deposit in `state` stands at (runs next), if any.
fn stage_at(state: DepositState) -> Option<Stage> {
    Stage::ALL.into_iter().find(|s| s.ready_state() == state)
}

impl Payroll {
    /// One deposit with the reason it is where it is and what can be done.
    pub async fn detail(&self, deposit_id: &str) -> Result<DepositDetail, PayrollError> {
        let store = self.store();
        let row = db::deposit(store, deposit_id)
            .await?
            .ok_or_else(|| PayrollError::UnknownDeposit(deposit_id.to_owned()))?;
        let now_ms = self.now().unix_ms();
        let claims = claims::of_deposit(store, deposit_id).await?;
        let held = claims.iter().find(|c| c.expires_at_ms > now_ms);
        let why = match (row.state, held) {
            (state, _) if state.is_terminal() => format!("finished: {}", state.as_str()),
            (_, Some(c)) => format!(
                "{} is being worked on by {} (claim {}, until {})",
                c.stage, c.owner, c.token, c.expires_at_ms
            ),
            (DepositState::Waiting, None) => format!(
                "waits for an operator at {}: {}",
                row.waiting_stage.map_or("?", Stage::as_str),
                row.waiting_reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            ),
            (state, None) => format!(
                "{} next; its event is queued, retried or dead-lettered (see alerts and `settle events dlq list`)",
                stage_at(state).map_or("nothing", Stage::as_str)
            ),
        };
        let mut actions_possible = Vec::new();
        if !row.state.is_terminal() {
            actions_possible.push("retry");
            if row.state.after(Step::RollBack, row.waiting_stage).is_some() {
                actions_possible.push("rollback");
            }
            actions_possible.push("resolve");
        }
        let stuck = !row.state.is_terminal()
            && row.updated_at_ms < now_ms.saturating_sub(self.inner.config.stuck_after_ms);
        let alerts = db::alerts(store, LIST_ROWS_MAX)
            .await?
            .into_iter()
            .filter(|a| a.deposit_id == deposit_id)
            .collect();
        Ok(DepositDetail {
            deposit: DepositView::from(row),
            why,
            actions_possible,
            stuck,
            claims,
            alerts,
            actions: actions_of(store, deposit_id).await?,
        })
    }

    /// Runs the stage the deposit stands at again: a waiting deposit goes back to
    /// its stage under a new payout attempt (new `bank_tran_id`s for chunks not
    /// yet paid); a deposit at a stage (or rolling back) gets that stage's event
    /// again, so a lost or dead-lettered delivery is not the end of it.
    #[tracing::instrument(skip(self))]
    pub async fn retry(&self, deposit_id: &str) -> Result<DepositView, PayrollError> {
        self.retry_as(deposit_id, "operator").await
    }

    pub async fn retry_as(&self, deposit_id: &str, by: &str) -> Result<DepositView, PayrollError> {
        let mut tx = self.store().begin().await?;
        let deposit = self.unclaimed(&mut tx, deposit_id, "retry").await?;
        let now_ms = self.now().unix_ms();
        let (stage, next) = match deposit.state {
            DepositState::Waiting => {
                let stage = deposit.waiting_stage.ok_or_else(|| {
                    PayrollError::Corrupt(format!("waiting deposit {deposit_id} has no stage"))
                })?;
                let next = deposit.state.after(Step::Retry(stage), Some(stage));
                db::next_attempt(&mut tx, deposit_id, now_ms).await?;
                (stage, next)
            }
            state => (
                stage_at(state).ok_or(PayrollError::NotWaiting {
                    deposit: deposit_id.to_owned(),
                    state: state.as_str(),
                    action: "retry",
                })?,
                Some(state),
            ),
        };
        let next = next.ok_or(PayrollError::IllegalTransition {
            deposit: deposit_id.to_owned(),
            from: deposit.state.as_str(),
            step: "retry",
        })?;
        claims::supersede(&mut tx, deposit_id, now_ms).await?;
        if !db::move_state(&mut tx, deposit_id, deposit.state, next, None, now_ms).await? {
            return Err(PayrollError::Corrupt(format!(
                "deposit {deposit_id} moved under retry"
            )));
        }
        // A parked delivery of this stage holds the user's line: replay it rather
        // than queue a new event behind it.
        let parked = self.parked_letters(deposit_id).await?;
        let replay: Vec<_> = parked.iter().filter(|(s, _)| *s == stage).collect();
        if replay.is_empty() {
            self.emit(&mut tx, &deposit.user_id, stage.trigger_kind(), deposit_id)
                .await?;
        }
        log_action(&mut tx, &deposit, "retry", by, None, next, now_ms).await?;
        tx.commit().await?;
        for (stage, letter) in replay {
            self.release_letter(*stage, letter, OperatorAction::Replay, by)
                .await?;
        }
        metrics::counter!("payroll_retries_total", "stage" => stage.as_str()).increment(1);
        tracing::info!(deposit_id, stage = stage.as_str(), by, "operator retry");
        self.deposit(deposit_id).await
    }

    /// Rolls a deposit back (any state before its payout is at the bank): the
    /// decision commits, then the compensating ledger transfers run as their own
    /// claimed step (right here when no worker holds it). Never settled again.
    #[tracing::instrument(skip(self))]
    pub async fn rollback(&self, deposit_id: &str) -> Result<DepositView, PayrollError> {
        self.rollback_as(deposit_id, "operator", None).await
    }

    pub async fn rollback_as(
        &self,
        deposit_id: &str,
        by: &str,
        reason: Option<&str>,
    ) -> Result<DepositView, PayrollError> {
        let reason = reason.map(checked_reason).transpose()?;
        let mut tx = self.store().begin().await?;
        let deposit = self.unclaimed(&mut tx, deposit_id, "rollback").await?;
        // How far its stages committed: a waiting deposit did not finish the stage
        // it waits at.
        let reached = match (deposit.state, deposit.waiting_stage) {
            (DepositState::Waiting, Some(stage)) => stage.ready_state(),
            (state, _) => state,
        };
        self.decide_roll_back(&mut tx, &deposit, reached).await?;
        let now_ms = self.now().unix_ms();
        let to = DepositState::RollingBack;
        log_action(&mut tx, &deposit, "rollback", by, reason, to, now_ms).await?;
        tx.commit().await?;
        self.discard_letters(deposit_id, by).await?;
        self.compensate_now(deposit_id).await?;
        self.deposit(deposit_id).await
    }

    /// Marks a deposit settled by hand (money moved outside settle, or nothing to
    /// do): terminal, with the operator's reason; later salaries behind it go on.
    #[tracing::instrument(skip(self))]
    pub async fn resolve(
        &self,
        deposit_id: &str,
        by: &str,
        reason: &str,
    ) -> Result<DepositView, PayrollError> {
        let reason = checked_reason(reason)?;
        let mut tx = self.store().begin().await?;
        let deposit = self.unclaimed(&mut tx, deposit_id, "resolve").await?;
        let next = deposit
            .state
            .after(Step::Resolve, deposit.waiting_stage)
            .ok_or(PayrollError::IllegalTransition {
                deposit: deposit_id.to_owned(),
                from: deposit.state.as_str(),
                step: "resolve",
            })?;
        let now_ms = self.now().unix_ms();
        claims::supersede(&mut tx, deposit_id, now_ms).await?;
        if !db::move_state(&mut tx, deposit_id, deposit.state, next, None, now_ms).await? {
            return Err(PayrollError::Corrupt(format!(
                "deposit {deposit_id} moved under resolve"
            )));
        }
        self.release_behind(&mut tx, &deposit).await?;
        log_action(&mut tx, &deposit, "resolve", by, Some(reason), next, now_ms).await?;
        tx.commit().await?;
        self.discard_letters(deposit_id, by).await?;
        tracing::info!(deposit_id, by, reason, "resolved by an operator");
        self.deposit(deposit_id).await
    }

    /// The deposit, unless a worker holds a live claim on it right now.
    async fn unclaimed(
        &self,
        tx: &mut Tx,
        deposit_id: &str,
        action: &'static str,
    ) -> Result<DepositRow, PayrollError> {
        let deposit = db::deposit_tx(tx, deposit_id)
            .await?
            .ok_or_else(|| PayrollError::UnknownDeposit(deposit_id.to_owned()))?;
        if deposit.state.is_terminal() {
            return Err(PayrollError::NotWaiting {
                deposit: deposit_id.to_owned(),
                state: deposit.state.as_str(),
                action,
            });
        }
        let now_ms = self.now().unix_ms();
        let live = claims::of_deposit(self.store(), deposit_id)
            .await?
            .into_iter()
            .find(|c| c.expires_at_ms > now_ms);
        if let Some(claim) = live {
            return Err(PayrollError::Busy {
                deposit: deposit_id.to_owned(),
                stage: claim.stage,
                owner: claim.owner,
                expires_at_ms: claim.expires_at_ms,
            });
        }
        Ok(deposit)
    }

    /// Parked dead letters of this deposit's stage events: `(stage, event id)`.
    async fn parked_letters(
        &self,
        deposit_id: &str,
    ) -> Result<Vec<(Stage, events::Event)>, PayrollError> {
        let store = self.store();
        let parked = events::dead_letter::list(
            store,
            None,
            Some(DeadLetterState::Parked),
            DEAD_LETTERS_SCAN_MAX,
        )
        .await?;
        let mut found = Vec::new();
        for letter in parked {
            let Some(stage) = stage_of_consumer(&letter.consumer) else {
                continue;
            };
            let event_id = letter.event.id.as_uuid().hyphenated().to_string();
            if db::deposit_of_event(db::Reader::Pool(store), &event_id)
                .await?
                .as_deref()
                == Some(deposit_id)
            {
                found.push((stage, letter.event));
            }
        }
        Ok(found)
    }

    async fn release_letter(
        &self,
        stage: Stage,
        event: &events::Event,
        action: OperatorAction,
        by: &str,
    ) -> Result<(), PayrollError> {
        let consumer = format!("payroll.{}", stage.as_str());
        events::dead_letter::resolve(self.store(), &consumer, event.id, action, by, self.now())
            .await?;
        tracing::info!(consumer, event = %event.id, action = ?action, "dead letter released");
        Ok(())
    }

    /// A rolled back or resolved deposit's stage events will never run: their
    /// parked letters are discarded so the user's later salaries go on.
    async fn discard_letters(&self, deposit_id: &str, by: &str) -> Result<(), PayrollError> {
        for (stage, event) in self.parked_letters(deposit_id).await? {
            self.release_letter(stage, &event, OperatorAction::Discard, by)
                .await?;
        }
        Ok(())
    }

    /// Raises one alert per deposit for every parked dead letter of a payroll
    /// stage: the deposit stops there until an operator replays it (or retries,
    /// rolls back, resolves). Returns how many alerts were new.
    pub async fn alert_dead_letters(&self) -> Result<usize, PayrollError> {
        let store = self.store();
        let parked = events::dead_letter::list(
            store,
            None,
            Some(DeadLetterState::Parked),
            DEAD_LETTERS_SCAN_MAX,
        )
        .await?;
        let mut raised = 0;
        for letter in parked {
            let Some(stage) = stage_of_consumer(&letter.consumer) else {
                continue;
            };
            let event_id = letter.event.id.as_uuid().hyphenated().to_string();
            let Some(deposit_id) = db::deposit_of_event(db::Reader::Pool(store), &event_id).await?
            else {
                continue;
            };
            let mut tx = store.begin().await?;
            if db::alert_exists(&mut tx, &deposit_id, REASON_DEAD_LETTERED).await? {
                continue;
            }
            let Some(deposit) = db::deposit_tx(&mut tx, &deposit_id).await? else {
                continue;
            };
            let message = format!(
                "the {} stage gave up after {} attempts: {}",
                stage.as_str(),
                letter.attempts,
                letter.last_error
            );
            let next_step = format!(
                "fix the cause, then `settle events dlq replay` it, or `settle payroll retry|rollback|resolve {deposit_id}`"
            );
            self.insert_alert(
                &mut tx,
                &deposit,
                stage,
                REASON_DEAD_LETTERED,
                &message,
                &next_step,
            )
            .await?;
            tx.commit().await?;
            raised += 1;
        }
        Ok(raised)
    }

    /// [`Payroll::alert_dead_letters`] every `every_ms` until `shutdown`.
    pub async fn watch_dead_letters(
        &self,
        every_ms: u64,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut ticks = tokio::time::interval(std::time::Duration::from_millis(every_ms.max(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                () = &mut shutdown => return,
                scanned = self.alert_dead_letters() => match scanned {
                    Ok(0) => {}
                    Ok(raised) => tracing::warn!(raised, "dead-lettered payroll stages alerted"),
                    Err(error) => tracing::warn!(code = error.code(), %error, "dead-letter scan failed"),
                },
            }
        }
    }

    /// Writes an alert and the event that posts it.
    pub(crate) async fn insert_alert(
        &self,
        tx: &mut Tx,
        deposit: &DepositRow,
        stage: Stage,
        reason: &str,
        message: &str,
        next_step: &str,
    ) -> Result<(), PayrollError> {
        let event_id = self
            .emit(tx, &deposit.user_id, KIND_ALERT, &deposit.deposit_id)
            .await?;
        let row = AlertRow {
            deposit_id: deposit.deposit_id.clone(),
            reason: reason.to_owned(),
            user_id: deposit.user_id.clone(),
            stage: stage.as_str().to_owned(),
            next_step: next_step.to_owned(),
            message: message.to_owned(),
            created_at_ms: self.now().unix_ms(),
            delivered_at_ms: None,
        };
        db::insert_alert(tx, &row, &event_id).await?;
        metrics::counter!("payroll_alerts_total", "reason" => reason.to_owned()).increment(1);
        Ok(())
    }
}

/// The stage a consumer name (`payroll.<stage>`) stands for.
fn stage_of_consumer(consumer: &str) -> Option<Stage> {
    consumer.strip_prefix("payroll.").and_then(Stage::parse)
}

fn checked_reason(reason: &str) -> Result<&str, PayrollError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > REASON_CHARS_MAX {
        return Err(PayrollError::InvalidInput(format!(
            "reason must be 1..={REASON_CHARS_MAX} characters"
        )));
    }
    Ok(reason)
}

async fn log_action(
    tx: &mut Tx,
    deposit: &DepositRow,
    action: &str,
    by: &str,
    reason: Option<&str>,
    to: DepositState,
    now_ms: i64,
) -> Result<(), PayrollError> {
    on_tx!(
        tx,
        sqlx::query(
            "INSERT INTO payroll_actions (deposit_id, action, actor, reason, from_state, to_state, at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
        .bind(&deposit.deposit_id)
        .bind(action)
        .bind(by)
        .bind(reason)
        .bind(deposit.state.as_str())
        .bind(to.as_str())
        .bind(now_ms),
        execute
    )?;
    Ok(())
}

async fn actions_of(store: &Store, deposit_id: &str) -> Result<Vec<ActionRow>, PayrollError> {
    type Tuple = (String, String, Option<String>, String, String, i64);
    let rows: Vec<Tuple> = on_pool!(
        store,
        sqlx::query_as::<_, Tuple>(
            "SELECT action, actor, reason, from_state, to_state, at_ms FROM payroll_actions
             WHERE deposit_id = $1 ORDER BY id LIMIT 1000"
        )
        .bind(deposit_id),
        fetch_all
    )?;
    Ok(rows
        .into_iter()
        .map(
            |(action, actor, reason, from_state, to_state, at_ms)| ActionRow {
                action,
                actor,
                reason,
                from_state,
                to_state,
                at_ms,
            },
        )
        .collect())
}
