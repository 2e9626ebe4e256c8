//! `Range` requests (RFC 9110 §14) over an object of known size, parsed by
//! `http-range-header` (the parser tower-http uses).

use std::{num::NonZeroUsize, ops::RangeInclusive};

use http_range_header::{RangeUnsatisfiableError, parse_range_header_with_max_ranges};

/// Most ranges one request may ask for (more is refused rather than served).
pub const MAX_RANGES: usize = 16;

/// What to send for a request's `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranges {
    /// The whole object (no header, or one that is not a valid byte range set: RFC 9110
    /// says to ignore those).
    Full,
    /// These ranges, in the order asked (206).
    Partial(Vec<RangeInclusive<u64>>),
    /// None of the ranges is within the object, or they overlap (416).
    Unsatisfiable,
}

/// Evaluates `header` against an object of `size` bytes.
pub fn evaluate(header: Option<&str>, size: u64) -> Ranges {
    let Some(header) = header else {
        return Ranges::Full;
    };
    let max = NonZeroUsize::new(MAX_RANGES).unwrap_or(NonZeroUsize::MIN);
    let parsed = match parse_range_header_with_max_ranges(header, max) {
        Ok(parsed) => parsed,
        Err(RangeUnsatisfiableError::Invalid(_)) => return Ranges::Full,
        Err(_) => return Ranges::Unsatisfiable,
    };
    match parsed.validate(size) {
        Ok(ranges) if ranges.is_empty() => Ranges::Full,
        Ok(ranges) => Ranges::Partial(ranges),
        Err(RangeUnsatisfiableError::Invalid(_)) => Ranges::Full,
        Err(_) => Ranges::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_last_and_suffix_ranges() {
        assert_eq!(
            evaluate(Some("bytes=0-9"), 100),
            Ranges::Partial(vec![0..=9])
        );
        assert_eq!(
            evaluate(Some("bytes=90-"), 100),
            Ranges::Partial(vec![90..=99])
        );
        assert_eq!(
            evaluate(Some("bytes=-5"), 100),
            Ranges::Partial(vec![95..=99])
        );
        assert_eq!(
            evaluate(Some("bytes=-500"), 100),
            Ranges::Partial(vec![0..=99])
        );
        assert_eq!(
            evaluate(Some("bytes=50-5000"), 100),
            Ranges::Partial(vec![50..=99])
        );
    }

    #[test]
    fn ranges_past_the_end_are_unsatisfiable_and_garbage_is_ignored() {
        assert_eq!(evaluate(Some("bytes=100-"), 100), Ranges::Unsatisfiable);
        assert_eq!(evaluate(Some("bytes=200-300"), 100), Ranges::Unsatisfiable);
        assert_eq!(evaluate(Some("items=0-1"), 100), Ranges::Full);
        assert_eq!(evaluate(Some("bytes=9-1"), 100), Ranges::Full);
        assert_eq!(evaluate(None, 100), Ranges::Full);
    }

    #[test]
    fn several_ranges_are_kept_in_order_up_to_the_limit() {
        assert_eq!(
            evaluate(Some("bytes=0-1,10-11,-2"), 100),
            Ranges::Partial(vec![0..=1, 10..=11, 98..=99])
        );
        let many: Vec<String> = (0..20)
            .map(|i| format!("{}-{}", i * 3, i * 3 + 1))
            .collect();
        assert_eq!(
            evaluate(Some(&format!("bytes={}", many.join(","))), 100),
            Ranges::Unsatisfiable
        );
    }
}
