//! The route allowlist: only listed route templates reach an upstream; everything else
//! is 404 before any upstream call, and methods outside the allowed set are 405.

use std::time::Duration;

use http::Method;

use crate::path::{NormalPath, is_plain};

/// One segment of a route template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Static(&'static str),
    Param,
}

/// An allowed route: its template and the upstream app id serving it.
#[derive(Debug, Clone)]
pub struct Route {
    template: &'static str,
    segments: Vec<Segment>,
    upstream: &'static str,
    timeout: Option<Duration>,
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
        }
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
}

/// The outcome of a route check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteDecision<'a> {
    /// Allowed: the route's template, upstream app id and own timeout, if any.
    Allowed(&'static str, &'static str, Option<Duration>),
    /// Never constructed; ties the lifetime to the table.
    #[doc(hidden)]
    _Borrowed(&'a ()),
    /// No such route (404).
    NotFound,
    /// Known route, method not allowed (405).
    MethodNotAllowed,
}

impl RouteTable {
    /// A table of `routes`, each allowing `methods`.
    pub fn new(routes: Vec<Route>, methods: Vec<Method>) -> Self {
        // Checked once, at startup: a longer route could never match.
        assert!(
            routes.iter().all(|r| r.segments.len() <= MAX_SEGMENTS),
            "a route has more than {MAX_SEGMENTS} segments"
        );
        Self { routes, methods }
    }

    /// The `Allow` header of every route (their methods), for 405s and plain OPTIONS.
    pub fn allow_header(&self) -> http::HeaderValue {
        let names: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
        http::HeaderValue::from_str(&names.join(", ")).expect("method names are header values")
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
        if !self.methods.contains(method) {
            return RouteDecision::MethodNotAllowed;
        }
        RouteDecision::Allowed(route.template, route.upstream, route.timeout)
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
        let routes = [
            "/api/v1/services",
            "/api/v1/services/{id}",
            "/api/v1/services/categories",
        ]
        .into_iter()
        .map(|t| Route::new(t, "services-api"))
        .collect();
        let table = RouteTable::new(routes, vec![Method::GET, Method::HEAD, Method::OPTIONS]);
        let decide = |m: Method, p: &str| table.decide(&m, &normalize(p).unwrap());
        assert_eq!(
            decide(Method::GET, "/api/v1/services/abc"),
            RouteDecision::Allowed("/api/v1/services/{id}", "services-api", None)
        );
        assert_eq!(
            decide(Method::GET, "/api/v1/services/categories"),
            RouteDecision::Allowed("/api/v1/services/categories", "services-api", None)
        );
        assert_eq!(
            decide(Method::GET, "/admin/api/v1/services"),
            RouteDecision::NotFound
        );
        assert_eq!(
            decide(Method::GET, "/api/v1/services/a/b/c"),
            RouteDecision::NotFound
        );
        assert_eq!(
            decide(Method::POST, "/api/v1/services"),
            RouteDecision::MethodNotAllowed
        );
        assert_eq!(decide(Method::DELETE, "/nowhere"), RouteDecision::NotFound);
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
