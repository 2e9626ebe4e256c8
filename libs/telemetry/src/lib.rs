//! Telemetry shared by every service: structured logs, the per-request span and log
//! line, Prometheus metrics and W3C trace context.
//!
//! Contract: `shared/spec/README.md`, "Telemetry".

#[cfg(any(feature = "nats", feature = "reqwest"))]
pub mod carriers;
mod logging;
mod metrics;
mod trace_context;

pub use logging::{LogFormat, TelemetryConfig, TelemetryGuard, init, otlp_traces_endpoint};
pub use metrics::{
    HttpMetrics, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE, RouteLabel, Tracked,
    metrics_handler, track_http,
};
pub use trace_context::{SpanId, TRACEPARENT, TRACESTATE, TraceContext, TraceId, link_span};

/// Installs ring as rustls' crypto provider, once per process, first thing in `main`
/// (and in test helpers that build clients in-process): reqwest, sqlx, async-nats and
/// the OTLP exporter use rustls without a default provider (`shared/STACK.md`), and a
/// library never installs one behind its caller's back. Installing twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What `main` answers when the service could not start (ports, connections): the
/// cause logged, exit code 1.
pub fn failed_to_start(err: impl std::fmt::Display) -> std::process::ExitCode {
    tracing::error!(error = %err, "failed to start");
    std::process::ExitCode::FAILURE
}

/// `main`'s exit code once the service has stopped: 0, or 1 with the cause logged.
pub fn exit_code(stopped: std::io::Result<()>) -> std::process::ExitCode {
    match stopped {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "stopped with an error");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The correlation id's header, on HTTP and in NATS messages alike (`shared/spec/README.md`,
/// "Request identity headers"): the one spelling every crate uses.
pub const X_CORRELATION_ID: &str = "x-correlation-id";
