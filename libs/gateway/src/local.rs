//! What a gateway answers itself, never forwarded: health, readiness and metrics (no
//! token, no rate limit) and its OpenAPI document; and a plain `OPTIONS` on an allowed
//! route (a CORS preflight is answered earlier, by [`crate::cors`]).

use axum::{
    Router,
    extract::Request,
    response::{IntoResponse, Response},
    routing::get,
};
use http::{HeaderValue, StatusCode, header};
use ic_health::Health;
use ic_http::app_token::OPEN_PATHS;
use ic_telemetry::{HttpMetrics, RouteLabel, metrics_handler};
use tower::ServiceExt;

/// The routes a gateway answers itself.
#[derive(Debug, Clone)]
pub struct LocalRoutes {
    router: Router,
    openapi_path: &'static str,
}

impl LocalRoutes {
    /// `/health`, `/healthz`, `/health/ready` from `health`, `/metrics` from `metrics`,
    /// and `openapi` (a JSON document) at `openapi_path`.
    pub fn new(
        health: Health,
        metrics: HttpMetrics,
        openapi_path: &'static str,
        openapi: &'static str,
    ) -> Self {
        let router = Router::new()
            .merge(health.router())
            .route("/metrics", get(metrics_handler).with_state(metrics))
            .route(
                openapi_path,
                get(move || async move {
                    (
                        [
                            (header::CONTENT_TYPE, "application/json"),
                            (header::CACHE_CONTROL, "public, max-age=300"),
                        ],
                        openapi,
                    )
                }),
            )
            .fallback(ic_http::fallback_not_found)
            .method_not_allowed_fallback(ic_http::fallback_method_not_allowed);
        Self {
            router,
            openapi_path,
        }
    }

    /// The route of `path` when it is answered here.
    pub fn route_of(&self, path: &str) -> Option<&'static str> {
        OPEN_PATHS
            .iter()
            .copied()
            .chain([self.openapi_path])
            .find(|p| *p == path)
    }

    /// The answer to `request` on `route` (from [`LocalRoutes::route_of`]), labelled with
    /// it for the metrics stage around it.
    pub async fn answer(&self, request: Request, route: &'static str) -> Response {
        // Boxed: the router's future is large.
        let answered = Box::pin(self.router.clone().oneshot(request));
        let mut response = match answered.await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        response.extensions_mut().insert(RouteLabel(route));
        response
    }
}

/// A plain `OPTIONS` on an allowed route: 204 with the route's methods (RFC 9110 §9.3.7).
pub fn options(route: &'static str, allow: HeaderValue) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::ALLOW, allow);
    response.extensions_mut().insert(RouteLabel(route));
    response
}
