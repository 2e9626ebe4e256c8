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

/// The correlation id's header, on HTTP and in NATS messages alike (`shared/spec/README.md`,
/// "Request identity headers"): the one spelling every crate uses.
pub const X_CORRELATION_ID: &str = "x-correlation-id";
