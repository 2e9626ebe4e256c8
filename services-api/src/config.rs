//! Typed configuration, parsed once from the environment map.

use ic_audit::loki::LokiConfig;
use ic_backend::BackendSettings;
use ic_config::{ConfigError, Env, Port};
use ic_telemetry::TelemetryConfig;

/// Where services-api listens (`HOST` and this port).
pub const PORT: Port = Port {
    variable: "SERVICES_API_PORT",
    default: 8080,
};

/// The variables that may come from a Dapr secret store (`ic_secrets::resolve`).
pub const SECRETS: &[&[&str]] = &[ic_backend::SECRETS, ic_audit::loki::SECRETS];

/// services-api configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// What every backend reads (`HOST`, `SERVICES_API_PORT` (default 8080),
    /// `ENVIRONMENT`, `DATABASE_URL`, `DATABASE_MAX_CONNECTIONS`, `NATS_URL`,
    /// `APP_API_TOKEN`, telemetry).
    pub backend: BackendSettings,
    /// `LOKI_URL` (+ `LOKI_USERNAME`, `LOKI_API_KEY`, `LOKI_TENANT_ID`): when set, audit
    /// records are shipped to Loki and audit history is read from it.
    pub loki: Option<LokiConfig>,
}

impl Config {
    /// Parses and validates the environment map.
    pub fn from_env(vars: Env) -> Result<Self, ConfigError> {
        Ok(Self {
            backend: BackendSettings::from_env(&vars, crate::SERVICE_NAME, crate::VERSION, PORT)?,
            loki: LokiConfig::from_env(&vars)?,
        })
    }

    /// The telemetry settings.
    pub fn telemetry(&self) -> TelemetryConfig {
        self.backend.telemetry.clone()
    }
}

#[cfg(test)]
mod tests {
    use ic_config::Environment;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().copied().collect()
    }

    #[test]
    fn development_has_working_defaults_on_the_spec_port() {
        let config = Config::from_env(env(&[])).unwrap();
        assert_eq!(config.backend.port, 8080);
        assert_eq!(config.backend.environment, Environment::Development);
        let config = Config::from_env(env(&[("SERVICES_API_PORT", "9999")])).unwrap();
        assert_eq!(config.backend.port, 9999);
        assert!(Config::from_env(env(&[("SERVICES_API_PORT", "x")])).is_err());
    }

    #[test]
    fn loki_settings_are_parsed_and_half_credentials_refused() {
        let config = Config::from_env(env(&[
            ("LOKI_URL", "https://logs.example.net"),
            ("LOKI_USERNAME", "123"),
            ("LOKI_API_KEY", "k"),
            ("LOKI_TENANT_ID", "t"),
        ]))
        .unwrap();
        let loki = config.loki.unwrap();
        assert_eq!(loki.url, "https://logs.example.net");
        assert_eq!(loki.tenant_id.as_deref(), Some("t"));
        assert!(Config::from_env(env(&[("LOKI_URL", "logs")])).is_err());
        let err = Config::from_env(env(&[
            ("LOKI_URL", "http://l:3100"),
            ("LOKI_USERNAME", "u"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("LOKI_API_KEY"), "{err}");
        assert!(Config::from_env(env(&[])).unwrap().loki.is_none());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let config = Config::from_env(env(&[
            ("DATABASE_URL", "postgres://u:hunter2@db/ic"),
            ("APP_API_TOKEN", "tok3n"),
            ("LOKI_URL", "http://l:3100"),
            ("LOKI_USERNAME", "u"),
            ("LOKI_API_KEY", "l0ki-key"),
        ]))
        .unwrap();
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("hunter2")
                && !printed.contains("tok3n")
                && !printed.contains("l0ki-key"),
            "{printed}"
        );
    }
}
