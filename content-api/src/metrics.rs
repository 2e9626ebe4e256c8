//! content-api's own Prometheus metrics, in the same registry as the HTTP metrics.

use std::sync::atomic::AtomicI64;

use ic_telemetry::HttpMetrics;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The service's metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// HTTP server metrics (and the registry rendered at `/metrics`).
    pub http: HttpMetrics,
    uploads: Family<ResultLabel, Counter>,
    uploaded_bytes: Counter,
    jobs: Family<ResultLabel, Counter>,
    access_log: Family<ResultLabel, Counter>,
    access_log_queue: Gauge<i64, AtomicI64>,
    previews: Family<ResultLabel, Counter>,
}

/// Upload outcomes.
pub const UPLOAD_RESULTS: [&str; 5] = [
    "accepted",
    "deduplicated",
    "too_large",
    "unsupported_type",
    "invalid",
];
/// Processing job outcomes.
pub const JOB_RESULTS: [&str; 4] = ["available", "failed", "retried", "duplicate"];
/// Preview answers: made now, or read from the store.
pub const PREVIEW_RESULTS: [&str; 2] = ["generated", "cached"];
/// Access-log entry outcomes.
pub const ACCESS_LOG_RESULTS: [&str; 3] = ["written", "dropped", "failed"];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric, each known label at zero.
    pub fn new() -> Self {
        Self::with_registry(Registry::default())
    }

    /// [`Metrics::new`] in `registry` (which may already hold the libraries' metrics:
    /// the outbox relay's, the audit shipper's).
    pub fn with_registry(mut registry: Registry) -> Self {
        let uploads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "content_uploads",
            "Uploads by result (accepted, deduplicated, too_large, unsupported_type, invalid)",
            uploads.clone(),
        );
        let uploaded_bytes = Counter::default();
        registry.register(
            "content_uploaded_bytes",
            "Bytes of accepted uploads",
            uploaded_bytes.clone(),
        );
        let jobs = Family::<ResultLabel, Counter>::default();
        registry.register(
            "content_processing_jobs",
            "Processing attempts by outcome (available, failed, retried, duplicate)",
            jobs.clone(),
        );
        let access_log = Family::<ResultLabel, Counter>::default();
        registry.register(
            "content_access_log_entries",
            "Access-log entries by result (written; dropped: the buffer was full; failed: the insert failed)",
            access_log.clone(),
        );
        let access_log_queue = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "content_access_log_queue_depth",
            "Access-log entries waiting to be written",
            access_log_queue.clone(),
        );
        let previews = Family::<ResultLabel, Counter>::default();
        registry.register(
            "content_previews",
            "Previews served, by how (generated now, or cached in the store)",
            previews.clone(),
        );
        for (family, results) in [
            (&previews, &PREVIEW_RESULTS[..]),
            (&uploads, &UPLOAD_RESULTS[..]),
            (&jobs, &JOB_RESULTS[..]),
            (&access_log, &ACCESS_LOG_RESULTS[..]),
        ] {
            for result in results {
                let _ = family.get_or_create(&ResultLabel { result });
            }
        }
        Self {
            http: HttpMetrics::with_registry(registry),
            uploads,
            uploaded_bytes,
            jobs,
            access_log,
            access_log_queue,
            previews,
        }
    }

    /// Counts an upload's outcome (`bytes` when accepted).
    pub fn upload(&self, result: &'static str, bytes: u64) {
        self.uploads.get_or_create(&ResultLabel { result }).inc();
        if bytes > 0 {
            self.uploaded_bytes.inc_by(bytes);
        }
    }

    /// Counts a processing attempt's outcome.
    pub fn job(&self, result: &'static str) {
        self.jobs.get_or_create(&ResultLabel { result }).inc();
    }

    /// Counts a preview served.
    pub fn preview(&self, result: &'static str) {
        self.previews.get_or_create(&ResultLabel { result }).inc();
    }

    /// Counts access-log entries.
    pub fn access_log(&self, result: &'static str, entries: u64) {
        self.access_log
            .get_or_create(&ResultLabel { result })
            .inc_by(entries);
    }

    /// The access log's waiting entries.
    pub fn access_log_queue(&self, depth: usize) {
        self.access_log_queue
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
}
