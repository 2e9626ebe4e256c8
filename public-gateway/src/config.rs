//! Typed configuration, parsed once from the environment map.

use std::net::IpAddr;

use ic_config::{ConfigError, Env, Environment, Port};
use ic_gateway::{
    bearer::AuthSettings,
    settings::{GatewaySettings, origins, per_minute},
};
use ic_telemetry::TelemetryConfig;

/// Where public-gateway listens (`HOST` and this port).
pub const PORT: Port = Port {
    variable: "PUBLIC_GATEWAY_PORT",
    default: 8000,
};

/// The variables that may come from a Dapr secret store (`ic_secrets::resolve`).
pub const SECRETS: &[&[&str]] = &[ic_gateway::settings::SECRETS];

/// public-gateway configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`.
    pub host: IpAddr,
    /// `PUBLIC_GATEWAY_PORT` (default 8000).
    pub port: u16,
    /// `ENVIRONMENT`.
    pub environment: Environment,
    /// Upstreams, connections, client IPs, the shared rate-limit store (both gateways').
    pub gateway: GatewaySettings,
    /// `PUBLIC_WEBSITE_ORIGINS`: exact origins allowed by CORS.
    pub origins: Vec<String>,
    /// `PUBLIC_RATE_LIMIT_PER_MINUTE` (default 1000).
    pub rate_limit_per_minute: u32,
    /// Bearer tokens (`AUTHENTIK_ISSUER_URL` and the rest of [`AuthSettings`]): when set,
    /// a caller sending a valid token is forwarded as its user; unset, every caller is
    /// anonymous and a token is refused.
    pub auth: Option<AuthSettings>,
    /// Logs, metrics and traces (`LOG_FORMAT`, `RUST_LOG`, `OTEL_*`).
    pub telemetry: TelemetryConfig,
}

impl Config {
    /// Parses and validates the environment map.
    pub fn from_env(vars: Env) -> Result<Self, ConfigError> {
        let environment: Environment = vars.parse_or(
            "ENVIRONMENT",
            "development, staging or production",
            Environment::Development,
        )?;
        let (host, port) = vars.listen(PORT)?;
        Ok(Self {
            host,
            port,
            environment,
            gateway: GatewaySettings::from_env(&vars, environment)?,
            origins: origins(
                &vars,
                "PUBLIC_WEBSITE_ORIGINS",
                environment,
                "http://localhost:3000,http://127.0.0.1:3000",
            )?,
            rate_limit_per_minute: per_minute(&vars, "PUBLIC_RATE_LIMIT_PER_MINUTE", 1000)?,
            auth: AuthSettings::from_env(&vars, environment)?,
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
    use ic_gateway::proxy::Upstreams;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().copied().collect()
    }

    #[test]
    fn development_defaults_point_at_the_local_services() {
        let c = Config::from_env(env(&[])).unwrap();
        assert_eq!(c.port, 8000);
        assert_eq!(c.rate_limit_per_minute, 1000);
        assert_eq!(
            c.gateway
                .upstreams
                .uri("services-api", "/x", None)
                .unwrap()
                .to_string(),
            "http://127.0.0.1:8080/x"
        );
        assert!(c.auth.is_none(), "anonymous unless an issuer is configured");
    }

    #[test]
    fn dapr_mode_and_malformed_values() {
        let c = Config::from_env(env(&[("DAPR_HTTP_PORT", "3500")])).unwrap();
        assert!(matches!(
            c.gateway.upstreams,
            Upstreams::Dapr { port: 3500 }
        ));
        for (name, value) in [
            ("PUBLIC_WEBSITE_ORIGINS", "*"),
            ("PUBLIC_RATE_LIMIT_PER_MINUTE", "0"),
            ("SERVICES_API_URL", "not a url"),
            ("AUTHENTIK_JWKS_URL", "https://auth.example.org/jwks/"),
        ] {
            let err = Config::from_env(env(&[(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(name) || err.contains("AUTHENTIK_ISSUER_URL"),
                "{name}={value}: {err}"
            );
        }
        let err = Config::from_env(env(&[("ENVIRONMENT", "production")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("APP_API_TOKEN"), "{err}");
    }
}
