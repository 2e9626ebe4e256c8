//! Path normalisation before any route decision (`shared/spec/gateways.md`, "Route
//! check"): percent-decoding, `//`, `.` and `..` segments. A path that escapes the root
//! or is ambiguous after decoding (an encoded `/`, a backslash, NUL or other control
//! characters, invalid UTF-8) is refused, so what the route check sees is exactly what
//! the upstream will route on.

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `..` would climb above the root.
    Escapes,
    /// An encoded separator or a backslash: upstreams could split it differently.
    Ambiguous,
    /// Invalid UTF-8, NUL or another control character.
    Invalid,
}

impl PathError {
    /// A human message for the 400.
    pub fn message(self) -> &'static str {
        match self {
            Self::Escapes => "the path climbs above the root",
            Self::Ambiguous => "the path contains an encoded separator or a backslash",
            Self::Invalid => "the path is not valid UTF-8 or contains control characters",
        }
    }
}

/// Characters re-encoded when a normalised segment is forwarded.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A normalised path: its decoded segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    segments: Vec<String>,
}

impl NormalPath {
    /// The decoded segments.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// `/a/b` with every segment percent-encoded again: what is forwarded upstream.
    pub fn encoded(&self) -> String {
        if self.segments.is_empty() {
            return "/".to_owned();
        }
        let mut out = String::with_capacity(self.segments.iter().map(|s| s.len() + 1).sum());
        for segment in &self.segments {
            out.push('/');
            out.extend(utf8_percent_encode(segment, SEGMENT));
        }
        out
    }

    /// Replaces a leading run of segments (route aliases).
    pub fn replace_prefix(&self, from: &[&str], to: &[&str]) -> Option<Self> {
        let matches = self.segments.len() >= from.len()
            && self.segments.iter().zip(from).all(|(a, b)| a == b);
        matches.then(|| Self {
            segments: to
                .iter()
                .map(|s| (*s).to_owned())
                .chain(self.segments[from.len()..].iter().cloned())
                .collect(),
        })
    }
}

/// Normalises the raw (still percent-encoded) path of a request URI.
pub fn normalize(raw: &str) -> Result<NormalPath, PathError> {
    if raw.contains('\\') {
        return Err(PathError::Ambiguous);
    }
    let mut segments: Vec<String> = Vec::new();
    for raw_segment in raw.split('/') {
        // Most segments hold no escape at all: nothing to decode.
        let decoded = if raw_segment.contains('%') {
            let lower = raw_segment.to_ascii_lowercase();
            if lower.contains("%2f") || lower.contains("%5c") {
                return Err(PathError::Ambiguous);
            }
            percent_decode_str(raw_segment)
                .decode_utf8()
                .map_err(|_| PathError::Invalid)?
        } else {
            std::borrow::Cow::Borrowed(raw_segment)
        };
        if decoded.chars().any(char::is_control) {
            return Err(PathError::Invalid);
        }
        // A decoded `%`, `?` or `#` would be decoded again, or split into a query or a
        // fragment, by an upstream that re-parses the path (a Dapr sidecar does): what the
        // route check saw would not be what the upstream routes on.
        if decoded.contains(['%', '?', '#']) {
            return Err(PathError::Ambiguous);
        }
        match decoded.as_ref() {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::Escapes);
                }
            }
            other => segments.push(other.to_owned()),
        }
    }
    Ok(NormalPath { segments })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        normalize(raw)
            .unwrap_or_else(|e| panic!("{raw:?}: {e:?}"))
            .encoded()
    }

    #[test]
    fn ordinary_paths_are_kept_and_redundancies_removed() {
        assert_eq!(ok("/api/v1/services"), "/api/v1/services");
        assert_eq!(ok("//api//v1/./services/"), "/api/v1/services");
        assert_eq!(ok("/api/v1/x/../services"), "/api/v1/services");
        assert_eq!(ok("/api/v1/services/%61bc"), "/api/v1/services/abc");
        assert_eq!(ok("/api/v1/services/%2e%2e/services"), "/api/v1/services");
        assert_eq!(
            ok("/api/v1/services/slug/caf%C3%A9"),
            "/api/v1/services/slug/caf%C3%A9"
        );
        assert_eq!(ok("/"), "/");
    }

    #[test]
    fn escaping_ambiguous_and_invalid_paths_are_refused() {
        for (raw, err) in [
            ("/..", PathError::Escapes),
            ("/api/../../etc/passwd", PathError::Escapes),
            ("/%2e%2e/%2e%2e/etc", PathError::Escapes),
            ("/api/v1/services%2f..%2fadmin", PathError::Ambiguous),
            ("/api/v1/services%2F", PathError::Ambiguous),
            ("/api\\v1\\services", PathError::Ambiguous),
            ("/api/v1/services/%5c..", PathError::Ambiguous),
            ("/api/v1/services/%252e%252e", PathError::Ambiguous),
            ("/api/v1/content/x%23/download", PathError::Ambiguous),
            ("/api/v1/services/x%3Fstatus=draft", PathError::Ambiguous),
            ("/api/v1/services/%25zz", PathError::Ambiguous),
            ("/api/v1/services/%00", PathError::Invalid),
            ("/api/v1/services/%0a", PathError::Invalid),
            ("/api/v1/services/%ff", PathError::Invalid),
            ("/api/v1/services/%c3", PathError::Invalid),
        ] {
            assert_eq!(normalize(raw), Err(err), "{raw}");
        }
    }

    #[test]
    fn aliases_replace_a_leading_run_of_segments() {
        let p = normalize("/services/featured").unwrap();
        let aliased = p
            .replace_prefix(&["services"], &["api", "v1", "services"])
            .unwrap();
        assert_eq!(aliased.encoded(), "/api/v1/services/featured");
        assert!(
            normalize("/servicesx")
                .unwrap()
                .replace_prefix(&["services"], &["x"])
                .is_none()
        );
    }
}
