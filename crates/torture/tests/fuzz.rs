//! Fuzzing with proptest (libFuzzer is impractical in CI here): the parsers that
//! meet raw input — amounts, ids, business days, the ledger's transfer input, the
//! bank's newtypes and wire answers — never panic, refuse bad input with a stable
//! snake_case code (the same input, the same code), and accept only what they can
//! print back. `SETTLE_FUZZ_CASES` sets the cases per target (default 100,000:
//! about 45 s of fuzzing in all; a longer run uses 1,000,000).

use bank::wire::{ErrorBody, error_from_response, status_for};
use bank::{AccountNumber, BankError, BankTranId, HolderName, TranDate};
use ledger::TransferInput;
use money::{AccountId, Krw, Timestamp, TransferId};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("SETTLE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn is_stable_code(code: &str) -> bool {
    !code.is_empty()
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Text shaped like amounts: digits, signs, separators, decimals, exponents,
/// whitespace, huge magnitudes — plus anything at all.
fn amount_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[-+]?[0-9]{0,25}",
        "[-+ ]?[0-9,._eE ]{0,30}",
        any::<i64>().prop_map(|n| n.to_string()),
        any::<i128>().prop_map(|n| n.to_string()),
        "\\PC{0,40}",
    ]
}

/// Text shaped like ids: UUIDs and ULIDs, mutated, plus anything at all.
fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).simple().to_string()),
        "[0-9A-HJKMNP-TV-Z]{26}",
        "[0-9a-fA-F-]{0,40}",
        Just("00000000-0000-0000-0000-000000000000".to_owned()),
        Just("ffffffff-ffff-ffff-ffff-ffffffffffff".to_owned()),
        "\\PC{0,40}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn amount_parsing_never_panics_and_refuses_with_a_stable_code(text in amount_text()) {
        match Krw::parse(&text) {
            Ok(amount) => {
                prop_assert_eq!(Krw::parse(&amount.get().to_string()).ok(), Some(amount));
            }
            Err(error) => {
                prop_assert!(is_stable_code(error.code()), "{}", error.code());
                prop_assert!(
                    ["amount_not_integer", "amount_overflow", "amount_not_positive"]
                        .contains(&error.code())
                );
                prop_assert_eq!(Krw::parse(&text).err().map(|e| e.code()), Some(error.code()));
            }
        }
        if let Ok(amount) = Krw::parse_positive(&text) {
            prop_assert!(amount.is_positive());
        }
    }

    #[test]
    fn id_parsing_never_panics_and_round_trips(text in id_text()) {
        match TransferId::parse(&text) {
            Ok(id) => {
                prop_assert_eq!(TransferId::parse(&id.to_string()).ok(), Some(id));
                prop_assert_ne!(id.as_u128(), 0);
                prop_assert_ne!(id.as_u128(), u128::MAX);
            }
            Err(error) => {
                prop_assert!(["id_malformed", "id_reserved"].contains(&error.code()), "{}", error.code());
            }
        }
        match AccountId::parse(&text) {
            Ok(id) => prop_assert_eq!(AccountId::parse(&id.to_string()).ok(), Some(id)),
            Err(error) => prop_assert!(is_stable_code(error.code())),
        }
    }

    #[test]
    fn business_days_parse_or_refuse_without_panicking(text in "[0-9-]{0,12}|\\PC{0,20}") {
        if let Ok(day) = fees::BusinessDay::parse(&text) {
            prop_assert_eq!(fees::BusinessDay::parse(&day.to_string()).ok(), Some(day));
        }
    }

    #[test]
    fn transfer_input_parsing_never_panics_and_only_accepts_valid_requests(
        id in id_text(),
        kind in prop_oneof![Just(None), Just(Some("single".to_owned())), Just(Some("pending".to_owned())),
            Just(Some("post".to_owned())), Just(Some("void".to_owned())), "\\PC{0,8}".prop_map(Some)],
        debit in proptest::option::of(id_text()),
        credit in proptest::option::of(id_text()),
        amount in proptest::option::of(prop_oneof![any::<i64>(), -5i64..5, 0i64..1_000_000]),
        pending_id in proptest::option::of(id_text()),
        timeout_ms in proptest::option::of(any::<i64>()),
        code in proptest::option::of(any::<u16>()),
        requested_at_ms in proptest::option::of(any::<i64>()),
    ) {
        let input = TransferInput {
            id,
            kind,
            debit_account_id: debit,
            credit_account_id: credit,
            amount,
            pending_id,
            timeout_ms,
            code,
            user_data: None,
            linked: None,
            requested_at_ms,
        };
        match input.parse(Timestamp::from_unix_ms(1_764_000_000_000)) {
            Ok(request) => {
                prop_assert_eq!(request.id().to_string().len(), 36);
                if let Some(amount) = input.amount {
                    prop_assert!(amount > 0, "a non-positive amount was accepted");
                }
            }
            Err(error) => {
                prop_assert!(is_stable_code(error.code()), "{}", error.code());
                prop_assert_eq!(
                    input.parse(Timestamp::from_unix_ms(1_764_000_000_000)).err().map(|e| e.code()),
                    Some(error.code())
                );
            }
        }
    }

    #[test]
    fn transfer_input_json_never_panics(text in "\\PC{0,200}", n in any::<i64>(), key in "[a-z_]{1,20}") {
        let _ = serde_json::from_str::<TransferInput>(&text);
        let shaped = format!(r#"{{"id":"{text}","amount":{n},"{key}":1}}"#);
        if let Ok(input) = serde_json::from_str::<TransferInput>(&shaped) {
            let _ = input.parse(Timestamp::from_unix_ms(0));
        }
    }

    #[test]
    fn bank_newtypes_never_panic_and_refuse_with_stable_codes(text in "\\PC{0,40}|[0-9A-Z]{10}U[0-9A-Z]{9}|[0-9-]{8,16}") {
        for result in [
            BankTranId::new(&text).map(|_| ()),
            AccountNumber::new(&text).map(|_| ()),
            HolderName::new(&text).map(|_| ()),
            TranDate::parse(&text).map(|_| ()),
        ] {
            if let Err(error) = result {
                prop_assert!(is_stable_code(error.code()), "{}", error.code());
                prop_assert!(!error.is_outcome_unknown(), "bad input is a definite refusal");
            }
        }
    }

    #[test]
    fn bank_wire_answers_never_panic_and_unknown_stays_unknown(
        status in 0u16..1_000,
        body in proptest::collection::vec(any::<u8>(), 0..300),
        code in "[a-z_]{0,30}",
        message in "\\PC{0,40}",
        limit in proptest::option::of(any::<i64>()),
    ) {
        let error = error_from_response(status, &body);
        prop_assert!(is_stable_code(error.code()), "{}", error.code());
        // A body that names no definite failure never turns a 5xx into one.
        if (500..=599).contains(&status) && serde_json::from_slice::<ErrorBody>(&body).is_err() {
            prop_assert!(error.is_outcome_unknown(), "{status}: {error:?}");
        }
        let shaped = serde_json::to_vec(&ErrorBody { code: code.clone(), message, limit_krw: limit })
            .unwrap_or_default();
        let error = error_from_response(status, &shaped);
        prop_assert!(is_stable_code(error.code()) || error.code().is_empty());
        // Whatever the simulator says on the wire, the client reads back the same error.
        let _ = serde_json::from_slice::<bank::types::TransferReceipt>(&body);
        let _ = serde_json::from_slice::<bank::types::TransferOutcome>(&body);
        let _ = serde_json::from_slice::<bank::types::Balance>(&body);
    }
}

#[test]
fn every_definite_bank_error_survives_the_wire() {
    let definite = [
        BankError::AccountFrozen,
        BankError::HolderNameMismatch,
        BankError::OverPerCallLimit { limit_krw: 100_000 },
        BankError::InsufficientFunds,
        BankError::RateLimited,
        BankError::Maintenance,
        BankError::AccountNotFound,
        BankError::TransferNotFound,
    ];
    for error in definite {
        let body = serde_json::to_vec(&ErrorBody::from_error(&error)).unwrap();
        let back = error_from_response(status_for(&error), &body);
        assert_eq!(back, error, "{error:?} changed on the wire");
        assert!(!back.is_outcome_unknown());
    }
}
