//! The streaming reverse proxy: pooled keep-alive connections ([`ic_h1::client`]),
//! bodies streamed both ways (never buffered), the upstream answer's hop-by-hop headers
//! stripped (a request's went in the gateway's hygiene stage, [`crate::hygiene`], which
//! must run first; the engine's client also never writes the hop-by-hop names),
//! `X-Forwarded-*` set, trace context and correlation id forwarded, `dapr-api-token`
//! added, connect and response timeouts.
//! Upstream refused → 502, timeout → 504, upstream errors passed through.
//! Contract: `shared/spec/gateways.md`, "Upstream invocation".

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::Request,
    response::{IntoResponse, Response},
};
use http::{HeaderName, HeaderValue, Uri, header};
use http_body_util::LengthLimitError;
use ic_http::{ApiError, ErrorCode, RequestContext, Secret, headers::name};
use ic_telemetry::RouteLabel;

use bytes::Bytes;
use ic_h1::{
    BoxError,
    client::{Client, ClientError as UpstreamError, Deadlines},
};

use crate::{client_ip, hygiene::strip_answer, route_check::RouteMatch};

/// How upstreams are addressed.
#[derive(Debug, Clone)]
pub enum Upstreams {
    /// Straight to each app's base URL (`SERVICES_API_URL`, `CONTENT_API_URL`).
    Direct(HashMap<&'static str, String>),
    /// Through the local Dapr sidecar's invocation API on this port.
    Dapr {
        /// `DAPR_HTTP_PORT`.
        port: u16,
    },
}

impl Upstreams {
    /// `app_id`'s server (an `http://host:port/` URI) and the path before the request's
    /// own: a direct base URL's path, or the sidecar's invocation prefix.
    fn route(&self, app_id: &str) -> Option<(Uri, Prefix)> {
        match self {
            Self::Direct(bases) => {
                let base: Uri = bases.get(app_id)?.parse().ok()?;
                let server = Uri::builder()
                    .scheme(base.scheme()?.clone())
                    .authority(base.authority()?.clone())
                    .path_and_query("/")
                    .build()
                    .ok()?;
                let path = base.path().trim_end_matches('/').to_owned();
                Some((server, Prefix::Path(path)))
            }
            Self::Dapr { port } => Some((
                Uri::try_from(format!("http://127.0.0.1:{port}/")).ok()?,
                Prefix::DaprInvoke,
            )),
        }
    }

    /// The URI for `app_id`'s `path` and `query`.
    pub fn uri(&self, app_id: &str, path: &str, query: Option<&str>) -> Option<Uri> {
        let (server, prefix) = self.route(app_id)?;
        let authority = server.authority()?;
        let target = prefix.target(app_id, path, query);
        Uri::try_from(format!("http://{authority}{target}")).ok()
    }

    /// The base URL of an app's own endpoints (health checks), direct or via Dapr.
    pub fn base(&self, app_id: &str) -> Option<String> {
        match self {
            Self::Direct(bases) => bases
                .get(app_id)
                .map(|b| b.trim_end_matches('/').to_owned()),
            Self::Dapr { port } => Some(format!(
                "http://127.0.0.1:{port}/v1.0/invoke/{app_id}/method"
            )),
        }
    }
}

/// What goes before a request's path upstream.
#[derive(Debug, Clone)]
enum Prefix {
    /// A direct base URL's path (without its trailing `/`).
    Path(String),
    /// The sidecar's `/v1.0/invoke/<app-id>/method`.
    DaprInvoke,
}

impl Prefix {
    /// The request target (path and query) for `app_id`'s `path` and `query`.
    fn target(&self, app_id: &str, path: &str, query: Option<&str>) -> String {
        let pieces = match self {
            Self::Path(base) => [base.as_str(), "", ""],
            Self::DaprInvoke => ["/v1.0/invoke/", app_id, "/method"],
        };
        let query_len = query.map_or(0, |query| query.len() + 1);
        let len = pieces.iter().map(|p| p.len()).sum::<usize>() + path.len() + query_len;
        let mut target = String::with_capacity(len);
        for piece in pieces {
            target.push_str(piece);
        }
        target.push_str(path);
        if let Some(query) = query {
            target.push('?');
            target.push_str(query);
        }
        target
    }
}

/// The seam between the proxy and the HTTP client it reaches upstreams with: the
/// engine's pooled client ([`ic_h1::client::Client`]) by default; another client (hyper's,
/// a test's stand-in) can take its place. Errors are the engine's
/// ([`ic_h1::client::ClientError`]), which the proxy answers as 502, 503 or 504.
pub trait UpstreamClient: std::fmt::Debug + Send + Sync + 'static {
    /// An upstream server, resolved once.
    type Target: std::fmt::Debug + Send + Sync + 'static;
    /// The body of an upstream's answer, streamed to the client.
    type Body: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static;

    /// Resolves an `http://host:port/` server.
    fn target(&self, server: &Uri) -> Result<Self::Target, UpstreamError>;

    /// Sends `request` (its URI in origin-form) to `target` within `deadlines`; the
    /// answer once its head has arrived.
    fn send(
        &self,
        target: &Self::Target,
        request: Request,
        deadlines: Deadlines,
    ) -> impl Future<Output = Result<http::Response<Self::Body>, UpstreamError>> + Send;
}

impl UpstreamClient for Client {
    type Target = ic_h1::client::Target;
    type Body = ic_h1::client::ResponseBody;

    fn target(&self, server: &Uri) -> Result<Self::Target, UpstreamError> {
        Client::target(self, server)
    }

    fn send(
        &self,
        target: &Self::Target,
        request: Request,
        deadlines: Deadlines,
    ) -> impl Future<Output = Result<http::Response<Self::Body>, UpstreamError>> + Send {
        self.send_to(target, request, deadlines)
    }
}

/// Upstreams resolved once (server and connection pool), so a request neither builds
/// nor parses an absolute URI.
#[derive(Debug)]
enum Resolved<T> {
    Direct(Vec<(&'static str, T, Prefix)>),
    Dapr(T),
}

impl<T> Resolved<T> {
    fn new<C: UpstreamClient<Target = T>>(upstreams: &Upstreams, client: &C) -> Self {
        let resolve = |app_id: &str| {
            let (server, prefix) = upstreams.route(app_id)?;
            match client.target(&server) {
                Ok(target) => Some((target, prefix)),
                Err(err) => {
                    tracing::warn!(upstream = app_id, error = %err, "unusable upstream: its routes answer 502");
                    None
                }
            }
        };
        match upstreams {
            Upstreams::Direct(bases) => Self::Direct(
                bases
                    .keys()
                    .filter_map(|app_id| resolve(app_id).map(|(t, p)| (*app_id, t, p)))
                    .collect(),
            ),
            // The sidecar serves every app: any app id resolves to it (its loopback
            // `http://` URL always does; were it not to, every route would answer 502).
            Upstreams::Dapr { .. } => match resolve("dapr") {
                Some((target, _)) => Self::Dapr(target),
                None => Self::Direct(Vec::new()),
            },
        }
    }

    /// `app_id`'s server, and the request target for its `path` and `query`.
    fn locate(&self, app_id: &str, path: &str, query: Option<&str>) -> Option<(&T, String)> {
        match self {
            Self::Direct(apps) => apps
                .iter()
                .find(|(app, _, _)| *app == app_id)
                .map(|(_, target, prefix)| (target, prefix.target(app_id, path, query))),
            Self::Dapr(target) => Some((target, Prefix::DaprInvoke.target(app_id, path, query))),
        }
    }
}

/// Proxy settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where upstreams live.
    pub upstreams: Upstreams,
    /// `APP_API_TOKEN`, sent as `dapr-api-token`.
    pub app_api_token: Option<Secret>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed for a request body to go up, and then for the upstream's response
    /// headers (each; a route may have its own). Nothing sent or taken for 60 s fails
    /// either sooner.
    pub response_timeout: Duration,
    /// Connections in use at once per upstream; a request past that waits up to the
    /// connect timeout for one, then gets 503.
    pub max_connections_per_upstream: usize,
}

/// The proxy, on the engine's pooled HTTP/1.1 client unless another stands in.
#[derive(Debug)]
pub struct Proxy<C: UpstreamClient = Client> {
    client: Arc<C>,
    resolved: Arc<Resolved<C::Target>>,
    config: ProxyConfig,
}

impl<C: UpstreamClient> Clone for Proxy<C> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            resolved: self.resolved.clone(),
            config: self.config.clone(),
        }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Where and how to forward one request.
#[derive(Debug, Clone, Copy)]
pub struct Forward<'a> {
    /// The upstream's app id.
    pub app_id: &'a str,
    /// The normalised, encoded path.
    pub path: &'a str,
    /// The client, for the `X-Forwarded-*` headers.
    pub client: client_ip::Client,
    /// The route's own wait for response headers, instead of the default.
    pub timeout: Option<Duration>,
}

/// Whether an error of type `E` is somewhere in `err`'s source chain.
fn caused_by<E: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.is::<E>() {
            return true;
        }
        current = e.source();
    }
    false
}

impl Proxy {
    /// A proxy on the engine's pooled client.
    pub fn new(config: ProxyConfig) -> Self {
        let client = Client::with_max_connections(
            config.connect_timeout,
            Duration::from_secs(60),
            config.max_connections_per_upstream,
        );
        Self::with_client(config, client)
    }
}

impl<C: UpstreamClient> Proxy<C> {
    /// A proxy on another client.
    pub fn with_client(config: ProxyConfig, client: C) -> Self {
        let resolved = Arc::new(Resolved::new(&config.upstreams, &client));
        Self {
            client: Arc::new(client),
            resolved,
            config,
        }
    }

    /// The upstream addressing.
    pub fn upstreams(&self) -> &Upstreams {
        &self.config.upstreams
    }

    /// Forwards `request` as `to` says, streaming both ways.
    pub async fn forward(&self, request: Request, to: Forward<'_>) -> Response {
        let Forward {
            app_id,
            path,
            client,
            timeout,
        } = to;
        let (mut parts, body) = request.into_parts();
        let Some((target, uri)) = self.resolved.locate(app_id, path, parts.uri.query()) else {
            return ApiError::new(
                ErrorCode::BadGateway,
                "no upstream is configured for this route",
            )
            .into_response();
        };
        // Origin-form: the server is the target's. Normalised and encoded by the route
        // check, with the client's already parsed query: it parses.
        let Ok(uri) = Uri::try_from(uri) else {
            return ApiError::new(ErrorCode::BadGateway, "the upstream URI is invalid")
                .into_response();
        };
        // Borrowed, not cloned: the headers are a different field of the same parts.
        let ctx = parts.extensions.get::<RequestContext>();
        let headers = &mut parts.headers;
        // Hop-by-hop and client identity headers went in the gateway's hygiene stage
        // ([`crate::hygiene::sanitize`]), before the identity stage set its own.
        let original_host = headers.remove(header::HOST);
        // Nothing the client says about forwarding or about Dapr is passed on: a client
        // `dapr-app-id` would let the sidecar pick another app than the route table did.
        let client_controlled: Vec<HeaderName> = headers
            .keys()
            .filter(|name| {
                let name = name.as_str();
                name.starts_with("dapr-")
                    || name.starts_with("x-forwarded-")
                    || name == "forwarded"
                    || name == "x-real-ip"
            })
            .cloned()
            .collect();
        for name in client_controlled {
            headers.remove(name);
        }
        headers.insert(
            X_FORWARDED_FOR,
            HeaderValue::try_from(client_ip::ip_text(client.ip)).expect("an IP is a valid header"),
        );
        headers.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if client.https { "https" } else { "http" }),
        );
        if let Some(host) = original_host {
            headers.insert(X_FORWARDED_HOST, host);
        }
        if let Some(ctx) = ctx {
            let child = ctx.trace.child();
            if let Ok(value) = HeaderValue::try_from(child.traceparent()) {
                headers.insert(name::TRACEPARENT, value);
            }
            if let Some(value) = child
                .tracestate
                .as_deref()
                .and_then(|state| HeaderValue::from_str(state).ok())
            {
                headers.insert(name::TRACESTATE, value);
            }
            headers.insert(
                name::X_CORRELATION_ID,
                HeaderValue::from_str(
                    ctx.correlation_id
                        .hyphenated()
                        .encode_lower(&mut uuid::Uuid::encode_buffer()),
                )
                .expect("a UUID"),
            );
            if let Ok(id) = HeaderValue::from_str(&ctx.request_id) {
                headers.insert(name::X_REQUEST_ID, id);
            }
        }
        debug_assert!(headers.get(name::TRACEPARENT).is_some() || ctx.is_none());
        if let Some(value) = self
            .config
            .app_api_token
            .as_ref()
            .and_then(|token| HeaderValue::from_str(token.expose()).ok())
        {
            headers.insert(name::DAPR_API_TOKEN, value);
        }
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;
        let upstream_request = http::Request::from_parts(parts, body);
        let limit = timeout.unwrap_or(self.config.response_timeout);
        let deadlines = Deadlines {
            upload: limit,
            answer: limit,
        };
        match self.client.send(target, upstream_request, deadlines).await {
            Err(UpstreamError::RequestBody(err)) => {
                if caused_by::<LengthLimitError>(&*err) {
                    // A chunked body that outgrew the limit while being streamed up.
                    ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large")
                        .into_response()
                } else {
                    ApiError::new(
                        ErrorCode::ValidationError,
                        "the request body broke off before its end",
                    )
                    .into_response()
                }
            }
            Err(UpstreamError::Busy) => {
                tracing::warn!(
                    upstream = app_id,
                    "every connection to the upstream stayed in use for the connect timeout"
                );
                ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    "the upstream is busy; try again shortly",
                )
                .into_response()
            }
            Err(err @ (UpstreamError::ConnectTimeout | UpstreamError::Timeout)) => {
                tracing::warn!(upstream = app_id, error = %err, "upstream request timed out");
                ApiError::new(
                    ErrorCode::GatewayTimeout,
                    "the upstream did not answer in time",
                )
                .into_response()
            }
            Err(err) => {
                tracing::warn!(upstream = app_id, error = %err, "upstream request failed");
                ApiError::new(ErrorCode::BadGateway, "the upstream is unavailable").into_response()
            }
            Ok(response) => {
                let (mut parts, incoming) = response.into_parts();
                // The upstream's answer is a message of its own: its hop-by-hop headers,
                // and its `Server`.
                strip_answer(&mut parts.headers);
                Response::from_parts(parts, Body::new(incoming))
            }
        }
    }
}

impl<C: UpstreamClient> Proxy<C> {
    /// The final stage: forwards to the matched upstream, labelling the response with
    /// the route template for metrics.
    pub async fn forward_matched(
        &self,
        request: Request,
        matched: RouteMatch,
        client: client_ip::Client,
    ) -> Response {
        let mut response = self
            .forward(
                request,
                Forward {
                    app_id: matched.upstream,
                    path: &matched.path,
                    client,
                    timeout: matched.timeout,
                },
            )
            .await;
        response
            .extensions_mut()
            .insert(RouteLabel(matched.template));
        response
    }
}

/// Readiness checks of the upstreams: each one's `/health` (optional: a gateway keeps
/// serving the others, and answers 502 for the one down).
pub fn upstream_checks(upstreams: &Upstreams) -> Vec<ic_health::Check> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    ["services-api", "content-api"]
        .into_iter()
        .filter_map(|app| {
            upstreams
                .base(app)
                .map(|base| (app, format!("{base}/health")))
        })
        .map(|(app, url)| {
            let client = client.clone();
            ic_health::Check::new(app, ic_health::Criticality::Optional, move || {
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
        .collect()
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    /// A client answering from memory: the seam lets it stand in for the engine's. It
    /// records each request and answers as `answer` says.
    #[derive(Debug)]
    struct StandIn {
        seen: std::sync::Mutex<Vec<(String, http::request::Parts)>>,
        answer: fn() -> Result<http::Response<http_body_util::Full<Bytes>>, UpstreamError>,
    }

    impl UpstreamClient for StandIn {
        type Target = String;
        type Body = http_body_util::Full<Bytes>;

        fn target(&self, server: &Uri) -> Result<String, UpstreamError> {
            Ok(server.to_string())
        }

        async fn send(
            &self,
            target: &String,
            request: Request,
            _: Deadlines,
        ) -> Result<http::Response<Self::Body>, UpstreamError> {
            let (parts, _) = request.into_parts();
            self.seen.lock().unwrap().push((target.clone(), parts));
            (self.answer)()
        }
    }

    fn stand_in(
        answer: fn() -> Result<http::Response<http_body_util::Full<Bytes>>, UpstreamError>,
    ) -> Proxy<StandIn> {
        Proxy::with_client(
            ProxyConfig {
                upstreams: Upstreams::Dapr { port: 3500 },
                app_api_token: Some(Secret::new("app-token".to_owned())),
                connect_timeout: Duration::from_secs(1),
                response_timeout: Duration::from_secs(1),
                max_connections_per_upstream: 1,
            },
            StandIn {
                seen: std::sync::Mutex::default(),
                answer,
            },
        )
    }

    fn forward_to(proxy: &Proxy<StandIn>) -> impl Future<Output = Response> + '_ {
        let request = http::Request::get("/ignored?q=1")
            .header("host", "gw.example")
            .header("dapr-app-id", "another-app")
            .header("x-forwarded-for", "6.6.6.6")
            .body(Body::empty())
            .unwrap();
        proxy.forward(
            request,
            Forward {
                app_id: "services-api",
                path: "/api/v1/services",
                client: client_ip::Client {
                    ip: std::net::IpAddr::from([10, 0, 0, 7]),
                    https: true,
                },
                timeout: None,
            },
        )
    }

    #[tokio::test]
    async fn another_client_can_stand_in_and_sees_what_the_engine_would() {
        let proxy = stand_in(|| {
            Ok(http::Response::builder()
                .header("connection", "x-hop")
                .header("x-hop", "1")
                .header("x-app", "kept")
                .body(http_body_util::Full::new(Bytes::from_static(b"ok")))
                .unwrap())
        });
        let response = forward_to(&proxy).await;
        assert_eq!(response.status(), 200);
        assert!(
            response.headers().get("x-hop").is_none(),
            "the answer's hop-by-hop go"
        );
        assert_eq!(response.headers()["x-app"], "kept");
        let seen = proxy.client.seen.lock().unwrap();
        let (target, parts) = &seen[0];
        assert_eq!(target, "http://127.0.0.1:3500/");
        assert_eq!(
            parts.uri,
            "/v1.0/invoke/services-api/method/api/v1/services?q=1"
        );
        let h = &parts.headers;
        assert_eq!(h["dapr-api-token"], "app-token");
        assert_eq!(
            h["x-forwarded-for"], "10.0.0.7",
            "the client's own is replaced"
        );
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "gw.example");
        assert!(
            h.get("dapr-app-id").is_none(),
            "a client cannot pick the app"
        );
        assert!(h.get("host").is_none(), "the client sets its own Host");
    }

    #[tokio::test]
    async fn client_errors_are_answered_as_busy_timeout_or_bad_gateway() {
        for (answer, status) in [
            (
                (|| Err(UpstreamError::Busy)) as fn() -> _,
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (|| Err(UpstreamError::Timeout), StatusCode::GATEWAY_TIMEOUT),
            (
                || Err(UpstreamError::ConnectTimeout),
                StatusCode::GATEWAY_TIMEOUT,
            ),
            (
                || Err(UpstreamError::Protocol("unsupported transfer coding")),
                StatusCode::BAD_GATEWAY,
            ),
        ] {
            let response = forward_to(&stand_in(answer)).await;
            assert_eq!(response.status(), status);
        }
    }

    #[test]
    fn dapr_mode_uses_the_sidecar_invocation_url() {
        let dapr = Upstreams::Dapr { port: 3500 };
        assert_eq!(
            dapr.uri("services-api", "/api/v1/services", Some("limit=2"))
                .unwrap()
                .to_string(),
            "http://127.0.0.1:3500/v1.0/invoke/services-api/method/api/v1/services?limit=2"
        );
        let direct = Upstreams::Direct(HashMap::from([(
            "services-api",
            "http://127.0.0.1:8080/".to_owned(),
        )]));
        assert_eq!(
            direct
                .uri("services-api", "/api/v1/services", None)
                .unwrap()
                .to_string(),
            "http://127.0.0.1:8080/api/v1/services"
        );
        assert!(direct.uri("content-api", "/x", None).is_none());
    }

    #[test]
    fn resolved_upstreams_give_the_server_and_the_request_target() {
        let client = Client::new(Duration::from_secs(1), Duration::from_secs(1));
        let direct = Resolved::new(
            &Upstreams::Direct(HashMap::from([
                ("services-api", "http://127.0.0.1:8080/base/".to_owned()),
                ("content-api", "https://content.example.org".to_owned()),
            ])),
            &client,
        );
        let (_, target) = direct
            .locate("services-api", "/api/v1/services", Some("limit=2"))
            .unwrap();
        assert_eq!(target, "/base/api/v1/services?limit=2");
        assert!(
            direct.locate("content-api", "/x", None).is_none(),
            "an https:// upstream is not usable: its routes answer 502"
        );
        assert!(direct.locate("other", "/x", None).is_none());

        let dapr = Resolved::new(&Upstreams::Dapr { port: 3500 }, &client);
        let (_, target) = dapr
            .locate("services-api", "/api/v1/services", None)
            .unwrap();
        assert_eq!(target, "/v1.0/invoke/services-api/method/api/v1/services");
        assert!(matches!(dapr, Resolved::Dapr(_)));
    }
}
