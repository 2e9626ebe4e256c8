//! Audit records of requests (`shared/spec/gateways.md`, "Audit"): admin-gateway records
//! every request that reached authentication — who, what, the outcome — with the JSON
//! body's secrets redacted, on `IC_AUDIT` under `audit.<app id>.request.<correlation id>`
//! (Loki job `admin-audit`). [`RequestAuditor`] publishes them in the background: the
//! response never waits, a NATS outage only delays them (bounded queue, retried until
//! JetStream acknowledges), and a full queue drops with a counter rather than block.

use std::{collections::BTreeMap, time::Duration};

use async_nats::{HeaderMap, jetstream};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use ic_events::{NATS_MSG_ID, streams};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::loki::job_for_app;

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// One request, as audited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Unique id (also the `Nats-Msg-Id`).
    pub audit_id: Uuid,
    /// When the answer was given.
    pub audit_timestamp: DateTime<Utc>,
    /// The recording app (`admin-gateway`).
    pub service: String,
    /// development | staging | production.
    pub environment: String,
    /// Always `request`.
    pub entity_type: String,
    /// The correlation id.
    pub entity_id: String,
    /// The user (`sub`), or `unauthenticated`.
    pub user_id: String,
    /// The user's roles (groups).
    pub roles: Vec<String>,
    /// HTTP method.
    pub method: String,
    /// The matched route template, or `unmatched`.
    pub route: String,
    /// The normalised path.
    pub path: String,
    /// The query string, its secret parameters redacted.
    pub query: Option<String>,
    /// The answer's status.
    pub status: u16,
    /// Time to the answer's head, in milliseconds.
    pub latency_ms: f64,
    /// The client's IP (behind trusted proxies, the forwarded one).
    pub client_ip: String,
    /// The correlation id.
    pub correlation_id: String,
    /// The trace id.
    pub trace_id: String,
    /// Why it was refused or allowed (authentication's or the policy's reason).
    pub reason: Option<String>,
    /// The JSON body with secrets redacted; for an upload, its file name, size and type.
    pub body: Option<Value>,
}

impl RequestRecord {
    /// The Loki stream labels: job, environment, entity_type, operation_type (the method),
    /// service.
    pub fn labels(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("job", job_for_app(&self.service)),
            ("environment", self.environment.clone()),
            ("entity_type", self.entity_type.clone()),
            ("operation_type", self.method.clone()),
            ("service", self.service.clone()),
        ])
    }

    /// `audit.<service>.request.<correlation id>`.
    pub fn subject(&self) -> String {
        crate::audit_subject(&self.service, &self.entity_type, &self.correlation_id)
    }
}

/// Whether a field or parameter name names a secret: password, token, secret,
/// authorization, api key, credential, private key, cookie, session (any case, any
/// separator).
pub fn is_sensitive(name: &str) -> bool {
    let name: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    [
        "password",
        "passwd",
        "passphrase",
        "token",
        "secret",
        "authorization",
        "apikey",
        "credential",
        "privatekey",
        "cookie",
        "session",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// Replaces the value of every sensitive field, at any depth, with [`REDACTED`].
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if is_sensitive(name) {
                    *field = Value::String(REDACTED.to_owned());
                } else {
                    redact(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// A query string with the values of sensitive parameters redacted.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_sensitive(&decoded(name)) => format!("{name}={REDACTED}"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn decoded(name: &str) -> String {
    form_urlencoded::parse(name.as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Publishes request records to `IC_AUDIT` in the background (see the module
/// documentation).
#[derive(Debug, Clone)]
pub struct RequestAuditor {
    queue: mpsc::Sender<RequestRecord>,
    records: Family<ResultLabel, Counter>,
    depth: Gauge,
}

/// Tuning of a [`RequestAuditor`].
#[derive(Debug, Clone)]
pub struct AuditorConfig {
    /// Records waiting at most; more are dropped (and counted).
    pub capacity: usize,
    /// Records published per round.
    pub batch: usize,
    /// First wait after a failed round; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest wait between rounds while NATS is unreachable.
    pub max_backoff: Duration,
    /// How long an acknowledgement is awaited.
    pub ack_timeout: Duration,
}

impl Default for AuditorConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            batch: 512,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(5),
        }
    }
}

impl RequestAuditor {
    /// Starts the publisher on `nats`; it runs until `token` is cancelled, then tries for
    /// up to 5 s to publish what is still queued.
    pub fn start(
        nats: async_nats::Client,
        config: AuditorConfig,
        token: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(config.capacity.max(1));
        let auditor = Self {
            queue,
            records: Family::default(),
            depth: Gauge::default(),
        };
        let worker = Worker {
            jetstream: jetstream::new(nats),
            receiver,
            config,
            auditor: auditor.clone(),
        };
        (auditor, tokio::spawn(worker.run(token)))
    }

    /// Registers `audit_request_records_total{result}` (published, dropped, retried) and
    /// `audit_request_queue_depth`.
    pub fn register(&self, registry: &mut Registry) {
        for result in ["published", "dropped", "retried"] {
            drop(self.records.get_or_create(&ResultLabel { result }));
        }
        registry.register(
            "audit_request_records",
            "Request audit records, by result (published, dropped when the queue was full, retried after a failed publish)",
            self.records.clone(),
        );
        registry.register(
            "audit_request_queue_depth",
            "Request audit records waiting to be published",
            self.depth.clone(),
        );
    }

    /// Queues a record; never waits.
    pub fn record(&self, record: RequestRecord) {
        match self.queue.try_send(record) {
            Ok(()) => {
                self.depth.inc();
            }
            Err(_) => {
                self.count("dropped", 1);
                tracing::error!("audit queue full or closed: a request record was dropped");
            }
        }
    }

    fn count(&self, result: &'static str, n: u64) {
        self.records
            .get_or_create(&ResultLabel { result })
            .inc_by(n);
    }
}

struct Worker {
    jetstream: jetstream::Context,
    receiver: mpsc::Receiver<RequestRecord>,
    config: AuditorConfig,
    auditor: RequestAuditor,
}

impl Worker {
    async fn run(mut self, token: CancellationToken) {
        let mut pending: Vec<RequestRecord> = Vec::new();
        let mut backoff = self.config.min_backoff;
        let mut streams_ready = false;
        loop {
            if pending.is_empty() {
                let received = tokio::select! {
                    () = token.cancelled() => break,
                    n = self.receiver.recv_many(&mut pending, self.config.batch) => n,
                };
                if received == 0 {
                    break;
                }
            }
            if !streams_ready {
                streams_ready = streams::ensure(&self.jetstream).await.is_ok();
            }
            if self.publish(&mut pending).await {
                backoff = self.config.min_backoff;
            } else {
                tracing::warn!(
                    waiting = pending.len(),
                    "audit records not published yet (NATS unreachable?); retrying"
                );
                tokio::select! {
                    () = token.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(self.config.max_backoff);
            }
        }
        // Stopping: what is queued gets one more chance.
        self.receiver.close();
        while let Ok(record) = self.receiver.try_recv() {
            pending.push(record);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !pending.is_empty() && tokio::time::Instant::now() < deadline {
            if !self.publish(&mut pending).await {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        if !pending.is_empty() {
            self.auditor.count("dropped", pending.len() as u64);
            self.auditor
                .depth
                .dec_by(i64::try_from(pending.len()).unwrap_or(i64::MAX));
            tracing::error!(
                lost = pending.len(),
                "stopping with audit records unpublished"
            );
        }
    }

    /// Publishes `pending` (pipelined: every publish, then every acknowledgement); keeps
    /// the ones that failed. True when all went through.
    async fn publish(&self, pending: &mut Vec<RequestRecord>) -> bool {
        let mut acks = Vec::with_capacity(pending.len());
        for record in pending.iter() {
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MSG_ID, record.audit_id.to_string().as_str());
            headers.insert(
                ic_telemetry::X_CORRELATION_ID,
                record.correlation_id.as_str(),
            );
            let payload = Bytes::from(serde_json::to_vec(record).unwrap_or_default());
            let sent = self
                .jetstream
                .publish_with_headers(record.subject(), headers, payload)
                .await;
            acks.push(sent.ok());
        }
        let timeout = self.config.ack_timeout;
        let acknowledged = futures::future::join_all(acks.into_iter().map(|ack| async move {
            match ack {
                Some(ack) => matches!(tokio::time::timeout(timeout, ack).await, Ok(Ok(_))),
                None => false,
            }
        }))
        .await;
        let total = pending.len();
        let mut kept = Vec::new();
        for (record, ok) in pending.drain(..).zip(acknowledged) {
            if !ok {
                kept.push(record);
            }
        }
        let published = total - kept.len();
        self.auditor.count("published", published as u64);
        self.auditor
            .depth
            .dec_by(i64::try_from(published).unwrap_or(i64::MAX));
        if !kept.is_empty() {
            self.auditor.count("retried", kept.len() as u64);
        }
        let done = kept.is_empty();
        *pending = kept;
        done
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth_and_in_the_query() {
        let mut body = json!({
            "title": "Cardiology",
            "password": "hunter2",
            "nested": {"api_key": "k", "Access-Token": "t", "list": [{"clientSecret": "s", "ok": 1}]},
            "Authorization": "Bearer x",
        });
        redact(&mut body);
        assert_eq!(
            body,
            json!({
                "title": "Cardiology",
                "password": REDACTED,
                "nested": {"api_key": REDACTED, "Access-Token": REDACTED, "list": [{"clientSecret": REDACTED, "ok": 1}]},
                "Authorization": REDACTED,
            })
        );
        assert_eq!(
            redact_query("page=2&access_token=abc&api%5Fkey=z&q=x"),
            format!("page=2&access_token={REDACTED}&api%5Fkey={REDACTED}&q=x")
        );
    }
}
