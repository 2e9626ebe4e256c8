//! The floor for the gateway as built (the engine's HTTP/1.1 server and client),
//! measured by `cargo xtask bench gateway`: a bare proxy (no pipeline, no
//! checks) that adds the same request and response headers as public-gateway (names
//! parsed once, mimalloc, as in the gateway), so the
//! difference to it is what the pipeline's work costs.
//!
//! Usage: `bare_proxy <port> <upstream server URL, http://host:port>`.
#![allow(clippy::disallowed_methods)] // a benchmark tool reads its arguments

use std::{net::IpAddr, sync::Arc, time::Duration};

use http::{HeaderName, HeaderValue, Request, Response};
use ic_h1::{
    client::{Client, Deadlines, ResponseBody, Target},
    server::{Handler, Incoming, Refusal, ServeOptions, serve_with},
};
use tokio_util::sync::CancellationToken;

const REQUEST_HEADERS: [(&str, &str); 6] = [
    (
        "traceparent",
        "00-2770424486b795d68ff7942ccac96bcf-6fe9139dfc690e6d-01",
    ),
    ("x-correlation-id", "8e4a2089-d386-4c51-a5a9-42f20b151121"),
    ("x-request-id", "7c930d43-a63c-47b2-bdf6-6ff8a59c0c31"),
    ("x-forwarded-for", "127.0.0.1"),
    ("x-forwarded-proto", "http"),
    ("x-forwarded-host", "127.0.0.1"),
];

const RESPONSE_HEADERS: [(&str, &str); 20] = [
    ("ratelimit-limit", "1000000"),
    ("ratelimit-remaining", "999999"),
    ("ratelimit-reset", "1"),
    ("x-ratelimit-limit", "1000000"),
    ("x-ratelimit-remaining", "999999"),
    ("x-ratelimit-reset", "1"),
    ("vary", "Origin"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'self'; frame-ancestors 'none'",
    ),
    ("strict-transport-security", "max-age=31536000"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    (
        "permissions-policy",
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()",
    ),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "cross-origin"),
    ("x-permitted-cross-domain-policies", "none"),
    ("x-correlation-id", "8e4a2089-d386-4c51-a5a9-42f20b151121"),
    ("x-request-id", "7c930d43-a63c-47b2-bdf6-6ff8a59c0c31"),
    ("x-trace-id", "2770424486b795d68ff7942ccac96bcf"),
    (
        "traceparent",
        "00-2770424486b795d68ff7942ccac96bcf-6fe9139dfc690e6d-01",
    ),
];

/// The allocator public-gateway uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Forwards every request to the upstream with the gateway's headers added.
struct Bare {
    client: Client,
    /// Resolved once, as the gateway's upstreams are.
    upstream: Target,
    /// The headers, their names parsed once (as the gateway's are).
    request_headers: Vec<(HeaderName, HeaderValue)>,
    response_headers: Vec<(HeaderName, HeaderValue)>,
    /// The gateway's defaults.
    deadlines: Deadlines,
}

fn parsed(headers: &[(&'static str, &'static str)]) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            )
        })
        .collect()
}

impl Handler for Bare {
    type Body = ResponseBody;

    async fn handle(&self, mut request: Request<Incoming>, _: IpAddr) -> Response<ResponseBody> {
        for (name, value) in &self.request_headers {
            request.headers_mut().insert(name, value.clone());
        }
        let mut response = self
            .client
            .send_to(&self.upstream, request, self.deadlines)
            .await
            .expect("the benchmark's upstream answers");
        for (name, value) in &self.response_headers {
            response.headers_mut().insert(name, value.clone());
        }
        response
    }

    async fn refuse(&self, refusal: Refusal, _: IpAddr) -> Response<ResponseBody> {
        panic!("the benchmark sends nothing to refuse: {refusal}")
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).expect("a port");
    let upstream = args.next().expect("an upstream base URL");
    let client = Client::new(Duration::from_secs(2), Duration::from_secs(60));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let upstream = client
        .target(&upstream.parse().expect("an upstream URL"))
        .expect("an http:// upstream");
    let bare = Arc::new(Bare {
        client,
        upstream,
        request_headers: parsed(&REQUEST_HEADERS),
        response_headers: parsed(&RESPONSE_HEADERS),
        deadlines: Deadlines {
            upload: Duration::from_secs(30),
            answer: Duration::from_secs(30),
        },
    });
    serve_with(
        listener,
        bare,
        CancellationToken::new(),
        ServeOptions::default(),
    )
    .await
    .expect("serving");
}
