//! Startup: what the service is built from and how it runs (zero2prod's `startup.rs`):
//! the router, readiness, and [`App`] with `build`, `port` and `run_until_stopped`.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use async_nats::jetstream;
use axum::{Router, extract::DefaultBodyLimit, middleware::from_fn_with_state, routing::get};
use ic_audit::{
    Change, ChangeRecorder,
    loki::{LokiClient, Shipper, ShipperConfig},
};
use ic_events::{Relay, RelayConfig};
use ic_health::{Check, Criticality, Health, HealthInfo};
use ic_http::{
    RequestContext,
    app_token::{AppToken, require_app_token},
    context::request_context,
    extract::read_whole_body,
    fallback_method_not_allowed, fallback_not_found,
};
use ic_telemetry::{metrics_handler, track_http};
use prometheus_client::registry::Registry;
use sqlx::{PgConnection, PgPool};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    DOMAIN, MAX_BODY_BYTES, OUTBOX, SERVICE_NAME, VERSION,
    access_log::{AccessLog, AccessLogWriter, BUFFER_ENTRIES},
    config::{Config, VirusScan},
    error,
    metrics::Metrics,
    preview::InFlight,
    processing::{Processor, ProcessorConfig, Scanner},
    routes,
    scan::Clamd,
    storage::{BlobStore, InFlightUploads, StorageError},
};

/// What uploads are checked against.
#[derive(Debug, Clone)]
pub struct UploadRules {
    /// `CONTENT_MAX_UPLOAD_BYTES`.
    pub max_bytes: u64,
    /// `CONTENT_ALLOWED_MIME_TYPES`.
    pub allowed_mime_types: Vec<String>,
}

/// What handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Postgres.
    pub pool: PgPool,
    /// Writes events and audit records into the outbox.
    pub recorder: ChangeRecorder,
    /// JetStream, for audit history when Loki is not configured.
    pub jetstream: jetstream::Context,
    /// Loki, for audit history when configured.
    pub loki: Option<LokiClient>,
    /// The bytes.
    pub store: BlobStore,
    /// Upload limits.
    pub uploads: Arc<UploadRules>,
    /// Where accesses are recorded.
    pub access_log: AccessLog,
    /// The service's metrics.
    pub metrics: Metrics,
    /// Previews being generated.
    pub previews: InFlight,
    /// Uploads being written (the lifecycle cleanup skips them).
    pub uploads_in_flight: InFlightUploads,
}

impl AppState {
    /// State over a pool, a NATS client, a store and the access log.
    pub fn new(
        pool: PgPool,
        nats: async_nats::Client,
        environment: &str,
        store: BlobStore,
        uploads: UploadRules,
        access_log: AccessLog,
        metrics: Metrics,
    ) -> Self {
        Self {
            access_log,
            metrics,
            previews: InFlight::default(),
            uploads_in_flight: InFlightUploads::default(),
            pool,
            recorder: ChangeRecorder::new(SERVICE_NAME, DOMAIN, environment.to_owned(), OUTBOX),
            jetstream: jetstream::new(nats),
            loki: None,
            store,
            uploads: Arc::new(uploads),
        }
    }

    /// Reads audit history from Loki instead of JetStream.
    #[must_use]
    pub fn with_loki(mut self, loki: LokiClient) -> Self {
        self.loki = Some(loki);
        self
    }

    /// Records a change's event and audit record in the caller's transaction.
    pub async fn record(
        &self,
        tx: &mut PgConnection,
        ctx: &RequestContext,
        change: Change,
    ) -> Result<(), error::Error> {
        Ok(self.recorder.record(tx, ctx, change).await?)
    }
}

/// Startup failures.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A port could not be bound.
    #[error(transparent)]
    Bind(#[from] ic_http::serve::BindError),
    /// Postgres or NATS cannot be set up.
    #[error(transparent)]
    Connect(#[from] ic_backend::ConnectError),
    /// The blob store cannot be opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The readiness checks: Postgres and the blob store are critical; NATS (writes wait in
/// the outbox) and clamd (uploads wait in `processing`) optional.
pub fn health(
    environment: &str,
    pool: PgPool,
    nats: async_nats::Client,
    store: BlobStore,
    clamd: Option<Clamd>,
) -> Health {
    let mut checks = vec![
        ic_backend::postgres_check(pool),
        Check::new("blob_store", Criticality::Critical, move || {
            let store = store.clone();
            async move {
                store
                    .exists("health/readiness")
                    .await
                    .map(drop)
                    .map_err(|e| format!("{} unreachable: {e}", store.kind().as_str()))
            }
        }),
        ic_backend::nats_check(nats),
    ];
    if let Some(clamd) = clamd {
        checks.push(Check::new("clamd", Criticality::Optional, move || {
            let clamd = clamd.clone();
            async move { clamd.ping().await.map_err(|e| e.to_string()) }
        }));
    }
    Health::new(
        HealthInfo::new(SERVICE_NAME, VERSION, environment),
        checks,
        Duration::from_secs(2),
    )
}

/// The router: the spec's routes behind the shared layers (outermost first: request
/// context, panic guard, app token, metrics). The upload route sets its own body limit
/// and streams its body; every other route's (small, JSON) body is read whole before its
/// handler runs, so an answer that ignores it never makes hyper close a connection a
/// gateway has pooled (`ic_http::extract::read_whole_body`).
pub fn app(state: AppState, health: Health, app_token: AppToken) -> Router {
    let metrics = state.metrics.http.clone();
    let small_bodies = Router::new()
        .merge(routes::public::router())
        .merge(routes::admin::router())
        .merge(routes::analytics::router())
        .merge(routes::storage::router())
        .layer(from_fn_with_state(MAX_BODY_BYTES, read_whole_body));
    Router::new()
        .merge(small_bodies)
        .merge(routes::upload::router())
        .with_state(state)
        .merge(health.router())
        .route("/metrics", get(metrics_handler).with_state(metrics.clone()))
        .fallback(fallback_not_found)
        .method_not_allowed_fallback(fallback_method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn_with_state(metrics, track_http))
        .layer(from_fn_with_state(app_token, require_app_token))
        .layer(ic_http::panic_guard())
        .layer(from_fn_with_state(SERVICE_NAME, request_context))
}

/// A development content-api, running, on a free loopback port: files under `blobs`,
/// scanned by clamd at `clamd` when given (else scans are `skipped`). For other crates'
/// tests that need a real content-api; its URL and the token that stops it.
pub async fn spawn_development(
    database_url: &str,
    nats_url: &str,
    blobs: &std::path::Path,
    clamd: Option<&str>,
) -> (String, CancellationToken) {
    let mut vars = vec![
        ("HOST", "127.0.0.1".to_owned()),
        ("CONTENT_API_PORT", "0".to_owned()),
        ("DATABASE_URL", database_url.to_owned()),
        ("NATS_URL", nats_url.to_owned()),
        ("BLOB_STORE_URL", format!("file://{}", blobs.display())),
    ];
    if let Some(clamd) = clamd {
        vars.push(("CLAMD_ADDRESS", clamd.to_owned()));
    }
    let config = Config::from_env(vars.into_iter().collect()).expect("a development configuration");
    let app = App::build(config).await.expect("content-api starts");
    let url = format!("http://127.0.0.1:{}", app.port());
    let stop = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    (url, stop)
}

/// A built, bound service ready to run.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    router: Router,
    relay: Relay,
    processor: Processor,
    access_log: AccessLogWriter,
    shipper: Option<Shipper>,
    token: CancellationToken,
}

impl App {
    /// Connects (lazily: Postgres and NATS may come up later), opens the store, binds.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let (pool, nats) = ic_backend::connect(&config.backend, SERVICE_NAME).await?;
        let store = BlobStore::open(&config.blob_store)?;
        let environment = config.backend.environment.as_str();
        let relay = Relay::new(pool.clone(), nats.clone(), OUTBOX, RelayConfig::default());
        let loki = config.loki.clone().map(LokiClient::new);
        let shipper = loki
            .clone()
            .map(|client| Shipper::new(nats.clone(), client, ShipperConfig::default()));
        let mut registry = Registry::default();
        relay.register(&mut registry);
        if let Some(shipper) = &shipper {
            shipper.register(&mut registry);
        }
        let metrics = Metrics::with_registry(registry);
        let (access_log, access_log_writer) =
            AccessLog::new(pool.clone(), metrics.clone(), BUFFER_ENTRIES);
        let mut state = AppState::new(
            pool.clone(),
            nats.clone(),
            environment,
            store.clone(),
            UploadRules {
                max_bytes: config.max_upload_bytes,
                allowed_mime_types: config.allowed_mime_types.clone(),
            },
            access_log,
            metrics,
        );
        if let Some(client) = loki {
            state = state.with_loki(client);
        }
        let clamd = match &config.virus_scan {
            VirusScan::Clamd(address) => Some(Clamd::new(address.clone(), SCAN_TIMEOUT)),
            VirusScan::Skipped => None,
        };
        let processor = Processor::new(
            state.clone(),
            nats.clone(),
            clamd.clone().map_or(Scanner::Skipped, Scanner::Clamd),
            ProcessorConfig {
                ack_wait: config.processing_ack_wait,
                max_attempts: config.processing_max_attempts,
                ..ProcessorConfig::default()
            },
        );
        let router = app(
            state,
            health(environment, pool.clone(), nats.clone(), store, clamd),
            AppToken(config.backend.app_api_token.clone()),
        );
        let addr = SocketAddr::new(config.backend.host, config.backend.port);
        let listener = ic_http::serve::bind(addr).await?;
        Ok(Self {
            listener,
            router,
            relay,
            processor,
            access_log: access_log_writer,
            shipper,
            token: CancellationToken::new(),
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        ic_http::serve::bound_port(&self.listener)
    }

    /// A token that stops the service when cancelled (as SIGTERM does).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Serves until SIGTERM / Ctrl-C (or the token), then drains requests, lets running
    /// jobs finish and flushes the outbox.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        tracing::info!(port = self.port(), "content-api listening");
        let relay = tokio::spawn(self.relay.run(self.token.clone()));
        let processor = tokio::spawn(self.processor.run(self.token.clone()));
        let access_log = tokio::spawn(self.access_log.run(self.token.clone()));
        let shipper = self
            .shipper
            .map(|s| tokio::spawn(s.run(self.token.clone())));
        tokio::spawn(ic_http::serve::shutdown_signal(self.token.clone()));
        let served = ic_http::serve::serve(self.listener, self.router, self.token.clone()).await;
        self.token.cancel();
        let _ = processor.await;
        let _ = access_log.await;
        let _ = relay.await;
        if let Some(shipper) = shipper {
            let _ = shipper.await;
        }
        served
    }
}

/// Longest a scan may take (a 100 MiB file streams to clamd in seconds).
const SCAN_TIMEOUT: Duration = Duration::from_secs(300);
