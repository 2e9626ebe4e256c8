//! Typed configuration, parsed once from the environment map.

use std::net::IpAddr;

use ic_audit::loki::LokiConfig;
use ic_config::{ConfigError, Env, Environment};
use ic_http::Secret;
use ic_telemetry::TelemetryConfig;

/// services-api configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST` (default 0.0.0.0).
    pub host: IpAddr,
    /// `SERVICES_API_PORT` (default 8080).
    pub port: u16,
    /// `ENVIRONMENT`.
    pub environment: Environment,
    /// `DATABASE_URL` or `DATABASE_CONNECTION_STRING`.
    pub database_url: Secret,
    /// `DATABASE_MAX_CONNECTIONS` (default 10).
    pub database_max_connections: u32,
    /// `NATS_URL` (default nats://127.0.0.1:4222).
    pub nats_url: String,
    /// `APP_API_TOKEN`: when set, every request must carry it as `dapr-api-token`.
    pub app_api_token: Option<Secret>,
    /// `LOKI_URL` (+ `LOKI_USERNAME`, `LOKI_API_KEY`, `LOKI_TENANT_ID`): when set, audit
    /// records are shipped to Loki and audit history is read from it.
    pub loki: Option<LokiConfig>,
    /// Logs, metrics and traces (`LOG_FORMAT`, `RUST_LOG`, `OTEL_*`).
    pub telemetry: TelemetryConfig,
}

const DEV_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:55432/international_center";

impl Config {
    /// Parses and validates the environment map.
    pub fn from_env(vars: Env) -> Result<Self, ConfigError> {
        let environment: Environment = vars.parse_or(
            "ENVIRONMENT",
            "development, staging or production",
            Environment::Development,
        )?;
        let database_url = vars.required_outside_dev(
            environment,
            &["DATABASE_URL", "DATABASE_CONNECTION_STRING"],
            "postgres://user:password@host:port/database",
            DEV_DATABASE_URL,
        )?;
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(ConfigError::invalid(
                "DATABASE_URL",
                "postgres://user:password@host:port/database",
            ));
        }
        let nats_url = vars.required_outside_dev(
            environment,
            &["NATS_URL"],
            "nats://host:port",
            "nats://127.0.0.1:4222",
        )?;
        let app_api_token = vars.secret("APP_API_TOKEN");
        if environment == Environment::Production
            && app_api_token.is_none()
            && !vars.flag("ALLOW_UNAUTHENTICATED_BACKEND", false)?
        {
            return Err(ConfigError::Unsafe(
                "APP_API_TOKEN must be set in production (or ALLOW_UNAUTHENTICATED_BACKEND=true to accept forgeable identity headers)".into(),
            ));
        }
        let database_max_connections: u32 = vars.parse_or(
            "DATABASE_MAX_CONNECTIONS",
            "a number of connections (1-1000)",
            10,
        )?;
        if !(1..=1000).contains(&database_max_connections) {
            return Err(ConfigError::invalid(
                "DATABASE_MAX_CONNECTIONS",
                "a number of connections (1-1000)",
            ));
        }
        let loki = LokiConfig::from_env(&vars)?;
        Ok(Self {
            loki,
            host: vars.parse_or(
                "HOST",
                "an IP address such as 0.0.0.0",
                IpAddr::from([0, 0, 0, 0]),
            )?,
            port: vars.port("SERVICES_API_PORT", 8080)?,
            environment,
            database_url: Secret::new(database_url),
            database_max_connections,
            nats_url,
            app_api_token,
            telemetry: vars.telemetry(crate::SERVICE_NAME, crate::VERSION, environment)?,
        })
    }

    /// The telemetry settings.
    pub fn telemetry(&self) -> TelemetryConfig {
        self.telemetry.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().copied().collect()
    }

    #[test]
    fn development_has_working_defaults() {
        let config = Config::from_env(env(&[])).unwrap();
        assert_eq!(config.port, 8080);
        assert_eq!(config.environment, Environment::Development);
        assert!(config.database_url.expose().starts_with("postgres://"));
    }

    #[test]
    fn the_connection_string_alias_is_accepted_and_ports_are_overridable() {
        let config = Config::from_env(env(&[
            ("DATABASE_CONNECTION_STRING", "postgres://u:p@db:5432/ic"),
            ("SERVICES_API_PORT", "9999"),
        ]))
        .unwrap();
        assert_eq!(config.database_url.expose(), "postgres://u:p@db:5432/ic");
        assert_eq!(config.port, 9999);
    }

    #[test]
    fn production_refuses_missing_database_and_missing_app_token() {
        let err = Config::from_env(env(&[("ENVIRONMENT", "production")])).unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
        let err = Config::from_env(env(&[
            ("ENVIRONMENT", "production"),
            ("DATABASE_URL", "postgres://db/ic"),
            ("NATS_URL", "nats://n:4222"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("APP_API_TOKEN"), "{err}");
    }

    #[test]
    fn malformed_values_name_the_variable() {
        for (name, value) in [
            ("SERVICES_API_PORT", "x"),
            ("ENVIRONMENT", "moon"),
            ("LOG_FORMAT", "xml"),
            ("DATABASE_URL", "mysql://x"),
            ("DATABASE_MAX_CONNECTIONS", "0"),
            ("DATABASE_MAX_CONNECTIONS", "5000"),
        ] {
            let err = Config::from_env(env(&[(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
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
            !printed.contains("hunter2") && !printed.contains("tok3n"),
            "{printed}"
        );
    }
}
