//! The pipeline of `shared/spec/gateways.md` ("Pipeline, admin-gateway"): what it is made
//! of ([`Gateway`]), readiness, and the stages, outermost first ([`AdminGateway`]).

use std::{net::IpAddr, sync::Arc, time::Duration};

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, header};
use ic_audit::RequestAuditor;
use ic_authz::{Authorizer, Input};
use ic_gateway::{
    bearer::{AuthError, Verifier},
    client_ip::{Client, TrustedProxies},
    cors::{Cors, CorsPolicy},
    hygiene,
    identity::IdentityHeaders,
    jwks,
    local::{self, LocalRoutes},
    path::normalize,
    proxy::{self, Proxy, ProxyConfig},
    rate_limit::{Decision, Limiter},
    route_check::RouteCheck,
    routes::{Alias, RouteDecision},
    security::SecurityHeaders,
    serve::Pipeline,
};
use ic_health::{Check, Criticality, Health, HealthInfo};
use ic_http::{ApiError, ErrorCode, context::in_request_context, guard_panics};
use ic_telemetry::{HttpMetrics, Tracked};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use serde_json::json;

use crate::{
    MAX_BODY_BYTES, OPENAPI, OPENAPI_PATH, SERVICE_NAME, VERSION, audit::Draft, config::Config,
    routes,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Everything the pipeline is made of.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// The upstream proxy.
    pub proxy: Proxy,
    /// Allowlist, aliases, body limits.
    pub route_check: RouteCheck,
    /// CORS policy (credentials allowed).
    pub cors: Arc<CorsPolicy>,
    /// Trusted proxies for the client IP.
    pub trusted: Arc<TrustedProxies>,
    /// Per-user limiter.
    pub limiter: Arc<Limiter>,
    /// Bearer-token verifier.
    pub verifier: Arc<Verifier>,
    /// Who decides authorization.
    pub authorizer: Arc<Authorizer>,
    /// Where request records go.
    pub auditor: RequestAuditor,
    /// `development`, `staging` or `production` (records and health).
    pub environment: String,
    /// Health routes.
    pub health: Health,
    /// Metrics.
    pub metrics: HttpMetrics,
    decisions: Family<ResultLabel, Counter>,
}

impl Gateway {
    /// The gateway for a configuration, with its verifier, authorizer and auditor
    /// started; `nats` is the auditor's connection (its state is the audit sink's
    /// readiness).
    /// `registry` may already hold metrics of the process's other parts (the audit
    /// shipper's); the gateway's own are added to it.
    pub fn new(
        config: &Config,
        verifier: Arc<Verifier>,
        authorizer: Authorizer,
        auditor: RequestAuditor,
        nats: async_nats::Client,
        mut registry: Registry,
    ) -> Self {
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
            "ic:rl:admin:",
            config.rate_limit_per_minute,
            Duration::from_secs(60),
        ));
        let authorizer = Arc::new(authorizer);
        let decisions = Family::<ResultLabel, Counter>::default();
        verifier.register(&mut registry);
        auditor.register(&mut registry);
        for result in ["allow", "deny", "error"] {
            drop(decisions.get_or_create(&ResultLabel { result }));
        }
        registry.register(
            "authz_decisions",
            "Authorization decisions, by result (allow, deny, error: failed closed)",
            decisions.clone(),
        );
        let environment = config.environment.as_str().to_owned();
        let mut checks = proxy::upstream_checks(&settings.upstreams);
        checks.extend(Limiter::readiness_check(&limiter));
        checks.extend(jwks::readiness_checks(
            verifier.keys(),
            Criticality::Critical,
        ));
        checks.push(decision_path_check(authorizer.clone()));
        checks.push(audit_sink_check(nats));
        let health = Health::new(
            HealthInfo::new(SERVICE_NAME, VERSION, &environment),
            checks,
            Duration::from_secs(2),
        )
        .with_liveness_field(
            "middleware_status",
            json!({
                "cors": "enabled (credentials)",
                "rate_limit": limiter.status("user"),
                "security_headers": "enabled (admin profile)",
                "route_check": "enabled",
                "auth": "bearer JWT (Authentik)",
                "opa": match authorizer.as_ref() {
                    Authorizer::Embedded(_) => "embedded Rego policies",
                    Authorizer::Opa(_) => "OPA server",
                },
                "audit": "IC_AUDIT (admin-audit)",
                "telemetry": "enabled",
            }),
        );
        Self {
            route_check: RouteCheck {
                table: Arc::new(routes::table(config.max_upload_bytes)),
                aliases: Arc::new(routes::aliases()),
                max_body_bytes: MAX_BODY_BYTES,
            },
            proxy,
            cors: Arc::new(CorsPolicy::admin(&config.origins)),
            trusted: Arc::new(config.gateway.trusted_proxies.clone()),
            limiter,
            verifier,
            authorizer,
            auditor,
            environment,
            health,
            metrics: HttpMetrics::with_registry(registry),
            decisions,
        }
    }
}

/// The decision path: a decision can be had (critical: without one every request would
/// be refused with 503).
fn decision_path_check(authorizer: Arc<Authorizer>) -> Check {
    Check::new("opa", Criticality::Critical, move || {
        let authorizer = authorizer.clone();
        async move {
            let probe = Input {
                user: ic_authz::User {
                    id: "readiness-probe".into(),
                    roles: Vec::new(),
                    email: None,
                },
                request: ic_authz::Request {
                    method: "GET".into(),
                    path: "/health/ready".into(),
                    route: "/health/ready".into(),
                },
            };
            authorizer
                .decide(&probe)
                .await
                .map(drop)
                .map_err(|e| format!("no decision: {e}"))
        }
    })
}

/// The audit sink: NATS connected (optional: records wait in the queue meanwhile).
fn audit_sink_check(nats: async_nats::Client) -> Check {
    Check::new("audit", Criticality::Optional, move || {
        let state = nats.connection_state();
        async move {
            match state {
                async_nats::connection::State::Connected => Ok(()),
                other => Err(format!("NATS {other:?}; records are queued").to_lowercase()),
            }
        }
    })
}

/// The pipeline as one service: each stage below calls the next, outermost first.
#[derive(Debug, Clone)]
pub struct AdminGateway(Arc<Stages>);

#[derive(Debug)]
struct Stages {
    gateway: Gateway,
    security: SecurityHeaders,
    /// Health, readiness, metrics and the OpenAPI document: answered here, no token.
    local: LocalRoutes,
}

/// The gateway's pipeline, ready to serve.
pub fn app(gateway: Gateway) -> AdminGateway {
    let local = LocalRoutes::new(
        gateway.health.clone(),
        gateway.metrics.clone(),
        OPENAPI_PATH,
        OPENAPI,
    );
    AdminGateway(Arc::new(Stages {
        gateway,
        security: SecurityHeaders::admin(),
        local,
    }))
}

/// The `WWW-Authenticate` of a 403 (RFC 6750 §3.1).
const INSUFFICIENT_SCOPE: &str = "Bearer error=\"insufficient_scope\"";

impl Stages {
    /// Hygiene (hop-by-hop and client identity headers dropped first) → request id /
    /// correlation id / trace → … → the admin security headers on every response, 401s
    /// and a panic's 500 included.
    async fn handle(&self, mut request: Request, peer: IpAddr) -> Response {
        hygiene::sanitize(request.headers_mut());
        let mut response = in_request_context(SERVICE_NAME, request, |request| {
            guard_panics(Box::pin(self.stages(request, peer)))
        })
        .await;
        self.security.apply(&mut response);
        response
    }

    /// A request the server would not read: the envelope with ids, metrics and the
    /// security headers (it never reached authentication: no audit record).
    async fn refuse(&self, error: ApiError, _peer: IpAddr) -> Response {
        let gateway = &self.gateway;
        let mut response = in_request_context(SERVICE_NAME, Request::default(), |request| {
            guard_panics(async move {
                let tracked = Tracked::start(&request);
                let response = error.into_response();
                tracked.finish(&gateway.metrics, &response);
                response
            })
        })
        .await;
        self.security.apply(&mut response);
        response
    }

    /// Telemetry → CORS (preflights answered here, before authentication) → health,
    /// metrics and the OpenAPI document answered locally, without a token → the admin
    /// stages ([`Stages::admin`]).
    async fn stages(&self, request: Request, peer: IpAddr) -> Response {
        let gateway = &self.gateway;
        let tracked = Tracked::start(&request);
        let response = match gateway.cors.check(&request) {
            Cors::Preflight(response) => response,
            Cors::Actual(actual) => {
                let mut response = match self.local.route_of(request.uri().path()) {
                    Some(route) => self.local.answer(request, route).await,
                    None => {
                        let client = gateway.trusted.client_of(peer, &request);
                        let admin = Box::pin(self.admin(request, client));
                        admin.await
                    }
                };
                actual.finish(&gateway.cors, &mut response);
                response
            }
        };
        tracked.finish(&gateway.metrics, &response);
        response
    }

    /// Every request past this point is audited, whatever its answer.
    async fn admin(&self, request: Request, client: Client) -> Response {
        let gateway = &self.gateway;
        let mut draft = Draft::new(&request, client.ip);
        let response = self.authenticated(request, client, &mut draft).await;
        let record = draft.finish(
            SERVICE_NAME,
            &gateway.environment,
            response.status().as_u16(),
        );
        gateway.auditor.record(record);
        response
    }

    /// Authentication → authorization → per-user rate limit → route check → proxy.
    async fn authenticated(&self, request: Request, client: Client, draft: &mut Draft) -> Response {
        let gateway = &self.gateway;
        // Authentication.
        let verified = match gateway
            .verifier
            .authenticate(request.headers(), client.ip)
            .await
        {
            Ok(verified) => verified,
            Err(err) => {
                draft.reason = Some(match &err {
                    AuthError::Missing => "no bearer token".to_owned(),
                    AuthError::Invalid(why) => format!("invalid token: {why}"),
                    AuthError::Limited(_) => "verification pre-limit of the client IP".to_owned(),
                });
                tracing::info!(reason = draft.reason.as_deref(), "authentication refused");
                return err.into_response(gateway.verifier.realm());
            }
        };
        let identity = verified.identity;
        tracing::Span::current().record("user_id", identity.user_id.as_str());
        draft.user_id = Some(identity.user_id.clone());
        draft.roles = identity.roles.clone();

        // The path and route the policy decides on (normalised, aliases applied).
        let path = match normalize(request.uri().path()) {
            Ok(path) => Alias::apply(&gateway.route_check.aliases, path),
            Err(err) => return ApiError::validation("path", err.message()).into_response(),
        };
        draft.path = path.encoded().to_owned();
        let route = match gateway.route_check.table.decide(request.method(), &path) {
            RouteDecision::Allowed(route) => Some(route.template()),
            _ => None,
        };
        draft.route = route;

        // Authorization: every request is a decision; none to be had is 503.
        let input = Input {
            user: ic_authz::User {
                id: identity.user_id.clone(),
                roles: identity.roles.clone(),
                email: identity.email.clone(),
            },
            request: ic_authz::Request {
                method: request.method().as_str().to_owned(),
                path: draft.path.clone(),
                route: route.unwrap_or("unmatched").to_owned(),
            },
        };
        let decided = Box::pin(gateway.authorizer.decide(&input));
        let decision = match decided.await {
            Ok(decision) => decision,
            Err(err) => {
                self.count("error");
                tracing::error!(error = %err, "no authorization decision; failing closed");
                draft.reason = Some(format!("no authorization decision: {err}"));
                return ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    "authorization is unavailable; try again shortly",
                )
                .into_response();
            }
        };
        tracing::info!(allow = decision.allow, reason = %decision.reason, "authorization decision");
        draft.reason = Some(decision.reason.clone());
        if !decision.allow {
            self.count("deny");
            let mut response = ApiError::new(
                ErrorCode::Forbidden,
                format!("forbidden: {}", decision.reason),
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(INSUFFICIENT_SCOPE),
            );
            return response;
        }
        self.count("allow");

        // Per-user rate limit.
        let limit = gateway
            .limiter
            .check(&rate_key_of_user(&identity.user_id))
            .await;
        let mut response = if limit.allowed {
            self.forward(request, client, draft, &identity).await
        } else {
            draft.reason = Some("per-user rate limit".to_owned());
            Decision::refusal()
        };
        limit.write_headers(response.headers_mut());
        response
    }

    /// Route check (404/405/413 before any upstream call) → identity headers → audit tap
    /// → proxy.
    async fn forward(
        &self,
        request: Request,
        client: Client,
        draft: &mut Draft,
        identity: &ic_http::Identity,
    ) -> Response {
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
        match IdentityHeaders::of(identity) {
            Ok(headers) => headers.write(request.headers_mut()),
            Err(err) => return err.into_response(),
        }
        let request = draft.tap(request, matched.template == routes::UPLOAD);
        let proxied = Box::pin(gateway.proxy.forward_matched(request, matched, client));
        proxied.await
    }

    fn count(&self, result: &'static str) {
        self.gateway
            .decisions
            .get_or_create(&ResultLabel { result })
            .inc();
    }
}

/// The per-user limiter's key: the user id, apart from client IPs' keys.
fn rate_key_of_user(user_id: &str) -> String {
    format!("user:{user_id}")
}

impl Pipeline for AdminGateway {
    fn handle(&self, request: Request, peer: IpAddr) -> impl Future<Output = Response> + Send {
        self.0.handle(request, peer)
    }

    fn refuse(&self, error: ApiError, peer: IpAddr) -> impl Future<Output = Response> + Send {
        self.0.refuse(error, peer)
    }
}
