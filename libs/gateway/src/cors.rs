//! CORS with an exact-match origin list. Preflights are answered here, before any other
//! check; a disallowed origin gets no CORS headers at all (the browser then blocks it);
//! every response varies on `Origin`.

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, Method, StatusCode, header};

/// A CORS policy.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    origins: Vec<HeaderValue>,
    methods: Vec<Method>,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose_headers: HeaderValue,
    credentials: bool,
    max_age: HeaderValue,
}

/// What a page may read of an answer: the validator, the ids and the rate limits.
const PUBLIC_EXPOSE: &str = "ETag, X-Correlation-ID, X-Request-ID, X-Trace-ID, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After";
/// What a page may send: its trace context and a validator besides the usual.
const ALLOW_HEADERS: &str = "Content-Type, Authorization, X-Correlation-ID, X-Request-ID, traceparent, tracestate, If-None-Match";

impl CorsPolicy {
    /// The public gateway's policy for `origins` (`PUBLIC_WEBSITE_ORIGINS`).
    pub fn public(origins: &[String]) -> Self {
        Self::new(
            origins,
            &[Method::GET, Method::HEAD, Method::OPTIONS],
            ALLOW_HEADERS,
            false,
        )
    }

    /// The admin gateway's policy (credentials allowed).
    pub fn admin(origins: &[String]) -> Self {
        Self::new(
            origins,
            &[
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::DELETE,
                Method::OPTIONS,
            ],
            ALLOW_HEADERS,
            true,
        )
    }

    fn new(
        origins: &[String],
        methods: &[Method],
        headers: &'static str,
        credentials: bool,
    ) -> Self {
        let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
        Self {
            origins: origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok())
                .collect(),
            methods: methods.to_vec(),
            allow_methods: HeaderValue::from_str(&names.join(", "))
                .expect("method names are valid"),
            allow_headers: HeaderValue::from_static(headers),
            expose_headers: HeaderValue::from_static(PUBLIC_EXPOSE),
            credentials,
            max_age: HeaderValue::from_static("3600"),
        }
    }

    fn allowed_origin(&self, request: &Request) -> Option<HeaderValue> {
        request
            .headers()
            .get(header::ORIGIN)
            .filter(|o| self.origins.contains(o))
            .cloned()
    }
}

fn add_vary_origin(response: &mut Response) {
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("Origin"));
}

/// What the CORS stage makes of a request ([`CorsPolicy::check`]).
#[derive(Debug)]
pub enum Cors {
    /// A preflight, answered here.
    Preflight(Response),
    /// Any other request: its response gets [`Actual::finish`].
    Actual(Actual),
}

/// The CORS part of an actual request's response.
#[derive(Debug)]
#[must_use = "the response needs its CORS headers"]
pub struct Actual {
    origin: Option<HeaderValue>,
}

impl CorsPolicy {
    /// The CORS stage: the preflight's answer (the pipeline answers it at once), or what
    /// the response of an actual request needs ([`Actual::finish`]).
    pub fn check(&self, request: &Request) -> Cors {
        let origin = self.allowed_origin(request);
        let requested = if request.method() == Method::OPTIONS {
            request.headers().get(header::ACCESS_CONTROL_REQUEST_METHOD)
        } else {
            None
        };
        let Some(requested) = requested else {
            return Cors::Actual(Actual { origin });
        };
        let requested = requested
            .to_str()
            .ok()
            .and_then(|m| m.parse::<Method>().ok());
        let mut response = StatusCode::NO_CONTENT.into_response();
        add_vary_origin(&mut response);
        if let Some(origin) = origin
            && requested.is_some_and(|m| self.methods.contains(&m))
        {
            let h = response.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                self.allow_methods.clone(),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                self.allow_headers.clone(),
            );
            h.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
            if self.credentials {
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
        }
        Cors::Preflight(response)
    }
}

impl Actual {
    /// `Vary: Origin`, whatever CORS headers an upstream sent dropped (the gateway alone
    /// decides CORS), and the allowed origin's headers.
    pub fn finish(self, policy: &CorsPolicy, response: &mut Response) {
        add_vary_origin(response);
        let h = response.headers_mut();
        // One pass over the names first: upstreams seldom send any.
        if h.keys()
            .any(|name| name.as_str().starts_with("access-control-"))
        {
            for name in [
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                header::ACCESS_CONTROL_ALLOW_METHODS,
                header::ACCESS_CONTROL_ALLOW_HEADERS,
            ] {
                h.remove(name);
            }
        }
        if let Some(origin) = self.origin {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                policy.expose_headers.clone(),
            );
            if policy.credentials {
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
        }
    }
}
