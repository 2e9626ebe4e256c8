//! hyper as the reference. One corpus of client requests and one of upstream answers go
//! through a bare proxy built twice: from the engine (its server and client) and from
//! hyper (its server and client). What the upstream receives and what the client gets
//! are compared, case by case. Each difference is named in the corpus as a deliberate
//! strictness of the engine (with the reason); any other difference fails the test, and
//! so does a named one that has gone away (the table stays true).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Empty, Full, combinators::BoxBody};
use hyper_util::rt::TokioIo;
use ic_h1::{
    BoxError,
    client::{Client, Deadlines, ResponseBody, Target},
    server::{Handler, Incoming, Refusal, ServeOptions, serve_with},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

/// What the upstream received of one request: method, target, body.
type Received = (String, String, Vec<u8>);

/// What one case came to through one proxy.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    /// The first answer's status, if any came.
    status: Option<u16>,
    /// Its body, decoded from its framing, when it came whole.
    body: Option<Vec<u8>>,
    /// Every request the upstream received.
    received: Vec<Received>,
}

/// How the engine's outcome relates to hyper's.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The same outcome.
    Same,
    /// The engine refuses (an error status, nothing upstream) what hyper forwards or
    /// answers otherwise: a deliberate strictness, for the reason given.
    Stricter(&'static str),
    /// Both refuse, nothing upstream, with different statuses: the engine's is the one
    /// the RFC names, for the reason given.
    OtherRefusal(&'static str),
    /// The engine forwards (re-framed by its own client) what hyper refuses, as the RFC
    /// allows, for the reason given.
    Lenient(&'static str),
}

use Expect::{Lenient, OtherRefusal, Same, Stricter};

const REQUESTS: &[(&str, &[u8], Expect)] = &[
    ("a GET", b"GET /a?b=1 HTTP/1.1\r\nhost: gw\r\n\r\n", Same),
    ("a HEAD", b"HEAD /a HTTP/1.1\r\nhost: gw\r\n\r\n", Same),
    ("HTTP/1.0", b"GET /a HTTP/1.0\r\n\r\n", Same),
    (
        "a POST with a length",
        b"POST /p HTTP/1.1\r\nhost: gw\r\ncontent-length: 5\r\n\r\nhello",
        Same,
    ),
    (
        "a chunked POST with an extension and a trailer",
        b"POST /p HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0006\r\n world\r\n0\r\nx-t: 1\r\n\r\n",
        Same,
    ),
    (
        "equal lengths listed",
        b"POST /p HTTP/1.1\r\nhost: gw\r\ncontent-length: 2, 2\r\n\r\nok",
        Lenient(
            "RFC 9110 §8.6: a list of one length repeated is that length; the engine writes its own Content-Length upstream",
        ),
    ),
    (
        "pipelined",
        b"GET /1 HTTP/1.1\r\nhost: gw\r\n\r\nGET /2 HTTP/1.1\r\nhost: gw\r\n\r\n",
        Same,
    ),
    (
        "expect 100-continue",
        b"POST /p HTTP/1.1\r\nhost: gw\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\nok",
        Same,
    ),
    (
        "absolute-form",
        b"GET http://gw/abs?x=1 HTTP/1.1\r\nhost: gw\r\n\r\n",
        Same,
    ),
    (
        "CL and TE",
        b"POST /p HTTP/1.1\r\nhost: gw\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        Stricter("a message framed two ways is refused (RFC 9112 §6.3 allows it), never guessed"),
    ),
    (
        "TE and CL",
        b"POST /p HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
        Stricter("a message framed two ways is refused (RFC 9112 §6.3 allows it), never guessed"),
    ),
    (
        "gzip, chunked",
        b"POST /p HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        Stricter(
            "RFC 9112 §6.1: a coding the server does not implement is 501; hyper de-chunks and forwards the still-gzipped body as plain",
        ),
    ),
    (
        "chunked, chunked",
        b"POST /p HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        Stricter("chunked twice is no coding the upstream could undo"),
    ),
    (
        "TE on HTTP/1.0",
        b"POST /p HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        Same,
    ),
    (
        "differing lengths",
        b"POST /p HTTP/1.1\r\nhost: gw\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
        Same,
    ),
    (
        "a signed length",
        b"POST /p HTTP/1.1\r\nhost: gw\r\ncontent-length: +5\r\n\r\nhello",
        Same,
    ),
    (
        "space before the colon",
        b"POST /p HTTP/1.1\r\nhost: gw\r\ncontent-length : 5\r\n\r\nhello",
        Same,
    ),
    (
        "obs-fold",
        b"GET /a HTTP/1.1\r\nhost: gw\r\nx-folded: a\r\n b\r\n\r\n",
        Same,
    ),
    ("a bare CR", b"GET /a HTTP/1.1\r\nhost: gw\rx: 1\r\n\r\n", Same),
    ("bare LF line ends", b"GET /a HTTP/1.1\nhost: gw\n\n", Same),
    (
        "a space in Host",
        b"GET /a HTTP/1.1\r\nhost: a b\r\n\r\n",
        Stricter("RFC 9112 §3.2: a Host that is no host[:port] is 400"),
    ),
    (
        "an empty Host",
        b"GET /a HTTP/1.1\r\nhost: \r\n\r\n",
        Stricter("an empty Host names no authority to forward"),
    ),
    (
        "an unclosed IPv6 Host",
        b"GET /a HTTP/1.1\r\nhost: [::1\r\n\r\n",
        Stricter("RFC 9112 §3.2: a Host that is no host[:port] is 400"),
    ),
    (
        "a path in Host",
        b"GET /a HTTP/1.1\r\nhost: evil.test/x?y=<z>\r\n\r\n",
        Stricter("RFC 9112 §3.2: a Host that is no host[:port] is 400"),
    ),
    (
        "two Hosts",
        b"GET /a HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
        Stricter("RFC 9112 §3.2: more than one Host is 400"),
    ),
    (
        "no Host on 1.1",
        b"GET /a HTTP/1.1\r\n\r\n",
        Stricter("RFC 9112 §3.2: an HTTP/1.1 request without Host is 400"),
    ),
    (
        "HTTP/1.2",
        b"GET /a HTTP/1.2\r\nhost: gw\r\n\r\n",
        OtherRefusal("RFC 9110 §15.6.6: a version the server does not support is 505"),
    ),
    (
        "an unknown expectation",
        b"GET /a HTTP/1.1\r\nhost: gw\r\nexpect: 200-ok\r\n\r\n",
        Stricter("RFC 9110 §10.1.1: an expectation the server cannot meet is 417"),
    ),
    (
        "a chunk size that overflows",
        b"POST /p HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\nfffffffffffffffff\r\nx\r\n0\r\n\r\n",
        Same,
    ),
    (
        "an obfuscated chunked (case, space)",
        b"POST /p HTTP/1.1\r\nhost: gw\r\ntransfer-encoding:  Chunked \r\n\r\n2\r\nok\r\n0\r\n\r\n",
        Same,
    ),
    (
        "a look-alike coding",
        b"POST /p HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n",
        Same,
    ),
    (
        "identity",
        b"POST /p HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: identity\r\ncontent-length: 2\r\n\r\nok",
        Same,
    ),
    (
        "a bare LF in a chunk line",
        b"POST /p HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n2\nok\r\n0\r\n\r\n",
        Same,
    ),
    (
        "a NUL in a value",
        b"GET /a HTTP/1.1\r\nhost: gw\r\nx: a\0b\r\n\r\n",
        Same,
    ),
    (
        "a signed chunk size",
        b"POST /p HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
        Same,
    ),
    (
        "chunk data without its CRLF",
        b"POST /p HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        Same,
    ),
];

/// Answers to `GET /r`, sent by a scripted upstream that closes after each.
const RESPONSES: &[(&str, &[u8], Expect)] = &[
    ("a length", b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", Same),
    (
        "chunked with an extension and a trailer",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
        Same,
    ),
    ("until close", b"HTTP/1.1 200 OK\r\n\r\nall of it", Same),
    ("204", b"HTTP/1.1 204 No Content\r\n\r\n", Same),
    (
        "304 with the length it would have",
        b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n",
        Same,
    ),
    ("HTTP/1.0 until close", b"HTTP/1.0 200 OK\r\n\r\nall of it", Same),
    (
        "a chunk size with leading zeros",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0002\r\nok\r\n0\r\n\r\n",
        Same,
    ),
    (
        "nine interim answers",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        Stricter(
            "at most 8 interim answers are skipped, so an upstream sending them without end cannot hold a request; hyper sets no bound",
        ),
    ),
    (
        "bare LF line ends",
        b"HTTP/1.1 200 OK\ncontent-length: 2\n\nok",
        Same,
    ),
    ("an interim 100", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok", Same),
    (
        "TE and CL",
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        Stricter(
            "RFC 9112 §6.3: both ought to be handled as an error (response splitting): 502; hyper closes without an answer",
        ),
    ),
    (
        "gzip, chunked",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        Stricter("de-chunked gzip would reach the client with nothing saying it is gzip: 502"),
    ),
    (
        "chunked, chunked",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        Stricter("chunked twice is no coding the client could undo: 502"),
    ),
    (
        "conflicting lengths",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc",
        Same,
    ),
    (
        "a status past 599",
        b"HTTP/1.1 600 Beyond\r\ncontent-length: 0\r\n\r\n",
        Stricter("RFC 9110 §15: a status is 100-599; hyper takes up to 999"),
    ),
    (
        "a bad first chunk line",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
        Stricter("known bad before anything was answered: 502, not a 200 head and a reset"),
    ),
    (
        "a body cut short",
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
        Same,
    ),
    ("obs-fold", b"HTTP/1.1 200 OK\r\nx-a: 1\r\n 2\r\ncontent-length: 0\r\n\r\n", Same),
    (
        "a protocol upgrade",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n",
        Stricter("the gateways proxy no upgrades (the client never asked for one): 502"),
    ),
];

/// A body either proxy answers with.
type AnyBody = Either<ResponseBody, Full<Bytes>>;

/// The engine's bare proxy.
struct EngineProxy {
    client: Client,
    target: Target,
}

impl Handler for EngineProxy {
    type Body = AnyBody;

    async fn handle(&self, request: Request<Incoming>, _: std::net::IpAddr) -> Response<AnyBody> {
        let deadlines = Deadlines {
            upload: Duration::from_secs(5),
            answer: Duration::from_secs(5),
        };
        match self.client.send_to(&self.target, request, deadlines).await {
            Ok(response) => response.map(Either::Left),
            Err(_) => status(StatusCode::BAD_GATEWAY),
        }
    }

    async fn refuse(&self, refusal: Refusal, _: std::net::IpAddr) -> Response<AnyBody> {
        status(refusal.status)
    }
}

fn status(status: StatusCode) -> Response<AnyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    *response.status_mut() = status;
    response
}

async fn engine_proxy(upstream: SocketAddr) -> SocketAddr {
    let client = Client::new(Duration::from_secs(2), Duration::from_secs(5));
    let target = client
        .target(&format!("http://{upstream}/").parse().unwrap())
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy = Arc::new(EngineProxy { client, target });
    tokio::spawn(serve_with(
        listener,
        proxy,
        CancellationToken::new(),
        ServeOptions::default(),
    ));
    addr
}

/// Hop-by-hop headers a proxy never passes on (as the engine's client leaves them out).
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

/// The same proxy from hyper's server and client.
async fn hyper_proxy(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = hyper::service::service_fn(
                move |request: Request<hyper::body::Incoming>| async move {
                    Ok::<_, BoxError>(forward_with_hyper(upstream, request).await)
                },
            );
            tokio::spawn(
                // Half-closed clients are answered, as the engine answers them.
                hyper::server::conn::http1::Builder::new()
                    .half_close(true)
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

async fn forward_with_hyper(
    upstream: SocketAddr,
    request: Request<hyper::body::Incoming>,
) -> Response<BoxBody<Bytes, BoxError>> {
    let bad_gateway = || {
        let mut response = Response::new(Empty::new().map_err(BoxError::from).boxed());
        *response.status_mut() = StatusCode::BAD_GATEWAY;
        response
    };
    let Ok(stream) = TcpStream::connect(upstream).await else {
        return bad_gateway();
    };
    let Ok((mut sender, connection)) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return bad_gateway();
    };
    tokio::spawn(connection);
    let (mut parts, body) = request.into_parts();
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .parse()
        .unwrap();
    parts.version = http::Version::HTTP_11;
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    parts
        .headers
        .insert(http::header::HOST, upstream.to_string().parse().unwrap());
    match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(response) => response.map(|body| body.map_err(BoxError::from).boxed()),
        Err(_) => bad_gateway(),
    }
}

/// An upstream parsed by hyper that records every request it reads whole.
async fn recording_upstream() -> (SocketAddr, Arc<Mutex<Vec<Received>>>) {
    let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
    let log = seen.clone();
    let router = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let log = log.clone();
        async move {
            let method = request.method().to_string();
            let target = request.uri().to_string();
            if let Ok(body) = axum::body::to_bytes(request.into_body(), usize::MAX).await {
                log.lock().unwrap().push((method, target, body.to_vec()));
            }
            "ok"
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, seen)
}

/// An upstream that answers every request head with `answer`, then closes.
async fn scripted_upstream(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut byte).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&byte[..n]),
                    }
                }
                let _ = stream.write_all(answer).await;
            });
        }
    });
    addr
}

/// Sends `bytes`, closes the sending side, and reads what comes back until the proxy
/// closes (or 5 s pass).
async fn exchange(proxy: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    answer
}

/// The first answer's status and, when it came whole, its body.
fn first_answer(mut bytes: &[u8], head_request: bool) -> (Option<u16>, Option<Vec<u8>>) {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(mut len)) = response.parse(bytes) else {
        return (None, None);
    };
    // An interim `100 Continue` (hyper sends one even when the body has come already)
    // is not the answer.
    while response.code == Some(100) {
        bytes = &bytes[len..];
        response = httparse::Response::new(&mut headers);
        len = match response.parse(bytes) {
            Ok(httparse::Status::Complete(len)) => len,
            _ => return (None, None),
        };
    }
    let status = response.code;
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    let rest = &bytes[len..];
    if head_request || matches!(status, Some(204 | 304)) {
        return (status, Some(Vec::new()));
    }
    let body = if header("transfer-encoding").is_some() {
        dechunk(rest)
    } else if let Some(length) = header("content-length") {
        let length: usize = length.parse().unwrap_or(usize::MAX);
        (rest.len() >= length).then(|| rest[..length].to_vec())
    } else {
        Some(rest.to_vec())
    };
    (status, body)
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&rest[..end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

async fn through(proxy: SocketAddr, seen: &Mutex<Vec<Received>>, bytes: &[u8]) -> Outcome {
    seen.lock().unwrap().clear();
    let answer = exchange(proxy, bytes).await;
    let (status, body) = first_answer(&answer, bytes.starts_with(b"HEAD"));
    Outcome {
        status,
        body,
        received: std::mem::take(&mut *seen.lock().unwrap()),
    }
}

fn judge(case: &str, expect: Expect, engine: &Outcome, hyper: &Outcome) -> Result<(), String> {
    let refused = |o: &Outcome| o.received.is_empty() && o.status.is_some_and(|s| s >= 400);
    match expect {
        OtherRefusal(_) if refused(engine) && refused(hyper) && engine.status != hyper.status => {
            Ok(())
        }
        OtherRefusal(why) => Err(format!(
            "{case}: both were to refuse, differently ({why})\n  engine: {engine:?}\n  hyper:  {hyper:?}"
        )),
        Lenient(_) if refused(hyper) && !engine.received.is_empty() => Ok(()),
        Lenient(why) => Err(format!(
            "{case}: the engine was to forward what hyper refuses ({why})\n  engine: {engine:?}\n  hyper:  {hyper:?}"
        )),
        Same if engine == hyper => Ok(()),
        Same => Err(format!(
            "{case}: the engine and hyper differ\n  engine: {engine:?}\n  hyper:  {hyper:?}"
        )),
        Stricter(why) => {
            if !refused(engine) {
                Err(format!(
                    "{case}: the engine was to refuse ({why}): {engine:?}"
                ))
            } else if engine == hyper {
                Err(format!(
                    "{case}: no longer a difference ({why}); hyper does the same: {hyper:?}"
                ))
            } else {
                Ok(())
            }
        }
    }
}

#[tokio::test]
async fn requests_reach_the_upstream_as_hyper_lets_them_or_are_refused_for_a_named_reason() {
    let (engine_upstream, engine_seen) = recording_upstream().await;
    let (hyper_upstream, hyper_seen) = recording_upstream().await;
    let engine = engine_proxy(engine_upstream).await;
    let hyper = hyper_proxy(hyper_upstream).await;
    let mut failures = Vec::new();
    for (case, bytes, expect) in REQUESTS {
        let by_engine = through(engine, &engine_seen, bytes).await;
        let by_hyper = through(hyper, &hyper_seen, bytes).await;
        if let Err(failure) = judge(case, *expect, &by_engine, &by_hyper) {
            failures.push(failure);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn upstream_answers_reach_the_client_as_hyper_passes_them_or_are_refused_for_a_named_reason()
{
    let mut failures = Vec::new();
    let none = Mutex::new(Vec::new());
    for (case, answer, expect) in RESPONSES {
        let upstream = scripted_upstream(answer).await;
        let engine = engine_proxy(upstream).await;
        let hyper = hyper_proxy(upstream).await;
        let request = b"GET /r HTTP/1.1\r\nhost: gw\r\n\r\n";
        let by_engine = through(engine, &none, request).await;
        let by_hyper = through(hyper, &none, request).await;
        if let Err(failure) = judge(case, *expect, &by_engine, &by_hyper) {
            failures.push(failure);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
