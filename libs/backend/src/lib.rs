//! What every backend service (services-api, content-api) is built on, defined once:
//!
//! - [`BackendSettings`]: the variables they all read (`HOST`, their port, `ENVIRONMENT`,
//!   `DATABASE_URL`, `DATABASE_MAX_CONNECTIONS`, `NATS_URL`, `APP_API_TOKEN`, telemetry),
//!   with the production rules of `shared/spec/README.md` ("Configuration").
//! - [`connect`]: the Postgres pool and the NATS client, both lazy (either may come up
//!   after the service), and their readiness [`postgres_check`] and [`nats_check`].
//! - [`classify`]: what a database error means for the client (its value, a retry, or
//!   the server's fault), so each service maps it to its own error type the same way.

use std::{net::IpAddr, time::Duration};

use ic_config::{ConfigError, Env, Environment, Port};
use ic_health::{Check, Criticality};
use ic_http::Secret;
use ic_telemetry::TelemetryConfig;
use sqlx::{PgPool, postgres::PgPoolOptions};

/// The settings that may come from a Dapr secret store (`ic_secrets`).
pub const SECRETS: &[&str] = &[
    "DATABASE_URL",
    "DATABASE_CONNECTION_STRING",
    "APP_API_TOKEN",
];

const DEV_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:15432/international_center";
const DATABASE_FORM: &str = "postgres://user:password@host:port/database";

/// The settings every backend service reads the same way.
#[derive(Debug, Clone)]
pub struct BackendSettings {
    /// `HOST` (default 0.0.0.0).
    pub host: IpAddr,
    /// `<SERVICE>_PORT`.
    pub port: u16,
    /// `ENVIRONMENT`.
    pub environment: Environment,
    /// `DATABASE_URL` or `DATABASE_CONNECTION_STRING`.
    pub database_url: Secret,
    /// `DATABASE_MAX_CONNECTIONS` (default 10).
    pub database_max_connections: u32,
    /// `NATS_URL` (default nats://127.0.0.1:4222 in development).
    pub nats_url: String,
    /// `APP_API_TOKEN`: when set, every request must carry it as `dapr-api-token`.
    pub app_api_token: Option<Secret>,
    /// Logs, metrics and traces (`LOG_FORMAT`, `RUST_LOG`, `OTEL_*`).
    pub telemetry: TelemetryConfig,
}

impl BackendSettings {
    /// Parses them; `HOST` and the service's [`Port`].
    /// Outside development the database and NATS must be named; production refuses to
    /// run without `APP_API_TOKEN` unless `ALLOW_UNAUTHENTICATED_BACKEND=true`.
    pub fn from_env(
        vars: &Env,
        service_name: &'static str,
        version: &'static str,
        port: Port,
    ) -> Result<Self, ConfigError> {
        let (host, port) = vars.listen(port)?;
        let environment: Environment = vars.parse_or(
            "ENVIRONMENT",
            "development, staging or production",
            Environment::Development,
        )?;
        let database_url = vars.required_outside_dev(
            environment,
            &["DATABASE_URL", "DATABASE_CONNECTION_STRING"],
            DATABASE_FORM,
            DEV_DATABASE_URL,
        )?;
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(ConfigError::invalid("DATABASE_URL", DATABASE_FORM));
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
        Ok(Self {
            host,
            port,
            environment,
            database_url: Secret::new(database_url),
            database_max_connections,
            nats_url,
            app_api_token,
            telemetry: vars.telemetry(service_name, version, environment)?,
        })
    }
}

/// A connection that could not even be set up (a malformed URL, not an outage).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The database URL is unusable.
    #[error("database configuration")]
    Database(#[source] sqlx::Error),
    /// The NATS URL is unusable.
    #[error("NATS connection")]
    Nats(#[source] async_nats::ConnectError),
}

/// The pool (lazy: connections are made on first use) and the NATS client (retrying
/// its first connection in the background), named `service_name` on the NATS side.
pub async fn connect(
    settings: &BackendSettings,
    service_name: &str,
) -> Result<(PgPool, async_nats::Client), ConnectError> {
    let options: sqlx::postgres::PgConnectOptions = settings
        .database_url
        .expose()
        .parse()
        .map_err(ConnectError::Database)?;
    let pool = PgPoolOptions::new()
        .max_connections(settings.database_max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options);
    let nats = async_nats::ConnectOptions::new()
        .name(service_name)
        .retry_on_initial_connect()
        .connect(settings.nats_url.as_str())
        .await
        .map_err(ConnectError::Nats)?;
    Ok((pool, nats))
}

/// Readiness of Postgres (`SELECT 1`), critical: nothing works without it.
pub fn postgres_check(pool: PgPool) -> Check {
    Check::new("postgres", Criticality::Critical, move || {
        let pool = pool.clone();
        async move {
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .map(drop)
                .map_err(|e| format!("query failed: {}", short(&e)))
        }
    })
}

fn short(err: &sqlx::Error) -> &'static str {
    match err {
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection",
        sqlx::Error::Io(_) => "connection refused or lost",
        _ => "database error",
    }
}

/// Readiness of NATS, optional: writes wait in the outbox while it is away.
pub fn nats_check(nats: async_nats::Client) -> Check {
    Check::new("nats", Criticality::Optional, move || {
        let state = nats.connection_state();
        async move {
            match state {
                async_nats::connection::State::Connected => Ok(()),
                other => Err(format!("connection {other:?}").to_lowercase()),
            }
        }
    })
}

/// What a database error means for the request that met it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFailure {
    /// A value the client sent that the schema refuses (check constraint, too long,
    /// invalid text or encoding) and validation let through: a 400.
    ClientValue,
    /// Nothing was written and a retry may succeed (connection lost, pool exhausted,
    /// deadlock, serialization failure): a 503.
    Unavailable,
    /// Anything else: the server's fault, a 500.
    Other,
}

/// Classifies `err` (constraint names are each service's to map first).
pub fn classify(err: &sqlx::Error) -> DbFailure {
    if let sqlx::Error::Database(db) = err {
        return match db.code().as_deref() {
            // 23514 check_violation, 22001 string too long, 22P02 invalid text,
            // 22021 bad encoding.
            Some("23514" | "22001" | "22P02" | "22021") => DbFailure::ClientValue,
            // Deadlock or serialization failure between concurrent writes.
            Some("40P01" | "40001") => DbFailure::Unavailable,
            _ => DbFailure::Other,
        };
    }
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolClosed => DbFailure::Unavailable,
        _ => DbFailure::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().copied().collect()
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<BackendSettings, ConfigError> {
        BackendSettings::from_env(
            &env(pairs),
            "svc",
            "1",
            Port {
                variable: "SVC_PORT",
                default: 8123,
            },
        )
    }

    #[test]
    fn development_has_working_defaults_and_aliases_are_read() {
        let settings = parse(&[]).unwrap();
        assert_eq!(settings.port, 8123);
        assert_eq!(settings.environment, Environment::Development);
        assert!(settings.database_url.expose().starts_with("postgres://"));
        let settings = parse(&[
            ("DATABASE_CONNECTION_STRING", "postgres://u:p@db:5432/ic"),
            ("SVC_PORT", "9999"),
        ])
        .unwrap();
        assert_eq!(settings.database_url.expose(), "postgres://u:p@db:5432/ic");
        assert_eq!(settings.port, 9999);
    }

    #[test]
    fn production_needs_its_database_nats_and_app_token() {
        let err = parse(&[("ENVIRONMENT", "production")]).unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
        let base = [
            ("ENVIRONMENT", "production"),
            ("DATABASE_URL", "postgres://db/ic"),
            ("NATS_URL", "nats://n:4222"),
        ];
        let err = parse(&base).unwrap_err();
        assert!(err.to_string().contains("APP_API_TOKEN"), "{err}");
        let mut allowed = base.to_vec();
        allowed.push(("ALLOW_UNAUTHENTICATED_BACKEND", "true"));
        assert!(parse(&allowed).is_ok());
    }

    #[test]
    fn malformed_values_name_the_variable() {
        for (name, value) in [
            ("SVC_PORT", "x"),
            ("ENVIRONMENT", "moon"),
            ("LOG_FORMAT", "xml"),
            ("DATABASE_URL", "mysql://x"),
            ("DATABASE_MAX_CONNECTIONS", "0"),
            ("DATABASE_MAX_CONNECTIONS", "5000"),
            ("HOST", "localhost"),
        ] {
            let err = parse(&[(name, value)]).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let settings = parse(&[
            ("DATABASE_URL", "postgres://u:hunter2@db/ic"),
            ("APP_API_TOKEN", "tok3n"),
        ])
        .unwrap();
        let printed = format!("{settings:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("tok3n"),
            "{printed}"
        );
    }

    #[test]
    fn lost_connections_are_retryable_and_others_are_the_servers_fault() {
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), DbFailure::Unavailable);
        assert_eq!(classify(&sqlx::Error::RowNotFound), DbFailure::Other);
    }
}
