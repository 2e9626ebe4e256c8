//! The engine's HTTP/1.1 client against loopback upstreams that answer scripted bytes:
//! connection reuse, every response framing of RFC 9112 §6, interim responses, refused
//! framings, truncation, a body that stalls, stale pooled connections, and request bodies
//! as hyper reads them.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Body, extract::Request, response::IntoResponse};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use ic_h1::client::{
    Client as UpstreamClient, ClientError as UpstreamError, Deadlines, ResponseBody,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// What the scripted upstream does after answering one request.
#[derive(Clone, Copy, PartialEq)]
enum After {
    KeepOpen,
    Close,
    /// Sends these bytes a moment later, on the same connection.
    Then(&'static [u8]),
    /// Keeps the connection open, then closes it without an answer when the next request
    /// arrives on it: a keep-alive close racing the request.
    RefuseNext,
}

/// A loopback upstream answering each request head with `answer(path)`; counts the
/// connections it accepted and records each request head.
struct Scripted {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    /// What answers have done after them (closed, or sent their stray bytes).
    afters: Arc<AtomicUsize>,
}

impl Scripted {
    async fn start(answer: fn(&str) -> (Vec<u8>, After)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let afters = Arc::new(AtomicUsize::new(0));
        let (count, log, done) = (connections.clone(), heads.clone(), afters.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_script(stream, answer, log.clone(), done.clone()));
            }
        });
        Self {
            addr,
            connections,
            heads,
            afters,
        }
    }

    /// Waits (5 s at most) until `n` answers have done what comes after them: a close
    /// has reached the client's socket, stray bytes are in it.
    async fn afters_done(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.afters.load(Ordering::SeqCst) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the upstream did not get that far"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve_script(
    mut stream: TcpStream,
    answer: fn(&str) -> (Vec<u8>, After),
    log: Arc<Mutex<Vec<String>>>,
    afters: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    let mut refuse = false;
    loop {
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        log.lock().unwrap().push(head);
        if refuse {
            return;
        }
        let (bytes, after) = answer(&path);
        refuse = after == After::RefuseNext;
        if stream.write_all(&bytes).await.is_err() {
            return;
        }
        if after == After::Close {
            drop(stream);
            afters.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if let After::Then(more) = after {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _ = stream.write_all(more).await;
            afters.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn client() -> UpstreamClient {
    UpstreamClient::new(Duration::from_secs(2), Duration::from_secs(60))
}

fn get(url: &str) -> Request {
    http::Request::get(url).body(Body::empty()).unwrap()
}

/// Status and whole body of a call.
async fn fetch(client: &UpstreamClient, request: Request) -> (u16, Result<Bytes, String>) {
    let response = client.send(request).await.expect("a response head");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| e.to_string());
    (status, body)
}

fn framings(path: &str) -> (Vec<u8>, After) {
    let answer: &[u8] = match path {
        "/length" => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
        "/chunked" => {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0000000000000007\r\n, world\r\n0\r\ntrailer: x\r\n\r\n"
        }
        "/stray" => {
            return (
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
                After::Then(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged"),
            );
        }
        "/gzip" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n\x1f\x8b",
        "/gzip-chunked" => {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\n\x1f\x8b\r\n0\r\n\r\n"
        }
        "/chunked-twice" => {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        }
        "/status-600" => b"HTTP/1.1 600 Beyond\r\ncontent-length: 0\r\n\r\n",
        "/status-099" => b"HTTP/1.1 099 Below\r\ncontent-length: 0\r\n\r\n",
        // A bad first chunk line arrives after the head: only the body can fail then.
        "/bad-chunk-later" => {
            return (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(),
                After::Then(b"+5\r\nhello\r\n0\r\n\r\n"),
            );
        }
        "/interims" => {
            return (
                [&b"HTTP/1.1 100 Continue\r\n\r\n"[..]; 9].concat(),
                After::KeepOpen,
            );
        }
        "/until-close" => return (b"HTTP/1.1 200 OK\r\n\r\nall of it".to_vec(), After::Close),
        "/interim" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
        "/no-content" => b"HTTP/1.1 204 No Content\r\n\r\n",
        // What a server answers to HEAD: the length of the body it does not send.
        "/head" => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
        "/te-and-length" => {
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        }
        "/conflicting-lengths" => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc",
        "/bad-chunk" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
        "/truncated" => return (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort".to_vec(), After::Close),
        // Part of the body, then nothing more while the connection stays open.
        "/stalls" => b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\npart",
        "/not-http" => b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        // A head past 64 KiB, sent in one piece.
        "/huge-head" => {
            let mut head = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
            head.extend(std::iter::repeat_n(b'a', 70_000));
            head.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
            return (head, After::KeepOpen);
        }
        _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
    };
    (answer.to_vec(), After::KeepOpen)
}

#[tokio::test]
async fn one_connection_serves_request_after_request_whatever_the_framing() {
    let upstream = Scripted::start(framings).await;
    let client = client();
    for _ in 0..3 {
        let (status, body) = fetch(&client, get(&upstream.url("/length"))).await;
        assert_eq!((status, body.unwrap()), (200, Bytes::from("hello")));
    }
    // Headers about the client's own connection are not passed on.
    let about_the_client = http::Request::get(upstream.url("/length"))
        .header("expect", "100-continue")
        .header("upgrade", "websocket")
        .header("te", "trailers")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("proxy-authorization", "Basic eDp5")
        .header("trailer", "x-checksum")
        .header("accept", "application/json")
        .body(Body::empty())
        .unwrap();
    let (_, body) = fetch(&client, about_the_client).await;
    assert_eq!(body.unwrap(), "hello");
    let last = upstream.heads.lock().unwrap().last().cloned().unwrap();
    assert!(last.contains("accept: application/json\r\n"), "{last}");
    for name in [
        "expect",
        "upgrade",
        "te:",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "trailer",
    ] {
        assert!(!last.contains(name), "{name} passed on: {last}");
    }
    let (status, body) = fetch(&client, get(&upstream.url("/chunked"))).await;
    assert_eq!((status, body.unwrap()), (200, Bytes::from("hello, world")));
    let (status, body) = fetch(&client, get(&upstream.url("/interim"))).await;
    assert_eq!((status, body.unwrap()), (201, Bytes::from("ok")));
    let (status, body) = fetch(&client, get(&upstream.url("/no-content"))).await;
    assert_eq!((status, body.unwrap()), (204, Bytes::new()));
    let head = http::Request::head(upstream.url("/head"))
        .body(Body::empty())
        .unwrap();
    let (status, body) = fetch(&client, head).await;
    assert_eq!(
        (status, body.unwrap()),
        (200, Bytes::new()),
        "HEAD has no body"
    );
    let (_, body) = fetch(&client, get(&upstream.url("/length"))).await;
    assert_eq!(
        body.unwrap(),
        "hello",
        "the HEAD answer left nothing behind"
    );
    assert_eq!(
        upstream.connections(),
        1,
        "every answer reused one connection"
    );
    let heads = upstream.heads.lock().unwrap().clone();
    assert!(
        heads[0].starts_with("GET /length HTTP/1.1\r\n"),
        "{}",
        heads[0]
    );
    assert!(
        heads[0].contains(&format!("host: {}\r\n", upstream.addr)),
        "{}",
        heads[0]
    );
}

#[tokio::test]
async fn a_body_lasting_until_close_is_read_whole_and_its_connection_never_reused() {
    let upstream = Scripted::start(framings).await;
    let client = client();
    let (status, body) = fetch(&client, get(&upstream.url("/until-close"))).await;
    assert_eq!((status, body.unwrap()), (200, Bytes::from("all of it")));
    let (_, body) = fetch(&client, get(&upstream.url("/length"))).await;
    assert_eq!(body.unwrap(), "hello");
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test]
async fn transfer_encoding_next_to_content_length_is_an_error_and_that_connection_is_closed() {
    let upstream = Scripted::start(framings).await;
    let client = client();
    let err = client
        .send(get(&upstream.url("/te-and-length")))
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Protocol(_)), "{err}");
    let (_, body) = fetch(&client, get(&upstream.url("/length"))).await;
    assert_eq!(body.unwrap(), "hello");
    assert_eq!(
        upstream.connections(),
        2,
        "a possible smuggling attempt is not reused"
    );
}

#[tokio::test]
async fn bytes_arriving_on_an_idle_connection_never_become_the_next_answer() {
    let upstream = Scripted::start(framings).await;
    let client = client();
    let (_, body) = fetch(&client, get(&upstream.url("/stray"))).await;
    assert_eq!(body.unwrap(), "ok");
    upstream.afters_done(1).await;
    let (_, body) = fetch(&client, get(&upstream.url("/length"))).await;
    assert_eq!(
        body.unwrap(),
        "hello",
        "the stray answer was taken for this one"
    );
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test]
async fn ambiguous_or_broken_responses_are_errors_never_short_bodies() {
    let upstream = Scripted::start(framings).await;
    let client = client();
    for path in [
        "/conflicting-lengths",
        "/not-http",
        "/gzip",
        "/interims",
        // Codings that de-chunking would pass on unnamed.
        "/gzip-chunked",
        "/chunked-twice",
        // Outside 100-599.
        "/status-600",
        "/status-099",
        // The first chunk line came with the head: known bad before any answer.
        "/bad-chunk",
        // Past the limit, however it arrives.
        "/huge-head",
    ] {
        let err = client.send(get(&upstream.url(path))).await.unwrap_err();
        assert!(matches!(err, UpstreamError::Protocol(_)), "{path}: {err}");
    }
    for path in ["/bad-chunk-later", "/truncated"] {
        let (status, body) = fetch(&client, get(&upstream.url(path))).await;
        assert_eq!(status, 200);
        assert!(body.is_err(), "{path} must fail, got {body:?}");
    }
    // None of the broken connections went back to the pool.
    let before = upstream.connections();
    let (_, body) = fetch(&client, get(&upstream.url("/length"))).await;
    assert_eq!(body.unwrap(), "hello");
    assert_eq!(upstream.connections(), before + 1);
}

#[tokio::test]
async fn an_upstream_that_stops_sending_its_body_fails_it_after_the_idle_timeout() {
    let upstream = Scripted::start(framings).await;
    let client = UpstreamClient::new(Duration::from_secs(2), Duration::from_millis(300));
    let (status, body) = fetch(&client, get(&upstream.url("/stalls"))).await;
    assert_eq!(status, 200);
    let err = body.unwrap_err();
    assert!(err.contains("nothing was sent"), "{err}");
    // That connection is not reused.
    let (_, body) = fetch(&client, get(&upstream.url("/length"))).await;
    assert_eq!(body.unwrap(), "hello");
    assert_eq!(upstream.connections(), 2);
}

fn closes_after_each(path: &str) -> (Vec<u8>, After) {
    let _ = path;
    // Keep-alive promised, then the connection is closed while idle.
    (
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
        After::Close,
    )
}

#[tokio::test]
async fn a_pooled_connection_closed_while_idle_costs_no_request() {
    let upstream = Scripted::start(closes_after_each).await;
    let client = client();
    for n in 1..=3 {
        let (status, body) = fetch(&client, get(&upstream.url("/x"))).await;
        assert_eq!((status, body.unwrap()), (200, Bytes::from("ok")));
        // Once the close has reached us, the next request meets a dead pooled connection.
        upstream.afters_done(n).await;
    }
    // A request that cannot be repeated checks its connection before using it.
    let post = http::Request::post(upstream.url("/x"))
        .body(Body::from("payload"))
        .unwrap();
    let (status, body) = fetch(&client, post).await;
    assert_eq!((status, body.unwrap()), (200, Bytes::from("ok")));
    assert_eq!(upstream.connections(), 4);
}

/// The close of a parked connection that the runtime has not seen yet (its thread was
/// busy while the FIN came in: the readiness cache still says "nothing to read") is found
/// by asking the socket itself once the connection has been idle a while, so a POST, which
/// is never retried, is not written to a dead connection (it was a 502 under load).
#[tokio::test]
async fn a_close_the_busy_runtime_has_not_seen_is_found_before_a_post_is_sent() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // On its own thread: it acts while the test's (only) runtime thread is blocked.
    let upstream = std::thread::spawn(move || {
        let read_head = |stream: &mut std::net::TcpStream| {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).unwrap() == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            String::from_utf8(head).unwrap()
        };
        // The first connection: one answer that promises keep-alive, then a close while idle.
        let (mut first, _) = listener.accept().unwrap();
        read_head(&mut first);
        first
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        drop(first);
        // The POST must come on a new connection.
        let (mut second, _) = listener.accept().unwrap();
        let head = read_head(&mut second);
        let mut body = [0u8; 7];
        second.read_exact(&mut body).unwrap();
        second
            .write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 7\r\n\r\ncreated")
            .unwrap();
        (head, body)
    });
    let client = client();
    let url = format!("http://{addr}/x");
    let (status, body) = fetch(&client, get(&url)).await;
    assert_eq!((status, body.unwrap()), (200, Bytes::from("ok")));
    // The runtime thread is busy (blocked) while the close arrives: no reactor turn.
    std::thread::sleep(Duration::from_millis(400));
    let post = http::Request::post(&url)
        .body(Body::from("payload"))
        .unwrap();
    let (status, body) = fetch(&client, post).await;
    assert_eq!((status, body.unwrap()), (201, Bytes::from("created")));
    let (head, body) = upstream.join().unwrap();
    assert!(head.starts_with("POST /x "), "{head}");
    assert_eq!(&body, b"payload");
}

#[tokio::test]
async fn a_refused_upstream_and_a_non_http_uri_are_errors() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = client()
        .send(get(&format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Io(_)), "{err}");
    let err = client().send(get("/relative")).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Uri(_)), "{err}");
}

/// An upstream parsed by hyper that answers with what it read of the body.
async fn echo() -> String {
    let router = Router::new().fallback(|request: Request| async move {
        let framing = match (
            request.headers().get("content-length"),
            request.headers().get("transfer-encoding"),
        ) {
            (Some(len), None) => format!("length {}", len.to_str().unwrap()),
            (None, Some(te)) => te.to_str().unwrap().to_owned(),
            (None, None) => "none".to_owned(),
            _ => "both".to_owned(),
        };
        match axum::body::to_bytes(request.into_body(), usize::MAX).await {
            Ok(body) => format!("{framing}: {}", String::from_utf8_lossy(&body)).into_response(),
            Err(_) => (http::StatusCode::BAD_REQUEST, "broken body").into_response(),
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn request_bodies_go_up_with_their_length_or_chunked() {
    let base = echo().await;
    let client = client();
    let sized = http::Request::post(format!("{base}/"))
        .body(Body::from("abc"))
        .unwrap();
    let (_, body) = fetch(&client, sized).await;
    assert_eq!(body.unwrap(), "length 3: abc");
    let stream =
        futures::stream::iter(["ab", "cd", "e"].map(|s| Ok::<_, std::io::Error>(Bytes::from(s))));
    let chunked = http::Request::post(format!("{base}/"))
        .body(Body::from_stream(stream))
        .unwrap();
    let (_, body) = fetch(&client, chunked).await;
    assert_eq!(body.unwrap(), "chunked: abcde");
    let empty = http::Request::post(format!("{base}/"))
        .body(Body::empty())
        .unwrap();
    let (_, body) = fetch(&client, empty).await;
    assert_eq!(body.unwrap(), "length 0: ");
    let (_, body) = fetch(&client, get(&format!("{base}/"))).await;
    assert_eq!(body.unwrap(), "none: ");
    // A client's own framing headers are never passed on next to ours.
    let forged = http::Request::post(format!("{base}/"))
        .header("content-length", "999")
        .header("transfer-encoding", "chunked")
        .body(Body::from("abc"))
        .unwrap();
    let (_, body) = fetch(&client, forged).await;
    assert_eq!(body.unwrap(), "length 3: abc");
}

#[tokio::test]
async fn a_request_body_that_fails_midway_is_a_request_body_error() {
    let base = echo().await;
    let stream = futures::stream::iter([
        Ok(Bytes::from("part")),
        Err(std::io::Error::other("the client went away")),
    ]);
    let request = http::Request::post(format!("{base}/"))
        .body(Body::from_stream(stream))
        .unwrap();
    let err = client().send(request).await.unwrap_err();
    assert!(matches!(err, UpstreamError::RequestBody(_)), "{err}");
}

fn one_answer_per_connection(path: &str) -> (Vec<u8>, After) {
    let _ = path;
    (
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
        After::RefuseNext,
    )
}

#[tokio::test]
async fn a_close_racing_the_request_is_retried_only_when_sending_twice_is_safe() {
    let upstream = Scripted::start(one_answer_per_connection).await;
    let client = client();
    let (_, body) = fetch(&client, get(&upstream.url("/first"))).await;
    assert_eq!(body.unwrap(), "ok");
    // The pooled connection looks open, takes the GET and closes without answering:
    // the GET goes again on a fresh connection.
    let (status, body) = fetch(&client, get(&upstream.url("/again"))).await;
    assert_eq!((status, body.unwrap()), (200, Bytes::from("ok")));
    assert_eq!(upstream.connections(), 2);
    // The same race for a POST is an error, never a second POST.
    let post = http::Request::post(upstream.url("/once"))
        .body(Body::from("payload"))
        .unwrap();
    let err = client.send(post).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Io(_)), "{err}");
    let heads = upstream.heads.lock().unwrap().clone();
    let posts = heads.iter().filter(|h| h.starts_with("POST ")).count();
    assert_eq!(posts, 1, "{heads:?}");
    assert_eq!(upstream.connections(), 2);
}

/// A loopback upstream that accepts connections and then neither reads nor answers.
async fn silent() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut streams = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            streams.push(stream);
        }
    });
    (format!("http://{addr}"), held)
}

/// `client.send_to` with these deadlines, failing the test instead of hanging.
async fn send_within(
    client: &UpstreamClient,
    request: Request,
    upload: Duration,
    answer: Duration,
) -> Result<http::Response<ResponseBody>, UpstreamError> {
    let target = client.target(request.uri()).unwrap();
    let deadlines = Deadlines { upload, answer };
    tokio::time::timeout(
        Duration::from_secs(30),
        client.send_to(&target, request, deadlines),
    )
    .await
    .expect("the client gave up by itself")
}

/// A body of three parts, each sent `apart` after the one before (a slow client).
fn slow_body(apart: Duration) -> Body {
    Body::from_stream(
        futures::stream::iter(["slow", " ", "upload"]).then(move |part| async move {
            tokio::time::sleep(apart).await;
            Ok::<_, std::io::Error>(Bytes::from(part))
        }),
    )
}

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_wait_for_an_answer_starts_once_the_request_body_has_gone_up() {
    let base = echo().await;
    let client = client();
    // The upload alone takes 3 s, longer than the 2 s allowed for the answer (which the
    // echo gives at once).
    let request = http::Request::post(format!("{base}/"))
        .body(slow_body(Duration::from_secs(1)))
        .unwrap();
    let response = send_within(&client, request, LONG, Duration::from_secs(2))
        .await
        .expect("an upload slower than the wait is not a slow upstream");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "chunked: slow upload");
    // Its own deadline still bounds an upload.
    let request = http::Request::post(format!("{base}/"))
        .body(slow_body(Duration::from_secs(1)))
        .unwrap();
    let err = send_within(&client, request, Duration::from_millis(300), LONG)
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Timeout), "{err}");
    // An upstream that never answers is given up on after the wait, with or without a
    // body to send first.
    let (silent, _held) = silent().await;
    let wait = Duration::from_millis(200);
    let err = send_within(&client, get(&format!("{silent}/")), LONG, wait)
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Timeout), "{err}");
    let post = http::Request::post(format!("{silent}/"))
        .body(Body::from("abc"))
        .unwrap();
    let err = send_within(&client, post, LONG, wait).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Timeout), "{err}");
}

#[tokio::test]
async fn an_upstream_that_takes_none_of_a_body_fails_it_after_the_idle_timeout() {
    let (silent, _held) = silent().await;
    let client = UpstreamClient::new(Duration::from_secs(2), Duration::from_millis(300));
    // Far more than the socket buffers hold, made as it is sent.
    let endless = futures::stream::iter(0..4096)
        .map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 64 * 1024])));
    let request = http::Request::post(format!("{silent}/"))
        .body(Body::from_stream(endless))
        .unwrap();
    let err = send_within(&client, request, LONG, LONG).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Timeout), "{err}");
}

fn early_413(path: &str) -> (Vec<u8>, After) {
    let _ = path;
    (
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\n\r\ntoo much".to_vec(),
        After::KeepOpen,
    )
}

#[tokio::test]
async fn an_answer_before_the_body_has_gone_up_ends_the_upload_and_its_connection() {
    let upstream = Scripted::start(early_413).await;
    let client = client();
    // A body whose end never comes: only the upstream's early answer ends this call.
    let (_sender, parts) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
    let first = futures::stream::iter([Ok(Bytes::from("the start"))]);
    let request = http::Request::post(upstream.url("/upload"))
        .body(Body::from_stream(first.chain(parts)))
        .unwrap();
    let response = send_within(&client, request, LONG, LONG)
        .await
        .expect("the early answer");
    assert_eq!(response.status(), 413);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "too much");
    // That connection is left with half a request on it: never reused.
    let (status, _) = fetch(&client, get(&upstream.url("/next"))).await;
    assert_eq!(status, 413);
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test]
async fn past_its_active_connections_an_upstream_is_busy_until_one_frees_up() {
    let upstream = Scripted::start(framings).await;
    let client = UpstreamClient::with_max_connections(
        Duration::from_millis(300),
        Duration::from_secs(60),
        1,
    );
    // The one slot stays taken while its response body is unread.
    let first = client.send(get(&upstream.url("/stalls"))).await.unwrap();
    let err = client
        .send(get(&upstream.url("/length")))
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Busy), "{err}");
    assert_eq!(upstream.connections(), 1, "no second connection was opened");

    // A waiting request gets the slot as soon as it frees up.
    let waiting = tokio::spawn({
        let client = client.clone();
        let url = upstream.url("/length");
        async move { fetch(&client, get(&url)).await }
    });
    tokio::task::yield_now().await;
    drop(first);
    let (status, body) = waiting.await.unwrap();
    assert_eq!((status, body.unwrap()), (200, Bytes::from("hello")));
    // Read to its end, a body frees its slot (and its connection goes back to the pool).
    for _ in 0..3 {
        let (_, body) = fetch(&client, get(&upstream.url("/length"))).await;
        assert_eq!(body.unwrap(), "hello");
    }
}
