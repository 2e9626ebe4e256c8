//! A per-endpoint circuit breaker: after `threshold` consecutive failures the endpoint is
//! paused for `cooldown`; then one trial call decides (success closes it, failure opens
//! it again). While it is open, deliveries wait instead of using up their attempts.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::Serialize;

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_in_flight: bool },
}

/// Whether a call may go out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Call now.
    Go,
    /// Wait until then and ask again.
    WaitUntil(Instant),
}

/// The breaker's state as reported by `GET /subscriptions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerView {
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
    /// Consecutive failures so far (while closed).
    pub consecutive_failures: u32,
    /// Seconds until the next trial (while open).
    pub retry_in_seconds: Option<f64>,
}

/// A circuit breaker.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

/// How often a caller waiting behind a half-open trial asks again.
const TRIAL_POLL: Duration = Duration::from_millis(100);

impl Breaker {
    /// A closed breaker.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks to make a call at `now`; a half-open breaker admits one trial at a time.
    pub fn admit(&self, now: Instant) -> Admission {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Admission::Go,
            State::Open { until } if now < until => Admission::WaitUntil(until),
            State::Open { .. }
            | State::HalfOpen {
                trial_in_flight: false,
            } => {
                *state = State::HalfOpen {
                    trial_in_flight: true,
                };
                Admission::Go
            }
            State::HalfOpen {
                trial_in_flight: true,
            } => Admission::WaitUntil(now + TRIAL_POLL),
        }
    }

    /// Whether new work should be fetched at `now` (not while open).
    pub fn accepting(&self, now: Instant) -> Option<Instant> {
        match *self.lock() {
            State::Open { until } if now < until => Some(until),
            _ => None,
        }
    }

    /// Records the outcome of an admitted call.
    pub fn record(&self, success: bool, now: Instant) {
        let mut state = self.lock();
        *state = match (*state, success) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            (State::Open { until }, false) => State::Open { until },
            (_, false) => State::Open {
                until: now + self.cooldown,
            },
        };
    }

    /// The state for reports.
    pub fn view(&self, now: Instant) -> BreakerView {
        match *self.lock() {
            State::Closed { failures } => BreakerView {
                state: "closed",
                consecutive_failures: failures,
                retry_in_seconds: None,
            },
            State::Open { until } => BreakerView {
                state: "open",
                consecutive_failures: self.threshold,
                retry_in_seconds: Some(until.saturating_duration_since(now).as_secs_f64()),
            },
            State::HalfOpen { .. } => BreakerView {
                state: "half_open",
                consecutive_failures: self.threshold,
                retry_in_seconds: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_opens_after_the_threshold_then_lets_one_trial_through() {
        let b = Breaker::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(b.admit(t0), Admission::Go);
            b.record(false, t0);
        }
        assert_eq!(b.view(t0).state, "closed");
        b.record(false, t0);
        assert_eq!(b.view(t0).state, "open");
        assert_eq!(
            b.admit(t0),
            Admission::WaitUntil(t0 + Duration::from_secs(10))
        );
        assert!(b.accepting(t0).is_some());
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.admit(later), Admission::Go, "the trial");
        assert!(
            matches!(b.admit(later), Admission::WaitUntil(_)),
            "one trial at a time"
        );
        b.record(false, later);
        assert_eq!(b.view(later).state, "open", "a failed trial reopens it");
        let again = later + Duration::from_secs(10);
        assert_eq!(b.admit(again), Admission::Go);
        b.record(true, again);
        assert_eq!(b.view(again).state, "closed");
        assert_eq!(b.admit(again), Admission::Go);
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(1));
        let t = Instant::now();
        b.record(false, t);
        b.record(true, t);
        b.record(false, t);
        assert_eq!(b.view(t).state, "closed");
    }
}
