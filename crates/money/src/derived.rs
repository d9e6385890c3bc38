//! Ids the system derives for itself (fee holds and chunks, payroll transfers and
//! accounts), keyed by a per-installation secret.
//!
//! A derived id names a thing by what it stands for, so a retry after a crash names
//! the same thing. If the name were the only input (UUID v5 of public text), a
//! client could compute the id first and claim it with a transfer of its own. Here
//! the id is HMAC-SHA256(secret, domain ‖ 0 ‖ name), truncated to a UUID v8: without
//! the secret nobody can compute it. The secret is read from the environment by the
//! binary (this crate does no I/O) and never printed.

use std::fmt;
use std::sync::Arc;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Fewest bytes a secret may have: 256 bits, the HMAC-SHA256 block's worth of key
/// strength.
pub const ID_SECRET_BYTES_MIN: usize = 32;

/// Most bytes a secret may have (a file of this size is surely not a secret).
pub const ID_SECRET_BYTES_MAX: usize = 4_096;

/// The fixed secret of tests, benchmarks and the demo. Never for a real installation.
const TEST_SECRET: &[u8; 32] = b"settle-test-only-id-secret-00001";

/// Why a secret was refused. Stable [`IdSecretError::code`]s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdSecretError {
    #[error("the id secret has {0} bytes; at least {ID_SECRET_BYTES_MIN} are needed")]
    TooShort(usize),
    #[error("the id secret has {0} bytes; at most {ID_SECRET_BYTES_MAX} are allowed")]
    TooLong(usize),
}

impl IdSecretError {
    pub fn code(&self) -> &'static str {
        match self {
            IdSecretError::TooShort(_) => "id_secret_too_short",
            IdSecretError::TooLong(_) => "id_secret_too_long",
        }
    }
}

/// The one place ids are derived. Cheap to clone; `Debug` never shows the secret.
#[derive(Clone)]
pub struct DerivedIds {
    /// The installation's secret; shared because every fee and payroll handle holds it.
    secret: Arc<[u8]>,
    /// Whether this is the fixed test secret (reported, so a real deployment can refuse it).
    is_test: bool,
}

impl DerivedIds {
    /// Keys derivation with `secret` (surrounding whitespace is part of it: trim first).
    pub fn new(secret: &[u8]) -> Result<DerivedIds, IdSecretError> {
        if secret.len() < ID_SECRET_BYTES_MIN {
            return Err(IdSecretError::TooShort(secret.len()));
        }
        if secret.len() > ID_SECRET_BYTES_MAX {
            return Err(IdSecretError::TooLong(secret.len()));
        }
        Ok(DerivedIds {
            secret: Arc::from(secret),
            is_test: secret == TEST_SECRET,
        })
    }

    /// The fixed secret of tests, benchmarks and the demo. Anyone can compute ids
    /// under it, so `settle serve` refuses it.
    pub fn for_tests() -> DerivedIds {
        DerivedIds {
            secret: Arc::from(&TEST_SECRET[..]),
            is_test: true,
        }
    }

    /// Whether this is [`DerivedIds::for_tests`]' secret.
    pub fn is_test_secret(&self) -> bool {
        self.is_test
    }

    /// The id of `name` within `domain` (e.g. `"fees"`, `"payroll"`). Never all
    /// zeros or all ones (the version and variant bits are fixed).
    pub fn uuid(&self, domain: &str, name: &str) -> Uuid {
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&hmac_key(&self.secret).into());
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(name.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut bytes = [0_u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }
}

/// HMAC's own key normalisation (RFC 2104): a key longer than SHA-256's 64-byte
/// block is hashed first, and the key is zero-padded to the block. Done here so the
/// MAC is built from a fixed-size key, which cannot fail.
fn hmac_key(secret: &[u8]) -> [u8; 64] {
    let mut key = [0_u8; 64];
    if secret.len() > key.len() {
        key[..32].copy_from_slice(&Sha256::digest(secret));
    } else {
        key[..secret.len()].copy_from_slice(secret);
    }
    key
}

impl fmt::Debug for DerivedIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DerivedIds")
            .field("secret", &"<redacted>")
            .field("is_test", &self.is_test)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_secret_and_name_give_the_same_id() {
        let a = DerivedIds::new(&[7; 32]).unwrap();
        let b = DerivedIds::new(&[7; 32]).unwrap();
        assert_eq!(a.uuid("fees", "hold/x"), b.uuid("fees", "hold/x"));
    }

    #[test]
    fn another_secret_domain_or_name_gives_another_id() {
        let a = DerivedIds::new(&[7; 32]).unwrap();
        let b = DerivedIds::new(&[8; 32]).unwrap();
        assert_ne!(a.uuid("fees", "hold/x"), b.uuid("fees", "hold/x"));
        assert_ne!(a.uuid("fees", "hold/x"), a.uuid("payroll", "hold/x"));
        assert_ne!(a.uuid("fees", "hold/x"), a.uuid("fees", "hold/y"));
        // The separator keeps (domain, name) pairs apart.
        assert_ne!(a.uuid("fe", "es\u{0}x"), a.uuid("fees", "x"));
    }

    #[test]
    fn a_derived_id_is_a_version_8_uuid_and_never_reserved() {
        let ids = DerivedIds::for_tests();
        let id = ids.uuid("fees", "account/settlement");
        assert_eq!(id.get_version_num(), 8);
        assert_ne!(id.as_u128(), 0);
        assert_ne!(id.as_u128(), u128::MAX);
    }

    #[test]
    fn short_and_oversized_secrets_are_refused() {
        assert_eq!(
            DerivedIds::new(&[1; 31]).unwrap_err().code(),
            "id_secret_too_short"
        );
        assert_eq!(
            DerivedIds::new(&[1; ID_SECRET_BYTES_MAX + 1])
                .unwrap_err()
                .code(),
            "id_secret_too_long"
        );
    }

    #[test]
    fn the_derivation_is_standard_hmac_sha256_for_short_and_long_secrets() {
        for secret in [vec![3_u8; 32], vec![4_u8; 100]] {
            let ids = DerivedIds::new(&secret).unwrap();
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret).unwrap();
            mac.update(b"fees\0name");
            let digest = mac.finalize().into_bytes();
            let mut bytes = [0_u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            let expected = uuid::Builder::from_custom_bytes(bytes).into_uuid();
            assert_eq!(ids.uuid("fees", "name"), expected);
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let ids = DerivedIds::new(b"a-very-secret-value-of-32-bytes!").unwrap();
        assert!(!format!("{ids:?}").contains("secret-value"));
        assert!(!ids.is_test_secret());
        assert!(DerivedIds::for_tests().is_test_secret());
    }
}
