//! services-api: the catalogue of medical services (`shared/spec/services-api.md`).

pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod routes;
pub mod startup;

use ic_events::Outbox;

/// The crate name, Dapr app id and `service_name` of every envelope.
pub const SERVICE_NAME: &str = "services-api";
/// The version reported by health endpoints.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The domain of the events (`ic.services.…`) and audit job (`services-audit`).
pub const DOMAIN: &str = "services";
/// This service's outbox.
pub const OUTBOX: Outbox = Outbox::new("services.outbox", "services_outbox");
/// Largest accepted request body: admin JSON bodies are small.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub use startup::{App, AppState, StartupError, app, development_app, health};
