use std::{borrow::Cow, error::Error as StdError};

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::StatusCode;
use serde_json::{Value, json};

use crate::context;

/// The stable error codes of the envelope (`shared/spec/README.md`, "Errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 400
    ValidationError,
    /// 401
    Unauthorized,
    /// 403
    Forbidden,
    /// 404
    NotFound,
    /// 405
    MethodNotAllowed,
    /// 409
    Conflict,
    /// 413
    PayloadTooLarge,
    /// 415
    UnsupportedMediaType,
    /// 417, an `Expect` other than `100-continue` (the gateways' HTTP server)
    ExpectationFailed,
    /// 422
    BusinessRuleViolation,
    /// 422, a file failed the virus scan
    VirusDetected,
    /// 429
    RateLimited,
    /// 500
    InternalError,
    /// 502
    BadGateway,
    /// 503
    ServiceUnavailable,
    /// 501, a transfer coding the gateways' HTTP server does not implement
    NotImplemented,
    /// 504
    GatewayTimeout,
    /// 505, an HTTP version other than 1.0 and 1.1 (the gateways' HTTP server)
    HttpVersionNotSupported,
}

impl ErrorCode {
    /// The code as written in the envelope.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ValidationError => "VALIDATION_ERROR",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::Conflict => "CONFLICT",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::ExpectationFailed => "EXPECTATION_FAILED",
            Self::BusinessRuleViolation => "BUSINESS_RULE_VIOLATION",
            Self::VirusDetected => "VIRUS_DETECTED",
            Self::RateLimited => "RATE_LIMITED",
            Self::InternalError => "INTERNAL_ERROR",
            Self::BadGateway => "BAD_GATEWAY",
            Self::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Self::NotImplemented => "NOT_IMPLEMENTED",
            Self::GatewayTimeout => "GATEWAY_TIMEOUT",
            Self::HttpVersionNotSupported => "HTTP_VERSION_NOT_SUPPORTED",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn status(self) -> StatusCode {
        match self {
            Self::ValidationError => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::ExpectationFailed => StatusCode::EXPECTATION_FAILED,
            Self::BusinessRuleViolation | Self::VirusDetected => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::BadGateway => StatusCode::BAD_GATEWAY,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            Self::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::HttpVersionNotSupported => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
        }
    }
}

/// An error answered in the shared envelope.
///
/// Client errors carry a human message and optional details; server errors carry an
/// opaque message, and their cause chain is logged (never sent).
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: Cow<'static, str>,
    details: Option<Value>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl ApiError {
    /// An error with a code and a human message.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
            source: None,
        }
    }

    /// A 400 naming the offending field.
    pub fn validation(field: &str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::ValidationError, message).with_details(json!({ "field": field }))
    }

    /// A 404 for the named resource.
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// A 500 whose cause is logged but never sent.
    pub fn internal(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::new(ErrorCode::InternalError, "an internal error occurred").with_source(source)
    }

    /// A 503: a dependency is unavailable; the cause is logged.
    pub fn unavailable(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::new(
            ErrorCode::ServiceUnavailable,
            "a dependency is temporarily unavailable, retry later",
        )
        .with_source(source)
    }

    /// Adds machine-readable details.
    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Attaches the cause (logged for 5xx, never rendered).
    #[must_use]
    pub fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The human message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The envelope body, filled from the current request context when there is one.
    pub fn envelope(&self) -> Value {
        let ctx = context::current();
        json!({
            "error": {
                "code": self.code.as_str(),
                "message": self.message,
                "details": self.details,
                "correlation_id": ctx.as_ref().map(|c| c.correlation_id.to_string()),
                "trace_id": ctx.as_ref().map(|c| c.trace.trace_id.to_string()),
                "span_id": ctx.as_ref().map(|c| c.trace.span_id.to_string()),
                "service_name": ctx.as_ref().map(|c| c.service_name),
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            }
        })
    }
}

fn cause_chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut current = err.source();
    while let Some(cause) = current {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        current = cause.source();
    }
    out
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        if status.is_server_error() {
            let cause = self
                .source
                .as_deref()
                .map(|e| cause_chain(e as &(dyn StdError + 'static)));
            tracing::error!(
                code = self.code.as_str(),
                cause = cause.as_deref(),
                "request failed"
            );
        }
        let mut response = (status, Json(self.envelope())).into_response();
        if self.code == ErrorCode::Unauthorized
            && !response
                .headers()
                .contains_key(http::header::WWW_AUTHENTICATE)
        {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// The response of a handler that panicked: an opaque 500 envelope.
fn panic_response(_: Box<dyn std::any::Any + Send>) -> Response {
    ApiError::internal(std::io::Error::other("handler panicked")).into_response()
}

/// A layer turning a handler panic into a 500 envelope instead of a dropped connection.
pub fn panic_guard()
-> tower_http::catch_panic::CatchPanicLayer<fn(Box<dyn std::any::Any + Send>) -> Response> {
    tower_http::catch_panic::CatchPanicLayer::custom(
        panic_response as fn(Box<dyn std::any::Any + Send>) -> Response,
    )
}

/// [`panic_guard`] for pipelines composed without middleware layers: a panic while
/// polling `fut` becomes a 500 envelope.
///
/// A plain function, not an `async fn`: an `async fn` would keep `fut` as an argument
/// next to the future awaiting it, doubling the size of every request's future.
pub fn guard_panics<Fut: Future<Output = Response>>(fut: Fut) -> impl Future<Output = Response> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(fut)
        .catch_unwind()
        .map(|result| result.unwrap_or_else(panic_response))
}

/// Router fallback: 404 in the envelope for paths no route matches.
pub async fn fallback_not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

/// Method fallback: 405 in the envelope for a known path with another method.
pub async fn fallback_method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_to_its_status() {
        assert_eq!(ErrorCode::ValidationError.status(), 400);
        assert_eq!(ErrorCode::VirusDetected.status(), 422);
        assert_eq!(
            ErrorCode::BusinessRuleViolation.as_str(),
            "BUSINESS_RULE_VIOLATION"
        );
        assert_eq!(ErrorCode::GatewayTimeout.status(), 504);
    }

    #[test]
    fn an_internal_error_never_renders_its_cause() {
        let err = ApiError::internal(std::io::Error::other(
            "relation \"services.secret\" does not exist",
        ));
        let body = err.envelope().to_string();
        assert!(
            !body.contains("services.secret") && !body.contains("does not exist"),
            "{body}"
        );
        assert!(body.contains("INTERNAL_ERROR"));
        for key in [
            "code",
            "message",
            "details",
            "correlation_id",
            "trace_id",
            "span_id",
            "service_name",
            "timestamp",
        ] {
            assert!(err.envelope()["error"].get(key).is_some(), "missing {key}");
        }
    }
}
