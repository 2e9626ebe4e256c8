//! Processing: jobs on `ic.content.process` (queued through the outbox in the upload's
//! transaction), taken by one durable JetStream consumer that every replica shares.
//! A job scans the object with clamd and verifies it in the store, then marks the file
//! `available` or `failed` (`shared/spec/content-api.md`, "Upload pipeline", step 4).
//!
//! Crash safety: each attempt is counted before the work; the message is acknowledged
//! only after the outcome is committed, so a worker killed mid-job leaves the message to
//! be redelivered after `ack_wait` (a live worker keeps extending it), and the job is
//! finished by the next one. A job whose file is no longer `processing` is a duplicate
//! and is acknowledged without work.

use std::time::Duration;

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
};
use chrono::Utc;
use futures::StreamExt;
use ic_audit::{Change, OperationType, context_headers};
use ic_events::{
    OutboxMessage,
    streams::{CONTENT_PROCESS_SUBJECT, IC_EVENTS},
};
use ic_http::RequestContext;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    AppState, OUTBOX, SERVICE_NAME,
    db::{self, content::ContentRecord, scans::ScanRecord},
    domain::{ScanStatus, UploadStatus},
    preview::{PreviewFormat, PreviewSize, dimensions, has_preview, preview_path, render},
    scan::{Clamd, ScanError, Verdict},
};

/// The durable consumer every replica pulls jobs from.
pub const PROCESSOR_CONSUMER: &str = "content-processor";
/// Seconds processing a file of `size` bytes is expected to take: a scan reads ~50 MB/s,
/// plus queueing (`estimated_processing_time` of the upload and reprocess answers).
pub fn estimated_seconds(size: u64) -> u64 {
    2 + size / (50 * 1024 * 1024)
}

/// Largest image a thumbnail is made of during processing.
const MAX_THUMBNAIL_SOURCE_BYTES: i64 = 50 * 1024 * 1024;
/// The user id processing writes under (events, audit records).
pub const PROCESSOR_USER: &str = "system:content-processor";

/// Why a job was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobReason {
    /// A new upload.
    Upload,
    /// An administrator asked for the whole processing again.
    Reprocess,
    /// An administrator asked for a new virus scan.
    Rescan,
}

/// A processing job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// The file.
    pub content_id: Uuid,
    /// Why.
    pub reason: JobReason,
}

/// Queues a job in the caller's transaction (the relay publishes it after commit).
pub async fn enqueue(
    tx: &mut PgConnection,
    ctx: &RequestContext,
    content_id: Uuid,
    reason: JobReason,
) -> Result<(), sqlx::Error> {
    let job = Job { content_id, reason };
    OUTBOX
        .enqueue(
            tx,
            &OutboxMessage {
                id: Uuid::now_v7(),
                subject: CONTENT_PROCESS_SUBJECT.to_owned(),
                payload: json!(job),
                headers: context_headers(ctx),
            },
        )
        .await
}

/// The virus scanner used.
#[derive(Debug, Clone)]
pub enum Scanner {
    /// clamd.
    Clamd(Clamd),
    /// None: scans are recorded as `skipped`.
    Skipped,
}

/// Tuning of the processor.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// Silence after which JetStream redelivers a job (a live worker reports progress at
    /// a third of it).
    pub ack_wait: Duration,
    /// Attempts before a file is `failed`.
    pub max_attempts: u32,
    /// Jobs one replica works on at once.
    pub concurrency: usize,
    /// First retry delay (doubling per attempt, at most five minutes).
    pub first_retry: Duration,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(60),
            max_attempts: 5,
            concurrency: 2,
            first_retry: Duration::from_secs(2),
        }
    }
}

/// Takes jobs from JetStream and processes them.
#[derive(Debug, Clone)]
pub struct Processor {
    state: AppState,
    js: jetstream::Context,
    scanner: Scanner,
    config: ProcessorConfig,
}

/// What one attempt decided.
enum Outcome {
    /// Done: the file is `available` or `failed` now.
    Finished,
    /// Try again after this delay.
    Retry(Duration),
}

impl Processor {
    /// A processor over the service's state.
    pub fn new(
        state: AppState,
        nats: async_nats::Client,
        scanner: Scanner,
        config: ProcessorConfig,
    ) -> Self {
        Self {
            state,
            js: jetstream::new(nats),
            scanner,
            config,
        }
    }

    async fn consumer(&self) -> Result<PullConsumer, async_nats::Error> {
        ic_events::streams::ensure(&self.js).await?;
        let stream = self.js.get_stream(IC_EVENTS).await?;
        Ok(stream
            .get_or_create_consumer(
                PROCESSOR_CONSUMER,
                pull::Config {
                    durable_name: Some(PROCESSOR_CONSUMER.to_owned()),
                    filter_subject: CONTENT_PROCESS_SUBJECT.to_owned(),
                    ack_policy: AckPolicy::Explicit,
                    deliver_policy: DeliverPolicy::All,
                    ack_wait: self.config.ack_wait,
                    max_ack_pending: 1000,
                    ..Default::default()
                },
            )
            .await?)
    }

    /// Processes jobs until `token` is cancelled (jobs in progress finish first).
    pub async fn run(self, token: CancellationToken) {
        let mut backoff = Duration::from_millis(250);
        while !token.is_cancelled() {
            let messages = match self.consumer().await {
                Ok(consumer) => consumer
                    .stream()
                    .max_messages_per_batch(self.config.concurrency)
                    .heartbeat(Duration::from_secs(5))
                    .expires(Duration::from_secs(30))
                    .messages()
                    .await
                    .map_err(async_nats::Error::from),
                Err(err) => Err(err),
            };
            let messages = match messages {
                Ok(messages) => messages,
                Err(err) => {
                    tracing::warn!(error = %err, "processing consumer unavailable; retrying");
                    tokio::select! {
                        () = token.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            backoff = Duration::from_millis(250);
            messages
                .take_until(token.cancelled())
                .for_each_concurrent(self.config.concurrency, |message| async {
                    match message {
                        Ok(message) => self.handle(message).await,
                        Err(err) => tracing::debug!(error = %err, "processing stream interrupted"),
                    }
                })
                .await;
        }
    }

    async fn handle(&self, message: jetstream::Message) {
        let Ok(job) = serde_json::from_slice::<Job>(&message.payload) else {
            tracing::warn!("a processing job that does not parse; terminated");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        };
        let ctx = job_context(message.headers.as_ref());
        // Keeps the job ours while it runs (scans of big files take a while).
        let keep_alive = {
            let message = message.clone();
            let every = self.config.ack_wait / 3;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if message.ack_with(AckKind::Progress).await.is_err() {
                        return;
                    }
                }
            })
        };
        let outcome = ctx.clone().scope(self.process(&job, &ctx)).await;
        keep_alive.abort();
        match outcome {
            Ok(Outcome::Finished) => {
                if let Err(err) = message.double_ack().await {
                    tracing::warn!(error = %err, content_id = %job.content_id, "ack of a finished job failed; a redelivery finds it done");
                }
            }
            Ok(Outcome::Retry(delay)) => {
                let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, content_id = %job.content_id, "processing failed; retrying");
                let _ = message
                    .ack_with(AckKind::Nak(Some(self.config.first_retry)))
                    .await;
            }
        }
    }

    async fn process(&self, job: &Job, ctx: &RequestContext) -> Result<Outcome, sqlx::Error> {
        let pool = &self.state.pool;
        let Some(record) = db::content::get(pool, job.content_id).await? else {
            return Ok(Outcome::Finished);
        };
        if record.is_deleted || record.status() != UploadStatus::Processing {
            self.state.metrics.job("duplicate");
            return Ok(Outcome::Finished);
        }
        let attempts = db::content::count_attempt(pool, job.content_id).await?;
        let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
        let last_attempt = attempts >= self.config.max_attempts;
        if attempts > self.config.max_attempts {
            self.finish(
                &record,
                ctx,
                None,
                UploadStatus::Failed,
                Some(format!(
                    "gave up after {} attempts",
                    self.config.max_attempts
                )),
                json!({}),
            )
            .await?;
            return Ok(Outcome::Finished);
        }
        // The object must be there, whole.
        let verified = match self.state.store.head(&record.storage_path).await {
            Ok(meta) => i64::try_from(meta.size).ok() == Some(record.file_size),
            Err(crate::storage::StorageError::NotFound) => false,
            Err(err) => {
                tracing::warn!(error = %err, "blob store unavailable during processing");
                return self
                    .retry_or_fail(
                        &record,
                        ctx,
                        attempts,
                        last_attempt,
                        "the blob store is unavailable",
                    )
                    .await;
            }
        };
        if !verified {
            return self
                .retry_or_fail(
                    &record,
                    ctx,
                    attempts,
                    last_attempt,
                    "the stored object is missing or incomplete",
                )
                .await;
        }
        let started = std::time::Instant::now();
        let (scan_status, threats, engine, version, error) = match &self.scanner {
            Scanner::Skipped => (ScanStatus::Skipped, vec![], "none", None, None),
            Scanner::Clamd(clamd) => {
                let version = clamd.version().await.ok();
                let verdict = match self.state.store.read(&record.storage_path, None).await {
                    Ok(stream) => clamd.scan(stream).await,
                    Err(err) => Err(ScanError::Read(err.to_string())),
                };
                match verdict {
                    Ok(Verdict::Clean) => (ScanStatus::Clean, vec![], "clamav", version, None),
                    Ok(Verdict::Infected(threats)) => {
                        (ScanStatus::Infected, threats, "clamav", version, None)
                    }
                    Err(err) => (
                        ScanStatus::Error,
                        vec![],
                        "clamav",
                        version,
                        Some(err.to_string()),
                    ),
                }
            }
        };
        let scan = ScanRecord {
            scan_id: Uuid::now_v7(),
            content_id: record.content_id,
            scan_timestamp: Utc::now(),
            scanner_engine: engine.to_owned(),
            scanner_version: version,
            scan_status: scan_status.as_str().to_owned(),
            threats_detected: threats,
            scan_duration_ms: i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX),
            correlation_id: Some(ctx.correlation_id),
        };
        let mut details = json!({
            "virus_scan_status": scan_status.as_str(),
            "storage_verified": true,
            "metadata_extracted": false,
            "thumbnail_generated": false,
        });
        if matches!(scan_status, ScanStatus::Clean | ScanStatus::Skipped) {
            self.describe_image(&record, &mut details).await;
        }
        match scan_status {
            ScanStatus::Clean | ScanStatus::Skipped => {
                self.finish(
                    &record,
                    ctx,
                    Some(&scan),
                    UploadStatus::Available,
                    None,
                    details,
                )
                .await?;
                Ok(Outcome::Finished)
            }
            ScanStatus::Infected | ScanStatus::Suspicious => {
                let message = format!("virus detected: {}", scan.threats_detected.join(", "));
                self.finish(
                    &record,
                    ctx,
                    Some(&scan),
                    UploadStatus::Failed,
                    Some(message),
                    details,
                )
                .await?;
                Ok(Outcome::Finished)
            }
            ScanStatus::Error => {
                let reason = error.unwrap_or_else(|| "scan failed".into());
                let mut tx = self.state.pool.begin().await?;
                db::scans::insert(&mut tx, &scan).await?;
                tx.commit().await?;
                self.retry_or_fail(&record, ctx, attempts, last_attempt, &reason)
                    .await
            }
        }
    }

    /// For images: their dimensions, and the small WebP thumbnail made ahead of the
    /// first request. Neither is required: a file that cannot be read as an image is
    /// still served, without them.
    async fn describe_image(&self, record: &ContentRecord, details: &mut serde_json::Value) {
        if !has_preview(&record.mime_type) || record.file_size > MAX_THUMBNAIL_SOURCE_BYTES {
            return;
        }
        let Ok(source) = self.state.store.read_all(&record.storage_path).await else {
            return;
        };
        let made = tokio::task::spawn_blocking(move || {
            let size = dimensions(&source);
            let thumbnail = render(&source, PreviewSize::Small, PreviewFormat::Webp).ok();
            (size, thumbnail)
        })
        .await;
        let Ok((size, thumbnail)) = made else {
            return;
        };
        if let Some((width, height)) = size {
            details["metadata_extracted"] = json!(true);
            details["image"] = json!({ "width": width, "height": height });
        }
        if let Some(thumbnail) = thumbnail {
            let path = preview_path(
                &record.content_hash,
                PreviewSize::Small,
                PreviewFormat::Webp,
            );
            if self.state.store.put(&path, thumbnail.into()).await.is_ok() {
                details["thumbnail_generated"] = json!(true);
            }
        }
    }

    /// After a failed attempt: a delayed retry, or `failed` when it was the last.
    async fn retry_or_fail(
        &self,
        record: &ContentRecord,
        ctx: &RequestContext,
        attempts: u32,
        last_attempt: bool,
        reason: &str,
    ) -> Result<Outcome, sqlx::Error> {
        if last_attempt {
            self.finish(
                record,
                ctx,
                None,
                UploadStatus::Failed,
                Some(format!("{reason} (attempt {attempts}, giving up)")),
                json!({}),
            )
            .await?;
            return Ok(Outcome::Finished);
        }
        sqlx::query("UPDATE content.content SET processing_error = $2 WHERE content_id = $1")
            .bind(record.content_id)
            .bind(format!("{reason} (attempt {attempts}, will retry)"))
            .execute(&self.state.pool)
            .await?;
        self.state.metrics.job("retried");
        let delay = self.config.first_retry * 2u32.saturating_pow(attempts.saturating_sub(1));
        Ok(Outcome::Retry(delay.min(Duration::from_secs(300))))
    }

    /// Commits the outcome with its scan record, event and audit record.
    async fn finish(
        &self,
        record: &ContentRecord,
        ctx: &RequestContext,
        scan: Option<&ScanRecord>,
        status: UploadStatus,
        error: Option<String>,
        details: serde_json::Value,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.state.pool.begin().await?;
        let Some(before) = db::content::lock(&mut tx, record.content_id).await? else {
            return Ok(());
        };
        if before.status() != UploadStatus::Processing {
            return Ok(());
        }
        if let Some(scan) = scan {
            db::scans::insert(&mut tx, scan).await?;
        }
        db::content::set_outcome(
            &mut tx,
            record.content_id,
            status,
            error.as_deref(),
            &details,
        )
        .await?;
        let after = db::content::get(&mut *tx, record.content_id).await?;
        let action = if status == UploadStatus::Available {
            "available"
        } else {
            "failed"
        };
        self.state.metrics.job(action);
        self.state
            .recorder
            .record(
                &mut tx,
                ctx,
                Change {
                    entity_type: "content",
                    entity_id: record.content_id,
                    action,
                    operation: OperationType::Update,
                    before: serde_json::to_value(&before).ok(),
                    after: after.as_ref().and_then(|a| serde_json::to_value(a).ok()),
                },
            )
            .await?;
        tx.commit().await
    }
}

/// The context a job carries (correlation id and trace of the request that queued it),
/// acting as the processor.
fn job_context(headers: Option<&async_nats::HeaderMap>) -> RequestContext {
    let mut map = http::HeaderMap::new();
    if let Some(headers) = headers {
        for name in ic_events::CONTEXT_HEADERS {
            if let Some(value) = ic_events::header(headers, name)
                && let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(name.as_bytes()),
                    http::HeaderValue::from_str(value),
                )
            {
                map.insert(name, value);
            }
        }
    }
    map.insert(
        ic_http::headers::name::X_USER_ID,
        http::HeaderValue::from_static(PROCESSOR_USER),
    );
    RequestContext::from_headers(SERVICE_NAME, &map)
}
