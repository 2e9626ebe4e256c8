//! The access log (`content.content_access_log`): every view, download and preview,
//! recorded without slowing the response. Handlers hand entries to a bounded buffer
//! (never waiting: a full buffer drops the entry and counts it); one writer inserts them
//! in batches. Downloads are logged when their body ends, with the bytes really sent.
//! Analytics, not audit (`shared/spec/content-api.md`, "Public endpoints").

use std::{
    net::IpAddr,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;
use http::HeaderMap;
use ic_http::RequestContext;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{domain::AccessType, metrics::Metrics};

/// Entries buffered before new ones are dropped.
pub const BUFFER_ENTRIES: usize = 10_000;
/// Most entries per insert.
const BATCH_ENTRIES: usize = 500;
/// Longest an entry waits before its batch is written.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Longest user agent or referer kept.
const MAX_TEXT: usize = 512;

/// One access.
#[derive(Debug, Clone)]
pub struct AccessEntry {
    /// The file.
    pub content_id: Uuid,
    /// When.
    pub at: DateTime<Utc>,
    /// The identified caller, if any.
    pub user_id: Option<String>,
    /// The client's address (as the gateway forwarded it).
    pub client_ip: Option<IpAddr>,
    /// `User-Agent`, cut to 512 characters.
    pub user_agent: Option<String>,
    /// View, download or preview.
    pub access_type: AccessType,
    /// The response's status.
    pub status: u16,
    /// Body bytes sent.
    pub bytes_served: u64,
    /// Until the last byte was sent (or the client went away).
    pub response_time_ms: u32,
    /// The request's correlation id.
    pub correlation_id: Uuid,
    /// `Referer`, cut to 512 characters.
    pub referer: Option<String>,
    /// Answered without the object (304) or from the preview cache.
    pub cache_hit: bool,
    /// The store's name.
    pub storage_backend: String,
}

impl AccessEntry {
    /// An entry for the request `ctx` with `headers`, to be completed by the handler.
    pub fn start(
        ctx: &RequestContext,
        headers: &HeaderMap,
        content_id: Uuid,
        access_type: AccessType,
        storage_backend: &str,
    ) -> Self {
        let text = |name: http::header::HeaderName| {
            headers.get(name).and_then(|v| v.to_str().ok()).map(|v| {
                v.chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_TEXT)
                    .collect()
            })
        };
        Self {
            content_id,
            at: Utc::now(),
            user_id: ctx.identity.as_ref().map(|i| i.user_id.clone()),
            client_ip: headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok()),
            user_agent: text(http::header::USER_AGENT),
            access_type,
            status: 200,
            bytes_served: 0,
            response_time_ms: 0,
            correlation_id: ctx.correlation_id,
            referer: text(http::header::REFERER),
            cache_hit: false,
            storage_backend: storage_backend.to_owned(),
        }
    }
}

/// Where handlers hand their entries.
#[derive(Debug, Clone)]
pub struct AccessLog {
    sender: mpsc::Sender<AccessEntry>,
    metrics: Metrics,
}

impl AccessLog {
    /// A log writing into `pool`, with its writer (to be run once).
    pub fn new(pool: PgPool, metrics: Metrics, capacity: usize) -> (Self, AccessLogWriter) {
        let (sender, receiver) = mpsc::channel(capacity);
        (
            Self {
                sender: sender.clone(),
                metrics: metrics.clone(),
            },
            AccessLogWriter {
                receiver,
                sender,
                pool,
                metrics,
            },
        )
    }

    /// Records an entry, or drops it (counted) when the buffer is full.
    pub fn record(&self, entry: AccessEntry) {
        if self.sender.try_send(entry).is_err() {
            self.metrics.access_log("dropped", 1);
        }
    }

    /// Wraps a body stream: the entry is recorded when the body ends or is dropped,
    /// with the bytes sent and the time taken.
    pub fn metered<S>(&self, inner: S, entry: AccessEntry) -> Metered<S> {
        Metered {
            inner,
            entry: Some(entry),
            started: Instant::now(),
            sent: 0,
            log: self.clone(),
        }
    }
}

/// A body stream that logs its access when it ends.
pub struct Metered<S> {
    inner: S,
    entry: Option<AccessEntry>,
    started: Instant,
    sent: u64,
    log: AccessLog,
}

impl<S, E> Stream for Metered<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            self.sent += chunk.len() as u64;
        }
        polled
    }
}

impl<S> Drop for Metered<S> {
    fn drop(&mut self) {
        if let Some(mut entry) = self.entry.take() {
            entry.bytes_served = self.sent;
            entry.response_time_ms =
                u32::try_from(self.started.elapsed().as_millis()).unwrap_or(u32::MAX);
            self.log.record(entry);
        }
    }
}

/// Inserts buffered entries in batches.
#[derive(Debug)]
pub struct AccessLogWriter {
    receiver: mpsc::Receiver<AccessEntry>,
    sender: mpsc::Sender<AccessEntry>,
    pool: PgPool,
    metrics: Metrics,
}

impl AccessLogWriter {
    /// Writes until `token` is cancelled, then writes what is buffered and stops.
    pub async fn run(mut self, token: CancellationToken) {
        let mut batch = Vec::with_capacity(BATCH_ENTRIES);
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        loop {
            tokio::select! {
                received = self.receiver.recv() => match received {
                    Some(entry) => {
                        batch.push(entry);
                        if batch.len() >= BATCH_ENTRIES {
                            self.flush(&mut batch).await;
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => self.flush(&mut batch).await,
                () = token.cancelled() => break,
            }
        }
        self.receiver.close();
        while let Ok(entry) = self.receiver.try_recv() {
            batch.push(entry);
            if batch.len() >= BATCH_ENTRIES {
                self.flush(&mut batch).await;
            }
        }
        self.flush(&mut batch).await;
    }

    async fn flush(&self, batch: &mut Vec<AccessEntry>) {
        let waiting = self.sender.max_capacity() - self.sender.capacity();
        self.metrics.access_log_queue(waiting);
        if batch.is_empty() {
            return;
        }
        let count = batch.len() as u64;
        match insert(&self.pool, batch).await {
            Ok(()) => self.metrics.access_log("written", count),
            Err(err) => {
                // Analytics, not audit: a failed batch is counted and let go rather than
                // held (and grown) while the database is away.
                tracing::warn!(error = %err, entries = count, "writing the access log failed");
                self.metrics.access_log("failed", count);
            }
        }
        batch.clear();
    }
}

/// One multi-row insert.
async fn insert(pool: &PgPool, batch: &[AccessEntry]) -> Result<(), sqlx::Error> {
    let mut ids = Vec::with_capacity(batch.len());
    let mut content = Vec::with_capacity(batch.len());
    let mut at = Vec::with_capacity(batch.len());
    let mut users = Vec::with_capacity(batch.len());
    let mut ips: Vec<Option<String>> = Vec::with_capacity(batch.len());
    let mut agents = Vec::with_capacity(batch.len());
    let mut types = Vec::with_capacity(batch.len());
    let mut statuses = Vec::with_capacity(batch.len());
    let mut bytes = Vec::with_capacity(batch.len());
    let mut times = Vec::with_capacity(batch.len());
    let mut correlations = Vec::with_capacity(batch.len());
    let mut referers = Vec::with_capacity(batch.len());
    let mut hits = Vec::with_capacity(batch.len());
    let mut backends = Vec::with_capacity(batch.len());
    for e in batch {
        ids.push(Uuid::now_v7());
        content.push(e.content_id);
        at.push(e.at);
        users.push(e.user_id.clone());
        ips.push(e.client_ip.map(|ip| ip.to_string()));
        agents.push(e.user_agent.clone());
        types.push(e.access_type.as_str());
        statuses.push(i16::try_from(e.status).unwrap_or(i16::MAX));
        bytes.push(i64::try_from(e.bytes_served).unwrap_or(i64::MAX));
        times.push(i32::try_from(e.response_time_ms).unwrap_or(i32::MAX));
        correlations.push(e.correlation_id);
        referers.push(e.referer.clone());
        hits.push(e.cache_hit);
        backends.push(e.storage_backend.clone());
    }
    // Rows whose file is gone (deleted for good between the access and the insert) are
    // skipped rather than failing the batch.
    sqlx::query(
        "INSERT INTO content.content_access_log (access_id, content_id, access_timestamp, user_id, \
         client_ip, user_agent, access_type, http_status_code, bytes_served, response_time_ms, \
         correlation_id, referer_url, cache_hit, storage_backend) \
         SELECT a.* FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::inet[], \
         $6::text[], $7::text[], $8::int2[], $9::int8[], $10::int4[], $11::uuid[], $12::text[], \
         $13::bool[], $14::text[]) AS a(access_id, content_id, access_timestamp, user_id, client_ip, \
         user_agent, access_type, http_status_code, bytes_served, response_time_ms, correlation_id, \
         referer_url, cache_hit, storage_backend) \
         WHERE EXISTS (SELECT 1 FROM content.content c WHERE c.content_id = a.content_id)",
    )
    .bind(&ids)
    .bind(&content)
    .bind(&at)
    .bind(&users)
    .bind(&ips)
    .bind(&agents)
    .bind(&types)
    .bind(&statuses)
    .bind(&bytes)
    .bind(&times)
    .bind(&correlations)
    .bind(&referers)
    .bind(&hits)
    .bind(&backends)
    .execute(pool)
    .await?;
    Ok(())
}
