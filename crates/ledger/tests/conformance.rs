//! The ledger's behaviour, specified once and run against both backends.

mod common;

use common::{Ctx, account_id, transfer_id};
use ledger::{
    AccountFlags, CreateAccountResult, NewAccount, PendingState, TransferOutcome, TransferRequest,
    TransferResult,
};
use money::{Krw, TransferId};

on_both_backends!(
    moving_money_updates_both_accounts_and_writes_one_entry_each,
    opening_an_account_twice_is_idempotent,
    a_customer_account_cannot_be_overdrawn_and_the_id_stays_failed,
    a_loan_account_cannot_be_credited_beyond_its_debits,
    resubmitting_an_id_moves_money_once_and_changed_fields_are_refused,
    holds_are_posted_in_full_in_part_or_voided,
    posting_a_voided_hold_is_rejected_and_writes_nothing,
    late_requests_are_rejected_recorded_and_never_applied,
    expired_holds_are_released_by_the_expiry_worker,
    a_failing_transfer_rolls_back_its_whole_linked_chain,
    unknown_accounts_are_rejected_and_nothing_is_written,
    every_entry_is_announced_in_the_outbox,
    resubmitting_10000_transfers_from_8_tasks_moves_money_exactly_once,
    batched_results_equal_one_by_one_results,
);

async fn moving_money_updates_both_accounts_and_writes_one_entry_each(ctx: Ctx) {
    let bank = ctx.plain().await;
    let alice = ctx.customer().await;
    assert_eq!(
        ctx.move_money(bank, alice, 10_000).await,
        TransferResult::Ok
    );
    assert_eq!(ctx.move_money(alice, bank, 2_500).await, TransferResult::Ok);
    let account = ctx.balance(alice).await;
    assert_eq!(account.credit_balance(), Some(Krw::new(7_500)));
    assert_eq!(account.seq, 2);
    let entries = ctx.ledger.entries(alice, 1, 100).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(entries[0].credits_posted, Krw::new(10_000));
    assert_eq!(entries[1].debits_posted, Krw::new(2_500));
    // A seq range: from 2 on.
    let tail = ctx.ledger.entries(alice, 2, 100).await.unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].seq, 2);
    ctx.assert_invariants().await;
}

async fn opening_an_account_twice_is_idempotent(ctx: Ctx) {
    let id = account_id();
    let new = NewAccount::new(id, 7, AccountFlags::default()).unwrap();
    let changed = NewAccount::new(id, 8, AccountFlags::default()).unwrap();
    let results = ctx
        .ledger
        .create_accounts(&[new, new, changed])
        .await
        .unwrap();
    assert_eq!(
        results,
        vec![
            CreateAccountResult::Ok,
            CreateAccountResult::Exists,
            CreateAccountResult::ExistsWithDifferentFields
        ]
    );
    assert_eq!(
        ctx.ledger.create_accounts(&[new]).await.unwrap(),
        vec![CreateAccountResult::Exists]
    );
    assert_eq!(ctx.balance(id).await.code, 7);
}

async fn a_customer_account_cannot_be_overdrawn_and_the_id_stays_failed(ctx: Ctx) {
    let bank = ctx.plain().await;
    let alice = ctx.customer().await;
    ctx.move_money(bank, alice, 100).await;
    let overdraft =
        TransferRequest::single(transfer_id(), alice, bank, Krw::new(101), ctx.now()).unwrap();
    assert_eq!(
        ctx.ledger.transfer(overdraft).await.unwrap(),
        TransferResult::ExceedsCredits
    );
    // Funding the account later does not revive the failed id.
    ctx.move_money(bank, alice, 1_000).await;
    assert_eq!(
        ctx.ledger.transfer(overdraft).await.unwrap(),
        TransferResult::ExceedsCredits
    );
    assert_eq!(
        ctx.ledger.outcome(overdraft.id()).await.unwrap(),
        TransferOutcome::Failed {
            result: TransferResult::ExceedsCredits
        }
    );
    assert!(
        ctx.ledger
            .lookup_transfers(&[overdraft.id()])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ctx.balance(alice).await.credit_balance(),
        Some(Krw::new(1_100))
    );
    // Pending debits count against the limit too.
    let hold = TransferRequest::pending(transfer_id(), alice, bank, Krw::new(1_000), 0, ctx.now())
        .unwrap();
    assert_eq!(ctx.ledger.transfer(hold).await.unwrap(), TransferResult::Ok);
    assert_eq!(
        ctx.move_money(alice, bank, 101).await,
        TransferResult::ExceedsCredits
    );
    assert_eq!(ctx.move_money(alice, bank, 100).await, TransferResult::Ok);
    ctx.assert_invariants().await;
}

async fn a_loan_account_cannot_be_credited_beyond_its_debits(ctx: Ctx) {
    let cash = ctx.plain().await;
    let loan = ctx
        .account(AccountFlags {
            credits_must_not_exceed_debits: true,
            ..AccountFlags::default()
        })
        .await;
    assert_eq!(ctx.move_money(loan, cash, 5_000).await, TransferResult::Ok);
    assert_eq!(
        ctx.move_money(cash, loan, 5_001).await,
        TransferResult::ExceedsDebits
    );
    assert_eq!(ctx.move_money(cash, loan, 5_000).await, TransferResult::Ok);
    ctx.assert_invariants().await;
}

async fn resubmitting_an_id_moves_money_once_and_changed_fields_are_refused(ctx: Ctx) {
    let bank = ctx.plain().await;
    let alice = ctx.customer().await;
    let request =
        TransferRequest::single(transfer_id(), bank, alice, Krw::new(500), ctx.now()).unwrap();
    let results = ctx.ledger.submit(vec![request, request]).await.unwrap();
    assert_eq!(results, vec![TransferResult::Ok, TransferResult::Exists]);
    assert_eq!(
        ctx.ledger.transfer(request).await.unwrap(),
        TransferResult::Exists
    );
    let changed =
        TransferRequest::single(request.id(), bank, alice, Krw::new(501), ctx.now()).unwrap();
    assert_eq!(
        ctx.ledger.transfer(changed).await.unwrap(),
        TransferResult::ExistsWithDifferentFields
    );
    let recoded = request.with_code(9);
    assert_eq!(
        ctx.ledger.transfer(recoded).await.unwrap(),
        TransferResult::ExistsWithDifferentFields
    );
    // A retry later (still inside the late window) is the same transfer.
    ctx.clock.advance_ms(30_000);
    let retried =
        TransferRequest::single(request.id(), bank, alice, Krw::new(500), ctx.now()).unwrap();
    assert_eq!(
        ctx.ledger.transfer(retried).await.unwrap(),
        TransferResult::Exists
    );
    assert_eq!(
        ctx.balance(alice).await.credit_balance(),
        Some(Krw::new(500))
    );
    ctx.assert_invariants().await;
}

async fn holds_are_posted_in_full_in_part_or_voided(ctx: Ctx) {
    let bank = ctx.plain().await;
    let alice = ctx.customer().await;
    let shop = ctx.plain().await;
    ctx.move_money(bank, alice, 10_000).await;
    let hold = |amount| {
        TransferRequest::pending(transfer_id(), alice, shop, Krw::new(amount), 0, ctx.now())
            .unwrap()
    };
    let (full, part, void) = (hold(1_000), hold(2_000), hold(3_000));
    let results = ctx.ledger.submit(vec![full, part, void]).await.unwrap();
    assert_eq!(results, vec![TransferResult::Ok; 3]);
    let account = ctx.balance(alice).await;
    assert_eq!(account.debits_pending, Krw::new(6_000));
    assert_eq!(account.available_credit_balance(), Some(Krw::new(4_000)));

    let now = ctx.now();
    let settle = vec![
        TransferRequest::post(transfer_id(), full.id(), None, now).unwrap(),
        TransferRequest::post(transfer_id(), part.id(), Some(Krw::new(1_500)), now).unwrap(),
        TransferRequest::void(transfer_id(), void.id(), now),
    ];
    assert_eq!(
        ctx.ledger.submit(settle).await.unwrap(),
        vec![TransferResult::Ok; 3]
    );
    let account = ctx.balance(alice).await;
    assert_eq!(account.debits_pending, Krw::ZERO);
    assert_eq!(account.debits_posted, Krw::new(2_500));
    assert_eq!(ctx.balance(shop).await.credits_posted, Krw::new(2_500));

    let states: Vec<_> = ctx
        .ledger
        .lookup_transfers(&[full.id(), part.id(), void.id()])
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.id, t.pending_state))
        .collect();
    assert!(states.contains(&(full.id(), Some(PendingState::Posted))));
    assert!(states.contains(&(part.id(), Some(PendingState::Posted))));
    assert!(states.contains(&(void.id(), Some(PendingState::Voided))));

    // Posting more than the hold is refused.
    let big = hold(100);
    ctx.ledger.transfer(big).await.unwrap();
    let over =
        TransferRequest::post(transfer_id(), big.id(), Some(Krw::new(101)), ctx.now()).unwrap();
    assert_eq!(
        ctx.ledger.transfer(over).await.unwrap(),
        TransferResult::ExceedsPendingTransferAmount
    );
    // A single transfer is not a hold.
    let plain =
        TransferRequest::single(transfer_id(), bank, alice, Krw::new(1), ctx.now()).unwrap();
    ctx.ledger.transfer(plain).await.unwrap();
    let wrong = TransferRequest::void(transfer_id(), plain.id(), ctx.now());
    assert_eq!(
        ctx.ledger.transfer(wrong).await.unwrap(),
        TransferResult::PendingTransferNotPending
    );
    ctx.assert_invariants().await;
}

async fn posting_a_voided_hold_is_rejected_and_writes_nothing(ctx: Ctx) {
    let bank = ctx.plain().await;
    let alice = ctx.customer().await;
    ctx.move_money(bank, alice, 1_000).await;
    let hold =
        TransferRequest::pending(transfer_id(), alice, bank, Krw::new(400), 0, ctx.now()).unwrap();
    ctx.ledger.transfer(hold).await.unwrap();
    ctx.ledger
        .transfer(TransferRequest::void(transfer_id(), hold.id(), ctx.now()))
        .await
        .unwrap();
    let before = ctx.balance(alice).await;
    let post = TransferRequest::post(transfer_id(), hold.id(), None, ctx.now()).unwrap();
    assert_eq!(
        ctx.ledger.transfer(post).await.unwrap(),
        TransferResult::PendingTransferAlreadyVoided
    );
    assert_eq!(ctx.balance(alice).await, before);
    assert_eq!(
        ctx.ledger.outcome(post.id()).await.unwrap(),
        TransferOutcome::NotFound
    );
    let missing = TransferRequest::post(transfer_id(), transfer_id(), None, ctx.now()).unwrap();
    assert_eq!(
        ctx.ledger.transfer(missing).await.unwrap(),
        TransferResult::PendingTransferNotFound
    );
    ctx.assert_invariants().await;
}

async fn late_requests_are_rejected_recorded_and_never_applied(ctx: Ctx) {
    let bank = ctx.plain().await;
    let alice = ctx.customer().await;
    let requested_at = ctx.now();
    let on_time =
        TransferRequest::single(transfer_id(), bank, alice, Krw::new(10), requested_at).unwrap();
    let late =
        TransferRequest::single(transfer_id(), bank, alice, Krw::new(20), requested_at).unwrap();
    // Exactly at the window's edge a request is still on time; one ms later it is late.
    ctx.clock.advance_ms(60_000);
    assert_eq!(
        ctx.ledger.transfer(on_time).await.unwrap(),
        TransferResult::Ok
    );
    ctx.clock.advance_ms(1);
    assert_eq!(
        ctx.ledger.transfer(late).await.unwrap(),
        TransferResult::Late
    );
    // A fresh retry of the late id stays failed: the reconciler that gave up on it
    // is never contradicted.
    let retry = TransferRequest::single(late.id(), bank, alice, Krw::new(20), ctx.now()).unwrap();
    assert_eq!(
        ctx.ledger.transfer(retry).await.unwrap(),
        TransferResult::Late
    );
    assert_eq!(
        ctx.ledger.outcome(late.id()).await.unwrap(),
        TransferOutcome::Failed {
            result: TransferResult::Late
        }
    );
    // A late duplicate of an applied transfer still reports that it exists.
    assert_eq!(
        ctx.ledger.transfer(on_time).await.unwrap(),
        TransferResult::Exists
    );
    assert_eq!(
        ctx.balance(alice).await.credit_balance(),
        Some(Krw::new(10))
    );
    ctx.assert_invariants().await;
}

async fn expired_holds_are_released_by_the_expiry_worker(ctx: Ctx) {
    let bank = ctx.plain().await;
    let alice = ctx.customer().await;
    ctx.move_money(bank, alice, 1_000).await;
    let short =
        TransferRequest::pending(transfer_id(), alice, bank, Krw::new(300), 5_000, ctx.now())
            .unwrap();
    let forever =
        TransferRequest::pending(transfer_id(), alice, bank, Krw::new(200), 0, ctx.now()).unwrap();
    ctx.ledger.submit(vec![short, forever]).await.unwrap();
    let worker = ledger::ExpiryWorker::new(ctx.ledger.clone(), 10);
    assert_eq!(worker.run_once().await.unwrap(), ledger::ExpiryStep::Idle);
    ctx.clock.advance_ms(5_000);
    // Due but not yet expired by the worker: a post is already refused.
    let post = TransferRequest::post(transfer_id(), short.id(), None, ctx.now()).unwrap();
    assert_eq!(
        ctx.ledger.transfer(post).await.unwrap(),
        TransferResult::PendingTransferExpired
    );
    assert_eq!(
        worker.run_once().await.unwrap(),
        ledger::ExpiryStep::Done(1)
    );
    assert_eq!(worker.run_once().await.unwrap(), ledger::ExpiryStep::Idle);
    let account = ctx.balance(alice).await;
    assert_eq!(account.debits_pending, Krw::new(200));
    assert_eq!(account.available_credit_balance(), Some(Krw::new(800)));
    let hold = ctx
        .ledger
        .lookup_transfers(&[short.id()])
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(hold.pending_state, Some(PendingState::Expired));
    let void = TransferRequest::void(transfer_id(), short.id(), ctx.now());
    assert_eq!(
        ctx.ledger.transfer(void).await.unwrap(),
        TransferResult::PendingTransferExpired
    );
    // The expiry is an entry like any other balance change.
    let entries = ctx.ledger.entries(alice, 1, 10).await.unwrap();
    assert_eq!(entries.last().unwrap().transfer_id, short.id());
    ctx.assert_invariants().await;
}

async fn a_failing_transfer_rolls_back_its_whole_linked_chain(ctx: Ctx) {
    let bank = ctx.plain().await;
    let alice = ctx.customer().await;
    let bob = ctx.customer().await;
    ctx.move_money(bank, alice, 100).await;
    let now = ctx.now();
    let first = TransferRequest::single(transfer_id(), alice, bob, Krw::new(60), now)
        .unwrap()
        .linked(true);
    let second = TransferRequest::single(transfer_id(), alice, bob, Krw::new(60), now).unwrap();
    let results = ctx.ledger.submit(vec![first, second]).await.unwrap();
    assert_eq!(
        results,
        vec![
            TransferResult::LinkedEventFailed,
            TransferResult::ExceedsCredits
        ]
    );
    assert_eq!(
        ctx.balance(alice).await.credit_balance(),
        Some(Krw::new(100))
    );
    assert_eq!(ctx.balance(alice).await.seq, 1);
    assert_eq!(
        ctx.ledger.outcome(first.id()).await.unwrap(),
        TransferOutcome::NotFound
    );

    // A chain that fits applies as a whole, next to an unrelated transfer.
    let a = TransferRequest::single(transfer_id(), alice, bob, Krw::new(30), now)
        .unwrap()
        .linked(true);
    let b = TransferRequest::single(transfer_id(), bob, bank, Krw::new(30), now).unwrap();
    let alone = TransferRequest::single(transfer_id(), bank, bob, Krw::new(5), now).unwrap();
    let results = ctx.ledger.submit(vec![a, b, alone]).await.unwrap();
    assert_eq!(results, vec![TransferResult::Ok; 3]);
    // Resubmitting the whole chain: every member exists.
    assert_eq!(
        ctx.ledger.submit(vec![a, b]).await.unwrap(),
        vec![TransferResult::Exists; 2]
    );

    // A chain without an end is refused whole.
    let open = TransferRequest::single(transfer_id(), bank, bob, Krw::new(1), now)
        .unwrap()
        .linked(true);
    assert_eq!(
        ctx.ledger.submit(vec![open]).await.unwrap(),
        vec![TransferResult::LinkedEventChainOpen]
    );
    assert_eq!(ctx.balance(bob).await.credit_balance(), Some(Krw::new(5)));
    ctx.assert_invariants().await;
}

async fn unknown_accounts_are_rejected_and_nothing_is_written(ctx: Ctx) {
    let bank = ctx.plain().await;
    let stranger = account_id();
    let request =
        TransferRequest::single(transfer_id(), bank, stranger, Krw::new(1), ctx.now()).unwrap();
    assert_eq!(
        ctx.ledger.transfer(request).await.unwrap(),
        TransferResult::CreditAccountNotFound
    );
    let request2 =
        TransferRequest::single(transfer_id(), stranger, bank, Krw::new(1), ctx.now()).unwrap();
    assert_eq!(
        ctx.ledger.transfer(request2).await.unwrap(),
        TransferResult::DebitAccountNotFound
    );
    assert_eq!(
        ctx.ledger.outcome(request.id()).await.unwrap(),
        TransferOutcome::NotFound
    );
    assert_eq!(ctx.balance(bank).await.seq, 0);
    let totals = ctx.ledger.totals().await.unwrap();
    assert_eq!(totals.debits_posted, 0);
}

async fn every_entry_is_announced_in_the_outbox(ctx: Ctx) {
    let bank = ctx.plain().await;
    let alice = ctx.customer().await;
    ctx.move_money(bank, alice, 10).await;
    ctx.move_money(alice, bank, 3).await;
    let count_sql = "SELECT COUNT(*) FROM outbox WHERE kind = 'ledger.entry'";
    let outbox: i64 = match &ctx.db.store {
        store::Store::Sqlite(pool) => sqlx::query_scalar(count_sql).fetch_one(pool).await.unwrap(),
        store::Store::Postgres(pool) => {
            sqlx::query_scalar(count_sql).fetch_one(pool).await.unwrap()
        }
    };
    assert_eq!(outbox, 4, "two transfers, two accounts each");
    let keyed_sql = format!("SELECT seq FROM outbox WHERE key = '{alice}' ORDER BY seq");
    let seqs: Vec<i64> = match &ctx.db.store {
        store::Store::Sqlite(pool) => sqlx::query_scalar(&keyed_sql)
            .fetch_all(pool)
            .await
            .unwrap(),
        store::Store::Postgres(pool) => sqlx::query_scalar(&keyed_sql)
            .fetch_all(pool)
            .await
            .unwrap(),
    };
    assert_eq!(seqs, vec![1, 2]);
}

async fn resubmitting_10000_transfers_from_8_tasks_moves_money_exactly_once(ctx: Ctx) {
    const ACCOUNTS: usize = 100;
    const TRANSFERS: usize = 10_000;
    let ids: Vec<_> = (0..ACCOUNTS).map(|_| account_id()).collect();
    let news: Vec<_> = ids
        .iter()
        .map(|id| NewAccount::new(*id, 1, AccountFlags::default()).unwrap())
        .collect();
    ctx.ledger.create_accounts(&news).await.unwrap();
    let now = ctx.now();
    let requests: Vec<TransferRequest> = (0..TRANSFERS)
        .map(|i| {
            TransferRequest::single(
                TransferId::from_u128(0x1000_0000 + i as u128).unwrap(),
                ids[i % ACCOUNTS],
                ids[(i * 7 + 1) % ACCOUNTS],
                Krw::new((i % 13) as i64 + 1),
                now,
            )
            .unwrap()
        })
        .collect();
    let expected_total: i64 = (0..TRANSFERS).map(|i| (i % 13) as i64 + 1).sum();
    let mut tasks = Vec::new();
    for task in 0..8 {
        let ledger = ctx.ledger.clone();
        let mut mine = requests.clone();
        // Each task sends the same ids in its own order.
        mine.rotate_left(task * 1_250);
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for chunk in mine.chunks(100) {
                for result in ledger.submit(chunk.to_vec()).await.unwrap() {
                    match result {
                        TransferResult::Ok => ok += 1,
                        TransferResult::Exists => {}
                        other => panic!("unexpected result {other:?}"),
                    }
                }
            }
            ok
        }));
    }
    let mut applied = 0;
    for task in tasks {
        applied += task.await.unwrap();
    }
    assert_eq!(applied, TRANSFERS, "each id applied exactly once");
    let totals = ctx.ledger.totals().await.unwrap();
    assert_eq!(totals.debits_posted, i128::from(expected_total));
    ctx.assert_invariants().await;
    // The same ids with changed amounts are refused.
    let changed: Vec<_> = requests[..10]
        .iter()
        .map(|r| {
            let ledger::TransferKind::Single {
                debit_account_id,
                credit_account_id,
                amount,
            } = *r.kind()
            else {
                unreachable!()
            };
            TransferRequest::single(
                r.id(),
                debit_account_id,
                credit_account_id,
                Krw::new(amount.get() + 1),
                now,
            )
            .unwrap()
        })
        .collect();
    let results = ctx.ledger.submit(changed).await.unwrap();
    assert_eq!(results, vec![TransferResult::ExistsWithDifferentFields; 10]);
    assert_eq!(
        ctx.ledger.totals().await.unwrap().debits_posted,
        i128::from(expected_total)
    );
}

async fn batched_results_equal_one_by_one_results(ctx: Ctx) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let bank = ctx.plain().await;
    let customers = [
        ctx.customer().await,
        ctx.customer().await,
        ctx.customer().await,
    ];
    let now = ctx.now();
    let mut submissions = Vec::new();
    let mut holds = Vec::new();
    for _ in 0..400 {
        let from = customers[rng.random_range(0..3)];
        let to = if rng.random_bool(0.3) {
            bank
        } else {
            customers[rng.random_range(0..3)]
        };
        let request = match rng.random_range(0..10) {
            0..=1 => TransferRequest::single(
                transfer_id(),
                bank,
                from,
                Krw::new(rng.random_range(1..500)),
                now,
            ),
            2 if !holds.is_empty() => TransferRequest::post(
                transfer_id(),
                holds[rng.random_range(0..holds.len())],
                None,
                now,
            ),
            3 => {
                let hold = TransferRequest::pending(
                    transfer_id(),
                    from,
                    bank,
                    Krw::new(rng.random_range(1..100)),
                    0,
                    now,
                );
                if let Ok(hold) = &hold {
                    holds.push(hold.id());
                }
                hold
            }
            _ if from != to => TransferRequest::single(
                transfer_id(),
                from,
                to,
                Krw::new(rng.random_range(1..200)),
                now,
            ),
            _ => TransferRequest::single(transfer_id(), bank, to, Krw::new(7), now),
        };
        submissions.push(vec![request.unwrap()]);
    }
    let pipelined = ctx
        .ledger
        .submit_pipelined(submissions.clone())
        .await
        .unwrap();
    // Replay the same submissions one transaction each on a second, fresh ledger
    // holding the same accounts.
    let other = Ctx::on(
        match ctx.db.store.backend() {
            store::Backend::Sqlite => store::testing::sqlite().await,
            store::Backend::Postgres => store::testing::postgres().await.unwrap(),
        },
        ledger::LedgerConfig::default(),
    )
    .await;
    let accounts = ctx
        .ledger
        .lookup_accounts(&[bank, customers[0], customers[1], customers[2]])
        .await
        .unwrap();
    let news: Vec<_> = accounts
        .iter()
        .map(|a| NewAccount::new(a.id, a.code, a.flags).unwrap())
        .collect();
    other.ledger.create_accounts(&news).await.unwrap();
    let mut one_by_one = Vec::new();
    for submission in &submissions {
        one_by_one.push(other.ledger.submit_unbatched(submission).await.unwrap());
    }
    assert_eq!(pipelined, one_by_one);
    assert!(
        pipelined
            .iter()
            .flatten()
            .any(|r| *r == TransferResult::ExceedsCredits),
        "the workload must hit limits"
    );
    for id in [bank, customers[0], customers[1], customers[2]] {
        let mine = ctx.balance(id).await;
        let theirs = other.balance(id).await;
        assert_eq!(
            (
                mine.debits_posted,
                mine.credits_posted,
                mine.debits_pending,
                mine.seq
            ),
            (
                theirs.debits_posted,
                theirs.credits_posted,
                theirs.debits_pending,
                theirs.seq
            )
        );
    }
    ctx.assert_invariants().await;
}

on_both_backends!(opening_one_account_from_many_callers_at_once_opens_it_once);

async fn opening_one_account_from_many_callers_at_once_opens_it_once(ctx: Ctx) {
    let id = account_id();
    let new = NewAccount::new(id, 3, AccountFlags::default()).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let ledger = ctx.ledger.clone();
        tasks.push(tokio::spawn(async move {
            ledger.create_accounts(&[new]).await.unwrap()
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.extend(task.await.unwrap());
    }
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == CreateAccountResult::Ok)
            .count(),
        1
    );
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == CreateAccountResult::Exists)
            .count(),
        7
    );
}
