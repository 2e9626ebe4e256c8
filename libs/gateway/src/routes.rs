//! The route allowlist: only listed route templates reach an upstream; everything else
//! is 404 before any upstream call, and methods outside the allowed set are 405.

use std::time::Duration;

use http::{HeaderValue, Method};

use crate::path::{NormalPath, is_plain};

/// One segment of a route template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Static(&'static str),
    Param,
}

/// An allowed route: its template and the upstream app id serving it, and optionally
/// its own methods, time limit and body limit.
#[derive(Debug, Clone)]
pub struct Route {
    template: &'static str,
    segments: Vec<Segment>,
    upstream: &'static str,
    timeout: Option<Duration>,
    /// Its own methods and their `Allow` header, instead of the table's.
    methods: Option<(Vec<Method>, HeaderValue)>,
    max_body: Option<usize>,
}

fn allow_header(methods: &[Method]) -> HeaderValue {
    let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
    HeaderValue::from_str(&names.join(", ")).expect("method names are header values")
}

impl Route {
    /// A route from a template like `/api/v1/services/{id}`.
    pub fn new(template: &'static str, upstream: &'static str) -> Self {
        let segments: Vec<Segment> = template
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s.starts_with('{') {
                    Segment::Param
                } else {
                    // Compared with a path's encoded segments: equal exactly when the
                    // decoded ones are, for a segment that needs no encoding.
                    debug_assert!(is_plain(s), "route segment {s:?} needs encoding");
                    Segment::Static(s)
                }
            })
            .collect();
        Self {
            template,
            segments,
            upstream,
            timeout: None,
            methods: None,
            max_body: None,
        }
    }

    /// This route's own methods, instead of the table's.
    #[must_use]
    pub fn with_methods(mut self, methods: &[Method]) -> Self {
        self.methods = Some((methods.to_vec(), allow_header(methods)));
        self
    }

    /// This route's own body limit, instead of the route check's (an upload route).
    #[must_use]
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = Some(bytes);
        self
    }

    /// Its own time limit, if it has one.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Its own body limit, if it has one.
    pub fn max_body(&self) -> Option<usize> {
        self.max_body
    }

    /// Its own methods, if it has them.
    pub fn methods(&self) -> Option<&[Method]> {
        self.methods.as_ref().map(|(methods, _)| methods.as_slice())
    }

    /// This route's own time limit until the upstream's response headers, instead of
    /// the gateway's default (`UPSTREAM_TIMEOUT_SECONDS`).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The template (the metrics `route` label).
    pub fn template(&self) -> &'static str {
        self.template
    }

    /// The Dapr app id of the upstream.
    pub fn upstream(&self) -> &'static str {
        self.upstream
    }

    fn matches(&self, segments: &[&str]) -> bool {
        segments.len() == self.segments.len()
            && segments.iter().zip(&self.segments).all(|(s, t)| match t {
                Segment::Static(name) => s == name,
                Segment::Param => true,
            })
    }
}

/// The most segments a route template has.
const MAX_SEGMENTS: usize = 16;

/// The routes and methods a gateway lets through.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
    methods: Vec<Method>,
    allow: HeaderValue,
}

/// The outcome of a route check.
#[derive(Debug, Clone)]
pub enum RouteDecision<'a> {
    /// Allowed: the route matched.
    Allowed(&'a Route),
    /// No such route (404).
    NotFound,
    /// Known route, method not allowed (405) and the `Allow` header of the route.
    MethodNotAllowed(&'a HeaderValue),
}

impl RouteTable {
    /// A table of `routes`, each allowing `methods`.
    pub fn new(routes: Vec<Route>, methods: Vec<Method>) -> Self {
        // Checked once, at startup: a longer route could never match.
        assert!(
            routes.iter().all(|r| r.segments.len() <= MAX_SEGMENTS),
            "a route has more than {MAX_SEGMENTS} segments"
        );
        let allow = allow_header(&methods);
        Self {
            routes,
            methods,
            allow,
        }
    }

    /// The `Allow` header of the table's methods (of a route without its own), for 405s
    /// and plain OPTIONS.
    pub fn allow_header(&self) -> HeaderValue {
        self.allow.clone()
    }

    /// The `Allow` header of the route with this template.
    pub fn allow_header_of(&self, template: &str) -> HeaderValue {
        self.routes
            .iter()
            .find(|r| r.template == template)
            .and_then(|r| r.methods.as_ref())
            .map_or_else(|| self.allow.clone(), |(_, allow)| allow.clone())
    }

    /// Every route.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The table's methods (of a route without its own).
    pub fn methods(&self) -> &[Method] {
        &self.methods
    }

    /// Decides for a normalised path and a method; returns the template and upstream.
    pub fn decide(&self, method: &Method, path: &NormalPath) -> RouteDecision<'_> {
        // The most specific match wins: static segments before parameters
        // (`/services/categories` is not `/services/{id}`).
        let specificity = |r: &Route| {
            r.segments
                .iter()
                .filter(|s| matches!(s, Segment::Static(_)))
                .count()
        };
        // Split once, on the stack: no route is longer than that.
        let mut segments = [""; MAX_SEGMENTS];
        let mut count = 0;
        for segment in path.segments() {
            let Some(slot) = segments.get_mut(count) else {
                return RouteDecision::NotFound;
            };
            *slot = segment;
            count += 1;
        }
        let segments = &segments[..count];
        let Some(route) = self
            .routes
            .iter()
            .filter(|r| r.matches(segments))
            .max_by_key(|r| specificity(r))
        else {
            return RouteDecision::NotFound;
        };
        let (methods, allow) = match &route.methods {
            Some((methods, allow)) => (methods, allow),
            None => (&self.methods, &self.allow),
        };
        if !methods.contains(method) {
            return RouteDecision::MethodNotAllowed(allow);
        }
        RouteDecision::Allowed(route)
    }
}

/// A prefix rewrite (`/services…` → `/api/v1/services…`).
#[derive(Debug, Clone)]
pub struct Alias {
    from: Vec<&'static str>,
    to: Vec<&'static str>,
}

impl Alias {
    /// An alias from one path prefix to another (`"/services"`, `"/api/v1/services"`).
    pub fn new(from: &'static str, to: &'static str) -> Self {
        let split = |p: &'static str| {
            p.split('/')
                .filter(|s| !s.is_empty())
                .inspect(|s| debug_assert!(is_plain(s), "alias segment {s:?} needs encoding"))
                .collect()
        };
        Self {
            from: split(from),
            to: split(to),
        }
    }

    /// Applies the first matching alias.
    pub fn apply(aliases: &[Self], path: NormalPath) -> NormalPath {
        aliases
            .iter()
            .find_map(|a| path.replace_prefix(&a.from, &a.to))
            .unwrap_or(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::normalize;

    #[test]
    fn only_listed_templates_pass_and_only_allowed_methods() {
        let routes = vec![
            Route::new("/api/v1/services", "services-api"),
            Route::new("/api/v1/services/{id}", "services-api"),
            Route::new("/api/v1/services/categories", "services-api"),
            Route::new("/api/v1/services/{id}/publish", "services-api")
                .with_methods(&[Method::POST, Method::OPTIONS])
                .with_max_body(10),
        ];
        let table = RouteTable::new(routes, vec![Method::GET, Method::HEAD, Method::OPTIONS]);
        // (template, upstream, the route's body limit) or the Allow header of a 405.
        let decide = |m: Method, p: &str| match table.decide(&m, &normalize(p).unwrap()) {
            RouteDecision::Allowed(r) => Ok(Some((r.template(), r.upstream(), r.max_body()))),
            RouteDecision::NotFound => Ok(None),
            RouteDecision::MethodNotAllowed(allow) => Err(allow.to_str().unwrap().to_owned()),
        };
        assert_eq!(
            decide(Method::GET, "/api/v1/services/abc"),
            Ok(Some(("/api/v1/services/{id}", "services-api", None)))
        );
        assert_eq!(
            decide(Method::GET, "/api/v1/services/categories"),
            Ok(Some(("/api/v1/services/categories", "services-api", None)))
        );
        assert_eq!(decide(Method::GET, "/admin/api/v1/services"), Ok(None));
        assert_eq!(decide(Method::GET, "/api/v1/services/a/b/c"), Ok(None));
        assert_eq!(
            decide(Method::POST, "/api/v1/services"),
            Err("GET, HEAD, OPTIONS".to_owned())
        );
        assert_eq!(decide(Method::DELETE, "/nowhere"), Ok(None));
        // A route with its own methods and body limit.
        assert_eq!(
            decide(Method::POST, "/api/v1/services/abc/publish"),
            Ok(Some((
                "/api/v1/services/{id}/publish",
                "services-api",
                Some(10)
            )))
        );
        assert_eq!(
            decide(Method::GET, "/api/v1/services/abc/publish"),
            Err("POST, OPTIONS".to_owned())
        );
        assert_eq!(
            table.allow_header_of("/api/v1/services/{id}/publish"),
            "POST, OPTIONS"
        );
        assert_eq!(
            table.allow_header_of("/api/v1/services"),
            "GET, HEAD, OPTIONS"
        );
    }

    #[test]
    fn aliases_rewrite_the_public_prefixes() {
        let aliases = [
            Alias::new("/services", "/api/v1/services"),
            Alias::new("/content", "/api/v1/content"),
        ];
        let rewritten = Alias::apply(&aliases, normalize("/services/featured").unwrap());
        assert_eq!(rewritten.encoded(), "/api/v1/services/featured");
        let untouched = Alias::apply(&aliases, normalize("/api/v1/services").unwrap());
        assert_eq!(untouched.encoded(), "/api/v1/services");
    }
}
