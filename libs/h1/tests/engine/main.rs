//! The engine's integration tests: one binary (one link on two cores).

mod client;
mod differential;
mod server;
mod wire;
