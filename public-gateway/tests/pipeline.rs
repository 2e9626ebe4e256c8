//! The public gateway's pipeline against real HTTP upstreams on loopback.

mod common;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, connect_info::MockConnectInfo},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use ic_config::Env;
use public_gateway::{Gateway, MAX_BODY_BYTES, app, config::Config};
use serde_json::{Value, json};
use tower::ServiceExt;

/// What a recording upstream received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    headers: http::HeaderMap,
}

/// A real HTTP server on loopback that records every request: `/slow` paths wait 3 s,
/// `/boom` paths answer 500, others echo what they saw.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    async fn start() -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        let router = Router::new().fallback(move |request: Request| {
            let log = log.clone();
            async move {
                let uri = request.uri().to_string();
                log.lock().unwrap().push(Seen {
                    method: request.method().to_string(),
                    uri: uri.clone(),
                    headers: request.headers().clone(),
                });
                if uri.contains("/slow") {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                if uri.contains("/acao") {
                    return (
                        [("access-control-allow-origin", "*")],
                        "upstream says anyone",
                    )
                        .into_response();
                }
                if uri.contains("/own") {
                    // Every header the gateway sets itself, set by the upstream too.
                    return (
                        [
                            ("server", "upstream/1.0"),
                            ("x-correlation-id", "upstream"),
                            ("x-request-id", "upstream"),
                            ("x-trace-id", "upstream"),
                            ("traceparent", "upstream"),
                            ("ratelimit-limit", "upstream"),
                            ("x-ratelimit-remaining", "upstream"),
                            ("x-frame-options", "SAMEORIGIN"),
                            ("referrer-policy", "unsafe-url"),
                            ("content-security-policy", "default-src 'none'"),
                            ("access-control-allow-origin", "*"),
                            ("vary", "Accept-Encoding"),
                        ],
                        "mine",
                    )
                        .into_response();
                }
                if uri.contains("/boom") {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded")
                        .into_response();
                }
                axum::Json(json!({ "uri": uri })).into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn gateway(vars: &[(&str, String)]) -> Router {
    ic_telemetry::install_crypto_provider();
    let env: Env = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    // A router around the pipeline only so tests can add `MockConnectInfo` (the peer).
    Router::new().fallback_service(app(Gateway::new(
        &Config::from_env(env).expect("valid test config"),
        None,
    )))
}

fn to_upstream(recorder: &Recorder) -> Vec<(&'static str, String)> {
    vec![
        ("SERVICES_API_URL", recorder.url()),
        ("CONTENT_API_URL", recorder.url()),
    ]
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Value,
    bytes: Bytes,
}

async fn call(router: &Router, request: http::Request<Body>) -> Answer {
    let response: Response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        bytes,
    }
}

fn get(path: &str) -> http::Request<Body> {
    http::Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn public_routes_reach_their_upstream_with_path_query_and_headers_intact() {
    let upstream = Recorder::start().await;
    let router = gateway(&to_upstream(&upstream));
    let correlation = "6f1c2a64-3b7e-4a0e-9a57-1d1f7c1ab001";
    let res = call(
        &router,
        http::Request::get("/api/v1/services?limit=2&category_id=abc")
            .header("x-correlation-id", correlation)
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .header("accept-language", "fr")
            // Names a client lists in Connection go, but never a header the gateway sets.
            .header("connection", "keep-alive, x-hop, x-user-id, x-user-roles")
            .header("x-hop", "1")
            .header("x-user-id", "admin")
            .header("x-user-email", "boss@example.org")
            .header("forwarded", "for=6.6.6.6;host=evil.example")
            .header("x-real-ip", "6.6.6.6")
            .header("x-forwarded-proto", "gopher")
            .header("host", "www.example.org")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["uri"], "/api/v1/services?limit=2&category_id=abc");
    assert_eq!(res.headers["x-correlation-id"], correlation, "echoed");
    let seen = &upstream.seen()[0];
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.headers["accept-language"], "fr");
    assert_eq!(seen.headers["x-correlation-id"], correlation);
    let traceparent = seen.headers["traceparent"].to_str().unwrap();
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{traceparent}"
    );
    assert!(
        !traceparent.contains("00f067aa0ba902b7"),
        "a span of the gateway's own"
    );
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-host"], "www.example.org");
    assert_eq!(
        seen.headers["x-user-id"], "anonymous",
        "client identity headers are replaced, and a client listing them in Connection does not remove the gateway's"
    );
    assert_eq!(seen.headers["x-user-roles"], "public");
    assert!(
        seen.headers.get("x-user-email").is_none(),
        "a forged e-mail is dropped"
    );
    assert!(seen.headers.get("forwarded").is_none() && seen.headers.get("x-real-ip").is_none());
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert!(
        seen.headers.get("x-hop").is_none() && seen.headers.get("connection").is_none(),
        "hop-by-hop stripped"
    );

    let res = call(&router, get("/api/v1/content/42/download?inline=true")).await;
    assert_eq!(res.body["uri"], "/api/v1/content/42/download?inline=true");
}

#[tokio::test]
async fn aliases_rewrite_to_the_api_paths() {
    let upstream = Recorder::start().await;
    let router = gateway(&to_upstream(&upstream));
    assert_eq!(
        call(&router, get("/services/featured")).await.body["uri"],
        "/api/v1/services/featured"
    );
    assert_eq!(
        call(&router, get("/content/7/preview?size=small"))
            .await
            .body["uri"],
        "/api/v1/content/7/preview?size=small"
    );
}

#[tokio::test]
async fn unlisted_paths_are_404_write_methods_405_and_the_upstream_sees_nothing() {
    let upstream = Recorder::start().await;
    let router = gateway(&to_upstream(&upstream));
    for path in [
        "/admin/api/v1/services",
        "/api/v1/services/a/b",
        "/api/v2/services",
        "/",
        "/api/v1/services/categories/x/audit",
    ] {
        let res = call(&router, get(path)).await;
        assert_eq!(res.status, 404, "{path}");
        assert_eq!(res.body["error"]["code"], "NOT_FOUND");
    }
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let res = call(
            &router,
            http::Request::builder()
                .method(method)
                .uri("/api/v1/services")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
        assert_eq!(res.status, 405, "{method}");
        assert_eq!(res.headers["allow"], "GET, HEAD, OPTIONS");
    }
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
}

#[tokio::test]
async fn a_plain_options_is_answered_with_the_routes_methods_and_never_forwarded() {
    let upstream = Recorder::start().await;
    let router = gateway(&to_upstream(&upstream));
    let options = |path: &str| {
        http::Request::builder()
            .method("OPTIONS")
            .uri(path)
            .body(Body::empty())
            .unwrap()
    };
    let res = call(&router, options("/api/v1/services/slug/a-b")).await;
    assert_eq!(res.status, 204);
    assert_eq!(res.headers["allow"], "GET, HEAD, OPTIONS");
    assert_eq!(res.headers["x-content-type-options"], "nosniff");
    // An unknown route is still 404.
    assert_eq!(call(&router, options("/nowhere")).await.status, 404);
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
}

#[tokio::test]
async fn a_get_or_head_with_a_body_is_refused_and_never_forwarded() {
    let upstream = Recorder::start().await;
    let router = gateway(&to_upstream(&upstream));
    for method in ["GET", "HEAD"] {
        let with_body = http::Request::builder()
            .method(method)
            .uri("/api/v1/services")
            .header("content-length", "2")
            .body(Body::from("{}"))
            .unwrap();
        let res = call(&router, with_body).await;
        assert_eq!(res.status, 400, "{method}");
        if method == "GET" {
            assert_eq!(res.body["error"]["code"], "VALIDATION_ERROR");
        }
    }
    // Without one, as usual.
    assert_eq!(call(&router, get("/api/v1/services")).await.status, 200);
    assert_eq!(upstream.seen().len(), 1, "{:?}", upstream.seen());
}

#[tokio::test]
async fn traversal_and_encoding_tricks_never_reach_a_route_outside_the_allowlist() {
    let upstream = Recorder::start().await;
    let router = gateway(&to_upstream(&upstream));
    let battery = [
        "/api/v1/services/../../admin/api/v1/services",
        "/api/v1/services/%2e%2e/%2e%2e/admin/api/v1/services",
        "/api/v1/services/%2E%2E/%2E%2E/admin/api/v1/services",
        "/api/v1/services/..%2f..%2fadmin%2fapi%2fv1%2fservices",
        "/api/v1/services%2F..%2F..%2Fadmin",
        "//admin//api/v1/services",
        "/api/v1/services/%5c..%5cadmin",
        "/api/v1/services/%00",
        "/api/v1/services/%ff%fe",
        "/api/v1/services/%252e%252e/admin",
        "/./api/./v1/../../../etc/passwd",
        "/api/v1/services/..;/admin",
        "/api/v1/./services/../../v1/services/categories/../../../admin/api/v1/services",
    ];
    for path in battery {
        let res = call(&router, get(path)).await;
        assert!(matches!(res.status, 400 | 404), "{path}: {}", res.status);
        assert!(res.body["error"]["code"].is_string(), "{path}: an envelope");
    }
    assert!(
        upstream.seen().is_empty(),
        "no trick reached an upstream: {:?}",
        upstream.seen()
    );
    for path in [
        "/api/v1/content/x%23/download",
        "/api/v1/services/x%3Fstatus=draft",
        "/api/v1/services/%25zz",
    ] {
        assert_eq!(
            call(&router, get(path)).await.status,
            400,
            "{path}: would be re-decoded upstream"
        );
    }
    let res = call(&router, get("/api/v1/services/%2e%2e/%2e%2e/%2e%2e/%2e%2e")).await;
    assert_eq!(res.status, 400, "escaping the root is refused");
}

#[tokio::test]
async fn refused_is_502_slow_is_504_and_upstream_errors_pass_through() {
    let closed = ic_testkit::free_port();
    let router = gateway(&[("SERVICES_API_URL", format!("http://127.0.0.1:{closed}"))]);
    let res = call(&router, get("/api/v1/services")).await;
    assert_eq!(res.status, 502);
    assert_eq!(res.body["error"]["code"], "BAD_GATEWAY");

    let upstream = Recorder::start().await;
    let mut vars = to_upstream(&upstream);
    vars.push(("UPSTREAM_TIMEOUT_SECONDS", "1".into()));
    let router = gateway(&vars);
    let res = call(&router, get("/api/v1/services/slow")).await;
    assert_eq!(res.status, 504);
    assert_eq!(res.body["error"]["code"], "GATEWAY_TIMEOUT");
    let res = call(&router, get("/api/v1/content/slow/preview")).await;
    assert_eq!(
        res.status, 200,
        "previews have their own, longer timeout (generated on first request)"
    );
    let res = call(&router, get("/api/v1/services/boom")).await;
    assert_eq!(res.status, 500);
    assert_eq!(
        &res.bytes[..],
        b"upstream exploded",
        "upstream 5xx passed through as is"
    );
}

#[tokio::test]
async fn dapr_mode_invokes_through_the_sidecar_url_with_the_app_token() {
    // A local server implementing the sidecar's invocation URL shape stands in for daprd.
    let sidecar = Recorder::start().await;
    let router = gateway(&[
        ("DAPR_HTTP_PORT", sidecar.addr.port().to_string()),
        ("APP_API_TOKEN", "s3cret".into()),
    ]);
    let res = call(
        &router,
        http::Request::get("/api/v1/services?limit=1")
            .header("dapr-app-id", "admin-gateway")
            .header("dapr-api-token", "forged")
            .header("dapr-caller-app-id", "someone")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, 200);
    let seen = &sidecar.seen()[0];
    assert_eq!(
        seen.uri,
        "/v1.0/invoke/services-api/method/api/v1/services?limit=1"
    );
    assert_eq!(
        seen.headers["dapr-api-token"], "s3cret",
        "the gateway's token, never the client's"
    );
    assert!(
        seen.headers.get("dapr-app-id").is_none(),
        "a client cannot pick the target app"
    );
    assert!(seen.headers.get("dapr-caller-app-id").is_none());
    call(&router, get("/content/9")).await;
    assert_eq!(
        sidecar.seen()[1].uri,
        "/v1.0/invoke/content-api/method/api/v1/content/9"
    );
}

#[tokio::test]
async fn cors_answers_allowed_origins_only_and_always_varies_on_origin() {
    let upstream = Recorder::start().await;
    let mut vars = to_upstream(&upstream);
    vars.push(("PUBLIC_WEBSITE_ORIGINS", "https://www.example.org".into()));
    let router = gateway(&vars);
    let with_origin = |origin: &str| {
        http::Request::get("/api/v1/services")
            .header("origin", origin)
            .body(Body::empty())
            .unwrap()
    };
    let res = call(&router, with_origin("https://www.example.org")).await;
    assert_eq!(
        res.headers["access-control-allow-origin"],
        "https://www.example.org"
    );
    let exposed = res.headers["access-control-expose-headers"]
        .to_str()
        .unwrap();
    for name in [
        "ETag",
        "X-Correlation-ID",
        "RateLimit-Remaining",
        "Retry-After",
    ] {
        assert!(exposed.contains(name), "{name} exposed: {exposed}");
    }
    assert!(
        res.headers
            .get("access-control-allow-credentials")
            .is_none()
    );
    assert!(res.headers.get_all("vary").iter().any(|v| v == "Origin"));
    let res = call(&router, with_origin("https://evil.example.net")).await;
    assert!(res.headers.get("access-control-allow-origin").is_none());
    let upstream_wildcard = http::Request::get("/api/v1/services/acao")
        .header("origin", "https://evil.example.net")
        .body(Body::empty())
        .unwrap();
    let res = call(&router, upstream_wildcard).await;
    assert!(
        res.headers.get("access-control-allow-origin").is_none(),
        "an upstream cannot widen CORS"
    );
    assert!(res.headers.get_all("vary").iter().any(|v| v == "Origin"));

    let preflight = |origin: &str, method: &str| {
        http::Request::builder()
            .method("OPTIONS")
            .uri("/api/v1/services")
            .header("origin", origin)
            .header("access-control-request-method", method)
            .body(Body::empty())
            .unwrap()
    };
    let before = upstream.seen().len();
    let res = call(&router, preflight("https://www.example.org", "GET")).await;
    assert_eq!(res.status, 204);
    assert_eq!(
        res.headers["access-control-allow-origin"],
        "https://www.example.org"
    );
    assert_eq!(
        res.headers["access-control-allow-methods"],
        "GET, HEAD, OPTIONS"
    );
    assert_eq!(res.headers["access-control-max-age"], "3600");
    let allowed = res.headers["access-control-allow-headers"]
        .to_str()
        .unwrap();
    for name in ["X-Correlation-ID", "traceparent", "If-None-Match"] {
        assert!(allowed.contains(name), "{name} allowed: {allowed}");
    }
    let res = call(&router, preflight("https://evil.example.net", "GET")).await;
    assert!(res.headers.get("access-control-allow-origin").is_none());
    let res = call(&router, preflight("https://www.example.org", "DELETE")).await;
    assert!(
        res.headers.get("access-control-allow-origin").is_none(),
        "a write method is not allowed"
    );
    assert_eq!(
        upstream.seen().len(),
        before,
        "preflights are answered by the gateway"
    );
}

fn from_peer(router: &Router, peer: &str) -> Router {
    router
        .clone()
        .layer(MockConnectInfo(peer.parse::<SocketAddr>().unwrap()))
}

fn with_xff(xff: &str) -> http::Request<Body> {
    http::Request::get("/api/v1/services")
        .header("x-forwarded-for", xff)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn the_rate_limit_is_exact_and_forwarded_for_counts_only_from_trusted_proxies() {
    let upstream = Recorder::start().await;
    let mut vars = to_upstream(&upstream);
    vars.push(("PUBLIC_RATE_LIMIT_PER_MINUTE", "3".into()));
    vars.push(("TRUSTED_PROXIES", "10.0.0.0/8".into()));
    let router = gateway(&vars);

    let direct = from_peer(&router, "203.0.113.7:5000");
    for (i, remaining) in ["2", "1", "0"].into_iter().enumerate() {
        let res = call(&direct, with_xff(&format!("198.51.100.{i}"))).await;
        assert_eq!(res.status, 200, "request {i}");
        assert_eq!(res.headers["ratelimit-limit"], "3");
        assert_eq!(res.headers["ratelimit-remaining"], remaining);
        assert_eq!(res.headers["x-ratelimit-remaining"], remaining);
        assert!(res.headers.contains_key("ratelimit-reset"));
    }
    let res = call(&direct, with_xff("198.51.100.99")).await;
    assert_eq!(
        res.status, 429,
        "a spoofed X-Forwarded-For from an untrusted peer changes nothing"
    );
    assert_eq!(res.body["error"]["code"], "RATE_LIMITED");
    assert_eq!(res.headers["retry-after"], "20");
    assert_eq!(res.headers["ratelimit-remaining"], "0");
    assert_eq!(
        res.headers["x-content-type-options"], "nosniff",
        "security headers on a 429 too"
    );

    let proxy = from_peer(&router, "10.1.2.3:5000");
    for _ in 0..3 {
        assert_eq!(call(&proxy, with_xff("192.0.2.10")).await.status, 200);
    }
    assert_eq!(call(&proxy, with_xff("192.0.2.10")).await.status, 429);
    assert_eq!(
        call(&proxy, with_xff("192.0.2.11")).await.status,
        200,
        "behind a trusted proxy each client has its own limit"
    );
    let seen = upstream.seen();
    assert_eq!(
        seen.last().unwrap().headers["x-forwarded-for"],
        "192.0.2.11"
    );
    assert_eq!(seen.last().unwrap().headers["x-forwarded-proto"], "http");
}

#[tokio::test]
async fn forwarded_proto_is_believed_from_trusted_proxies_only() {
    let upstream = Recorder::start().await;
    let mut vars = to_upstream(&upstream);
    vars.push(("TRUSTED_PROXIES", "10.0.0.0/8".into()));
    let router = gateway(&vars);
    let https = || {
        http::Request::get("/api/v1/services")
            .header("x-forwarded-proto", "https")
            .body(Body::empty())
            .unwrap()
    };
    call(&from_peer(&router, "10.1.2.3:5000"), https()).await;
    call(&from_peer(&router, "203.0.113.7:5000"), https()).await;
    let seen = upstream.seen();
    assert_eq!(
        seen[0].headers["x-forwarded-proto"], "https",
        "a TLS-terminating trusted proxy"
    );
    assert_eq!(
        seen[1].headers["x-forwarded-proto"], "http",
        "an untrusted client's claim changes nothing"
    );
}

#[tokio::test]
async fn security_headers_are_on_every_response_errors_included() {
    let upstream = Recorder::start().await;
    let router = gateway(&to_upstream(&upstream));
    let requests = [
        get("/api/v1/services"),
        get("/api/v1/services/boom"),
        get("/nowhere"),
        get("/api/v1/services/%00"),
        http::Request::post("/api/v1/services")
            .body(Body::empty())
            .unwrap(),
        get("/health"),
        http::Request::get("/api/v1/services")
            .header("authorization", "Bearer x")
            .body(Body::empty())
            .unwrap(),
    ];
    for request in requests {
        let uri = request.uri().to_string();
        let res = call(&router, request).await;
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            (
                "content-security-policy",
                "default-src 'self'; frame-ancestors 'none'",
            ),
            ("strict-transport-security", "max-age=31536000"),
            ("referrer-policy", "strict-origin-when-cross-origin"),
            ("cross-origin-opener-policy", "same-origin"),
            ("cross-origin-resource-policy", "cross-origin"),
            ("x-permitted-cross-domain-policies", "none"),
        ] {
            assert_eq!(
                res.headers.get(name).and_then(|v| v.to_str().ok()),
                Some(value),
                "{uri} ({}): {name}",
                res.status
            );
        }
        let permissions = res.headers["permissions-policy"].to_str().unwrap();
        assert!(permissions.contains("camera=()"), "{uri}: {permissions}");
        assert!(
            res.headers.get("server").is_none(),
            "{uri}: nothing says what answered"
        );
    }
}

/// The gateway served on a free loopback port in front of `upstream`: its port, the
/// token that stops it, and its task.
async fn served(
    upstream: &Recorder,
) -> (
    u16,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    ic_telemetry::install_crypto_provider();
    let mut vars = to_upstream(upstream);
    // Any free port, asked of the app once bound.
    vars.push(("PUBLIC_GATEWAY_PORT", "0".to_owned()));
    let env: Env = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let app = public_gateway::App::build(Config::from_env(env).unwrap())
        .await
        .unwrap();
    let (port, token) = (app.port(), app.shutdown_token());
    (port, token, tokio::spawn(app.run_until_stopped()))
}

/// Over TCP, where the server frames the body by its `Content-Length` and reads it in
/// pieces: a client naming `Content-Length` in `Connection` does not hide the body's size
/// from the route check.
#[tokio::test]
async fn a_client_listing_content_length_in_connection_cannot_slip_an_oversize_body_through() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = Recorder::start().await;
    let (port, token, server) = served(&upstream).await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let oversize = MAX_BODY_BYTES + 4 * 1024;
    let mut request = format!(
        "GET /api/v1/services HTTP/1.1\r\nhost: gw\r\ncontent-length: {oversize}\r\nconnection: content-length\r\n\r\n"
    )
    .into_bytes();
    request.extend(std::iter::repeat_n(b'x', oversize));
    // The gateway may answer and close before taking it all.
    let _ = stream.write_all(&request).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    // A request after it, answered: the upstream would have seen the first before (it had
    // its head before the 413 was answered).
    let next = reqwest::get(format!("http://127.0.0.1:{port}/api/v1/services/featured"))
        .await
        .unwrap();
    assert_eq!(next.status(), 200);
    let seen: Vec<String> = upstream.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(
        seen,
        ["/api/v1/services/featured"],
        "the upstream saw only the second"
    );
    token.cancel();
    server.await.unwrap().unwrap();
}

/// The gateway's headers replace an upstream's of the same names, on the wire as
/// through the tower service: each is there once (an upstream's CSP is kept, and `Vary`
/// adds to the upstream's).
#[tokio::test]
async fn the_gateways_own_headers_replace_the_upstreams_on_the_wire() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = Recorder::start().await;
    let (port, token, server) = served(&upstream).await;

    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    raw.write_all(
        b"GET /api/v1/services/own HTTP/1.1\r\nhost: gw\r\norigin: http://localhost:3000\r\n\
          connection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).await.unwrap();
    // Closed, so the server's lingering read after its close ends at once.
    drop(raw);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{answer}");
    assert_eq!(body, "mine");
    let values = |name: &str| -> Vec<&str> {
        head.lines()
            .filter_map(|line| line.split_once(": "))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    };
    let tower = call(&gateway(&to_upstream(&upstream)), {
        let mut request = get("/api/v1/services/own");
        request
            .headers_mut()
            .insert("origin", "http://localhost:3000".parse().unwrap());
        request
    })
    .await;
    assert!(values("server").is_empty(), "no server on the wire: {head}");
    assert!(
        tower.headers.get("server").is_none(),
        "no server through tower"
    );
    for (name, expected) in [
        ("x-frame-options", Some("DENY")),
        ("referrer-policy", Some("strict-origin-when-cross-origin")),
        ("content-security-policy", Some("default-src 'none'")),
        ("access-control-allow-origin", Some("http://localhost:3000")),
        ("ratelimit-limit", Some("1000")),
        ("x-ratelimit-remaining", None),
        ("x-correlation-id", None),
        ("x-request-id", None),
        ("x-trace-id", None),
        ("traceparent", None),
    ] {
        let on_wire = values(name);
        assert_eq!(on_wire.len(), 1, "{name} once on the wire: {head}");
        assert_ne!(on_wire[0], "upstream", "{name}: {head}");
        if let Some(expected) = expected {
            assert_eq!(on_wire[0], expected, "{name}: {head}");
        }
        let through_tower: Vec<_> = tower.headers.get_all(name).iter().collect();
        assert_eq!(through_tower.len(), 1, "{name} once through tower");
        assert_ne!(through_tower[0], "upstream", "{name} through tower");
        if let Some(expected) = expected {
            assert_eq!(through_tower[0], expected, "{name} through tower");
        }
    }
    assert_eq!(values("vary"), ["Accept-Encoding", "Origin"], "{head}");
    assert_eq!(
        tower.headers.get_all("vary").iter().collect::<Vec<_>>(),
        ["Accept-Encoding", "Origin"]
    );
    token.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_forged_forwarded_host_never_passes_without_a_host_header() {
    let upstream = Recorder::start().await;
    let router = gateway(&to_upstream(&upstream));
    let res = call(
        &router,
        http::Request::get("/api/v1/services")
            .header("x-forwarded-host", "evil.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, 200);
    assert!(upstream.seen()[0].headers.get("x-forwarded-host").is_none());
}

#[tokio::test]
async fn a_bearer_token_is_never_silently_anonymous() {
    let upstream = Recorder::start().await;
    let router = gateway(&to_upstream(&upstream));
    let res = call(
        &router,
        http::Request::get("/api/v1/services")
            .header("authorization", "Bearer abc")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, 401);
    assert!(upstream.seen().is_empty());
}

/// With an issuer configured (the verifier of admin-gateway plugged into the identity
/// point): no token is anonymous, a valid token forwards its user, an invalid or expired
/// one is 401, never anonymous.
#[tokio::test]
async fn with_an_issuer_a_valid_token_forwards_its_user_and_a_bad_one_is_401() {
    use ic_testkit::jwt::{JwksServer, RsaIssuer, claims};
    ic_telemetry::install_crypto_provider();
    let upstream = Recorder::start().await;
    let issuer = RsaIssuer::generate("k1");
    let jwks = JwksServer::start(vec![issuer.jwk()]).await;
    let mut vars = to_upstream(&upstream);
    vars.extend([
        ("AUTHENTIK_ISSUER_URL", jwks.issuer()),
        ("AUTHENTIK_ADMIN_AUDIENCE", "ic-admin".to_owned()),
        ("PUBLIC_GATEWAY_PORT", "0".to_owned()),
        ("HOST", "127.0.0.1".to_owned()),
    ]);
    let env: Env = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let app = public_gateway::App::build(Config::from_env(env).unwrap())
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{}/api/v1/services", app.port());
    let stop = app.shutdown_token();
    let served = tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();

    let anonymous = client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 200);
    let valid = issuer.token(&claims(&jwks.issuer(), "ic-admin", "ada", &["staff"], 300));
    let signed_in = client.get(&url).bearer_auth(&valid).send().await.unwrap();
    assert_eq!(signed_in.status(), 200);
    let mut expired = claims(&jwks.issuer(), "ic-admin", "ada", &["staff"], 300);
    expired["exp"] = json!(ic_testkit::jwt::now() - 3600);
    for (what, token) in [
        ("expired", issuer.token(&expired)),
        (
            "forged",
            RsaIssuer::generate("k1").token(&claims(&jwks.issuer(), "ic-admin", "ada", &[], 300)),
        ),
        ("garbage", "not-a-token".to_owned()),
    ] {
        let refused = client.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(refused.status(), 401, "{what}");
        assert!(
            refused.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token"),
            "{what}"
        );
    }
    let basic = client
        .get(&url)
        .basic_auth("ada", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        basic.status(),
        401,
        "other credentials are not ignored either"
    );

    let seen = upstream.seen();
    assert_eq!(
        seen.len(),
        2,
        "only the anonymous and the signed-in request went through"
    );
    assert_eq!(seen[0].headers["x-user-id"], "anonymous");
    assert_eq!(seen[0].headers["x-user-roles"], "public");
    assert_eq!(seen[1].headers["x-user-id"], "ada");
    assert_eq!(seen[1].headers["x-user-roles"], "staff");
    assert_eq!(seen[1].headers["x-user-email"], "ada@example.org");
    assert_eq!(seen[1].headers["x-user-name"], "ada");
    stop.cancel();
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn health_reports_middleware_status_and_readiness_of_upstreams() {
    let upstream = Recorder::start().await;
    let closed = ic_testkit::free_port();
    let router = gateway(&[
        ("SERVICES_API_URL", upstream.url()),
        ("CONTENT_API_URL", format!("http://127.0.0.1:{closed}")),
    ]);
    let res = call(&router, get("/health")).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["service"], "public-gateway");
    assert_eq!(res.body["middleware_status"]["cors"], "enabled");
    let res = call(&router, get("/health/ready")).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["status"], "degraded");
    assert_eq!(res.body["checks"]["services-api"]["status"], "up");
    assert_eq!(res.body["checks"]["content-api"]["status"], "down");
    let res = call(
        &router,
        http::Request::post("/health").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(res.status, 405);
    assert_eq!(res.body["error"]["code"], "METHOD_NOT_ALLOWED");
    let res = call(&router, get("/metrics")).await;
    assert_eq!(res.status, 200);
    let text = String::from_utf8_lossy(&res.bytes);
    assert!(
        text.contains(
            r#"http_server_requests_total{method="GET",route="/health/ready",status="200"} 1"#
        ),
        "the gateway's own routes are labelled by their path: {text}"
    );
    ic_testkit::promtool_check_metrics(&text).unwrap();
    let openmetrics = call(&router, {
        let mut request = get("/metrics");
        request.headers_mut().insert(
            "accept",
            "application/openmetrics-text;version=1.0.0"
                .parse()
                .unwrap(),
        );
        request
    })
    .await;
    assert!(
        String::from_utf8_lossy(&openmetrics.bytes).ends_with("# EOF\n"),
        "OpenMetrics when asked for"
    );
}

#[sqlx::test(migrations = false)]
async fn through_the_gateway_a_real_services_api_answers(pool: sqlx::PgPool) {
    let addr = common::services_api_with(&pool, "Gateway check", "gateway-check").await;
    let router = gateway(&[("SERVICES_API_URL", format!("http://{addr}"))]);
    let res = call(&router, get("/api/v1/services")).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["services"][0]["title"], "Gateway check");
    assert!(
        res.headers.contains_key("etag"),
        "upstream headers pass through"
    );
    let res = call(&router, get("/services/slug/gateway-check")).await;
    assert_eq!(res.body["slug"], "gateway-check");
    let res = call(&router, get("/api/v1/services/not-a-uuid")).await;
    assert_eq!(res.status, 400, "upstream client errors pass through");
    assert_eq!(res.body["error"]["service_name"], "services-api");
    let res = call(&router, get("/health/ready")).await;
    assert_eq!(res.body["checks"]["services-api"]["status"], "up");
}

#[tokio::test]
async fn a_200_mib_response_streams_through_without_being_buffered() {
    use http_body_util::BodyExt;
    const CHUNK: usize = 1024 * 1024;
    const CHUNKS: usize = 200;
    // The upstream sends one chunk, then waits until the client has received it before
    // sending the other 199 MiB: a gateway that buffered the body would never deliver
    // that first chunk, and the test would time out instead of passing.
    let (first_seen_tx, first_seen_rx) = tokio::sync::oneshot::channel::<()>();
    let gate = Arc::new(Mutex::new(Some(first_seen_rx)));
    let router = Router::new().fallback(move || {
        let gate = gate.clone();
        async move {
            let waiter = gate.lock().unwrap().take();
            let stream = async_stream_body(waiter, CHUNK, CHUNKS);
            Response::new(Body::from_stream(stream))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });

    let gateway = gateway(&[("SERVICES_API_URL", format!("http://{addr}"))]);
    let response = gateway.oneshot(get("/api/v1/services/big")).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = 0usize;
    let mut first_seen = Some(first_seen_tx);
    let deadline = Duration::from_secs(60);
    while let Some(frame) = tokio::time::timeout(deadline, body.frame())
        .await
        .expect("the body keeps flowing")
    {
        if let Ok(data) = frame.unwrap().into_data() {
            received += data.len();
            if let Some(tx) = first_seen.take() {
                let _ = tx.send(());
            }
        }
    }
    assert_eq!(received, CHUNK * CHUNKS);
}

/// A body of `chunks` chunks that pauses after the first until `waiter` fires.
fn async_stream_body(
    waiter: Option<tokio::sync::oneshot::Receiver<()>>,
    chunk: usize,
    chunks: usize,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let data = Bytes::from(vec![b'x'; chunk]);
        if tx.send(Ok(data.clone())).await.is_err() {
            return;
        }
        if let Some(waiter) = waiter
            && tokio::time::timeout(Duration::from_secs(30), waiter)
                .await
                .is_err()
        {
            let _ = tx
                .send(Err(std::io::Error::other(
                    "the client never saw the first chunk",
                )))
                .await;
            return;
        }
        for _ in 1..chunks {
            if tx.send(Ok(data.clone())).await.is_err() {
                return;
            }
        }
    });
    tokio_stream_from(rx)
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn with_redis(upstream: &Recorder, redis_url: &str, limit: u32) -> Router {
    let mut vars = to_upstream(upstream);
    vars.push(("RATE_LIMIT_REDIS_URL", redis_url.to_owned()));
    vars.push(("PUBLIC_RATE_LIMIT_PER_MINUTE", limit.to_string()));
    from_peer(&gateway(&vars), "203.0.113.50:4000")
}

#[tokio::test]
async fn two_gateways_sharing_redis_enforce_one_combined_limit() {
    let redis = ic_testkit::RedisServer::start();
    let upstream = Recorder::start().await;
    let first = with_redis(&upstream, &redis.url(), 4);
    let second = with_redis(&upstream, &redis.url(), 4);
    let mut statuses = Vec::new();
    for i in 0..5 {
        let replica = if i % 2 == 0 { &first } else { &second };
        statuses.push(call(replica, get("/api/v1/services")).await.status);
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 429],
        "one budget across both replicas"
    );
    let res = call(&second, get("/health/ready")).await;
    assert_eq!(res.status, 200, "probes are not rate limited");
    assert_eq!(res.body["checks"]["rate_limit_store"]["status"], "up");
}

#[tokio::test]
async fn without_redis_the_gateway_limits_locally_reports_degraded_and_recovers() {
    let mut redis = ic_testkit::RedisServer::start();
    let upstream = Recorder::start().await;
    // Two replicas, a budget of 2 per client.
    let a = with_redis(&upstream, &redis.url(), 2);
    let b = with_redis(&upstream, &redis.url(), 2);
    assert_eq!(call(&a, get("/api/v1/services")).await.status, 200);

    redis.stop();
    // Still serving, and still limiting: in-process, per replica.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(call(&a, get("/api/v1/services")).await.status);
    }
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(call(&b, get("/api/v1/services")).await.status, 200);
    let res = call(&a, get("/health/ready")).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["status"], "degraded");
    assert_eq!(res.body["checks"]["rate_limit_store"]["status"], "down");

    redis.restart();
    for replica in [&a, &b] {
        ic_testkit::eventually(Duration::from_secs(30), "readiness to recover", || {
            let replica = replica.clone();
            async move {
                let res = call(&replica, get("/health/ready")).await;
                (res.body["checks"]["rate_limit_store"]["status"] == "up").then_some(())
            }
        })
        .await;
    }
    // The same two replicas share one budget again (the restarted Redis is empty).
    assert_eq!(call(&a, get("/api/v1/services")).await.status, 200);
    assert_eq!(call(&b, get("/api/v1/services")).await.status, 200);
    assert_eq!(call(&a, get("/api/v1/services")).await.status, 429);
}

#[tokio::test]
async fn served_over_tcp_the_peer_is_the_client_refused_framing_is_enveloped_and_shutdown_lets_in_flight_requests_finish()
 {
    let upstream = Recorder::start().await;
    let (port, token, server) = served(&upstream).await;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");

    let response = client
        .get(format!("{base}/api/v1/services"))
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-content-type-options"));
    let seen = upstream.seen();
    assert_eq!(
        seen[0].headers["x-forwarded-for"], "127.0.0.1",
        "the socket peer is the client; its own X-Forwarded-For is not believed"
    );

    // A request the server refuses to read (ambiguous framing) is still answered like any
    // other (envelope, ids, rate-limit and security headers) and never reaches the
    // upstream.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        raw.write_all(
            b"POST /api/v1/services HTTP/1.1\r\nhost: gw\r\ncontent-length: 4\r\n\
              transfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
        let mut answer = String::new();
        raw.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(
            answer.contains("x-content-type-options: nosniff"),
            "{answer}"
        );
        assert!(answer.contains("\"VALIDATION_ERROR\""), "{answer}");
        assert!(answer.contains("\nratelimit-limit: "), "{answer}");
        assert!(answer.contains("\ntraceparent: 00-"), "{answer}");
        let correlation = answer
            .lines()
            .find_map(|l| l.strip_prefix("x-correlation-id: "))
            .unwrap_or_else(|| panic!("a correlation id: {answer}"));
        assert!(
            answer.contains(&format!("\"correlation_id\":\"{correlation}\"")),
            "the envelope names the echoed correlation id: {answer}"
        );
        assert_eq!(upstream.seen().len(), 1, "the upstream saw nothing more");
    }

    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = format!("{base}/api/v1/services/slow");
        async move { client.get(url).send().await.map(|r| r.status()) }
    });
    ic_testkit::eventually(
        Duration::from_secs(10),
        "the slow request reached the upstream",
        || async {
            upstream
                .seen()
                .iter()
                .any(|s| s.uri.contains("/slow"))
                .then_some(())
        },
    )
    .await;
    token.cancel();
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        200,
        "an in-flight request finishes after shutdown begins"
    );
    server.await.unwrap().unwrap();
    assert!(
        reqwest::get(format!("{base}/healthz")).await.is_err(),
        "nothing accepts after shutdown"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_exactly_the_routes_the_gateway_lets_through() {
    let upstream = Recorder::start().await;
    let router = gateway(&to_upstream(&upstream));
    let res = call(&router, get("/openapi.json")).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.headers["content-type"], "application/json");
    assert!(res.headers.contains_key("ratelimit-limit"));
    let doc = res.body;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    let mut documented: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    documented.sort_unstable();
    let mut served: Vec<&str> = public_gateway::routes::public_services_routes()
        .iter()
        .chain(&public_gateway::routes::public_content_routes())
        .map(ic_gateway::routes::Route::template)
        .chain(ic_http::app_token::OPEN_PATHS)
        .collect();
    served.sort_unstable();
    assert_eq!(documented, served);
    for (path, item) in doc["paths"].as_object().unwrap() {
        let methods: Vec<&String> = item
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "parameters" && *k != "summary" && *k != "description")
            .collect();
        if path.starts_with("/api/") {
            assert_eq!(
                methods,
                ["get", "options"],
                "{path}: GET, and OPTIONS answered here"
            );
        } else {
            assert_eq!(methods, ["get"], "{path} documents only GET");
        }
        let op = &item["get"];
        assert!(op["operationId"].is_string(), "{path}");
        assert!(op["responses"]["200"].is_object(), "{path}");
    }
    assert!(
        upstream.seen().is_empty(),
        "the document is the gateway's own"
    );
}

/// The OpenAPI document against the gateway's behaviour, as a user of the API would check
/// it: schemathesis (PyPI, in the harness's venv, `IC_TEST_PYTHON`) generates valid and
/// invalid requests from `/openapi.json` and runs every check on each answer, with the
/// real services-api and content-api behind the gateway. Bounded (a fixed seed, 25 cases
/// an operation); no failure is allowed.
#[sqlx::test(migrations = false)]
async fn schemathesis_finds_the_gateway_as_its_openapi_document_says(pool: sqlx::PgPool) {
    #[allow(clippy::disallowed_methods)]
    let python = std::env::var("IC_TEST_PYTHON").expect("IC_TEST_PYTHON from cargo xtask test");
    let backend = common::services_api_with(&pool, "Contract check", "contract-check").await;
    ic_telemetry::install_crypto_provider();
    let blobs = tempfile::tempdir().unwrap();
    let nats = ic_testkit::NatsServer::start();
    let (content_url, content_stop) = content_api::spawn_development(
        &ic_testkit::database_url(pool.connect_options().get_database().unwrap()),
        &nats.url(),
        blobs.path(),
        None,
    )
    .await;
    let env: Env = [
        ("SERVICES_API_URL", format!("http://{backend}")),
        ("CONTENT_API_URL", content_url),
        ("PUBLIC_GATEWAY_PORT", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let app = public_gateway::App::build(Config::from_env(env).unwrap())
        .await
        .unwrap();
    let (port, token) = (app.port(), app.shutdown_token());
    let server = tokio::spawn(app.run_until_stopped());
    ic_testkit::schemathesis::assert_conforms(
        &python,
        &format!("http://127.0.0.1:{port}/openapi.json"),
        "all",
        25,
        10,
        &[],
    )
    .await;
    token.cancel();
    content_stop.cancel();
    server.await.unwrap().unwrap();
}

/// `public-gateway healthcheck` (the image's HEALTHCHECK) probes the gateway's own
/// `/health`.
#[tokio::test]
async fn the_healthcheck_command_probes_the_gateways_own_health() {
    let upstream = Recorder::start().await;
    let (port, token, server) = served(&upstream).await;
    let binary = env!("CARGO_BIN_EXE_public-gateway");
    tokio::task::spawn_blocking(move || {
        ic_testkit::assert_healthcheck(binary, "PUBLIC_GATEWAY_PORT", port, &[])
    })
    .await
    .unwrap();
    token.cancel();
    server.await.unwrap().unwrap();
}

#[test]
fn a_malformed_variable_is_one_line_naming_it_and_exit_code_2() {
    for (name, value) in [
        ("PUBLIC_GATEWAY_PORT", "eighty"),
        ("PUBLIC_RATE_LIMIT_PER_MINUTE", "0"),
        ("MAX_CONNECTIONS", "many"),
        ("TRUSTED_PROXIES", "10.0.0.0/99"),
    ] {
        ic_testkit::assert_config_error(env!("CARGO_BIN_EXE_public-gateway"), name, value);
    }
}
