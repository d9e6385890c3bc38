//! One helper that starts a ledger on a fresh database of either backend, with a
//! test clock, so each test states only what is special about it.
#![allow(dead_code)]

use std::sync::Arc;

use ledger::{AccountFlags, Ledger, LedgerConfig, NewAccount, TransferRequest, TransferResult};
use money::{AccountId, Krw, TestClock, Timestamp, TransferId};
use store::testing::TestDb;

pub const START: Timestamp = Timestamp::from_unix_ms(1_790_000_000_000);

pub struct Ctx {
    pub db: TestDb,
    pub ledger: Ledger,
    pub clock: TestClock,
}

impl Ctx {
    pub async fn sqlite() -> Ctx {
        Ctx::on(store::testing::sqlite().await, LedgerConfig::default()).await
    }

    pub async fn postgres() -> Option<Ctx> {
        Some(Ctx::on(store::testing::postgres().await?, LedgerConfig::default()).await)
    }

    pub async fn on(db: TestDb, config: LedgerConfig) -> Ctx {
        let clock = TestClock::at(START);
        let ledger = Ledger::open(db.store.clone(), Arc::new(clock.clone()), config)
            .await
            .expect("the ledger opens");
        Ctx { db, ledger, clock }
    }

    pub fn now(&self) -> Timestamp {
        money::Clock::now(&self.clock)
    }

    /// Opens an account with the given flags and returns its id.
    pub async fn account(&self, flags: AccountFlags) -> AccountId {
        let id = account_id();
        let results = self
            .ledger
            .create_accounts(&[NewAccount::new(id, 1, flags).unwrap()])
            .await
            .unwrap();
        assert_eq!(results, vec![ledger::CreateAccountResult::Ok]);
        id
    }

    /// An account that may never go below zero.
    pub async fn customer(&self) -> AccountId {
        self.account(AccountFlags {
            debits_must_not_exceed_credits: true,
            ..AccountFlags::default()
        })
        .await
    }

    pub async fn plain(&self) -> AccountId {
        self.account(AccountFlags::default()).await
    }

    pub async fn move_money(
        &self,
        debit: AccountId,
        credit: AccountId,
        amount: i64,
    ) -> TransferResult {
        let request =
            TransferRequest::single(transfer_id(), debit, credit, Krw::new(amount), self.now())
                .unwrap();
        self.ledger.transfer(request).await.unwrap()
    }

    pub async fn balance(&self, id: AccountId) -> ledger::Account {
        self.ledger
            .lookup_accounts(&[id])
            .await
            .unwrap()
            .pop()
            .expect("account exists")
    }

    /// Asserts every ledger invariant over the whole database.
    pub async fn assert_invariants(&self) {
        let totals = self.ledger.totals().await.unwrap();
        for (name, holds) in totals.invariants() {
            assert!(holds, "invariant broken: {name}: {totals:?}");
        }
    }
}

pub fn account_id() -> AccountId {
    AccountId::from_uuid(uuid::Uuid::now_v7()).unwrap()
}

pub fn transfer_id() -> TransferId {
    TransferId::from_uuid(uuid::Uuid::now_v7()).unwrap()
}

/// Runs one async scenario against SQLite and against PostgreSQL, as two tests
/// named `<scenario>::sqlite` and `<scenario>::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(super::common::Ctx::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(ctx) = super::common::Ctx::postgres().await {
                    super::$scenario(ctx).await;
                }
            }
        }
    )*};
}
