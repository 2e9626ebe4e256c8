//! Configuration helpers. Binaries collect `std::env::vars()` once in `main` and hand
//! the map to their `Config::from_map`; tests feed a map directly. A missing or malformed
//! value is a one-line [`ConfigError`] naming the variable and the expected form, which
//! `main` prints before exiting with code 2 (`shared/spec/README.md`, "Configuration").

use std::{collections::HashMap, fmt::Display, net::IpAddr, str::FromStr};

use ic_http::Secret;

/// The process's open-files limit (the soft `RLIMIT_NOFILE`, read from
/// `/proc/self/limits`; 1024, the usual default, where that cannot be read): what
/// connection limits are sized from, so a server never runs out of file descriptors.
pub fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| parse_open_files(&limits))
        .unwrap_or(1024)
}

fn parse_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    match soft {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

/// The deployment environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    /// Working defaults for everything.
    #[default]
    Development,
    /// Pre-production.
    Staging,
    /// Refuses default secrets and disabled safety features.
    Production,
}

impl Environment {
    /// As written in logs, health and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }
}

impl FromStr for Environment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Self::Development),
            "staging" => Ok(Self::Staging),
            "production" | "prod" => Ok(Self::Production),
            _ => Err("development, staging or production".into()),
        }
    }
}

impl Display for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration error: names the variable and the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Required and absent.
    #[error("{name} is not set (expected {expected})")]
    Missing {
        /// Variable.
        name: String,
        /// Expected form.
        expected: String,
    },
    /// Present but malformed.
    #[error("{name} is invalid: expected {expected}")]
    Invalid {
        /// Variable.
        name: String,
        /// Expected form.
        expected: String,
    },
    /// A safety rule for the environment.
    #[error("{0}")]
    Unsafe(String),
}

impl ConfigError {
    /// `name` is present but not of the `expected` form.
    pub fn invalid(name: &str, expected: impl Into<String>) -> Self {
        Self::Invalid {
            name: name.to_owned(),
            expected: expected.into(),
        }
    }
}

/// The exit code for configuration errors.
pub const EXIT_CONFIG: u8 = 2;

/// A typed view of an environment map.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self {
            vars: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

impl Env {
    /// The raw value, if set and not blank.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The first of several names that is set (aliases such as
    /// `DATABASE_URL` / `DATABASE_CONNECTION_STRING`).
    pub fn first(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.raw(n))
    }

    /// Every set, non-blank variable whose name starts with `prefix`, sorted by name
    /// (settings a library passes through as a family, such as `AZURE_STORAGE_*`).
    pub fn with_prefix(&self, prefix: &str) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = self
            .vars
            .keys()
            .filter(|name| name.starts_with(prefix))
            .filter_map(|name| self.raw(name).map(|value| (name.as_str(), value)))
            .collect();
        out.sort_unstable();
        out
    }

    /// A parsed optional value.
    pub fn parse<T: FromStr>(&self, name: &str, expected: &str) -> Result<Option<T>, ConfigError> {
        self.raw(name)
            .map(|v| v.parse().map_err(|_| ConfigError::invalid(name, expected)))
            .transpose()
    }

    /// A parsed value with a default.
    pub fn parse_or<T: FromStr>(
        &self,
        name: &str,
        expected: &str,
        default: T,
    ) -> Result<T, ConfigError> {
        Ok(self.parse(name, expected)?.unwrap_or(default))
    }

    /// A boolean (`true/false/1/0/yes/no`).
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some(_) => Err(ConfigError::invalid(name, "true or false")),
        }
    }

    /// A secret; optional.
    pub fn secret(&self, name: &str) -> Option<Secret> {
        self.raw(name).map(Secret::new)
    }

    /// A value that must be set outside development; in development `dev_default` is
    /// used when absent.
    pub fn required_outside_dev(
        &self,
        environment: Environment,
        names: &[&str],
        expected: &str,
        dev_default: &str,
    ) -> Result<String, ConfigError> {
        match (self.first(names), environment) {
            (Some(v), _) => Ok(v.to_owned()),
            (None, Environment::Development) => Ok(dev_default.to_owned()),
            (None, _) => Err(ConfigError::Missing {
                name: names.join(" or "),
                expected: expected.to_owned(),
            }),
        }
    }

    /// The telemetry settings every service reads the same way: `LOG_FORMAT`, `RUST_LOG`,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
    pub fn telemetry(
        &self,
        service_name: &'static str,
        version: &'static str,
        environment: Environment,
    ) -> Result<ic_telemetry::TelemetryConfig, ConfigError> {
        Ok(ic_telemetry::TelemetryConfig {
            service_name,
            version,
            environment: environment.to_string(),
            log_format: self.parse_or(
                "LOG_FORMAT",
                "json or pretty",
                ic_telemetry::LogFormat::Json,
            )?,
            filter: self.raw("RUST_LOG").map(str::to_owned),
            otlp_endpoint: ic_telemetry::otlp_traces_endpoint(
                self.raw("OTEL_EXPORTER_OTLP_ENDPOINT"),
                self.raw("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            ),
        })
    }

    /// The port of `<NAME>_PORT`, or `default`.
    pub fn port(&self, name: &str, default: u16) -> Result<u16, ConfigError> {
        self.parse_or(name, "a TCP port number (0-65535)", default)
    }

    /// Where a service listens: `HOST` (default 0.0.0.0) and its [`Port`]. Read alone by
    /// `<binary> healthcheck`, which needs nothing else (no secrets) to probe `/health`.
    pub fn listen(&self, port: Port) -> Result<(IpAddr, u16), ConfigError> {
        Ok((
            self.parse_or(
                "HOST",
                "an IP address such as 0.0.0.0",
                IpAddr::from([0, 0, 0, 0]),
            )?,
            self.port(port.variable, port.default)?,
        ))
    }

    /// Sets `name` (a secret read from a secret store replaces the environment's value).
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(name.into(), value.into());
    }
}

/// A service's port: its `<NAME>_PORT` variable and default (`shared/spec/README.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    /// `SERVICES_API_PORT`, …
    pub variable: &'static str,
    /// 8080, …
    pub default: u16,
}

impl ConfigError {
    /// What `main` does with a configuration error: one line on stderr naming the
    /// service, the variable and the expected form, and exit code 2 ([`EXIT_CONFIG`]),
    /// before telemetry is up (`shared/spec/README.md`, "Configuration").
    pub fn exit(&self, service: &str) -> std::process::ExitCode {
        eprintln!("{service}: configuration error: {self}");
        std::process::ExitCode::from(EXIT_CONFIG)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_files_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             63704                63704                processes\n\
                      Max open files            20000                524288               files\n";
        assert_eq!(parse_open_files(limits), Some(20000));
        assert_eq!(
            parse_open_files(
                "Max open files            unlimited            unlimited            files"
            ),
            Some(u64::MAX)
        );
        assert_eq!(parse_open_files("nothing here"), None);
        assert!(open_files_limit() >= 16, "this process has some limit");
    }

    #[test]
    fn errors_name_the_variable_and_the_expected_form() {
        let env: Env = [("SERVICES_API_PORT", "eighty"), ("FLAG", "maybe")]
            .into_iter()
            .collect();
        let err = env.port("SERVICES_API_PORT", 8080).unwrap_err().to_string();
        assert!(
            err.contains("SERVICES_API_PORT") && err.contains("TCP port"),
            "{err}"
        );
        assert!(
            env.flag("FLAG", false)
                .unwrap_err()
                .to_string()
                .contains("FLAG")
        );
        assert_eq!(env.port("OTHER_PORT", 1).unwrap(), 1);
    }

    #[test]
    fn required_values_have_defaults_only_in_development() {
        let env = Env::default();
        assert_eq!(
            env.required_outside_dev(Environment::Development, &["A", "B"], "x", "d")
                .unwrap(),
            "d"
        );
        let err = env
            .required_outside_dev(Environment::Production, &["A", "B"], "x", "d")
            .unwrap_err()
            .to_string();
        assert!(err.contains("A or B"), "{err}");
        let env: Env = [("B", "v")].into_iter().collect();
        assert_eq!(
            env.required_outside_dev(Environment::Production, &["A", "B"], "x", "d")
                .unwrap(),
            "v"
        );
    }
}
