//! Pulling a subscription's tasks on credit: one long-lived inbox subscription, and a pull
//! request for exactly as many tasks as there are free concurrency permits, each request
//! holding its permits until its tasks arrive or it expires. No task ever waits in a
//! buffer without a permit (its ack-wait clock would run while nobody works on it), and,
//! unlike one-shot batch fetches, no subscription is created per pull and a new pull
//! never waits for the previous one to fill.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use async_nats::{
    Client, StatusCode, Subscriber,
    jetstream::{self, AckKind},
};
use futures::{FutureExt, StreamExt};
use serde::Serialize;
use tokio::sync::OwnedSemaphorePermit;

/// How long one pull request waits on the server for tasks.
pub const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// Time past a request's expiry after which, unanswered, it is presumed lost (a reconnect
/// drops requests without any answer) and the permits it holds are freed.
const LOST_MARGIN: Duration = Duration::from_secs(3);

/// What one pull brings (returned and matched at once, so not boxed).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Pulled {
    /// A task, with the permit it was pulled under (`None`: it arrived after its request
    /// was given up; the caller must acquire a permit before working on it).
    Task(jetstream::Message, Option<OwnedSemaphorePermit>),
    /// The consumer is gone or refuses pulls: rebind.
    Broken(String),
    /// Nothing arrived for a while; the permits of the requests in flight are freed.
    Idle,
}

#[derive(Serialize)]
struct PullRequest {
    batch: usize,
    /// Nanoseconds.
    expires: u128,
}

/// One pull request in flight.
#[derive(Debug)]
struct Request {
    id: u64,
    /// Permits of its tasks not arrived yet.
    permits: Vec<OwnedSemaphorePermit>,
    /// When it is given up for lost if the server never answered it.
    lost_at: Instant,
}

/// The puller of one durable pull consumer.
#[derive(Debug)]
pub struct Puller {
    client: Client,
    js: jetstream::Context,
    next_subject: String,
    inbox: String,
    subscriber: Subscriber,
    /// Requests in flight, oldest first (the server fills them in that order).
    requests: VecDeque<Request>,
    next_id: u64,
    /// How long each request waits on the server.
    expires: Duration,
}

impl Puller {
    /// Subscribes the inbox of `consumer` on `stream` (each request answers on its own
    /// subject below it, so an expiry settles exactly its request).
    pub async fn new(
        js: &jetstream::Context,
        stream: &str,
        consumer: &str,
    ) -> Result<Self, async_nats::Error> {
        let client = js.client();
        let inbox = client.new_inbox();
        let subscriber = client.subscribe(format!("{inbox}.*")).await?;
        Ok(Self {
            client,
            js: js.clone(),
            next_subject: format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            inbox,
            subscriber,
            requests: VecDeque::new(),
            next_id: 0,
            expires: PULL_EXPIRES,
        })
    }

    /// Requests wait on the server this long (default [`PULL_EXPIRES`]).
    #[must_use]
    pub fn with_expiry(mut self, expires: Duration) -> Self {
        self.expires = expires;
        self
    }

    /// Tasks requested and not arrived yet.
    pub fn outstanding(&self) -> usize {
        self.requests.iter().map(|r| r.permits.len()).sum()
    }

    /// Asks for one task per permit.
    pub async fn request(
        &mut self,
        permits: Vec<OwnedSemaphorePermit>,
    ) -> Result<(), async_nats::Error> {
        if permits.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_vec(&PullRequest {
            batch: permits.len(),
            expires: self.expires.as_nanos(),
        })?;
        let id = self.next_id;
        self.next_id += 1;
        self.client
            .publish_with_reply(
                self.next_subject.clone(),
                format!("{}.{id}", self.inbox),
                body.into(),
            )
            .await?;
        self.requests.push_back(Request {
            id,
            permits,
            lost_at: Instant::now() + self.expires + LOST_MARGIN,
        });
        Ok(())
    }

    /// Ends request `id` (its unused permits are freed).
    fn settle(&mut self, id: Option<u64>) {
        if let Some(id) = id {
            self.requests.retain(|r| r.id != id);
        }
    }

    /// The next task, or why there is none (cancel-safe).
    pub async fn next(&mut self) -> Pulled {
        loop {
            let message = match self.requests.iter().map(|r| r.lost_at).min() {
                None => self.subscriber.next().await,
                Some(lost_at) => {
                    let lost_at = tokio::time::Instant::from_std(lost_at);
                    match tokio::time::timeout_at(lost_at, self.subscriber.next()).await {
                        Ok(message) => message,
                        Err(_) => {
                            // Never answered (a reconnect drops requests silently).
                            let now = Instant::now();
                            self.requests.retain(|r| r.lost_at > now);
                            return Pulled::Idle;
                        }
                    }
                }
            };
            let Some(message) = message else {
                return Pulled::Broken("the inbox subscription ended".into());
            };
            let id = message
                .subject
                .rsplit('.')
                .next()
                .and_then(|id| id.parse::<u64>().ok());
            match message.status {
                None | Some(StatusCode::OK) => {
                    // Tasks carry their stream subject, not the request's: they fill the
                    // oldest request first.
                    let permit = self.requests.front_mut().and_then(|r| r.permits.pop());
                    if self.requests.front().is_some_and(|r| r.permits.is_empty()) {
                        self.requests.pop_front();
                    }
                    return Pulled::Task(
                        jetstream::Message {
                            message,
                            context: self.js.clone(),
                        },
                        permit,
                    );
                }
                Some(StatusCode::IDLE_HEARTBEAT) => {}
                Some(
                    StatusCode::TIMEOUT | StatusCode::REQUEST_TERMINATED | StatusCode::NOT_FOUND,
                ) => {
                    let description = message.description.as_deref().unwrap_or_default();
                    if description.contains("Consumer Deleted")
                        || description.contains("Consumer is push based")
                        || description.contains("Exceeded MaxRequest")
                        || description.contains("Exceeded MaxWaiting")
                    {
                        self.requests.clear();
                        return Pulled::Broken(description.to_owned());
                    }
                    // Expired or cut short: the request is over, and the permits of the
                    // tasks it did not bring are free.
                    self.settle(id);
                }
                Some(status) => {
                    self.requests.clear();
                    return Pulled::Broken(format!(
                        "pull answered {status}: {}",
                        message.description.unwrap_or_default()
                    ));
                }
            }
        }
    }

    /// Stops pulling: the inbox is closed, and tasks that arrived but were not taken go
    /// back to the consumer at once (rather than after their ack wait).
    pub async fn close(mut self) {
        let _ = self.subscriber.unsubscribe().await;
        self.requests.clear();
        while let Some(Some(message)) = self.subscriber.next().now_or_never() {
            if message.status.is_none() {
                let task = jetstream::Message {
                    message,
                    context: self.js.clone(),
                };
                let _ = task.ack_with(AckKind::Nak(None)).await;
            }
        }
    }
}
