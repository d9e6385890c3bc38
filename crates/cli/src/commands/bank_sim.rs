//! `settle bank-sim`: runs the bank simulator as an HTTP server (the open-banking
//! wire API, the legacy provider's API and admin endpoints) over its own database.
//! The first line on stdout is `listening on HOST:PORT`, so scripts and tests can
//! start it on port 0 and read the port.
//!
//! This command only parses flags and starts the server; every rule lives in
//! `bank::sim`. It never touches settle's own tables.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use bank::sim::{FaultRates, Profile, SimConfig, Simulator};
use clap::Args;
use money::{Krw, SystemClock};

use super::CliError;

#[derive(Args, Debug)]
pub struct BankSimArgs {
    /// Port to listen on; 0 picks a free one (printed on the first line of stdout).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Latency profile: test (a few ms) or realistic (2–3 s per call).
    #[arg(long, default_value = "test")]
    profile: String,
    /// Every call's latency in milliseconds, instead of the profile's range (e.g.
    /// 2500 for a bank that answers in 2.5 s).
    #[arg(long)]
    latency_ms: Option<u64>,
    /// Seed for latency and faults; the same seed replays the same run.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The simulator's own database: sqlite:PATH or postgres://… (default:
    /// banksim.db in the user's data directory).
    #[arg(long, env = "SETTLE_BANKSIM_DATABASE_URL")]
    database_url: Option<String>,
    /// Per-call limit on deposit transfers, in won.
    #[arg(long, default_value_t = 100_000)]
    deposit_amount_max_krw: i64,
    /// Requests handled at once; more are answered 429.
    #[arg(long, default_value_t = 64)]
    concurrent_max: usize,
    /// Requests per second per client id; more are answered 429 (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    requests_per_s_max: u32,
    /// Fault: money moves but the caller sees a timeout (parts per million).
    #[arg(long, default_value_t = 0)]
    fault_timeout_after_commit_ppm: u32,
    /// Fault: HTTP 500 before commit (parts per million).
    #[arg(long, default_value_t = 0)]
    fault_server_error_ppm: u32,
    /// Fault: the account is refused as frozen (parts per million).
    #[arg(long, default_value_t = 0)]
    fault_frozen_account_ppm: u32,
    /// Fault: the holder name is refused as changed (parts per million).
    #[arg(long, default_value_t = 0)]
    fault_holder_name_changed_ppm: u32,
    /// Fault: HTTP 429 before commit, transient (parts per million).
    #[arg(long, default_value_t = 0)]
    fault_rate_limited_ppm: u32,
    /// Fault: "maintenance" before commit, transient (parts per million).
    #[arg(long, default_value_t = 0)]
    fault_maintenance_ppm: u32,
    /// Fault: the call is 250 ms slower than its drawn latency (parts per million).
    #[arg(long, default_value_t = 0)]
    fault_slow_ppm: u32,
    /// Fault: every transfer is answered 429 for this many seconds after start,
    /// then the bank recovers (an outage of throttling).
    #[arg(long, default_value_t = 0)]
    fault_rate_limited_for_s: u32,
    /// Serve HTTPS with a certificate from a CA generated at start.
    #[arg(long, requires = "tls_ca_out")]
    tls: bool,
    /// Where `--tls` writes its CA's certificate (PEM), for clients' `--bank-ca`.
    #[arg(long, requires = "tls")]
    tls_ca_out: Option<std::path::PathBuf>,
}

fn database_url(args: &BankSimArgs) -> anyhow::Result<String> {
    match &args.database_url {
        Some(url) => Ok(url.clone()),
        None => Ok(store::default_database_url()?.replace("settle.db", "banksim.db")),
    }
}

pub async fn run(args: BankSimArgs) -> anyhow::Result<()> {
    let profile = Profile::parse(&args.profile).ok_or_else(|| {
        CliError::new(
            "bad_profile",
            format!(
                "--profile must be test or realistic, not {:?}",
                args.profile
            ),
        )
    })?;
    let mut config = SimConfig::for_profile(profile, args.seed);
    if let Some(latency_ms) = args.latency_ms {
        config.latency_ms_min = latency_ms;
        config.latency_ms_max = latency_ms;
    }
    config.deposit_amount_max_krw = Krw::positive(args.deposit_amount_max_krw)
        .map_err(|e| CliError::new(e.code(), format!("--deposit-amount-max-krw: {e}")))?;
    if args.concurrent_max == 0 {
        return Err(
            CliError::new("bad_concurrent_max", "--concurrent-max must be positive").into(),
        );
    }
    config.concurrent_max = args.concurrent_max;
    config.requests_per_s_per_client_max =
        (args.requests_per_s_max > 0).then_some(args.requests_per_s_max);
    config.faults = FaultRates {
        timeout_after_commit_ppm: args.fault_timeout_after_commit_ppm,
        server_error_before_commit_ppm: args.fault_server_error_ppm,
        frozen_account_ppm: args.fault_frozen_account_ppm,
        holder_name_changed_ppm: args.fault_holder_name_changed_ppm,
        rate_limited_ppm: args.fault_rate_limited_ppm,
        maintenance_ppm: args.fault_maintenance_ppm,
        slow_ppm: args.fault_slow_ppm,
    };

    if args.fault_rate_limited_for_s > 0 {
        use money::Clock;
        config.rate_limited_until_ms =
            Some(SystemClock.now().unix_ms() + i64::from(args.fault_rate_limited_for_s) * 1_000);
    }

    let url = database_url(&args)?;
    let store = store::Store::connect(&url)
        .await
        .with_context(|| format!("opening the simulator database {}", store::redact(&url)))?;
    let sim = Simulator::open(store, config, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let address = listener.local_addr()?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match &args.tls_ca_out {
        Some(ca_out) => {
            let listener = tls_listener(listener, &args.host, ca_out)?;
            announce(&address, "https", &args)?;
            bank::sim::serve_simulator_tls(sim, listener, shutdown).await?;
        }
        None => {
            announce(&address, "http", &args)?;
            bank::sim::serve_simulator(sim, listener, shutdown).await?;
        }
    }
    Ok(())
}

/// Makes the CA and the server certificate (for `host`, 127.0.0.1 and localhost),
/// writes the CA's PEM to `ca_out`, and wraps `listener` in TLS.
fn tls_listener(
    listener: tokio::net::TcpListener,
    host: &str,
    ca_out: &std::path::Path,
) -> anyhow::Result<bank::tls::TlsListener> {
    let mut names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    if !names.iter().any(|name| name == host) && host != "0.0.0.0" {
        names.push(host.to_owned());
    }
    let certificate = bank::tls::SimCertificate::generate(&names)
        .map_err(|e| CliError::new(e.code(), e.to_string()))?;
    std::fs::write(ca_out, certificate.ca_pem())
        .with_context(|| format!("writing the CA certificate to {}", ca_out.display()))?;
    Ok(bank::tls::TlsListener::new(listener, &certificate)?)
}

/// The first line on stdout (scripts read the port from it), then the log line.
fn announce(
    address: &std::net::SocketAddr,
    scheme: &str,
    args: &BankSimArgs,
) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {address}")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(%address, scheme, profile = args.profile, seed = args.seed, "bank simulator started");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::BankSimArgs;

    #[derive(Parser, Debug)]
    struct Sim {
        #[command(flatten)]
        args: BankSimArgs,
    }

    #[test]
    fn the_simulator_listens_by_default_where_serve_looks_for_the_bank() {
        let sim = Sim::try_parse_from(["bank-sim"]).unwrap();
        assert_eq!(
            sim.args.port, 8080,
            "serve's --bank-url default is http://127.0.0.1:8080"
        );
    }
}
