//! Security headers on every response, errors included.

use axum::response::Response;
use http::{HeaderName, HeaderValue, header};

/// A set of security headers.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    headers: Vec<(HeaderName, HeaderValue)>,
    keep_upstream_csp: bool,
}

impl SecurityHeaders {
    /// The public gateway's profile (`shared/spec/gateways.md`).
    pub fn public() -> Self {
        Self {
            headers: vec![
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static("default-src 'self'"),
                ),
                (
                    header::STRICT_TRANSPORT_SECURITY,
                    HeaderValue::from_static("max-age=31536000"),
                ),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("strict-origin-when-cross-origin"),
                ),
            ],
            keep_upstream_csp: true,
        }
    }

    /// The admin gateway's stricter profile.
    pub fn admin() -> Self {
        Self {
            headers: vec![
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(
                        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'",
                    ),
                ),
                (
                    header::STRICT_TRANSPORT_SECURITY,
                    HeaderValue::from_static("max-age=31536000; includeSubDomains"),
                ),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("strict-origin"),
                ),
                (
                    HeaderName::from_static("permissions-policy"),
                    HeaderValue::from_static("geolocation=(), microphone=(), camera=()"),
                ),
            ],
            keep_upstream_csp: false,
        }
    }

    /// Adds the headers to a response (an upstream's CSP is kept in the public profile,
    /// e.g. `default-src 'none'` on downloads); `Server` never reveals a version.
    pub fn apply(&self, response: &mut Response) {
        let headers = response.headers_mut();
        for (name, value) in &self.headers {
            if *name == header::CONTENT_SECURITY_POLICY
                && self.keep_upstream_csp
                && headers.contains_key(name)
            {
                continue;
            }
            headers.insert(name.clone(), value.clone());
        }
        headers.insert(
            header::SERVER,
            HeaderValue::from_static("international-center"),
        );
    }
}
