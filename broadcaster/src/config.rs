//! Typed configuration, parsed once from the environment map
//! (`shared/spec/broadcaster.md`, `shared/spec/README.md` "Configuration").

use std::{net::IpAddr, time::Duration};

use ic_audit::loki::LokiConfig;
use ic_config::{ConfigError, Env, Environment, Port};
use ic_http::Secret;
use ic_telemetry::TelemetryConfig;

use crate::domain::{
    retry::{DEFAULT_SCHEDULE, RetrySchedule},
    subscription::{self, Subscription},
};

/// Where broadcaster listens (`HOST` and this port).
pub const PORT: Port = Port {
    variable: "BROADCASTER_PORT",
    default: 8002,
};

/// The variables that may come from a Dapr secret store (`ic_secrets::resolve`).
pub const SECRETS: &[&[&str]] = &[ic_audit::loki::SECRETS, BROADCASTER_SECRETS];

/// The signing secret and admin token, when they come from a Dapr secret store.
const BROADCASTER_SECRETS: &[&str] = &["WEBHOOK_SECRET", "BROADCASTER_ADMIN_TOKEN"];

/// broadcaster configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST` (default 0.0.0.0).
    pub host: IpAddr,
    /// `BROADCASTER_PORT` (default 8002): health and operating routes.
    pub port: u16,
    /// `BROADCASTER_METRICS_PORT` (default 7777): `/metrics`.
    pub metrics_port: u16,
    /// `ENVIRONMENT`.
    pub environment: Environment,
    /// `NATS_URL` (default nats://127.0.0.1:4222).
    pub nats_url: String,
    /// `BROADCASTER_SUBJECTS` (default `ic.>`): the events consumed.
    pub subjects: String,
    /// From `WEBHOOK_SUBSCRIPTIONS_FILE`, or `WEBHOOK_URL` + `WEBHOOK_SECRET`.
    pub subscriptions: Vec<Subscription>,
    /// `BROADCASTER_RETRY_SCHEDULE`.
    pub retry_schedule: RetrySchedule,
    /// `BROADCASTER_MAX_RETRY_AFTER_SECONDS` (default 3600): the most a `Retry-After`
    /// may delay a retry.
    pub max_retry_after: Duration,
    /// `BROADCASTER_BREAKER_FAILURES` (default 5): consecutive failures that open an
    /// endpoint's circuit breaker.
    pub breaker_failures: u32,
    /// `BROADCASTER_BREAKER_COOLDOWN_SECONDS` (default 30): how long it stays open.
    pub breaker_cooldown: Duration,
    /// `BROADCASTER_ALLOW_PRIVATE_TARGETS` (default false): the SSRF guard's override.
    pub allow_private_targets: bool,
    /// `BROADCASTER_ADMIN_TOKEN`: bearer token of the operating routes, when set.
    pub admin_token: Option<Secret>,
    /// `LOKI_URL` and friends: the audit shipper runs here when set.
    pub loki: Option<LokiConfig>,
    /// Logs, metrics and traces (`LOG_FORMAT`, `RUST_LOG`, `OTEL_*`).
    pub telemetry: TelemetryConfig,
}

fn subscriptions(vars: &Env) -> Result<Vec<Subscription>, ConfigError> {
    if let Some(path) = vars.raw("WEBHOOK_SUBSCRIPTIONS_FILE") {
        if vars.raw("WEBHOOK_URL").is_some() {
            return Err(ConfigError::Unsafe(
                "set WEBHOOK_SUBSCRIPTIONS_FILE or WEBHOOK_URL, not both".into(),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|err| {
            ConfigError::invalid(
                "WEBHOOK_SUBSCRIPTIONS_FILE",
                format!("a readable YAML or JSON file ({path}: {err})"),
            )
        })?;
        return subscription::parse_file(&text)
            .map_err(|err| ConfigError::Unsafe(format!("WEBHOOK_SUBSCRIPTIONS_FILE: {err}")));
    }
    match (vars.raw("WEBHOOK_URL"), vars.raw("WEBHOOK_SECRET")) {
        (None, None) => Ok(Vec::new()),
        (Some(_), None) => Err(ConfigError::Missing {
            name: "WEBHOOK_SECRET".into(),
            expected: "a Standard Webhooks secret (whsec_<base64>) for WEBHOOK_URL".into(),
        }),
        (None, Some(_)) => Err(ConfigError::Missing {
            name: "WEBHOOK_URL".into(),
            expected: "the http(s) URL WEBHOOK_SECRET signs for".into(),
        }),
        (Some(url), Some(secret)) => subscription::from_url(url, secret)
            .map(|s| vec![s])
            .map_err(|err| ConfigError::invalid("WEBHOOK_URL/WEBHOOK_SECRET", err.message)),
    }
}

impl Config {
    /// Parses and validates the environment map.
    pub fn from_env(vars: Env) -> Result<Self, ConfigError> {
        let environment: Environment = vars.parse_or(
            "ENVIRONMENT",
            "development, staging or production",
            Environment::Development,
        )?;
        let nats_url = vars.required_outside_dev(
            environment,
            &["NATS_URL"],
            "nats://host:port",
            "nats://127.0.0.1:4222",
        )?;
        let subjects = vars
            .raw("BROADCASTER_SUBJECTS")
            .unwrap_or("ic.>")
            .to_owned();
        if !subjects.starts_with("ic.") || subjects.contains(char::is_whitespace) {
            return Err(ConfigError::invalid(
                "BROADCASTER_SUBJECTS",
                "a NATS subject filter within ic.> (e.g. ic.services.>)",
            ));
        }
        let retry_schedule = RetrySchedule::parse(
            vars.raw("BROADCASTER_RETRY_SCHEDULE")
                .unwrap_or(DEFAULT_SCHEDULE),
        )
        .map_err(|e| ConfigError::invalid("BROADCASTER_RETRY_SCHEDULE", e))?;
        let max_retry_after = Duration::from_secs(vars.parse_or(
            "BROADCASTER_MAX_RETRY_AFTER_SECONDS",
            "a number of seconds",
            3600,
        )?);
        let breaker_failures: u32 =
            vars.parse_or("BROADCASTER_BREAKER_FAILURES", "a number from 1 to 1000", 5)?;
        if !(1..=1000).contains(&breaker_failures) {
            return Err(ConfigError::invalid(
                "BROADCASTER_BREAKER_FAILURES",
                "a number from 1 to 1000",
            ));
        }
        const COOLDOWN: &str = "BROADCASTER_BREAKER_COOLDOWN_SECONDS";
        const COOLDOWN_FORM: &str = "a number of seconds from 0.1 to 3600";
        let breaker_cooldown =
            Duration::try_from_secs_f64(vars.parse_or(COOLDOWN, COOLDOWN_FORM, 30.0)?)
                .ok()
                .filter(|d| (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(d))
                .ok_or_else(|| ConfigError::invalid(COOLDOWN, COOLDOWN_FORM))?;
        let allow_private_targets = vars.flag("BROADCASTER_ALLOW_PRIVATE_TARGETS", false)?;
        let admin_token = vars.secret("BROADCASTER_ADMIN_TOKEN");
        if environment == Environment::Production {
            if admin_token.is_none() {
                return Err(ConfigError::Unsafe(
                    "BROADCASTER_ADMIN_TOKEN must be set in production (the operating routes replay deliveries)".into(),
                ));
            }
            if allow_private_targets
                && !vars.flag("BROADCASTER_ALLOW_PRIVATE_TARGETS_IN_PRODUCTION", false)?
            {
                return Err(ConfigError::Unsafe(
                    "BROADCASTER_ALLOW_PRIVATE_TARGETS disables the SSRF guard; in production also set BROADCASTER_ALLOW_PRIVATE_TARGETS_IN_PRODUCTION=true".into(),
                ));
            }
        }
        let (host, port) = vars.listen(PORT)?;
        Ok(Self {
            host,
            port,
            metrics_port: vars.port("BROADCASTER_METRICS_PORT", 7777)?,
            environment,
            nats_url,
            subjects,
            subscriptions: subscriptions(&vars)?,
            retry_schedule,
            max_retry_after,
            breaker_failures,
            breaker_cooldown,
            allow_private_targets,
            admin_token,
            loki: LokiConfig::from_env(&vars)?,
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

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().copied().collect()
    }

    #[test]
    fn development_has_working_defaults() {
        let c = Config::from_env(env(&[])).unwrap();
        assert_eq!((c.port, c.metrics_port), (8002, 7777));
        assert_eq!(c.subjects, "ic.>");
        assert!(c.subscriptions.is_empty());
        assert_eq!(c.retry_schedule.max_attempts(), 10);
        assert!(!c.allow_private_targets);
    }

    #[test]
    fn webhook_url_needs_its_secret_and_the_reverse() {
        let err = Config::from_env(env(&[("WEBHOOK_URL", "https://h.example/in")])).unwrap_err();
        assert!(err.to_string().contains("WEBHOOK_SECRET"));
        let err = Config::from_env(env(&[("WEBHOOK_SECRET", SECRET)])).unwrap_err();
        assert!(err.to_string().contains("WEBHOOK_URL"));
        let c = Config::from_env(env(&[
            ("WEBHOOK_URL", "https://h.example/in"),
            ("WEBHOOK_SECRET", SECRET),
        ]))
        .unwrap();
        assert_eq!(c.subscriptions.len(), 1);
        let err = Config::from_env(env(&[
            ("WEBHOOK_URL", "https://h.example/in"),
            ("WEBHOOK_SECRET", "hunter2"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn production_needs_an_admin_token_and_keeps_the_ssrf_guard() {
        let base = [("ENVIRONMENT", "production"), ("NATS_URL", "nats://n:4222")];
        assert!(Config::from_env(env(&base)).is_err());
        let mut with_token = base.to_vec();
        with_token.push(("BROADCASTER_ADMIN_TOKEN", "t"));
        assert!(Config::from_env(env(&with_token)).is_ok());
        with_token.push(("BROADCASTER_ALLOW_PRIVATE_TARGETS", "true"));
        assert!(Config::from_env(env(&with_token)).is_err());
    }

    #[test]
    fn a_bad_schedule_or_subject_names_the_variable() {
        let err = Config::from_env(env(&[("BROADCASTER_RETRY_SCHEDULE", "5s,never")])).unwrap_err();
        assert!(err.to_string().contains("BROADCASTER_RETRY_SCHEDULE"));
        let err = Config::from_env(env(&[("BROADCASTER_SUBJECTS", "audit.>")])).unwrap_err();
        assert!(err.to_string().contains("BROADCASTER_SUBJECTS"));
        for bad in ["-1", "NaN", "inf", "1e30", "0"] {
            let err = Config::from_env(env(&[("BROADCASTER_BREAKER_COOLDOWN_SECONDS", bad)]))
                .unwrap_err();
            assert!(
                err.to_string()
                    .contains("BROADCASTER_BREAKER_COOLDOWN_SECONDS"),
                "{bad}: {err}"
            );
        }
    }
}
