//! Domain events: the CloudEvents 1.0 envelope, the NATS subjects and JetStream streams
//! (defined once, for producers and consumers alike), the transactional outbox written in
//! the caller's transaction, and the relay that publishes it to JetStream.
//!
//! Contract: `shared/spec/README.md`, "Events".

mod cloudevent;
pub mod outbox;
pub mod relay;
pub mod streams;

pub use cloudevent::CloudEvent;
pub use outbox::{Outbox, OutboxMessage};
pub use relay::{Relay, RelayConfig};

/// NATS header carrying the message id, so JetStream de-duplicates republished rows.
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";
/// NATS header carrying the correlation id.
pub const CORRELATION_ID_HEADER: &str = "X-Correlation-ID";
