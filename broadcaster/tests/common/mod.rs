//! Test support: a recording webhook receiver on loopback, a private nats-server per
//! test, and a broadcaster `App` configured from a subscriptions file.
#![allow(dead_code)] // each test binary uses a part of it

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_nats::jetstream;
use axum::{Router, body::Bytes, extract::Request, response::IntoResponse};
use broadcaster::{App, config::Config};
use http::{HeaderMap, StatusCode};
use ic_events::{CloudEvent, NATS_MSG_ID};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The secret of every test subscription (the specification's example).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// How the receiver answers a request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    WithHeaders(u16, Vec<(&'static str, String)>),
    /// Waits until [`Receiver::release`], then answers 200.
    Hold,
}

type Script = Arc<dyn Fn(&Received, usize) -> Reply + Send + Sync>;

/// A real HTTP server on loopback recording every request; `script(request, n)` (n = how
/// many requests this path got before) decides the answer.
pub struct Receiver {
    pub addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Received>>>,
    gate: Arc<Semaphore>,
}

impl Receiver {
    pub async fn start(script: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static) -> Self {
        let script: Script = Arc::new(script);
        let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
        let gate = Arc::new(Semaphore::new(0));
        let (log, held) = (seen.clone(), gate.clone());
        let router = Router::new().fallback(move |request: Request| {
            let (log, script, held) = (log.clone(), script.clone(), held.clone());
            async move {
                let path = request.uri().path().to_owned();
                let headers = request.headers().clone();
                let body = axum::body::to_bytes(request.into_body(), usize::MAX)
                    .await
                    .unwrap_or_default();
                let received = Received {
                    at: Instant::now(),
                    path: path.clone(),
                    headers,
                    body,
                };
                let before = {
                    let mut log = log.lock().unwrap();
                    let before = log.iter().filter(|r| r.path == path).count();
                    log.push(received.clone());
                    before
                };
                match script(&received, before) {
                    Reply::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
                    Reply::WithHeaders(code, headers) => {
                        let mut response = StatusCode::from_u16(code).unwrap().into_response();
                        for (name, value) in headers {
                            response.headers_mut().insert(name, value.parse().unwrap());
                        }
                        response
                    }
                    Reply::Hold => {
                        let _permit = held.acquire().await;
                        StatusCode::OK.into_response()
                    }
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { addr, seen, gate }
    }

    /// Answers every request with 200.
    pub async fn ok() -> Self {
        Self::start(|_, _| Reply::Status(200)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    pub fn seen_at(&self, path: &str) -> Vec<Received> {
        self.seen().into_iter().filter(|r| r.path == path).collect()
    }

    /// Lets every held request answer.
    pub fn release(&self) {
        self.gate.add_permits(1 << 20);
    }

    /// Waits until `path` got `n` requests.
    pub async fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        ic_testkit::eventually(
            Duration::from_secs(30),
            &format!("{n} requests at {path}"),
            || async {
                let seen = self.seen_at(path);
                (seen.len() >= n).then_some(seen)
            },
        )
        .await
    }
}

/// A subscription entry of the YAML file.
pub fn subscription(id: &str, url: &str, extra: &str) -> String {
    format!("- {{id: {id}, url: '{url}', secret: {SECRET}{extra}}}\n")
}

/// A running broadcaster.
pub struct Running {
    pub port: u16,
    pub metrics_port: u16,
    pub token: CancellationToken,
    pub handle: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits until `n` events were fanned out (so what they lead to has been decided).
    pub async fn wait_fanned_out(&self, n: u64) {
        let line = format!(r#"broadcaster_messages_processed_total{{result="fanned_out"}} {n}"#);
        self.wait_metrics(&[&line]).await;
    }

    /// Waits (30 s at most) until `/metrics` has each of `lines`; returns the text.
    pub async fn wait_metrics(&self, lines: &[&str]) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let what = lines.join(", ");
        ic_testkit::eventually(Duration::from_secs(30), &what, || async {
            let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
            lines
                .iter()
                .all(|line| text.lines().any(|l| l == *line))
                .then_some(text)
        })
        .await
    }

    /// Stops it gracefully and waits until it has.
    pub async fn stop(self) {
        self.token.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

/// The environment of a test broadcaster: private targets allowed (receivers are on
/// loopback), a compressed retry schedule, free ports.
pub fn env(
    nats_url: &str,
    file: &std::path::Path,
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = [
        ("NATS_URL", nats_url.to_owned()),
        ("WEBHOOK_SUBSCRIPTIONS_FILE", file.display().to_string()),
        ("BROADCASTER_PORT", ic_testkit::free_port().to_string()),
        (
            "BROADCASTER_METRICS_PORT",
            ic_testkit::free_port().to_string(),
        ),
        ("BROADCASTER_ALLOW_PRIVATE_TARGETS", "true".to_owned()),
        ("BROADCASTER_RETRY_SCHEDULE", "200ms,400ms,800ms".to_owned()),
        ("HOST", "127.0.0.1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    vars
}

/// Starts a broadcaster in this process.
pub async fn start(nats_url: &str, subscriptions: &str, extra: &[(&str, &str)]) -> Running {
    ic_telemetry::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("subscriptions.yaml");
    std::fs::write(&file, subscriptions).unwrap();
    let mut vars = env(nats_url, &file, extra);
    // In this process the ports are asked of the app: any free one (a port picked
    // beforehand could be taken by another test before it is bound).
    for port in ["BROADCASTER_PORT", "BROADCASTER_METRICS_PORT"] {
        if !extra.iter().any(|(name, _)| *name == port) {
            vars.insert(port.to_owned(), "0".to_owned());
        }
    }
    let config = Config::from_env(vars.into_iter().collect()).unwrap();
    let app = App::build(config).await.unwrap();
    let (port, metrics_port, token) = (app.port(), app.metrics_port(), app.shutdown_token());
    let handle = tokio::spawn(app.run_until_stopped());
    let running = Running {
        port,
        metrics_port,
        token,
        handle,
        _dir: dir,
    };
    wait_ready(&running.url("/health")).await;
    running
}

/// Waits until `/health` says ready.
pub async fn wait_ready(url: &str) {
    ic_telemetry::install_crypto_provider();
    ic_testkit::eventually(
        Duration::from_secs(30),
        "the broadcaster to be ready",
        || async {
            let response = reqwest::get(url).await.ok()?;
            (response.status() == 200).then_some(())
        },
    )
    .await;
}

/// JetStream on `nats_url`, with the platform's streams.
pub async fn jetstream(nats_url: &str) -> jetstream::Context {
    let client = async_nats::connect(nats_url).await.unwrap();
    let js = jetstream::new(client);
    ic_events::streams::ensure(&js).await.unwrap();
    js
}

/// Publishes a CloudEvent of `action` on a service to `IC_EVENTS`, as services-api would.
pub async fn publish(js: &jetstream::Context, action: &str) -> CloudEvent {
    let event = CloudEvent::new(
        "services-api",
        "services",
        "service",
        action,
        uuid::Uuid::new_v4(),
        json!({"title": "Webhooked"}),
    );
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(NATS_MSG_ID, event.id.to_string().as_str());
    headers.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    );
    js.publish_with_headers(
        event.subject_for_type().unwrap(),
        headers,
        serde_json::to_vec(&event).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    event
}

/// The last message on `subject` of `stream`, as JSON, waiting up to 10 s for it.
pub async fn last_message(
    js: &jetstream::Context,
    stream: &str,
    subject: &str,
) -> serde_json::Value {
    ic_testkit::eventually(Duration::from_secs(10), subject, || async {
        let stream = js.get_stream(stream).await.ok()?;
        let message = stream.get_last_raw_message_by_subject(subject).await.ok()?;
        serde_json::from_slice(&message.payload).ok()
    })
    .await
}
