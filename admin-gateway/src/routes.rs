//! admin-gateway's allowlist: the admin routes of services-api and content-api with their
//! methods, and the aliases of their prefixes (`shared/spec/gateways.md`, "Pipeline,
//! admin-gateway").

use std::time::Duration;

use http::Method;
use ic_gateway::routes::{Alias, Route, RouteTable};

/// The methods of the admin API (a route allows a subset).
pub fn methods() -> Vec<Method> {
    vec![
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
    ]
}

/// The upload route (its body limit is `CONTENT_MAX_UPLOAD_BYTES`).
pub const UPLOAD: &str = "/admin/api/v1/content/upload";
/// An upload streams its whole body before the answer: up to ten minutes.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// What a route allows: read, write or both, and which writes.
#[derive(Clone, Copy)]
enum Allows {
    /// GET, HEAD.
    Read,
    /// POST.
    Create,
    /// GET, HEAD, POST.
    ReadCreate,
    /// GET, HEAD, PUT, DELETE.
    ReadUpdateDelete,
    /// PUT, DELETE.
    UpdateDelete,
    /// DELETE.
    Delete,
}

impl Allows {
    fn methods(self) -> Vec<Method> {
        let mut methods = match self {
            Self::Read => vec![Method::GET, Method::HEAD],
            Self::Create => vec![Method::POST],
            Self::ReadCreate => vec![Method::GET, Method::HEAD, Method::POST],
            Self::ReadUpdateDelete => vec![Method::GET, Method::HEAD, Method::PUT, Method::DELETE],
            Self::UpdateDelete => vec![Method::PUT, Method::DELETE],
            Self::Delete => vec![Method::DELETE],
        };
        methods.push(Method::OPTIONS);
        methods
    }
}

fn routes(upstream: &'static str, list: &[(&'static str, Allows)]) -> Vec<Route> {
    list.iter()
        .map(|&(template, allows)| Route::new(template, upstream).with_methods(&allows.methods()))
        .collect()
}

/// The admin routes of services-api (`shared/spec/services-api.md`).
pub fn services_routes() -> Vec<Route> {
    use Allows::*;
    routes(
        "services-api",
        &[
            ("/admin/api/v1/services", ReadCreate),
            ("/admin/api/v1/services/{id}", ReadUpdateDelete),
            ("/admin/api/v1/services/{id}/publish", Create),
            ("/admin/api/v1/services/{id}/archive", Create),
            ("/admin/api/v1/services/{id}/audit", Read),
            ("/admin/api/v1/services/categories", ReadCreate),
            ("/admin/api/v1/services/categories/{id}", UpdateDelete),
            ("/admin/api/v1/services/categories/{id}/audit", Read),
            ("/admin/api/v1/services/featured-categories", ReadCreate),
            (
                "/admin/api/v1/services/featured-categories/{position}",
                Delete,
            ),
        ],
    )
}

/// The admin routes of content-api (`shared/spec/content-api.md`); the upload streams up
/// to `max_upload_bytes`.
pub fn content_routes(max_upload_bytes: usize) -> Vec<Route> {
    use Allows::*;
    let mut list = routes(
        "content-api",
        &[
            ("/admin/api/v1/content", Read),
            ("/admin/api/v1/content/{id}", ReadUpdateDelete),
            ("/admin/api/v1/content/{id}/reprocess", Create),
            ("/admin/api/v1/content/{id}/status", Read),
            ("/admin/api/v1/content/{id}/virus-scans", Read),
            ("/admin/api/v1/content/{id}/virus-scan", Create),
            ("/admin/api/v1/content/{id}/access-log", Read),
            ("/admin/api/v1/content/{id}/audit", Read),
            ("/admin/api/v1/content/processing-queue", Read),
            ("/admin/api/v1/content/analytics", Read),
            ("/admin/api/v1/content/storage-backends", Read),
            (
                "/admin/api/v1/content/storage-backends/{id}/health-check",
                Create,
            ),
            ("/admin/api/v1/content/lifecycle/orphaned", Read),
            ("/admin/api/v1/content/lifecycle/cleanup", Create),
        ],
    );
    list.push(
        Route::new(UPLOAD, "content-api")
            .with_methods(&Create.methods())
            .with_max_body(max_upload_bytes)
            .with_timeout(UPLOAD_TIMEOUT),
    );
    list
}

/// Every admin route, for the route check.
pub fn table(max_upload_bytes: usize) -> RouteTable {
    let mut routes = services_routes();
    routes.extend(content_routes(max_upload_bytes));
    RouteTable::new(routes, methods())
}

/// `/admin/services…` and `/admin/content…` as short forms of the API paths.
pub fn aliases() -> Vec<Alias> {
    vec![
        Alias::new("/admin/services", "/admin/api/v1/services"),
        Alias::new("/admin/content", "/admin/api/v1/content"),
    ]
}
