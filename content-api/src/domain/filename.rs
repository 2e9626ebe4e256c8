//! Uploaded file names: sanitised on the way in (no path, no control characters, at
//! most 255 bytes) and encoded per RFC 6266 on the way out.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Longest stored name, in bytes.
pub const MAX_FILENAME_BYTES: usize = 255;

/// The name a client sent, made safe to store and to show: the last path component
/// only (either slash), control and bidirectional-override characters removed, leading
/// dots and surrounding spaces trimmed, cut to 255 bytes keeping the extension. An
/// empty result becomes `file`.
pub fn sanitize(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim();
    let name = if cleaned.is_empty() { "file" } else { cleaned };
    truncate(name, MAX_FILENAME_BYTES)
}

/// Bidirectional controls can make `exe.pdf` display as `fdp.exe`.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Cuts `name` to at most `max` bytes on a character boundary, keeping a short extension.
fn truncate(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let (stem, extension) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && ext.len() <= 16 => (stem, Some(ext)),
        _ => (name, None),
    };
    let room = max - extension.map_or(0, |e| e.len() + 1);
    let mut end = room.min(stem.len());
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    match extension {
        Some(ext) => format!("{}.{ext}", &stem[..end]),
        None => stem[..end].to_owned(),
    }
}

/// The extension of a sanitised name, if it has one.
pub fn extension(name: &str) -> Option<&str> {
    name.rsplit_once('.').map(|(_, ext)| ext).filter(|ext| {
        !ext.is_empty() && ext.len() <= 16 && ext.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// RFC 5987 `attr-char`s are left as they are; everything else is percent-encoded.
const ATTR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `Content-Disposition` (RFC 6266): `attachment` or `inline`, an ASCII `filename` for
/// old clients and the exact name as `filename*` (UTF-8, percent-encoded).
pub fn content_disposition(inline: bool, name: &str) -> String {
    let ascii: String = deunicode::deunicode(name)
        .chars()
        .map(|c| match c {
            '"' | '\\' | ';' | '%' => '_',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '_',
        })
        .collect();
    format!(
        "{}; filename=\"{ascii}\"; filename*=UTF-8''{}",
        if inline { "inline" } else { "attachment" },
        utf8_percent_encode(name, ATTR)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_stripped_to_the_last_component() {
        assert_eq!(sanitize("../../etc/passwd"), "passwd");
        assert_eq!(sanitize("C:\\Users\\x\\report.pdf"), "report.pdf");
        assert_eq!(sanitize("/"), "file");
        assert_eq!(sanitize(".."), "file");
        assert_eq!(sanitize(".htaccess"), "htaccess");
    }

    #[test]
    fn control_and_bidi_characters_are_removed() {
        assert_eq!(sanitize("a\r\nb\u{0}c.pdf"), "abc.pdf");
        assert_eq!(sanitize("invoice\u{202e}fdp.exe"), "invoicefdp.exe");
        assert_eq!(sanitize("  spaced name.txt  "), "spaced name.txt");
    }

    #[test]
    fn long_names_are_cut_to_255_bytes_keeping_the_extension() {
        let long = format!("{}.pdf", "é".repeat(300));
        let cut = sanitize(&long);
        assert!(cut.len() <= 255, "{}", cut.len());
        assert!(cut.ends_with(".pdf"));
        assert_eq!(sanitize(&"x".repeat(400)).len(), 255);
    }

    #[test]
    fn dispositions_carry_an_ascii_fallback_and_the_exact_name() {
        assert_eq!(
            content_disposition(false, "Résumé \"final\".pdf"),
            "attachment; filename=\"Resume _final_.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%20%22final%22.pdf"
        );
        assert!(content_disposition(true, "a.png").starts_with("inline; "));
    }

    #[test]
    fn extensions_are_short_and_alphanumeric() {
        assert_eq!(extension("a.tar.gz"), Some("gz"));
        assert_eq!(extension("noext"), None);
        assert_eq!(extension("weird.p d f"), None);
    }
}
