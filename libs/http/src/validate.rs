//! Validation of free text every service applies to what clients send
//! (`shared/spec/README.md`: "Backends trust nothing they are sent").

use crate::ApiError;

/// Trims `value` and checks its length in characters is within `min..=max` and that it
/// has no control characters (newlines and tabs allowed when `multiline`). Postgres
/// refuses NUL bytes, so they must never get that far. The error is a 400 naming `field`.
pub fn text(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
    multiline: bool,
) -> Result<String, ApiError> {
    let value = value.trim();
    let len = value.chars().count();
    if len < min {
        return Err(ApiError::validation(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if len > max {
        return Err(ApiError::validation(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
    {
        return Err(ApiError::validation(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(text("t", "  Hi ", 1, 5, false).unwrap(), "Hi");
        assert!(text("t", "   ", 1, 5, false).is_err());
        assert!(text("t", "abcdef", 1, 5, false).is_err());
        assert!(text("t", "a\u{0}b", 1, 5, false).is_err());
        assert!(text("t", "a\nb", 1, 5, false).is_err());
        assert!(text("t", "a\nb", 1, 5, true).is_ok());
        assert_eq!(text("t", "ééééé", 1, 5, false).unwrap(), "ééééé");
    }
}
