//! Grafana Loki: the push client, the shipper from `IC_AUDIT`, and history queries.
//!
//! The shipper binds the shared durable consumer [`SHIPPER_CONSUMER`], so every replica
//! of every producing service can run it and each record is pushed once. A record is
//! acknowledged only after Loki answered 2xx; 429, 5xx and network failures are NAKed
//! with a growing delay (JetStream keeps them meanwhile, so a Loki outage loses nothing);
//! a 400 for one record moves it to `dlq.audit.…` with the reason instead of blocking the
//! rest. Contract: `shared/spec/README.md`, "Audit".

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use async_nats::{
    HeaderMap,
    jetstream::{
        self, AckKind,
        consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    },
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use ic_events::streams::{self, AUDIT_SUBJECTS, IC_AUDIT};
use ic_http::Secret;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{AuditHistoryError, AuditRecord, HistoryPage, HistoryQuery, RequestRecord};

/// The durable consumer every shipper binds.
pub const SHIPPER_CONSUMER: &str = "audit-loki-shipper";
/// The push path of Loki's HTTP API.
pub const PUSH_PATH: &str = "/loki/api/v1/push";
/// The range-query path of Loki's HTTP API.
pub const QUERY_RANGE_PATH: &str = "/loki/api/v1/query_range";
/// The longest range one history query asks Loki for (Loki's default
/// `max_query_length` is 721 h).
pub const MAX_LOKI_RANGE: chrono::Duration = chrono::Duration::days(30);
/// Header naming why a record was dead-lettered.
pub const DEAD_LETTER_REASON: &str = "Dead-Letter-Reason";
/// Header with Loki's status for a dead-lettered record.
pub const DEAD_LETTER_STATUS: &str = "Dead-Letter-Status";

/// Where and how to reach Loki (`LOKI_URL`, `LOKI_USERNAME`, `LOKI_API_KEY`,
/// `LOKI_TENANT_ID`).
#[derive(Debug, Clone)]
pub struct LokiConfig {
    /// Base URL, e.g. `http://loki:3100`.
    pub url: String,
    /// Basic-auth user (Grafana Cloud).
    pub username: Option<String>,
    /// Basic-auth password / API key (Grafana Cloud).
    pub api_key: Option<Secret>,
    /// `X-Scope-OrgID` for multi-tenant Loki.
    pub tenant_id: Option<String>,
}

/// The setting that may come from a Dapr secret store (`ic_secrets`).
pub const SECRETS: &[&str] = &["LOKI_API_KEY"];

impl LokiConfig {
    /// `LOKI_URL` (+ `LOKI_USERNAME`/`LOKI_API_KEY` for Grafana Cloud basic auth,
    /// `LOKI_TENANT_ID` for `X-Scope-OrgID`); `None` when `LOKI_URL` is unset.
    pub fn from_env(vars: &ic_config::Env) -> Result<Option<Self>, ic_config::ConfigError> {
        use ic_config::ConfigError;
        let Some(url) = vars.raw("LOKI_URL") else {
            return Ok(None);
        };
        if url::Url::parse(url).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
            return Err(ConfigError::invalid(
                "LOKI_URL",
                "an http(s) URL such as http://loki:3100",
            ));
        }
        let username = vars.raw("LOKI_USERNAME").map(str::to_owned);
        let api_key = vars.secret("LOKI_API_KEY");
        if username.is_some() != api_key.is_some() {
            return Err(ConfigError::invalid(
                "LOKI_USERNAME/LOKI_API_KEY",
                "both set (Grafana Cloud basic auth) or both unset",
            ));
        }
        Ok(Some(Self {
            url: url.to_owned(),
            username,
            api_key,
            tenant_id: vars.raw("LOKI_TENANT_ID").map(str::to_owned),
        }))
    }
}

/// Outcome of one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// 2xx: stored.
    Accepted,
    /// 400: Loki refuses this content for good (too old, too long…).
    Rejected(String),
    /// 429, 5xx, or no answer: try again later.
    Retry(String),
}

/// Loki's HTTP API.
#[derive(Debug, Clone)]
pub struct LokiClient {
    config: LokiConfig,
    http: reqwest::Client,
}

/// The Loki `job` label for an app id.
pub fn job_for_app(app_id: &str) -> String {
    match app_id {
        "services-api" => "services-audit".into(),
        "content-api" => "content-audit".into(),
        "admin-gateway" => "admin-audit".into(),
        other => format!("{}-audit", other.trim_end_matches("-api")),
    }
}

/// The stream labels of a record of a change (few, low-cardinality; everything else is
/// in the line).
pub fn labels_of(record: &AuditRecord) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("job", job_for_app(&record.service)),
        ("environment", record.environment.clone()),
        ("entity_type", record.entity_type.clone()),
        ("operation_type", record.operation_type.as_str().to_owned()),
        ("service", record.service.clone()),
    ])
}

/// Whatever `IC_AUDIT` carries: a change's record or a request's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AuditLine {
    /// A change (services-api, content-api).
    Change(AuditRecord),
    /// A request (admin-gateway).
    Request(RequestRecord),
}

impl AuditLine {
    /// Its Loki stream labels.
    pub fn labels(&self) -> BTreeMap<&'static str, String> {
        match self {
            Self::Change(record) => labels_of(record),
            Self::Request(record) => record.labels(),
        }
    }

    fn timestamp(&self) -> DateTime<Utc> {
        match self {
            Self::Change(record) => record.audit_timestamp,
            Self::Request(record) => record.audit_timestamp,
        }
    }
}

impl From<AuditRecord> for AuditLine {
    fn from(record: AuditRecord) -> Self {
        Self::Change(record)
    }
}

/// The push body for records: one stream per label set, values `[ns, json line]`.
pub fn push_body(records: &[&AuditLine]) -> Value {
    let mut streams: BTreeMap<BTreeMap<&'static str, String>, Vec<Value>> = BTreeMap::new();
    for record in records {
        let ns = record.timestamp().timestamp_nanos_opt().unwrap_or_default();
        let line = serde_json::to_string(record).unwrap_or_default();
        streams
            .entry(record.labels())
            .or_default()
            .push(json!([ns.to_string(), line]));
    }
    json!({
        "streams": streams
            .into_iter()
            .map(|(labels, values)| json!({ "stream": labels, "values": values }))
            .collect::<Vec<_>>()
    })
}

impl LokiClient {
    /// A client (the process has installed its TLS crypto provider:
    /// `ic_telemetry::install_crypto_provider`).
    pub fn new(config: LokiConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .unwrap_or_default();
        Self { config, http }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(
            method,
            format!("{}{path}", self.config.url.trim_end_matches('/')),
        );
        if let Some(tenant) = &self.config.tenant_id {
            req = req.header("X-Scope-OrgID", tenant);
        }
        if let Some(user) = &self.config.username {
            req = req.basic_auth(user, self.config.api_key.as_ref().map(Secret::expose));
        }
        req
    }

    /// Pushes records in one request.
    pub async fn push(&self, records: &[&AuditLine]) -> PushOutcome {
        let res = self
            .request(reqwest::Method::POST, PUSH_PATH)
            .json(&push_body(records))
            .send()
            .await;
        match res {
            Ok(res) if res.status().is_success() => PushOutcome::Accepted,
            Ok(res) => {
                let status = res.status();
                let body: String = res
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(500)
                    .collect();
                let reason = format!("{status}: {}", body.trim());
                if status == reqwest::StatusCode::BAD_REQUEST {
                    PushOutcome::Rejected(reason)
                } else {
                    PushOutcome::Retry(reason)
                }
            }
            Err(err) => PushOutcome::Retry(format!("no answer: {err}")),
        }
    }

    /// An entity's records from Loki (`query_range`, newest first). Without `start`, the
    /// [`MAX_LOKI_RANGE`] before `end` is searched (Loki's default maximum query length).
    pub async fn history(&self, query: &HistoryQuery) -> Result<HistoryPage, AuditHistoryError> {
        let end = query.end.unwrap_or_else(Utc::now);
        let start = query.start.unwrap_or(end - MAX_LOKI_RANGE);
        let logql = format!(
            "{{job=\"{}\", entity_type=\"{}\"}} |= \"{}\" | json | entity_id=\"{}\"",
            job_for_app(query.app_id),
            query.entity_type,
            query.entity_id,
            query.entity_id
        );
        let ns = |t: DateTime<Utc>| t.timestamp_nanos_opt().unwrap_or_default().to_string();
        let params = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("query", &logql)
            .append_pair("start", &ns(start))
            .append_pair("end", &ns(end))
            .append_pair("limit", "5000")
            .append_pair("direction", "backward")
            .finish();
        let res = self
            .request(
                reqwest::Method::GET,
                &format!("{QUERY_RANGE_PATH}?{params}"),
            )
            .send()
            .await
            .map_err(|e| AuditHistoryError::Unavailable(format!("Loki query failed: {e}")))?;
        if res.status() == reqwest::StatusCode::BAD_REQUEST {
            let reason: String = res
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            return Err(AuditHistoryError::Rejected(reason));
        }
        if !res.status().is_success() {
            return Err(AuditHistoryError::Unavailable(format!(
                "Loki answered {}",
                res.status()
            )));
        }
        let body: Value = res
            .json()
            .await
            .map_err(|e| AuditHistoryError::Unavailable(format!("Loki answer unreadable: {e}")))?;
        let mut records: Vec<AuditRecord> = body["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|stream| stream["values"].as_array().cloned().unwrap_or_default())
            .filter_map(|pair| {
                pair.get(1)
                    .and_then(Value::as_str)
                    .and_then(|l| serde_json::from_str(l).ok())
            })
            .collect();
        records.sort_by(|a, b| {
            b.audit_timestamp
                .cmp(&a.audit_timestamp)
                .then(b.audit_id.cmp(&a.audit_id))
        });
        records.dedup_by_key(|r| r.audit_id);
        let total = records.len();
        Ok(HistoryPage {
            records: records
                .into_iter()
                .skip(query.offset)
                .take(query.limit)
                .collect(),
            total,
        })
    }
}

/// Shipper tuning.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// Records per push.
    pub batch_size: usize,
    /// How long a fetch waits for records.
    pub fetch_wait: Duration,
    /// First retry delay after a failed push.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

impl Default for ShipperConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            fetch_wait: Duration::from_secs(1),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Ships `IC_AUDIT` to Loki.
#[derive(Debug, Clone)]
pub struct Shipper {
    jetstream: jetstream::Context,
    loki: LokiClient,
    config: ShipperConfig,
    metrics: ShipperMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShipResult {
    result: &'static str,
}

/// What the shipper did with the records it took, and how long Loki took.
#[derive(Debug, Clone)]
struct ShipperMetrics {
    records: Family<ShipResult, Counter>,
    push_seconds: Histogram,
}

impl Default for ShipperMetrics {
    fn default() -> Self {
        Self {
            records: Family::default(),
            push_seconds: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        }
    }
}

impl ShipperMetrics {
    fn count(&self, result: &'static str, records: usize) {
        self.records
            .get_or_create(&ShipResult { result })
            .inc_by(records as u64);
    }
}

impl Shipper {
    /// A shipper over a NATS client.
    pub fn new(nats: async_nats::Client, loki: LokiClient, config: ShipperConfig) -> Self {
        Self {
            jetstream: jetstream::new(nats),
            loki,
            config,
            metrics: ShipperMetrics::default(),
        }
    }

    /// Registers `audit_loki_records_total{result}` (shipped; retried: Loki failed and
    /// the records stay in `IC_AUDIT`; dead_lettered: Loki refused them) and
    /// `audit_loki_push_duration_seconds`.
    pub fn register(&self, registry: &mut Registry) {
        for result in ["shipped", "retried", "dead_lettered"] {
            self.metrics.count(result, 0);
        }
        registry.register(
            "audit_loki_records",
            "Audit records taken from IC_AUDIT for Loki, by result (shipped, retried after a failed push, dead_lettered when Loki refused them)",
            self.metrics.records.clone(),
        );
        registry.register(
            "audit_loki_push_duration_seconds",
            "Time of one push of audit records to Loki",
            self.metrics.push_seconds.clone(),
        );
    }

    /// One push, timed.
    async fn push(&self, records: &[&AuditLine]) -> PushOutcome {
        let started = Instant::now();
        let outcome = self.loki.push(records).await;
        self.metrics
            .push_seconds
            .observe(started.elapsed().as_secs_f64());
        outcome
    }

    async fn consumer(&self) -> Result<PullConsumer, async_nats::Error> {
        streams::ensure(&self.jetstream).await?;
        let stream = self.jetstream.get_stream(IC_AUDIT).await?;
        Ok(stream
            .get_or_create_consumer(
                SHIPPER_CONSUMER,
                pull::Config {
                    durable_name: Some(SHIPPER_CONSUMER.to_owned()),
                    filter_subject: AUDIT_SUBJECTS.to_owned(),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(60),
                    max_ack_pending: 20_000,
                    ..Default::default()
                },
            )
            .await?)
    }

    /// Runs until `token` is cancelled; in-flight pushes finish first.
    pub async fn run(self, token: CancellationToken) {
        let mut backoff = self.config.min_backoff;
        let mut consumer: Option<PullConsumer> = None;
        while !token.is_cancelled() {
            if consumer.is_none() {
                match self.consumer().await {
                    Ok(c) => consumer = Some(c),
                    Err(err) => {
                        tracing::warn!(error = %err, "audit shipper cannot bind its consumer; retrying");
                        sleep_or_cancel(&token, backoff).await;
                        backoff = (backoff * 2).min(self.config.max_backoff);
                        continue;
                    }
                }
            }
            let Some(bound) = consumer.as_ref() else {
                continue;
            };
            let fetched = tokio::select! {
                () = token.cancelled() => break,
                fetched = self.fetch(bound) => fetched,
            };
            match fetched {
                Ok(batch) if batch.is_empty() => {}
                Ok(batch) => {
                    if self.ship(batch, &mut backoff).await {
                        backoff = self.config.min_backoff;
                    } else {
                        // Loki is struggling: give it room before the next fetch.
                        sleep_or_cancel(&token, backoff).await;
                        backoff = (backoff * 2).min(self.config.max_backoff);
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "audit shipper fetch failed; retrying");
                    consumer = None;
                    sleep_or_cancel(&token, backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }

    async fn fetch(
        &self,
        consumer: &PullConsumer,
    ) -> Result<Vec<jetstream::Message>, async_nats::Error> {
        let mut messages = consumer
            .batch()
            .max_messages(self.config.batch_size)
            .expires(self.config.fetch_wait)
            .messages()
            .await?;
        let mut batch = Vec::new();
        while let Some(message) = messages.next().await {
            batch.push(message?);
        }
        Ok(batch)
    }

    /// Pushes a batch; returns false when Loki asked us to retry.
    async fn ship(&self, batch: Vec<jetstream::Message>, backoff: &mut Duration) -> bool {
        let mut parsed = Vec::with_capacity(batch.len());
        for message in batch {
            match serde_json::from_slice::<AuditLine>(&message.payload) {
                Ok(record) => parsed.push((message, record)),
                Err(err) => {
                    self.dead_letter(
                        &message,
                        "unparseable",
                        &format!("not an audit record: {err}"),
                    )
                    .await
                }
            }
        }
        if parsed.is_empty() {
            return true;
        }
        let records: Vec<&AuditLine> = parsed.iter().map(|(_, r)| r).collect();
        match self.push(&records).await {
            PushOutcome::Accepted => {
                for (message, _) in &parsed {
                    let _ = message.ack().await;
                }
                self.metrics.count("shipped", parsed.len());
                true
            }
            PushOutcome::Retry(reason) => {
                tracing::warn!(reason = %reason, records = parsed.len(), "Loki push failed; records stay in JetStream");
                self.metrics.count("retried", parsed.len());
                for (message, _) in &parsed {
                    let _ = message.ack_with(AckKind::Nak(Some(*backoff))).await;
                }
                false
            }
            PushOutcome::Rejected(reason) if parsed.len() == 1 => {
                self.dead_letter(&parsed[0].0, "400", &reason).await;
                true
            }
            PushOutcome::Rejected(_) => {
                // Find the offending records one by one; Loki de-duplicates identical
                // entries, so re-pushing what it already kept is harmless.
                let mut healthy = true;
                for (message, record) in &parsed {
                    match self.push(&[record]).await {
                        PushOutcome::Accepted => {
                            let _ = message.ack().await;
                            self.metrics.count("shipped", 1);
                        }
                        PushOutcome::Rejected(reason) => {
                            self.dead_letter(message, "400", &reason).await
                        }
                        PushOutcome::Retry(_) => {
                            healthy = false;
                            self.metrics.count("retried", 1);
                            let _ = message.ack_with(AckKind::Nak(Some(*backoff))).await;
                        }
                    }
                }
                healthy
            }
        }
    }

    /// Publishes the record to `dlq.<subject>` with the reason, then acknowledges it.
    async fn dead_letter(&self, message: &jetstream::Message, status: &str, reason: &str) {
        let subject = format!("dlq.{}", message.subject);
        let mut headers = HeaderMap::new();
        headers.insert(DEAD_LETTER_STATUS, status);
        let reason: String = reason
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect();
        headers.insert(DEAD_LETTER_REASON, reason.as_str());
        let published = match self
            .jetstream
            .publish_with_headers(subject, headers, Bytes::from(message.payload.to_vec()))
            .await
        {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        if published {
            tracing::warn!(subject = %message.subject, reason = %reason, "audit record dead-lettered");
            let _ = message.ack().await;
            self.metrics.count("dead_lettered", 1);
        } else {
            let _ = message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                .await;
        }
    }
}

async fn sleep_or_cancel(token: &CancellationToken, delay: Duration) {
    let jitter = Duration::from_millis(rand::random_range(
        0..=delay.as_millis().min(2000) as u64 / 5,
    ));
    tokio::select! {
        () = token.cancelled() => {}
        () = tokio::time::sleep(delay + jitter) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataSnapshot, OperationType};

    fn record(entity_type: &str, op: OperationType) -> AuditRecord {
        AuditRecord {
            audit_id: uuid::Uuid::now_v7(),
            entity_type: entity_type.into(),
            entity_id: "e1".into(),
            operation_type: op,
            audit_timestamp: Utc::now(),
            user_id: "u".into(),
            correlation_id: "c".into(),
            trace_id: "t".into(),
            data_snapshot: DataSnapshot {
                before: None,
                after: Some(json!({"a": 1})),
            },
            environment: "development".into(),
            service: "services-api".into(),
            action: "created".into(),
        }
    }

    #[test]
    fn records_are_grouped_into_streams_by_their_few_labels() {
        let a = record("service", OperationType::Insert);
        let b = record("service", OperationType::Insert);
        let c = record("category", OperationType::Delete);
        let lines: Vec<AuditLine> = [&a, &b, &c].map(|r| r.clone().into()).into();
        let body = push_body(&lines.iter().collect::<Vec<_>>());
        let streams = body["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 2);
        let service = streams
            .iter()
            .find(|s| s["stream"]["entity_type"] == "service")
            .unwrap();
        assert_eq!(
            service["stream"],
            json!({"job": "services-audit", "environment": "development", "entity_type": "service", "operation_type": "INSERT", "service": "services-api"})
        );
        assert_eq!(service["values"].as_array().unwrap().len(), 2);
        let line: AuditRecord =
            serde_json::from_str(service["values"][0][1].as_str().unwrap()).unwrap();
        assert_eq!(line, a);
        assert_eq!(
            service["values"][0][0],
            a.audit_timestamp.timestamp_nanos_opt().unwrap().to_string()
        );
        assert_eq!(job_for_app("admin-gateway"), "admin-audit");
        // A request's record from admin-gateway: its own stream, read back as itself.
        let request = RequestRecord {
            audit_id: uuid::Uuid::now_v7(),
            audit_timestamp: Utc::now(),
            service: "admin-gateway".into(),
            environment: "development".into(),
            entity_type: "request".into(),
            entity_id: "c".into(),
            user_id: "u".into(),
            roles: vec!["admin".into()],
            method: "POST".into(),
            route: "/admin/api/v1/services".into(),
            path: "/admin/api/v1/services".into(),
            query: None,
            status: 201,
            latency_ms: 1.5,
            client_ip: "127.0.0.1".into(),
            correlation_id: "c".into(),
            trace_id: "t".into(),
            reason: Some("allowed by role".into()),
            body: Some(json!({"title": "x"})),
        };
        let line = AuditLine::Request(request.clone());
        let body = push_body(&[&line]);
        assert_eq!(
            body["streams"][0]["stream"],
            json!({"job": "admin-audit", "environment": "development", "entity_type": "request", "operation_type": "POST", "service": "admin-gateway"})
        );
        let read: AuditLine =
            serde_json::from_str(body["streams"][0]["values"][0][1].as_str().unwrap()).unwrap();
        assert_eq!(read, AuditLine::Request(request));
        let change: AuditLine = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(change, AuditLine::Change(a.clone()));
        assert_eq!(job_for_app("content-api"), "content-audit");
    }
}
