//! Rate limiting with GCRA (smooth, bursts allowed up to the limit), keyed per client
//! (IP, or user for the admin gateway). In-process store here; every response carries
//! `RateLimit-*` and `X-RateLimit-*`, and a 429 carries `Retry-After`.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue};
use ic_http::{ApiError, ErrorCode};

use crate::client_ip::{ClientIp, rate_key};

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
        let pairs = [
            ("ratelimit-limit", u64::from(self.limit)),
            ("ratelimit-remaining", u64::from(self.remaining)),
            ("ratelimit-reset", self.reset_secs),
            ("x-ratelimit-limit", u64::from(self.limit)),
            ("x-ratelimit-remaining", u64::from(self.remaining)),
            ("x-ratelimit-reset", self.reset_secs),
        ];
        for (name, value) in pairs {
            headers.insert(name, HeaderValue::from(value));
        }
        if !self.allowed {
            headers.insert(
                "retry-after",
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
    shards: Vec<Mutex<HashMap<String, Instant>>>,
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
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// The configured limit.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Checks (and on success counts) one request for `key` at `now`.
    pub fn check(&self, key: &str, now: Instant) -> Decision {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let shard = &self.shards[(hasher.finish() as usize) % SHARDS];
        let mut map = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= SWEEP_AT {
            map.retain(|_, tat| *tat > now);
        }
        let tat = map.get(key).copied().unwrap_or(now).max(now);
        let ahead = tat - now;
        if ahead > self.tolerance {
            let wait = ahead - self.tolerance;
            return Decision {
                allowed: false,
                limit: self.limit,
                remaining: 0,
                reset_secs: ceil_secs(ahead),
                retry_after_secs: ceil_secs(wait),
            };
        }
        let new_tat = tat + self.interval;
        map.insert(key.to_owned(), new_tat);
        let used = new_tat - now;
        let capacity = self.interval * self.limit;
        let left = capacity.saturating_sub(used);
        let remaining =
            u32::try_from(left.as_nanos() / self.interval.as_nanos().max(1)).unwrap_or(u32::MAX);
        Decision {
            allowed: true,
            limit: self.limit,
            remaining,
            reset_secs: ceil_secs(used),
            retry_after_secs: 0,
        }
    }
}

/// Middleware state: the limiter, keyed by [`ClientIp`].
#[derive(Debug, Clone)]
pub struct IpRateLimit(pub Arc<Gcra>);

/// Middleware (after `resolve_client_ip`).
pub async fn limit_by_ip(
    State(limit): State<IpRateLimit>,
    request: Request,
    next: Next,
) -> Response {
    let ip = request
        .extensions()
        .get::<ClientIp>()
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |c| c.0);
    let decision = limit.0.check(&rate_key(ip), Instant::now());
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        ApiError::new(
            ErrorCode::RateLimited,
            "too many requests; retry after the time in Retry-After",
        )
        .into_response()
    };
    decision.write_headers(response.headers_mut());
    response
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
