//! Per-request context: correlation id, request id, trace context and the caller's
//! identity, set up by [`request_context`] and readable anywhere in the request's task
//! through [`current`] (so error envelopes, events and audit records carry them).

use std::time::Instant;

use axum::{
    extract::{FromRequestParts, MatchedPath, Request, State},
    middleware::Next,
    response::Response,
};
use http::{HeaderMap, HeaderName, HeaderValue, request::Parts};
use ic_telemetry::TraceContext;
use tracing::{Instrument, field};
use uuid::Uuid;

use crate::{ApiError, ErrorCode, headers::name};

/// Longest accepted user id / e-mail header value.
const MAX_IDENTITY_LEN: usize = 255;
/// Longest accepted `X-Request-ID`.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The caller as told by the gateway headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `X-User-ID`.
    pub user_id: String,
    /// `X-User-Roles`, split on commas.
    pub roles: Vec<String>,
    /// `X-User-Email`.
    pub email: Option<String>,
    /// `X-User-Name` (the token's `preferred_username`).
    pub name: Option<String>,
}

/// Everything a request carries that later work (logs, events, audit) needs.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The service answering (envelope `service_name`).
    pub service_name: &'static str,
    /// `X-Correlation-ID`, accepted when a UUID, else generated.
    pub correlation_id: Uuid,
    /// `X-Request-ID`, accepted when short and printable, else generated.
    pub request_id: String,
    /// The trace this request belongs to and its own span.
    pub trace: TraceContext,
    /// The identity headers, if a well-formed `X-User-ID` was sent.
    pub identity: Option<Identity>,
}

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// The context of the request being served by this task, if any.
pub fn current() -> Option<RequestContext> {
    CURRENT.try_with(Clone::clone).ok()
}

fn printable(value: &str, max: usize) -> bool {
    !value.is_empty() && value.len() <= max && !value.chars().any(char::is_control)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

impl RequestContext {
    /// Builds the context from request headers.
    pub fn from_headers(service_name: &'static str, headers: &HeaderMap) -> Self {
        let correlation_id = header_str(headers, &name::X_CORRELATION_ID)
            .and_then(|v| Uuid::parse_str(v).ok())
            .unwrap_or_else(Uuid::new_v4);
        let request_id = header_str(headers, &name::X_REQUEST_ID)
            .filter(|v| printable(v, MAX_REQUEST_ID_LEN) && v.is_ascii())
            .map_or_else(
                || {
                    let mut buf = Uuid::encode_buffer();
                    Uuid::new_v4()
                        .hyphenated()
                        .encode_lower(&mut buf)
                        .to_owned()
                },
                str::to_owned,
            );
        let trace = TraceContext::continue_from(
            header_str(headers, &name::TRACEPARENT),
            header_str(headers, &name::TRACESTATE),
        );
        let identity = header_str(headers, &name::X_USER_ID)
            .filter(|v| printable(v, MAX_IDENTITY_LEN))
            .map(|user_id| Identity {
                user_id: user_id.to_owned(),
                roles: header_str(headers, &name::X_USER_ROLES)
                    .map(|r| {
                        r.split(',')
                            .map(str::trim)
                            .filter(|r| printable(r, 64))
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
                email: header_str(headers, &name::X_USER_EMAIL)
                    .filter(|v| printable(v, MAX_IDENTITY_LEN))
                    .map(str::to_owned),
                name: header_str(headers, &name::X_USER_NAME)
                    .filter(|v| printable(v, MAX_IDENTITY_LEN))
                    .map(str::to_owned),
            });
        Self {
            service_name,
            correlation_id,
            request_id,
            trace,
            identity,
        }
    }

    /// The user id for logs and records: the caller's, or `anonymous`.
    pub fn user_id(&self) -> &str {
        self.identity
            .as_ref()
            .map_or("anonymous", |i| i.user_id.as_str())
    }

    /// Runs `fut` with this context as the task's current one. (Not an `async fn`, which
    /// would hold `fut` twice.)
    pub fn scope<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, fut)
    }
}

/// Middleware: builds the [`RequestContext`], runs the request inside it and inside the
/// request span, echoes `X-Correlation-ID`, `X-Request-ID`, `X-Trace-ID` and
/// `traceparent`, and writes one log line per request.
///
/// Install outermost: `axum::middleware::from_fn_with_state("services-api", request_context)`.
pub async fn request_context(
    State(service_name): State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    in_request_context(service_name, request, |request| next.run(request)).await
}

/// [`request_context`] for pipelines composed without middleware layers (the
/// gateways): runs `next` inside the request's context and span.
pub async fn in_request_context<F, Fut>(
    service_name: &'static str,
    mut request: Request,
    next: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let started = Instant::now();
    let mut ctx = RequestContext::from_headers(service_name, request.headers());
    let span = tracing::info_span!(
        "http.request",
        service = service_name,
        method = %request.method(),
        route = field::Empty,
        correlation_id = %ctx.correlation_id,
        request_id = %ctx.request_id,
        trace_id = field::Empty,
        span_id = field::Empty,
        user_id = %ctx.user_id(),
        status = field::Empty,
        latency_ms = field::Empty,
    );
    let matched = !span.is_disabled() && {
        let route = request.extensions().get::<MatchedPath>();
        if let Some(route) = route {
            span.record("route", route.as_str());
        }
        route.is_some()
    };
    // With OTLP export on, the exported span's ids become the request's trace ids (a
    // disabled span has none to offer).
    if !span.is_disabled() {
        ctx.trace = ic_telemetry::link_span(&span, &ctx.trace);
    }
    span.record("trace_id", field::display(ctx.trace.trace_id));
    span.record("span_id", field::display(ctx.trace.span_id));
    let correlation_id = ctx.correlation_id;
    let request_id = HeaderValue::from_str(&ctx.request_id).ok();
    let trace = ctx.trace.clone();
    request.extensions_mut().insert(ctx.clone());
    // Built in a statement of its own: temporaries of an `.await`'s statement live across
    // it and would take room in this future next to the future they were moved into.
    let scoped = ctx.scope(next(request)).instrument(span.clone());
    let mut response = scoped.await;
    let headers = response.headers_mut();
    let mut uuid = Uuid::encode_buffer();
    if let Ok(value) = HeaderValue::from_str(correlation_id.hyphenated().encode_lower(&mut uuid)) {
        headers.insert(name::X_CORRELATION_ID, value);
    }
    if let Some(value) = request_id {
        headers.insert(name::X_REQUEST_ID, value);
    }
    for (name, value) in [
        (name::X_TRACE_ID, trace.trace_id.to_string()),
        (name::TRACEPARENT, trace.traceparent()),
    ] {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    }
    if !matched {
        // A gateway routes inside the request (no router around it): its route check
        // labels the response instead.
        let route = response
            .extensions()
            .get::<ic_telemetry::RouteLabel>()
            .map_or("unmatched", |label| label.0);
        span.record("route", route);
    }
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.record("status", status);
    span.record("latency_ms", latency_ms);
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, latency_ms, "request completed");
        } else {
            tracing::info!(status, latency_ms, "request completed");
        }
    });
    response
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Self>()
            .cloned()
            .unwrap_or_else(|| Self::from_headers("unknown", &parts.headers)))
    }
}

/// Extractor for admin handlers: the request context of an identified caller. Answers
/// 401 when `X-User-ID` is absent or malformed (writes must say who made them).
#[derive(Debug, Clone)]
pub struct Actor {
    /// The full request context.
    pub ctx: RequestContext,
    /// The caller.
    pub identity: Identity,
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ctx = RequestContext::from_request_parts(parts, state).await?;
        let identity = ctx.identity.clone().ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "an X-User-ID header identifying the caller is required",
            )
        })?;
        Ok(Self { ctx, identity })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::{X_CORRELATION_ID, X_USER_EMAIL, X_USER_ID, X_USER_ROLES};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn a_uuid_correlation_id_is_kept_and_anything_else_replaced() {
        let id = "6f1c2a64-3b7e-4a0e-9a57-1d1f7c1ab001";
        let ctx = RequestContext::from_headers("t", &headers(&[(X_CORRELATION_ID, id)]));
        assert_eq!(ctx.correlation_id.to_string(), id);
        let ctx =
            RequestContext::from_headers("t", &headers(&[(X_CORRELATION_ID, "'; drop table")]));
        assert_ne!(ctx.correlation_id.to_string(), "'; drop table");
    }

    #[test]
    fn identity_headers_are_parsed_and_roles_split() {
        let ctx = RequestContext::from_headers(
            "t",
            &headers(&[
                (X_USER_ID, "u-1"),
                (X_USER_ROLES, "admin, editor,,"),
                (X_USER_EMAIL, "a@b.c"),
            ]),
        );
        let identity = ctx.identity.unwrap();
        assert_eq!(identity.user_id, "u-1");
        assert_eq!(identity.roles, vec!["admin", "editor"]);
        assert_eq!(identity.email.as_deref(), Some("a@b.c"));
        let long = "x".repeat(300);
        let ctx = RequestContext::from_headers("t", &headers(&[(X_USER_ID, &long)]));
        assert!(ctx.identity.is_none());
        assert_eq!(ctx.user_id(), "anonymous");
    }
}
