//! Audit history of one entity, newest first, read back from the retained `IC_AUDIT`
//! stream (used when `LOKI_URL` is not configured).

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use ic_events::streams::IC_AUDIT;
use serde::Serialize;

use crate::{AuditRecord, audit_subject};

/// The most records one history read collects (older ones are dropped from the page).
pub const MAX_HISTORY: usize = 10_000;

/// Which records to return.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    /// Producing app id.
    pub app_id: &'static str,
    /// Entity type.
    pub entity_type: &'static str,
    /// Entity id.
    pub entity_id: String,
    /// Inclusive lower bound.
    pub start: Option<DateTime<Utc>>,
    /// Exclusive upper bound.
    pub end: Option<DateTime<Utc>>,
    /// Records to skip (newest first).
    pub offset: usize,
    /// Page size.
    pub limit: usize,
}

/// One page of history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryPage {
    /// Newest first.
    pub records: Vec<AuditRecord>,
    /// Records matching the query.
    pub total: usize,
}

/// Why history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuditHistoryError {
    /// The store could not be reached or answered with an error.
    #[error("audit store unavailable: {0}")]
    Unavailable(String),
    /// The store refused the query itself (e.g. a time range Loki will not serve).
    #[error("audit query refused: {0}")]
    Rejected(String),
}

fn unavailable(err: impl std::fmt::Display) -> AuditHistoryError {
    AuditHistoryError::Unavailable(err.to_string())
}

/// Reads the entity's records from `IC_AUDIT` with an ephemeral consumer filtered on
/// its subject.
pub async fn history_from_jetstream(
    js: &jetstream::Context,
    query: &HistoryQuery,
) -> Result<HistoryPage, AuditHistoryError> {
    let stream = js.get_stream(IC_AUDIT).await.map_err(unavailable)?;
    let deliver_policy = match query.start {
        Some(start_time) => DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(
                start_time.timestamp_nanos_opt().unwrap_or(0),
            ))
            .map_err(unavailable)?,
        },
        None => DeliverPolicy::All,
    };
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: audit_subject(query.app_id, query.entity_type, &query.entity_id),
            deliver_policy,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(unavailable)?;
    let mut consumer = consumer;
    let pending = usize::try_from(consumer.info().await.map_err(unavailable)?.num_pending)
        .unwrap_or(usize::MAX);
    let name = consumer.cached_info().name.clone();
    let mut records = Vec::with_capacity(pending.min(MAX_HISTORY));
    let mut seen = 0usize;
    while seen < pending {
        let mut batch = consumer
            .fetch()
            .max_messages((pending - seen).min(500))
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .map_err(unavailable)?;
        let mut got = 0;
        while let Some(message) = batch.next().await {
            let message = message.map_err(unavailable)?;
            got += 1;
            if let Ok(record) = serde_json::from_slice::<AuditRecord>(&message.payload) {
                records.push(record);
            }
        }
        if got == 0 {
            break;
        }
        seen += got;
        if records.len() > MAX_HISTORY {
            let excess = records.len() - MAX_HISTORY;
            records.drain(..excess);
        }
    }
    let _ = stream.delete_consumer(&name).await;
    records.retain(|r| query.end.is_none_or(|end| r.audit_timestamp < end));
    records.reverse();
    let total = records.len();
    let records = records
        .into_iter()
        .skip(query.offset)
        .take(query.limit)
        .collect();
    Ok(HistoryPage { records, total })
}

/// The query of an entity's audit endpoint (`…/{id}/audit?start&end&page&limit`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct AuditQuery {
    /// Inclusive lower bound (RFC 3339).
    pub start: Option<DateTime<Utc>>,
    /// Exclusive upper bound (RFC 3339).
    pub end: Option<DateTime<Utc>>,
    /// 1-based page.
    pub page: Option<u32>,
    /// Page size (1..100).
    pub limit: Option<u32>,
}

/// An entity's audit history as the audit endpoints answer it, newest first:
/// `{audit_records, pagination, source}`, read from Loki when `loki` is given, else from
/// the retained `IC_AUDIT` stream. Bad ranges and paging are 400s naming the field; a
/// store that cannot answer is 503.
pub async fn audit_endpoint(
    jetstream: &jetstream::Context,
    loki: Option<&crate::loki::LokiClient>,
    app_id: &'static str,
    entity_type: &'static str,
    id: uuid::Uuid,
    q: AuditQuery,
) -> Result<serde_json::Value, ic_http::ApiError> {
    use ic_http::{ApiError, paging::Page};
    let page = Page::new(q.page, q.limit, 100)?;
    let end = q.end.unwrap_or_else(Utc::now);
    if let Some(start) = q.start
        && start >= end
    {
        let field = if q.end.is_some() { "end" } else { "start" };
        return Err(ApiError::validation(
            field,
            "start must be before end (or now)",
        ));
    }
    if loki.is_some()
        && let Some(start) = q.start
        && end - start > crate::loki::MAX_LOKI_RANGE
    {
        return Err(ApiError::validation(
            "start",
            "audit history is read from Loki: ask for at most 30 days at a time",
        ));
    }
    let offset = usize::try_from(page.offset()).unwrap_or(usize::MAX);
    let query = HistoryQuery {
        app_id,
        entity_type,
        entity_id: id.to_string(),
        start: q.start,
        end: q.end,
        offset,
        limit: page.limit as usize,
    };
    let answer = match loki {
        Some(loki) => loki.history(&query).await.map(|h| (h, "loki")),
        None => history_from_jetstream(jetstream, &query)
            .await
            .map(|h| (h, "jetstream")),
    };
    let (history, source) = answer.map_err(|err| match err {
        AuditHistoryError::Rejected(reason) => ApiError::validation(
            "start",
            format!("the audit store refused this time range: {reason}"),
        ),
        other => ApiError::unavailable(other),
    })?;
    Ok(serde_json::json!({
        "audit_records": history.records,
        "pagination": page.pagination(i64::try_from(history.total).unwrap_or(i64::MAX)),
        "source": source,
    }))
}
