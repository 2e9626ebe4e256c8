//! The JetStream streams of the platform, created idempotently by every producer.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// Domain events, subjects `ic.>`.
pub const IC_EVENTS: &str = "IC_EVENTS";
/// Audit records, subjects `audit.>`.
pub const IC_AUDIT: &str = "IC_AUDIT";
/// Audit records Loki refused for good, subjects `dlq.audit.>`.
pub const IC_AUDIT_DLQ: &str = "IC_AUDIT_DLQ";

/// The broadcaster's delivery tasks, subjects `deliveries.<subscription id>`.
pub const IC_DELIVERIES: &str = "IC_DELIVERIES";
/// Deliveries that exhausted their retries, subjects `dead.<subscription id>`.
pub const IC_DEAD_LETTERS: &str = "IC_DEAD_LETTERS";
/// Subjects of [`IC_DELIVERIES`].
pub const DELIVERIES_SUBJECTS: &str = "deliveries.>";
/// Subjects of [`IC_DEAD_LETTERS`].
pub const DEAD_LETTERS_SUBJECTS: &str = "dead.>";

/// Subjects of [`IC_EVENTS`].
pub const EVENTS_SUBJECTS: &str = "ic.>";

/// content-api's processing jobs (`shared/spec/content-api.md`, "Upload pipeline"): a
/// work subject inside [`IC_EVENTS`], consumed by one durable consumer shared by every
/// content-api replica. Not an event: consumers of events skip it.
pub const CONTENT_PROCESS_SUBJECT: &str = "ic.content.process";

/// Whether a subject of [`IC_EVENTS`] is a domain event (`ic.<domain>.<entity>.<action>`)
/// rather than a work item such as [`CONTENT_PROCESS_SUBJECT`].
pub fn is_event_subject(subject: &str) -> bool {
    subject.starts_with("ic.") && subject.split('.').count() == 4
}
/// Subjects of [`IC_AUDIT`].
pub const AUDIT_SUBJECTS: &str = "audit.>";
/// Subjects of [`IC_AUDIT_DLQ`].
pub const AUDIT_DLQ_SUBJECTS: &str = "dlq.audit.>";

/// How long JetStream remembers message ids for de-duplication.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

fn config(name: &str, subject: &str, max_age: Duration) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![subject.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// The stream configurations: events kept 7 days, audit records 400 days (the retained
/// history the audit endpoints read when Loki is not configured), dead letters 30 days.
pub fn all() -> Vec<stream::Config> {
    vec![
        config(
            IC_EVENTS,
            EVENTS_SUBJECTS,
            Duration::from_secs(7 * 24 * 3600),
        ),
        config(
            IC_AUDIT,
            AUDIT_SUBJECTS,
            Duration::from_secs(400 * 24 * 3600),
        ),
        config(
            IC_AUDIT_DLQ,
            AUDIT_DLQ_SUBJECTS,
            Duration::from_secs(30 * 24 * 3600),
        ),
    ]
}

/// The broadcaster's own streams: delivery tasks kept until acknowledged (work queue,
/// up to the three days of the retry schedule and a margin: 7 days), dead letters 30 days.
pub fn broadcaster() -> Vec<stream::Config> {
    vec![
        stream::Config {
            retention: stream::RetentionPolicy::WorkQueue,
            ..config(
                IC_DELIVERIES,
                DELIVERIES_SUBJECTS,
                Duration::from_secs(7 * 24 * 3600),
            )
        },
        config(
            IC_DEAD_LETTERS,
            DEAD_LETTERS_SUBJECTS,
            Duration::from_secs(30 * 24 * 3600),
        ),
    ]
}

/// Creates every stream that does not exist yet (existing ones are left as they are).
pub async fn ensure(js: &jetstream::Context) -> Result<(), async_nats::Error> {
    ensure_all(js, all()).await
}

/// Creates each of `configs` that does not exist yet.
pub async fn ensure_all(
    js: &jetstream::Context,
    configs: Vec<stream::Config>,
) -> Result<(), async_nats::Error> {
    for cfg in configs {
        js.get_or_create_stream(cfg).await?;
    }
    Ok(())
}
