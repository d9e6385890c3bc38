//! Request metrics and the Prometheus text at `/metrics`: a latency histogram and a
//! counter per (route, method, status), next to the counters every other crate
//! records through the `metrics` facade (ledger, events, channel, fees, payroll).
//!
//! The recorder is process-wide: the first [`prometheus`] call installs it; when
//! another recorder was installed first, `/metrics` says so instead of lying.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const LATENCY_BUCKETS_S: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus handle, installing the recorder on first use.
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_S)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(error) => {
                    tracing::warn!(error = %error, "no Prometheus recorder: another is installed");
                    None
                }
            }
        })
        .as_ref()
}

/// The text exposition of every metric.
pub fn render() -> String {
    match prometheus() {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => "# another metrics recorder is installed in this process\n".to_owned(),
    }
}

/// Middleware: times each request and counts it by route template, method and
/// status (never by raw path, so ids cannot blow up the label set).
pub(crate) async fn record(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let seconds = started.elapsed().as_secs_f64();
    metrics::histogram!("api_request_duration_seconds", "route" => route.clone(), "method" => method.clone())
        .record(seconds);
    metrics::counter!("api_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}
