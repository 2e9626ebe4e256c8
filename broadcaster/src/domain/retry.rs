//! The retry schedule (`BROADCASTER_RETRY_SCHEDULE`), its ±20 % jitter, and the bounded
//! honouring of `Retry-After` (`shared/spec/broadcaster.md`, "Delivering").

use std::time::Duration;

use rand::Rng;

/// The default schedule: 5s, 5m, 30m, 2h, 5h, 10h, 10h, 24h, 24h (about three days).
pub const DEFAULT_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h,24h,24h";

/// Jitter applied to every scheduled delay: ±20 %.
pub const JITTER: f64 = 0.2;

/// The longest a whole schedule may take, jitter included: well within the 7 days
/// `IC_DELIVERIES` keeps a task, so none expires before it becomes a dead letter.
const MAX_TOTAL: Duration = Duration::from_secs(6 * 86_400);

/// Delays between attempts: after the n-th failed attempt the task waits `delays[n-1]`;
/// after the last one it becomes a dead letter. So there are `delays.len() + 1` attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

/// Parses `5s`, `250ms`, `5m`, `2h`, `1d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let duration = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        "d" => Duration::from_secs(n.checked_mul(86_400)?),
        _ => return None,
    };
    Some(duration)
}

impl RetrySchedule {
    /// Parses a comma list of durations (`5s,5m,30m`); at most 50 entries, each ≤ 7 days.
    pub fn parse(text: &str) -> Result<Self, String> {
        let delays = text
            .split(',')
            .map(|entry| {
                parse_duration(entry)
                    .filter(|d| *d <= Duration::from_secs(7 * 86_400))
                    .ok_or_else(|| {
                        format!(
                            "{:?} is not a duration such as 5s, 5m, 2h (at most 7d)",
                            entry.trim()
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if delays.is_empty() || delays.len() > 50 {
            return Err("between 1 and 50 delays".into());
        }
        let total: Duration = delays.iter().sum();
        if total.mul_f64(1.0 + JITTER) > MAX_TOTAL {
            return Err(
                "delays adding up to at most 5 days (tasks are kept 7 days in IC_DELIVERIES)"
                    .into(),
            );
        }
        Ok(Self { delays })
    }

    /// The schedule as configured.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// Attempts in total: the first one plus one per delay.
    pub fn max_attempts(&self) -> u64 {
        self.delays.len() as u64 + 1
    }

    /// The delay after failed attempt `attempt` (1-based) with jitter, or `None` when it
    /// was the last attempt.
    pub fn delay_after(&self, attempt: u64) -> Option<Duration> {
        let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
        let base = *self.delays.get(index)?;
        let factor = rand::rng().random_range((1.0 - JITTER)..=(1.0 + JITTER));
        Some(base.mul_f64(factor))
    }
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self::parse(DEFAULT_SCHEDULE).expect("the default schedule parses")
    }
}

/// The wait before the next attempt: the schedule's, or longer when the endpoint asked
/// for more (`Retry-After` is "not before"); never shorter, so a `Retry-After: 0` cannot
/// burn every attempt.
pub fn next_delay(scheduled: Duration, retry_after: Option<Duration>) -> Duration {
    retry_after.map_or(scheduled, |asked| asked.max(scheduled))
}

/// The delay asked for by a `Retry-After` header (seconds, or an HTTP date), capped at
/// `max`. `None` when absent or unreadable.
pub fn retry_after(
    value: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
    max: Duration,
) -> Option<Duration> {
    let value = value?.trim();
    let delay = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    Some(delay.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_is_about_three_days_and_ten_attempts() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.max_attempts(), 10);
        let total: Duration = schedule.delays().iter().sum();
        assert_eq!(
            total.as_secs(),
            5 + 300 + 1800 + 7200 + 18_000 + 2 * 36_000 + 2 * 86_400
        );
        assert!(
            schedule.delay_after(10).is_none(),
            "the tenth attempt was the last"
        );
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let schedule = RetrySchedule::parse("100s").unwrap();
        for _ in 0..1000 {
            let d = schedule.delay_after(1).unwrap().as_secs_f64();
            assert!((80.0..=120.0).contains(&d), "{d}");
        }
    }

    #[test]
    fn bad_schedules_name_the_entry() {
        assert!(
            RetrySchedule::parse("5s,soon")
                .unwrap_err()
                .contains("\"soon\"")
        );
        assert!(RetrySchedule::parse("8d").is_err());
        assert!(
            RetrySchedule::parse("3d,3d").is_err(),
            "longer than the tasks are kept"
        );
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    }

    #[test]
    fn retry_after_lengthens_the_wait_and_never_shortens_it() {
        let scheduled = Duration::from_millis(100);
        assert_eq!(next_delay(scheduled, None), scheduled);
        assert_eq!(
            next_delay(scheduled, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(next_delay(scheduled, Some(Duration::ZERO)), scheduled);
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_bounded() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let max = Duration::from_secs(3600);
        assert_eq!(
            retry_after(Some("7"), now, max),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(Some("Thu, 01 Jan 2026 00:00:30 GMT"), now, max),
            Some(Duration::from_secs(30))
        );
        assert_eq!(retry_after(Some("999999"), now, max), Some(max));
        assert_eq!(retry_after(Some("later"), now, max), None);
        assert_eq!(retry_after(None, now, max), None);
    }
}
