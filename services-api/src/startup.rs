//! Startup: what the service is built from and how it runs (zero2prod's `startup.rs`):
//! the router, readiness, and [`App`] with `build`, `port` and `run_until_stopped`.

use std::{net::SocketAddr, time::Duration};

use async_nats::jetstream;
use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware::{from_fn, from_fn_with_state},
    routing::get,
};
use ic_audit::{
    Change, ChangeRecorder,
    loki::{LokiClient, Shipper, ShipperConfig},
};
use ic_events::{Relay, RelayConfig};
use ic_health::{Health, HealthInfo};
use ic_http::{
    RequestContext,
    app_token::{AppToken, require_app_token},
    context::request_context,
    etag::public_cache,
    extract::read_whole_body,
    fallback_method_not_allowed, fallback_not_found,
};
use ic_telemetry::{HttpMetrics, metrics_handler, track_http};
use prometheus_client::registry::Registry;
use sqlx::{PgConnection, PgPool};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{DOMAIN, MAX_BODY_BYTES, OUTBOX, SERVICE_NAME, VERSION, config::Config, error, routes};

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
}

impl AppState {
    /// State over a pool and a NATS client.
    pub fn new(pool: PgPool, nats: async_nats::Client, environment: &str) -> Self {
        Self {
            pool,
            recorder: ChangeRecorder::new(SERVICE_NAME, DOMAIN, environment.to_owned(), OUTBOX),
            jetstream: jetstream::new(nats),
            loki: None,
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
}

/// The readiness checks: Postgres is critical, NATS optional (writes go to the outbox
/// and are relayed when it returns).
pub fn health(environment: &str, pool: PgPool, nats: async_nats::Client) -> Health {
    Health::new(
        HealthInfo::new(SERVICE_NAME, VERSION, environment),
        vec![
            ic_backend::postgres_check(pool),
            ic_backend::nats_check(nats),
        ],
        Duration::from_secs(2),
    )
}

/// The router as a development deployment has it (no app token, its own metrics): for
/// other crates' tests that need a real services-api.
pub fn development_app(pool: PgPool, nats: async_nats::Client) -> Router {
    app(
        AppState::new(pool.clone(), nats.clone(), "development"),
        health("development", pool, nats),
        HttpMetrics::default(),
        AppToken(None),
    )
}

/// The router: the spec's routes behind the shared layers (outermost first: request
/// context, panic guard, app token, metrics).
pub fn app(state: AppState, health: Health, metrics: HttpMetrics, app_token: AppToken) -> Router {
    let public = routes::public::router().layer(from_fn(public_cache));
    let admin = Router::new()
        .merge(routes::services::router())
        .merge(routes::categories::router())
        .merge(routes::featured::router());
    Router::new()
        .merge(public)
        .merge(admin)
        .with_state(state)
        .merge(health.router())
        .route("/metrics", get(metrics_handler).with_state(metrics.clone()))
        .fallback(fallback_not_found)
        .method_not_allowed_fallback(fallback_method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Every body read whole, so no answer leaves unread bytes that make hyper close a
        // connection a gateway has pooled.
        .layer(from_fn_with_state(MAX_BODY_BYTES, read_whole_body))
        .layer(from_fn_with_state(metrics, track_http))
        .layer(from_fn_with_state(app_token, require_app_token))
        .layer(ic_http::panic_guard())
        .layer(from_fn_with_state(SERVICE_NAME, request_context))
}

/// A built, bound service ready to run.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    router: Router,
    relay: Relay,
    shipper: Option<Shipper>,
    token: CancellationToken,
}

impl App {
    /// Connects (lazily: Postgres and NATS may come up later), binds the port.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let (pool, nats) = ic_backend::connect(&config.backend, SERVICE_NAME).await?;
        let environment = config.backend.environment.as_str();
        let mut state = AppState::new(pool.clone(), nats.clone(), environment);
        let relay = Relay::new(pool.clone(), nats.clone(), OUTBOX, RelayConfig::default());
        let mut registry = Registry::default();
        relay.register(&mut registry);
        let mut shipper = None;
        if let Some(loki) = config.loki.clone() {
            let client = LokiClient::new(loki);
            state = state.with_loki(client.clone());
            let created = Shipper::new(nats.clone(), client, ShipperConfig::default());
            created.register(&mut registry);
            shipper = Some(created);
        }
        let router = app(
            state,
            health(environment, pool.clone(), nats.clone()),
            HttpMetrics::with_registry(registry),
            AppToken(config.backend.app_api_token.clone()),
        );
        let addr = SocketAddr::new(config.backend.host, config.backend.port);
        let listener = ic_http::serve::bind(addr).await?;
        Ok(Self {
            listener,
            router,
            relay,
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

    /// Serves until SIGTERM / Ctrl-C (or the token), then drains requests and flushes
    /// the outbox.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        tracing::info!(port = self.port(), "services-api listening");
        let relay = tokio::spawn(self.relay.run(self.token.clone()));
        // Ships IC_AUDIT to Loki (shared durable consumer: every replica may run it).
        let shipper = self
            .shipper
            .map(|s| tokio::spawn(s.run(self.token.clone())));
        tokio::spawn(ic_http::serve::shutdown_signal(self.token.clone()));
        let served = ic_http::serve::serve(self.listener, self.router, self.token.clone()).await;
        self.token.cancel();
        let _ = relay.await;
        if let Some(shipper) = shipper {
            let _ = shipper.await;
        }
        served
    }
}
