use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, header};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: Cow<'static, str>,
    route: Cow<'static, str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: Cow<'static, str>,
    route: Cow<'static, str>,
}

/// Latency buckets in seconds, from 0.5 ms to 10 s.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The route label for requests that matched no route: a constant, so a scan of random
/// paths cannot blow up the label cardinality.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// A route label set on a response by a handler that matched a route itself (a
/// gateway's route check), used instead of the router's matched path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteLabel(pub &'static str);

/// The HTTP server metrics of one service and the registry they live in.
///
/// Owned by the app state (no global recorder), so several apps in one test process keep
/// separate counts.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    /// The two metrics of each (method, route, status) with static labels, found by
    /// one cheap lookup instead of two in the families (SipHash over the labels).
    handles: Arc<RwLock<HashMap<StaticLabels, Handles, foldhash::fast::RandomState>>>,
}

type StaticLabels = (&'static str, &'static str, u16);
type Handles = (Counter, Histogram);

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::with_registry(Registry::default())
    }
}

impl HttpMetrics {
    /// Registers `http_server_requests_total` and `http_server_request_duration_seconds`
    /// in `registry` (which may already hold the service's own metrics).
    pub fn with_registry(mut registry: Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_server_requests",
            "HTTP requests served, by method, route template and status",
            requests.clone(),
        );
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(BUCKETS)) as fn() -> Histogram,
        );
        registry.register(
            "http_server_request_duration_seconds",
            "HTTP request latency in seconds, by method and route template",
            durations.clone(),
        );
        Self {
            registry: Arc::new(registry),
            requests,
            durations,
            handles: Arc::default(),
        }
    }

    /// Records one finished request. Static labels (standard methods, route templates
    /// known at compile time) cost no allocation per request.
    pub fn observe(
        &self,
        method: impl Into<Cow<'static, str>>,
        route: impl Into<Cow<'static, str>>,
        status: u16,
        seconds: f64,
    ) {
        let (method, route) = (method.into(), route.into());
        if let (Cow::Borrowed(method), Cow::Borrowed(route)) = (&method, &route) {
            let labels = (*method, *route, status);
            let known = self.handles.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((counter, histogram)) = known.get(&labels) {
                counter.inc();
                histogram.observe(seconds);
                return;
            }
            drop(known);
            let (counter, histogram) = self.new_handles(labels);
            counter.inc();
            histogram.observe(seconds);
            return;
        }
        let route = RouteLabels { method, route };
        self.requests
            .get_or_create(&RequestLabels {
                method: route.method.clone(),
                route: route.route.clone(),
                status,
            })
            .inc();
        self.durations.get_or_create(&route).observe(seconds);
    }

    /// The metrics of static labels met for the first time, kept for the next request.
    fn new_handles(&self, labels: StaticLabels) -> Handles {
        let (method, route, status) = labels;
        let route_labels = RouteLabels {
            method: Cow::Borrowed(method),
            route: Cow::Borrowed(route),
        };
        let handles = (
            self.requests
                .get_or_create(&RequestLabels {
                    method: Cow::Borrowed(method),
                    route: Cow::Borrowed(route),
                    status,
                })
                .clone(),
            self.durations.get_or_create(&route_labels).clone(),
        );
        self.handles
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(labels, handles.clone());
        handles
    }

    /// The registry in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// The registry as a scraper asked for it (its `Accept` header): OpenMetrics when it
    /// names `application/openmetrics-text`, else the classic Prometheus text format
    /// 0.0.4, which `promtool check metrics` and older consumers read.
    pub fn exposition(&self, accept: Option<&HeaderValue>) -> Response {
        let openmetrics = accept
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/openmetrics-text"));
        let text = self.render();
        let (content_type, body) = if openmetrics {
            (OPENMETRICS_CONTENT_TYPE, text)
        } else {
            (PROMETHEUS_CONTENT_TYPE, classic_text(&text))
        };
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            body,
        )
            .into_response()
    }
}

/// [`Tracked`] as axum middleware, for the services' routers
/// (`axum::middleware::from_fn_with_state(metrics, track_http)`).
pub async fn track_http(
    State(metrics): State<HttpMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let tracked = Tracked::start(&request);
    let response = next.run(request).await;
    tracked.finish(&metrics, &response);
    response
}

/// The metrics stage, in two steps (a pipeline runs its stages in one function instead of
/// nesting them): [`Tracked::start`] when the request arrives, [`Tracked::finish`] with
/// its response.
#[derive(Debug)]
#[must_use = "a request is recorded only when finished"]
pub struct Tracked {
    started: Instant,
    method: &'static str,
    route: Cow<'static, str>,
}

impl Tracked {
    /// Starts the clock for `request`.
    pub fn start(request: &Request) -> Self {
        Self {
            started: Instant::now(),
            method: method_label(request.method()),
            route: request
                .extensions()
                .get::<MatchedPath>()
                .map_or(Cow::Borrowed(UNMATCHED_ROUTE), |m| {
                    Cow::Owned(m.as_str().to_owned())
                }),
        }
    }

    /// Records the request under the route its response names ([`RouteLabel`]), else
    /// the router's matched path.
    pub fn finish(self, metrics: &HttpMetrics, response: &Response) {
        let route = response
            .extensions()
            .get::<RouteLabel>()
            .map_or(self.route, |label| Cow::Borrowed(label.0));
        metrics.observe(
            self.method,
            route,
            response.status().as_u16(),
            self.started.elapsed().as_secs_f64(),
        );
    }
}

/// The method label: standard methods as static strings, any other one as `other`
/// (an extension method must not add label values).
fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// The content type of [`HttpMetrics::render`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`, in the format the scraper's `Accept` asks for
/// ([`HttpMetrics::exposition`]).
pub async fn metrics_handler(
    State(metrics): State<HttpMetrics>,
    headers: http::HeaderMap,
) -> Response {
    metrics.exposition(headers.get(header::ACCEPT))
}

/// OpenMetrics text as the classic Prometheus text format 0.0.4: a counter family `x` is
/// named by its sample `x_total` in `# HELP`/`# TYPE` (else the classic parser takes the
/// samples for untyped ones and loses the help), `_created` samples, `# UNIT` lines and
/// `# EOF` go, and the rest is the same in both.
fn classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut counters: Vec<&str> = Vec::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.push(name);
        }
    }
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| line.strip_prefix(prefix).map(|rest| (prefix, rest)));
        if let Some((prefix, rest)) = meta {
            let name = rest.split(' ').next().unwrap_or_default();
            if counters.contains(&name) {
                out.push_str(prefix);
                out.push_str(name);
                out.push_str("_total");
                out.push_str(&rest[name.len()..]);
                out.push('\n');
                continue;
            }
        } else {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            if let Some(family) = name.strip_suffix("_created")
                && counters.contains(&family)
            {
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, middleware::from_fn_with_state, routing::get};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn requests_are_counted_under_their_route_template_not_the_raw_path() {
        let metrics = HttpMetrics::default();
        let app = Router::new()
            .route("/items/{id}", get(|| async { "ok" }))
            .route("/metrics", get(metrics_handler))
            .layer(from_fn_with_state(metrics.clone(), track_http))
            .with_state(metrics.clone());
        for path in ["/items/1", "/items/2", "/nowhere/3"] {
            app.clone()
                .oneshot(http::Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
        }
        let text = metrics.render();
        assert!(
            text.contains(
                r#"http_server_requests_total{method="GET",route="/items/{id}",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"route="unmatched",status="404"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("http_server_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(!text.contains("/items/1"), "{text}");
    }

    #[test]
    fn the_classic_text_format_names_counters_by_their_samples_and_has_no_eof() {
        let metrics = HttpMetrics::default();
        metrics.observe("GET", "/a", 200, 0.001);
        let classic = classic_text(&metrics.render());
        assert!(
            classic.contains("# TYPE http_server_requests_total counter\n"),
            "{classic}"
        );
        assert!(
            classic.contains("# HELP http_server_requests_total "),
            "{classic}"
        );
        assert!(
            classic.contains(
                "http_server_requests_total{method=\"GET\",route=\"/a\",status=\"200\"} 1\n"
            ),
            "{classic}"
        );
        assert!(
            classic.contains("# TYPE http_server_request_duration_seconds histogram\n"),
            "{classic}"
        );
        assert!(!classic.contains("# EOF"), "{classic}");
        assert!(!classic.contains("_created"), "{classic}");

        let asked = |accept: Option<&'static str>| {
            let response = metrics.exposition(accept.map(HeaderValue::from_static).as_ref());
            response.headers()[header::CONTENT_TYPE].clone()
        };
        assert_eq!(asked(None), PROMETHEUS_CONTENT_TYPE);
        assert_eq!(asked(Some("text/plain")), PROMETHEUS_CONTENT_TYPE);
        assert_eq!(
            asked(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            OPENMETRICS_CONTENT_TYPE
        );
    }

    #[test]
    fn static_and_owned_labels_count_in_the_same_series() {
        let metrics = HttpMetrics::default();
        metrics.observe("GET", "/a", 200, 0.001);
        metrics.observe("GET", "/a", 200, 0.001);
        metrics.observe("GET", "/a".to_owned(), 200, 0.001);
        metrics.observe("GET", "/a", 404, 0.001);
        let text = metrics.render();
        assert!(
            text.contains(r#"http_server_requests_total{method="GET",route="/a",status="200"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"http_server_requests_total{method="GET",route="/a",status="404"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"http_server_request_duration_seconds_count{method="GET",route="/a"} 4"#
            ),
            "{text}"
        );
    }
}
