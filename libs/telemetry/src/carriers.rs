//! Inject and extract W3C trace context on the platform's carriers: NATS message headers
//! (producer → JetStream → consumer) and reqwest requests (service → upstream/webhook).

use crate::TraceContext;

/// Writes `traceparent` (and `tracestate`) for a call made on behalf of `ctx` into NATS
/// headers.
#[cfg(feature = "nats")]
pub fn inject_nats(ctx: &TraceContext, headers: &mut async_nats::HeaderMap) {
    for (name, value) in ctx.header_pairs() {
        headers.insert(name, value.as_str());
    }
}

/// Continues the trace carried by a NATS message's headers (a new root when absent).
#[cfg(feature = "nats")]
pub fn extract_nats(headers: Option<&async_nats::HeaderMap>) -> TraceContext {
    TraceContext::extract(|name| {
        headers
            .and_then(|h| h.get(name))
            .map(async_nats::HeaderValue::as_str)
    })
}

/// Adds `traceparent` (and `tracestate`) to an outgoing request.
#[cfg(feature = "reqwest")]
pub fn inject_reqwest(
    ctx: &TraceContext,
    mut request: reqwest::RequestBuilder,
) -> reqwest::RequestBuilder {
    for (name, value) in ctx.header_pairs() {
        request = request.header(name, value);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "nats")]
    #[test]
    fn nats_headers_carry_the_trace_to_the_consumer() {
        let producer = TraceContext::continue_from(
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("vendor=x"),
        );
        let mut headers = async_nats::HeaderMap::new();
        inject_nats(&producer, &mut headers);
        let consumer = extract_nats(Some(&headers));
        assert_eq!(consumer.trace_id, producer.trace_id);
        assert_eq!(consumer.parent_span_id, Some(producer.span_id));
        assert_eq!(consumer.tracestate.as_deref(), Some("vendor=x"));
        assert!(extract_nats(None).parent_span_id.is_none());
    }

    #[cfg(feature = "reqwest")]
    #[test]
    fn outgoing_requests_carry_traceparent() {
        crate::install_crypto_provider();
        let ctx = TraceContext::new_root();
        let request = inject_reqwest(&ctx, reqwest::Client::new().get("http://127.0.0.1:9/x"))
            .build()
            .unwrap();
        assert_eq!(request.headers()["traceparent"], ctx.traceparent().as_str());
    }
}
