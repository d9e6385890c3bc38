//! Logging setup. Logs go to stderr so that stdout stays clean JSON for scripts.

use tracing_subscriber::EnvFilter;

/// Starts the `tracing` subscriber. `RUST_LOG` wins over `--verbose`.
pub fn init(verbose: bool) {
    let default = if verbose { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
