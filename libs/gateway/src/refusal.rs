//! The server's refusals ([`crate::serve::Refusal`]: a request it would not read) in the
//! error envelope of `shared/spec/README.md`, as every gateway answers them.

use http::StatusCode;
use ic_http::{ApiError, ErrorCode};

use crate::serve::Refusal;

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let code = match refusal.status {
            StatusCode::EXPECTATION_FAILED => ErrorCode::ExpectationFailed,
            StatusCode::HTTP_VERSION_NOT_SUPPORTED => ErrorCode::HttpVersionNotSupported,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            _ => ErrorCode::ValidationError,
        };
        ApiError::new(code, refusal.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_keeps_its_status_in_the_envelope() {
        for status in [
            StatusCode::BAD_REQUEST,
            StatusCode::EXPECTATION_FAILED,
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
        ] {
            let error = ApiError::from(Refusal {
                status,
                reason: "why",
            });
            assert_eq!(error.code().status(), status);
        }
    }
}
