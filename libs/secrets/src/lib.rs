//! Secrets from the Dapr sidecar's secret store, else from the environment.
//!
//! With `DAPR_SECRET_STORE` set, a service asks its sidecar (gRPC, `DAPR_GRPC_ENDPOINT`
//! or `127.0.0.1:$DAPR_GRPC_PORT`, default port 50001, `DAPR_API_TOKEN` when the sidecar
//! requires one) for the store's secrets once at start, before its configuration is
//! parsed, and every secret variable the service reads (each lib names its own:
//! `ic_backend::SECRETS`, …) that the store holds replaces the environment's value. A
//! variable the store does not hold keeps its environment value, so a store may hold only
//! some of them. Without `DAPR_SECRET_STORE` nothing changes.
//!
//! A store names its secrets either as the variable (`DATABASE_URL`, as Dapr's
//! `local.env` store does with its prefix removed) or in lowercase kebab case
//! (`database-url`, the only form Azure Key Vault allows); a secret with several keys
//! (a Kubernetes secret) gives the key of the same name, or its only key.
//!
//! The sidecar usually starts after its app (compose's `network_mode: service:<app>`),
//! so an unreachable sidecar is retried until `DAPR_SECRETS_TIMEOUT_SECONDS` (default
//! 60) has passed; any other answer (an unknown store, a refused token) fails at once.
//! Values never reach a log: only the names of the variables read are reported.

use std::{collections::HashMap, fmt, time::Duration};

use dapr::client::{Client, ClientOptions, TonicClientWithAuth};
use ic_config::{ConfigError, Env};
use ic_http::Secret;

/// Names the secret store component; setting it turns the sidecar path on.
pub const STORE_VARIABLE: &str = "DAPR_SECRET_STORE";
/// How long start may wait for the sidecar.
pub const TIMEOUT_VARIABLE: &str = "DAPR_SECRETS_TIMEOUT_SECONDS";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const RETRY_EVERY: Duration = Duration::from_millis(250);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The sidecar and store to read from.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretStore {
    /// The component's name (`secretstore`).
    pub name: String,
    /// The sidecar's gRPC endpoint.
    pub endpoint: String,
    api_token: Option<Secret>,
    /// How long to wait for the sidecar.
    pub timeout: Duration,
}

impl fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretStore")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("api_token", &self.api_token)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl SecretStore {
    /// The store `vars` configure, or `None` when `DAPR_SECRET_STORE` is unset.
    pub fn from_env(vars: &Env) -> Result<Option<Self>, ConfigError> {
        let Some(name) = vars.raw(STORE_VARIABLE) else {
            return Ok(None);
        };
        let endpoint = match vars.raw("DAPR_GRPC_ENDPOINT") {
            Some(endpoint)
                if endpoint.starts_with("http://") || endpoint.starts_with("https://") =>
            {
                endpoint.to_owned()
            }
            Some(_) => {
                return Err(ConfigError::invalid(
                    "DAPR_GRPC_ENDPOINT",
                    "a URL such as http://127.0.0.1:50001",
                ));
            }
            None => format!(
                "http://127.0.0.1:{}",
                vars.port("DAPR_GRPC_PORT", dapr::client::DEFAULT_DAPR_GRPC_PORT)?
            ),
        };
        let seconds: u64 = vars.parse_or(
            TIMEOUT_VARIABLE,
            "a number of seconds (1-600)",
            DEFAULT_TIMEOUT.as_secs(),
        )?;
        if !(1..=600).contains(&seconds) {
            return Err(ConfigError::invalid(
                TIMEOUT_VARIABLE,
                "a number of seconds (1-600)",
            ));
        }
        Ok(Some(Self {
            name: name.to_owned(),
            endpoint,
            api_token: vars.secret("DAPR_API_TOKEN"),
            timeout: Duration::from_secs(seconds),
        }))
    }

    /// Every secret of the store, by name (`GetBulkSecret`), waiting for the sidecar.
    pub async fn fetch(&self) -> Result<Secrets, SecretsError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            match self.fetch_once().await {
                Ok(secrets) => return Ok(secrets),
                Err(Attempt::Final(reason)) => return Err(self.error(reason)),
                Err(Attempt::Retry(reason)) => {
                    if tokio::time::Instant::now() + RETRY_EVERY >= deadline {
                        return Err(self.error(format!(
                            "the sidecar did not answer within {} s ({reason})",
                            self.timeout.as_secs()
                        )));
                    }
                    tokio::time::sleep(RETRY_EVERY).await;
                }
            }
        }
    }

    async fn fetch_once(&self) -> Result<Secrets, Attempt> {
        let mut options = ClientOptions::new()
            .with_address(self.endpoint.clone())
            .with_timeout(CALL_TIMEOUT)
            .without_api_token();
        if let Some(token) = &self.api_token {
            options = options.with_api_token(token.expose());
        }
        let mut client = Client::<TonicClientWithAuth>::from_options(options)
            .await
            .map_err(Attempt::from)?;
        let answer = tokio::time::timeout(
            CALL_TIMEOUT,
            client.get_bulk_secret(self.name.as_str(), None),
        )
        .await
        .map_err(|_| Attempt::Retry("no answer within 5 s".into()))?
        .map_err(Attempt::from)?;
        let mut secrets = HashMap::new();
        for (name, secret) in answer.data {
            let wanted = normalized(&name);
            let value = secret
                .secrets
                .iter()
                .find(|(key, _)| normalized(key) == wanted)
                .map(|(_, value)| value.clone())
                .or_else(|| match secret.secrets.len() {
                    1 => secret.secrets.into_values().next(),
                    _ => None,
                });
            if let Some(value) = value {
                secrets.insert(wanted, Secret::new(value));
            }
        }
        Ok(Secrets(secrets))
    }

    fn error(&self, reason: String) -> SecretsError {
        SecretsError {
            store: self.name.clone(),
            endpoint: self.endpoint.clone(),
            reason,
        }
    }
}

/// One attempt's failure: retried while the sidecar is not reachable yet.
enum Attempt {
    Retry(String),
    Final(String),
}

impl From<dapr::error::Error> for Attempt {
    fn from(err: dapr::error::Error) -> Self {
        use dapr::error::Error;
        match err {
            Error::TransportError | Error::ConnectTimeout => Self::Retry("cannot connect".into()),
            // The crate keeps the status private; its Debug form names the code. An
            // established channel whose sidecar went away answers `Unavailable`.
            Error::GrpcError(status) => {
                let status = format!("{status:?}");
                if status.contains("code: Unavailable") {
                    Self::Retry("unavailable".into())
                } else {
                    Self::Final(format!("the sidecar refused: {}", grpc_summary(&status)))
                }
            }
            other => Self::Final(other.to_string()),
        }
    }
}

/// The code and message of a status's Debug form, without its metadata and details.
fn grpc_summary(debug: &str) -> String {
    let field = |name: &str| {
        debug.split(name).nth(1).map(|rest| {
            rest.split([',', '}'])
                .next()
                .unwrap_or_default()
                .trim()
                .trim_matches('"')
                .to_owned()
        })
    };
    match (field("code: "), field("message: ")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => "an error".into(),
    }
}

/// `DATABASE_URL` and `database-url` name the same secret.
fn normalized(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('_', "-")
}

/// A store's secrets by normalized name.
#[derive(Debug, Default)]
pub struct Secrets(HashMap<String, Secret>);

impl Secrets {
    /// The secret for variable `name`, if the store holds it.
    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.0.get(&normalized(name))
    }
}

/// The sidecar could not give the secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret store {store:?} through the Dapr sidecar at {endpoint}: {reason}")]
pub struct SecretsError {
    store: String,
    endpoint: String,
    reason: String,
}

impl SecretsError {
    /// What `main` does with it: one line on stderr and exit code 1 (telemetry is not
    /// up yet: its own settings may be secrets).
    pub fn exit(&self, service: &str) -> std::process::ExitCode {
        eprintln!("{service}: cannot read secrets: {self}");
        std::process::ExitCode::FAILURE
    }
}

/// Where each secret variable's value came from, for the start log (names only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The store read, if any.
    pub store: Option<String>,
    /// Variables whose value the store gave.
    pub from_store: Vec<&'static str>,
}

impl Report {
    /// Logs the names (never the values); call once telemetry is up.
    pub fn log(&self) {
        if let Some(store) = &self.store {
            tracing::info!(
                store = %store,
                secrets = %self.from_store.join(","),
                "secrets read from the Dapr secret store"
            );
        }
    }
}

/// The configuration environment with the secrets of `groups` from the store `vars`
/// configure (unchanged when none is).
pub async fn resolve(
    mut vars: Env,
    groups: &[&[&'static str]],
) -> Result<(Env, Report), StartError> {
    let Some(store) = SecretStore::from_env(&vars)? else {
        return Ok((vars, Report::default()));
    };
    let secrets = store.fetch().await?;
    let mut report = Report {
        store: Some(store.name.clone()),
        from_store: Vec::new(),
    };
    for &name in groups.iter().flat_map(|group| group.iter()) {
        if let Some(secret) = secrets.get(name)
            && !report.from_store.contains(&name)
        {
            vars.insert(name, secret.expose());
            report.from_store.push(name);
        }
    }
    Ok((vars, report))
}

/// What `main` does before telemetry is up, the same in every service.
#[derive(Debug)]
pub enum Prepared<C> {
    /// Run with this configuration; log the report once telemetry is up.
    Run(C, Report),
    /// Exit now: `<binary> healthcheck` answered, or the environment is unusable (its
    /// one line is printed).
    Exit(std::process::ExitCode),
}

/// `<binary> healthcheck` (which needs only `HOST` and the `port`: no secrets, no
/// sidecar), else the secrets of `groups` ([`resolve`]) and the configuration `parse`d
/// from the result. `vars` is the process environment, read by `main`.
pub async fn prepare<C>(
    service: &str,
    vars: Env,
    healthcheck: bool,
    port: ic_config::Port,
    groups: &[&[&'static str]],
    parse: impl FnOnce(Env) -> Result<C, ConfigError>,
) -> Prepared<C> {
    if healthcheck {
        return Prepared::Exit(match vars.listen(port) {
            Ok((host, port)) => ic_http::serve::healthcheck(host, port),
            Err(err) => err.exit(service),
        });
    }
    let (vars, report) = match resolve(vars, groups).await {
        Ok(resolved) => resolved,
        Err(err) => return Prepared::Exit(err.exit(service)),
    };
    match parse(vars) {
        Ok(config) => Prepared::Run(config, report),
        Err(err) => Prepared::Exit(err.exit(service)),
    }
}

/// Why secrets could not be resolved: the store's settings, or the sidecar.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `DAPR_*` settings are malformed (exit code 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The sidecar failed (exit code 1).
    #[error(transparent)]
    Store(#[from] SecretsError),
}

impl StartError {
    /// One line on stderr and the exit code.
    pub fn exit(&self, service: &str) -> std::process::ExitCode {
        match self {
            Self::Config(err) => err.exit(service),
            Self::Store(err) => err.exit(service),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().copied().collect()
    }

    #[test]
    fn without_a_store_name_the_sidecar_is_not_used() {
        assert_eq!(
            SecretStore::from_env(&env(&[("DAPR_GRPC_PORT", "50001")])).unwrap(),
            None
        );
    }

    #[test]
    fn the_endpoint_comes_from_the_grpc_endpoint_or_port() {
        let store = |pairs: &[(&str, &str)]| {
            let mut all = vec![(STORE_VARIABLE, "secretstore")];
            all.extend_from_slice(pairs);
            SecretStore::from_env(&env(&all))
        };
        assert_eq!(
            store(&[]).unwrap().unwrap().endpoint,
            "http://127.0.0.1:50001"
        );
        assert_eq!(
            store(&[("DAPR_GRPC_PORT", "50010")])
                .unwrap()
                .unwrap()
                .endpoint,
            "http://127.0.0.1:50010"
        );
        assert_eq!(
            store(&[("DAPR_GRPC_ENDPOINT", "http://sidecar:7000")])
                .unwrap()
                .unwrap()
                .endpoint,
            "http://sidecar:7000"
        );
        for (name, value) in [
            ("DAPR_GRPC_PORT", "x"),
            ("DAPR_GRPC_ENDPOINT", "sidecar:7000"),
            (TIMEOUT_VARIABLE, "0"),
            (TIMEOUT_VARIABLE, "soon"),
        ] {
            let err = store(&[(name, value)]).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn the_api_token_is_never_printed() {
        let store = SecretStore::from_env(&env(&[
            (STORE_VARIABLE, "secretstore"),
            ("DAPR_API_TOKEN", "hunter2-token"),
        ]))
        .unwrap()
        .unwrap();
        assert!(!format!("{store:?}").contains("hunter2"));
    }

    #[test]
    fn variable_and_kebab_names_are_the_same_secret() {
        let mut secrets = HashMap::new();
        secrets.insert(normalized("database-url"), Secret::new("postgres://x"));
        let secrets = Secrets(secrets);
        assert_eq!(
            secrets.get("DATABASE_URL").unwrap().expose(),
            "postgres://x"
        );
        assert!(secrets.get("APP_API_TOKEN").is_none());
    }

    #[test]
    fn a_status_is_summarised_without_its_metadata() {
        let status = tonic_debug();
        assert_eq!(
            grpc_summary(&status),
            "InvalidArgument: failed finding secret store with key nope"
        );
    }

    fn tonic_debug() -> String {
        "GrpcError { _status: Status { code: InvalidArgument, message: \"failed finding secret store with key nope\", metadata: MetadataMap { headers: {\"content-type\": \"application/grpc\"} }, source: None } }".into()
    }
}
