//! Fan-out: the shared durable consumer `broadcaster-workers` on `IC_EVENTS` (every
//! replica binds it, so each event is taken by one replica) turns each event into one
//! task per matching, active subscription in `IC_DELIVERIES`, and acknowledges the event
//! only once every task is stored (`shared/spec/broadcaster.md`, "Consuming").

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::{
    HeaderMap,
    jetstream::{
        self, AckKind,
        consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    },
};
use futures::{StreamExt, future::join_all};
use ic_events::{NATS_MSG_ID, streams::IC_EVENTS};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::{
    metrics::{Metrics, Processed},
    subscription_state::Endpoints,
    tasks::{task_id, task_subject},
};

/// The durable consumer all replicas share.
pub const WORKERS_CONSUMER: &str = "broadcaster-workers";
/// Events fanned out at once by one replica.
const CONCURRENCY: usize = 256;

/// The fields of an event the fan-out needs.
#[derive(Debug, Deserialize)]
struct EventHead {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
}

/// An event id usable as `webhook-id` and in a `Nats-Msg-Id`: 1..=200 printable ASCII
/// characters (an id with control characters could never be sent as a header).
fn valid_id(id: &str) -> bool {
    (1..=200).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The fan-out worker.
#[derive(Debug, Clone)]
pub struct Fanout {
    /// JetStream.
    pub js: jetstream::Context,
    /// The subscriptions.
    pub endpoints: Endpoints,
    /// Metrics.
    pub metrics: Metrics,
    /// `BROADCASTER_SUBJECTS`.
    pub subjects: String,
    /// Whether the consumer is bound and pulling (readiness).
    pub bound: Arc<AtomicBool>,
}

impl Fanout {
    async fn consumer(&self) -> Result<PullConsumer, async_nats::Error> {
        // Idempotent: whoever starts first creates the streams.
        let mut streams = ic_events::streams::all();
        streams.extend(ic_events::streams::broadcaster());
        ic_events::streams::ensure_all(&self.js, streams).await?;
        let stream = self.js.get_stream(IC_EVENTS).await?;
        Ok(stream
            .get_or_create_consumer(
                WORKERS_CONSUMER,
                pull::Config {
                    durable_name: Some(WORKERS_CONSUMER.to_owned()),
                    filter_subject: self.subjects.clone(),
                    ack_policy: AckPolicy::Explicit,
                    deliver_policy: DeliverPolicy::All,
                    // Fanning out one event takes milliseconds; after a crash, the
                    // events a replica had taken come back this soon.
                    ack_wait: Duration::from_secs(10),
                    max_ack_pending: 10_000,
                    ..Default::default()
                },
            )
            .await?)
    }

    /// Fans out until `token` is cancelled (events being fanned out finish first).
    pub async fn run(self, token: CancellationToken) {
        let mut backoff = Duration::from_millis(250);
        while !token.is_cancelled() {
            let messages: Result<_, async_nats::Error> = match self.consumer().await {
                Ok(consumer) => consumer
                    .stream()
                    .max_messages_per_batch(CONCURRENCY * 2)
                    .heartbeat(Duration::from_secs(5))
                    .expires(Duration::from_secs(30))
                    .messages()
                    .await
                    .map_err(Into::into),
                Err(err) => Err(err),
            };
            let messages = match messages {
                Ok(messages) => messages,
                Err(err) => {
                    self.bound.store(false, Ordering::Relaxed);
                    tracing::warn!(error = %err, "cannot bind {WORKERS_CONSUMER}; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = token.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            self.bound.store(true, Ordering::Relaxed);
            backoff = Duration::from_millis(250);
            let ended = messages
                .take_until(token.cancelled())
                .take_while(|next| {
                    let ok = next.is_ok();
                    if let Err(err) = next {
                        tracing::warn!(error = %err, "the event stream broke; rebinding");
                    }
                    std::future::ready(ok)
                })
                .filter_map(|next| std::future::ready(next.ok()))
                .for_each_concurrent(CONCURRENCY, |message| self.fan_out(message));
            ended.await;
            self.bound.store(false, Ordering::Relaxed);
        }
    }

    async fn fan_out(&self, message: jetstream::Message) {
        if !ic_events::streams::is_event_subject(&message.subject) {
            // A work item sharing the stream (content-api's processing jobs).
            let _ = message.ack().await;
            return;
        }
        let head = serde_json::from_slice::<EventHead>(&message.payload)
            .ok()
            .filter(|head| valid_id(&head.id));
        let Some(head) = head else {
            tracing::warn!(subject = %message.subject, "not a CloudEvent; terminated");
            self.metrics.processed(Processed::Invalid);
            let _ = message.ack_with(AckKind::Term).await;
            return;
        };
        let publishes = self
            .endpoints
            .iter()
            .filter(|endpoint| endpoint.wants(&head.event_type))
            .map(|endpoint| {
                let id = endpoint.id();
                let mut headers = HeaderMap::new();
                headers.insert(NATS_MSG_ID, task_id(&head.id, id).as_str());
                ic_events::copy_context_headers(message.headers.as_ref(), &mut headers);
                let subject = task_subject(id);
                let payload = message.payload.clone();
                async move {
                    self.js
                        .publish_with_headers(subject, headers, payload)
                        .await?
                        .await
                        .map_err(async_nats::Error::from)
                }
            });
        let results = join_all(publishes).await;
        if results.iter().all(Result::is_ok) {
            self.metrics.processed(Processed::FannedOut);
            if let Err(err) = message.ack().await {
                tracing::warn!(error = %err, "ack of a fanned-out event failed; its tasks are de-duplicated if it comes back");
            }
        } else {
            self.metrics.processed(Processed::Retried);
            tracing::warn!(event_id = %head.id, "storing delivery tasks failed; the event will be fanned out again");
            let _ = message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
        }
    }
}
