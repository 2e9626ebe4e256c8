//! content-api: the content library (`shared/spec/content-api.md`): streamed uploads into
//! a blob store, virus scanning from a JetStream work queue, immutable delivery.

pub mod access_log;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod preview;
pub mod processing;
pub mod routes;
pub mod scan;
pub mod startup;
pub mod storage;

use ic_events::Outbox;

/// The crate name, Dapr app id and `service_name` of every envelope.
pub const SERVICE_NAME: &str = "content-api";
/// The version reported by health endpoints.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The domain of the events (`ic.content.…`) and audit job (`content-audit`).
pub const DOMAIN: &str = "content";
/// This service's outbox.
pub const OUTBOX: Outbox = Outbox::new("content.outbox", "content_outbox");
/// Largest accepted JSON request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub use startup::{App, AppState, StartupError, app, health, spawn_development};
