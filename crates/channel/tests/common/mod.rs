//! One helper that starts a whole channel system per test: a core ledger on its own
//! fresh database, the channel on another fresh database (so core and channel never
//! share tables), a fault-injecting core client between them and one test clock.
#![allow(dead_code)]

use std::sync::Arc;

use channel::faults::FaultyCore;
use channel::{Channel, ChannelConfig, CoreClient, InProcessCore, NewTransfer, UserId};
use ledger::{AccountFlags, Entry, Ledger, LedgerConfig, NewAccount, TransferRequest};
use money::{AccountId, Krw, TestClock, Timestamp, TransferId};
use store::Store;
use store::testing::TestDb;

pub const START: Timestamp = Timestamp::from_unix_ms(1_790_000_000_000);

pub struct Sys {
    pub core_db: TestDb,
    pub channel_db: TestDb,
    pub ledger: Ledger,
    pub clock: TestClock,
    pub faulty: Arc<FaultyCore>,
    pub channel: Channel,
    pub config: ChannelConfig,
    /// A plain account money comes from.
    pub bank: AccountId,
}

pub fn test_config() -> ChannelConfig {
    ChannelConfig {
        core_call_timeout_ms: 5_000,
        stale_after_ms: 10_000,
        late_margin_ms: 5_000,
        ..ChannelConfig::default()
    }
}

impl Sys {
    pub async fn sqlite() -> Sys {
        Sys::on(
            store::testing::sqlite().await,
            store::testing::sqlite().await,
        )
        .await
    }

    pub async fn postgres() -> Option<Sys> {
        let core_db = store::testing::postgres().await?;
        let channel_db = store::testing::postgres().await?;
        Some(Sys::on(core_db, channel_db).await)
    }

    async fn on(core_db: TestDb, channel_db: TestDb) -> Sys {
        let clock = TestClock::at(START);
        let ledger = Ledger::open(
            core_db.store.clone(),
            Arc::new(clock.clone()),
            LedgerConfig::default(),
        )
        .await
        .expect("the ledger opens");
        let faulty = Arc::new(FaultyCore::new(Arc::new(InProcessCore::new(
            ledger.clone(),
        ))));
        let config = test_config();
        let channel = Channel::open(
            channel_db.store.clone(),
            faulty.clone(),
            Arc::new(clock.clone()),
            config.clone(),
        )
        .await
        .expect("the channel opens");
        let bank = account_id();
        ledger
            .create_accounts(&[NewAccount::new(bank, 1, AccountFlags::default()).unwrap()])
            .await
            .unwrap();
        Sys {
            core_db,
            channel_db,
            ledger,
            clock,
            faulty,
            channel,
            config,
            bank,
        }
    }

    /// A second channel process on the same channel database and the same core:
    /// a fresh connection pool, fresh components, nothing shared in memory.
    pub async fn another_process(&self, core: Arc<dyn CoreClient>) -> Channel {
        self.another_process_with(core, self.config.clone()).await
    }

    pub async fn another_process_with(
        &self,
        core: Arc<dyn CoreClient>,
        config: ChannelConfig,
    ) -> Channel {
        let store = Store::connect(&self.channel_db.url).await.unwrap();
        Channel::open(store, core, Arc::new(self.clock.clone()), config)
            .await
            .unwrap()
    }

    pub fn now(&self) -> Timestamp {
        money::Clock::now(&self.clock)
    }

    /// A customer account (never below zero) holding `balance` won.
    pub async fn customer(&self, balance: i64) -> AccountId {
        let id = account_id();
        let flags = AccountFlags {
            debits_must_not_exceed_credits: true,
            ..AccountFlags::default()
        };
        self.ledger
            .create_accounts(&[NewAccount::new(id, 2, flags).unwrap()])
            .await
            .unwrap();
        if balance > 0 {
            self.core_move(self.bank, id, balance).await;
        }
        id
    }

    /// Moves money inside the core, as another channel or a batch job would.
    pub async fn core_move(&self, debit: AccountId, credit: AccountId, amount: i64) {
        let request =
            TransferRequest::single(transfer_id(), debit, credit, Krw::new(amount), self.now())
                .unwrap();
        let result = self.ledger.transfer(request).await.unwrap();
        assert!(result.is_applied(), "{result:?}");
    }

    pub async fn core_account(&self, id: AccountId) -> ledger::Account {
        self.ledger
            .lookup_accounts(&[id])
            .await
            .unwrap()
            .pop()
            .unwrap()
    }

    pub async fn core_entries(&self, id: AccountId) -> Vec<Entry> {
        self.ledger.entries(id, 1, 1_000).await.unwrap()
    }

    /// The whole read model of an account, oldest first, read page by page.
    pub async fn model_entries(&self, id: AccountId) -> Vec<Entry> {
        let mut all = Vec::new();
        let mut before = None;
        loop {
            let page = self
                .channel
                .history()
                .history(id, before, 1_000)
                .await
                .unwrap();
            all.extend(page.entries);
            match page.next_before_seq {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        all.reverse();
        all
    }
}

pub fn account_id() -> AccountId {
    AccountId::from_uuid(uuid::Uuid::now_v7()).unwrap()
}

pub fn transfer_id() -> TransferId {
    TransferId::from_uuid(uuid::Uuid::now_v7()).unwrap()
}

pub fn user_id() -> UserId {
    UserId::from_uuid(uuid::Uuid::now_v7()).unwrap()
}

pub fn new_transfer(user: UserId, debit: AccountId, credit: AccountId, amount: i64) -> NewTransfer {
    NewTransfer::new(transfer_id(), user, debit, credit, Krw::new(amount)).unwrap()
}

/// Runs one async scenario against SQLite and against PostgreSQL, as two tests
/// named `<scenario>::sqlite` and `<scenario>::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(super::common::Sys::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(sys) = super::common::Sys::postgres().await {
                    super::$scenario(sys).await;
                }
            }
        }
    )*};
}
