use std::str::FromStr;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer, fmt, layer::SubscriberExt, util::SubscriberInitExt};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line (the default: what Loki and log shippers read).
    #[default]
    Json,
    /// Human-readable lines for a terminal.
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" | "text" => Ok(Self::Pretty),
            other => Err(format!("expected json or pretty, got {other:?}")),
        }
    }
}

/// Telemetry settings, parsed by the binary from `LOG_FORMAT`, `RUST_LOG` and friends.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// The service name written on every line (the crate / Dapr app id).
    pub service_name: &'static str,
    /// The service version.
    pub version: &'static str,
    /// development | staging | production.
    pub environment: String,
    /// Line format.
    pub log_format: LogFormat,
    /// An `EnvFilter` directive (`RUST_LOG`); `info` when absent.
    pub filter: Option<String>,
    /// The OTLP/HTTP traces URL (see [`otlp_traces_endpoint`]); spans are exported there
    /// when set.
    pub otlp_endpoint: Option<String>,
}

/// The OTLP/HTTP traces URL from the standard variables:
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is, else `OTEL_EXPORTER_OTLP_ENDPOINT` +
/// `/v1/traces`.
pub fn otlp_traces_endpoint(base: Option<&str>, traces: Option<&str>) -> Option<String> {
    traces
        .map(str::to_owned)
        .or_else(|| base.map(|b| format!("{}/v1/traces", b.trim_end_matches('/'))))
}

/// Keeps telemetry alive; dropping it flushes and stops the span exporter.
#[derive(Debug)]
#[must_use = "dropping the guard stops telemetry"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown_with_timeout(std::time::Duration::from_secs(5));
        }
    }
}

fn tracer_provider(config: &TelemetryConfig, endpoint: &str) -> Option<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .with_timeout(std::time::Duration::from_secs(10))
        .build();
    let exporter = match exporter {
        Ok(exporter) => exporter,
        Err(err) => {
            eprintln!("{}: OTLP exporter disabled: {err}", config.service_name);
            return None;
        }
    };
    let resource = Resource::builder_empty()
        .with_service_name(config.service_name)
        .with_attributes([
            opentelemetry::KeyValue::new("service.version", config.version),
            opentelemetry::KeyValue::new("deployment.environment", config.environment.clone()),
        ])
        .build();
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build(),
    )
}

/// Installs the global tracing subscriber. Call once, first thing in `main`.
///
/// A second call (tests that build several apps) is a no-op.
pub fn init(config: &TelemetryConfig) -> TelemetryGuard {
    let filter = config
        .filter
        .as_deref()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let provider = config
        .otlp_endpoint
        .as_deref()
        .and_then(|endpoint| tracer_provider(config, endpoint));
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(config.service_name))
            .boxed()
    });
    let fmt_layer = match config.log_format {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => fmt::layer().compact().boxed(),
    };
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel)
        .try_init();
    if result.is_ok() {
        tracing::info!(
            service = config.service_name,
            version = config.version,
            environment = %config.environment,
            otlp = config.otlp_endpoint.as_deref().unwrap_or("off"),
            "telemetry initialised"
        );
    }
    TelemetryGuard { provider }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_parses_both_spellings_and_rejects_others() {
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("pretty".parse::<LogFormat>(), Ok(LogFormat::Pretty));
        assert!("xml".parse::<LogFormat>().is_err());
    }

    #[test]
    fn the_traces_endpoint_follows_the_otel_variables() {
        assert_eq!(otlp_traces_endpoint(None, None), None);
        assert_eq!(
            otlp_traces_endpoint(Some("http://alloy:4318/"), None).as_deref(),
            Some("http://alloy:4318/v1/traces")
        );
        assert_eq!(
            otlp_traces_endpoint(Some("http://a:4318"), Some("http://b:4318/custom")).as_deref(),
            Some("http://b:4318/custom")
        );
    }
}
