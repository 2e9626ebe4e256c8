//! The admin gateway served for real on loopback (its own HTTP server, `App`), with a
//! development issuer (an RSA key whose JWKS a local server publishes), the harness's
//! NATS, and an upstream: a recorder, or a real services-api.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use admin_gateway::{App, config::Config};
use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use axum::{Router, extract::Request, response::IntoResponse};
use futures::StreamExt;
use ic_config::Env;
use ic_testkit::jwt::{JwksServer, RsaIssuer, claims};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const AUDIENCE: &str = "ic-admin";

pub fn nats_url() -> String {
    #[allow(clippy::disallowed_methods)] // tests read the harness's URLs
    std::env::var("NATS_URL").expect("NATS_URL is set by `cargo xtask test`")
}

/// What a recording upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

/// An upstream that records every request (body included) and answers 200 with what it
/// saw, or 201 to a POST.
#[derive(Clone)]
pub struct Recorder {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    pub async fn start() -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        let router = Router::new().fallback(move |request: Request| {
            let log = log.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .unwrap_or_default();
                let uri = parts.uri.to_string();
                log.lock().unwrap().push(Seen {
                    method: parts.method.to_string(),
                    uri: uri.clone(),
                    headers: parts.headers.clone(),
                    body: body.to_vec(),
                });
                let status = if parts.method == http::Method::POST {
                    http::StatusCode::CREATED
                } else {
                    http::StatusCode::OK
                };
                let user = parts
                    .headers
                    .get("x-user-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                (status, axum::Json(json!({"uri": uri, "user": user}))).into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A running admin-gateway and its issuer.
pub struct Stack {
    pub url: String,
    pub issuer: RsaIssuer,
    pub jwks: JwksServer,
    pub http: reqwest::Client,
    token: CancellationToken,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl Stack {
    /// admin-gateway in front of `upstream` (both services-api and content-api), with
    /// `extra` settings over the test defaults.
    pub async fn start(upstream: &str, extra: &[(&str, &str)]) -> Self {
        ic_telemetry::install_crypto_provider();
        let issuer = RsaIssuer::generate("dev-1");
        let jwks = JwksServer::start(vec![issuer.jwk()]).await;
        let mut vars: Vec<(String, String)> = vec![
            ("HOST".into(), "127.0.0.1".into()),
            ("ADMIN_GATEWAY_PORT".into(), "0".into()),
            ("AUTHENTIK_ISSUER_URL".into(), jwks.issuer()),
            ("AUTHENTIK_JWKS_URL".into(), jwks.jwks_url()),
            ("AUTHENTIK_ADMIN_AUDIENCE".into(), AUDIENCE.into()),
            ("SERVICES_API_URL".into(), upstream.into()),
            ("CONTENT_API_URL".into(), upstream.into()),
            ("NATS_URL".into(), nats_url()),
        ];
        for (name, value) in extra {
            vars.retain(|(n, _)| n != name);
            vars.push(((*name).into(), (*value).into()));
        }
        Self::with_env(issuer, jwks, vars.into_iter().collect()).await
    }

    pub async fn with_env(issuer: RsaIssuer, jwks: JwksServer, env: Env) -> Self {
        let config = Config::from_env(env).expect("a valid test configuration");
        let app = App::build(config).await.expect("admin-gateway builds");
        let url = format!("http://127.0.0.1:{}", app.port());
        let token = app.shutdown_token();
        let served = tokio::spawn(app.run_until_stopped());
        Self {
            url,
            issuer,
            jwks,
            http: reqwest::Client::new(),
            token,
            served: Some(served),
        }
    }

    /// Stops the gateway and waits for it (in-flight requests and queued audit records
    /// finish first).
    pub async fn stop(mut self) {
        self.token.cancel();
        if let Some(served) = self.served.take() {
            served.await.unwrap().unwrap();
        }
    }

    /// A valid token for `user` with `groups`.
    pub fn token(&self, user: &str, groups: &[&str]) -> String {
        self.issuer
            .token(&claims(&self.jwks.issuer(), AUDIENCE, user, groups, 300))
    }

    /// A request to the gateway with an optional bearer token and a fresh correlation
    /// id (returned with the response).
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (reqwest::Response, String) {
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("x-correlation-id", &correlation_id);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        (request.send().await.unwrap(), correlation_id)
    }

    /// GET `path` of the gateway (no token): the status and the JSON body (`null` when
    /// it is not JSON).
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let res = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// The gateway's `/metrics` value of the line starting with `line_start`.
    pub async fn metric(&self, line_start: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |v| v.parse().unwrap())
    }
}

/// The request records of `correlation_id` on `IC_AUDIT`, once `expected` are there (or
/// after `wait`).
pub async fn audit_records(
    nats_url: &str,
    correlation_id: &str,
    expected: usize,
    wait: Duration,
) -> Vec<Value> {
    let client = async_nats::connect(nats_url).await.unwrap();
    let js = jetstream::new(client);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let records = read_records(&js, correlation_id).await;
        if records.len() >= expected || tokio::time::Instant::now() > deadline {
            // A little longer: a second record for the same request would show up now.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return read_records(&js, correlation_id).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn read_records(js: &jetstream::Context, correlation_id: &str) -> Vec<Value> {
    let Ok(stream) = js.get_stream(ic_events::streams::IC_AUDIT).await else {
        return Vec::new();
    };
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: format!("audit.admin-gateway.request.{correlation_id}"),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(5),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer
        .batch()
        .max_messages(100)
        .expires(Duration::from_millis(300))
        .messages()
        .await
        .unwrap();
    let mut records = Vec::new();
    while let Some(Ok(message)) = messages.next().await {
        records.push(serde_json::from_slice(&message.payload).unwrap());
    }
    records
}

/// Security headers of the admin profile, on every answer.
pub fn assert_admin_security_headers(headers: &reqwest::header::HeaderMap, what: &str) {
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'"),
        "{what}"
    );
    assert_eq!(
        headers["strict-transport-security"], "max-age=31536000; includeSubDomains",
        "{what}"
    );
    assert_eq!(headers["referrer-policy"], "strict-origin", "{what}");
    let permissions = headers["permissions-policy"].to_str().unwrap();
    for feature in ["geolocation=()", "microphone=()", "camera=()"] {
        assert!(permissions.contains(feature), "{what}: {permissions}");
    }
}
