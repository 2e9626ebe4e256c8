//! Startup (zero2prod's `startup.rs`): the operating and metrics routers, readiness, and
//! [`App`], which binds both ports and runs the fan-out, the deliverers and the audit
//! shipper until stopped.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::{connection::State as NatsState, jetstream};
use axum::{Router, middleware::from_fn_with_state, routing::get};
use ic_audit::loki::{LokiClient, Shipper, ShipperConfig};
use ic_health::{Check, Criticality, Health, HealthInfo};
use ic_http::{context::request_context, fallback_method_not_allowed, fallback_not_found};
use ic_telemetry::track_http;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    SERVICE_NAME, VERSION, config::Config, delivery, delivery::Deliverer, fanout, fanout::Fanout,
    metrics::Metrics, routes, subscription_state::Endpoints,
};

/// What the operating routes share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// JetStream.
    pub js: jetstream::Context,
    /// The subscriptions and their runtime state.
    pub endpoints: Endpoints,
}

/// Readiness: NATS connected and the shared consumer bound.
pub fn health(environment: &str, nats: async_nats::Client, bound: Arc<AtomicBool>) -> Health {
    Health::new(
        HealthInfo::new(SERVICE_NAME, VERSION, environment),
        vec![
            Check::new("nats", Criticality::Critical, move || {
                let state = nats.connection_state();
                async move {
                    match state {
                        NatsState::Connected => Ok(()),
                        other => Err(format!("{other}")),
                    }
                }
            }),
            Check::new("consumer", Criticality::Critical, move || {
                let bound = bound.load(Ordering::Relaxed);
                async move {
                    if bound {
                        Ok(())
                    } else {
                        Err(format!("{} is not bound", fanout::WORKERS_CONSUMER))
                    }
                }
            }),
        ],
        Duration::from_secs(2),
    )
}

/// The operating router (port 8002): health, then the token-protected routes.
pub fn app(
    state: AppState,
    health: Health,
    metrics: &Metrics,
    admin_token: Option<ic_http::Secret>,
) -> Router {
    let operating = Router::new()
        .merge(routes::subscriptions::router())
        .merge(routes::dead_letters::router())
        .layer(from_fn_with_state(admin_token, routes::require_admin_token))
        .with_state(state);
    Router::new()
        .merge(health.worker_router())
        .merge(operating)
        .fallback(fallback_not_found)
        .method_not_allowed_fallback(fallback_method_not_allowed)
        .layer(from_fn_with_state(metrics.http.clone(), track_http))
        .layer(ic_http::panic_guard())
        .layer(from_fn_with_state(SERVICE_NAME, request_context))
}

/// The metrics router (port 7777).
pub fn metrics_app(metrics: Metrics) -> Router {
    Router::new().route(
        "/metrics",
        get(ic_telemetry::metrics_handler).with_state(metrics.http),
    )
}

/// Startup failures.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A port could not be bound.
    #[error(transparent)]
    Bind(#[from] ic_http::serve::BindError),
    /// The NATS URL is unusable.
    #[error("NATS: {0}")]
    Nats(#[from] async_nats::ConnectError),
}

/// A built, bound broadcaster.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    metrics_listener: TcpListener,
    router: Router,
    metrics_router: Router,
    fanout: Fanout,
    deliverer: Arc<Deliverer>,
    endpoints: Endpoints,
    shipper: Option<Shipper>,
    nats: async_nats::Client,
    metrics: Metrics,
    token: CancellationToken,
}

impl App {
    /// Connects to NATS (retrying in the background) and binds both ports.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let nats = async_nats::ConnectOptions::new()
            .name(SERVICE_NAME)
            .retry_on_initial_connect()
            .connect(config.nats_url.as_str())
            .await?;
        let js = jetstream::new(nats.clone());
        let shipper = config.loki.clone().map(|loki| {
            Shipper::new(
                nats.clone(),
                LokiClient::new(loki),
                ShipperConfig::default(),
            )
        });
        let mut registry = Registry::default();
        if let Some(shipper) = &shipper {
            shipper.register(&mut registry);
        }
        let metrics = Metrics::with_registry(registry);
        let endpoints = Endpoints::new(
            config.subscriptions.clone(),
            config.breaker_failures,
            config.breaker_cooldown,
        );
        for endpoint in endpoints.iter() {
            metrics.add_subscription(endpoint.id());
            tracing::info!(subscription = endpoint.id(), url = %endpoint.subscription.redacted_url(), enabled = endpoint.subscription.enabled, "subscription loaded");
        }
        let bound = Arc::new(AtomicBool::new(false));
        let router = app(
            AppState {
                js: js.clone(),
                endpoints: endpoints.clone(),
            },
            health(config.environment.as_str(), nats.clone(), bound.clone()),
            &metrics,
            config.admin_token.clone(),
        );
        let listener = ic_http::serve::bind(SocketAddr::new(config.host, config.port)).await?;
        let metrics_listener =
            ic_http::serve::bind(SocketAddr::new(config.host, config.metrics_port)).await?;
        Ok(Self {
            listener,
            metrics_listener,
            router,
            metrics_router: metrics_app(metrics.clone()),
            fanout: Fanout {
                js: js.clone(),
                endpoints: endpoints.clone(),
                metrics: metrics.clone(),
                subjects: config.subjects.clone(),
                bound,
            },
            deliverer: Arc::new(Deliverer {
                js,
                http: delivery::http_client(config.allow_private_targets),
                metrics: metrics.clone(),
                schedule: config.retry_schedule.clone(),
                max_retry_after: config.max_retry_after,
                allow_private: config.allow_private_targets,
            }),
            endpoints,
            shipper,
            nats,
            metrics,
            token: CancellationToken::new(),
        })
    }

    /// The operating port.
    pub fn port(&self) -> u16 {
        ic_http::serve::bound_port(&self.listener)
    }

    /// The metrics port.
    pub fn metrics_port(&self) -> u16 {
        ic_http::serve::bound_port(&self.metrics_listener)
    }

    /// A token that stops the broadcaster when cancelled (as SIGTERM does).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Runs until SIGTERM / Ctrl-C (or the token): no new fetches after that, deliveries
    /// in flight finish and are acknowledged.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        tracing::info!(
            port = self.port(),
            metrics_port = self.metrics_port(),
            "broadcaster listening"
        );
        let token = self.token.clone();
        tokio::spawn(ic_http::serve::shutdown_signal(token.clone()));
        let mut workers = tokio::task::JoinSet::new();
        workers.spawn(self.fanout.run(token.clone()));
        for endpoint in self.endpoints.iter() {
            workers.spawn(self.deliverer.clone().run(endpoint.clone(), token.clone()));
        }
        if let Some(shipper) = self.shipper {
            workers.spawn(shipper.run(token.clone()));
        }
        let nats = self.nats.clone();
        let metrics = self.metrics.clone();
        let watch = token.clone();
        workers.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while !watch.is_cancelled() {
                metrics.set_nats_connected(nats.connection_state() == NatsState::Connected);
                tokio::select! {
                    _ = tick.tick() => {}
                    () = watch.cancelled() => {}
                }
            }
        });
        let metrics_server = tokio::spawn(ic_http::serve::serve(
            self.metrics_listener,
            self.metrics_router,
            token.clone(),
        ));
        let served = ic_http::serve::serve(self.listener, self.router, token.clone()).await;
        token.cancel();
        while workers.join_next().await.is_some() {}
        let _ = metrics_server.await;
        let _ = self.nats.flush().await;
        served
    }
}
