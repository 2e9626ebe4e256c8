//! The engine's integration tests: one binary (one link on two cores).

mod client;
mod server;
