//! Calling a service's router in process, as its integration tests do.

use axum::{Router, body::Body};
use http::{HeaderMap, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

/// A response, read whole: status, headers, the body as bytes and as JSON (`Null`
/// when it is not JSON).
#[derive(Debug)]
pub struct TestResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The body parsed as JSON, or `Null`.
    pub body: Value,
    /// The body's bytes.
    pub bytes: Vec<u8>,
}

impl TestResponse {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status, the envelope's code and that every envelope field is there;
    /// returns `details.field`.
    pub fn error(&self, status: u16, code: &str) -> Option<String> {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["error"]["code"], code, "body: {}", self.body);
        for key in [
            "message",
            "correlation_id",
            "trace_id",
            "span_id",
            "service_name",
            "timestamp",
        ] {
            assert!(
                !self.body["error"][key].is_null(),
                "envelope lacks {key}: {}",
                self.body
            );
        }
        self.body["error"]["details"]["field"]
            .as_str()
            .map(str::to_owned)
    }
}

/// Sends `request` through `router` and reads the whole response.
pub async fn call(router: &Router, request: Request<Body>) -> TestResponse {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("router answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("the body is read")
        .to_vec();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    TestResponse {
        status,
        headers,
        body,
        bytes,
    }
}
