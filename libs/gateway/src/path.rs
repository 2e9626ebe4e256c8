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

/// A normalised path, kept as it is forwarded: `/` or `/a/b`, every segment non-empty,
/// neither `.` nor `..`, and percent-encoded again ([`SEGMENT`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    encoded: String,
}

/// Whether `segment` is forwarded as it is: nothing in it is decoded or encoded again.
/// Route template segments must be (their comparison with a path's encoded segments is
/// then the comparison of the decoded ones).
pub fn is_plain(segment: &str) -> bool {
    segment.bytes().all(is_plain_byte)
}

impl NormalPath {
    /// The segments, percent-encoded as forwarded. A segment equals a [plain](is_plain)
    /// string exactly when its decoded text does.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        Segments {
            rest: self.encoded.get(1..).unwrap_or_default(),
        }
    }

    /// `/a/b` with every segment percent-encoded again: what is forwarded upstream.
    pub fn encoded(&self) -> &str {
        &self.encoded
    }

    /// [`NormalPath::encoded`], taken.
    pub fn into_encoded(self) -> String {
        self.encoded
    }

    /// Replaces a leading run of segments (route aliases; `from` and `to` are
    /// [plain](is_plain) segments).
    pub fn replace_prefix(&self, from: &[&str], to: &[&str]) -> Option<Self> {
        let mut segments = self.segments();
        if !from.iter().all(|f| segments.next() == Some(*f)) {
            return None;
        }
        let mut encoded = String::with_capacity(self.encoded.len() + 16);
        for segment in to.iter().copied().chain(segments) {
            encoded.push('/');
            encoded.push_str(segment);
        }
        if encoded.is_empty() {
            encoded.push('/');
        }
        Some(Self { encoded })
    }
}

/// Normalises the raw (still percent-encoded) path of a request URI.
pub fn normalize(raw: &str) -> Result<NormalPath, PathError> {
    if already_normal(raw) {
        return Ok(NormalPath {
            encoded: raw.to_owned(),
        });
    }
    normalize_segments(raw)
}

/// Most paths are already normal: plain segments, none empty or starting with a dot
/// (`.`, `..`). They are forwarded as they came.
fn already_normal(raw: &str) -> bool {
    let mut previous = 0;
    raw.starts_with('/')
        && raw.bytes().all(|b| {
            // After a `/`: neither an empty segment nor one starting with a dot.
            let fine = if previous == b'/' {
                b != b'/' && b != b'.' && is_plain_byte(b)
            } else {
                b == b'/' || is_plain_byte(b)
            };
            previous = b;
            fine
        })
        && (raw.len() == 1 || previous != b'/')
}

/// The bytes of [plain](is_plain) segments, by value.
const PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~!$&'()*+,;=:@";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

fn is_plain_byte(b: u8) -> bool {
    PLAIN[usize::from(b)]
}

/// A [`NormalPath`]'s segments.
#[derive(Debug, Clone)]
struct Segments<'a> {
    /// What follows the `/` before the next segment.
    rest: &'a str,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        // `/` is ASCII: both slices fall on character boundaries.
        let (segment, rest) = match self.rest.bytes().position(|b| b == b'/') {
            Some(at) => (&self.rest[..at], &self.rest[at + 1..]),
            None => (self.rest, ""),
        };
        self.rest = rest;
        Some(segment)
    }
}

/// [`normalize`] segment by segment: decoded, checked, re-encoded.
fn normalize_segments(raw: &str) -> Result<NormalPath, PathError> {
    if raw.contains('\\') {
        return Err(PathError::Ambiguous);
    }
    // Where each kept segment starts in `encoded`, for `..` to drop the last one.
    let mut starts: Vec<usize> = Vec::new();
    let mut encoded = String::with_capacity(raw.len());
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
            ".." => match starts.pop() {
                Some(start) => encoded.truncate(start),
                None => return Err(PathError::Escapes),
            },
            other => {
                starts.push(encoded.len());
                encoded.push('/');
                encoded.extend(utf8_percent_encode(other, SEGMENT));
            }
        }
    }
    if encoded.is_empty() {
        encoded.push('/');
    }
    Ok(NormalPath { encoded })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        normalize(raw)
            .unwrap_or_else(|e| panic!("{raw:?}: {e:?}"))
            .into_encoded()
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
    fn paths_forwarded_as_they_came_are_exactly_those_normalised_so() {
        // Every path up to 7 characters over an alphabet of the pieces that matter: the
        // shortcut for already normal paths never decides otherwise than the segments.
        const ALPHABET: &[u8] = b"/.a%2ef~";
        let mut raw = vec![b'/'];
        let mut shortcut = 0;
        let mut checked = 0;
        fn each(raw: &mut Vec<u8>, left: usize, visit: &mut dyn FnMut(&str)) {
            visit(std::str::from_utf8(raw).unwrap());
            if left == 0 {
                return;
            }
            for b in ALPHABET {
                raw.push(*b);
                each(raw, left - 1, visit);
                raw.pop();
            }
        }
        each(&mut raw, 6, &mut |raw| {
            assert_eq!(normalize(raw), normalize_segments(raw), "{raw:?}");
            if already_normal(raw) {
                shortcut += 1;
            }
            checked += 1;
        });
        assert!(
            checked > 200_000 && shortcut > 1_000,
            "{checked} {shortcut}"
        );
    }

    #[test]
    fn plain_bytes_are_never_decoded_split_or_encoded_again() {
        for b in 0..=u8::MAX {
            if !is_plain_byte(b) {
                continue;
            }
            assert!(b != b'/' && b != b'%' && b != b'\\' && b.is_ascii(), "{b}");
            let text = char::from(b).to_string();
            assert_eq!(utf8_percent_encode(&text, SEGMENT).to_string(), text, "{b}");
        }
        assert!(b"-._~!$&'()*+,;=:@az09AZ".iter().all(|b| is_plain_byte(*b)));
    }

    #[test]
    fn segments_are_those_forwarded() {
        let path = normalize("/api/v1/services/caf%C3%A9/%7e").unwrap();
        assert_eq!(
            path.segments().collect::<Vec<_>>(),
            ["api", "v1", "services", "caf%C3%A9", "~"]
        );
        assert_eq!(normalize("/").unwrap().segments().count(), 0);
        assert!(is_plain("services") && is_plain("v1") && !is_plain("caf%C3%A9"));
    }

    #[test]
    fn aliases_replace_a_leading_run_of_segments() {
        let p = normalize("/services/featured").unwrap();
        let aliased = p
            .replace_prefix(&["services"], &["api", "v1", "services"])
            .unwrap();
        assert_eq!(aliased.encoded(), "/api/v1/services/featured");
        let whole = normalize("/services").unwrap();
        assert_eq!(
            whole.replace_prefix(&["services"], &[]).unwrap().encoded(),
            "/"
        );
        assert!(
            normalize("/servicesx")
                .unwrap()
                .replace_prefix(&["services"], &["x"])
                .is_none()
        );
    }
}
