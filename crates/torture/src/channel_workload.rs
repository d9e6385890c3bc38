//! The channel workload. Users send each other money through the channel's
//! transfer service, in front of a core that loses answers (timeouts before and
//! after commit, slow calls, requests that straggle in the network and arrive
//! late). The child resumes by asking the channel which ids it already stored,
//! and runs the reconciler; the check compares every channel transfer with the
//! core, and every balance with the succeeded transfers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use channel::faults::{Fault, FaultyCore};
use channel::{
    Channel, ChannelConfig, ChannelError, InProcessCore, NewTransfer, TransferState, UserId,
};
use ledger::{AccountFlags, Ledger, LedgerConfig, NewAccount, TransferRequest};
use money::{AccountId, Clock, Krw, SystemClock, TransferId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::TortureError;
use crate::check::{Checks, ledger_invariants};
use crate::child::{ChildArgs, Out, die_at};

const USERS: u64 = 16;
const FUNDING_KRW: i64 = 2_000_000;
/// The core's late window, short so that a run settles its unknowns in seconds.
const LATE_WINDOW_MS: i64 = 3_000;
const NAMESPACE: Uuid = Uuid::from_u128(0x5e77_1e00_7047_4000_8000_0000_0000_0011);
/// Rounds the child waits for its deferred and in-flight transfers at the end.
const SETTLE_ROUNDS_MAX: usize = 200;

fn ledger_config() -> LedgerConfig {
    LedgerConfig {
        late_window_ms: LATE_WINDOW_MS,
        ..LedgerConfig::default()
    }
}

fn channel_config() -> ChannelConfig {
    ChannelConfig {
        core_call_timeout_ms: 2_000,
        late_window_ms: LATE_WINDOW_MS,
        late_margin_ms: 1_500,
        stale_after_ms: 1_000,
        reconcile_interval_ms: 200,
        ..ChannelConfig::default()
    }
}

fn uuid(seed: u64, what: &str, n: u64) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("{seed}/{what}/{n}").as_bytes())
}

fn house(seed: u64) -> Result<AccountId, TortureError> {
    AccountId::from_uuid(uuid(seed, "house", 0)).map_err(|e| TortureError::Invalid(e.to_string()))
}

fn account(seed: u64, user: u64) -> Result<AccountId, TortureError> {
    AccountId::from_uuid(uuid(seed, "account", user))
        .map_err(|e| TortureError::Invalid(e.to_string()))
}

fn transfer_id(seed: u64, n: u64) -> Result<TransferId, TortureError> {
    TransferId::from_uuid(uuid(seed, "transfer", n))
        .map_err(|e| TortureError::Invalid(e.to_string()))
}

/// Transfer `n`: who pays whom how much. The same for every process of a run.
fn planned(seed: u64, n: u64) -> Result<NewTransfer, TortureError> {
    let mut rng = SmallRng::seed_from_u64(seed ^ n.rotate_left(20));
    let from = rng.random_range(0..USERS);
    let to = (from + rng.random_range(1..USERS)) % USERS;
    let amount = rng.random_range(1_000..400_000) / 10 * 10;
    let user = UserId::from_uuid(uuid(seed, "user", from))
        .map_err(|e| TortureError::Invalid(e.to_string()))?;
    NewTransfer::new(
        transfer_id(seed, n)?,
        user,
        account(seed, from)?,
        account(seed, to)?,
        Krw::new(amount),
    )
    .map_err(|e| TortureError::Invalid(e.to_string()))
}

async fn open(
    url: &str,
    core: impl FnOnce(Ledger) -> Arc<dyn channel::CoreClient>,
) -> Result<(Ledger, Channel), TortureError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = store::Store::connect(url).await?;
    let ledger = Ledger::open(store.clone(), clock.clone(), ledger_config()).await?;
    let channel = Channel::open(store, core(ledger.clone()), clock, channel_config()).await?;
    Ok((ledger, channel))
}

/// The parent's side: accounts and funding, and the check.
pub(crate) struct ChannelParent {
    ledger: Ledger,
    channel: Channel,
    seed: u64,
    items: u64,
}

impl ChannelParent {
    pub async fn open(url: &str, seed: u64, items: u64) -> Result<ChannelParent, TortureError> {
        let (ledger, channel) = open(url, |l| Arc::new(InProcessCore::new(l))).await?;
        let customer = AccountFlags {
            debits_must_not_exceed_credits: true,
            ..AccountFlags::default()
        };
        let invalid = |e: ledger::InvalidAccount| TortureError::Invalid(e.to_string());
        let mut accounts =
            vec![NewAccount::new(house(seed)?, 1, AccountFlags::default()).map_err(invalid)?];
        for user in 0..USERS {
            accounts.push(NewAccount::new(account(seed, user)?, 2, customer).map_err(invalid)?);
        }
        ledger.create_accounts(&accounts).await?;
        for user in 0..USERS {
            let funding = TransferRequest::single(
                TransferId::from_uuid(uuid(seed, "funding", user))
                    .map_err(|e| TortureError::Invalid(e.to_string()))?,
                house(seed)?,
                account(seed, user)?,
                Krw::new(FUNDING_KRW),
                ledger.clock().now(),
            )
            .map_err(|e| TortureError::Invalid(e.to_string()))?;
            let result = ledger.transfer(funding).await?;
            if !result.is_applied() {
                return Err(TortureError::Invalid(format!(
                    "funding refused: {result:?}"
                )));
            }
        }
        Ok(ChannelParent {
            ledger,
            channel,
            seed,
            items,
        })
    }

    pub async fn check(&self) -> Result<Checks, TortureError> {
        let mut checks = Checks::default();
        let mut missing = Vec::new();
        let mut unsettled = Vec::new();
        let mut succeeded: BTreeMap<TransferId, NewTransfer> = BTreeMap::new();
        let mut failed = BTreeSet::new();
        for n in 0..self.items {
            let planned = planned(self.seed, n)?;
            match self.channel.transfers().get(planned.id()).await? {
                None => missing.push(n.to_string()),
                Some(t) if t.state == TransferState::Succeeded => {
                    succeeded.insert(t.id, planned);
                }
                Some(t) if t.state == TransferState::Failed => {
                    failed.insert(t.id);
                }
                Some(t) => unsettled.push(format!("{}: {}", t.id, t.state)),
            }
        }
        let ids: Vec<TransferId> = (0..self.items)
            .map(|n| transfer_id(self.seed, n))
            .collect::<Result<_, _>>()?;
        let mut in_core = BTreeMap::new();
        for page in ids.chunks(self.ledger.config().lookup_ids_max) {
            for transfer in self.ledger.lookup_transfers(page).await? {
                in_core.insert(transfer.id, transfer);
            }
        }
        let list = |v: &[String]| v.iter().take(10).cloned().collect::<Vec<_>>().join("; ");
        checks.add(
            "channel: every planned transfer was stored (none lost)",
            missing.is_empty(),
            format!("{} planned; missing {}", self.items, list(&missing)),
        );
        checks.add(
            "channel: no transfer left unknown, requested or sent after reconcile",
            unsettled.is_empty(),
            format!(
                "{} succeeded, {} failed; {}",
                succeeded.len(),
                failed.len(),
                list(&unsettled)
            ),
        );
        let failed_in_core: Vec<String> = failed
            .iter()
            .filter(|id| in_core.contains_key(*id))
            .map(|id| id.to_string())
            .collect();
        checks.add(
            "channel: a failed transfer never appears in the core",
            failed_in_core.is_empty(),
            list(&failed_in_core),
        );
        let mut disagreeing = Vec::new();
        for (id, planned) in &succeeded {
            match in_core.get(id) {
                None => disagreeing.push(format!("{id}: succeeded, not in the core")),
                Some(t) if t.amount != planned.amount() => {
                    disagreeing.push(format!("{id}: amount {} in the core", t.amount.get()))
                }
                Some(_) => {}
            }
        }
        let extra = in_core.len().saturating_sub(succeeded.len());
        checks.add(
            "channel: succeeded transfers are exactly the core's, each once",
            disagreeing.is_empty() && extra == 0,
            format!("{} in the core; {}", in_core.len(), list(&disagreeing)),
        );
        // Balances: funding plus what succeeded, to the won.
        let mut expected: BTreeMap<AccountId, i64> = BTreeMap::new();
        for user in 0..USERS {
            expected.insert(account(self.seed, user)?, FUNDING_KRW);
        }
        for planned in succeeded.values() {
            *expected.entry(planned.debit()).or_default() -= planned.amount().get();
            *expected.entry(planned.credit()).or_default() += planned.amount().get();
        }
        let ids: Vec<AccountId> = expected.keys().copied().collect();
        let mut wrong = Vec::new();
        for account in self.ledger.lookup_accounts(&ids).await? {
            let balance = account.credits_posted.get() - account.debits_posted.get();
            let want = expected.get(&account.id).copied().unwrap_or_default();
            if balance != want {
                wrong.push(format!("{}: {balance}, expected {want}", account.id));
            }
        }
        checks.add(
            "channel: every balance is funding plus succeeded transfers (no won invented)",
            wrong.is_empty(),
            list(&wrong),
        );
        ledger_invariants(&self.ledger, &mut checks).await?;
        Ok(checks)
    }
}

/// The child's side: submit what is not stored yet, reconcile, settle.
pub(crate) async fn run_child(args: &ChildArgs, out: &mut Out) -> Result<(), TortureError> {
    let faulty_slot: std::sync::Mutex<Option<Arc<FaultyCore>>> = std::sync::Mutex::new(None);
    let (_ledger, channel) = open(&args.database_url, |ledger| {
        let faulty = Arc::new(FaultyCore::new(Arc::new(InProcessCore::new(ledger))));
        if let Ok(mut slot) = faulty_slot.lock() {
            *slot = Some(faulty.clone());
        }
        faulty
    })
    .await?;
    let faulty = faulty_slot
        .lock()
        .ok()
        .and_then(|mut slot| slot.take())
        .ok_or_else(|| TortureError::Child("the faulty core was not built".into()))?;
    channel.reconciler().check_core().await?;
    if args.failpoint_after_calls.is_some() {
        // Fail point `after-core-commit-before-record`: the core applied the
        // call; the process dies before the channel records the answer.
        let watcher = faulty.clone();
        tokio::spawn(async move {
            watcher.committed().await;
            die_at("after-core-commit-before-record");
        });
    }
    out.line("ready")?;
    let mut rng = SmallRng::seed_from_u64(args.seed ^ args.cycle.rotate_left(32) ^ 0xc4a7);
    let mut deferred = Vec::new();
    let mut calls = 0u64;
    for n in 0..args.items {
        if channel
            .transfers()
            .get(transfer_id(args.seed, n)?)
            .await?
            .is_some()
        {
            continue;
        }
        calls += 1;
        if args.failpoint_after_calls == Some(calls) {
            faulty.push(Fault::HangAfterCommit).await;
        } else if rng.random_range(0..100) < args.fault_rate_pct {
            let fault = match rng.random_range(0..4) {
                0 => Fault::TimeoutBeforeCommit,
                1 => Fault::TimeoutAfterCommit,
                2 => Fault::Delay {
                    delay_ms: rng.random_range(1..50),
                },
                _ => Fault::Straggle,
            };
            out.line(&format!("fault {fault:?}"))?;
            faulty.push(fault).await;
        }
        match channel.transfers().submit(planned(args.seed, n)?).await {
            Ok(transfer) => out.op("submit", &transfer.state.to_string())?,
            Err(ChannelError::TransferInProgress { .. }) => {
                deferred.push(n);
                out.op("submit", "in_progress")?;
            }
            Err(error) => return Err(error.into()),
        }
        if n % 8 == 7 {
            reconcile(&channel, out).await?;
        }
        if n % 16 == 15 {
            // Stragglers arrive late: some within the window, some after it.
            for (_, answer) in faulty.release_stragglers().await {
                out.op("straggler", if answer.is_ok() { "arrived" } else { "lost" })?;
            }
        }
    }
    for _ in 0..SETTLE_ROUNDS_MAX {
        for (_, answer) in faulty.release_stragglers().await {
            out.op("straggler", if answer.is_ok() { "arrived" } else { "lost" })?;
        }
        reconcile(&channel, out).await?;
        let mut still = Vec::new();
        for n in deferred.drain(..) {
            match channel.transfers().submit(planned(args.seed, n)?).await {
                Ok(transfer) => out.op("submit", &transfer.state.to_string())?,
                Err(ChannelError::TransferInProgress { .. }) => still.push(n),
                Err(error) => return Err(error.into()),
            }
        }
        deferred = still;
        if deferred.is_empty() && !in_flight(&channel, args).await? {
            out.line("done")?;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(TortureError::Child(format!(
        "channel: transfers still in flight after {SETTLE_ROUNDS_MAX} rounds"
    )))
}

async fn reconcile(channel: &Channel, out: &mut Out) -> Result<(), TortureError> {
    let report = channel.reconciler().run_once().await?;
    if report.examined > 0 {
        out.op("reconcile", &format!("examined={}", report.examined))?;
    }
    Ok(())
}

async fn in_flight(channel: &Channel, args: &ChildArgs) -> Result<bool, TortureError> {
    for n in 0..args.items {
        match channel.transfers().get(transfer_id(args.seed, n)?).await? {
            Some(t) if matches!(t.state, TransferState::Succeeded | TransferState::Failed) => {}
            _ => return Ok(true),
        }
    }
    Ok(false)
}
