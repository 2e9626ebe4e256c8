//! public-gateway's allowlist: the public routes of services-api and content-api, and
//! the aliases of their prefixes (`shared/spec/gateways.md`, "Pipeline, public-gateway").

use std::time::Duration;

use http::Method;
use ic_gateway::routes::{Alias, Route, RouteTable};

/// The methods of the public API: reads only.
pub fn methods() -> Vec<Method> {
    vec![Method::GET, Method::HEAD, Method::OPTIONS]
}

/// Every public route, for the route check.
pub fn table() -> RouteTable {
    let mut routes = public_services_routes();
    routes.extend(public_content_routes());
    RouteTable::new(routes, methods())
}

/// `/services…` and `/content…` as short forms of the API paths.
pub fn aliases() -> Vec<Alias> {
    vec![
        Alias::new("/services", "/api/v1/services"),
        Alias::new("/content", "/api/v1/content"),
    ]
}

/// The public routes of services-api (`shared/spec/services-api.md`).
pub fn public_services_routes() -> Vec<Route> {
    [
        "/api/v1/services",
        "/api/v1/services/{id}",
        "/api/v1/services/slug/{slug}",
        "/api/v1/services/featured",
        "/api/v1/services/categories",
        "/api/v1/services/categories/{id}/services",
        "/api/v1/services/search",
    ]
    .into_iter()
    .map(|t| Route::new(t, "services-api"))
    .collect()
}

/// Time a preview may take: the first request for a size generates it.
pub const PREVIEW_TIMEOUT: Duration = Duration::from_secs(120);

/// The public routes of content-api (`shared/spec/content-api.md`).
pub fn public_content_routes() -> Vec<Route> {
    let mut routes: Vec<Route> = [
        "/api/v1/content",
        "/api/v1/content/{id}",
        "/api/v1/content/{id}/download",
    ]
    .into_iter()
    .map(|t| Route::new(t, "content-api"))
    .collect();
    routes.push(
        Route::new("/api/v1/content/{id}/preview", "content-api").with_timeout(PREVIEW_TIMEOUT),
    );
    routes
}
