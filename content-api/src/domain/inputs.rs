//! What clients send: the upload's metadata fields and the metadata update body.

use ic_http::{ApiError, validate::text};
use serde::Deserialize;

use super::{AccessLevel, Category};

/// Most tags on one file.
pub const MAX_TAGS: usize = 50;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 50;
/// Longest alt text, in characters.
pub const MAX_ALT_TEXT_CHARS: usize = 500;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 5000;

/// The validated metadata of an upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Alternative text (images).
    pub alt_text: Option<String>,
    /// Free description.
    pub description: Option<String>,
    /// Tags, trimmed, without duplicates.
    pub tags: Option<Vec<String>>,
    /// Who may read it.
    pub access_level: Option<AccessLevel>,
    /// Its category (uploads only; derived from the type when absent).
    pub content_category: Option<Category>,
}

/// `alt_text` (0..=500 characters, one line; empty clears it).
pub fn alt_text(value: &str) -> Result<Option<String>, ApiError> {
    optional_text("alt_text", value, MAX_ALT_TEXT_CHARS, false)
}

/// `description` (0..=5000 characters, several lines; empty clears it).
pub fn description(value: &str) -> Result<Option<String>, ApiError> {
    optional_text("description", value, MAX_DESCRIPTION_CHARS, true)
}

fn optional_text(
    field: &str,
    value: &str,
    max: usize,
    multiline: bool,
) -> Result<Option<String>, ApiError> {
    let value = text(field, value, 0, max, multiline)?;
    Ok((!value.is_empty()).then_some(value))
}

/// `tags` as a multipart field: a JSON array of strings, or a comma list.
pub fn tags_field(value: &str) -> Result<Vec<String>, ApiError> {
    let trimmed = value.trim();
    let raw: Vec<String> = if trimmed.starts_with('[') {
        serde_json::from_str(trimmed).map_err(|_| {
            ApiError::validation(
                "tags",
                "tags must be a JSON array of strings or a comma list",
            )
        })?
    } else {
        trimmed.split(',').map(str::to_owned).collect()
    };
    tags(&raw)
}

/// Tags: each 1..=50 characters without control characters or commas, at most 50,
/// duplicates dropped (first spelling kept), blanks of a comma list ignored.
pub fn tags(raw: &[String]) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::new();
    for tag in raw {
        let tag = text("tags", tag, 0, MAX_TAG_CHARS, false)?;
        if tag.is_empty() {
            continue;
        }
        if tag.contains(',') {
            return Err(ApiError::validation(
                "tags",
                "a tag must not contain a comma",
            ));
        }
        if !out.iter().any(|t| t.eq_ignore_ascii_case(&tag)) {
            out.push(tag);
        }
    }
    if out.len() > MAX_TAGS {
        return Err(ApiError::validation(
            "tags",
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    Ok(out)
}

/// The `tags` filter of the public list: a comma list of at most 50 tags of at most 50
/// characters. `None` when a tag holds a control character: no stored tag does, so
/// nothing can match.
pub fn tags_filter(value: &str) -> Result<Option<Vec<String>>, ApiError> {
    let tags: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    if tags.len() > MAX_TAGS {
        return Err(ApiError::validation(
            "tags",
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    if tags.iter().any(|t| t.chars().count() > MAX_TAG_CHARS) {
        return Err(ApiError::validation(
            "tags",
            format!("a tag has at most {MAX_TAG_CHARS} characters"),
        ));
    }
    Ok((!tags.iter().any(|t| t.chars().any(char::is_control))).then_some(tags))
}

/// A MIME type filter: `type/subtype` of RFC 6838 token characters, at most 255.
pub fn mime_filter(value: &str) -> Result<String, ApiError> {
    let token = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    match value.split_once('/') {
        Some((kind, sub)) if value.len() <= 255 && token(kind) && token(sub) => {
            Ok(value.to_ascii_lowercase())
        }
        _ => Err(ApiError::validation(
            "mime_type",
            "mime_type must be a MIME type such as application/pdf",
        )),
    }
}

/// An enum-valued multipart field (`access_level`, `content_category`).
pub fn enum_field<T: serde::de::DeserializeOwned>(
    field: &str,
    value: &str,
    expected: &str,
) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::String(value.trim().to_owned()))
        .map_err(|_| ApiError::validation(field, format!("{field} must be one of {expected}")))
}

/// `PUT /admin/api/v1/content/{id}`: metadata only; absent fields are left as they are.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateContent {
    alt_text: Option<String>,
    description: Option<String>,
    tags: Option<Vec<String>>,
    access_level: Option<AccessLevel>,
}

/// A validated metadata update: `None` leaves a field as it is; `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patch {
    /// New alt text.
    pub alt_text: Option<Option<String>>,
    /// New description.
    pub description: Option<Option<String>>,
    /// New tags (an empty list clears them).
    pub tags: Option<Vec<String>>,
    /// New access level.
    pub access_level: Option<AccessLevel>,
}

impl UpdateContent {
    /// Validates the update; an update that changes nothing is refused.
    pub fn validate(self) -> Result<Patch, ApiError> {
        if self.alt_text.is_none()
            && self.description.is_none()
            && self.tags.is_none()
            && self.access_level.is_none()
        {
            return Err(ApiError::validation(
                "body",
                "give at least one of alt_text, description, tags, access_level",
            ));
        }
        Ok(Patch {
            alt_text: self.alt_text.as_deref().map(alt_text).transpose()?,
            description: self.description.as_deref().map(description).transpose()?,
            tags: self.tags.as_deref().map(tags).transpose()?,
            access_level: self.access_level,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_come_as_a_json_array_or_a_comma_list() {
        assert_eq!(tags_field(r#"["a", "b"]"#).unwrap(), ["a", "b"]);
        assert_eq!(tags_field(" a, b ,,A ").unwrap(), ["a", "b"]);
        assert!(tags_field("[1, 2]").is_err());
        assert!(tags_field(&"x,".repeat(60)).is_ok());
        let many: Vec<String> = (0..51).map(|i| i.to_string()).collect();
        assert!(tags_field(&many.join(",")).is_err());
        assert!(tags_field(&"y".repeat(51)).is_err());
        assert!(tags_field("bad\u{7}tag").is_err());
    }

    #[test]
    fn list_filters_are_bounded_and_unmatchable_tags_match_nothing() {
        assert_eq!(
            tags_filter("a, b,,").unwrap(),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(tags_filter("a,\u{16}b").unwrap(), None);
        assert!(tags_filter(&"x,".repeat(51)).is_err());
        assert!(tags_filter(&"y".repeat(51)).is_err());
        assert_eq!(mime_filter("Application/PDF").unwrap(), "application/pdf");
        for bad in ["null", "a/", "/b", "a/b/c", "a b/c", "a/b;q=1"] {
            assert!(mime_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn updates_name_their_bad_field() {
        let bad: UpdateContent = serde_json::from_str(r#"{"alt_text": "a\u0000b"}"#).unwrap();
        assert_eq!(
            bad.validate().unwrap_err().envelope()["error"]["details"]["field"],
            "alt_text"
        );
        assert!(serde_json::from_str::<UpdateContent>(r#"{"storage_path": "x"}"#).is_err());
        let empty: UpdateContent = serde_json::from_str("{}").unwrap();
        assert!(empty.validate().is_err());
        let clear: UpdateContent = serde_json::from_str(r#"{"description": ""}"#).unwrap();
        assert_eq!(clear.validate().unwrap().description, Some(None));
    }

    #[test]
    fn enum_fields_refuse_unknown_values() {
        assert_eq!(
            enum_field::<AccessLevel>("access_level", " public ", "public, internal, restricted")
                .unwrap(),
            AccessLevel::Public
        );
        assert!(enum_field::<AccessLevel>("access_level", "secret", "…").is_err());
    }
}

/// A date bound in a query string: an RFC 3339 date-time, or a calendar date
/// (`YYYY-MM-DD`, midnight UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateBound(pub chrono::DateTime<chrono::Utc>);

impl<'de> Deserialize<'de> for DateBound {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        parse_date_bound(&raw).map(Self).ok_or_else(|| {
            serde::de::Error::custom("expected an RFC 3339 date-time or a date (YYYY-MM-DD)")
        })
    }
}

fn parse_date_bound(raw: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Some(at.to_utc());
    }
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// The `[start, end)` window of `start_date`/`end_date`: `end` defaults to now, `start`
/// to 30 days before `end`; `start` must be before `end`, and the window at most
/// `max_days` long. Errors name the field.
pub fn window(
    start: Option<DateBound>,
    end: Option<DateBound>,
    max_days: i64,
) -> Result<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>), ApiError> {
    let end_at = end.map_or_else(chrono::Utc::now, |d| d.0);
    let start_at = start.map_or(end_at - chrono::Duration::days(30), |d| d.0);
    if start_at >= end_at {
        let field = if end.is_some() {
            "end_date"
        } else {
            "start_date"
        };
        return Err(ApiError::validation(
            field,
            "start_date must be before end_date (or now)",
        ));
    }
    if end_at - start_at > chrono::Duration::days(max_days) {
        return Err(ApiError::validation(
            "start_date",
            format!("ask for at most {max_days} days at a time"),
        ));
    }
    Ok((start_at, end_at))
}

#[cfg(test)]
mod date_tests {
    use super::*;

    #[test]
    fn date_bounds_take_rfc3339_or_a_date_and_windows_are_bounded() {
        let day = parse_date_bound("2026-03-01").unwrap();
        assert_eq!(day.to_rfc3339(), "2026-03-01T00:00:00+00:00");
        assert!(parse_date_bound("2026-03-01T10:00:00+02:00").is_some());
        assert!(parse_date_bound("yesterday").is_none());
        assert!(parse_date_bound("2026-02-30").is_none());
        let (start, end) = window(Some(DateBound(day)), None, 400).unwrap();
        assert_eq!(start, day);
        assert!(end > start);
        let err = window(Some(DateBound(day)), Some(DateBound(day)), 400).unwrap_err();
        assert_eq!(err.envelope()["error"]["details"]["field"], "end_date");
        let long = DateBound(day - chrono::Duration::days(40));
        let err = window(Some(long), Some(DateBound(day)), 31).unwrap_err();
        assert_eq!(err.envelope()["error"]["details"]["field"], "start_date");
    }
}
