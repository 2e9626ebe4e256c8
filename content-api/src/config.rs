//! Typed configuration, parsed once from the environment map.

use std::{path::PathBuf, time::Duration};

use ic_audit::loki::LokiConfig;
use ic_backend::BackendSettings;
use ic_config::{ConfigError, Env, Environment, Port};
use ic_http::Secret;
use ic_telemetry::TelemetryConfig;

use crate::domain::mime::{DEFAULT_ALLOWED_MIME_TYPES, is_known_mime_type};

/// Where content-api listens (`HOST` and this port).
pub const PORT: Port = Port {
    variable: "CONTENT_API_PORT",
    default: 8081,
};

/// The variables that may come from a Dapr secret store (`ic_secrets::resolve`).
pub const SECRETS: &[&[&str]] = &[ic_backend::SECRETS, ic_audit::loki::SECRETS, AZURE_SECRETS];

/// The blob store's credentials, when they come from a Dapr secret store.
const AZURE_SECRETS: &[&str] = &[
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_SECRET",
];

/// content-api configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// What every backend reads (`HOST`, `CONTENT_API_PORT` (default 8081),
    /// `ENVIRONMENT`, `DATABASE_URL`, `DATABASE_MAX_CONNECTIONS`, `NATS_URL`,
    /// `APP_API_TOKEN`, telemetry).
    pub backend: BackendSettings,
    /// `LOKI_URL` and friends: audit records shipped to Loki and read back from it.
    pub loki: Option<LokiConfig>,
    /// `BLOB_STORE_URL` (+ `AZURE_STORAGE_*` for `az://`).
    pub blob_store: BlobStoreConfig,
    /// `CONTENT_MAX_UPLOAD_BYTES` (default 100 MiB).
    pub max_upload_bytes: u64,
    /// `CONTENT_ALLOWED_MIME_TYPES` (comma list; default: documents, images, video,
    /// audio and zip, see [`DEFAULT_ALLOWED_MIME_TYPES`]).
    pub allowed_mime_types: Vec<String>,
    /// `CLAMD_ADDRESS` / `CONTENT_VIRUS_SCAN`.
    pub virus_scan: VirusScan,
    /// `CONTENT_PROCESSING_ACK_WAIT_SECONDS` (default 60): how long a processing job may
    /// go silent before JetStream hands it to another worker (a worker that is alive
    /// reports progress well within it).
    pub processing_ack_wait: Duration,
    /// `CONTENT_PROCESSING_MAX_ATTEMPTS` (default 5): attempts before a job is `failed`.
    pub processing_max_attempts: u32,
}

/// Where the bytes live (`shared/spec/content-api.md`, "Storage").
#[derive(Debug, Clone)]
pub enum BlobStoreConfig {
    /// `file:///path`: a directory (the embedded default).
    File(PathBuf),
    /// `az://<container>`: Azure Blob Storage (Azurite in development), configured by the
    /// standard `AZURE_STORAGE_*` variables, passed through as they are.
    Azure {
        /// The container.
        container: String,
        /// `AZURE_*` settings (lower-cased names, as object_store spells its keys).
        options: Vec<(String, Secret)>,
    },
}

/// Whether and how uploads are scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirusScan {
    /// clamd at `host:port`, `INSTREAM` protocol.
    Clamd(String),
    /// No scanner: scans are recorded as `skipped` (development, or production with
    /// `CONTENT_VIRUS_SCAN=disabled`).
    Skipped,
}

/// The development blob store: a directory under the working directory's `.dev/`.
pub const DEV_BLOB_STORE: &str = ".dev/content-api/blobs";
const BLOB_FORM: &str = "file:///absolute/path or az://<container>";

impl Config {
    /// Parses and validates the environment map.
    pub fn from_env(vars: Env) -> Result<Self, ConfigError> {
        let backend = BackendSettings::from_env(&vars, crate::SERVICE_NAME, crate::VERSION, PORT)?;
        let environment = backend.environment;
        let max_upload_bytes: u64 = vars.parse_or(
            "CONTENT_MAX_UPLOAD_BYTES",
            "a size in bytes (1 to 5497558138880)",
            100 * 1024 * 1024,
        )?;
        // Azure's block blob limit (50,000 blocks of 100 MiB... capped at 5 TiB here).
        if !(1..=5 * 1024 * 1024 * 1024 * 1024).contains(&max_upload_bytes) {
            return Err(ConfigError::invalid(
                "CONTENT_MAX_UPLOAD_BYTES",
                "a size in bytes (1 to 5497558138880)",
            ));
        }
        let allowed_mime_types = match vars.raw("CONTENT_ALLOWED_MIME_TYPES") {
            None => DEFAULT_ALLOWED_MIME_TYPES
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
            Some(list) => {
                let types: Vec<String> = list
                    .split(',')
                    .map(|t| t.trim().to_ascii_lowercase())
                    .filter(|t| !t.is_empty())
                    .collect();
                if types.is_empty() || !types.iter().all(|t| is_known_mime_type(t)) {
                    return Err(ConfigError::invalid(
                        "CONTENT_ALLOWED_MIME_TYPES",
                        "a comma list of MIME types content-api can recognise (e.g. application/pdf,image/png)",
                    ));
                }
                types
            }
        };
        let processing_ack_wait: u64 = vars.parse_or(
            "CONTENT_PROCESSING_ACK_WAIT_SECONDS",
            "seconds (3-3600)",
            60,
        )?;
        if !(3..=3600).contains(&processing_ack_wait) {
            return Err(ConfigError::invalid(
                "CONTENT_PROCESSING_ACK_WAIT_SECONDS",
                "seconds (3-3600)",
            ));
        }
        let processing_max_attempts: u32 =
            vars.parse_or("CONTENT_PROCESSING_MAX_ATTEMPTS", "a count (1-100)", 5)?;
        if !(1..=100).contains(&processing_max_attempts) {
            return Err(ConfigError::invalid(
                "CONTENT_PROCESSING_MAX_ATTEMPTS",
                "a count (1-100)",
            ));
        }
        Ok(Self {
            loki: LokiConfig::from_env(&vars)?,
            blob_store: blob_store(&vars, environment)?,
            virus_scan: virus_scan(&vars, environment)?,
            backend,
            max_upload_bytes,
            allowed_mime_types,
            processing_ack_wait: Duration::from_secs(processing_ack_wait),
            processing_max_attempts,
        })
    }

    /// The telemetry settings.
    pub fn telemetry(&self) -> TelemetryConfig {
        self.backend.telemetry.clone()
    }
}

fn blob_store(vars: &Env, environment: Environment) -> Result<BlobStoreConfig, ConfigError> {
    let Some(url) = vars.raw("BLOB_STORE_URL") else {
        if environment != Environment::Development {
            return Err(ConfigError::Missing {
                name: "BLOB_STORE_URL".into(),
                expected: BLOB_FORM.into(),
            });
        }
        return Ok(BlobStoreConfig::File(PathBuf::from(DEV_BLOB_STORE)));
    };
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') || path.split('/').any(|s| s == "..") {
            return Err(ConfigError::invalid("BLOB_STORE_URL", BLOB_FORM));
        }
        return Ok(BlobStoreConfig::File(PathBuf::from(path)));
    }
    if let Some(container) = url.strip_prefix("az://") {
        let container = container.trim_end_matches('/');
        // Azure's container naming rules: 3-63 of a-z, 0-9 and single hyphens.
        let valid = (3..=63).contains(&container.len())
            && container
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !container.starts_with('-')
            && !container.ends_with('-')
            && !container.contains("--");
        if !valid {
            return Err(ConfigError::invalid(
                "BLOB_STORE_URL",
                "az://<container> with a valid container name (3-63 of a-z, 0-9, -)",
            ));
        }
        let options = vars
            .with_prefix("AZURE_")
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), Secret::new(value)))
            .collect();
        return Ok(BlobStoreConfig::Azure {
            container: container.to_owned(),
            options,
        });
    }
    Err(ConfigError::invalid("BLOB_STORE_URL", BLOB_FORM))
}

fn virus_scan(vars: &Env, environment: Environment) -> Result<VirusScan, ConfigError> {
    let disabled = match vars.raw("CONTENT_VIRUS_SCAN") {
        None | Some("enabled") => false,
        Some("disabled") => true,
        Some(_) => {
            return Err(ConfigError::invalid(
                "CONTENT_VIRUS_SCAN",
                "enabled or disabled",
            ));
        }
    };
    if disabled {
        return Ok(VirusScan::Skipped);
    }
    match vars.raw("CLAMD_ADDRESS") {
        Some(addr) => {
            let valid = addr
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if valid {
                Ok(VirusScan::Clamd(addr.to_owned()))
            } else {
                Err(ConfigError::invalid("CLAMD_ADDRESS", "host:port of clamd"))
            }
        }
        None if environment == Environment::Development => Ok(VirusScan::Skipped),
        None => Err(ConfigError::Unsafe(
            "CLAMD_ADDRESS must be set outside development (or CONTENT_VIRUS_SCAN=disabled to serve unscanned files)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().copied().collect()
    }

    fn production(extra: &[(&str, &str)]) -> Env {
        let mut pairs = vec![
            ("ENVIRONMENT", "production"),
            ("DATABASE_URL", "postgres://db/ic"),
            ("NATS_URL", "nats://n:4222"),
            ("APP_API_TOKEN", "t"),
            ("BLOB_STORE_URL", "az://content"),
            ("CLAMD_ADDRESS", "clamd:3310"),
        ];
        pairs.extend_from_slice(extra);
        pairs.into_iter().collect()
    }

    #[test]
    fn development_has_working_defaults() {
        let config = Config::from_env(env(&[])).unwrap();
        assert_eq!(config.backend.port, 8081);
        assert_eq!(config.max_upload_bytes, 100 * 1024 * 1024);
        assert!(
            matches!(&config.blob_store, BlobStoreConfig::File(p) if p.as_path() == std::path::Path::new(DEV_BLOB_STORE))
        );
        assert_eq!(config.virus_scan, VirusScan::Skipped);
        assert!(
            config
                .allowed_mime_types
                .contains(&"application/pdf".to_owned())
        );
    }

    #[test]
    fn production_starts_with_everything_set() {
        let config = Config::from_env(production(&[])).unwrap();
        assert_eq!(config.virus_scan, VirusScan::Clamd("clamd:3310".into()));
    }

    #[test]
    fn production_refuses_to_run_without_a_scanner_unless_told_to() {
        let mut vars: Vec<(&str, &str)> = vec![
            ("ENVIRONMENT", "production"),
            ("DATABASE_URL", "postgres://db/ic"),
            ("NATS_URL", "nats://n:4222"),
            ("APP_API_TOKEN", "t"),
            ("BLOB_STORE_URL", "az://content"),
        ];
        let err = Config::from_env(vars.iter().copied().collect()).unwrap_err();
        assert!(err.to_string().contains("CLAMD_ADDRESS"), "{err}");
        vars.push(("CONTENT_VIRUS_SCAN", "disabled"));
        let config = Config::from_env(vars.into_iter().collect()).unwrap();
        assert_eq!(config.virus_scan, VirusScan::Skipped);
    }

    #[test]
    fn production_requires_an_explicit_blob_store() {
        let err = Config::from_env(env(&[
            ("ENVIRONMENT", "production"),
            ("DATABASE_URL", "postgres://db/ic"),
            ("NATS_URL", "nats://n:4222"),
            ("APP_API_TOKEN", "t"),
            ("CLAMD_ADDRESS", "clamd:3310"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("BLOB_STORE_URL"), "{err}");
    }

    #[test]
    fn the_azure_settings_are_passed_through_and_hidden() {
        let config = Config::from_env(env(&[
            ("BLOB_STORE_URL", "az://ic-content"),
            ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
            ("AZURE_STORAGE_ACCOUNT_KEY", "s3cr3t-key"),
            ("AZURE_STORAGE_USE_EMULATOR", "true"),
        ]))
        .unwrap();
        let BlobStoreConfig::Azure { container, options } = &config.blob_store else {
            panic!("{:?}", config.blob_store);
        };
        assert_eq!(container, "ic-content");
        let names: Vec<&str> = options.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "azure_storage_account_key",
                "azure_storage_account_name",
                "azure_storage_use_emulator"
            ]
        );
        assert!(!format!("{config:?}").contains("s3cr3t-key"));
    }

    #[test]
    fn malformed_values_name_the_variable() {
        for (name, value) in [
            ("CONTENT_API_PORT", "x"),
            ("BLOB_STORE_URL", "s3://bucket"),
            ("BLOB_STORE_URL", "file://relative/path"),
            ("BLOB_STORE_URL", "file:///srv/../etc"),
            ("BLOB_STORE_URL", "az://No_Such"),
            ("CONTENT_MAX_UPLOAD_BYTES", "0"),
            ("CONTENT_MAX_UPLOAD_BYTES", "lots"),
            ("CONTENT_ALLOWED_MIME_TYPES", "application/x-msdownload"),
            ("CONTENT_ALLOWED_MIME_TYPES", " , "),
            ("CLAMD_ADDRESS", "clamd"),
            ("CONTENT_VIRUS_SCAN", "maybe"),
            ("CONTENT_PROCESSING_ACK_WAIT_SECONDS", "1"),
            ("CONTENT_PROCESSING_MAX_ATTEMPTS", "0"),
        ] {
            let err = Config::from_env(env(&[(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{name}={value}: {err}");
        }
    }

    #[test]
    fn the_allowlist_can_be_narrowed() {
        let config = Config::from_env(env(&[(
            "CONTENT_ALLOWED_MIME_TYPES",
            "application/pdf, IMAGE/PNG",
        )]))
        .unwrap();
        assert_eq!(config.allowed_mime_types, ["application/pdf", "image/png"]);
    }
}
