//! Alert delivery: a consumer on the backbone that posts each recorded alert to the
//! configured webhook as Slack-compatible JSON (`text` plus the fields on their
//! own) outside any transaction (its prepare step), then marks it delivered in the
//! backbone's transaction. Alerts are created (once per deposit and reason) by
//! the stages; this module never creates one.
//!
//! Delivery is at least once: a crash between the POST and the commit posts again.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use events::{Consumer, Event, HandleError};
use serde::Serialize;
use store::Tx;

use crate::db::{self, AlertRow};
use crate::state::KIND_ALERT;
use crate::{Payroll, PayrollError};

/// The JSON body sent to the webhook.
#[derive(Clone, Debug, Serialize)]
pub struct AlertMessage {
    /// What Slack shows.
    pub text: String,
    pub user: String,
    pub deposit: String,
    pub stage: String,
    pub reason: String,
    pub next: String,
}

impl AlertMessage {
    pub fn from_row(alert: &AlertRow) -> AlertMessage {
        AlertMessage {
            text: format!(
                ":rotating_light: payroll: deposit {} of user {} stopped at {}: {} ({}). Next: {}",
                alert.deposit_id,
                alert.user_id,
                alert.stage,
                alert.reason,
                alert.message,
                alert.next_step
            ),
            user: alert.user_id.clone(),
            deposit: alert.deposit_id.clone(),
            stage: alert.stage.clone(),
            reason: alert.reason.clone(),
            next: alert.next_step.clone(),
        }
    }
}

/// Posts alerts to the webhook.
pub struct AlertConsumer {
    payroll: Payroll,
    kinds: [&'static str; 1],
    /// Alert events whose POST the webhook accepted, oldest first (bounded).
    posted: Mutex<Posted>,
}

#[derive(Default)]
struct Posted {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

/// Accepted POSTs remembered at once; a forgotten one is posted again.
const POSTED_MAX: usize = 4_096;

impl AlertConsumer {
    pub fn new(payroll: Payroll) -> AlertConsumer {
        AlertConsumer {
            payroll,
            kinds: [KIND_ALERT],
            posted: Mutex::default(),
        }
    }

    fn posted(&self) -> std::sync::MutexGuard<'_, Posted> {
        self.posted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Consumer for AlertConsumer {
    const PREPARES: bool = true;

    fn name(&self) -> &str {
        "payroll.alerts"
    }

    fn kinds(&self) -> &[&str] {
        &self.kinds
    }

    async fn prepare(&self, event: &Event) -> Result<(), HandleError> {
        self.post(event).await.map_err(|error| {
            tracing::warn!(code = error.code(), %error, "alert not delivered; retrying");
            Box::new(error) as HandleError
        })
    }

    async fn handle(&self, event: &Event, tx: &mut Tx) -> Result<(), HandleError> {
        self.record(event, tx).await.map_err(|error| {
            tracing::warn!(code = error.code(), %error, "alert not recorded; retrying");
            Box::new(error) as HandleError
        })
    }
}

impl AlertConsumer {
    /// Posts the alert unless it is delivered already.
    async fn post(&self, event: &Event) -> Result<(), PayrollError> {
        let event_id = event.id.as_uuid().hyphenated().to_string();
        let inner = &self.payroll.inner;
        let Some(url) = &inner.config.webhook_url else {
            return Ok(());
        };
        let Some(alert) = db::alert_of_event(db::Reader::Pool(&inner.store), &event_id).await?
        else {
            return Err(PayrollError::Corrupt(format!(
                "alert event {event_id} has no alert"
            )));
        };
        if alert.delivered_at_ms.is_some() || self.posted().ids.contains(&event_id) {
            return Ok(());
        }
        let response = inner
            .http
            .post(url)
            .json(&AlertMessage::from_row(&alert))
            .send()
            .await
            .map_err(|error| PayrollError::Webhook(error.to_string()))?;
        if !response.status().is_success() {
            return Err(PayrollError::Webhook(format!("HTTP {}", response.status())));
        }
        let mut posted = self.posted();
        if posted.ids.insert(event_id.clone()) {
            posted.order.push_back(event_id);
        }
        while posted.order.len() > POSTED_MAX {
            if let Some(oldest) = posted.order.pop_front() {
                posted.ids.remove(&oldest);
            }
        }
        Ok(())
    }

    /// Marks the alert delivered once the webhook accepted it.
    async fn record(&self, event: &Event, tx: &mut Tx) -> Result<(), PayrollError> {
        let event_id = event.id.as_uuid().hyphenated().to_string();
        let Some(alert) = db::alert_of_event(db::Reader::Tx(tx), &event_id).await? else {
            return Err(PayrollError::Corrupt(format!(
                "alert event {event_id} has no alert"
            )));
        };
        if alert.delivered_at_ms.is_some() {
            return Ok(());
        }
        if self.payroll.inner.config.webhook_url.is_some() && !self.posted().ids.contains(&event_id)
        {
            return Err(PayrollError::Webhook(
                "the webhook has not accepted this alert yet".into(),
            ));
        }
        db::alert_delivered(tx, &event_id, self.payroll.now().unix_ms()).await?;
        metrics::counter!("payroll_alerts_delivered_total").increment(1);
        Ok(())
    }
}
