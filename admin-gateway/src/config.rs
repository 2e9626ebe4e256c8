//! Typed configuration, parsed once from the environment map.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use ic_audit::loki::LokiConfig;
use ic_config::{ConfigError, Env, Environment, Port};
use ic_gateway::{
    bearer::AuthSettings,
    settings::{GatewaySettings, http_url, origins, per_minute},
};
use ic_telemetry::TelemetryConfig;

/// Who decides authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// The Rego policies compiled in ([`crate::DEFAULT_POLICIES`]), or those of
    /// `ADMIN_POLICIES_DIR`, evaluated in-process.
    Embedded(Option<PathBuf>),
    /// An OPA server (`OPA_URL`), asked within `OPA_TIMEOUT_MS` (default 500).
    Opa {
        /// Its base URL.
        url: String,
        /// How long a decision may take before the request fails closed (503).
        timeout: Duration,
    },
}

/// Where admin-gateway listens (`HOST` and this port).
pub const PORT: Port = Port {
    variable: "ADMIN_GATEWAY_PORT",
    default: 8001,
};

/// The variables that may come from a Dapr secret store (`ic_secrets::resolve`).
pub const SECRETS: &[&[&str]] = &[ic_gateway::settings::SECRETS, ic_audit::loki::SECRETS];

/// admin-gateway configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`.
    pub host: IpAddr,
    /// `ADMIN_GATEWAY_PORT` (default 8001).
    pub port: u16,
    /// `ENVIRONMENT`.
    pub environment: Environment,
    /// Upstreams, connections, client IPs, the shared rate-limit store (both gateways').
    pub gateway: GatewaySettings,
    /// `ADMIN_WEBSITE_ORIGINS`: exact origins allowed by CORS (with credentials).
    pub origins: Vec<String>,
    /// `ADMIN_RATE_LIMIT_PER_MINUTE` (default 100), per user (`sub`).
    pub rate_limit_per_minute: u32,
    /// Authentication: `AUTHENTIK_ISSUER_URL` (required), `AUTHENTIK_ADMIN_AUDIENCE`
    /// (required), the key source and the rest of [`AuthSettings`].
    pub auth: AuthSettings,
    /// `OPA_URL` / `ADMIN_POLICIES_DIR`.
    pub authorization: Authorization,
    /// `NATS_URL` (default nats://127.0.0.1:4222 in development, required elsewhere):
    /// where audit records go (`IC_AUDIT`).
    pub nats_url: String,
    /// `LOKI_URL` and its credentials: when set, this gateway also ships `IC_AUDIT` to
    /// Loki (as services-api and broadcaster do).
    pub loki: Option<LokiConfig>,
    /// `CONTENT_MAX_UPLOAD_BYTES` (default 100 MiB): the upload route's body limit.
    pub max_upload_bytes: usize,
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
        let auth =
            AuthSettings::from_env(&vars, environment)?.ok_or_else(|| ConfigError::Missing {
                name: "AUTHENTIK_ISSUER_URL".into(),
                expected: "the token issuer, e.g. https://auth.example.org/application/o/admin/ \
                           (`cargo xtask up` runs a development issuer)"
                    .into(),
            })?;
        let authorization = match vars.raw("OPA_URL") {
            Some(_) => Authorization::Opa {
                url: http_url(&vars, "OPA_URL", "")?,
                timeout: Duration::from_millis(vars.parse_or(
                    "OPA_TIMEOUT_MS",
                    "milliseconds",
                    500,
                )?),
            },
            None => Authorization::Embedded(vars.raw("ADMIN_POLICIES_DIR").map(PathBuf::from)),
        };
        let max_upload_bytes: usize = vars.parse_or(
            "CONTENT_MAX_UPLOAD_BYTES",
            "a number of bytes",
            100 * 1024 * 1024,
        )?;
        let (host, port) = vars.listen(PORT)?;
        Ok(Self {
            host,
            port,
            environment,
            gateway: GatewaySettings::from_env(&vars, environment)?,
            origins: origins(
                &vars,
                "ADMIN_WEBSITE_ORIGINS",
                environment,
                "http://localhost:3001,http://127.0.0.1:3001",
            )?,
            rate_limit_per_minute: per_minute(&vars, "ADMIN_RATE_LIMIT_PER_MINUTE", 100)?,
            auth,
            authorization,
            nats_url: vars.required_outside_dev(
                environment,
                &["NATS_URL"],
                "nats://host:port",
                "nats://127.0.0.1:4222",
            )?,
            loki: LokiConfig::from_env(&vars)?,
            max_upload_bytes,
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
    use ic_gateway::jwks::KeySource;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().copied().collect()
    }

    const ISSUER: (&str, &str) = (
        "AUTHENTIK_ISSUER_URL",
        "http://127.0.0.1:9000/application/o/admin/",
    );
    const AUDIENCE: (&str, &str) = ("AUTHENTIK_ADMIN_AUDIENCE", "ic-admin");

    #[test]
    fn the_issuer_and_audience_are_required_and_keys_discovered_by_default() {
        let err = Config::from_env(env(&[])).unwrap_err().to_string();
        assert!(err.contains("AUTHENTIK_ISSUER_URL"), "{err}");
        let err = Config::from_env(env(&[ISSUER])).unwrap_err().to_string();
        assert!(err.contains("AUTHENTIK_ADMIN_AUDIENCE"), "{err}");
        let c = Config::from_env(env(&[ISSUER, AUDIENCE])).unwrap();
        assert_eq!(c.port, 8001);
        assert_eq!(c.rate_limit_per_minute, 100);
        assert_eq!(c.max_upload_bytes, 100 * 1024 * 1024);
        assert_eq!(c.authorization, Authorization::Embedded(None));
        assert!(matches!(c.auth.source, KeySource::Discovery { .. }));
        assert_eq!(c.auth.verifier.clock_skew, Duration::from_secs(60));
        let c = Config::from_env(env(&[
            ISSUER,
            AUDIENCE,
            ("AUTH_JWKS_FILE", "/etc/jwks.json"),
            ("OPA_URL", "http://127.0.0.1:8181"),
        ]))
        .unwrap();
        assert_eq!(c.auth.source, KeySource::File("/etc/jwks.json".into()));
        assert!(matches!(c.authorization, Authorization::Opa { .. }));
    }

    #[test]
    fn malformed_values_name_their_variable() {
        for (name, value) in [
            ("ADMIN_RATE_LIMIT_PER_MINUTE", "0"),
            ("ADMIN_WEBSITE_ORIGINS", "*"),
            ("OPA_URL", "opa:8181"),
            ("JWT_CLOCK_SKEW_SECONDS", "3600"),
            ("JWT_ALGORITHMS", "HS256"),
            ("JWT_ALGORITHMS", "none"),
            ("AUTHENTIK_JWKS_URL", "ftp://x/jwks"),
            ("CONTENT_MAX_UPLOAD_BYTES", "lots"),
            ("AUTH_VERIFY_PER_MINUTE", "0"),
        ] {
            let err = Config::from_env(env(&[ISSUER, AUDIENCE, (name, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{name}={value}: {err}");
        }
        // Outside development NATS must be named and the issuer must be https.
        let err = Config::from_env(env(&[
            (
                "AUTHENTIK_ISSUER_URL",
                "https://auth.example.org/application/o/admin/",
            ),
            AUDIENCE,
            ("ENVIRONMENT", "staging"),
            ("APP_API_TOKEN", "t"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("NATS_URL"), "{err}");
        let err = Config::from_env(env(&[
            ISSUER,
            AUDIENCE,
            ("ENVIRONMENT", "staging"),
            ("APP_API_TOKEN", "t"),
            ("NATS_URL", "nats://nats:4222"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("AUTHENTIK_ISSUER_URL") && err.contains("https"),
            "{err}"
        );
    }
}
