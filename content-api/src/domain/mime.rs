//! What a file is, told from its bytes (magic numbers, `infer`), checked against what the
//! uploader declared and against the allowlist (`shared/spec/content-api.md`, "Upload
//! pipeline", step 2).

use super::Category;

/// How many leading bytes are sniffed (office formats name their parts within them).
pub const SNIFF_BYTES: usize = 64 * 1024;

/// A type content-api recognises: its MIME type, file extensions and category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// The canonical MIME type.
    pub mime: &'static str,
    /// Extensions, the first being the one objects are stored with.
    pub extensions: &'static [&'static str],
    /// Its category.
    pub category: Category,
}

const fn known(
    mime: &'static str,
    extensions: &'static [&'static str],
    category: Category,
) -> Known {
    Known {
        mime,
        extensions,
        category,
    }
}

use Category::{Archive, Audio, Document, Image, Video};

/// Every type content-api can tell from the bytes. Only those in the allowlist are
/// accepted; the others are recognised so they can be refused by name.
pub const KNOWN: &[Known] = &[
    known("application/pdf", &["pdf"], Document),
    known("application/msword", &["doc"], Document),
    known("application/vnd.ms-excel", &["xls"], Document),
    known("application/vnd.ms-powerpoint", &["ppt"], Document),
    known(
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        &["docx"],
        Document,
    ),
    known(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        &["xlsx"],
        Document,
    ),
    known(
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        &["pptx"],
        Document,
    ),
    known(
        "application/vnd.oasis.opendocument.text",
        &["odt"],
        Document,
    ),
    known(
        "application/vnd.oasis.opendocument.spreadsheet",
        &["ods"],
        Document,
    ),
    known(
        "application/vnd.oasis.opendocument.presentation",
        &["odp"],
        Document,
    ),
    known("text/plain", &["txt", "text", "log"], Document),
    known("text/markdown", &["md", "markdown"], Document),
    known("text/csv", &["csv"], Document),
    known("image/png", &["png"], Image),
    known("image/jpeg", &["jpg", "jpeg", "jpe"], Image),
    known("image/gif", &["gif"], Image),
    known("image/webp", &["webp"], Image),
    known("image/svg+xml", &["svg"], Image),
    known("video/mp4", &["mp4", "m4v"], Video),
    known("video/webm", &["webm"], Video),
    known("audio/mpeg", &["mp3"], Audio),
    known("audio/wav", &["wav"], Audio),
    known("audio/ogg", &["ogg", "oga"], Audio),
    known("application/zip", &["zip"], Archive),
    // Recognised to be refused: markup a browser would run, programs.
    known("text/html", &["html", "htm"], Document),
    known("text/xml", &["xml"], Document),
    known("application/x-executable", &["elf", "so"], Archive),
    known(
        "application/vnd.microsoft.portable-executable",
        &["exe", "dll"],
        Archive,
    ),
    known("application/x-mach-binary", &["macho"], Archive),
    known("text/x-shellscript", &["sh"], Document),
];

/// The default allowlist: documents, office files, text, common images (SVG only when
/// an operator adds it; it is then always served as an attachment), video, audio, zip.
pub const DEFAULT_ALLOWED_MIME_TYPES: &[&str] = &[
    "application/pdf",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
    "text/plain",
    "text/markdown",
    "text/csv",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "video/mp4",
    "video/webm",
    "audio/mpeg",
    "audio/wav",
    "audio/ogg",
    "application/zip",
];

/// Whether `mime` is a type content-api can recognise (what an allowlist may name).
pub fn is_known_mime_type(mime: &str) -> bool {
    KNOWN.iter().any(|k| k.mime == mime)
}

/// The entry of a MIME type (aliases such as `image/jpg`, `audio/x-wav` included).
pub fn by_mime(mime: &str) -> Option<&'static Known> {
    let mime = canonical(mime);
    KNOWN.iter().find(|k| k.mime == mime)
}

/// The entry a file extension names.
pub fn by_extension(extension: &str) -> Option<&'static Known> {
    let extension = extension.to_ascii_lowercase();
    KNOWN
        .iter()
        .find(|k| k.extensions.contains(&extension.as_str()))
}

/// Common aliases mapped to the canonical spelling; parameters (`; charset=…`) dropped.
fn canonical(mime: &str) -> String {
    let bare = mime
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match bare.as_str() {
        "image/jpg" | "image/pjpeg" => "image/jpeg".into(),
        "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => "audio/wav".into(),
        "audio/mp3" => "audio/mpeg".into(),
        "application/x-zip-compressed" => "application/zip".into(),
        "application/xml" => "text/xml".into(),
        "text/x-markdown" => "text/markdown".into(),
        _ => bare,
    }
}

/// The type the leading bytes show, if content-api recognises it.
pub fn sniff(head: &[u8]) -> Option<&'static Known> {
    if let Some(found) = infer::get(head) {
        if let Some(known) = by_mime(found.mime_type()) {
            return Some(known);
        }
        // A type infer knows and we do not (fonts, other archives, …): nothing to map.
        return None;
    }
    looks_like_text(head)
        .then(|| by_mime("text/plain"))
        .flatten()
}

/// UTF-8 (a character cut at the end of the sniffed bytes allowed), no NUL, and hardly
/// any control characters besides whitespace.
fn looks_like_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(err) => err.error_len().is_none() && head.len() - err.valid_up_to() < 4,
    };
    if !valid || head.is_empty() {
        return false;
    }
    let controls = head
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c))
        .count();
    !head.contains(&0) && controls * 100 <= head.len()
}

/// Why a file's type is refused (415).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeRejection {
    /// The bytes are of no type content-api recognises.
    #[error("the file's type could not be recognised from its content")]
    Unrecognised,
    /// The bytes show a type outside the allowlist.
    #[error("files of type {0} are not accepted")]
    NotAllowed(&'static str),
    /// The declared type or the extension says something else than the bytes.
    #[error("the file is declared as {declared} but its content is {detected}")]
    Contradiction {
        /// What the upload said (type or extension).
        declared: String,
        /// What the bytes are.
        detected: &'static str,
    },
}

/// Decides the type of an upload from its leading bytes, the declared `Content-Type` of
/// the part (if any) and the file name's extension (if any).
///
/// Text has no magic number: plain text may be declared (or named) more precisely as
/// Markdown or CSV, and is then stored as such. Any other disagreement is refused.
pub fn decide(
    head: &[u8],
    declared: Option<&str>,
    extension: Option<&str>,
    allowed: &[String],
) -> Result<&'static Known, TypeRejection> {
    let detected = sniff(head).ok_or(TypeRejection::Unrecognised)?;
    let declared_type = declared
        .map(canonical)
        .filter(|d| d != "application/octet-stream" && !d.is_empty());
    let mut decided = detected;
    if let Some(declared) = &declared_type {
        match by_mime(declared) {
            Some(claimed) if claimed == detected => {}
            Some(claimed) if refines_text(detected, claimed) => decided = claimed,
            _ => {
                return Err(TypeRejection::Contradiction {
                    declared: declared.clone(),
                    detected: detected.mime,
                });
            }
        }
    }
    if let Some(extension) = extension
        && let Some(named) = by_extension(extension)
        && named != decided
    {
        if refines_text(detected, named) {
            // `notes.md` of plain text is Markdown, unless its declared type said otherwise.
            if declared_type.is_none() {
                decided = named;
            }
        } else if named != detected {
            return Err(TypeRejection::Contradiction {
                declared: format!(".{}", extension.to_ascii_lowercase()),
                detected: detected.mime,
            });
        }
    }
    if !allowed.iter().any(|a| a == decided.mime) {
        return Err(TypeRejection::NotAllowed(decided.mime));
    }
    Ok(decided)
}

/// Plain text refined as Markdown or CSV.
fn refines_text(detected: &Known, claimed: &Known) -> bool {
    detected.mime == "text/plain" && matches!(claimed.mime, "text/markdown" | "text/csv")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] =
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    const PDF: &[u8] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n";
    const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0\x01\0\0\0\
        \0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

    fn defaults() -> Vec<String> {
        DEFAULT_ALLOWED_MIME_TYPES
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }

    #[test]
    fn the_bytes_decide_and_agreeing_declarations_pass() {
        let allowed = defaults();
        assert_eq!(
            decide(PNG, Some("image/png"), Some("png"), &allowed)
                .unwrap()
                .mime,
            "image/png"
        );
        assert_eq!(
            decide(PDF, None, Some("PDF"), &allowed).unwrap().mime,
            "application/pdf"
        );
        assert_eq!(
            decide(PDF, Some("application/octet-stream"), None, &allowed)
                .unwrap()
                .mime,
            "application/pdf"
        );
        assert_eq!(
            decide(PNG, Some("image/PNG; q=1"), None, &allowed)
                .unwrap()
                .category,
            Category::Image
        );
    }

    #[test]
    fn png_bytes_declared_as_pdf_are_a_contradiction() {
        let err = decide(PNG, Some("application/pdf"), Some("pdf"), &defaults()).unwrap_err();
        assert!(
            matches!(
                err,
                TypeRejection::Contradiction {
                    detected: "image/png",
                    ..
                }
            ),
            "{err}"
        );
        let err = decide(PNG, None, Some("pdf"), &defaults()).unwrap_err();
        assert!(matches!(err, TypeRejection::Contradiction { .. }), "{err}");
    }

    #[test]
    fn an_elf_binary_renamed_pdf_is_refused() {
        assert!(decide(ELF, Some("application/pdf"), Some("pdf"), &defaults()).is_err());
        assert_eq!(
            decide(ELF, None, None, &defaults()).unwrap_err(),
            TypeRejection::NotAllowed("application/x-executable")
        );
    }

    #[test]
    fn html_declared_as_text_is_refused() {
        let html = b"  <!DOCTYPE html><html><script>alert(1)</script></html>";
        let err = decide(html, Some("text/plain"), Some("txt"), &defaults()).unwrap_err();
        assert!(
            matches!(
                err,
                TypeRejection::Contradiction {
                    detected: "text/html",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            decide(html, None, None, &defaults()).unwrap_err(),
            TypeRejection::NotAllowed("text/html")
        );
    }

    #[test]
    fn plain_text_may_be_named_markdown_or_csv() {
        let allowed = defaults();
        let md = "# Title\n\nSome *text*, ünïcode.\n".as_bytes();
        assert_eq!(
            decide(md, None, Some("md"), &allowed).unwrap().mime,
            "text/markdown"
        );
        assert_eq!(
            decide(b"a,b\n1,2\n", Some("text/csv"), Some("csv"), &allowed)
                .unwrap()
                .mime,
            "text/csv"
        );
        assert_eq!(decide(md, None, None, &allowed).unwrap().mime, "text/plain");
        assert!(decide(md, Some("image/png"), None, &allowed).is_err());
    }

    #[test]
    fn binary_noise_is_unrecognised_and_the_allowlist_is_enforced() {
        assert_eq!(
            decide(&[0, 1, 2, 3, 0xff, 0xfe], None, None, &defaults()).unwrap_err(),
            TypeRejection::Unrecognised
        );
        let only_pdf = vec!["application/pdf".to_owned()];
        assert_eq!(
            decide(PNG, None, None, &only_pdf).unwrap_err(),
            TypeRejection::NotAllowed("image/png")
        );
    }

    #[test]
    fn a_character_cut_at_the_end_of_the_sniffed_bytes_is_still_text() {
        let text = "é".repeat(10);
        let cut = &text.as_bytes()[..text.len() - 1];
        assert!(looks_like_text(cut));
        assert!(!looks_like_text(b"\xff\xfeabc"));
    }
}
