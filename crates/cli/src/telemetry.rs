//! Logging setup. Logs go to stderr so that stdout stays clean JSON for scripts.

use tracing_subscriber::EnvFilter;

/// Starts the `tracing` subscriber. `RUST_LOG` wins over `--verbose`; `quiet`
/// shows only errors unless `--verbose` is given.
pub fn init(verbose: bool, quiet: bool) {
    let default = match (verbose, quiet) {
        (true, _) => "info",
        (false, true) => "error",
        (false, false) => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
