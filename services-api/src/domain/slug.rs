//! Slugs (rule 2): lower case, ASCII-folded, hyphen separated, at most 100 characters.

/// Longest slug.
pub const MAX_SLUG_LEN: usize = 100;

/// Generates a slug from a title: transliterated to ASCII, lower case, runs of anything
/// else turned into one hyphen, trimmed, cut at 100 characters on a word boundary when
/// possible. `None` when nothing is left (a title of only symbols).
pub fn slugify(title: &str) -> Option<String> {
    let ascii = deunicode::deunicode(title).to_ascii_lowercase();
    let mut slug = String::with_capacity(ascii.len().min(MAX_SLUG_LEN + 1));
    let mut pending_hyphen = false;
    for c in ascii.chars() {
        if c.is_ascii_alphanumeric() {
            if pending_hyphen && !slug.is_empty() {
                slug.push('-');
            }
            pending_hyphen = false;
            slug.push(c);
        } else {
            pending_hyphen = true;
        }
    }
    if slug.len() > MAX_SLUG_LEN {
        slug.truncate(MAX_SLUG_LEN);
        if let Some(cut) = slug.rfind('-').filter(|i| *i >= MAX_SLUG_LEN / 2) {
            slug.truncate(cut);
        }
        while slug.ends_with('-') {
            slug.pop();
        }
    }
    (!slug.is_empty()).then_some(slug)
}

/// Whether `slug` is well formed: `^[a-z0-9]+(-[a-z0-9]+)*$`, at most 100 characters.
pub fn is_valid(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= MAX_SLUG_LEN
        && !slug.starts_with('-')
        && !slug.ends_with('-')
        && !slug.contains("--")
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_become_folded_hyphenated_slugs() {
        assert_eq!(
            slugify("Cardiology Clinic").as_deref(),
            Some("cardiology-clinic")
        );
        assert_eq!(
            slugify("  Crème Brûlée & Co. ").as_deref(),
            Some("creme-brulee-co")
        );
        assert_eq!(
            slugify("Ärztliche Beratung — 24/7").as_deref(),
            Some("arztliche-beratung-24-7")
        );
        assert_eq!(slugify("!!!"), None);
        let long = "word ".repeat(60);
        let slug = slugify(&long).unwrap();
        assert!(slug.len() <= MAX_SLUG_LEN && is_valid(&slug), "{slug}");
    }

    #[test]
    fn every_generated_slug_is_valid() {
        for title in [
            "a",
            "A-B",
            "x--y",
            "-lead",
            "trail-",
            "日本語",
            "مرحبا",
            "x\u{0}y",
            &"é".repeat(300),
        ] {
            if let Some(slug) = slugify(title) {
                assert!(is_valid(&slug), "{title:?} -> {slug:?}");
            }
        }
    }

    #[test]
    fn malformed_slugs_are_rejected() {
        for bad in [
            "",
            "A",
            "a b",
            "a--b",
            "-a",
            "a-",
            "a_b",
            "ä",
            &"a".repeat(101),
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
        assert!(is_valid("primary-care-2"));
    }
}
