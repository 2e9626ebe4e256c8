//! The broadcaster's errors, rendered as the shared envelope.

use axum::response::{IntoResponse, Response};
use ic_http::{ApiError, ErrorCode};

use crate::dead_letters::ReplayError;

/// What an operating route can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BroadcasterError {
    /// A dead letter could not be replayed.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// NATS failed.
    #[error("NATS: {0}")]
    Nats(#[from] async_nats::Error),
    /// The request itself is wrong.
    #[error("{}", .0.message())]
    Invalid(ApiError),
}

impl IntoResponse for BroadcasterError {
    fn into_response(self) -> Response {
        match self {
            Self::Replay(ReplayError::NotFound(_)) => {
                ApiError::new(ErrorCode::NotFound, self.to_string()).into_response()
            }
            Self::Replay(ReplayError::UnknownSubscription(_)) => {
                ApiError::new(ErrorCode::BusinessRuleViolation, self.to_string()).into_response()
            }
            Self::Replay(ReplayError::Nats(source)) | Self::Nats(source) => {
                ApiError::unavailable(source).into_response()
            }
            Self::Invalid(error) => error.into_response(),
        }
    }
}
