//! Newtypes and pure rules of the content library (no I/O).

pub mod filename;
pub mod inputs;
pub mod mime;
pub mod range;

use serde::{Deserialize, Serialize};

/// Declares a string-valued enum: serde (snake_case, unknown values refused), the
/// database value and its parser.
macro_rules! db_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $value:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// The database (and JSON) value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $value),+
                }
            }

            /// Parses the database value.
            pub fn from_db(value: &str) -> Option<Self> {
                match value {
                    $($value => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

db_enum!(
    /// What kind of file (derived from the detected type when not given).
    Category {
        /// PDF, office files, text.
        Document = "document",
        /// Pictures.
        Image = "image",
        /// Films.
        Video = "video",
        /// Sound.
        Audio = "audio",
        /// Zip files.
        Archive = "archive",
    }
);

db_enum!(
    /// Who may read a file.
    AccessLevel {
        /// Anyone, cached by browsers and CDNs for a year.
        Public = "public",
        /// Any signed-in caller.
        Internal = "internal",
        /// Never through the public API (404 there, so ids don't leak).
        Restricted = "restricted",
    }
);

db_enum!(
    /// Where an upload stands.
    UploadStatus {
        /// Stored, waiting for (or in) its scan.
        Processing = "processing",
        /// Scanned clean: served.
        Available = "available",
        /// Infected or unprocessable: quarantined, never served.
        Failed = "failed",
        /// Withdrawn by an administrator.
        Archived = "archived",
    }
);

db_enum!(
    /// The outcome of one virus scan.
    ScanStatus {
        /// Nothing found.
        Clean = "clean",
        /// A signature matched.
        Infected = "infected",
        /// Heuristics flagged it.
        Suspicious = "suspicious",
        /// The scanner failed.
        Error = "error",
        /// No scanner configured (development, or explicitly disabled).
        Skipped = "skipped",
    }
);

db_enum!(
    /// What an access was.
    AccessType {
        /// Metadata read.
        View = "view",
        /// Bytes served.
        Download = "download",
        /// A preview served.
        Preview = "preview",
    }
);

/// Where an object is stored: `content/{yyyy}/{mm}/{content_id}/{sha256}.{ext}`
/// (`shared/spec/content-api.md`, "Storage").
pub fn object_path(
    created: chrono::DateTime<chrono::Utc>,
    content_id: uuid::Uuid,
    sha256: &str,
    extension: &str,
) -> String {
    format!(
        "content/{}/{content_id}/{sha256}.{extension}",
        created.format("%Y/%m")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_follow_the_spec() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-03-05T10:00:00Z")
            .unwrap()
            .to_utc();
        let id = uuid::Uuid::nil();
        assert_eq!(
            object_path(at, id, "ab", "pdf"),
            "content/2026/03/00000000-0000-0000-0000-000000000000/ab.pdf"
        );
    }

    #[test]
    fn enums_round_trip_through_their_database_values() {
        for status in [
            UploadStatus::Processing,
            UploadStatus::Available,
            UploadStatus::Failed,
            UploadStatus::Archived,
        ] {
            assert_eq!(UploadStatus::from_db(status.as_str()), Some(status));
        }
        assert_eq!(AccessLevel::from_db("secret"), None);
        assert_eq!(
            serde_json::from_str::<Category>("\"video\"").unwrap(),
            Category::Video
        );
    }
}
