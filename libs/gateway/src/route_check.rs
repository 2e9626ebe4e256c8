//! The route check: normalise the path, apply aliases, check the allowlist (400 / 404 /
//! 405 before any upstream call), limit the body (413; any body on GET or HEAD is 400);
//! what it matched ([`RouteMatch`]) is what the proxy forwards
//! ([`crate::proxy::Proxy::forward_matched`]).

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::Request,
    response::{IntoResponse, Response},
};
use http::header;
use http_body::Body as _;
use ic_http::{ApiError, ErrorCode};

use crate::{
    path::normalize,
    routes::{Alias, RouteDecision, RouteTable},
};

/// Route-check settings.
#[derive(Debug, Clone)]
pub struct RouteCheck {
    /// The allowlist.
    pub table: Arc<RouteTable>,
    /// Prefix aliases, applied after normalisation.
    pub aliases: Arc<Vec<Alias>>,
    /// Largest request body forwarded (unless the route has its own limit).
    pub max_body_bytes: usize,
}

/// What the route check decided, for the proxy handler.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// The route template (metrics label).
    pub template: &'static str,
    /// The upstream app id.
    pub upstream: &'static str,
    /// The normalised, aliased, re-encoded path to forward.
    pub path: String,
    /// The route's own timeout, if it has one.
    pub timeout: Option<Duration>,
}

impl RouteCheck {
    /// The route-check stage: the request (its body limited) and its match, or the answer
    /// refusing it (400 / 404 / 405 / 413, before any upstream call).
    // The request in the `Ok` side is larger still: boxing the answer would save nothing.
    #[allow(clippy::result_large_err)]
    pub fn check(&self, request: Request) -> Result<(Request, RouteMatch), Response> {
        let path = match normalize(request.uri().path()) {
            Ok(path) => path,
            Err(err) => return Err(ApiError::validation("path", err.message()).into_response()),
        };
        let path = Alias::apply(&self.aliases, path);
        let route = match self.table.decide(request.method(), &path) {
            RouteDecision::Allowed(route) => route,
            RouteDecision::MethodNotAllowed(allow) => {
                let mut response = ApiError::new(
                    ErrorCode::MethodNotAllowed,
                    "method not allowed on this route",
                )
                .into_response();
                response.headers_mut().insert(header::ALLOW, allow.clone());
                return Err(response);
            }
            _ => return Err(ApiError::new(ErrorCode::NotFound, "no such route").into_response()),
        };
        // The body's own size as its framing tells it (the server's, whatever the headers
        // say now), or a `Content-Length` header for a body built in-process.
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let least = request
            .body()
            .size_hint()
            .lower()
            .max(declared.unwrap_or(0));
        let max_body_bytes = route.max_body().unwrap_or(self.max_body_bytes);
        if least > max_body_bytes as u64 {
            return Err(
                ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large")
                    .into_response(),
            );
        }
        // RFC 9110 §9.3.1/§9.3.2: a body on GET or HEAD has no meaning, and some servers
        // behind a gateway read it as the next request: refused, never forwarded.
        if matches!(*request.method(), http::Method::GET | http::Method::HEAD)
            && !request.body().is_end_stream()
        {
            return Err(
                ApiError::validation("body", "a GET or HEAD request takes no body").into_response(),
            );
        }
        let (parts, body) = request.into_parts();
        let limited = Body::new(http_body_util::Limited::new(body, max_body_bytes));
        let request = Request::from_parts(parts, limited);
        let matched = RouteMatch {
            template: route.template(),
            upstream: route.upstream(),
            path: path.into_encoded(),
            timeout: route.timeout(),
        };
        Ok((request, matched))
    }
}
