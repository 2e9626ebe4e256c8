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
/// The NATS headers that carry a request's context from one message to the next: its
/// trace context and correlation id.
pub const CONTEXT_HEADERS: [&str; 3] = [
    ic_telemetry::TRACEPARENT,
    ic_telemetry::TRACESTATE,
    ic_telemetry::X_CORRELATION_ID,
];

/// A NATS header's value, its name matched without regard to case: NATS compares header
/// names byte for byte, HTTP does not, and messages written before the names were
/// unified spell the correlation id `X-Correlation-ID`.
pub fn header<'a>(headers: &'a async_nats::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| AsRef::<str>::as_ref(*key).eq_ignore_ascii_case(name))
        .and_then(|(_, values)| values.first())
        .map(async_nats::HeaderValue::as_str)
}

/// Copies [`CONTEXT_HEADERS`] from one message's headers to the next's.
pub fn copy_context_headers(from: Option<&async_nats::HeaderMap>, to: &mut async_nats::HeaderMap) {
    let Some(from) = from else {
        return;
    };
    for name in CONTEXT_HEADERS {
        if let Some(value) = header(from, name) {
            to.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_headers_are_found_whatever_their_case_and_copied_under_one_name() {
        let mut old = async_nats::HeaderMap::new();
        old.insert("X-Correlation-ID", "c-1");
        old.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        );
        old.insert("Nats-Msg-Id", "m-1");
        assert_eq!(header(&old, "x-correlation-id"), Some("c-1"));
        let mut next = async_nats::HeaderMap::new();
        copy_context_headers(Some(&old), &mut next);
        assert_eq!(
            next.get(ic_telemetry::X_CORRELATION_ID).map(|v| v.as_str()),
            Some("c-1")
        );
        assert!(next.get("traceparent").is_some());
        assert!(
            next.get("Nats-Msg-Id").is_none(),
            "only the context is copied"
        );
    }
}
