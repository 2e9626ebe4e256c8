//! Pulling a subscription's tasks on credit: one long-lived inbox subscription, and a pull
//! request for exactly as many tasks as there are free concurrency permits, each request
//! holding its permits until its tasks arrive or it expires. No task ever waits in a
//! buffer without a permit (its ack-wait clock would run while nobody works on it), and,
//! unlike one-shot batch fetches, no subscription is created per pull and a new pull
//! never waits for the previous one to fill.

use std::time::{Duration, Instant};

use async_nats::{Client, StatusCode, Subscriber, jetstream};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::OwnedSemaphorePermit;

/// How long one pull request waits on the server for tasks.
pub const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// Silence past a request's expiry after which requests are presumed lost (a reconnect
/// drops them without any answer) and the permits they hold are freed.
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

/// The puller of one durable pull consumer.
#[derive(Debug)]
pub struct Puller {
    client: Client,
    js: jetstream::Context,
    next_subject: String,
    inbox: String,
    subscriber: Subscriber,
    /// Permits of requested tasks not arrived yet.
    held: Vec<OwnedSemaphorePermit>,
    /// How long each request waits on the server.
    expires: Duration,
    /// When the server was last heard from, or last asked.
    last_heard: Instant,
}

impl Puller {
    /// Subscribes the inbox of `consumer` on `stream`.
    pub async fn new(
        js: &jetstream::Context,
        stream: &str,
        consumer: &str,
    ) -> Result<Self, async_nats::Error> {
        let client = js.client();
        let inbox = client.new_inbox();
        let subscriber = client.subscribe(inbox.clone()).await?;
        Ok(Self {
            client,
            js: js.clone(),
            next_subject: format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            inbox,
            subscriber,
            held: Vec::new(),
            expires: PULL_EXPIRES,
            last_heard: Instant::now(),
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
        self.held.len()
    }

    /// Asks for one task per permit.
    pub async fn request(
        &mut self,
        permits: Vec<OwnedSemaphorePermit>,
    ) -> Result<(), async_nats::Error> {
        let body = serde_json::to_vec(&PullRequest {
            batch: permits.len(),
            expires: self.expires.as_nanos(),
        })?;
        self.client
            .publish_with_reply(self.next_subject.clone(), self.inbox.clone(), body.into())
            .await?;
        self.held.extend(permits);
        self.last_heard = Instant::now();
        Ok(())
    }

    /// The next task, or why there is none (cancel-safe).
    pub async fn next(&mut self) -> Pulled {
        loop {
            let message = if self.held.is_empty() {
                self.subscriber.next().await
            } else {
                let lost_at =
                    tokio::time::Instant::from_std(self.last_heard + self.expires + LOST_MARGIN);
                match tokio::time::timeout_at(lost_at, self.subscriber.next()).await {
                    Ok(message) => message,
                    Err(_) => {
                        self.held.clear();
                        return Pulled::Idle;
                    }
                }
            };
            let Some(message) = message else {
                return Pulled::Broken("the inbox subscription ended".into());
            };
            self.last_heard = Instant::now();
            match message.status {
                None | Some(StatusCode::OK) => {
                    let permit = self.held.pop();
                    return Pulled::Task(
                        jetstream::Message {
                            message,
                            context: self.js.clone(),
                        },
                        permit,
                    );
                }
                Some(StatusCode::IDLE_HEARTBEAT) => {}
                Some(StatusCode::TIMEOUT | StatusCode::REQUEST_TERMINATED) => {
                    let description = message.description.as_deref().unwrap_or_default();
                    if description.contains("Consumer Deleted")
                        || description.contains("Consumer is push based")
                    {
                        self.held.clear();
                        return Pulled::Broken(description.to_owned());
                    }
                    // A request expired or was cut short: free the permits of the tasks it
                    // did not bring.
                    let unfilled = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Pending-Messages"))
                        .and_then(|v| v.as_str().parse::<usize>().ok())
                        .unwrap_or(self.held.len());
                    let keep = self.held.len().saturating_sub(unfilled);
                    self.held.truncate(keep);
                }
                Some(status) => {
                    self.held.clear();
                    return Pulled::Broken(format!(
                        "pull answered {status}: {}",
                        message.description.unwrap_or_default()
                    ));
                }
            }
        }
    }
}
