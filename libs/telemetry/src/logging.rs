use std::str::FromStr;

use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

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
}

/// Keeps telemetry alive; dropping it flushes what is buffered.
#[derive(Debug)]
#[must_use = "dropping the guard stops telemetry"]
pub struct TelemetryGuard {
    _private: (),
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
    let registry = tracing_subscriber::registry().with(filter);
    let result = match config.log_format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init(),
    };
    if result.is_ok() {
        tracing::info!(
            service = config.service_name,
            version = config.version,
            environment = %config.environment,
            "telemetry initialised"
        );
    }
    TelemetryGuard { _private: () }
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
}
