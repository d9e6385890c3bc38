//! The one place that sends HTTP to a bank: a pooled `reqwest` client with
//! timeouts, a concurrency limiter (`Semaphore`), a requests/s limiter (`governor`),
//! a response size cap, metrics and tracing. The native client and every provider
//! send through it; providers only build bodies and parse answers.
//!
//! It never retries: a money-moving call that timed out may have committed, and only
//! the caller (after a result inquiry) may decide to send again. HTTPS is rustls
//! with the web PKI roots plus the optional extra CA of [`crate::tls::BankCa`].

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::BankError;
use crate::providers::next::token::Secret;
use crate::tls::BankCa;
use crate::wire::HEADER_CLIENT_ID;

/// How a client talks to one bank endpoint.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// `http://host:port`, without a trailing slash.
    pub base_url: String,
    /// Sent as `x-client-id`; the bank limits requests/s per client id.
    pub client_id: String,
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Calls in flight at once; `None` disables the limiter (tests of the server's 429).
    pub concurrent_max: Option<usize>,
    /// Calls started per second; `None` disables the limiter.
    pub requests_per_s_max: Option<u32>,
    pub idle_connections_per_host_max: usize,
    /// Answers longer than this are refused (and, for money calls, reported unknown).
    pub response_bytes_max: usize,
    /// A CA trusted besides the web PKI roots (a bank's private CA, `--bank-ca`).
    pub extra_ca: Option<BankCa>,
    /// How long a request of ours can still land at this bank after its outcome
    /// became unknown; a result inquiry's "not found" proves nothing before.
    pub not_found_grace_ms: u64,
    /// The KFTC open-banking settings of the `next` connector.
    pub kftc: KftcSettings,
    /// The NH-style settings of the `legacy` connector.
    pub legacy: LegacySettings,
}

/// What the NH-style (`legacy`) connector needs besides an address: the fixed
/// fields of its message `Header` and the access token the bank issued.
#[derive(Clone, Debug)]
pub struct LegacySettings {
    /// `Iscd`: the institution code the bank assigned (6 digits).
    pub iscd: String,
    /// `FintechApsno`: the fintech app's serial number under the institution.
    pub fintech_apsno: String,
    /// `AccessToken`: issued by the bank's developer centre; never logged.
    pub access_token: Secret,
    /// `Bncd` of the accounts settle pays (`011` = NH bank, `012` = NH co-ops;
    /// anything else goes over the other-bank calls).
    pub bank_code: String,
    /// The 10-character institution code that starts the connector's own `IsTuno`s
    /// (balance, holder, result and history inquiries).
    pub institution_code: String,
}

impl LegacySettings {
    /// The settings `settle bank-sim` accepts; a real bank issues its own.
    pub fn simulator() -> LegacySettings {
        LegacySettings {
            iscd: "000013".to_owned(),
            fintech_apsno: "001".to_owned(),
            access_token: Secret::new(SIMULATOR_LEGACY_ACCESS_TOKEN),
            bank_code: "011".to_owned(),
            institution_code: "M202500001".to_owned(),
        }
    }
}

/// The access token the simulator's NH-style wire accepts (a test credential,
/// public by design).
pub const SIMULATOR_LEGACY_ACCESS_TOKEN: &str = "settle-bank-sim-legacy";

/// What the KFTC connector needs besides an address: its credentials and the
/// fixed fields of its requests.
#[derive(Clone, Debug)]
pub struct KftcSettings {
    /// The OAuth client secret (the client id is [`TransportConfig::client_id`]).
    pub client_secret: Secret,
    /// The OAuth scope of the institution's calls (`oob`).
    pub scope: String,
    /// The bank code (`bank_code_std`, 3 digits) of the accounts settle pays.
    pub bank_code_std: String,
    /// The 10-character institution code that starts the connector's own
    /// `bank_tran_id`s (balance and holder inquiries).
    pub institution_code: String,
    /// settle's name as the requesting customer of its payouts (`req_client_name`).
    pub client_name: String,
    /// The deposit transfer pass phrase (`wd_pass_phrase`; `NONE` on the test bed).
    pub pass_phrase: Secret,
    /// A token is refreshed this long before it expires.
    pub token_refresh_margin_ms: u64,
}

impl KftcSettings {
    /// The credentials `settle bank-sim` accepts; real banks issue their own.
    pub fn simulator() -> KftcSettings {
        KftcSettings {
            client_secret: Secret::new(SIMULATOR_CLIENT_SECRET),
            scope: "oob".to_owned(),
            bank_code_std: "097".to_owned(),
            institution_code: "M202500001".to_owned(),
            client_name: "세틀".to_owned(),
            pass_phrase: Secret::new("NONE"),
            token_refresh_margin_ms: 10 * 60 * 1_000,
        }
    }
}

/// The client secret the simulator's token endpoint accepts (a test credential,
/// public by design; a real bank's secret comes from the environment).
pub const SIMULATOR_CLIENT_SECRET: &str = "settle-bank-sim";

/// How one request travels.
#[derive(Clone, Copy, Debug)]
pub enum Body<'a, B: ?Sized> {
    Json(&'a B),
    Form(&'a B),
    Query(&'a B),
}

impl TransportConfig {
    /// Defaults for the real payout API: 2–3 s calls, so a 10 s timeout.
    pub fn new(base_url: &str) -> TransportConfig {
        TransportConfig {
            base_url: base_url.trim_end_matches('/').to_owned(),
            client_id: "settle".to_owned(),
            timeout_ms: 10_000,
            connect_timeout_ms: 2_000,
            concurrent_max: Some(16),
            requests_per_s_max: Some(50),
            idle_connections_per_host_max: 32,
            response_bytes_max: 1 << 20,
            extra_ca: None,
            // Our own timeout bounds how long we wait; the bank finishes or drops a
            // request within a few seconds of that.
            not_found_grace_ms: 10_000 + 5_000,
            kftc: KftcSettings::simulator(),
            legacy: LegacySettings::simulator(),
        }
    }
}

/// A cheap-to-clone sender. Clones share the pool and both limiters.
#[derive(Clone, Debug)]
pub struct Transport {
    http: reqwest::Client,
    config: Arc<TransportConfig>,
    /// Caps calls in flight so the bank never sees more than it allows.
    permits: Option<Arc<Semaphore>>,
    /// Caps calls started per second, smoothing bursts the bank would answer with 429.
    rate: Option<Arc<DefaultDirectRateLimiter>>,
}

impl Transport {
    pub fn new(config: TransportConfig) -> Result<Transport, BankError> {
        let http = crate::tls::http_client(config.extra_ca.as_ref())
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .pool_max_idle_per_host(config.idle_connections_per_host_max)
            .build()
            .map_err(|error| BankError::InvalidRequest(format!("HTTP client: {error}")))?;
        let permits = match config.concurrent_max {
            Some(0) => {
                return Err(BankError::InvalidRequest(
                    "concurrent_max must be positive".into(),
                ));
            }
            Some(max) => Some(Arc::new(Semaphore::new(max))),
            None => None,
        };
        let rate = match config.requests_per_s_max {
            Some(per_s) => {
                let per_s = NonZeroU32::new(per_s).ok_or_else(|| {
                    BankError::InvalidRequest("requests_per_s_max must be positive".into())
                })?;
                Some(Arc::new(RateLimiter::direct(Quota::per_second(per_s))))
            }
            None => None,
        };
        Ok(Transport {
            http,
            config: Arc::new(config),
            permits,
            rate,
        })
    }

    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// POSTs `body` as JSON to `path` and returns the status and the body bytes. Only
    /// transport failures are errors here; the caller maps statuses.
    pub async fn post_json<B: Serialize + ?Sized>(
        &self,
        operation: &'static str,
        path: &str,
        body: &B,
    ) -> Result<(u16, Vec<u8>), BankError> {
        self.call(operation, path, Body::Json(body), None).await
    }

    /// POSTs `form` URL-encoded (the OAuth token endpoint).
    pub async fn post_form<B: Serialize + ?Sized>(
        &self,
        operation: &'static str,
        path: &str,
        form: &B,
    ) -> Result<(u16, Vec<u8>), BankError> {
        self.call(operation, path, Body::Form(form), None).await
    }

    /// Sends one request with an optional bearer token; see [`Transport::post_json`].
    pub async fn call<B: Serialize + ?Sized>(
        &self,
        operation: &'static str,
        path: &str,
        body: Body<'_, B>,
        bearer: Option<&str>,
    ) -> Result<(u16, Vec<u8>), BankError> {
        let _permit = match &self.permits {
            Some(permits) => Some(
                permits
                    .acquire()
                    .await
                    .map_err(|_| BankError::Connection("client is shutting down".into()))?,
            ),
            None => None,
        };
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        let url = format!("{}{}", self.config.base_url, path);
        let outcome = self.send(&url, body, bearer).await;
        let label = match &outcome {
            Ok((status, _)) if (200..300).contains(status) => "ok",
            Ok(_) => "http_error",
            Err(error) => error.code(),
        };
        metrics::counter!("bank_http_calls_total", "operation" => operation, "outcome" => label)
            .increment(1);
        match &outcome {
            Ok((status, _)) => tracing::debug!(operation, status, "bank call answered"),
            Err(error) => {
                tracing::warn!(operation, code = error.code(), %error, "bank call failed")
            }
        }
        outcome
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        url: &str,
        body: Body<'_, B>,
        bearer: Option<&str>,
    ) -> Result<(u16, Vec<u8>), BankError> {
        let builder = match body {
            Body::Json(body) => self.http.post(url).json(body),
            Body::Form(form) => self.http.post(url).form(form),
            Body::Query(query) => self.http.get(url).query(query),
        };
        let builder = match bearer {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        };
        let mut response = builder
            .header(HEADER_CLIENT_ID, &self.config.client_id)
            .send()
            .await
            .map_err(|error| self.transport_error(&error))?;
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| self.transport_error(&error))?
        {
            if bytes.len() + chunk.len() > self.config.response_bytes_max {
                return Err(BankError::Unrecognized {
                    status,
                    code: format!("response over {} bytes", self.config.response_bytes_max),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((status, bytes))
    }

    fn transport_error(&self, error: &reqwest::Error) -> BankError {
        if error.is_connect() {
            // The connection (TCP, TLS handshake) was never made, whether refused,
            // unreachable or timed out: no byte of the request reached the bank,
            // so the same id may be sent again at once.
            return BankError::NotSent(chain(error));
        }
        if error.is_timeout() {
            BankError::Timeout {
                timeout_ms: self.config.timeout_ms,
            }
        } else {
            // Resets and truncated bodies after the connection was made: the
            // request may have reached the bank, so all of them are outcome unknown.
            BankError::Connection(chain(error))
        }
    }
}

/// The error and its causes on one line.
fn chain(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
