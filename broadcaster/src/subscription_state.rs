//! The runtime state of each subscription: its breaker, concurrency permits, counters
//! and whether a 410 disabled it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::domain::{breaker::Breaker, subscription::Subscription};

/// One subscription at run time.
#[derive(Debug)]
pub struct Endpoint {
    /// The configuration.
    pub subscription: Subscription,
    /// Its circuit breaker.
    pub breaker: Breaker,
    /// At most `max_concurrency` calls at once.
    pub permits: Arc<Semaphore>,
    gone: AtomicBool,
    in_flight: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dead_lettered: AtomicU64,
}

impl Endpoint {
    /// The state of a configured subscription.
    pub fn new(subscription: Subscription, breaker_failures: u32, cooldown: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(subscription.max_concurrency as usize)),
            breaker: Breaker::new(breaker_failures, cooldown),
            subscription,
            gone: AtomicBool::new(false),
            in_flight: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
        }
    }

    /// The subscription id.
    pub fn id(&self) -> &str {
        self.subscription.id.as_str()
    }

    /// Enabled in the configuration and not disabled by a 410.
    pub fn active(&self) -> bool {
        self.subscription.enabled && !self.gone.load(Ordering::Relaxed)
    }

    /// Whether an event of this type is fanned out to this endpoint.
    pub fn wants(&self, event_type: &str) -> bool {
        self.active() && self.subscription.wants(event_type)
    }

    /// The endpoint answered 410 Gone: no more deliveries until the configuration is
    /// reloaded (restart).
    pub fn disable_gone(&self) {
        self.gone.store(true, Ordering::Relaxed);
    }

    /// Marks a task as being worked on until the guard is dropped.
    pub fn working(&self) -> Working<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Working(self)
    }

    /// Counts a delivered call.
    pub fn count_delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed call.
    pub fn count_failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a dead letter.
    pub fn count_dead_letter(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    /// The report of `GET /subscriptions`: configuration without secrets, counters, breaker.
    pub fn report(&self) -> Value {
        let s = &self.subscription;
        let state = if !s.enabled {
            "disabled"
        } else if self.gone.load(Ordering::Relaxed) {
            "disabled_gone"
        } else {
            "enabled"
        };
        json!({
            "id": s.id,
            "url": s.redacted_url(),
            "event_types": s.event_types,
            "headers": s.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            "enabled": s.enabled,
            "state": state,
            "max_concurrency": s.max_concurrency,
            "timeout_seconds": s.timeout.as_secs_f64(),
            "secrets": s.secrets.len(),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "counters": {
                "delivered": self.delivered.load(Ordering::Relaxed),
                "failed_attempts": self.failed.load(Ordering::Relaxed),
                "dead_letters": self.dead_lettered.load(Ordering::Relaxed),
            },
            "breaker": self.breaker.view(Instant::now()),
        })
    }
}

/// A task being worked on (see [`Endpoint::working`]).
#[derive(Debug)]
pub struct Working<'a>(&'a Endpoint);

impl Drop for Working<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every endpoint, shared by the fan-out, the deliverers and the routes.
#[derive(Debug, Clone, Default)]
pub struct Endpoints(Arc<Vec<Arc<Endpoint>>>);

impl Endpoints {
    /// The endpoints of `subscriptions`.
    pub fn new(
        subscriptions: Vec<Subscription>,
        breaker_failures: u32,
        cooldown: Duration,
    ) -> Self {
        Self(Arc::new(
            subscriptions
                .into_iter()
                .map(|s| Arc::new(Endpoint::new(s, breaker_failures, cooldown)))
                .collect(),
        ))
    }

    /// All of them.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.0.iter()
    }

    /// One by id.
    pub fn get(&self, id: &str) -> Option<&Arc<Endpoint>> {
        self.0.iter().find(|e| e.id() == id)
    }
}
