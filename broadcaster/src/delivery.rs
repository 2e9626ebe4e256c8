//! Delivering: one loop per subscription pulls its tasks from `IC_DELIVERIES` (durable
//! consumer `deliveries-<id>`, never more than its free concurrency permits, so nothing
//! waits unprotected in a buffer), signs and POSTs each one, and then acknowledges it,
//! schedules the retry (explicit delayed NAK), or moves it to `IC_DEAD_LETTERS`
//! (`shared/spec/broadcaster.md`, "Delivering").

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
};
use chrono::{DateTime, Utc};
use http::header;
use ic_events::streams::IC_DELIVERIES;
use serde::Deserialize;
use tokio::{sync::OwnedSemaphorePermit, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    dead_letters::{self, Burial},
    domain::{breaker::Admission, retry, retry::RetrySchedule, signing::signature_header, ssrf},
    metrics::Metrics,
    pull::{Pulled, Puller},
    subscription_state::Endpoint,
    tasks::{consumer_name, task_subject},
};

/// `User-Agent` of every webhook call.
pub const USER_AGENT: &str = concat!("ic-broadcaster/", env!("CARGO_PKG_VERSION"));

/// Unacknowledged tasks a subscription's consumer may have (those waiting for a retry
/// included).
const MAX_ACK_PENDING: i64 = 100_000;

/// How long the pull loop waits for more free permits before asking for tasks (batching
/// pulls under load; an idle subscription has all its permits free and never waits).
const BATCH_GATHER: Duration = Duration::from_millis(1);
/// How long JetStream waits for a task's acknowledgement before handing it to another
/// worker: the call's timeout and a margin. Calls in progress and tasks waiting behind an
/// open breaker send keep-alives, so this only decides how soon the tasks of a crashed
/// replica are retried.
pub fn ack_wait(timeout: Duration) -> Duration {
    timeout + Duration::from_secs(10)
}

/// How often a task being worked on tells JetStream it is still alive.
fn keepalive(timeout: Duration) -> Duration {
    ack_wait(timeout) / 3
}

/// The fields of an event the deliverer needs.
#[derive(Debug, Deserialize)]
struct EventHead {
    id: String,
    time: Option<DateTime<Utc>>,
}

/// How one call ended.
#[derive(Debug)]
enum Outcome {
    Delivered {
        status: u16,
    },
    Gone,
    Failed {
        status: Option<u16>,
        class: &'static str,
        error: String,
        retry_after: Option<Duration>,
    },
}

/// Everything the delivery loops share.
#[derive(Debug, Clone)]
pub struct Deliverer {
    /// JetStream.
    pub js: jetstream::Context,
    /// The webhook client (no redirects; the SSRF guard in its resolver).
    pub http: reqwest::Client,
    /// Metrics.
    pub metrics: Metrics,
    /// Delays between attempts.
    pub schedule: RetrySchedule,
    /// The most a `Retry-After` may delay a retry.
    pub max_retry_after: Duration,
    /// The SSRF guard's override.
    pub allow_private: bool,
}

/// A DNS resolver that drops non-public addresses (the SSRF guard on the addresses
/// actually connected to).
#[derive(Debug, Clone, Copy)]
struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let public: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| ssrf::is_public(addr.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves only to private addresses (BROADCASTER_ALLOW_PRIVATE_TARGETS is off)"
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The webhook HTTP client: redirects are never followed; unless `allow_private`, names
/// resolving to non-public addresses are refused.
pub fn http_client(allow_private: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        // A proxy would resolve the target itself, around the SSRF guard.
        .no_proxy();
    if !allow_private {
        builder = builder.dns_resolver(GuardedResolver);
    }
    builder.build().unwrap_or_default()
}

async fn sleep_or_cancel(token: &CancellationToken, duration: Duration) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        () = token.cancelled() => {}
    }
}

impl Deliverer {
    async fn bind(&self, endpoint: &Endpoint) -> Result<(PullConsumer, Puller), async_nats::Error> {
        let id = endpoint.id();
        let name = consumer_name(id);
        ic_events::streams::ensure_all(&self.js, ic_events::streams::broadcaster()).await?;
        let stream = self.js.get_stream(IC_DELIVERIES).await?;
        let wanted = pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: task_subject(id),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: ack_wait(endpoint.subscription.timeout),
            // Tasks waiting for a delayed retry count as pending: a low limit would let
            // a few long retries block every new task. The permits bound the work.
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        };
        let mut consumer = stream.get_or_create_consumer(&name, wanted.clone()).await?;
        let current = &consumer.cached_info().config;
        if current.ack_wait != wanted.ack_wait || current.max_ack_pending != wanted.max_ack_pending
        {
            // The subscription's timeout changed since the consumer was created.
            match stream.create_consumer(wanted).await {
                Ok(updated) => consumer = updated,
                Err(err) => {
                    tracing::warn!(subscription = id, error = %err, "could not update the delivery consumer's settings; keeping the old ones")
                }
            }
        }
        let puller = Puller::new(&self.js, IC_DELIVERIES, &name).await?;
        Ok((consumer, puller))
    }

    /// Delivers `endpoint`'s tasks until `token` is cancelled; then takes no new task and
    /// lets the calls in flight finish.
    pub async fn run(self: Arc<Self>, endpoint: Arc<Endpoint>, token: CancellationToken) {
        let mut tasks = JoinSet::new();
        let mut bound: Option<(PullConsumer, Puller)> = None;
        let mut backoff = Duration::from_millis(250);
        let mut last_pending = Instant::now() - Duration::from_secs(60);
        // Free permits not asked for yet, and until when more are gathered.
        let mut gathered: Vec<OwnedSemaphorePermit> = Vec::new();
        let mut gather_until: Option<tokio::time::Instant> = None;
        // Under load, permits come back one at a time: a pull waits for this many free
        // permits (for at most BATCH_GATHER), so one request fetches several tasks.
        let wanted = (endpoint.subscription.max_concurrency as usize)
            .div_ceil(4)
            .max(1);
        while !token.is_cancelled() {
            while tasks.try_join_next().is_some() {}
            let Some((consumer, puller)) = bound.as_mut() else {
                // Permits gathered for a consumer that is gone are given back.
                gathered.clear();
                gather_until = None;
                match self.bind(&endpoint).await {
                    Ok(pair) => {
                        bound = Some(pair);
                        backoff = Duration::from_millis(250);
                    }
                    Err(err) => {
                        tracing::warn!(subscription = endpoint.id(), error = %err, "cannot bind the delivery consumer; retrying");
                        sleep_or_cancel(&token, backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
                continue;
            };
            if last_pending.elapsed() > Duration::from_secs(5) {
                last_pending = Instant::now();
                if let Ok(info) = consumer.info().await {
                    self.metrics
                        .set_pending(&consumer_name(endpoint.id()), info.num_pending);
                }
            }
            // New tasks are asked for only while the subscription is active and its
            // breaker lets calls through; tasks already asked for are still taken (they
            // wait behind the breaker with keep-alives).
            let paused_until = if endpoint.active() {
                endpoint.breaker.accepting(Instant::now())
            } else {
                Some(Instant::now() + Duration::from_secs(1))
            };
            let pause = tokio::time::sleep_until(tokio::time::Instant::from_std(
                paused_until.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            ));
            let gather_deadline = tokio::time::sleep_until(
                gather_until
                    .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600)),
            );
            let mut ask = false;
            tokio::select! {
                () = token.cancelled() => break,
                pulled = puller.next() => match pulled {
                    Pulled::Task(message, permit) => {
                        let permit = match permit.or_else(|| gathered.pop()) {
                            Some(permit) => permit,
                            // Arrived after its request was given up for lost.
                            None => tokio::select! {
                                permit = endpoint.permits.clone().acquire_owned() => match permit {
                                    Ok(permit) => permit,
                                    Err(_) => break,
                                },
                                () = token.cancelled() => {
                                    let _ = message.ack_with(AckKind::Nak(None)).await;
                                    break;
                                }
                            },
                        };
                        tasks.spawn(self.clone().deliver(
                            endpoint.clone(),
                            message,
                            permit,
                            token.clone(),
                        ));
                    }
                    Pulled::Idle => {}
                    Pulled::Broken(why) => {
                        tracing::warn!(subscription = endpoint.id(), error = %why, "pulling delivery tasks failed; rebinding");
                        bound = None;
                        sleep_or_cancel(&token, backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                },
                () = pause, if paused_until.is_some() => {}
                permit = endpoint.permits.clone().acquire_owned(), if paused_until.is_none() => {
                    let Ok(permit) = permit else { break };
                    gathered.push(permit);
                    while let Ok(permit) = endpoint.permits.clone().try_acquire_owned() {
                        gathered.push(permit);
                    }
                    // With nothing asked for, ask at once; otherwise tasks still flow
                    // through the requests in flight, and a few more permits are gathered.
                    if gathered.len() >= wanted || puller.outstanding() == 0 {
                        ask = true;
                    } else {
                        gather_until.get_or_insert_with(|| tokio::time::Instant::now() + BATCH_GATHER);
                    }
                }
                () = gather_deadline, if gather_until.is_some() && paused_until.is_none() => ask = true,
            }
            if ask {
                gather_until = None;
                if let Some((_, puller)) = bound.as_mut()
                    && let Err(err) = puller.request(std::mem::take(&mut gathered)).await
                {
                    tracing::warn!(subscription = endpoint.id(), error = %err, "asking for delivery tasks failed; rebinding");
                    bound = None;
                    sleep_or_cancel(&token, backoff).await;
                }
                gathered.clear();
            }
        }
        // Graceful shutdown: no new tasks (those already arrived go back at once); the
        // calls in flight finish and are acknowledged.
        if let Some((_, puller)) = bound.take() {
            puller.close().await;
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn deliver(
        self: Arc<Self>,
        endpoint: Arc<Endpoint>,
        message: jetstream::Message,
        _permit: OwnedSemaphorePermit,
        token: CancellationToken,
    ) {
        let _working = endpoint.working();
        let (attempt, sequence) = match message.info() {
            Ok(info) => (
                u64::try_from(info.delivered).unwrap_or(1).max(1),
                info.stream_sequence,
            ),
            Err(_) => (1, 0),
        };
        let Ok(head) = serde_json::from_slice::<EventHead>(&message.payload) else {
            tracing::error!(
                subscription = endpoint.id(),
                "a delivery task is not a CloudEvent; dropped"
            );
            let _ = message.ack_with(AckKind::Term).await;
            return;
        };
        let keepalive_every = keepalive(endpoint.subscription.timeout);
        // An open breaker makes the task wait, alive, without using up an attempt.
        let mut last_keepalive = Instant::now();
        loop {
            match endpoint.breaker.admit(Instant::now()) {
                Admission::Go => break,
                Admission::WaitUntil(until) => {
                    if last_keepalive.elapsed() >= keepalive_every / 2 {
                        let _ = message.ack_with(AckKind::Progress).await;
                        last_keepalive = Instant::now();
                    }
                    let wait = until
                        .saturating_duration_since(Instant::now())
                        .min(keepalive_every);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = token.cancelled() => {
                            // Shutting down: hand the task back at once.
                            let _ = message.ack_with(AckKind::Nak(None)).await;
                            return;
                        }
                    }
                }
            }
        }
        let started = Instant::now();
        // Boxed: the HTTP call's future is large, and this one is moved when spawned.
        let mut call = Box::pin(self.call(&endpoint, &message, &head.id));
        let mut keepalive = tokio::time::interval_at(
            tokio::time::Instant::now() + keepalive_every,
            keepalive_every,
        );
        let outcome = loop {
            tokio::select! {
                outcome = &mut call => break outcome,
                _ = keepalive.tick() => {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        let id = endpoint.id();
        match outcome {
            Outcome::Delivered { status } => {
                endpoint.breaker.record(true, Instant::now());
                endpoint.count_delivered();
                self.metrics.request(id, "2xx", seconds);
                if let Err(err) = message.ack().await {
                    tracing::warn!(subscription = id, error = %err, "ack after delivery failed; it may be delivered again");
                }
                if let Some(time) = head.time {
                    self.metrics.lag(
                        (Utc::now() - time)
                            .to_std()
                            .unwrap_or_default()
                            .as_secs_f64(),
                    );
                }
                tracing::debug!(subscription = id, webhook_id = %head.id, status, attempt, "delivered");
            }
            Outcome::Gone => {
                endpoint.breaker.record(true, Instant::now());
                self.metrics.request(id, "4xx", seconds);
                endpoint.disable_gone();
                tracing::error!(
                    subscription = id,
                    "the endpoint answered 410 Gone: subscription disabled until the configuration is reloaded"
                );
                let burial = Burial {
                    last_status: Some(410),
                    last_error: "410 Gone: the subscription was disabled",
                    ..Burial::new(&head.id, attempt, sequence)
                };
                dead_letters::bury(&self.js, &self.metrics, &endpoint, &message, burial).await;
            }
            Outcome::Failed {
                status,
                class,
                error,
                retry_after,
            } => {
                endpoint.breaker.record(false, Instant::now());
                endpoint.count_failed();
                self.metrics.request(id, class, seconds);
                match self.schedule.delay_after(attempt) {
                    Some(scheduled) => {
                        let delay = retry::next_delay(scheduled, retry_after);
                        tracing::info!(subscription = id, webhook_id = %head.id, attempt, status, error = %error, retry_in_ms = delay.as_millis() as u64, "delivery failed; retry scheduled");
                        let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
                    }
                    None => {
                        tracing::warn!(subscription = id, webhook_id = %head.id, attempt, status, error = %error, "delivery failed for the last time; dead letter");
                        let burial = Burial {
                            last_status: status,
                            last_error: &error,
                            ..Burial::new(&head.id, attempt, sequence)
                        };
                        dead_letters::bury(&self.js, &self.metrics, &endpoint, &message, burial)
                            .await;
                    }
                }
            }
        }
    }

    /// One signed POST.
    async fn call(
        &self,
        endpoint: &Endpoint,
        message: &jetstream::Message,
        webhook_id: &str,
    ) -> Outcome {
        let subscription = &endpoint.subscription;
        if !self.allow_private
            && let Some(ip) = match subscription.url.host() {
                Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
                _ => None,
            }
            && !ssrf::is_public(ip)
        {
            return Outcome::Failed {
                status: None,
                class: "error",
                error: "the target is a private address (BROADCASTER_ALLOW_PRIVATE_TARGETS is off)"
                    .into(),
                retry_after: None,
            };
        }
        let timestamp = Utc::now().timestamp();
        let body = message.payload.clone();
        let trace = ic_telemetry::carriers::extract_nats(message.headers.as_ref()).child();
        let mut request = self
            .http
            .post(subscription.url.clone())
            .timeout(subscription.timeout)
            .header(header::CONTENT_TYPE, "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                signature_header(&subscription.secrets, webhook_id, timestamp, &body),
            );
        if let Some(correlation) = message
            .headers
            .as_ref()
            .and_then(|h| ic_events::header(h, ic_telemetry::X_CORRELATION_ID))
        {
            request = request.header(ic_telemetry::X_CORRELATION_ID, correlation);
        }
        for (name, value) in &subscription.headers {
            request = request.header(name, value);
        }
        request = ic_telemetry::carriers::inject_reqwest(&trace, request);
        match request.body(body).send().await {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    return Outcome::Delivered {
                        status: status.as_u16(),
                    };
                }
                if status == http::StatusCode::GONE {
                    return Outcome::Gone;
                }
                let retry_after = if matches!(status.as_u16(), 429 | 503) {
                    retry::retry_after(
                        response
                            .headers()
                            .get(header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok()),
                        Utc::now(),
                        self.max_retry_after,
                    )
                } else {
                    None
                };
                let class = match status.as_u16() {
                    300..=399 => "3xx",
                    400..=499 => "4xx",
                    _ => "5xx",
                };
                Outcome::Failed {
                    status: Some(status.as_u16()),
                    class,
                    error: format!("answered {status}"),
                    retry_after,
                }
            }
            Err(err) => {
                let timeout = err.is_timeout();
                let error = error_chain(&err.without_url());
                Outcome::Failed {
                    status: None,
                    class: if timeout { "timeout" } else { "error" },
                    error: if timeout { "timed out".into() } else { error },
                    retry_after: None,
                }
            }
        }
    }
}

/// An error and its causes on one line (no URL: it may carry credentials).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
