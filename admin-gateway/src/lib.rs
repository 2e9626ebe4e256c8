//! admin-gateway: the staff entry point (`shared/spec/gateways.md`, "Pipeline,
//! admin-gateway"): every admin route of services-api and content-api, behind
//! authentication (Authentik's JWTs), authorization (Rego policies, in-process or an OPA
//! server) and a per-user rate limit, each request audited.

pub mod audit;
pub mod config;
pub mod pipeline;
pub mod routes;
pub mod startup;

/// The crate name, Dapr app id and `service_name` of every envelope.
pub const SERVICE_NAME: &str = "admin-gateway";
/// The version reported by health endpoints.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The OpenAPI 3.1 document of the admin API, served at [`OPENAPI_PATH`].
pub const OPENAPI: &str = include_str!("../openapi.json");
/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";
/// Admin requests carry small JSON bodies; uploads have their own limit
/// (`CONTENT_MAX_UPLOAD_BYTES`).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The default policies, compiled in (`ADMIN_POLICIES_DIR` replaces them).
pub const DEFAULT_POLICIES: &[(&str, &str)] = &[(
    "admin_gateway/authz.rego",
    include_str!("../../policies/admin_gateway/authz.rego"),
)];

pub use pipeline::{AdminGateway, Gateway, app};
pub use startup::{App, StartupError};
