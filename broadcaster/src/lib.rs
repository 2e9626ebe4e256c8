//! broadcaster: the platform's CloudEvents from NATS JetStream to signed webhooks
//! (`shared/spec/broadcaster.md`).
//!
//! - [`fanout`]: `IC_EVENTS` → one task per matching subscription in `IC_DELIVERIES`.
//! - [`delivery`]: per subscription, its tasks → signed POSTs, retries, dead letters.
//! - [`dead_letters`]: `IC_DEAD_LETTERS`, listed and replayed by the operating routes.
//! - [`routes`]: `/subscriptions` and `/dead-letters` on 8002; `/metrics` on 7777.
//! - [`subscription_state`]: each subscription's breaker, permits, counters, state.
//! - [`tasks`]: the names of the delivery tasks and their consumers.

pub mod config;
pub mod dead_letters;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod fanout;
pub mod metrics;
pub mod pull;
pub mod routes;
pub mod startup;
pub mod subscription_state;
pub mod tasks;

/// The crate name, Dapr app id and `service_name` of every envelope.
pub const SERVICE_NAME: &str = "broadcaster";
/// The version reported by health endpoints and `User-Agent`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub use startup::{App, AppState, StartupError, app, health, metrics_app};
