//! The service's error type and its rendering as the shared envelope.

use axum::response::{IntoResponse, Response};
use ic_http::{ApiError, ErrorCode};
use serde_json::json;

use crate::{domain::mime::TypeRejection, storage::StorageError};

/// Everything a content-api handler can fail with.
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
    /// The file does not exist, is deleted, or is not visible to the caller (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The state forbids the operation (409).
    #[error("{0}")]
    Conflict(String),
    /// A rule of the domain forbids it (422).
    #[error("{0}")]
    Rule(String),
    /// The upload is larger than allowed (413).
    #[error("the file is larger than the {limit} bytes allowed")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The file's type is refused (415).
    #[error(transparent)]
    UnsupportedType(#[from] TypeRejection),
    /// Postgres is unreachable (503).
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Any other database failure (500).
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// The blob store failed (503: the store is a dependency that may come back).
    #[error("blob store unavailable")]
    Storage(#[source] StorageError),
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
}

/// Lost connections are 503; a check constraint that still fires is the client's value.
impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match ic_backend::classify(&err) {
            ic_backend::DbFailure::ClientValue => {
                Self::validation("body", "a value is out of range")
            }
            ic_backend::DbFailure::Unavailable => Self::Unavailable(err),
            ic_backend::DbFailure::Other => Self::Database(err),
        }
    }
}

impl From<StorageError> for Error {
    fn from(err: StorageError) -> Self {
        Self::Storage(err)
    }
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
            Error::Conflict(message) => ApiError::new(ErrorCode::Conflict, message),
            Error::Rule(message) => ApiError::new(ErrorCode::BusinessRuleViolation, message),
            Error::TooLarge { limit } => ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the file is larger than the {limit} bytes allowed"),
            )
            .with_details(json!({ "field": "file", "max_bytes": limit })),
            Error::UnsupportedType(rejection) => {
                let details = match &rejection {
                    TypeRejection::Unrecognised => json!({ "field": "file" }),
                    TypeRejection::NotAllowed(mime) => {
                        json!({ "field": "file", "detected_type": mime })
                    }
                    TypeRejection::Contradiction { declared, detected } => {
                        json!({ "field": "file", "declared": declared, "detected_type": detected })
                    }
                };
                ApiError::new(ErrorCode::UnsupportedMediaType, rejection.to_string())
                    .with_details(details)
            }
            Error::Unavailable(source) => ApiError::unavailable(source),
            Error::Database(source) => ApiError::internal(source),
            Error::Storage(source) => ApiError::unavailable(source),
            Error::Api(api) => api,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
