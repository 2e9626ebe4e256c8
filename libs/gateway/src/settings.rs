//! The configuration both gateways read the same way (`shared/spec/gateways.md`,
//! "Upstream invocation", and the rate-limit and connection settings), parsed from the
//! environment map once; each gateway's `Config` adds its own.

use std::{collections::HashMap, time::Duration};

use ic_config::{ConfigError, Env, Environment};
use ic_http::Secret;

use crate::{client_ip::TrustedProxies, proxy::Upstreams};

/// Upstreams, connections, client IPs and the shared rate-limit store.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// `DAPR_HTTP_PORT` (sidecar invocation) or `SERVICES_API_URL` / `CONTENT_API_URL`.
    pub upstreams: Upstreams,
    /// `APP_API_TOKEN`, sent upstream as `dapr-api-token` (required in production).
    pub app_api_token: Option<Secret>,
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
    /// eighth of the open-files limit less 64, at most 512); a request past that waits
    /// up to the connect timeout, then gets 503.
    pub upstream_max_connections: usize,
}

/// The settings that may come from a Dapr secret store (`ic_secrets`).
pub const SECRETS: &[&str] = &["APP_API_TOKEN", "RATE_LIMIT_REDIS_URL"];

impl GatewaySettings {
    /// Parses the shared settings.
    pub fn from_env(vars: &Env, environment: Environment) -> Result<Self, ConfigError> {
        let upstreams = match vars.parse::<u16>("DAPR_HTTP_PORT", "a TCP port number")? {
            Some(port) => Upstreams::Dapr { port },
            None => Upstreams::Direct(HashMap::from([
                (
                    "services-api",
                    http_url(vars, "SERVICES_API_URL", "http://127.0.0.1:8080")?,
                ),
                (
                    "content-api",
                    http_url(vars, "CONTENT_API_URL", "http://127.0.0.1:8081")?,
                ),
            ])),
        };
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
            connection_limits(vars, ic_config::open_files_limit())?;
        let app_api_token = vars.secret("APP_API_TOKEN");
        if environment == Environment::Production && app_api_token.is_none() {
            return Err(ConfigError::Unsafe(
                "APP_API_TOKEN must be set in production (the backends require it)".into(),
            ));
        }
        Ok(Self {
            upstreams,
            app_api_token,
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
        })
    }
}

/// The exact origins CORS allows, from the comma list in `name` (in development
/// `dev_default` when unset): http(s) origins without a path, never `*`.
pub fn origins(
    vars: &Env,
    name: &str,
    environment: Environment,
    dev_default: &str,
) -> Result<Vec<String>, ConfigError> {
    let origins: Vec<String> = vars
        .raw(name)
        .unwrap_or(if environment == Environment::Development {
            dev_default
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
                name,
                format!(
                    "a comma list of exact origins such as https://example.org (not {origin:?})"
                ),
            ));
        }
    }
    Ok(origins)
}

/// A requests-per-minute limit in 1–1,000,000.
pub fn per_minute(vars: &Env, name: &str, default: u32) -> Result<u32, ConfigError> {
    let expected = "a number of requests (1-1000000)";
    let limit: u32 = vars.parse_or(name, expected, default)?;
    if !(1..=1_000_000).contains(&limit) {
        return Err(ConfigError::invalid(name, expected));
    }
    Ok(limit)
}

/// An http(s) URL with a host.
pub fn http_url(vars: &Env, name: &str, default: &str) -> Result<String, ConfigError> {
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

/// `MAX_CONNECTIONS` and `UPSTREAM_MAX_CONNECTIONS`, by default sized from the open-files
/// limit so that clients, the connections to two upstreams and the rest of the process
/// (64 files and sockets) fit in it; set explicitly, they must fit in it too.
pub fn connection_limits(vars: &Env, open_files: u64) -> Result<(usize, usize), ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().copied().collect()
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
    fn malformed_shared_settings_name_their_variable() {
        let dev = Environment::Development;
        for (name, value) in [
            ("TRUSTED_PROXIES", "10.0.0.0/99"),
            ("SERVICES_API_URL", "not a url"),
            ("DAPR_HTTP_PORT", "x"),
            ("RATE_LIMIT_REDIS_URL", "http://redis:6379"),
            ("MAX_CONNECTIONS", "0"),
        ] {
            let err = GatewaySettings::from_env(&env(&[(name, value)]), dev)
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{name}={value}: {err}");
        }
        let err = GatewaySettings::from_env(&env(&[]), Environment::Production)
            .unwrap_err()
            .to_string();
        assert!(err.contains("APP_API_TOKEN"), "{err}");
        for origin in ["*", "https://a.org/path"] {
            let err = origins(&env(&[("O", origin)]), "O", dev, "").unwrap_err();
            assert!(err.to_string().contains('O'));
        }
        assert_eq!(
            origins(&env(&[]), "O", dev, "http://localhost:3000").unwrap(),
            ["http://localhost:3000"]
        );
        assert!(
            origins(&env(&[]), "O", Environment::Production, "http://x")
                .unwrap()
                .is_empty()
        );
        assert!(per_minute(&env(&[("L", "0")]), "L", 5).is_err());
        assert_eq!(per_minute(&env(&[]), "L", 5), Ok(5));
    }
}
