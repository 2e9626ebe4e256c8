//! Validation of free text and URLs (rule 6).

use crate::error::Error;

/// Longest accepted URL.
pub const MAX_URL_LEN: usize = 2048;

/// Trims `value` and checks its length in characters is within `min..=max` and that it
/// has no control characters (newlines and tabs allowed when `multiline`). Postgres
/// refuses NUL bytes, so they must never get that far.
pub fn text(
    field: &'static str,
    value: &str,
    min: usize,
    max: usize,
    multiline: bool,
) -> Result<String, Error> {
    let value = value.trim();
    let len = value.chars().count();
    if len < min {
        return Err(Error::validation(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if len > max {
        return Err(Error::validation(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
    {
        return Err(Error::validation(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(value.to_owned())
}

/// An absolute `https` URL with a host, at most 2048 characters.
pub fn https_url(field: &'static str, value: &str) -> Result<String, Error> {
    let value = value.trim();
    let bad = || Error::validation(field, format!("{field} must be an absolute https URL"));
    if value.len() > MAX_URL_LEN {
        return Err(Error::validation(
            field,
            format!("{field} must be at most {MAX_URL_LEN} characters"),
        ));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let url = url::Url::parse(value).map_err(|_| bad())?;
    if url.scheme() != "https"
        || url.host_str().is_none_or(str::is_empty)
        || !value.to_ascii_lowercase().starts_with("https://")
    {
        return Err(bad());
    }
    // Stored in normalised form (lower-case scheme and host, percent-encoding), which is
    // also what the database check expects.
    Ok(url.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_https_urls_pass() {
        assert_eq!(
            https_url("u", "https://example.org/a?b=c").unwrap(),
            "https://example.org/a?b=c"
        );
        assert_eq!(
            https_url("u", "HTTPS://Example.ORG/a").unwrap(),
            "https://example.org/a"
        );
        for bad in [
            "http://example.org",
            "https://",
            "example.org",
            "javascript:alert(1)",
            "https://exa mple.org",
            "ftp://x",
            "/relative",
            "HTTPS//x",
        ] {
            assert!(https_url("u", bad).is_err(), "{bad}");
        }
        assert!(https_url("u", &format!("https://e.org/{}", "a".repeat(2100))).is_err());
    }

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
