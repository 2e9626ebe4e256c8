//! The route check and the proxy handler, glued: normalise the path, apply aliases,
//! check the allowlist (400 / 404 / 405 before any upstream call), limit the body, then
//! forward to the route's upstream.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, header};
use ic_http::{ApiError, ErrorCode};
use ic_telemetry::RouteLabel;

use crate::{
    client_ip::ClientIp,
    path::normalize,
    proxy::Proxy,
    routes::{Alias, RouteDecision, RouteTable},
};

/// Route-check settings.
#[derive(Debug, Clone)]
pub struct RouteCheck {
    /// The allowlist.
    pub table: Arc<RouteTable>,
    /// Prefix aliases, applied after normalisation.
    pub aliases: Arc<Vec<Alias>>,
    /// Largest request body forwarded.
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
}

/// Middleware: the route check.
pub async fn route_check(
    State(check): State<RouteCheck>,
    request: Request,
    next: Next,
) -> Response {
    let path = match normalize(request.uri().path()) {
        Ok(path) => path,
        Err(err) => return ApiError::validation("path", err.message()).into_response(),
    };
    let path = Alias::apply(&check.aliases, path);
    let (template, upstream) = match check.table.decide(request.method(), &path) {
        RouteDecision::Allowed(template, upstream) => (template, upstream),
        RouteDecision::MethodNotAllowed => {
            let mut response = ApiError::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this route",
            )
            .into_response();
            let allow: Vec<&str> = check
                .table
                .methods()
                .iter()
                .map(http::Method::as_str)
                .collect();
            if let Ok(value) = HeaderValue::from_str(&allow.join(", ")) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            return response;
        }
        _ => return ApiError::new(ErrorCode::NotFound, "no such route").into_response(),
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > check.max_body_bytes as u64) {
        return ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large")
            .into_response();
    }
    let (parts, body) = request.into_parts();
    let limited = Body::new(http_body_util::Limited::new(body, check.max_body_bytes));
    let mut request = Request::from_parts(parts, limited);
    request.extensions_mut().insert(RouteMatch {
        template,
        upstream,
        path: path.encoded(),
    });
    next.run(request).await
}

/// The final handler: forwards to the matched upstream.
pub async fn proxy_to_upstream(State(proxy): State<Proxy>, request: Request) -> Response {
    let Some(matched) = request.extensions().get::<RouteMatch>().cloned() else {
        return ApiError::new(ErrorCode::NotFound, "no such route").into_response();
    };
    let ip = request
        .extensions()
        .get::<ClientIp>()
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |c| c.0);
    let mut response = proxy
        .forward(request, matched.upstream, &matched.path, ip)
        .await;
    response
        .extensions_mut()
        .insert(RouteLabel(matched.template));
    response
}
