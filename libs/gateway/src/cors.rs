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

const PUBLIC_EXPOSE: &str = "X-Correlation-ID, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After";

impl CorsPolicy {
    /// The public gateway's policy for `origins` (`PUBLIC_WEBSITE_ORIGINS`).
    pub fn public(origins: &[String]) -> Self {
        Self::new(
            origins,
            &[Method::GET, Method::HEAD, Method::OPTIONS],
            "Content-Type, X-Correlation-ID, X-Request-ID, Authorization",
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
            "Content-Type, X-Correlation-ID, X-Request-ID, Authorization",
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

/// The CORS stage: answers preflights itself, runs `next` for everything else and sets
/// the CORS headers of the response.
pub async fn cors<F, Fut>(policy: &CorsPolicy, request: Request, next: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let origin = policy.allowed_origin(&request);
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let requested = request
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| m.to_str().ok())
            .and_then(|m| m.parse::<Method>().ok());
        let mut response = StatusCode::NO_CONTENT.into_response();
        add_vary_origin(&mut response);
        if let Some(origin) = origin
            && requested.is_some_and(|m| policy.methods.contains(&m))
        {
            let h = response.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                policy.allow_methods.clone(),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                policy.allow_headers.clone(),
            );
            h.insert(header::ACCESS_CONTROL_MAX_AGE, policy.max_age.clone());
            if policy.credentials {
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
        }
        return response;
    }
    let mut response = next(request).await;
    add_vary_origin(&mut response);
    // The gateway alone decides CORS: whatever an upstream says is dropped first.
    for name in [
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        header::ACCESS_CONTROL_ALLOW_METHODS,
        header::ACCESS_CONTROL_ALLOW_HEADERS,
    ] {
        response.headers_mut().remove(name);
    }
    if let Some(origin) = origin {
        let h = response.headers_mut();
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
    response
}
