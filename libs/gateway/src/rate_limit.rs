//! Rate limiting with GCRA (smooth, bursts allowed up to the limit), keyed per client
//! (IP, or user for the admin gateway). In-process store here; every response carries
//! `RateLimit-*` and `X-RateLimit-*`, and a 429 carries `Retry-After`.

use std::{
    collections::HashMap,
    hash::BuildHasher,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue};
use ic_health::{Check, Criticality};
use ic_http::{ApiError, ErrorCode};

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Requests per window.
    pub limit: u32,
    /// Requests left right now.
    pub remaining: u32,
    /// Seconds until the allowance is fully restored.
    pub reset_secs: u64,
    /// Seconds to wait before retrying (0 when allowed).
    pub retry_after_secs: u64,
}

impl Decision {
    /// Writes the standard and `X-` spellings (and `Retry-After` when refused).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        // Names built at compile time: these are written on every response.
        const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
        const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
        const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
        const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
        const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
        const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
        let limit = HeaderValue::from(self.limit);
        let remaining = HeaderValue::from(self.remaining);
        let reset = HeaderValue::from(self.reset_secs);
        headers.insert(LIMIT, limit.clone());
        headers.insert(REMAINING, remaining.clone());
        headers.insert(RESET, reset.clone());
        headers.insert(X_LIMIT, limit);
        headers.insert(X_REMAINING, remaining);
        headers.insert(X_RESET, reset);
        if !self.allowed {
            headers.insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(self.retry_after_secs.max(1)),
            );
        }
    }
}

const SHARDS: usize = 16;
/// Entries kept per shard before idle keys are swept.
const SWEEP_AT: usize = 50_000;

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// An in-process GCRA limiter: `limit` requests per `period`, bursts up to `limit`.
#[derive(Debug)]
pub struct Gcra {
    limit: u32,
    interval: Duration,
    tolerance: Duration,
    /// Picks the shard and hashes within it (a fast hash, randomly seeded per process).
    hasher: foldhash::fast::RandomState,
    shards: Vec<Mutex<HashMap<String, Instant, foldhash::fast::RandomState>>>,
}

impl Gcra {
    /// `limit` per `period` (limit ≥ 1).
    pub fn new(limit: u32, period: Duration) -> Self {
        let limit = limit.max(1);
        let interval = period / limit;
        Self {
            limit,
            interval,
            tolerance: interval * (limit - 1),
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// The configured limit.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Checks (and on success counts) one request for `key` at `now`.
    pub fn check(&self, key: &str, now: Instant) -> Decision {
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut map = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= SWEEP_AT {
            map.retain(|_, tat| *tat > now);
        }
        // One lookup for a known key; a new one is inserted only when allowed.
        if let Some(tat) = map.get_mut(key) {
            let (decision, new_tat) = self.decide(*tat, now);
            if let Some(new_tat) = new_tat {
                *tat = new_tat;
            }
            return decision;
        }
        let (decision, new_tat) = self.decide(now, now);
        if let Some(new_tat) = new_tat {
            map.insert(key.to_owned(), new_tat);
        }
        decision
    }

    /// The decision for a key whose theoretical arrival time is `tat`, and its new one
    /// when the request is allowed.
    fn decide(&self, tat: Instant, now: Instant) -> (Decision, Option<Instant>) {
        let tat = tat.max(now);
        let ahead = tat - now;
        if ahead > self.tolerance {
            let wait = ahead - self.tolerance;
            let refused = Decision {
                allowed: false,
                limit: self.limit,
                remaining: 0,
                reset_secs: ceil_secs(ahead),
                retry_after_secs: ceil_secs(wait),
            };
            return (refused, None);
        }
        let new_tat = tat + self.interval;
        let used = new_tat - now;
        let capacity = self.interval * self.limit;
        let left = capacity.saturating_sub(used);
        let remaining =
            u32::try_from(left.as_nanos() / self.interval.as_nanos().max(1)).unwrap_or(u32::MAX);
        let allowed = Decision {
            allowed: true,
            limit: self.limit,
            remaining,
            reset_secs: ceil_secs(used),
            retry_after_secs: 0,
        };
        (allowed, Some(new_tat))
    }
}

/// GCRA in Redis, atomically: the server's clock, one script call per request.
/// Returns `{allowed, wait_us, used_or_ahead_us}`.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then
  return {0, tat - now - tolerance, tat - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.floor((new_tat - now) / 1000) + 1000)
return {1, 0, new_tat - now}
";

/// How long a failed Redis call sends requests to the local limiter before retrying.
const REDIS_BACKOFF: Duration = Duration::from_secs(1);
/// The budget of one Redis call (the limiter must not slow requests down).
const REDIS_TIMEOUT: Duration = Duration::from_millis(150);

/// A GCRA shared by every replica through Redis (`RATE_LIMIT_REDIS_URL`), with an
/// in-process fallback while Redis is unreachable.
pub struct SharedGcra {
    client: redis::Client,
    manager: tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>,
    script: redis::Script,
    prefix: String,
    fallback: Gcra,
    interval_us: u64,
    tolerance_us: u64,
    down_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for SharedGcra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedGcra")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl SharedGcra {
    /// A shared limiter; `prefix` namespaces the keys (e.g. `ic:rl:public:`).
    pub fn new(
        url: &str,
        prefix: &str,
        limit: u32,
        period: Duration,
    ) -> Result<Self, redis::RedisError> {
        let fallback = Gcra::new(limit, period);
        Ok(Self {
            client: redis::Client::open(url)?,
            manager: tokio::sync::Mutex::new(None),
            script: redis::Script::new(GCRA_SCRIPT),
            prefix: prefix.to_owned(),
            interval_us: u64::try_from(fallback.interval.as_micros()).unwrap_or(u64::MAX),
            tolerance_us: u64::try_from(fallback.tolerance.as_micros()).unwrap_or(u64::MAX),
            fallback,
            down_until: Mutex::new(None),
        })
    }

    fn backing_off(&self) -> bool {
        let down = self
            .down_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        down.is_some_and(|until| Instant::now() < until)
    }

    fn mark(&self, healthy: bool) {
        let mut down = self
            .down_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *down = (!healthy).then(|| Instant::now() + REDIS_BACKOFF);
    }

    /// The shared connection; while backing off, only a probe (`force`) tries to make one,
    /// so requests queued behind a failed attempt do not each retry it.
    async fn connection(&self, force: bool) -> Option<redis::aio::ConnectionManager> {
        let mut slot = self.manager.lock().await;
        if slot.is_none() && self.backing_off() && !force {
            return None;
        }
        if slot.is_none() {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(REDIS_TIMEOUT))
                .set_response_timeout(Some(REDIS_TIMEOUT))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            *slot = redis::aio::ConnectionManager::new_with_config(self.client.clone(), config)
                .await
                .ok();
            if slot.is_none() {
                self.mark(false);
            }
        }
        slot.clone()
    }

    async fn call_redis(&self, key: &str) -> Option<(i64, i64, i64)> {
        let mut connection = self.connection(false).await?;
        let mut invocation = self.script.key(format!("{}{key}", self.prefix));
        invocation.arg(self.interval_us).arg(self.tolerance_us);
        tokio::time::timeout(
            REDIS_TIMEOUT,
            invocation.invoke_async::<(i64, i64, i64)>(&mut connection),
        )
        .await
        .ok()?
        .ok()
    }

    /// Checks one request; falls back to the local limiter when Redis fails.
    pub async fn check(&self, key: &str) -> Decision {
        if !self.backing_off()
            && let Some((allowed, wait_us, used_us)) = self.call_redis(key).await
        {
            self.mark(true);
            let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
            let capacity = self.interval_us * u64::from(self.fallback.limit);
            let used = u64::try_from(used_us).unwrap_or(0);
            let remaining = if allowed == 1 {
                u32::try_from(capacity.saturating_sub(used) / self.interval_us.max(1))
                    .unwrap_or(u32::MAX)
            } else {
                0
            };
            return Decision {
                allowed: allowed == 1,
                limit: self.fallback.limit,
                remaining,
                reset_secs: ceil_secs(micros(used_us)),
                retry_after_secs: ceil_secs(micros(wait_us)),
            };
        }
        if !self.backing_off() {
            tracing::warn!("rate-limit store unreachable; limiting in-process until it returns");
            self.mark(false);
        }
        self.fallback.check(key, Instant::now())
    }

    /// Readiness probe: a PING within the budget (also ends the back-off on success).
    pub async fn ping(&self) -> Result<(), String> {
        let Some(mut connection) = self.connection(true).await else {
            self.mark(false);
            return Err("unreachable".into());
        };
        let pong = tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::cmd("PING").query_async::<String>(&mut connection),
        )
        .await;
        let ok = matches!(pong, Ok(Ok(_)));
        self.mark(ok);
        if ok {
            Ok(())
        } else {
            Err("no answer to PING".into())
        }
    }
}

/// Where the counts live.
#[derive(Debug)]
pub enum Limiter {
    /// This process only.
    Local(Gcra),
    /// Shared by every replica through Redis.
    Shared(Box<SharedGcra>),
}

impl Limiter {
    /// Shared through Redis at `redis_url` (keys under `prefix`) when one is given and
    /// usable, else in-process: `limit` requests per `period` per key.
    pub fn new(redis_url: Option<&str>, prefix: &str, limit: u32, period: Duration) -> Self {
        match redis_url {
            Some(url) => match SharedGcra::new(url, prefix, limit, period) {
                Ok(shared) => Self::Shared(Box::new(shared)),
                Err(err) => {
                    tracing::error!(error = %err, "RATE_LIMIT_REDIS_URL unusable; limiting in-process");
                    Self::Local(Gcra::new(limit, period))
                }
            },
            None => Self::Local(Gcra::new(limit, period)),
        }
    }

    /// What `/health` says of it, keyed per `per` ("client IP", "user").
    pub fn status(&self, per: &str) -> String {
        match self {
            Self::Local(gcra) => format!("in-process, {}/min per {per}", gcra.limit()),
            Self::Shared(_) => "redis (in-process while unreachable)".to_owned(),
        }
    }

    /// The readiness check of the shared store (optional: while Redis is down the
    /// gateway limits in-process and keeps serving), or none for an in-process limiter.
    pub fn readiness_check(limiter: &Arc<Self>) -> Option<Check> {
        if !matches!(limiter.as_ref(), Self::Shared(_)) {
            return None;
        }
        let limiter = limiter.clone();
        Some(Check::new(
            "rate_limit_store",
            Criticality::Optional,
            move || {
                let limiter = limiter.clone();
                async move {
                    match limiter.as_ref() {
                        Limiter::Shared(shared) => shared.ping().await,
                        Limiter::Local(_) => Ok(()),
                    }
                }
            },
        ))
    }

    /// Checks one request for `key`.
    pub async fn check(&self, key: &str) -> Decision {
        match self {
            Self::Local(gcra) => gcra.check(key, Instant::now()),
            // Boxed: the Redis call's future is large, and every request's future would
            // carry its size (and copy it) even when limiting in-process.
            Self::Shared(shared) => {
                // In a statement of its own: the temporary would otherwise live (and take
                // room in this future) until the end of the `.await`'s statement.
                let checked = Box::pin(shared.check(key));
                checked.await
            }
        }
    }
}

impl Limiter {
    /// The rate-limit stage: `None` for the paths never limited (health and metrics: a
    /// busy client must not make a gateway look dead to its orchestrator), else the
    /// decision for `key` requesting `path`. A refused request is answered
    /// [`Decision::refusal`]; every response gets [`Decision::write_headers`].
    pub async fn admit(&self, key: &str, path: &str) -> Option<Decision> {
        if ic_http::app_token::OPEN_PATHS.contains(&path) {
            return None;
        }
        Some(self.check(key).await)
    }
}

impl Decision {
    /// The answer to a refused request (429), before its headers.
    pub fn refusal() -> Response {
        ApiError::new(
            ErrorCode::RateLimited,
            "too many requests; retry after the time in Retry-After",
        )
        .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_limit_passes_in_a_burst_then_one_per_interval() {
        let gcra = Gcra::new(5, Duration::from_secs(60));
        let t0 = Instant::now();
        let remaining: Vec<u32> = (0..5)
            .map(|_| gcra.check("k", t0))
            .map(|d| {
                assert!(d.allowed);
                d.remaining
            })
            .collect();
        assert_eq!(remaining, [4, 3, 2, 1, 0]);
        let refused = gcra.check("k", t0);
        assert!(!refused.allowed);
        assert_eq!(
            refused.retry_after_secs, 12,
            "one interval (60 s / 5) until the next slot"
        );
        assert!(!gcra.check("k", t0 + Duration::from_secs(11)).allowed);
        assert!(gcra.check("k", t0 + Duration::from_secs(12)).allowed);
        assert!(gcra.check("other", t0).allowed, "keys are independent");
        let later = gcra.check("k", t0 + Duration::from_secs(600));
        assert_eq!(later.remaining, 4, "the allowance refills");
    }
}
