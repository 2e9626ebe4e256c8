//! A FAKE Grafana Loki (Loki cannot run here): speaks the real HTTP wire protocol of
//! `POST /loki/api/v1/push` (JSON) and `GET /loki/api/v1/query_range`, stores entries
//! de-duplicated per stream like Loki does, and can be told to fail: answer a status for
//! every push, refuse lines containing a marker with 400 (accepting the rest of the
//! push, as Loki does), or stop listening altogether.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// One stored log entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// Stream labels.
    pub labels: BTreeMap<String, String>,
    /// Timestamp, ns since the epoch, as sent.
    pub ts: String,
    /// The log line.
    pub line: String,
}

/// One push request as received.
#[derive(Debug, Clone)]
pub struct Push {
    /// `X-Scope-OrgID`, if sent.
    pub tenant: Option<String>,
    /// `Authorization`, if sent.
    pub authorization: Option<String>,
    /// The JSON body.
    pub body: Value,
    /// The status answered.
    pub status: u16,
}

#[derive(Debug, Default)]
struct Inner {
    entries: Vec<Entry>,
    pushes: Vec<Push>,
    fail_with: Option<u16>,
    reject_marker: Option<String>,
}

type Shared = Arc<Mutex<Inner>>;

/// The fake server.
#[derive(Debug)]
pub struct FakeLoki {
    addr: SocketAddr,
    inner: Shared,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl FakeLoki {
    /// Starts on a free loopback port.
    pub async fn start() -> Self {
        let mut fake = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            inner: Shared::default(),
            server: None,
        };
        fake.listen().await;
        fake
    }

    async fn listen(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("bind fake Loki");
        self.addr = listener.local_addr().expect("local addr");
        let router = Router::new()
            .route("/loki/api/v1/push", post(push))
            .route("/loki/api/v1/query_range", get(query_range))
            .route("/ready", get(|| async { "ready" }))
            .with_state(self.inner.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        self.server = Some((stop, task));
    }

    /// Base URL (`LOKI_URL`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening (connections are refused) until [`FakeLoki::restart`].
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.server.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.listen().await;
    }

    /// Answers every push with `status` (e.g. 429, 503) until cleared with `None`.
    pub fn fail_with(&self, status: Option<u16>) {
        self.inner.lock().unwrap().fail_with = status;
    }

    /// Refuses, with 400, entries whose line contains `marker`.
    pub fn reject_lines_containing(&self, marker: Option<&str>) {
        self.inner.lock().unwrap().reject_marker = marker.map(str::to_owned);
    }

    /// Stored entries.
    pub fn entries(&self) -> Vec<Entry> {
        self.inner.lock().unwrap().entries.clone()
    }

    /// Push requests received.
    pub fn pushes(&self) -> Vec<Push> {
        self.inner.lock().unwrap().pushes.clone()
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn push(
    State(inner): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let mut record = |status: u16, body: Value| {
        inner.pushes.push(Push {
            tenant: header(&headers, "x-scope-orgid"),
            authorization: header(&headers, "authorization"),
            body,
            status,
        });
    };
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        record(400, Value::Null);
        return (StatusCode::BAD_REQUEST, "error parsing push request").into_response();
    };
    if let Some(status) = inner.fail_with {
        inner.pushes.push(Push {
            tenant: header(&headers, "x-scope-orgid"),
            authorization: header(&headers, "authorization"),
            body: value,
            status,
        });
        return (StatusCode::from_u16(status).unwrap(), "fake failure").into_response();
    }
    let mut rejected = Vec::new();
    for stream in value["streams"].as_array().into_iter().flatten() {
        let labels: BTreeMap<String, String> = stream["stream"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        for pair in stream["values"].as_array().into_iter().flatten() {
            let entry = Entry {
                labels: labels.clone(),
                ts: pair[0].as_str().unwrap_or_default().to_owned(),
                line: pair[1].as_str().unwrap_or_default().to_owned(),
            };
            if inner
                .reject_marker
                .as_deref()
                .is_some_and(|m| entry.line.contains(m))
            {
                rejected.push(format!(
                    "entry for stream '{labels:?}' has timestamp too old: {}",
                    entry.ts
                ));
            } else if !inner.entries.contains(&entry) {
                inner.entries.push(entry);
            }
        }
    }
    let status = if rejected.is_empty() { 204 } else { 400 };
    inner.pushes.push(Push {
        tenant: header(&headers, "x-scope-orgid"),
        authorization: header(&headers, "authorization"),
        body: value,
        status,
    });
    if rejected.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::BAD_REQUEST, rejected.join("\n")).into_response()
    }
}

/// Supports the filters the platform's history queries use: the stream selector's
/// `job` and `entity_type`, and `entity_id="…"` after `| json`.
async fn query_range(
    State(inner): State<Shared>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Json<Value> {
    let query = params.get("query").cloned().unwrap_or_default();
    let value_of = |key: &str| -> Option<String> {
        let start = query.find(&format!("{key}=\""))? + key.len() + 2;
        Some(query[start..].split('"').next()?.to_owned())
    };
    let job = value_of("job");
    let entity_type = value_of("entity_type");
    let entity_id = value_of("entity_id");
    let inner = inner.lock().unwrap();
    let mut streams: BTreeMap<BTreeMap<String, String>, Vec<Value>> = BTreeMap::new();
    for e in inner.entries.iter().filter(|e| {
        job.as_ref().is_none_or(|j| e.labels.get("job") == Some(j))
            && entity_type
                .as_ref()
                .is_none_or(|t| e.labels.get("entity_type") == Some(t))
            && entity_id.as_ref().is_none_or(|id| {
                serde_json::from_str::<Value>(&e.line).is_ok_and(|v| v["entity_id"] == id.as_str())
            })
    }) {
        streams
            .entry(e.labels.clone())
            .or_default()
            .push(json!([e.ts, e.line]));
    }
    Json(json!({
        "status": "success",
        "data": {
            "resultType": "streams",
            "result": streams.into_iter().map(|(stream, values)| json!({"stream": stream, "values": values})).collect::<Vec<_>>(),
        }
    }))
}
