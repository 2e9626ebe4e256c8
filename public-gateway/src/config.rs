//! Typed configuration, parsed once from the environment map.

use std::{collections::HashMap, net::IpAddr, time::Duration};

use ic_config::{ConfigError, Env, Environment};
use ic_gateway::{bearer::AuthSettings, client_ip::TrustedProxies, proxy::Upstreams};
use ic_http::Secret;
use ic_telemetry::TelemetryConfig;

/// public-gateway configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST`.
    pub host: IpAddr,
    /// `PUBLIC_GATEWAY_PORT` (default 8000).
    pub port: u16,
    /// `ENVIRONMENT`.
    pub environment: Environment,
    /// `DAPR_HTTP_PORT` (sidecar invocation) or `SERVICES_API_URL` / `CONTENT_API_URL`.
    pub upstreams: Upstreams,
    /// `APP_API_TOKEN`, sent upstream as `dapr-api-token`.
    pub app_api_token: Option<Secret>,
    /// `PUBLIC_WEBSITE_ORIGINS`: exact origins allowed by CORS.
    pub origins: Vec<String>,
    /// `PUBLIC_RATE_LIMIT_PER_MINUTE` (default 1000).
    pub rate_limit_per_minute: u32,
    /// `TRUSTED_PROXIES`.
    pub trusted_proxies: TrustedProxies,
    /// `RATE_LIMIT_REDIS_URL`: limits shared by every replica through Redis.
    pub rate_limit_redis_url: Option<String>,
    /// `UPSTREAM_CONNECT_TIMEOUT_MS` (default 2000).
    pub connect_timeout: Duration,
    /// `UPSTREAM_TIMEOUT_SECONDS` (default 30): until the upstream's response headers.
    pub response_timeout: Duration,
    /// `MAX_CONNECTIONS`: client connections served at once (default: half the
    /// open-files limit less 64, at most 10,000); more wait in the listen backlog.
    pub max_connections: usize,
    /// `UPSTREAM_MAX_CONNECTIONS`: connections in use at once per upstream (default: an
    /// eighth of the open-files limit less 64, at most 512); a request past that waits up to the
    /// connect timeout, then gets 503.
    pub upstream_max_connections: usize,
    /// Bearer tokens (`AUTHENTIK_ISSUER_URL` and the rest of [`AuthSettings`]): when set,
    /// a caller sending a valid token is forwarded as its user; unset, every caller is
    /// anonymous and a token is refused.
    pub auth: Option<AuthSettings>,
    /// Logs, metrics and traces (`LOG_FORMAT`, `RUST_LOG`, `OTEL_*`).
    pub telemetry: TelemetryConfig,
}

/// `MAX_CONNECTIONS` and `UPSTREAM_MAX_CONNECTIONS`, by default sized from the open-files
/// limit so that clients, the connections to two upstreams and the rest of the process
/// (64 files and sockets) fit in it; set explicitly, they must fit in it too.
fn connection_limits(vars: &Env, open_files: u64) -> Result<(usize, usize), ConfigError> {
    const OWN_FILES: usize = 64;
    let open_files = usize::try_from(open_files).unwrap_or(usize::MAX);
    let spare = open_files.saturating_sub(OWN_FILES);
    let clients: usize = vars.parse_or(
        "MAX_CONNECTIONS",
        "a number of connections",
        (spare / 2).clamp(1, 10_000),
    )?;
    let upstream: usize = vars.parse_or(
        "UPSTREAM_MAX_CONNECTIONS",
        "a number of connections",
        (spare / 8).clamp(1, 512),
    )?;
    let needed = clients
        .saturating_add(upstream.saturating_mul(2))
        .saturating_add(OWN_FILES);
    if clients == 0 || upstream == 0 || needed > open_files {
        return Err(ConfigError::invalid(
            if vars.raw("MAX_CONNECTIONS").is_some() {
                "MAX_CONNECTIONS"
            } else {
                "UPSTREAM_MAX_CONNECTIONS"
            },
            format!(
                "connection limits that fit in the open-files limit ({open_files}): \
                 MAX_CONNECTIONS + 2 × UPSTREAM_MAX_CONNECTIONS + 64, at least 1 each"
            ),
        ));
    }
    Ok((clients, upstream))
}

fn http_url(vars: &Env, name: &str, default: &str) -> Result<String, ConfigError> {
    let value = vars.raw(name).unwrap_or(default);
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Ok(value.to_owned())
        }
        _ => Err(ConfigError::invalid(
            name,
            "an http(s) URL such as http://127.0.0.1:8080",
        )),
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
        let upstreams = match vars.parse::<u16>("DAPR_HTTP_PORT", "a TCP port number")? {
            Some(port) => Upstreams::Dapr { port },
            None => Upstreams::Direct(HashMap::from([
                (
                    "services-api",
                    http_url(&vars, "SERVICES_API_URL", "http://127.0.0.1:8080")?,
                ),
                (
                    "content-api",
                    http_url(&vars, "CONTENT_API_URL", "http://127.0.0.1:8081")?,
                ),
            ])),
        };
        let origins: Vec<String> = vars
            .raw("PUBLIC_WEBSITE_ORIGINS")
            .unwrap_or(if environment == Environment::Development {
                "http://localhost:3000,http://127.0.0.1:3000"
            } else {
                ""
            })
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        for origin in &origins {
            let ok = url::Url::parse(origin)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.path() == "/");
            if !ok || origin == "*" {
                return Err(ConfigError::invalid(
                    "PUBLIC_WEBSITE_ORIGINS",
                    format!(
                        "a comma list of exact origins such as https://example.org (not {origin:?})"
                    ),
                ));
            }
        }
        let rate_limit_per_minute: u32 = vars.parse_or(
            "PUBLIC_RATE_LIMIT_PER_MINUTE",
            "a number of requests (1-1000000)",
            1000,
        )?;
        if !(1..=1_000_000).contains(&rate_limit_per_minute) {
            return Err(ConfigError::invalid(
                "PUBLIC_RATE_LIMIT_PER_MINUTE",
                "a number of requests (1-1000000)",
            ));
        }
        let trusted_proxies =
            TrustedProxies::parse(vars.raw("TRUSTED_PROXIES").unwrap_or_default()).map_err(
                |e| ConfigError::invalid("TRUSTED_PROXIES", format!("a comma list of CIDRs ({e})")),
            )?;
        let rate_limit_redis_url = vars.raw("RATE_LIMIT_REDIS_URL").map(str::to_owned);
        if let Some(url) = &rate_limit_redis_url
            && !url::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some())
        {
            return Err(ConfigError::invalid(
                "RATE_LIMIT_REDIS_URL",
                "a redis:// or rediss:// URL",
            ));
        }
        let (max_connections, upstream_max_connections) =
            connection_limits(&vars, ic_config::open_files_limit())?;
        let app_api_token = vars.secret("APP_API_TOKEN");
        if environment == Environment::Production && app_api_token.is_none() {
            return Err(ConfigError::Unsafe(
                "APP_API_TOKEN must be set in production (the backends require it)".into(),
            ));
        }
        Ok(Self {
            host: vars.parse_or(
                "HOST",
                "an IP address such as 0.0.0.0",
                IpAddr::from([0, 0, 0, 0]),
            )?,
            port: vars.port("PUBLIC_GATEWAY_PORT", 8000)?,
            environment,
            upstreams,
            app_api_token,
            origins,
            rate_limit_per_minute,
            trusted_proxies,
            rate_limit_redis_url,
            connect_timeout: Duration::from_millis(vars.parse_or(
                "UPSTREAM_CONNECT_TIMEOUT_MS",
                "milliseconds",
                2000,
            )?),
            response_timeout: Duration::from_secs(vars.parse_or(
                "UPSTREAM_TIMEOUT_SECONDS",
                "seconds",
                30,
            )?),
            max_connections,
            upstream_max_connections,
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
            c.upstreams
                .uri("services-api", "/x", None)
                .unwrap()
                .to_string(),
            "http://127.0.0.1:8080/x"
        );
    }

    #[test]
    fn connection_limits_fit_in_the_open_files_limit() {
        // Defaults: half for clients, an eighth per upstream, capped.
        assert_eq!(connection_limits(&env(&[]), 20_000), Ok((9968, 512)));
        assert_eq!(connection_limits(&env(&[]), 40_000), Ok((10_000, 512)));
        assert_eq!(connection_limits(&env(&[]), 4096), Ok((2016, 504)));
        let (clients, upstream) = connection_limits(&env(&[]), 1024).unwrap();
        assert_eq!((clients, upstream), (480, 120));
        assert!(clients + 2 * upstream + 64 <= 1024);
        // Set explicitly: taken when they fit, refused when they cannot.
        let set = env(&[
            ("MAX_CONNECTIONS", "100"),
            ("UPSTREAM_MAX_CONNECTIONS", "8"),
        ]);
        assert_eq!(connection_limits(&set, 1024), Ok((100, 8)));
        let too_many = env(&[("MAX_CONNECTIONS", "5000")]);
        let err = connection_limits(&too_many, 1024).unwrap_err().to_string();
        assert!(
            err.contains("MAX_CONNECTIONS") && err.contains("1024"),
            "{err}"
        );
    }

    #[test]
    fn dapr_mode_and_malformed_values() {
        let c = Config::from_env(env(&[("DAPR_HTTP_PORT", "3500")])).unwrap();
        assert!(matches!(c.upstreams, Upstreams::Dapr { port: 3500 }));
        for (name, value) in [
            ("PUBLIC_WEBSITE_ORIGINS", "*"),
            ("PUBLIC_WEBSITE_ORIGINS", "https://a.org/path"),
            ("TRUSTED_PROXIES", "10.0.0.0/99"),
            ("PUBLIC_RATE_LIMIT_PER_MINUTE", "0"),
            ("SERVICES_API_URL", "not a url"),
            ("DAPR_HTTP_PORT", "x"),
            ("RATE_LIMIT_REDIS_URL", "http://redis:6379"),
        ] {
            let err = Config::from_env(env(&[(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{name}={value}: {err}");
        }
        let err = Config::from_env(env(&[("MAX_CONNECTIONS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("MAX_CONNECTIONS"), "{err}");
        let err = Config::from_env(env(&[("ENVIRONMENT", "production")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("APP_API_TOKEN"), "{err}");
    }
}
