//! The cluster run's verdict on the event backbone, read from the stores after
//! the processes stopped: every outbox row of each stream reached every
//! consumer of that stream (the consumer's watermark on each key equals the
//! outbox's last seq of that key — a watermark moves by one per event, in the
//! same transaction as the effect, so this is "each event once, in key order"),
//! no consumer holds a watermark on a key of another stream, and the effects
//! agree: the channel's history read model is the core's entries for every
//! account, and every payroll stage ran once per deposit.
//!
//! A row's stream is the component prefix of its kind (`ledger.entry` →
//! `ledger`, `payroll.deposit_detected` → `payroll`), the rule the backbone
//! routes by; the check also holds the stream the row stored against it, and
//! counts the deliveries consumers refused as another stream's. This module
//! reads the backbone's tables (`outbox`, `event_consumer_keys`,
//! `event_misdeliveries`) and asks the other crates through their APIs.

use std::collections::{BTreeMap, BTreeSet};

use channel::{Channel, TransferState};
use events::Consumer;
use ledger::Ledger;
use money::{AccountId, TransferId};
use serde::Serialize;
use store::Store;

use crate::TortureError;
use crate::check::Checks;
use crate::cluster_load::Shared;

/// Samples listed per violation.
const SAMPLES_MAX: usize = 10;

/// The stream an event kind belongs to.
pub(crate) fn stream_of(kind: &str) -> &str {
    kind.split('.').next().unwrap_or(kind)
}

/// A consumer as the check sees it: its durable name and its stream.
#[derive(Clone, Debug)]
pub(crate) struct ConsumerSpec {
    pub name: String,
    pub stream: String,
}

impl ConsumerSpec {
    pub fn of<C: Consumer>(consumer: &C) -> ConsumerSpec {
        let stream = consumer
            .kinds()
            .first()
            .map(|kind| stream_of(kind).to_owned())
            .unwrap_or_default();
        ConsumerSpec {
            name: consumer.name().to_owned(),
            stream,
        }
    }
}

/// One stream's numbers.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct StreamCounts {
    pub events: u64,
    pub keys: u64,
    pub unrelayed: u64,
    /// Events some consumer of the stream never finished (summed over consumers).
    pub lost: u64,
    /// Watermarks beyond the outbox's last seq (summed over consumers).
    pub beyond_outbox: u64,
}

/// The backbone's state, as read from the stores.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Backbone {
    pub streams: BTreeMap<String, StreamCounts>,
    /// Watermarks a consumer holds on keys of another stream.
    pub wrong_stream: u64,
    /// Keys whose rows belong to more than one stream.
    pub mixed_keys: u64,
    /// Rows whose stored stream is not their kind's component.
    pub rows_on_wrong_stream: u64,
    /// Deliveries a consumer refused as another stream's (`event_misdeliveries`).
    pub misdeliveries: u64,
    /// Sum of all watermarks: grows while delivery makes progress.
    pub watermark_total: i64,
    pub samples_lost: Vec<String>,
    pub samples_wrong_stream: Vec<String>,
    /// Ledger accounts with events (the history check's accounts).
    #[serde(skip)]
    pub ledger_keys: Vec<String>,
}

impl Backbone {
    pub fn lost(&self) -> u64 {
        self.streams.values().map(|s| s.lost).sum()
    }

    pub fn unrelayed(&self) -> u64 {
        self.streams.values().map(|s| s.unrelayed).sum()
    }

    /// Everything relayed and delivered.
    pub fn complete(&self) -> bool {
        self.lost() == 0 && self.unrelayed() == 0
    }
}

fn pool(store: &Store) -> Result<&sqlx::PgPool, TortureError> {
    match store {
        Store::Postgres(pool) => Ok(pool),
        Store::Sqlite(_) => Err(TortureError::Invalid(
            "the cluster run needs PostgreSQL".into(),
        )),
    }
}

/// Reads the outbox and every consumer's watermarks and compares them.
pub(crate) async fn backbone(
    store: &Store,
    consumers: &[ConsumerSpec],
) -> Result<Backbone, TortureError> {
    let pool = pool(store)?;
    let rows: Vec<(String, String, i64, bool, String)> = sqlx::query_as(
        "SELECT kind, key, seq, relayed_at_ms IS NOT NULL, stream FROM outbox ORDER BY key, seq",
    )
    .fetch_all(pool)
    .await?;
    let misdelivered: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT consumer, kind, key, seq FROM event_misdeliveries ORDER BY at_ms LIMIT 1000",
    )
    .fetch_all(pool)
    .await?;
    let marks: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT consumer, key, seq_done FROM event_consumer_keys")
            .fetch_all(pool)
            .await?;
    let mut report = Backbone {
        misdeliveries: misdelivered.len() as u64,
        ..Backbone::default()
    };
    for (consumer, kind, key, seq) in misdelivered.iter().take(SAMPLES_MAX) {
        report
            .samples_wrong_stream
            .push(format!("{consumer} was handed {kind} {key}:{seq}"));
    }
    // key → (stream, last seq)
    let mut keys: BTreeMap<&str, (&str, i64)> = BTreeMap::new();
    let mut mixed: BTreeSet<&str> = BTreeSet::new();
    for (kind, key, seq, relayed, stored_stream) in &rows {
        let stream = stream_of(kind);
        if stored_stream != stream {
            report.rows_on_wrong_stream += 1;
        }
        let counts = report.streams.entry(stream.to_owned()).or_default();
        counts.events += 1;
        if !relayed {
            counts.unrelayed += 1;
        }
        let entry = keys.entry(key.as_str()).or_insert((stream, 0));
        if entry.0 != stream {
            mixed.insert(key.as_str());
        }
        entry.1 = entry.1.max(*seq);
    }
    report.mixed_keys = mixed.len() as u64;
    let mut done: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for (consumer, key, seq_done) in &marks {
        done.insert((consumer.as_str(), key.as_str()), *seq_done);
        report.watermark_total = report.watermark_total.saturating_add(*seq_done);
        let Some(spec) = consumers.iter().find(|c| &c.name == consumer) else {
            continue;
        };
        let key_stream = keys.get(key.as_str()).map(|(stream, _)| *stream);
        if key_stream != Some(spec.stream.as_str()) {
            report.wrong_stream += 1;
            if report.samples_wrong_stream.len() < SAMPLES_MAX {
                report.samples_wrong_stream.push(format!(
                    "{consumer} (stream {}) holds seq {seq_done} on key {key} (stream {})",
                    spec.stream,
                    key_stream.unwrap_or("none")
                ));
            }
        }
    }
    for (key, (stream, last)) in &keys {
        report.streams.entry((*stream).to_owned()).or_default().keys += 1;
        if *stream
            == ledger::ENTRY_EVENT_KIND
                .split('.')
                .next()
                .unwrap_or_default()
        {
            report.ledger_keys.push((*key).to_owned());
        }
        for spec in consumers.iter().filter(|c| c.stream == *stream) {
            let seq_done = done.get(&(spec.name.as_str(), *key)).copied().unwrap_or(0);
            let counts = report.streams.entry((*stream).to_owned()).or_default();
            if seq_done < *last {
                counts.lost += u64::try_from(last - seq_done).unwrap_or(0);
                if report.samples_lost.len() < SAMPLES_MAX {
                    report.samples_lost.push(format!(
                        "{}: key {key} done {seq_done} of {last}",
                        spec.name
                    ));
                }
            } else if seq_done > *last {
                counts.beyond_outbox += 1;
            }
        }
    }
    Ok(report)
}

/// Adds the backbone's checks.
pub(crate) fn backbone_checks(report: &Backbone, checks: &mut Checks) {
    let per_stream: Vec<String> = report
        .streams
        .iter()
        .map(|(name, s)| {
            format!(
                "{name}: {} events on {} keys, {} unrelayed, {} lost",
                s.events, s.keys, s.unrelayed, s.lost
            )
        })
        .collect();
    checks.add(
        "cluster: every outbox row was relayed",
        report.unrelayed() == 0,
        per_stream.join("; "),
    );
    checks.add(
        "cluster: every outbox row reached every consumer of its stream, in key order",
        report.lost() == 0,
        format!(
            "{} events never finished by a consumer; {}",
            report.lost(),
            report.samples_lost.join("; ")
        ),
    );
    let beyond: u64 = report.streams.values().map(|s| s.beyond_outbox).sum();
    checks.add(
        "cluster: no consumer is past the outbox's last seq of a key (nothing invented)",
        beyond == 0,
        format!("{beyond} watermarks beyond the outbox"),
    );
    checks.add(
        "cluster: no consumer holds a watermark on a key of another stream",
        report.wrong_stream == 0,
        format!(
            "{} wrong-stream watermarks; {}",
            report.wrong_stream,
            report.samples_wrong_stream.join("; ")
        ),
    );
    checks.add(
        "cluster: every key's events belong to one stream, the stream of their kind",
        report.mixed_keys == 0 && report.rows_on_wrong_stream == 0,
        format!(
            "{} keys with rows of two streams, {} rows stored on another stream",
            report.mixed_keys, report.rows_on_wrong_stream
        ),
    );
    checks.add(
        "cluster: no consumer was handed an event of another stream",
        report.misdeliveries == 0,
        format!(
            "{} misdeliveries recorded; {}",
            report.misdeliveries,
            report.samples_wrong_stream.join("; ")
        ),
    );
}

/// The history read model against the core, account by account.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct HistoryCounts {
    pub accounts: u64,
    pub core_entries: u64,
    pub history_entries: u64,
    pub accounts_behind: u64,
    /// Entries the read model shows that the core does not have as shown.
    pub entries_wrong: u64,
}

/// Compares every ledger account's history read model with the core's entries.
pub(crate) async fn history_equals_core(
    ledger: &Ledger,
    channel: &Channel,
    keys: &[String],
    checks: &mut Checks,
) -> Result<HistoryCounts, TortureError> {
    let mut counts = HistoryCounts::default();
    let mut samples = Vec::new();
    for key in keys {
        let Ok(account) = AccountId::parse(key) else {
            continue;
        };
        counts.accounts += 1;
        let mut core = Vec::new();
        loop {
            let from = core.last().map(|e: &ledger::Entry| e.seq + 1).unwrap_or(1);
            let page = ledger.entries(account, from, usize::MAX).await?;
            if page.is_empty() {
                break;
            }
            core.extend(page);
        }
        let mut shown = Vec::new();
        let mut before = None;
        loop {
            let page = channel.history().history(account, before, 100).await?;
            shown.extend(page.entries.iter().copied());
            before = page.next_before_seq;
            if before.is_none() || page.entries.is_empty() {
                break;
            }
        }
        shown.sort_by_key(|e| e.seq);
        counts.core_entries += core.len() as u64;
        counts.history_entries += shown.len() as u64;
        if shown.len() < core.len() {
            counts.accounts_behind += 1;
        }
        let wrong = shown
            .iter()
            .filter(|e| core.get(usize::try_from(e.seq - 1).unwrap_or(usize::MAX)) != Some(*e))
            .count();
        counts.entries_wrong += wrong as u64;
        if (shown.len() != core.len() || wrong > 0) && samples.len() < SAMPLES_MAX {
            samples.push(format!(
                "{account}: history {} entries, core {}, {wrong} differ",
                shown.len(),
                core.len()
            ));
        }
    }
    checks.add(
        "cluster: the history read model equals the core's entries for every account",
        counts.accounts_behind == 0
            && counts.entries_wrong == 0
            && counts.core_entries == counts.history_entries,
        format!(
            "{} accounts, {} core entries, {} in the read model, {} accounts behind; {}",
            counts.accounts,
            counts.core_entries,
            counts.history_entries,
            counts.accounts_behind,
            samples.join("; ")
        ),
    );
    Ok(counts)
}

/// Payroll stage runs beyond one per (deposit, stage): effects doubled.
pub(crate) async fn payroll_stage_reruns(payroll: &payroll::Payroll) -> Result<u64, TortureError> {
    let log = payroll
        .stage_log()
        .await
        .map_err(|e| TortureError::Child(format!("payroll: {e}")))?;
    let mut seen: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (deposit, _, stage) in log {
        *seen.entry((deposit, stage)).or_default() += 1;
    }
    Ok(seen.values().map(|n| n.saturating_sub(1)).sum())
}

/// Dead letters still parked (each holds its key's later events).
pub(crate) async fn parked_letters(store: &Store, checks: &mut Checks) -> Result<(), TortureError> {
    let parked = events::dead_letter::list(store, None, Some(events::DeadLetterState::Parked), 100)
        .await
        .map_err(|e| TortureError::Child(format!("events: {e}")))?;
    let samples: Vec<String> = parked
        .iter()
        .take(SAMPLES_MAX)
        .map(|letter| format!("{letter:?}"))
        .collect();
    checks.add(
        "cluster: no dead letter is left parked",
        parked.is_empty(),
        format!("{} parked; {}", parked.len(), samples.join("; ")),
    );
    Ok(())
}

/// What the API confirmed is what the stores hold.
pub(crate) async fn client_checks(
    ledger: &Ledger,
    channel: &Channel,
    shared: &Shared,
    checks: &mut Checks,
) -> Result<(), TortureError> {
    let parse = |ids: &[String]| -> Vec<TransferId> {
        ids.iter()
            .filter_map(|id| TransferId::parse(id).ok())
            .collect()
    };
    let ledger_ids = parse(&shared.confirmed.ledger.lock().await);
    let mut found = 0;
    for page in ledger_ids.chunks(ledger.config().lookup_ids_max) {
        found += ledger.lookup_transfers(page).await?.len();
    }
    checks.add(
        "cluster: every ledger transfer the API confirmed is in the core, once",
        found == ledger_ids.len(),
        format!("{found} of {} found", ledger_ids.len()),
    );
    let channel_ids = parse(&shared.confirmed.channel.lock().await);
    let mut wrong = Vec::new();
    let (mut succeeded, mut failed) = (0, 0);
    for id in &channel_ids {
        let state = channel.transfers().get(*id).await?.map(|t| t.state);
        let in_core = !ledger.lookup_transfers(&[*id]).await?.is_empty();
        match state {
            Some(TransferState::Succeeded) if in_core => succeeded += 1,
            Some(TransferState::Failed) if !in_core => failed += 1,
            other if wrong.len() < SAMPLES_MAX => {
                wrong.push(format!("{id}: channel {other:?}, in core {in_core}"))
            }
            _ => {}
        }
    }
    checks.add(
        "cluster: every channel transfer is final; succeeded exactly when the core has it",
        wrong.is_empty(),
        format!(
            "{} transfers: {succeeded} succeeded, {failed} failed; {}",
            channel_ids.len(),
            wrong.join("; ")
        ),
    );
    Ok(())
}
