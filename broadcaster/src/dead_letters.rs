//! Dead letters: tasks that used up their attempts (or met a 410) move to stream
//! `IC_DEAD_LETTERS` (subject `dead.<subscription id>`). The message body is the event
//! exactly as it was to be delivered; what happened is in its headers. Replay publishes
//! the body as a fresh task (a full set of attempts, the same `webhook-id`) and removes
//! the dead letter.

use std::time::Duration;

use async_nats::{
    HeaderMap,
    jetstream::{
        self, AckKind,
        consumer::{AckPolicy, DeliverPolicy, pull},
    },
};
use chrono::{SecondsFormat, Utc};
use futures::StreamExt;
use ic_events::{
    NATS_MSG_ID,
    streams::{IC_DEAD_LETTERS, IC_DELIVERIES},
};
use serde::Serialize;
use serde_json::Value;

use crate::{metrics::Metrics, subscription_state::Endpoint, tasks::task_subject};

/// Header: the subscription.
pub const H_SUBSCRIPTION: &str = "Ic-Subscription-Id";
/// Header: the `webhook-id` (the event id).
pub const H_WEBHOOK_ID: &str = "Ic-Webhook-Id";
/// Header: attempts made.
pub const H_ATTEMPTS: &str = "Ic-Attempts";
/// Header: the last HTTP status, if any.
pub const H_LAST_STATUS: &str = "Ic-Last-Status";
/// Header: the last error.
pub const H_LAST_ERROR: &str = "Ic-Last-Error";
/// Header: when it died.
pub const H_DEAD_AT: &str = "Ic-Dead-At";

/// Most dead letters listed or replayed by one request.
pub const MAX_LIST: usize = 1000;

/// The subject of one subscription's dead letters.
pub fn dead_subject(subscription_id: &str) -> String {
    format!("dead.{subscription_id}")
}

/// What to record about a task that died.
#[derive(Debug, Clone, Copy)]
pub struct Burial<'a> {
    /// The event id.
    pub webhook_id: &'a str,
    /// Attempts made.
    pub attempts: u64,
    /// The last HTTP status.
    pub last_status: Option<u16>,
    /// The last error.
    pub last_error: &'a str,
    /// The task's sequence in `IC_DELIVERIES` (makes the dead letter's id unique).
    pub task_sequence: u64,
}

impl<'a> Burial<'a> {
    /// A burial with no status and no error yet.
    pub fn new(webhook_id: &'a str, attempts: u64, task_sequence: u64) -> Self {
        Self {
            webhook_id,
            attempts,
            last_status: None,
            last_error: "",
            task_sequence,
        }
    }
}

/// Moves a task to the dead letters, then acknowledges it (so it is never lost: if the
/// dead letter cannot be stored, the task comes back later).
pub async fn bury(
    js: &jetstream::Context,
    metrics: &Metrics,
    endpoint: &Endpoint,
    message: &jetstream::Message,
    burial: Burial<'_>,
) {
    let id = endpoint.id();
    let mut headers = HeaderMap::new();
    ic_events::copy_context_headers(message.headers.as_ref(), &mut headers);
    headers.insert(
        NATS_MSG_ID,
        format!("{}:{id}:dead:{}", burial.webhook_id, burial.task_sequence).as_str(),
    );
    headers.insert(H_SUBSCRIPTION, id);
    headers.insert(H_WEBHOOK_ID, burial.webhook_id);
    headers.insert(H_ATTEMPTS, burial.attempts.to_string().as_str());
    if let Some(status) = burial.last_status {
        headers.insert(H_LAST_STATUS, status.to_string().as_str());
    }
    let error: String = burial
        .last_error
        .chars()
        .filter(|c| !c.is_control())
        .take(500)
        .collect();
    headers.insert(H_LAST_ERROR, error.as_str());
    headers.insert(
        H_DEAD_AT,
        Utc::now()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
            .as_str(),
    );
    let stored = match js
        .publish_with_headers(dead_subject(id), headers, message.payload.clone())
        .await
    {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    if stored {
        endpoint.count_dead_letter();
        metrics.dead_letter(id);
        let _ = message.ack().await;
    } else {
        tracing::warn!(
            subscription = id,
            "could not store a dead letter; the task will come back"
        );
        let _ = message
            .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
            .await;
    }
}

/// One dead letter as listed by `GET /dead-letters`.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Its sequence in `IC_DEAD_LETTERS` (the id used to replay it).
    pub sequence: u64,
    /// The subscription.
    pub subscription_id: String,
    /// The `webhook-id` (event id).
    pub webhook_id: String,
    /// Attempts made.
    pub attempts: u64,
    /// The last HTTP status, if the endpoint answered.
    pub last_status: Option<u16>,
    /// The last error.
    pub last_error: String,
    /// When it died.
    pub dead_at: String,
    /// The event.
    pub event: Value,
}

fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers
        .and_then(|h| h.get(name))
        .map(async_nats::HeaderValue::as_str)
}

fn describe(sequence: u64, headers: Option<&HeaderMap>, payload: &[u8]) -> DeadLetter {
    DeadLetter {
        sequence,
        subscription_id: header(headers, H_SUBSCRIPTION)
            .unwrap_or_default()
            .to_owned(),
        webhook_id: header(headers, H_WEBHOOK_ID).unwrap_or_default().to_owned(),
        attempts: header(headers, H_ATTEMPTS)
            .and_then(|v| v.parse().ok())
            .unwrap_or_default(),
        last_status: header(headers, H_LAST_STATUS).and_then(|v| v.parse().ok()),
        last_error: header(headers, H_LAST_ERROR).unwrap_or_default().to_owned(),
        dead_at: header(headers, H_DEAD_AT).unwrap_or_default().to_owned(),
        event: serde_json::from_slice(payload).unwrap_or(Value::Null),
    }
}

/// Dead letters, oldest first, of one subscription or all; at most `limit`.
pub async fn list(
    js: &jetstream::Context,
    subscription_id: Option<&str>,
    limit: usize,
) -> Result<Vec<DeadLetter>, async_nats::Error> {
    let stream = js.get_stream(IC_DEAD_LETTERS).await?;
    let mut consumer = stream
        .create_consumer(pull::Config {
            filter_subject: subscription_id.map_or_else(|| "dead.>".to_owned(), dead_subject),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await?;
    let pending = usize::try_from(consumer.info().await?.num_pending).unwrap_or(usize::MAX);
    let wanted = pending.min(limit);
    let mut letters = Vec::with_capacity(wanted);
    if wanted > 0 {
        let mut messages = consumer
            .batch()
            .max_messages(wanted)
            .expires(Duration::from_secs(5))
            .messages()
            .await?;
        while letters.len() < wanted {
            let Some(message) = messages.next().await else {
                break;
            };
            let message = message?;
            let sequence = message
                .info()
                .map(|i| i.stream_sequence)
                .unwrap_or_default();
            letters.push(describe(
                sequence,
                message.headers.as_ref(),
                &message.payload,
            ));
        }
    }
    let name = consumer.cached_info().name.clone();
    let _ = stream.delete_consumer(&name).await;
    Ok(letters)
}

/// Why a replay did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// No dead letter has this sequence.
    #[error("no dead letter has sequence {0}")]
    NotFound(u64),
    /// Its subscription is not configured any more.
    #[error("subscription {0:?} is not configured")]
    UnknownSubscription(String),
    /// NATS failed.
    #[error(transparent)]
    Nats(#[from] async_nats::Error),
}

/// Replays one dead letter: a fresh task for its subscription (the same body and
/// `webhook-id`), then the dead letter is removed.
pub async fn replay(
    js: &jetstream::Context,
    sequence: u64,
    configured: impl Fn(&str) -> bool,
) -> Result<DeadLetter, ReplayError> {
    let nats = |e: Box<dyn std::error::Error + Send + Sync>| ReplayError::Nats(e);
    let stream = js
        .get_stream(IC_DEAD_LETTERS)
        .await
        .map_err(|e| nats(e.into()))?;
    let message = stream.get_raw_message(sequence).await.map_err(|e| {
        if e.kind() == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound {
            ReplayError::NotFound(sequence)
        } else {
            nats(e.into())
        }
    })?;
    let letter = describe(sequence, Some(&message.headers), &message.payload);
    if !configured(&letter.subscription_id) {
        return Err(ReplayError::UnknownSubscription(letter.subscription_id));
    }
    let mut headers = HeaderMap::new();
    ic_events::copy_context_headers(Some(&message.headers), &mut headers);
    headers.insert(
        NATS_MSG_ID,
        format!(
            "{}:{}:replay:{sequence}",
            letter.webhook_id, letter.subscription_id
        )
        .as_str(),
    );
    js.get_stream(IC_DELIVERIES)
        .await
        .map_err(|e| nats(e.into()))?;
    js.publish_with_headers(
        task_subject(&letter.subscription_id),
        headers,
        message.payload.clone(),
    )
    .await
    .map_err(|e| nats(e.into()))?
    .await
    .map_err(|e| nats(e.into()))?;
    stream
        .delete_message(sequence)
        .await
        .map_err(|e| nats(e.into()))?;
    Ok(letter)
}
