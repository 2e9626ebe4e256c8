//! The engine's HTTP/1.1 server spoken to over raw TCP: keep-alive and pipelining,
//! HTTP/1.0, request bodies (length, chunked, `Expect: 100-continue`, left unread),
//! response framing, a request-smuggling battery refused before the pipeline, the header
//! read and idle timeouts, and the graceful drain.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    body::Body,
    extract::Request,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt;
use ic_h1::server::{Handler, Incoming, Refusal, ServeOptions, serve_with};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Notify,
    task::JoinHandle,
};

use crate::wire::Client;
use tokio_util::sync::CancellationToken;

/// Answers by path; counts the requests that reached it.
#[derive(Default)]
struct Echo {
    seen: AtomicUsize,
    /// Told when the body of an `/endless` answer is dropped.
    endless_dropped: Arc<Notify>,
}

/// Tells its `Notify` when dropped.
struct DropSignal(Arc<Notify>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

impl Handler for Echo {
    type Body = Body;

    async fn handle(&self, request: http::Request<Incoming>, peer: IpAddr) -> Response {
        let request: Request = request.map(Body::new);
        self.seen.fetch_add(1, Ordering::SeqCst);
        let path = request.uri().path().to_owned();
        match path.as_str() {
            // The request as the pipeline saw it, its body included.
            "/echo" => {
                let head = format!(
                    "{} {} {:?} peer={} host={:?} length={:?}\n",
                    request.method(),
                    request.uri(),
                    request.version(),
                    peer,
                    request.headers().get("host"),
                    request.headers().get("content-length"),
                );
                match request.into_body().collect().await {
                    Ok(body) => {
                        let mut out = head.into_bytes();
                        out.extend_from_slice(&body.to_bytes());
                        out.into_response()
                    }
                    Err(err) => {
                        (StatusCode::BAD_REQUEST, format!("body failed: {err}")).into_response()
                    }
                }
            }
            // Streams the request body back as the answer's body.
            "/mirror" => Response::new(request.into_body()),
            // Answers without reading the body.
            "/ignore" => (StatusCode::PAYLOAD_TOO_LARGE, "no thanks").into_response(),
            // A body of unknown length, in pieces.
            "/stream" => {
                let pieces = ["one,", "two,", "three"].map(Ok::<_, std::io::Error>);
                Body::from_stream(futures::stream::iter(pieces)).into_response()
            }
            // A body that fails after its first piece.
            "/broken" => {
                let pieces = [
                    Ok(Bytes::from_static(b"partial")),
                    Err(std::io::Error::other("gone")),
                ];
                Body::from_stream(futures::stream::iter(pieces)).into_response()
            }
            // A body that never ends.
            "/endless" => {
                let signal = DropSignal(self.endless_dropped.clone());
                let chunks = futures::stream::repeat_with(move || {
                    let _ = &signal;
                    Ok::<_, std::io::Error>(Bytes::from_static(&CHUNK))
                });
                Body::from_stream(chunks).into_response()
            }
            "/no-content" => StatusCode::NO_CONTENT.into_response(),
            // A pipeline bug: an interim status as the final answer.
            "/interim" => StatusCode::CONTINUE.into_response(),
            "/slow" => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "slow".into_response()
            }
            _ => (StatusCode::OK, "hello").into_response(),
        }
    }

    async fn refuse(&self, refusal: Refusal, peer: IpAddr) -> Response {
        let json = serde_json::json!({"status": refusal.status.as_u16(), "reason": refusal.reason});
        let mut response = (refusal.status, json.to_string()).into_response();
        let by = HeaderValue::try_from(format!("echo for {peer}")).unwrap();
        response.headers_mut().insert("x-refused-by", by);
        response
    }
}

struct Server {
    port: u16,
    echo: Arc<Echo>,
    token: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(options: ServeOptions) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let echo = Arc::new(Echo::default());
    let token = CancellationToken::new();
    let task = tokio::spawn(serve_with(listener, echo.clone(), token.clone(), options));
    Server {
        port,
        echo,
        token,
        task,
    }
}

async fn default_server() -> Server {
    start(ServeOptions::default()).await
}

impl Server {
    async fn connect(&self) -> Client {
        Client::connect(self.port).await
    }

    fn seen(&self) -> usize {
        self.echo.seen.load(Ordering::SeqCst)
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: gw\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn one_connection_carries_request_after_request_pipelined_or_not() {
    let server = default_server().await;
    let mut client = server.connect().await;
    client.send(&get("/a")).await;
    let first = client.answer().await;
    assert_eq!((first.status, first.text().as_str()), (200, "hello"));
    assert_eq!(first.header("content-length"), Some("5"));
    assert!(first.header("date").is_some_and(|d| d.ends_with(" GMT")));
    assert_eq!(first.header("connection"), None);

    // Three requests in one write: three answers, in order.
    let mut pipelined = get("/echo?n=1");
    pipelined.extend(get("/echo?n=2"));
    pipelined.extend(b"GET /echo?n=3 HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n");
    client.send(&pipelined).await;
    for n in 1..=3 {
        let answer = client.answer().await;
        assert!(
            answer
                .text()
                .starts_with(&format!("GET /echo?n={n} HTTP/1.1 peer=127.0.0.1")),
            "{}",
            answer.text()
        );
    }
    assert!(client.closed().await, "closed after `connection: close`");
    assert_eq!(server.seen(), 4);
}

#[tokio::test]
async fn http_1_0_closes_unless_asked_to_keep_alive_and_gets_unknown_lengths_until_close() {
    let server = default_server().await;
    let mut client = server.connect().await;
    client.send(b"GET / HTTP/1.0\r\n\r\n").await;
    let answer = client.answer().await;
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(client.closed().await);

    let mut client = server.connect().await;
    client
        .send(b"GET /echo HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
        .await;
    let answer = client.answer().await;
    assert!(answer.text().starts_with("GET /echo HTTP/1.0"));
    assert_eq!(answer.header("connection"), Some("keep-alive"));
    client
        .send(b"GET /stream HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
        .await;
    let answer = client.answer().await;
    assert_eq!(
        answer.header("transfer-encoding"),
        None,
        "1.0 has no chunked"
    );
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(answer.text(), "one,two,three");
}

#[tokio::test]
async fn request_bodies_arrive_whole_by_length_or_chunked_and_expect_gets_100_continue() {
    let server = default_server().await;
    let mut client = server.connect().await;
    client
        .send(b"POST /echo HTTP/1.1\r\nhost: gw\r\ncontent-length: 11\r\n\r\nhello world")
        .await;
    let answer = client.answer().await;
    assert!(
        answer.text().ends_with("length=Some(\"11\")\nhello world"),
        "{}",
        answer.text()
    );

    // Chunked, with an extension, a leading zero and a trailer; the same connection.
    client
        .send(
            b"POST /echo HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n06\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
        )
        .await;
    let answer = client.answer().await;
    assert!(
        answer.text().ends_with("length=None\nhello world"),
        "{}",
        answer.text()
    );

    // Expect: 100-continue gets the interim answer, then the body is read.
    client
        .send(
            b"PUT /echo HTTP/1.1\r\nhost: gw\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n",
        )
        .await;
    let interim = client.answer().await;
    assert_eq!(interim.status, 100);
    client.send(b"body").await;
    let answer = client.answer().await;
    assert_eq!(answer.status, 200);
    assert!(answer.text().ends_with("\nbody"));

    // Still the same connection.
    client.send(&get("/")).await;
    assert_eq!(client.answer().await.status, 200);
}

#[tokio::test]
async fn a_body_left_unread_is_never_taken_for_the_next_request() {
    let server = default_server().await;
    let mut client = server.connect().await;
    // The body looks like a request of its own: it must never be served as one.
    let smuggled = get("/echo?smuggled");
    let mut request = format!(
        "POST /ignore HTTP/1.1\r\nhost: gw\r\ncontent-length: {}\r\n\r\n",
        smuggled.len()
    )
    .into_bytes();
    request.extend(&smuggled);
    client.send(&request).await;
    let answer = client.answer().await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(client.closed().await);
    assert_eq!(server.seen(), 1);

    // With Expect, the unread body is never asked for: no 100 Continue, just the answer.
    let mut client = server.connect().await;
    client
        .send(b"POST /ignore HTTP/1.1\r\nhost: gw\r\ncontent-length: 100000\r\nexpect: 100-continue\r\n\r\n")
        .await;
    assert_eq!(client.answer().await.status, 413);
}

#[tokio::test]
async fn a_cut_off_or_misframed_body_fails_in_the_pipeline_and_closes_the_connection() {
    let server = default_server().await;
    let mut client = server.connect().await;
    client
        .send(b"POST /echo HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
        .await;
    let answer = client.answer().await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.text().contains("invalid chunk size"),
        "{}",
        answer.text()
    );
    assert!(client.closed().await);

    let mut client = server.connect().await;
    client
        .send(b"POST /echo HTTP/1.1\r\nhost: gw\r\ncontent-length: 10\r\n\r\nhalf")
        .await;
    client.stream.shutdown().await.unwrap();
    let answer = client.answer().await;
    assert_eq!(answer.status, 400, "{}", answer.text());
}

#[tokio::test]
async fn answers_are_framed_by_what_the_body_knows() {
    let server = default_server().await;
    let mut client = server.connect().await;
    client.send(&get("/stream")).await;
    let answer = client.answer().await;
    assert_eq!(answer.header("transfer-encoding"), Some("chunked"));
    assert!(answer.chunked);
    assert_eq!(answer.text(), "one,two,three");

    client.send(b"HEAD / HTTP/1.1\r\nhost: gw\r\n\r\n").await;
    let answer = client.answer_to(true).await.unwrap();
    assert_eq!(
        answer.header("content-length"),
        Some("5"),
        "HEAD tells the length"
    );

    client.send(&get("/no-content")).await;
    let answer = client.answer().await;
    assert_eq!(answer.status, 204);
    assert_eq!(answer.header("content-length"), None);
    assert_eq!(answer.header("transfer-encoding"), None);

    // An interim status is no final answer: 500, never a client left waiting.
    client.send(&get("/interim")).await;
    let answer = client.answer().await;
    assert_eq!(answer.status, 500);
    assert_eq!(answer.header("content-length"), Some("0"));

    // Still in step after all four.
    client.send(&get("/")).await;
    assert_eq!(client.answer().await.text(), "hello");

    // A body failing mid-way never ends as a whole message.
    client.send(&get("/broken")).await;
    let answer = client.answer().await;
    assert_eq!(answer.text(), "partial");
    assert!(!answer.chunked, "no last chunk after a failure");
}

#[tokio::test]
async fn ambiguous_or_malformed_requests_are_refused_before_the_pipeline() {
    let server = default_server().await;
    let battery: &[(&str, &[u8])] = &[
        (
            "CL and TE together",
            b"POST /echo HTTP/1.1\r\nhost: gw\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE and CL together, the other order",
            b"POST /echo HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE on HTTP/1.0",
            b"POST /echo HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "chunked not last",
            b"POST /echo HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        ),
        (
            "chunked twice over two lines",
            b"POST /echo HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "a look-alike coding",
            b"POST /echo HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "differing lengths",
            b"POST /echo HTTP/1.1\r\nhost: gw\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
        ),
        (
            "differing lengths in one line",
            b"POST /echo HTTP/1.1\r\nhost: gw\r\ncontent-length: 5, 6\r\n\r\nhello!",
        ),
        (
            "a signed length",
            b"POST /echo HTTP/1.1\r\nhost: gw\r\ncontent-length: +5\r\n\r\nhello",
        ),
        (
            "a hex length",
            b"POST /echo HTTP/1.1\r\nhost: gw\r\ncontent-length: 0x5\r\n\r\nhello",
        ),
        (
            "space before the colon",
            b"POST /echo HTTP/1.1\r\nhost: gw\r\ncontent-length : 5\r\n\r\nhello",
        ),
        (
            "obs-fold",
            b"GET /echo HTTP/1.1\r\nhost: gw\r\nx-folded: a\r\n b\r\n\r\n",
        ),
        (
            "a NUL in a value",
            b"GET /echo HTTP/1.1\r\nhost: gw\r\nx-nul: a\0b\r\n\r\n",
        ),
        (
            "a bare CR",
            b"GET /echo HTTP/1.1\r\nhost: gw\rx-cr: 1\r\n\r\n",
        ),
        (
            "absolute-form of another scheme",
            b"GET ftp://elsewhere/echo HTTP/1.1\r\nhost: gw\r\n\r\n",
        ),
        (
            "absolute-form with userinfo",
            b"GET http://user@elsewhere/echo HTTP/1.1\r\nhost: gw\r\n\r\n",
        ),
        ("asterisk-form", b"OPTIONS * HTTP/1.1\r\nhost: gw\r\n\r\n"),
        ("a space in Host", b"GET /echo HTTP/1.1\r\nhost: a b\r\n\r\n"),
        ("an empty Host", b"GET /echo HTTP/1.1\r\nhost: \r\n\r\n"),
        ("an unclosed IPv6 Host", b"GET /echo HTTP/1.1\r\nhost: [::1\r\n\r\n"),
        (
            "a path and query in Host",
            b"GET /echo HTTP/1.1\r\nhost: evil.test/x?y=<z>\r\n\r\n",
        ),
        (
            "userinfo in Host",
            b"GET /echo HTTP/1.1\r\nhost: user@gw\r\n\r\n",
        ),
        ("a named port", b"GET /echo HTTP/1.1\r\nhost: gw:http\r\n\r\n"),
        ("a port past 65535", b"GET /echo HTTP/1.1\r\nhost: gw:99999\r\n\r\n"),
        (
            "a bad Host on HTTP/1.0",
            b"GET /echo HTTP/1.0\r\nhost: a b\r\n\r\n",
        ),
        ("no Host on 1.1", b"GET /echo HTTP/1.1\r\n\r\n"),
        (
            "two Hosts",
            b"GET /echo HTTP/1.1\r\nhost: gw\r\nhost: other\r\n\r\n",
        ),
        ("a space in the target", b"GET /a b HTTP/1.1\r\nhost: gw\r\n\r\n"),
        ("a version that is no version", b"GET /echo HTTP/x.y\r\nhost: gw\r\n\r\n"),
        ("HTTP/0.9", b"GET /echo HTTP/0.9\r\nhost: gw\r\n\r\n"),
    ];
    let unsupported: &[(&str, &[u8], u16, &str)] = &[
        (
            "a coding before chunked",
            b"POST /echo HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501,
            "NOT_IMPLEMENTED",
        ),
        (
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            505,
            "HTTP_VERSION_NOT_SUPPORTED",
        ),
        (
            "HTTP/1.2",
            b"GET /echo HTTP/1.2\r\nhost: gw\r\n\r\n",
            505,
            "HTTP_VERSION_NOT_SUPPORTED",
        ),
        (
            "HTTP/2.0 after empty lines",
            b"\r\n\r\nGET /echo HTTP/2.0\r\nhost: gw\r\n\r\n",
            505,
            "HTTP_VERSION_NOT_SUPPORTED",
        ),
        (
            "HTTP/3.0",
            b"GET /echo HTTP/3.0\r\nhost: gw\r\n\r\n",
            505,
            "HTTP_VERSION_NOT_SUPPORTED",
        ),
        (
            "an unknown expectation",
            b"GET /echo HTTP/1.1\r\nhost: gw\r\nexpect: 200-ok\r\n\r\n",
            417,
            "EXPECTATION_FAILED",
        ),
    ];
    let all = battery
        .iter()
        .map(|(what, bytes)| (*what, *bytes, 400, "VALIDATION_ERROR"))
        .chain(unsupported.iter().copied());
    for (what, bytes, status, code) in all {
        let mut client = server.connect().await;
        client.send(bytes).await;
        let answer = client.answer().await;
        assert_eq!(answer.status, status, "{what}: {}", answer.text());
        let refusal: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(refusal["status"], status, "{what}: the handler's refusal");
        assert!(!code.is_empty(), "{what}: rendered {code} by the gateways");
        assert_eq!(
            answer.header("x-refused-by"),
            Some("echo for 127.0.0.1"),
            "{what}: the pipeline's own refusal, told the peer"
        );
        assert_eq!(answer.header("connection"), Some("close"), "{what}");
        assert!(client.closed().await, "{what}: the connection is closed");
    }
    assert_eq!(server.seen(), 0, "nothing ambiguous reached the pipeline");

    // Too large a head, too many headers.
    let mut client = server.connect().await;
    let big = format!(
        "GET / HTTP/1.1\r\nhost: gw\r\nx-big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    client.send(big.as_bytes()).await;
    assert_eq!(client.answer().await.status, 400);
    let mut client = server.connect().await;
    let mut many = String::from("GET / HTTP/1.1\r\nhost: gw\r\n");
    for i in 0..120 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    client.send(many.as_bytes()).await;
    assert_eq!(client.answer().await.status, 400);
    assert_eq!(server.seen(), 0);

    // What is fine: Hosts of every form, with ports.
    for host in [
        "gw",
        "gw:8000",
        "gw:",
        "127.0.0.1:1",
        "[::1]",
        "[::1]:8000",
        "xn--bcher-kva.example",
        "a_b.example",
    ] {
        let mut client = server.connect().await;
        client
            .send(format!("GET /echo HTTP/1.1\r\nhost: {host}\r\n\r\n").as_bytes())
            .await;
        let answer = client.answer().await;
        assert_eq!(answer.status, 200, "{host}: {}", answer.text());
        assert!(
            answer.text().contains(&format!("host=Some({host:?})")),
            "{host}"
        );
    }
    assert_eq!(server.seen(), 8);

    // What is fine: equal repeated lengths, a case-insensitive chunked.
    let mut client = server.connect().await;
    client
        .send(b"POST /echo HTTP/1.1\r\nhost: gw\r\ncontent-length: 2\r\ncontent-length: 2, 2\r\n\r\nok")
        .await;
    assert!(client.answer().await.text().ends_with("\nok"));
    client
        .send(b"POST /echo HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
        .await;
    assert!(client.answer().await.text().ends_with("\nok"));
}

#[tokio::test]
async fn an_absolute_form_target_is_served_as_its_path_with_its_authority_for_host() {
    let server = default_server().await;
    let mut client = server.connect().await;
    client
        .send(b"GET http://Target.example:8000/echo?q=1 HTTP/1.1\r\nhost: other\r\n\r\n")
        .await;
    let answer = client.answer().await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        answer.text().starts_with(
            "GET /echo?q=1 HTTP/1.1 peer=127.0.0.1 host=Some(\"Target.example:8000\")"
        ),
        "{}",
        answer.text()
    );
    // No path at all is the root; HTTP/1.0 may leave Host out.
    client
        .send(b"GET http://target.example HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
        .await;
    let answer = client.answer().await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "hello");
}

#[tokio::test]
async fn connections_past_the_limit_wait_until_one_closes() {
    let server = start(ServeOptions {
        max_connections: 2,
        ..ServeOptions::default()
    })
    .await;
    let mut first = server.connect().await;
    let mut second = server.connect().await;
    first.send(&get("/")).await;
    second.send(&get("/")).await;
    assert_eq!(first.answer().await.status, 200);
    assert_eq!(second.answer().await.status, 200);

    // The third is queued, not served, while both others stay open.
    let mut third = server.connect().await;
    third.send(&get("/")).await;
    let mut byte = [0u8; 1];
    let waited =
        tokio::time::timeout(Duration::from_millis(300), third.stream.read(&mut byte)).await;
    assert!(waited.is_err(), "served past the limit");
    assert_eq!(server.seen(), 2);

    // One closes: the third is served.
    drop(first);
    assert_eq!(third.answer().await.status, 200);
    second.send(&get("/")).await;
    assert_eq!(second.answer().await.status, 200);
}

#[tokio::test]
async fn a_client_slow_to_send_its_head_is_cut_off_and_an_idle_one_too() {
    let server = start(ServeOptions {
        header_read_timeout: Duration::from_millis(1500),
        ..ServeOptions::default()
    })
    .await;
    // Half a head, then nothing.
    let mut client = server.connect().await;
    client.send(b"GET / HTTP/1.1\r\nhost: ").await;
    assert!(client.closed().await, "cut off without an answer");

    // A head in pieces within the time is fine, and the timer restarts per request:
    // three requests take longer than one timeout.
    let mut client = server.connect().await;
    for _ in 0..3 {
        client.send(b"GET / HTTP/1.1\r\n").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.send(b"host: gw\r\n\r\n").await;
        assert_eq!(client.answer().await.status, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Idle past the timeout: closed.
    assert!(client.closed().await);
    assert_eq!(server.seen(), 3);
}

#[tokio::test]
async fn a_client_that_stops_sending_its_body_or_taking_its_answer_is_dropped() {
    let server = start(ServeOptions {
        idle_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    })
    .await;
    // The pipeline's own time is not the client's: a slow answer still arrives.
    let mut client = server.connect().await;
    client.send(&get("/slow")).await;
    let answer = client.answer().await;
    assert_eq!((answer.status, answer.text().as_str()), (200, "slow"));

    // A body that stops after 2 of its 10 bytes fails in the pipeline; the client gets
    // the answer, then the connection closes.
    let mut client = server.connect().await;
    client
        .send(b"POST /echo HTTP/1.1\r\nhost: gw\r\ncontent-length: 10\r\n\r\nab")
        .await;
    let answer = client.answer().await;
    assert_eq!(answer.status, 400);
    assert!(answer.text().contains("body failed"), "{}", answer.text());
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(client.closed().await);

    // An endless answer the client never reads is given up once nothing moves.
    let mut client = server.connect().await;
    client.send(&get("/endless")).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        server.echo.endless_dropped.notified(),
    )
    .await
    .expect("the endless answer is given up");
    // What had been sent ends in a reset, never in a clean end the client could take
    // for a whole answer.
    let mut received = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), client.stream.read(&mut chunk))
            .await
            .expect("the connection ends")
        {
            Ok(0) => break None,
            Ok(n) => received += n,
            Err(err) => break Some(err.kind()),
        }
    };
    assert!(received >= CHUNK.len(), "the answer had begun");
    assert_eq!(end, Some(std::io::ErrorKind::ConnectionReset));
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_lets_in_flight_requests_finish() {
    let server = default_server().await;
    let mut idle = server.connect().await;
    idle.send(&get("/")).await;
    assert_eq!(idle.answer().await.status, 200);

    let mut busy = server.connect().await;
    busy.send(&get("/slow")).await;
    // Cancelled once the slow request is in the pipeline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.seen() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow request never arrived"
        );
        tokio::task::yield_now().await;
    }
    server.token.cancel();
    assert!(idle.closed().await, "an idle connection is closed");
    let answer = busy.answer().await;
    assert_eq!((answer.status, answer.text().as_str()), (200, "slow"));
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(busy.closed().await);
    server.task.await.unwrap().unwrap();
    assert!(
        TcpStream::connect(("127.0.0.1", server.port))
            .await
            .is_err(),
        "nothing accepts after shutdown"
    );
}

#[tokio::test]
async fn requests_after_bodies_stay_in_step_and_an_empty_body_keeps_the_connection() {
    let server = default_server().await;
    let mut client = server.connect().await;
    let mut bytes = b"POST /echo HTTP/1.1\r\nhost: gw\r\ncontent-length: 3\r\n\r\nabc".to_vec();
    bytes.extend(b"POST /echo HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n");
    bytes.extend(b"3\r\ndef\r\n0\r\nx-t: 1\r\n\r\n");
    bytes.extend(get("/echo?last"));
    bytes.extend(b"POST /echo HTTP/1.1\r\nhost: gw\r\ncontent-length: 0\r\n\r\n");
    client.send(&bytes).await;
    assert!(client.answer().await.text().ends_with("\nabc"));
    assert!(client.answer().await.text().ends_with("\ndef"));
    assert!(client.answer().await.text().starts_with("GET /echo?last "));
    let empty = client.answer().await;
    assert!(empty.text().starts_with("POST /echo "), "{}", empty.text());
    assert_eq!(
        empty.header("connection"),
        None,
        "an empty body keeps the connection"
    );
    client.send(&get("/")).await;
    assert_eq!(client.answer().await.text(), "hello");
    assert_eq!(server.seen(), 5);
}

#[tokio::test]
async fn no_100_continue_once_the_answer_has_begun_and_none_on_http_1_0() {
    let server = default_server().await;
    // The answer goes out before its body (the request body) is first read.
    let mut client = server.connect().await;
    client
        .send(b"PUT /mirror HTTP/1.1\r\nhost: gw\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n")
        .await;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        client.stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    client.send(b"body").await;
    let mut rest = [0u8; 4];
    client.stream.read_exact(&mut rest).await.unwrap();
    assert_eq!(
        &rest, b"body",
        "the body follows, with no interim answer inside it"
    );

    let mut client = server.connect().await;
    client
        .send(b"POST /echo HTTP/1.0\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\nok")
        .await;
    let answer = client.answer().await;
    assert_eq!(answer.status, 200, "no interim answer for HTTP/1.0");
    assert!(answer.text().ends_with("\nok"));
}

#[tokio::test]
async fn an_answer_broken_off_without_a_length_resets_the_connection() {
    let server = default_server().await;
    let mut client = server.connect().await;
    client.send(b"GET /broken HTTP/1.0\r\n\r\n").await;
    let mut received = Vec::new();
    let end = loop {
        let mut chunk = [0u8; 4096];
        match client.stream.read(&mut chunk).await {
            Ok(0) => break Ok(()),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(err) => break Err(err.kind()),
        }
    };
    assert!(String::from_utf8_lossy(&received).ends_with("partial"));
    assert_eq!(
        end,
        Err(std::io::ErrorKind::ConnectionReset),
        "a clean close would make the partial body look whole"
    );
}

#[tokio::test]
async fn chunk_lines_with_bare_line_ends_or_control_bytes_fail_the_body() {
    let server = default_server().await;
    for (what, chunked) in [
        (
            "a bare LF in a trailer",
            &b"3\r\nabc\r\n0\r\n\nGET /x HTTP/1.1\r\nhost: x\r\n\r\n"[..],
        ),
        ("a bare LF in an extension", b"3;\nabc\r\nabc\r\n0\r\n\r\n"),
        (
            "a trailer without a colon",
            b"3\r\nabc\r\n0\r\nnot a field\r\n\r\n",
        ),
        (
            "a size of 16 hex digits",
            b"10000000000000000\r\nabc\r\n0\r\n\r\n",
        ),
        ("no CRLF after the data", b"3\r\nabcd\r\n0\r\n\r\n"),
    ] {
        let mut client = server.connect().await;
        let mut bytes =
            b"POST /echo HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        bytes.extend(chunked);
        client.send(&bytes).await;
        let answer = client.answer().await;
        assert_eq!(answer.status, 400, "{what}: {}", answer.text());
        assert!(client.closed().await, "{what}");
    }
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_read_and_an_endless_one_refused() {
    let server = default_server().await;
    let mut client = server.connect().await;
    for byte in b"GET /echo HTTP/1.1\r\nhost: gw\r\n\r\n" {
        client.send(&[*byte]).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(client.answer().await.text().starts_with("GET /echo "));

    let mut client = server.connect().await;
    client.send(b"GET / HTTP/1.1\r\nhost: gw\r\nx-long: ").await;
    client.send(&vec![b'a'; 70_000]).await;
    assert_eq!(client.answer().await.status, 400);
    assert_eq!(server.seen(), 1);
}
