//! public-gateway: the anonymous entry point (`shared/spec/gateways.md`, "Pipeline,
//! public-gateway").

pub mod config;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, middleware::from_fn_with_state, routing::get};
use ic_gateway::{
    client_ip::{TrustedProxies, resolve_client_ip},
    cors::{CorsPolicy, cors},
    gate::{RouteCheck, proxy_to_upstream, route_check},
    identity::{Anonymous, Identify, identify, strip_identity_headers},
    proxy::{Proxy, ProxyConfig, Upstreams},
    rate_limit::{Gcra, IpRateLimit, Limiter, SharedGcra, limit_by_ip},
    routes::{Alias, RouteTable, public_content_routes, public_services_routes},
    security::{SecurityHeaders, security_headers},
};
use ic_health::{Check, Criticality, Health, HealthInfo};
use ic_http::context::request_context;
use ic_telemetry::{HttpMetrics, metrics_handler, track_http};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The crate name, Dapr app id and `service_name` of every envelope.
pub const SERVICE_NAME: &str = "public-gateway";
/// The version reported by health endpoints.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Public routes take no bodies.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Everything the pipeline is made of.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// The upstream proxy.
    pub proxy: Proxy,
    /// Allowlist, aliases, body limit.
    pub route_check: RouteCheck,
    /// CORS policy.
    pub cors: Arc<CorsPolicy>,
    /// Trusted proxies for the client IP.
    pub trusted: Arc<TrustedProxies>,
    /// Per-IP limiter.
    pub limiter: IpRateLimit,
    /// Identity provider.
    pub identity: Identify,
    /// Health routes.
    pub health: Health,
    /// Metrics.
    pub metrics: HttpMetrics,
}

impl Gateway {
    /// The gateway for a configuration.
    pub fn new(config: &Config) -> Self {
        let proxy = Proxy::new(ProxyConfig {
            upstreams: config.upstreams.clone(),
            app_api_token: config.app_api_token.clone(),
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
        });
        let methods = vec![http::Method::GET, http::Method::HEAD, http::Method::OPTIONS];
        let mut routes = public_services_routes();
        routes.extend(public_content_routes());
        let period = Duration::from_secs(60);
        let limit = config.rate_limit_per_minute;
        let limiter = Arc::new(match &config.rate_limit_redis_url {
            Some(url) => match SharedGcra::new(url, "ic:rl:public:", limit, period) {
                Ok(shared) => Limiter::Shared(Box::new(shared)),
                Err(err) => {
                    tracing::error!(error = %err, "RATE_LIMIT_REDIS_URL unusable; limiting in-process");
                    Limiter::Local(Gcra::new(limit, period))
                }
            },
            None => Limiter::Local(Gcra::new(limit, period)),
        });
        Self {
            health: health(
                config.environment.as_str(),
                &config.upstreams,
                limiter.clone(),
            ),
            route_check: RouteCheck {
                table: Arc::new(RouteTable::new(routes, methods)),
                aliases: Arc::new(vec![
                    Alias::new("/services", "/api/v1/services"),
                    Alias::new("/content", "/api/v1/content"),
                ]),
                max_body_bytes: MAX_BODY_BYTES,
            },
            proxy,
            cors: Arc::new(CorsPolicy::public(&config.origins)),
            trusted: Arc::new(config.trusted_proxies.clone()),
            limiter: IpRateLimit(limiter),
            identity: Identify(Arc::new(Anonymous)),
            metrics: HttpMetrics::default(),
        }
    }
}

/// Readiness: each upstream's `/health` (optional: the gateway keeps serving the others).
fn health(environment: &str, upstreams: &Upstreams, limiter: Arc<Limiter>) -> Health {
    // reqwest is built without a default TLS provider (shared/STACK.md): install ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    let checks = ["services-api", "content-api"]
        .into_iter()
        .filter_map(|app| {
            upstreams
                .base(app)
                .map(|base| (app, format!("{base}/health")))
        })
        .map(|(app, url)| {
            let client = client.clone();
            Check::new(app, Criticality::Optional, move || {
                let request = client.get(&url).send();
                async move {
                    match request.await {
                        Ok(res) if res.status().is_success() => Ok(()),
                        Ok(res) => Err(format!("answered {}", res.status())),
                        Err(err) if err.is_timeout() => Err("timed out".into()),
                        Err(_) => Err("unreachable".into()),
                    }
                }
            })
        })
        .collect::<Vec<_>>();
    let mut checks = checks;
    let rate_limit_status = match limiter.as_ref() {
        Limiter::Local(gcra) => format!("in-process, {}/min per client IP", gcra.limit()),
        Limiter::Shared(_) => "redis (in-process while unreachable)".to_owned(),
    };
    if matches!(limiter.as_ref(), Limiter::Shared(_)) {
        // Redis down is degraded, not unready: the gateway keeps limiting in-process.
        checks.push(Check::new(
            "rate_limit_store",
            Criticality::Optional,
            move || {
                let limiter = limiter.clone();
                async move {
                    match limiter.as_ref() {
                        Limiter::Shared(shared) => shared.ping().await,
                        Limiter::Local(_) => Ok(()),
                    }
                }
            },
        ));
    }
    Health::new(
        HealthInfo {
            service: SERVICE_NAME,
            version: VERSION,
            environment: environment.to_owned(),
            dapr_app_id: SERVICE_NAME,
        },
        checks,
        Duration::from_secs(2),
    )
    .with_liveness_field(
        "middleware_status",
        json!({
            "cors": "enabled",
            "rate_limit": rate_limit_status,
            "security_headers": "enabled",
            "route_check": "enabled",
            "auth": "anonymous",
            "telemetry": "enabled",
        }),
    )
}

/// The pipeline of `shared/spec/gateways.md`, outermost first: request id / correlation
/// id / trace → security headers (outside everything else so every response, a 429
/// included, carries them) → telemetry → CORS (preflights answered here) → client IP →
/// rate limit → route alias + route check → identity → proxy.
pub fn app(gateway: Gateway) -> Router {
    let proxied = Router::new()
        .fallback(proxy_to_upstream)
        .with_state(gateway.proxy)
        .layer(from_fn_with_state(gateway.identity, identify))
        .layer(from_fn_with_state(gateway.route_check, route_check));
    Router::new()
        .merge(gateway.health.router())
        .route(
            "/metrics",
            get(metrics_handler).with_state(gateway.metrics.clone()),
        )
        .fallback_service(proxied)
        .layer(from_fn_with_state(gateway.limiter, limit_by_ip))
        .layer(from_fn_with_state(gateway.trusted, resolve_client_ip))
        .layer(from_fn_with_state(gateway.cors, cors))
        .layer(from_fn_with_state(gateway.metrics, track_http))
        .layer(ic_http::panic_guard())
        // Outside the panic guard too, so even a 500 from a panic carries them.
        .layer(from_fn_with_state(
            SecurityHeaders::public(),
            security_headers,
        ))
        .layer(from_fn_with_state(SERVICE_NAME, request_context))
        // Before the request context reads them: client identity headers are never
        // believed, not even in the gateway's own logs.
        .layer(axum::middleware::from_fn(strip_identity_headers))
}

/// Startup failures.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The port could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// A built, bound gateway.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    router: Router,
    token: CancellationToken,
}

impl App {
    /// Binds the port.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let router = app(Gateway::new(&config));
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        Ok(Self {
            listener,
            router,
            token: CancellationToken::new(),
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// A token that stops the gateway when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Serves until SIGTERM / Ctrl-C (or the token); in-flight requests finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        tracing::info!(port = self.port(), "public-gateway listening");
        tokio::spawn(ic_http::serve::shutdown_signal(self.token.clone()));
        ic_http::serve::serve(self.listener, self.router, self.token).await
    }
}
