//! The OAuth 2.0 client-credentials token of the KFTC connector: fetched from
//! `/oauth/2.0/token`, cached, refreshed a margin before it expires, and fetched by
//! one caller at a time — concurrent calls that find it stale wait on one mutex and
//! reuse the token the first of them fetched (single flight).
//!
//! Neither the client secret nor the token is ever logged: both live in types whose
//! `Debug` prints `<redacted>`, and neither is stored anywhere but this cache.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use money::Clock;
use tokio::sync::Mutex;

use super::kftc::{self, TokenAnswer, TokenRequest};
use crate::BankError;
use crate::transport::Transport;

/// A secret string (client secret, pass phrase) that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(text: &str) -> Secret {
        Secret(Arc::from(text))
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A bearer token and when it stops being good.
#[derive(Clone)]
pub struct AccessToken {
    token: Secret,
    expires_at_ms: i64,
}

impl AccessToken {
    pub fn bearer(&self) -> &str {
        self.token.expose()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// Longest token lifetime we believe; a bank answering more is capped.
const TOKEN_LIFETIME_S_MAX: u64 = 100 * 24 * 60 * 60;
/// Longest token we accept, in bytes.
const TOKEN_BYTES_MAX: usize = 4_096;

/// The cached token of one connector. Cheap to share behind an `Arc`.
pub struct TokenCache {
    transport: Transport,
    clock: Arc<dyn Clock>,
    /// The cached token; holding the lock is what makes a refresh single-flight.
    current: Mutex<Option<AccessToken>>,
    /// Tokens fetched so far, for tests and metrics.
    fetched: AtomicU64,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("fetched", &self.fetched.load(Ordering::Relaxed))
            .finish()
    }
}

impl TokenCache {
    pub fn new(transport: Transport, clock: Arc<dyn Clock>) -> TokenCache {
        TokenCache {
            transport,
            clock,
            current: Mutex::new(None),
            fetched: AtomicU64::new(0),
        }
    }

    /// How many tokens this cache has fetched.
    pub fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    /// A token good for at least the refresh margin, fetching one if needed.
    pub async fn token(&self) -> Result<AccessToken, BankError> {
        let mut current = self.current.lock().await;
        let margin_ms =
            i64::try_from(self.transport.config().kftc.token_refresh_margin_ms).unwrap_or(i64::MAX);
        let now_ms = self.clock.now().unix_ms();
        if let Some(token) = current.as_ref()
            && token.expires_at_ms.saturating_sub(margin_ms) > now_ms
        {
            return Ok(token.clone());
        }
        let fresh = self.fetch(now_ms).await?;
        *current = Some(fresh.clone());
        Ok(fresh)
    }

    /// Drops `rejected` if it is still the cached token (the bank refused it), so
    /// the next call fetches a new one.
    pub async fn invalidate(&self, rejected: &AccessToken) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|t| t.token == rejected.token) {
            *current = None;
        }
    }

    async fn fetch(&self, now_ms: i64) -> Result<AccessToken, BankError> {
        let settings = &self.transport.config().kftc;
        let form = TokenRequest {
            client_id: self.transport.config().client_id.clone(),
            client_secret: settings.client_secret.expose().to_owned(),
            scope: settings.scope.clone(),
            grant_type: "client_credentials".to_owned(),
        };
        let (status, body) = self
            .transport
            .post_form("kftc_token", kftc::PATH_TOKEN, &form)
            .await?;
        self.fetched.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("bank_token_fetches_total", "status" => status.to_string()).increment(1);
        if !(200..300).contains(&status) {
            // The token call moves no money: any refusal is "not processed". A
            // refusal of the credentials themselves is settle's configuration,
            // which no retry fixes: loud, and its own class.
            return Err(match status {
                400 | 401 | 403 => crate::providers::credentials_refused(
                    "next",
                    &format!("token endpoint answered HTTP {status}"),
                ),
                429 => BankError::RateLimited,
                _ => {
                    tracing::warn!(status, "the token endpoint is not answering tokens");
                    BankError::Busy
                }
            });
        }
        crate::providers::credentials_accepted("next");
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| BankError::Busy)?;
        if answer.access_token.is_empty()
            || answer.access_token.len() > TOKEN_BYTES_MAX
            || !answer.token_type.eq_ignore_ascii_case("bearer")
        {
            return Err(BankError::Busy);
        }
        let lifetime_ms = answer.expires_in.min(TOKEN_LIFETIME_S_MAX) * 1_000;
        Ok(AccessToken {
            token: Secret::new(&answer.access_token),
            expires_at_ms: now_ms.saturating_add(i64::try_from(lifetime_ms).unwrap_or(i64::MAX)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_tokens_never_print() {
        let secret = Secret::new("s3cr3t");
        assert!(!format!("{secret:?}").contains("s3cr3t"));
        let token = AccessToken {
            token: Secret::new("tok-123"),
            expires_at_ms: 5,
        };
        assert!(!format!("{token:?}").contains("tok-123"));
        let form = TokenRequest {
            client_id: "c".into(),
            client_secret: "s3cr3t".into(),
            scope: "oob".into(),
            grant_type: "client_credentials".into(),
        };
        assert!(!format!("{form:?}").contains("s3cr3t"));
    }
}
