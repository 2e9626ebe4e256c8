//! Security headers on every response, errors included.

use axum::response::Response;
use http::{HeaderName, HeaderValue, header};

/// A set of security headers: the spec's list (`shared/spec/gateways.md`) is the minimum;
/// the OWASP Secure Headers Project's recommendations for an API are added.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    headers: Vec<(HeaderName, HeaderValue)>,
    keep_upstream_csp: bool,
}

/// No browser feature an API answer could want.
const PERMISSIONS_POLICY: &str = "accelerometer=(), camera=(), geolocation=(), gyroscope=(), \
     magnetometer=(), microphone=(), payment=(), usb=()";

impl SecurityHeaders {
    /// The public gateway's profile. `Cross-Origin-Resource-Policy` is `cross-origin`:
    /// the website, on another origin, embeds published content (images, video).
    pub fn public() -> Self {
        Self::new(
            "default-src 'self'; frame-ancestors 'none'",
            "max-age=31536000",
            "strict-origin-when-cross-origin",
            "cross-origin",
            true,
        )
    }

    /// The admin gateway's stricter profile (its resources are for its own origin).
    pub fn admin() -> Self {
        Self::new(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            "max-age=31536000; includeSubDomains",
            "strict-origin",
            "same-origin",
            false,
        )
    }

    fn new(
        csp: &'static str,
        hsts: &'static str,
        referrer: &'static str,
        corp: &'static str,
        keep_upstream_csp: bool,
    ) -> Self {
        let fixed = |name: &'static str, value: &'static str| {
            (
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            )
        };
        Self {
            headers: vec![
                fixed("x-content-type-options", "nosniff"),
                fixed("x-frame-options", "DENY"),
                fixed("content-security-policy", csp),
                fixed("strict-transport-security", hsts),
                fixed("referrer-policy", referrer),
                fixed("permissions-policy", PERMISSIONS_POLICY),
                fixed("cross-origin-opener-policy", "same-origin"),
                fixed("cross-origin-resource-policy", corp),
                fixed("x-permitted-cross-domain-policies", "none"),
            ],
            keep_upstream_csp,
        }
    }

    /// Adds the headers to a response (an upstream's CSP is kept in the public profile,
    /// e.g. `default-src 'none'` on downloads). No `Server` header says what answered: the
    /// gateways set none and the proxy drops an upstream's
    /// ([`crate::hygiene::strip_answer`]).
    pub fn apply(&self, response: &mut Response) {
        let headers = response.headers_mut();
        for (name, value) in &self.headers {
            if self.keep_upstream_csp && *name == header::CONTENT_SECURITY_POLICY {
                // One lookup: kept when the upstream set one.
                headers.entry(name).or_insert_with(|| value.clone());
            } else {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
}
