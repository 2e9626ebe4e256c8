//! With an OTLP endpoint configured, request spans are exported over OTLP/HTTP
//! (protobuf) to it, continuing the caller's trace. The receiver is a FAKE collector
//! (no OpenTelemetry collector runs here) that records what it is sent on the real
//! `/v1/traces` path.

use std::sync::{Arc, Mutex};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, routing::post};
use ic_telemetry::{LogFormat, TelemetryConfig, TraceContext, link_span};

type Received = Arc<Mutex<Vec<(Option<String>, Vec<u8>)>>>;

async fn collect(
    State(received): State<Received>,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    received.lock().unwrap().push((content_type, body.to_vec()));
    ""
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_are_exported_over_otlp_http_in_the_callers_trace() {
    ic_telemetry::install_crypto_provider();
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/traces", post(collect))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let guard = ic_telemetry::init(&TelemetryConfig {
        service_name: "otlp-test",
        version: "0.0.0",
        environment: "development".into(),
        log_format: LogFormat::Json,
        filter: Some("info".into()),
        otlp_endpoint: ic_telemetry::otlp_traces_endpoint(Some(&format!("http://{addr}")), None),
    });

    let incoming = TraceContext::continue_from(
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        None,
    );
    let span = tracing::info_span!("http.request", route = "/api/v1/services");
    let linked = link_span(&span, &incoming);
    assert_eq!(
        linked.trace_id.to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "the caller's trace continues"
    );
    assert_ne!(
        linked.span_id.to_string(),
        "00f067aa0ba902b7",
        "with a span of our own"
    );
    span.in_scope(|| tracing::info!("inside"));
    drop(span);
    // Dropping the guard flushes the batch exporter (blocking: off the async workers).
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();

    let received = received.lock().unwrap();
    assert!(!received.is_empty(), "the collector received an export");
    let (content_type, body) = &received[0];
    assert_eq!(content_type.as_deref(), Some("application/x-protobuf"));
    let contains = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    assert!(
        contains(&linked.trace_id.0),
        "the exported span carries the trace id"
    );
    assert!(contains(&linked.span_id.0), "and its own span id");
    assert!(
        contains(b"http.request") && contains(b"otlp-test"),
        "span name and service name"
    );
}
