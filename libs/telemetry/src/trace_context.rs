use std::fmt;

use rand::Rng;

/// The W3C `traceparent` header name.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C `tracestate` header name.
pub const TRACESTATE: &str = "tracestate";

/// A 16-byte W3C trace id (never all zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte W3C span id (never all zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

/// Lower-case hex of `bytes` into `out` (twice as long), without formatting machinery:
/// ids are written on every request.
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8], out: &mut [u8]) -> fmt::Result {
    hex_into(bytes, out);
    // Only ASCII hex digits were written.
    f.write_str(std::str::from_utf8(out).map_err(|_| fmt::Error)?)
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0, &mut [0u8; 32])
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0, &mut [0u8; 16])
    }
}

fn random_nonzero<const N: usize>() -> [u8; N] {
    let mut rng = rand::rng();
    loop {
        let bytes: [u8; N] = rng.random();
        if bytes.iter().any(|b| *b != 0) {
            return bytes;
        }
    }
}

fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; N];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16)?;
        let lo = (chunk[1] as char).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    out.iter().any(|b| *b != 0).then_some(out)
}

/// The trace context of one unit of work: the trace it belongs to, this unit's own span,
/// and the span of its caller (if any).
///
/// Carried from HTTP headers into logs, outbox rows, NATS headers and webhook requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace this work belongs to.
    pub trace_id: TraceId,
    /// This unit's own span.
    pub span_id: SpanId,
    /// The caller's span, when the context was continued from a `traceparent`.
    pub parent_span_id: Option<SpanId>,
    /// Whether the trace is sampled (flag 01).
    pub sampled: bool,
    /// The opaque vendor `tracestate`, passed on unchanged.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Starts a new trace (no incoming context).
    pub fn new_root() -> Self {
        Self {
            trace_id: TraceId(random_nonzero()),
            span_id: SpanId(random_nonzero()),
            parent_span_id: None,
            sampled: true,
            tracestate: None,
        }
    }

    /// Parses a `traceparent` value (version 00 and, per the spec, unknown future versions
    /// with at least the same fields). Returns `None` when it is malformed.
    pub fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, bool)> {
        let value = value.trim();
        let mut parts = value.split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        let lower_hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if version.len() != 2 || version == "ff" || !lower_hex(version) {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if flags.len() != 2 {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some((
            TraceId(parse_hex(trace)?),
            SpanId(parse_hex(span)?),
            flags & 1 == 1,
        ))
    }

    /// Continues the caller's trace with a new span of our own, or starts a new trace
    /// when there is no valid `traceparent`.
    pub fn continue_from(traceparent: Option<&str>, tracestate: Option<&str>) -> Self {
        match traceparent.and_then(Self::parse_traceparent) {
            Some((trace_id, parent, sampled)) => Self {
                trace_id,
                span_id: SpanId(random_nonzero()),
                parent_span_id: Some(parent),
                sampled,
                tracestate: tracestate
                    .filter(|s| s.len() <= 512 && s.is_ascii())
                    .map(str::to_owned),
            },
            None => Self::new_root(),
        }
    }

    /// Extracts a context from any header carrier (HTTP headers, NATS headers, a JSON
    /// map) given a lookup function.
    pub fn extract<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Self {
        Self::continue_from(get(TRACEPARENT), get(TRACESTATE))
    }

    /// A child context for an outgoing call: same trace, a new span whose parent is ours.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: SpanId(random_nonzero()),
            parent_span_id: Some(self.span_id),
            sampled: self.sampled,
            tracestate: self.tracestate.clone(),
        }
    }

    /// The `traceparent` value naming this context's span as the parent.
    pub fn traceparent(&self) -> String {
        // Built by hand: written on every request and every outgoing call.
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        hex_into(&self.trace_id.0, &mut out[3..35]);
        out[35] = b'-';
        hex_into(&self.span_id.0, &mut out[36..52]);
        out[52..].copy_from_slice(if self.sampled { b"-01" } else { b"-00" });
        // Hex digits and dashes: always UTF-8.
        std::str::from_utf8(&out)
            .map(str::to_owned)
            .unwrap_or_default()
    }

    /// The header pairs to inject into any carrier (reqwest request, NATS headers, outbox
    /// row). Inject with `for (k, v) in ctx.header_pairs() { headers.insert(k, v) }`.
    pub fn header_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![(TRACEPARENT, self.traceparent())];
        if let Some(state) = &self.tracestate {
            pairs.push((TRACESTATE, state.clone()));
        }
        pairs
    }
}

/// Binds `span` to the trace: with OpenTelemetry export on, the span continues the
/// caller's trace (when `incoming` came from a `traceparent`) and the returned context
/// carries the OpenTelemetry span's own ids, so logs, events, audit records and exported
/// spans agree. Without export, `incoming` is returned unchanged.
pub fn link_span(span: &tracing::Span, incoming: &TraceContext) -> TraceContext {
    use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    if let Some(parent) = incoming.parent_span_id {
        let remote = SpanContext::new(
            opentelemetry::trace::TraceId::from_bytes(incoming.trace_id.0),
            opentelemetry::trace::SpanId::from_bytes(parent.0),
            if incoming.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let otel = span.context();
    let own = otel.span().span_context().clone();
    if !own.is_valid() {
        return incoming.clone();
    }
    TraceContext {
        trace_id: TraceId(own.trace_id().to_bytes()),
        span_id: SpanId(own.span_id().to_bytes()),
        parent_span_id: incoming.parent_span_id,
        sampled: own.is_sampled(),
        tracestate: incoming.tracestate.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::continue_from(Some(incoming), Some("congo=t61rcWkgMzE"));
        assert_eq!(ctx.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.parent_span_id.unwrap().to_string(), "00f067aa0ba902b7");
        assert_ne!(ctx.span_id.to_string(), "00f067aa0ba902b7");
        assert!(ctx.sampled);
        assert_eq!(ctx.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        assert!(
            ctx.traceparent()
                .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
        );
    }

    #[test]
    fn malformed_traceparents_start_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let ctx = TraceContext::continue_from(Some(bad), None);
            assert!(
                ctx.parent_span_id.is_none(),
                "{bad:?} should not be continued"
            );
        }
    }

    #[test]
    fn a_child_keeps_the_trace_and_points_at_its_parent() {
        let root = TraceContext::new_root();
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_eq!(child.parent_span_id, Some(root.span_id));
        let pairs = child.header_pairs();
        assert_eq!(pairs[0].0, TRACEPARENT);
        let parsed = TraceContext::parse_traceparent(&pairs[0].1).unwrap();
        assert_eq!(parsed.0, root.trace_id);
        assert_eq!(parsed.1, child.span_id);
    }
}
