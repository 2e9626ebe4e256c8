//! The gateways' HTTP/1.1 engine, in layers as Pingora has them (`shared/ARCHITECTURE.md`):
//!
//! - [`framing`]: the wire format shared by both ends: `Content-Length` and
//!   `Transfer-Encoding` (RFC 9112 §6), the body decoder, header lines and chunk sizes.
//! - [`idle`]: the idle timeout of a connection's reads and writes.
//! - [`server`]: serving one [`server::Handler`] (the app seam) on a listener; what it
//!   will not read is refused with an engine-level [`server::Refusal`].
//! - [`client`]: a pooled client ([`client::Client`]) for upstream servers.
//! - `writer`: one head encoder and body writer, for the server's answers and the
//!   client's requests alike.
//!
//! The crate names no platform type: errors are reasons and statuses; the gateway kit
//! (`ic-gateway`) renders them as the error envelope and composes the policy around
//! them. Why our own engine rather than hyper's: `cargo xtask bench gateway` measured
//! hyper's per-request dispatch above everything the gateway's own stages cost; hyper
//! stays the reference the engine is tested against.

pub mod client;
pub mod framing;
pub mod idle;
mod pool;
#[cfg(test)]
mod properties;
pub mod server;
mod writer;

/// An error of any body or handler, as the engine passes it on.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
