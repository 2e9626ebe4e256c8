//! public-gateway: the anonymous entry point (`shared/spec/gateways.md`, "Pipeline,
//! public-gateway").

pub mod config;
pub mod pipeline;
pub mod routes;
pub mod startup;

/// The crate name, Dapr app id and `service_name` of every envelope.
pub const SERVICE_NAME: &str = "public-gateway";
/// The version reported by health endpoints.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The OpenAPI 3.1 document of the public API, served at [`OPENAPI_PATH`].
pub const OPENAPI: &str = include_str!("../openapi.json");
/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";
/// Public routes take no bodies.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub use pipeline::{Gateway, PublicGateway, app};
pub use startup::{App, StartupError};
