//! Property test: random sequences of account, transfer, hold, post, void and
//! linked-chain operations give the same results and balances on the real ledger
//! (through its batching writer and store) as on a deliberately simple in-memory
//! model, and the invariants hold after every step.
//!
//! Cases: `SETTLE_PROPTEST_CASES` (default 1,000; CI runs the default, the slow
//! profile more).

mod common;

use std::collections::HashMap;

use common::Ctx;
use ledger::{AccountFlags, NewAccount, TransferRequest, TransferResult};
use money::{AccountId, Krw, TransferId};
use proptest::prelude::*;

const ACCOUNTS: usize = 4;
/// Index 4 names an account that is never opened.
const MISSING_ACCOUNT: usize = 4;
const IDS: usize = 10;
const LATE_BY_MS: i64 = 61_000;

#[derive(Clone, Debug)]
enum Op {
    Single {
        id: usize,
        debit: usize,
        credit: usize,
        amount: i64,
        code: u16,
        late: bool,
    },
    Pending {
        id: usize,
        debit: usize,
        credit: usize,
        amount: i64,
    },
    Post {
        id: usize,
        pending: usize,
        amount: Option<i64>,
    },
    Void {
        id: usize,
        pending: usize,
    },
}

/// One submission: operations and whether each links to the next.
type Submission = Vec<(Op, bool)>;

fn op() -> impl Strategy<Value = Op> {
    let account = 0..=MISSING_ACCOUNT;
    let pair = (account.clone(), account).prop_map(|(d, c)| {
        if d == c {
            (d, (c + 1) % (ACCOUNTS + 1))
        } else {
            (d, c)
        }
    });
    prop_oneof![
        4 => (0..IDS, pair.clone(), 1i64..=120, 0u16..2, proptest::bool::weighted(0.1))
            .prop_map(|(id, (debit, credit), amount, code, late)| Op::Single { id, debit, credit, amount, code, late }),
        2 => (0..IDS, pair, 1i64..=80).prop_map(|(id, (debit, credit), amount)| Op::Pending { id, debit, credit, amount }),
        2 => (0..IDS, 0..IDS, proptest::option::of(1i64..=100))
            .prop_map(|(id, pending, amount)| Op::Post { id, pending, amount }),
        1 => (0..IDS, 0..IDS).prop_map(|(id, pending)| Op::Void { id, pending }),
    ]
}

fn submission() -> impl Strategy<Value = Submission> {
    proptest::collection::vec((op(), proptest::bool::weighted(0.3)), 1..=3).prop_map(|mut ops| {
        // Mostly close the chain; sometimes leave it open to exercise that result.
        let close = ops.len() % 2 == 1 || ops.iter().any(|(op, _)| matches!(op, Op::Void { .. }));
        if close && let Some(last) = ops.last_mut() {
            last.1 = false;
        }
        ops
    })
}

// ---- the model ------------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Balances {
    debits_pending: i64,
    debits_posted: i64,
    credits_pending: i64,
    credits_posted: i64,
    seq: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HoldState {
    Pending,
    Posted,
    Voided,
}

#[derive(Clone, Debug)]
struct Applied {
    fields: Op,
    linked: bool,
    /// For holds: debit, credit, amount, state.
    hold: Option<(usize, usize, i64, HoldState)>,
}

#[derive(Clone, Debug, Default)]
struct Model {
    accounts: HashMap<usize, (AccountFlags, Balances)>,
    applied: HashMap<usize, Applied>,
    failed: HashMap<usize, (Op, bool, TransferResult)>,
}

/// The fields that idempotency compares: everything but lateness.
fn same_fields(a: &Op, a_linked: bool, b: &Op, b_linked: bool) -> bool {
    let strip = |op: &Op| match op.clone() {
        Op::Single {
            id,
            debit,
            credit,
            amount,
            code,
            ..
        } => Op::Single {
            id,
            debit,
            credit,
            amount,
            code,
            late: false,
        },
        other => other,
    };
    a_linked == b_linked && format!("{:?}", strip(a)) == format!("{:?}", strip(b))
}

impl Model {
    fn flags(index: usize) -> AccountFlags {
        match index {
            1 | 3 => AccountFlags {
                debits_must_not_exceed_credits: true,
                ..AccountFlags::default()
            },
            2 => AccountFlags {
                credits_must_not_exceed_debits: true,
                ..AccountFlags::default()
            },
            _ => AccountFlags::default(),
        }
    }

    fn new() -> Model {
        let mut model = Model::default();
        for index in 0..ACCOUNTS {
            model
                .accounts
                .insert(index, (Model::flags(index), Balances::default()));
        }
        model
    }

    fn submit(&mut self, submission: &Submission) -> Vec<TransferResult> {
        let mut results = Vec::new();
        let mut chain: Vec<(Op, bool)> = Vec::new();
        for (op, linked) in submission {
            chain.push((op.clone(), *linked));
            if !linked {
                results.extend(self.apply_chain(&chain));
                chain.clear();
            }
        }
        // A chain still open at the end of the submission is refused whole.
        results.extend(std::iter::repeat_n(
            TransferResult::LinkedEventChainOpen,
            chain.len(),
        ));
        results
    }

    fn apply_chain(&mut self, chain: &[(Op, bool)]) -> Vec<TransferResult> {
        if chain.len() == 1 {
            let (op, linked) = &chain[0];
            let result = self.apply(op, *linked);
            self.record(op, *linked, result);
            return vec![result];
        }
        let mut trial = self.clone();
        let mut results = Vec::new();
        for (op, linked) in chain {
            let result = trial.apply(op, *linked);
            results.push(result);
            if !matches!(result, TransferResult::Ok | TransferResult::Exists) {
                break;
            }
        }
        let failed = results
            .iter()
            .any(|r| !matches!(r, TransferResult::Ok | TransferResult::Exists));
        let mixed =
            results.contains(&TransferResult::Ok) && results.contains(&TransferResult::Exists);
        if !failed && !mixed {
            *self = trial;
            return results;
        }
        chain
            .iter()
            .enumerate()
            .map(|(index, (op, linked))| {
                let result = match results.get(index) {
                    Some(TransferResult::Ok) | None => TransferResult::LinkedEventFailed,
                    Some(other) => *other,
                };
                self.record(op, *linked, result);
                result
            })
            .collect()
    }

    fn record(&mut self, op: &Op, linked: bool, result: TransferResult) {
        if matches!(
            result,
            TransferResult::ExceedsCredits | TransferResult::ExceedsDebits | TransferResult::Late
        ) {
            self.failed
                .entry(id_of(op))
                .or_insert((op.clone(), linked, result));
        }
    }

    fn apply(&mut self, op: &Op, linked: bool) -> TransferResult {
        let id = id_of(op);
        if let Some(applied) = self.applied.get(&id) {
            return if same_fields(&applied.fields, applied.linked, op, linked) {
                TransferResult::Exists
            } else {
                TransferResult::ExistsWithDifferentFields
            };
        }
        if let Some((fields, was_linked, result)) = self.failed.get(&id) {
            return if same_fields(fields, *was_linked, op, linked) {
                *result
            } else {
                TransferResult::ExistsWithDifferentFields
            };
        }
        if let Op::Single { late: true, .. } = op {
            return TransferResult::Late;
        }
        match *op {
            Op::Single {
                debit,
                credit,
                amount,
                ..
            } => self.movement(op, linked, debit, credit, amount, false),
            Op::Pending {
                debit,
                credit,
                amount,
                ..
            } => self.movement(op, linked, debit, credit, amount, true),
            Op::Post {
                pending, amount, ..
            } => self.settle(op, linked, pending, Some(amount)),
            Op::Void { pending, .. } => self.settle(op, linked, pending, None),
        }
    }

    fn movement(
        &mut self,
        op: &Op,
        linked: bool,
        debit: usize,
        credit: usize,
        amount: i64,
        hold: bool,
    ) -> TransferResult {
        let Some(&(debit_flags, mut d)) = self.accounts.get(&debit) else {
            return TransferResult::DebitAccountNotFound;
        };
        let Some(&(credit_flags, mut c)) = self.accounts.get(&credit) else {
            return TransferResult::CreditAccountNotFound;
        };
        if hold {
            d.debits_pending += amount;
            c.credits_pending += amount;
        } else {
            d.debits_posted += amount;
            c.credits_posted += amount;
        }
        if debit_flags.debits_must_not_exceed_credits
            && d.debits_pending + d.debits_posted > d.credits_posted
        {
            return TransferResult::ExceedsCredits;
        }
        if credit_flags.credits_must_not_exceed_debits
            && c.credits_pending + c.credits_posted > c.debits_posted
        {
            return TransferResult::ExceedsDebits;
        }
        d.seq += 1;
        c.seq += 1;
        self.accounts.insert(debit, (debit_flags, d));
        self.accounts.insert(credit, (credit_flags, c));
        let hold = hold.then_some((debit, credit, amount, HoldState::Pending));
        self.applied.insert(
            id_of(op),
            Applied {
                fields: op.clone(),
                linked,
                hold,
            },
        );
        TransferResult::Ok
    }

    /// `post`: Some(requested amount) for a post, None for a void.
    fn settle(
        &mut self,
        op: &Op,
        linked: bool,
        pending: usize,
        post: Option<Option<i64>>,
    ) -> TransferResult {
        let Some(target) = self.applied.get(&pending) else {
            return TransferResult::PendingTransferNotFound;
        };
        let Some((debit, credit, held, state)) = target.hold else {
            return TransferResult::PendingTransferNotPending;
        };
        match state {
            HoldState::Posted => return TransferResult::PendingTransferAlreadyPosted,
            HoldState::Voided => return TransferResult::PendingTransferAlreadyVoided,
            HoldState::Pending => {}
        }
        let posted = match post {
            Some(Some(amount)) if amount > held => {
                return TransferResult::ExceedsPendingTransferAmount;
            }
            Some(Some(amount)) => amount,
            Some(None) => held,
            None => 0,
        };
        let (df, mut d) = self.accounts[&debit];
        let (cf, mut c) = self.accounts[&credit];
        d.debits_pending -= held;
        c.credits_pending -= held;
        d.debits_posted += posted;
        c.credits_posted += posted;
        d.seq += 1;
        c.seq += 1;
        self.accounts.insert(debit, (df, d));
        self.accounts.insert(credit, (cf, c));
        if let Some(target) = self.applied.get_mut(&pending)
            && let Some(hold) = &mut target.hold
        {
            hold.3 = if post.is_some() {
                HoldState::Posted
            } else {
                HoldState::Voided
            };
        }
        self.applied.insert(
            id_of(op),
            Applied {
                fields: op.clone(),
                linked,
                hold: None,
            },
        );
        TransferResult::Ok
    }
}

fn id_of(op: &Op) -> usize {
    match op {
        Op::Single { id, .. }
        | Op::Pending { id, .. }
        | Op::Post { id, .. }
        | Op::Void { id, .. } => *id,
    }
}

// ---- running a case on the real ledger -----------------------------------------

struct Universe {
    accounts: Vec<AccountId>,
    transfers: Vec<TransferId>,
}

fn request(universe: &Universe, op: &Op, linked: bool, ctx: &Ctx) -> TransferRequest {
    let now = ctx.now();
    let request = match *op {
        Op::Single {
            id,
            debit,
            credit,
            amount,
            code,
            late,
        } => {
            let at = if late { now.plus_ms(-LATE_BY_MS) } else { now };
            TransferRequest::single(
                universe.transfers[id],
                universe.accounts[debit],
                universe.accounts[credit],
                Krw::new(amount),
                at,
            )
            .unwrap()
            .with_code(code)
        }
        Op::Pending {
            id,
            debit,
            credit,
            amount,
        } => TransferRequest::pending(
            universe.transfers[id],
            universe.accounts[debit],
            universe.accounts[credit],
            Krw::new(amount),
            0,
            now,
        )
        .unwrap(),
        Op::Post {
            id,
            pending,
            amount,
        } => TransferRequest::post(
            universe.transfers[id],
            universe.transfers[pending],
            amount.map(Krw::new),
            now,
        )
        .unwrap(),
        Op::Void { id, pending } => {
            TransferRequest::void(universe.transfers[id], universe.transfers[pending], now)
        }
    };
    request.linked(linked)
}

async fn run_case(ctx: &Ctx, submissions: &[Submission]) -> Result<(), TestCaseError> {
    let universe = Universe {
        accounts: (0..=MISSING_ACCOUNT)
            .map(|_| common::account_id())
            .collect(),
        transfers: (0..IDS).map(|_| common::transfer_id()).collect(),
    };
    let news: Vec<_> = (0..ACCOUNTS)
        .map(|i| NewAccount::new(universe.accounts[i], 1, Model::flags(i)).unwrap())
        .collect();
    ctx.ledger.create_accounts(&news).await.unwrap();
    let mut model = Model::new();
    for (step, submission) in submissions.iter().enumerate() {
        let requests: Vec<_> = submission
            .iter()
            .map(|(op, linked)| request(&universe, op, *linked, ctx))
            .collect();
        let real = ctx.ledger.submit(requests).await.unwrap();
        let expected = model.submit(submission);
        prop_assert_eq!(
            &real,
            &expected,
            "step {} results differ for {:?}",
            step,
            submission
        );
        let accounts = ctx
            .ledger
            .lookup_accounts(&universe.accounts[..ACCOUNTS])
            .await
            .unwrap();
        let mut debits = 0i128;
        let mut credits = 0i128;
        for account in &accounts {
            let index = universe
                .accounts
                .iter()
                .position(|id| *id == account.id)
                .unwrap();
            let (_, b) = model.accounts[&index];
            let real = Balances {
                debits_pending: account.debits_pending.get(),
                debits_posted: account.debits_posted.get(),
                credits_pending: account.credits_pending.get(),
                credits_posted: account.credits_posted.get(),
                seq: account.seq,
            };
            prop_assert_eq!(
                real,
                b,
                "step {} balances of account {} differ",
                step,
                index
            );
            prop_assert!(account.respects_flags());
            debits += i128::from(real.debits_posted + real.debits_pending);
            credits += i128::from(real.credits_posted + real.credits_pending);
        }
        prop_assert_eq!(debits, credits, "debits equal credits within the case");
    }
    // Entries: gapless 1..=seq, ending at the balance.
    for id in &universe.accounts[..ACCOUNTS] {
        let account = ctx.balance(*id).await;
        let entries = ctx.ledger.entries(*id, 1, 1_000).await.unwrap();
        let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
        prop_assert_eq!(seqs, (1..=account.seq).collect::<Vec<_>>());
        if let Some(last) = entries.last() {
            prop_assert_eq!(last.credits_posted, account.credits_posted);
            prop_assert_eq!(last.debits_pending, account.debits_pending);
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("SETTLE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

fn check_against_model(ctx: Ctx, runtime: tokio::runtime::Runtime) {
    let config = ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(submissions in proptest::collection::vec(submission(), 1..=12))| {
        runtime.block_on(run_case(&ctx, &submissions))?;
    });
    runtime.block_on(ctx.assert_invariants());
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn ledger_matches_the_model_on_sqlite() {
    let runtime = runtime();
    let ctx = runtime.block_on(Ctx::sqlite());
    check_against_model(ctx, runtime);
}

#[test]
fn ledger_matches_the_model_on_postgres() {
    let runtime = runtime();
    let Some(ctx) = runtime.block_on(Ctx::postgres()) else {
        return;
    };
    check_against_model(ctx, runtime);
}
