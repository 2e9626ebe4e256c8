//! One module per resource, each with `router()`.

pub mod admin;
pub mod analytics;
pub mod public;
pub mod storage;
pub mod upload;
