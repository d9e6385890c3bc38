//! The demo's channel phase: customers' transfers go through the channel layer
//! (stored before they are sent, one in flight per user) to a core that loses
//! answers — some after it committed, some before the request ever reached it.
//! The reconciler settles every `unknown` transfer once the late window has
//! closed; the history read model is fed by the ledger's entry events and must
//! equal the core's entries.
//!
//! The phase opens its own handle on the core with a short late window (3 s) so
//! that waiting the window out is part of the demo rather than a minute of idling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use channel::faults::{Fault, FaultyCore};
use channel::{
    Channel, ChannelConfig, CoreClient, InProcessCore, NewTransfer, TransferState, UserId,
};
use ledger::{Ledger, LedgerConfig};
use money::{AccountId, Clock, Krw, TransferId};
use rand::{Rng, SeedableRng};
use store::Store;

use super::demo_events::{Backbone, Transport, quick_retry, wait_until};
use super::demo_report::{Check, Part};
use crate::progress;
use crate::scratch::ScratchDb;

const LATE_WINDOW_MS: i64 = 3_000;
const LATE_MARGIN_MS: i64 = 1_000;
/// The longest the demo waits for the read model to catch up with the core.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(300);
/// Accounts whose read model is compared entry by entry with the core.
const COMPARED_ACCOUNTS: usize = 50;

pub struct ChannelParams<'a> {
    pub core_store: &'a Store,
    /// Where the channel's own tables go (None: a scratch SQLite file).
    pub database_url: Option<&'a str>,
    pub transport: &'a Transport,
    pub customers: &'a [AccountId],
    pub transfers: usize,
    pub seed: u64,
}

/// The channel the phase ran, kept open for `--serve`.
pub struct ChannelLive {
    pub channel: Channel,
    pub db: ScratchDb,
}

pub async fn run(
    params: ChannelParams<'_>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Part, Vec<Check>, ChannelLive)> {
    let ChannelParams {
        core_store,
        database_url,
        transport,
        customers,
        transfers,
        seed,
    } = params;
    let phase = Instant::now();
    let core_ledger = Ledger::open(
        core_store.clone(),
        clock.clone(),
        LedgerConfig {
            late_window_ms: LATE_WINDOW_MS,
            ..LedgerConfig::default()
        },
    )
    .await?;
    let inner: Arc<dyn CoreClient> = Arc::new(InProcessCore::new(core_ledger.clone()));
    let faulty = Arc::new(FaultyCore::new(inner));
    let channel_db = ScratchDb::create(database_url, "demo_channel").await?;
    let config = ChannelConfig {
        late_window_ms: LATE_WINDOW_MS,
        late_margin_ms: LATE_MARGIN_MS,
        stale_after_ms: LATE_WINDOW_MS,
        ..ChannelConfig::default()
    };
    let channel = Channel::open(
        channel_db.store.clone(),
        faulty.clone(),
        clock.clone(),
        config,
    )
    .await?;

    // Customers send money; one call in ten loses its answer after the core
    // committed, one in ten never reaches the core.
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ 0xc4a7);
    let bar = progress::bar(transfers as u64, "channel transfers");
    let (mut lost_after, mut lost_before, mut in_progress) = (0, 0, 0);
    let mut ids = Vec::with_capacity(transfers);
    for index in 0..transfers {
        let from = rng.random_range(0..customers.len());
        let mut to = rng.random_range(0..customers.len());
        if to == from {
            to = (to + 1) % customers.len();
        }
        let user = UserId::from_uuid(customers[from].as_uuid())?;
        let id =
            TransferId::from_u128((u128::from(seed) << 96) | 0xc_0000_0000 | (index as u128 + 1))?;
        let new = NewTransfer::new(
            id,
            user,
            customers[from],
            customers[to],
            Krw::new(rng.random_range(100..=5_000)),
        )?;
        match rng.random_range(0..10) {
            0 => {
                faulty.push(Fault::TimeoutAfterCommit).await;
                lost_after += 1;
            }
            1 => {
                faulty.push(Fault::TimeoutBeforeCommit).await;
                lost_before += 1;
            }
            _ => {}
        }
        match channel.transfers().submit(new).await {
            Ok(_) => ids.push(id),
            // The user already has a transfer in flight (an unknown one): the
            // channel refuses a second until the first is settled.
            Err(error) if error.code() == "transfer_in_progress" => in_progress += 1,
            Err(error) => return Err(error.into()),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let unknown_before = count_in(&channel, &ids, TransferState::Unknown).await?;

    // The reconciler: answers for what the core committed at once; for what never
    // reached it, only after the late window has closed.
    let first = channel.reconciler().run_once().await?;
    tokio::time::sleep(Duration::from_millis(
        (LATE_WINDOW_MS + LATE_MARGIN_MS + 200) as u64,
    ))
    .await;
    let second = channel.reconciler().run_once().await?;
    let unknown_after = count_in(&channel, &ids, TransferState::Unknown).await?
        + count_in(&channel, &ids, TransferState::Sent).await?
        + count_in(&channel, &ids, TransferState::Requested).await?;
    let mut agree = true;
    for id in &ids {
        let Some(transfer) = channel.transfers().get(*id).await? else {
            agree = false;
            continue;
        };
        let in_core = core_ledger.lookup_transfers(&[*id]).await?.len() == 1;
        agree &= (transfer.state == TransferState::Succeeded) == in_core;
    }
    super::demo_report::note(&format!(
        "  channel: {} transfers ({lost_after} answers lost after commit, {lost_before} before; \
         {in_progress} refused while the user had one in flight), {unknown_before} unknown → \
         reconciler settled {} at once and {} after the late window",
        ids.len(),
        first.succeeded + first.failed,
        second.succeeded + second.failed,
    ));

    // The history read model, fed by the ledger's entry events.
    let history = channel.history();
    let mut backbone = Backbone::start(transport, core_store, clock.clone(), "ledger").await?;
    backbone
        .spawn(Arc::new(history.consumer()), quick_retry(20))
        .await?;
    let compared: Vec<AccountId> = customers.iter().take(COMPARED_ACCOUNTS).copied().collect();
    let bar = progress::bar(compared.len() as u64, "history read model");
    wait_until(
        "the history read model catches up",
        CATCH_UP_TIMEOUT,
        || async {
            let accounts = core_ledger.lookup_accounts(&compared).await?;
            let mut caught_up = 0;
            for account in &accounts {
                let page = history.history(account.id, None, 1).await?;
                if page.entries.first().map(|e| e.seq) == Some(account.seq) {
                    caught_up += 1;
                }
            }
            bar.set_position(caught_up);
            Ok(caught_up as usize == compared.len())
        },
    )
    .await?;
    backbone.stop().await?;
    bar.finish_and_clear();
    let mut history_matches = true;
    let mut entries_compared = 0usize;
    for account in &compared {
        let core = core_ledger.entries(*account, 1, usize::MAX).await?;
        let mut shown = Vec::new();
        let mut before = None;
        loop {
            let page = history.history(*account, before, 100).await?;
            shown.extend(page.entries.iter().copied());
            before = page.next_before_seq;
            if before.is_none() || page.entries.is_empty() {
                break;
            }
        }
        shown.sort_by_key(|e| e.seq);
        let account_seq = core_ledger
            .lookup_accounts(&[*account])
            .await?
            .pop()
            .map(|a| a.seq)
            .unwrap_or(0);
        entries_compared += shown.len();
        history_matches &= shown == core && shown.len() as i64 == account_seq;
    }
    let succeeded = count_in(&channel, &ids, TransferState::Succeeded).await?;
    let failed = count_in(&channel, &ids, TransferState::Failed).await?;
    super::demo_report::note(&format!(
        "  history read model caught up; {COMPARED_ACCOUNTS} accounts compared with the core in {:.2}s",
        phase.elapsed().as_secs_f64()
    ));
    let group = "channel (DESIGN: a failed transfer never appears in the core; none left unknown)";
    let checks = vec![
        Check::new(
            group,
            "after the reconciler no channel transfer is left unknown past the late window",
            unknown_after == 0,
            format!("{unknown_after} still requested, sent or unknown"),
        ),
        Check::new(
            group,
            "a channel transfer succeeded exactly when the core applied it; failed ones never appear",
            agree,
            "the channel's state and the core's lookup disagree for some transfer",
        ),
        Check::new(
            group,
            "the history read model equals the core's entries",
            history_matches,
            format!("{entries_compared} entries of {COMPARED_ACCOUNTS} accounts compared"),
        ),
    ];
    let part = Part::new("channel transfers", phase.elapsed().as_secs_f64())
        .count("transfers accepted by the channel", ids.len())
        .count("refused while the user had one in flight", in_progress)
        .count("unknown after the core lost the answer", unknown_before)
        .count(
            "settled by the reconciler at once",
            first.succeeded + first.failed,
        )
        .count(
            "settled by the reconciler after the late window",
            second.succeeded + second.failed,
        )
        .count("succeeded", succeeded)
        .count("failed (never in the core)", failed)
        .count("history entries compared with the core", entries_compared);
    Ok((
        part,
        checks,
        ChannelLive {
            channel,
            db: channel_db,
        },
    ))
}

async fn count_in(
    channel: &Channel,
    ids: &[TransferId],
    state: TransferState,
) -> anyhow::Result<usize> {
    let mut count = 0;
    for id in ids {
        if channel
            .transfers()
            .get(*id)
            .await?
            .is_some_and(|t| t.state == state)
        {
            count += 1;
        }
    }
    Ok(count)
}
