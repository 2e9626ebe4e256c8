//! The broadcaster's Prometheus metrics (`shared/spec/broadcaster.md`, "Metrics"), served
//! on `BROADCASTER_METRICS_PORT` (7777) at `/metrics`.

use std::sync::{
    Arc,
    atomic::{AtomicI64, AtomicU64},
};

use ic_telemetry::HttpMetrics;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    subscription: String,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionLabel {
    subscription: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    subscription: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabel {
    consumer: String,
}

/// What happened to one event taken from `IC_EVENTS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    /// Fanned out to every matching subscription (possibly none).
    FannedOut,
    /// Not a CloudEvent: terminated, never retried.
    Invalid,
    /// Publishing the tasks failed; the event will be redelivered.
    Retried,
}

/// Every broadcaster metric, in one registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// The HTTP metrics of the operating routes, in the same registry.
    pub http: HttpMetrics,
    processed: Family<ResultLabel, Counter>,
    requests: Family<RequestLabels, Counter>,
    nats_connected: Gauge,
    durations: Family<SubscriptionLabel, Histogram>,
    dead_letters: Family<SubscriptionLabel, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    lag: Histogram,
    pending: Family<ConsumerLabel, Gauge<i64, AtomicI64>>,
}

const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const LAG_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0, 3600.0,
    36_000.0, 259_200.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::with_registry(Registry::default())
    }
}

impl Metrics {
    /// Registers every broadcaster metric in `registry` (which may already hold a
    /// library's, such as the audit shipper's).
    pub fn with_registry(mut registry: Registry) -> Self {
        let processed = Family::<ResultLabel, Counter>::default();
        registry.register(
            "broadcaster_messages_processed",
            "Events taken from IC_EVENTS, by result",
            processed.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "broadcaster_webhook_requests",
            "Webhook calls, by subscription and status class (2xx, 4xx, 5xx, timeout, error)",
            requests.clone(),
        );
        let nats_connected = Gauge::default();
        registry.register(
            "broadcaster_nats_connected",
            "1 while connected to NATS",
            nats_connected.clone(),
        );
        let durations = Family::<SubscriptionLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(LATENCY_BUCKETS)) as fn() -> Histogram,
        );
        registry.register(
            "broadcaster_request_duration_seconds",
            "Webhook call latency, by subscription",
            durations.clone(),
        );
        let dead_letters = Family::<SubscriptionLabel, Counter>::default();
        registry.register(
            "broadcaster_dead_letters",
            "Deliveries moved to IC_DEAD_LETTERS, by subscription",
            dead_letters.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "broadcaster_deliveries",
            "Webhook calls by subscription and result (delivered: 2xx; failed: anything else, to be retried or dead-lettered)",
            deliveries.clone(),
        );
        let lag = Histogram::new(LAG_BUCKETS);
        registry.register(
            "broadcaster_delivery_lag_seconds",
            "Time from the event to its successful delivery",
            lag.clone(),
        );
        let pending = Family::<ConsumerLabel, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "broadcaster_consumer_pending",
            "Messages waiting in a JetStream consumer (broadcaster-workers, deliveries-<id>)",
            pending.clone(),
        );
        // Every known result at zero from the start ("avoid missing metrics"): a rate
        // over them works before the first event.
        for result in PROCESSED_RESULTS {
            let _ = processed.get_or_create(&ResultLabel { result });
        }
        Self {
            http: HttpMetrics::with_registry(registry),
            processed,
            requests,
            nats_connected,
            durations,
            dead_letters,
            deliveries,
            lag,
            pending,
        }
    }
}

/// The results of [`Metrics::processed`].
const PROCESSED_RESULTS: [&str; 3] = ["fanned_out", "invalid", "retried"];
/// The status classes of [`Metrics::request`].
pub const STATUS_CLASSES: [&str; 6] = ["2xx", "3xx", "4xx", "5xx", "timeout", "error"];

impl Metrics {
    /// One event processed.
    pub fn processed(&self, result: Processed) {
        let result = match result {
            Processed::FannedOut => "fanned_out",
            Processed::Invalid => "invalid",
            Processed::Retried => "retried",
        };
        self.processed.get_or_create(&ResultLabel { result }).inc();
    }

    /// One webhook call and its duration (status class: one of [`STATUS_CLASSES`]); a 2xx
    /// is a delivery, anything else a failed attempt.
    pub fn request(&self, subscription: &str, status_class: &'static str, seconds: f64) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                subscription: subscription.to_owned(),
                result: if status_class == "2xx" {
                    "delivered"
                } else {
                    "failed"
                },
            })
            .inc();
        self.requests
            .get_or_create(&RequestLabels {
                subscription: subscription.to_owned(),
                status_class,
            })
            .inc();
        self.durations
            .get_or_create(&SubscriptionLabel {
                subscription: subscription.to_owned(),
            })
            .observe(seconds);
    }

    /// Creates a configured subscription's series at zero (calls by status class and
    /// result, latency, dead letters), so dashboards and alerts see them before the first
    /// event.
    pub fn add_subscription(&self, subscription: &str) {
        let label = SubscriptionLabel {
            subscription: subscription.to_owned(),
        };
        let _ = self.dead_letters.get_or_create(&label);
        let _ = self.durations.get_or_create(&label);
        for status_class in STATUS_CLASSES {
            let _ = self.requests.get_or_create(&RequestLabels {
                subscription: subscription.to_owned(),
                status_class,
            });
        }
        for result in ["delivered", "failed"] {
            let _ = self.deliveries.get_or_create(&DeliveryLabels {
                subscription: subscription.to_owned(),
                result,
            });
        }
    }

    /// A delivery became a dead letter.
    pub fn dead_letter(&self, subscription: &str) {
        self.dead_letters
            .get_or_create(&SubscriptionLabel {
                subscription: subscription.to_owned(),
            })
            .inc();
    }

    /// A successful delivery `seconds` after its event.
    pub fn lag(&self, seconds: f64) {
        self.lag.observe(seconds.max(0.0));
    }

    /// Whether NATS is connected.
    pub fn set_nats_connected(&self, connected: bool) {
        self.nats_connected.set(i64::from(connected));
    }

    /// A consumer's pending count.
    pub fn set_pending(&self, consumer: &str, pending: u64) {
        self.pending
            .get_or_create(&ConsumerLabel {
                consumer: consumer.to_owned(),
            })
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        self.http.render()
    }
}

/// Per-subscription counters shown by `GET /subscriptions`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Successful deliveries.
    pub delivered: AtomicU64,
    /// Failed attempts.
    pub failed: AtomicU64,
    /// Dead letters.
    pub dead_lettered: AtomicU64,
}

/// Shared handle.
pub type SharedCounters = Arc<Counters>;
