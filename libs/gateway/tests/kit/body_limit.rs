//! The route check's body limit with a real upstream that reads bodies (the admin
//! gateway's write routes): a declared oversize body is refused before any upstream
//! call, and a chunked body that outgrows the limit while streaming is 413, not 502.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Body, extract::Request, response::IntoResponse};
use bytes::Bytes;
use http::{Method, StatusCode};
use ic_gateway::{
    client_ip::Client,
    proxy::{Proxy, ProxyConfig, Upstreams},
    route_check::RouteCheck,
    routes::{Route, RouteTable},
};

const LIMIT: usize = 64 * 1024;

/// An upstream that reads every body and counts the requests it answered.
async fn upstream() -> (String, Arc<Mutex<Vec<usize>>>) {
    let sizes: Arc<Mutex<Vec<usize>>> = Arc::default();
    let log = sizes.clone();
    let router = Router::new().fallback(move |request: Request| {
        let log = log.clone();
        async move {
            match axum::body::to_bytes(request.into_body(), usize::MAX).await {
                Ok(body) => {
                    log.lock().unwrap().push(body.len());
                    StatusCode::OK.into_response()
                }
                Err(_) => (StatusCode::BAD_REQUEST, "the body broke off").into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}"), sizes)
}

async fn send(base: &str, request: Request) -> (StatusCode, serde_json::Value) {
    let check = RouteCheck {
        table: Arc::new(RouteTable::new(
            vec![Route::new("/admin/api/v1/services", "services-api")],
            vec![Method::POST],
        )),
        aliases: Arc::new(Vec::new()),
        max_body_bytes: LIMIT,
    };
    let proxy = Proxy::new(ProxyConfig {
        upstreams: Upstreams::Direct([("services-api", base.to_owned())].into()),
        app_api_token: None,
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(10),
        max_connections_per_upstream: 16,
    });
    let client = Client {
        ip: IpAddr::from([127, 0, 0, 1]),
        https: false,
    };
    let response = match check.check(request) {
        Ok((request, matched)) => proxy.forward_matched(request, matched, client).await,
        Err(refused) => refused,
    };
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

fn chunked(kib: usize) -> Body {
    Body::from_stream(futures::stream::iter(
        (0..kib).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1024]))),
    ))
}

fn post(body: Body) -> Request {
    http::Request::post("/admin/api/v1/services")
        .body(body)
        .unwrap()
}

#[tokio::test]
async fn a_chunked_body_within_the_limit_streams_through() {
    let (base, sizes) = upstream().await;
    let (status, _) = send(&base, post(chunked(60))).await;
    assert_eq!(status, 200);
    assert_eq!(*sizes.lock().unwrap(), [60 * 1024]);
}

#[tokio::test]
async fn a_chunked_body_that_outgrows_the_limit_is_413() {
    let (base, sizes) = upstream().await;
    let (status, body) = send(&base, post(chunked(80))).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE");
    assert!(
        sizes.lock().unwrap().is_empty(),
        "the upstream never accepted a truncated body"
    );
}

#[tokio::test]
async fn a_declared_oversize_body_never_reaches_the_upstream() {
    let (base, sizes) = upstream().await;
    let request = http::Request::post("/admin/api/v1/services")
        .header("content-length", (LIMIT + 1).to_string())
        .body(Body::from(vec![b'x'; LIMIT + 1]))
        .unwrap();
    let (status, _) = send(&base, request).await;
    assert_eq!(status, 413);
    assert!(sizes.lock().unwrap().is_empty());
}

/// A body that knows its length and comes in 16 KiB frames, as one the server frames by
/// its `Content-Length` does.
struct Framed {
    left: usize,
}

impl http_body::Body for Framed {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(16 * 1024);
        self.left -= n;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(vec![b'x'; n])))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left as u64)
    }
}

#[tokio::test]
async fn a_body_longer_than_the_limit_is_refused_by_its_own_size_whatever_the_headers() {
    let (base, sizes) = upstream().await;
    // No Content-Length header (a client's `Connection` may have named it away), yet the
    // body's own framing says how long it is. Were it let through, the upstream would be
    // told the limit as its length and get that much whole before the rest failed.
    let request = post(Body::new(Framed {
        left: LIMIT + 16 * 1024,
    }));
    assert!(request.headers().get("content-length").is_none());
    let (status, _) = send(&base, request).await;
    assert_eq!(status, 413);
    // A request after it, answered: what the upstream took of the first would be logged
    // before (it had it all before the 413 was answered).
    let (status, _) = send(&base, post(Body::from("ok"))).await;
    assert_eq!(status, 200);
    assert_eq!(
        *sizes.lock().unwrap(),
        [2],
        "the upstream took nothing of the first"
    );
}
