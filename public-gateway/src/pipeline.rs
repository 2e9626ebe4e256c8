//! The pipeline of `shared/spec/gateways.md` ("Pipeline, public-gateway"): what it is made
//! of ([`Gateway`]), readiness, and the stages, outermost first ([`PublicGateway`]).

use std::{
    convert::Infallible,
    net::IpAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use ic_gateway::{
    bearer::Verifier,
    client_ip::{Client, TrustedProxies, peer_ip, rate_key},
    cors::{Cors, CorsPolicy},
    hygiene,
    identity::{Anonymous, IdentityProvider, SignedIn, attach_identity},
    jwks,
    local::{self, LocalRoutes},
    proxy::{self, Proxy, ProxyConfig, Upstreams},
    rate_limit::{Decision, Limiter},
    route_check::RouteCheck,
    security::SecurityHeaders,
    serve::Pipeline,
};
use ic_health::{Criticality, Health, HealthInfo};
use ic_http::{ApiError, context::in_request_context, guard_panics};
use ic_telemetry::{HttpMetrics, Tracked};
use serde_json::json;

use crate::config::Config;

use crate::{MAX_BODY_BYTES, OPENAPI, OPENAPI_PATH, SERVICE_NAME, VERSION, routes};

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
    pub limiter: Arc<Limiter>,
    /// Identity provider.
    pub identity: Arc<dyn IdentityProvider>,
    /// Health routes.
    pub health: Health,
    /// Metrics.
    pub metrics: HttpMetrics,
}

impl Gateway {
    /// The gateway for a configuration; with a `verifier`, a caller with a bearer token
    /// is its user (`shared/spec/gateways.md`, "Identity"), else everyone is anonymous.
    pub fn new(config: &Config, verifier: Option<Arc<Verifier>>) -> Self {
        let settings = &config.gateway;
        let proxy = Proxy::new(ProxyConfig {
            upstreams: settings.upstreams.clone(),
            app_api_token: settings.app_api_token.clone(),
            connect_timeout: settings.connect_timeout,
            response_timeout: settings.response_timeout,
            max_connections_per_upstream: settings.upstream_max_connections,
        });
        let limiter = Arc::new(Limiter::new(
            settings.rate_limit_redis_url.as_deref(),
            "ic:rl:public:",
            config.rate_limit_per_minute,
            Duration::from_secs(60),
        ));
        let mut registry = prometheus_client::registry::Registry::default();
        if let Some(verifier) = &verifier {
            verifier.register(&mut registry);
        }
        Self {
            health: health(
                config.environment.as_str(),
                &settings.upstreams,
                limiter.clone(),
                verifier.as_ref(),
            ),
            route_check: RouteCheck {
                table: Arc::new(routes::table()),
                aliases: Arc::new(routes::aliases()),
                max_body_bytes: MAX_BODY_BYTES,
            },
            proxy,
            cors: Arc::new(CorsPolicy::public(&config.origins)),
            trusted: Arc::new(settings.trusted_proxies.clone()),
            limiter,
            identity: match verifier {
                Some(verifier) => Arc::new(SignedIn(verifier)),
                None => Arc::new(Anonymous),
            },
            metrics: HttpMetrics::with_registry(registry),
        }
    }
}

/// Readiness: each upstream's `/health`, the shared rate-limit store and the token
/// issuer's keys (all optional: the gateway keeps serving anonymous callers).
fn health(
    environment: &str,
    upstreams: &Upstreams,
    limiter: Arc<Limiter>,
    verifier: Option<&Arc<Verifier>>,
) -> Health {
    let mut checks = proxy::upstream_checks(upstreams);
    checks.extend(Limiter::readiness_check(&limiter));
    if let Some(verifier) = verifier {
        // Without keys signed-in users are refused, anonymous ones still served.
        checks.extend(jwks::readiness_checks(
            verifier.keys(),
            Criticality::Optional,
        ));
    }
    Health::new(
        HealthInfo::new(SERVICE_NAME, VERSION, environment),
        checks,
        Duration::from_secs(2),
    )
    .with_liveness_field(
        "middleware_status",
        json!({
            "cors": "enabled",
            "rate_limit": limiter.status("client IP"),
            "security_headers": "enabled",
            "route_check": "enabled",
            "auth": if verifier.is_some() {
                "anonymous, or the bearer token's user"
            } else {
                "anonymous"
            },
            "telemetry": "enabled",
        }),
    )
}

/// The pipeline of `shared/spec/gateways.md` as one service: each stage below calls the
/// next, outermost first.
#[derive(Debug, Clone)]
pub struct PublicGateway(Arc<Stages>);

#[derive(Debug)]
struct Stages {
    gateway: Gateway,
    security: SecurityHeaders,
    /// Health, readiness, metrics and the OpenAPI document: answered here, never proxied.
    local: LocalRoutes,
}

/// The gateway's pipeline, ready to serve.
pub fn app(gateway: Gateway) -> PublicGateway {
    let local = LocalRoutes::new(
        gateway.health.clone(),
        gateway.metrics.clone(),
        OPENAPI_PATH,
        OPENAPI,
    );
    PublicGateway(Arc::new(Stages {
        gateway,
        security: SecurityHeaders::public(),
        local,
    }))
}

impl Stages {
    /// Hop-by-hop headers (and those the client's `Connection` lists) and client identity
    /// headers are dropped before the request context reads them (they are never
    /// believed, not even in the gateway's own logs, and a client's `Connection` cannot
    /// remove what a later stage adds) → request id /
    /// correlation id / trace → … → security headers on every response, a panic's 500
    /// included.
    async fn handle(&self, mut request: Request, peer: IpAddr) -> Response {
        hygiene::sanitize(request.headers_mut());
        let mut response = in_request_context(SERVICE_NAME, request, |request| {
            // Boxed: the stages' future moves (and is copied) into each wrapper otherwise.
            guard_panics(Box::pin(self.stages(request, peer)))
        })
        .await;
        self.security.apply(&mut response);
        response
    }

    /// A request the server would not read (malformed, ambiguous framing): nothing of it
    /// is believed, not even `X-Forwarded-For`, yet its answer is like every other one:
    /// ids and trace context, log line and metrics, the rate limit (charged to the socket
    /// peer) and the security headers.
    async fn refuse(&self, error: ApiError, peer: IpAddr) -> Response {
        let gateway = &self.gateway;
        let key = rate_key(gateway.trusted.client_ip(peer, &[]));
        let mut response = in_request_context(SERVICE_NAME, Request::default(), |request| {
            guard_panics(async move {
                let tracked = Tracked::start(&request);
                let decision = gateway.limiter.admit(&key, request.uri().path()).await;
                let mut response = match decision {
                    Some(decision) if !decision.allowed => Decision::refusal(),
                    _ => error.into_response(),
                };
                if let Some(decision) = decision {
                    decision.write_headers(response.headers_mut());
                }
                tracked.finish(&gateway.metrics, &response);
                response
            })
        })
        .await;
        self.security.apply(&mut response);
        response
    }

    /// The stages inside the request context, outermost first. Each is a step of this
    /// one function rather than a future wrapped around the next (every wrapping level
    /// would copy the futures inside it as the request's future is built):
    ///
    /// telemetry (metrics; the span and log line come from the request context) → CORS
    /// (preflights answered here) → client IP (trusted proxies) → rate limit per client
    /// IP → health, metrics and the OpenAPI document answered locally; everything else:
    /// route alias + route check → identity → proxy.
    async fn stages(&self, request: Request, peer: IpAddr) -> Response {
        let gateway = &self.gateway;
        let tracked = Tracked::start(&request);
        let response = match gateway.cors.check(&request) {
            Cors::Preflight(response) => response,
            Cors::Actual(actual) => {
                let client = gateway.trusted.client_of(peer, &request);
                let limit = gateway
                    .limiter
                    .admit(&rate_key(client.ip), request.uri().path())
                    .await;
                let mut response = match limit {
                    Some(decision) if !decision.allowed => Decision::refusal(),
                    _ => self.route(request, client).await,
                };
                if let Some(decision) = limit {
                    decision.write_headers(response.headers_mut());
                }
                actual.finish(&gateway.cors, &mut response);
                response
            }
        };
        tracked.finish(&gateway.metrics, &response);
        response
    }

    /// Health, metrics and the OpenAPI document answered locally; everything else: route
    /// alias + route check → identity → proxy.
    async fn route(&self, request: Request, client: Client) -> Response {
        if let Some(route) = self.local.route_of(request.uri().path()) {
            return self.local.answer(request, route).await;
        }
        let gateway = &self.gateway;
        let (mut request, matched) = match gateway.route_check.check(request) {
            Ok(checked) => checked,
            Err(refused) => return refused,
        };
        if request.method() == http::Method::OPTIONS {
            // A plain OPTIONS (a preflight was answered by CORS), as the document says.
            let allow = gateway.route_check.table.allow_header_of(matched.template);
            return local::options(matched.template, allow);
        }
        if let Err(refused) =
            attach_identity(gateway.identity.as_ref(), &mut request, client.ip).await
        {
            return refused;
        }
        // Boxed: the client's future is large, and the futures around it would otherwise
        // carry (and copy) its size. In a statement of its own: a temporary lives to the
        // end of its statement, so `Box::pin(f).await` would keep room for `f` here too.
        let proxied = Box::pin(gateway.proxy.forward_matched(request, matched, client));
        proxied.await
    }
}

impl Pipeline for PublicGateway {
    fn handle(&self, request: Request, peer: IpAddr) -> impl Future<Output = Response> + Send {
        self.0.handle(request, peer)
    }

    fn refuse(&self, error: ApiError, peer: IpAddr) -> impl Future<Output = Response> + Send {
        self.0.refuse(error, peer)
    }
}

/// As a tower service (tests): the peer comes from axum's `ConnectInfo` /
/// `MockConnectInfo`, loopback when absent.
impl tower::Service<Request> for PublicGateway {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let stages = self.0.clone();
        Box::pin(async move {
            let peer = peer_ip(&request);
            Ok(stages.handle(request, peer).await)
        })
    }
}
