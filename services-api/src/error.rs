//! The service's error type and its rendering as the shared envelope.

use axum::response::{IntoResponse, Response};
use ic_http::{ApiError, ErrorCode};
use serde_json::json;

/// Everything a services-api handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input failed validation (400), naming the field.
    #[error("{field}: {message}")]
    Validation {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The entity does not exist or is deleted (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness or state conflict (409).
    #[error("{message}")]
    Conflict {
        /// The field in conflict, if one.
        field: Option<&'static str>,
        /// Human message.
        message: String,
    },
    /// A domain rule forbids the change (422).
    #[error("{message}")]
    BusinessRule {
        /// The field concerned, if one.
        field: Option<&'static str>,
        /// Human message.
        message: String,
    },
    /// Postgres is unreachable (503).
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Any other database failure (500).
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// A shared-plumbing error (paging, extractors) passed through as is.
    #[error("{0}")]
    Api(ApiError),
}

impl Error {
    /// A 400 naming `field`.
    pub fn validation(field: &'static str, message: impl Into<String>) -> Self {
        Self::Validation {
            field,
            message: message.into(),
        }
    }

    /// A 422.
    pub fn rule(field: Option<&'static str>, message: impl Into<String>) -> Self {
        Self::BusinessRule {
            field,
            message: message.into(),
        }
    }

    /// A 409.
    pub fn conflict(field: Option<&'static str>, message: impl Into<String>) -> Self {
        Self::Conflict {
            field,
            message: message.into(),
        }
    }
}

/// Maps constraint violations by constraint name (never by message text), and lost
/// connections to 503.
impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            match db.constraint() {
                Some("services_slug_live_key") => {
                    return Self::conflict(Some("slug"), "a live service already uses this slug");
                }
                Some("service_categories_slug_live_key") => {
                    return Self::conflict(Some("slug"), "a live category already uses this slug");
                }
                Some("featured_categories_position_key") => {
                    return Self::conflict(
                        Some("feature_position"),
                        "this feature position is occupied; remove it first",
                    );
                }
                Some("featured_categories_category_key") => {
                    return Self::conflict(
                        Some("category_id"),
                        "this category is already featured",
                    );
                }
                Some("services_category_fk" | "featured_categories_category_fk") => {
                    return Self::rule(Some("category_id"), "the category does not exist");
                }
                _ => {}
            }
            // Check constraints guard what the domain layer validates first; should one
            // still fire, it is the client's value, named by the constraint.
            if let Some(field) = db.constraint().and_then(check_constraint_field) {
                return Self::validation(field, format!("{field} is out of range"));
            }
        }
        match ic_backend::classify(&err) {
            ic_backend::DbFailure::ClientValue => {
                Self::validation("body", "a value is out of range")
            }
            ic_backend::DbFailure::Unavailable => Self::Unavailable(err),
            ic_backend::DbFailure::Other => Self::Database(err),
        }
    }
}

/// The request field a check constraint guards.
fn check_constraint_field(constraint: &str) -> Option<&'static str> {
    Some(match constraint {
        "services_title_length" => "title",
        "services_description_length" => "description",
        "services_slug_format" | "service_categories_slug_format" => "slug",
        "services_long_description_url_https" => "long_description_url",
        "services_image_url_https" => "image_url",
        "services_delivery_mode_valid" => "delivery_mode",
        "service_categories_name_length" => "name",
        "featured_categories_position_range" => "feature_position",
        _ => return None,
    })
}

impl From<ApiError> for Error {
    fn from(err: ApiError) -> Self {
        Self::Api(err)
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        match err {
            Error::Validation { field, message } => ApiError::validation(field, message),
            Error::NotFound(what) => ApiError::not_found(what),
            Error::Conflict { field, message } => {
                ApiError::new(ErrorCode::Conflict, message).with_details(json!({ "field": field }))
            }
            Error::BusinessRule { field, message } => {
                ApiError::new(ErrorCode::BusinessRuleViolation, message)
                    .with_details(json!({ "field": field }))
            }
            Error::Unavailable(source) => ApiError::unavailable(source),
            Error::Database(source) => ApiError::internal(source),
            Error::Api(api) => api,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
