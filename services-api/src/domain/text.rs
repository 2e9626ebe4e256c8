//! Validation of free text and URLs (rule 6).

use crate::error::Error;

/// Longest accepted URL.
pub const MAX_URL_LEN: usize = 2048;

/// Trims `value` and bounds it (`ic_http::validate::text`), as this crate's error.
pub fn text(
    field: &'static str,
    value: &str,
    min: usize,
    max: usize,
    multiline: bool,
) -> Result<String, Error> {
    ic_http::validate::text(field, value, min, max, multiline)
        .map_err(|err| Error::validation(field, err.message().to_owned()))
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
}
