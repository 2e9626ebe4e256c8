//! The HTTP/1.1 server: serves one [`Handler`] on a listener. Each connection is one task
//! that reads a request head, runs the handler and writes the answer, with no router in
//! front and no per-request task, channel or timer.
//!
//! Why not hyper's server: `cargo xtask bench gateway` measured its per-request cost
//! (a dispatcher copying the service future, a timer per request) above everything the
//! gateway's own stages cost. Heads are parsed by `httparse`, as in hyper.
//!
//! What reaches the pipeline is unambiguous (RFC 9112, against request smuggling); the
//! rest is refused ([`Refusal`]: 400, or 417 for an `Expect` other than
//! `100-continue`, 505 for an HTTP version other than 1.0 and 1.1), answered through
//! [`Handler::refuse`], and the connection is closed:
//! - the request target must be origin-form (`/path?query`) or absolute-form
//!   (`http://authority/path?query`, whose authority then replaces `Host`, RFC 9112
//!   §3.2.2);
//! - HTTP/1.1 needs exactly one `Host`, and a `Host` must be a valid authority (a host
//!   and an optional port, nothing else: RFC 9112 §3.2);
//! - `Content-Length` must be one decimal number (a list of equal ones is one);
//! - `Transfer-Encoding` must be exactly `chunked`, on HTTP/1.1, and never next to
//!   `Content-Length` (a coding the engine does not implement, such as `gzip, chunked`,
//!   is 501, RFC 9112 §6.1);
//! - obs-fold, bare CRs, spaces before the colon and invalid bytes are refused by the
//!   parser; so are a head over 64 KiB and more than 100 headers.
//!
//! At most [`ServeOptions::max_connections`] connections are served at once: past that,
//! new ones wait in the listen backlog until one closes.
//!
//! A request body ([`Incoming`]) is read only when the handler asks for it (`Expect: 100-continue`
//! is answered then). A body left unread, or cut off, closes the connection after the
//! response (after a short lingering read, so the client still gets the answer).
//!
//! Timeouts and shutdown: a client gets 30 s to send each request head (counted from the
//! end of the previous answer: an idle keep-alive connection is closed after 30 s).
//! When the token is cancelled, accepting stops, idle connections close, and in-flight
//! requests get 30 s to finish (answered with `Connection: close`); [`serve`] returns
//! then, and whatever still runs ends with the process. While a request body is being
//! read or an answer written, a client that sends or takes nothing for 60 s loses the
//! connection (the handler sees its body fail; an answer broken off resets the
//! connection). Time the handler takes is not counted against the client (a proxy
//! bounds its own waits: see [`crate::client`]).

use std::{
    cell::RefCell,
    io,
    mem::MaybeUninit,
    net::IpAddr,
    pin::{Pin, pin},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime},
};

use bytes::{Bytes, BytesMut};
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header,
};
use http_body::{Frame, SizeHint};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{ReadHalf, WriteHalf},
    },
    sync::{Semaphore, mpsc, oneshot},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    BoxError,
    framing::{
        Decoder, Framing, FramingError, FramingHeaders, READ_CHUNK, header_places, place,
        push_header,
    },
    idle::Idle,
    writer::{BodyEnd, Out, push_framing, push_headers, push_length, write_body},
};

/// What the server serves: the app seam (a gateway's pipeline).
pub trait Handler: Send + Sync + 'static {
    /// The body of its answers.
    type Body: http_body::Body<Data = Bytes, Error: Into<BoxError> + Send> + Send + Unpin + 'static;

    /// Answers one request from the socket peer `peer`.
    fn handle(
        &self,
        request: Request<Incoming>,
        peer: IpAddr,
    ) -> impl Future<Output = Response<Self::Body>> + Send;

    /// The answer to a request from `peer` that the server refused to read (malformed
    /// or ambiguous: nothing of it reaches [`Handler::handle`]); the connection closes
    /// after it. A gateway renders its error envelope and adds what every answer of its
    /// carries (ids, rate-limit and security headers).
    fn refuse(
        &self,
        refusal: Refusal,
        peer: IpAddr,
    ) -> impl Future<Output = Response<Self::Body>> + Send;
}

/// Why the server refused to read a request: the status to answer and a reason for
/// people (never anything the client sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 417 (an expectation other than `100-continue`) or 505 (an HTTP version
    /// other than 1.0 and 1.1).
    pub status: StatusCode,
    /// What was wrong, e.g. "invalid Host".
    pub reason: &'static str,
}

impl Refusal {
    /// A malformed or ambiguous request: 400.
    pub const fn bad_request(reason: &'static str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            reason,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason, self.status.as_u16())
    }
}

/// Timeouts and limits of [`serve_with`].
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Most connections served at once; further ones wait in the listen backlog (and
    /// are accepted as others close), so the process never runs out of file descriptors
    /// and a flood of idle connections costs bounded memory.
    pub max_connections: usize,
    /// Time a client gets to send a request head, from the end of the previous answer.
    pub header_read_timeout: Duration,
    /// Time in-flight requests get to finish after shutdown begins.
    pub drain_timeout: Duration,
    /// Time a client may send nothing of a request body the pipeline is reading, or take
    /// nothing of an answer being written, before the connection is dropped.
    pub idle_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A connection's first read buffer: a usual request head fits.
const HEAD_CHUNK: usize = 4 * 1024;
/// [`ServeOptions::max_connections`] by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Largest request head accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most request headers accepted.
const MAX_HEADERS: usize = 100;
/// How long, and how much, an unread request body is read and dropped before a close.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// Serves `pipeline` on `listener` until `token` is cancelled, then stops accepting and
/// lets in-flight requests finish (up to 30 s).
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    token: CancellationToken,
) -> io::Result<()> {
    serve_with(listener, handler, token, ServeOptions::default()).await
}

/// [`serve`] with other timeouts.
pub async fn serve_with<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    token: CancellationToken,
    options: ServeOptions,
) -> io::Result<()> {
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    loop {
        // A free slot first: past the limit, connections wait in the backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = token.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = token.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(
            stream,
            peer.ip(),
            handler.clone(),
            token.clone(),
            options,
            slot,
        ));
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(options.drain_timeout, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests still running after the drain timeout");
    }
    Ok(())
}

/// What the server needs to know of a request to answer it.
#[derive(Debug, Clone, Copy)]
struct Exchange {
    head_request: bool,
    http10: bool,
    keep_alive: bool,
}

/// A request head read off the wire.
#[derive(Debug)]
pub(crate) struct Head {
    request: http::Request<()>,
    exchange: Exchange,
    framing: Framing,
    expect_continue: bool,
}

/// One connection, request after request.
/// (`slot`, its place among [`ServeOptions::max_connections`], is freed when it ends.)
async fn connection<H: Handler>(
    mut stream: TcpStream,
    peer: IpAddr,
    handler: Arc<H>,
    token: CancellationToken,
    options: ServeOptions,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let _slot = slot;
    let header_read_timeout = options.header_read_timeout;
    let (mut rd, wr) = stream.split();
    let mut wr = Idle::new(wr, options.idle_timeout);
    // Small until needed: a connection waiting for its head holds only this (a body
    // grows it by READ_CHUNK, an answer grows `out` once, on the first one).
    let mut buf = BytesMut::with_capacity(HEAD_CHUNK);
    let mut out = Vec::new();
    let mut shutdown = pin!(token.cancelled());
    // One timer per connection, re-armed only when it fires early: a request costs an
    // `Instant::now()`, not a timer registration.
    let mut head_timer = pin!(tokio::time::sleep(header_read_timeout));
    loop {
        let waiting_since = Instant::now();
        let mut reader = HeadReader::default();
        let head = loop {
            match reader.read(&mut buf) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(refusal) => {
                    return refuse(&*handler, refusal, peer, &mut rd, &mut wr, &mut out).await;
                }
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(READ_CHUNK);
            }
            tokio::select! {
                biased;
                read = rd.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                () = &mut shutdown, if buf.is_empty() => return,
                () = &mut head_timer => {
                    let deadline = waiting_since + header_read_timeout;
                    if Instant::now() >= deadline {
                        return;
                    }
                    head_timer.as_mut().reset(deadline.into());
                }
            }
        };

        let Head {
            request,
            mut exchange,
            framing,
            expect_continue,
        } = head;
        // Set once the answer starts going out: no `100 Continue` after that.
        let answering = AtomicBool::new(false);
        let (written, body_done) = if framing == Framing::Empty {
            let response = handler
                .handle(request.map(|()| Incoming::empty()), peer)
                .await;
            exchange.keep_alive &= !token.is_cancelled();
            (
                write_response(&mut wr, &mut out, response, exchange, &answering).await,
                true,
            )
        } else {
            let (tx, rx) = mpsc::channel(1);
            let (want_tx, want_rx) = oneshot::channel();
            let request = request.map(|()| Incoming {
                from: Some(Reader {
                    rx,
                    want: Some(want_tx),
                    remaining: match framing {
                        Framing::Length(len) => Some(len),
                        _ => None,
                    },
                }),
            });
            let mut decoder = Decoder::new(framing);
            let mut pump = pin!(pump_body(
                Idle::new(&mut rd, options.idle_timeout),
                &mut buf,
                &mut decoder,
                tx,
                want_rx,
                expect_continue.then_some(&answering),
            ));
            let mut handler = pin!(handler.handle(request, peer));
            let (response, mut pumped) = tokio::select! {
                biased;
                response = &mut handler => (response, None),
                pumped = &mut pump => (handler.await, Some(pumped)),
            };
            if pumped.is_none()
                && let Poll::Ready(done) =
                    std::future::poll_fn(|cx| Poll::Ready(pump.as_mut().poll(cx))).await
            {
                pumped = Some(done);
            }
            // A body left unread closes the connection: say so in the answer.
            exchange.keep_alive &=
                !token.is_cancelled() && pumped.is_none_or(|p| p == Pumped::Complete);
            // The answer may stream the request body on (or not read it at all).
            let mut write = pin!(write_response(
                &mut wr, &mut out, response, exchange, &answering
            ));
            let written = loop {
                tokio::select! {
                    biased;
                    written = &mut write => break written,
                    done = &mut pump, if pumped.is_none() => pumped = Some(done),
                }
            };
            (written, pumped == Some(Pumped::Complete))
        };
        match written {
            Ok(Ended::KeepAlive) if body_done => {}
            // Whatever the client sent after this request is read and dropped for a
            // moment, so closing does not reset the connection under the answer.
            Ok(Ended::KeepAlive | Ended::Close) => return linger(&mut rd, &mut wr).await,
            // The answer broke off where its framing cannot say so: a reset tells the
            // client it is incomplete (a plain close would end it cleanly).
            // So does an answer the client stopped taking (or could not take).
            Ok(Ended::Abort) | Err(_) => {
                let _ = rd.as_ref().set_zero_linger();
                return;
            }
        }
        if buf.capacity() > 4 * READ_CHUNK && buf.is_empty() {
            // A large head or body grew the buffer: give the memory back.
            buf = BytesMut::with_capacity(HEAD_CHUNK);
        }
    }
}

/// The connection's writing half, with the idle timeout.
type Writer<'a> = Idle<WriteHalf<'a>>;

/// Answers a request the server will not read, then closes.
async fn refuse<H: Handler>(
    handler: &H,
    refusal: Refusal,
    peer: IpAddr,
    rd: &mut ReadHalf<'_>,
    wr: &mut Writer<'_>,
    out: &mut Vec<u8>,
) {
    tracing::debug!(%refusal, "request refused before the pipeline");
    let response = handler.refuse(refusal, peer).await;
    let exchange = Exchange {
        head_request: false,
        http10: false,
        keep_alive: false,
    };
    match write_response(wr, out, response, exchange, &AtomicBool::new(true)).await {
        Ok(_) => linger(rd, wr).await,
        // An answer the client did not take: reset, as on the main path.
        Err(_) => {
            let _ = rd.as_ref().set_zero_linger();
        }
    }
}

/// Closes the sending side, then reads and drops what the client still sends for a
/// moment: closing with unread bytes would reset the connection and could destroy the
/// answer before the client reads it.
async fn linger(rd: &mut ReadHalf<'_>, wr: &mut Writer<'_>) {
    if wr.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut sink = vec![0u8; 16 * 1024];
        let mut total = 0;
        while total < LINGER_BYTES {
            match rd.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// Reads request heads off a connection's buffer as its bytes arrive.
#[derive(Debug, Default)]
pub(crate) struct HeadReader {
    /// How much of the buffer is known to hold no end of head: a head sent a byte at a
    /// time is not parsed again from the start for every byte.
    scanned: usize,
}

impl HeadReader {
    /// The head, taken off the front of `buf`, once it holds a whole one; `None` while
    /// more is needed; the refusal of a malformed or oversized one.
    pub(crate) fn read(&mut self, buf: &mut BytesMut) -> Result<Option<Head>, Refusal> {
        if buf.len() > self.scanned && may_end_head(&buf[self.scanned.saturating_sub(2)..]) {
            match parse_head(buf)? {
                Some(head) => {
                    self.scanned = 0;
                    return Ok(Some(head));
                }
                None => self.scanned = buf.len(),
            }
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(Refusal::bad_request("request head too large"));
        }
        Ok(None)
    }
}

/// Whether `bytes` may hold the empty line ending a head (`\n\n` or `\n\r\n`).
fn may_end_head(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == b"\n\n" || w == b"\n\r")
}

/// Parses a complete request head off the front of `buf` (`None`: not complete yet).
fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, Refusal> {
    let bad = Refusal::bad_request;
    // Left uninitialised: the parser writes only the headers it finds.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut headers) {
        // However the head arrived (one read may bring its end past the limit), a head is
        // at most MAX_HEAD_BYTES.
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD_BYTES => {
            return Err(bad("request head too large"));
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(bad("too many request headers")),
        Err(httparse::Error::Version) => return Err(version_refusal(buf)),
        Err(_) => return Err(bad("malformed request head")),
    };
    let method = Method::from_bytes(parsed.method.unwrap_or_default().as_bytes())
        .map_err(|_| bad("invalid method"))?;
    let target = parsed.path.unwrap_or_default();
    let absolute = !target.starts_with('/');
    if absolute && !is_absolute_form(target.as_bytes()) {
        return Err(bad(
            "the request target must be a path (origin-form) or an http URL (absolute-form)",
        ));
    }
    // Where the pieces lie in the buffer: the head is frozen and shared by the request's
    // URI and header values instead of copied.
    let target = place(buf, target.as_bytes());
    let http10 = parsed.version == Some(0);
    let count = parsed.headers.len();
    let places = header_places(buf, parsed.headers);
    let head = buf.split_to(len).freeze();

    let uri =
        Uri::from_maybe_shared(head.slice(target)).map_err(|_| bad("invalid request target"))?;
    // Absolute-form: the target's authority stands for `Host` (RFC 9112 §3.2.2), and the
    // pipeline sees the origin-form path, as for every other request.
    let (uri, target_host) = if absolute {
        let authority = uri
            .authority()
            .filter(|a| valid_host(a.as_str().as_bytes()))
            .ok_or(bad("invalid authority in the request target"))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| bad("invalid authority in the request target"))?;
        let origin = match uri.path_and_query() {
            Some(pq) if pq.as_str().starts_with('/') => pq.clone(),
            Some(pq) => format!("/{}", pq.as_str())
                .parse()
                .map_err(|_| bad("invalid request target"))?,
            None => http::uri::PathAndQuery::from_static("/"),
        };
        (Uri::from(origin), Some(host))
    } else {
        (uri, None)
    };
    let mut map = HeaderMap::with_capacity(count + 16);
    let mut framing = FramingHeaders::default();
    let mut hosts = 0;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    for (name, value) in places {
        let name = HeaderName::from_bytes(&head[name]).map_err(|_| bad("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(value))
            .map_err(|_| bad("invalid header value"))?;
        if name == header::CONTENT_LENGTH {
            framing
                .content_length(value.as_bytes())
                .map_err(|err| match err {
                    FramingError::InvalidLength => bad("invalid Content-Length"),
                    FramingError::ConflictingLengths => bad("conflicting Content-Lengths"),
                })?;
        } else if name == header::TRANSFER_ENCODING {
            framing.transfer_encoding(value.as_bytes());
        } else if name == header::HOST {
            hosts += 1;
            if !valid_host(value.as_bytes()) {
                return Err(bad("invalid Host"));
            }
            if let Some(host) = &target_host {
                // Ignored for the target's authority (RFC 9112 §3.2.2).
                map.append(name, host.clone());
                continue;
            }
        } else if name == header::CONNECTION {
            for token in value.as_bytes().split(|b| *b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name == header::EXPECT {
            if value.as_bytes().eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                // RFC 9110 §10.1.1.
                return Err(Refusal {
                    status: StatusCode::EXPECTATION_FAILED,
                    reason: "unsupported expectation (only 100-continue is)",
                });
            }
        }
        map.append(name, value);
    }
    if hosts > 1 || (hosts == 0 && !http10) {
        return Err(bad("exactly one Host header is required"));
    }
    if hosts == 0
        && let Some(host) = target_host
    {
        map.append(header::HOST, host);
    }
    let framing = match framing {
        FramingHeaders {
            chunked: Some(_),
            length: Some(_),
            ..
        } => return Err(bad("Transfer-Encoding and Content-Length together")),
        FramingHeaders {
            chunked: Some(_), ..
        } if http10 => return Err(bad("Transfer-Encoding in an HTTP/1.0 request")),
        FramingHeaders {
            chunked: Some(true),
            other_coding: false,
            ..
        } => Framing::Chunked,
        // RFC 9112 §6.1: a coding the server does not understand is 501; a final coding
        // other than chunked, or chunked twice, is a message it cannot frame: 400.
        FramingHeaders {
            chunked: Some(true),
            unknown_coding: true,
            ..
        } => {
            return Err(Refusal {
                status: StatusCode::NOT_IMPLEMENTED,
                reason: "unsupported transfer coding (only chunked is implemented)",
            });
        }
        FramingHeaders {
            chunked: Some(_), ..
        } => {
            return Err(bad(
                "unframeable Transfer-Encoding (chunked must be last, and only once)",
            ));
        }
        FramingHeaders {
            length: Some(len), ..
        } if len > 0 => Framing::Length(len),
        FramingHeaders { .. } => Framing::Empty,
    };
    let mut request = http::Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = if http10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    *request.headers_mut() = map;
    let head_request = request.method() == Method::HEAD;
    Ok(Some(Head {
        request,
        exchange: Exchange {
            head_request,
            http10,
            keep_alive: if http10 {
                keep_alive_token && !close
            } else {
                !close
            },
        },
        framing,
        // HTTP/1.0 knows no interim answers (RFC 9110 §10.1.1: ignore the expectation).
        expect_continue: expect_continue && framing != Framing::Empty && !http10,
    }))
}

/// A request line with a well-formed version other than HTTP/1.0 and 1.1 is 505 (RFC 9110
/// §15.6.6); anything else the parser took for a bad version is a malformed head.
fn version_refusal(buf: &[u8]) -> Refusal {
    // The parser skips empty lines before the request line; so does this.
    let start = buf
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(buf.len());
    let line = buf[start..]
        .split(|b| *b == b'\n')
        .next()
        .unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|b| *b == b' ');
    let (Some(_method), Some(_target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Refusal::bad_request("malformed request line");
    };
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() && *major != b'0' =>
        {
            Refusal {
                status: StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                reason: "HTTP version not supported (1.0 and 1.1 are)",
            }
        }
        _ => Refusal::bad_request("malformed request head"),
    }
}

/// Whether a request target is absolute-form with an `http` or `https` URL.
fn is_absolute_form(target: &[u8]) -> bool {
    let scheme = |s: &[u8]| target.len() > s.len() && target[..s.len()].eq_ignore_ascii_case(s);
    scheme(b"http://") || scheme(b"https://")
}

/// Whether a `Host` value (or an absolute target's authority) is `host [":" port]` as RFC
/// 3986 spells them (RFC 9112 §3.2): a bracketed IPv6 address or a non-empty name of
/// unreserved, percent-encoded and sub-delimiter characters, and an optional port of
/// digits. Userinfo, paths, spaces, stray brackets and an empty value are refused.
fn valid_host(value: &[u8]) -> bool {
    let (host_ok, port) = if let Some(rest) = value.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|b| *b == b']') else {
            return false;
        };
        let literal = std::str::from_utf8(&rest[..end]).unwrap_or("");
        let ok = literal.parse::<std::net::Ipv6Addr>().is_ok();
        match &rest[end + 1..] {
            [] => (ok, None),
            [b':', port @ ..] => (ok, Some(port)),
            _ => return false,
        }
    } else {
        let (host, port) = match value.iter().rposition(|b| *b == b':') {
            Some(at) => (&value[..at], Some(&value[at + 1..])),
            None => (value, None),
        };
        let name_byte = |b: &u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(b);
        (!host.is_empty() && host.iter().all(name_byte), port)
    };
    // A port is up to five digits, at most 65535 (or none at all: `host:`).
    let port_ok = |p: &[u8]| {
        p.len() <= 5
            && p.iter().all(u8::is_ascii_digit)
            && p.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')) <= 65535
    };
    host_ok && port.is_none_or(port_ok)
}

/// How reading a request body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pumped {
    /// Read to its end: the connection can carry the next request.
    Complete,
    /// The pipeline dropped it unread (or part-read).
    Abandoned,
    /// The client broke it off or framed it badly.
    Failed,
}

/// What the connection hands the request body.
#[derive(Debug)]
enum Piece {
    Data(Bytes),
    End,
    Failed(io::Error),
}

/// Reads the request body off the connection as the pipeline asks for it.
async fn pump_body(
    mut rd: Idle<&mut ReadHalf<'_>>,
    buf: &mut BytesMut,
    decoder: &mut Decoder,
    tx: mpsc::Sender<Piece>,
    want: oneshot::Receiver<()>,
    expect_continue: Option<&AtomicBool>,
) -> Pumped {
    if want.await.is_err() {
        return Pumped::Abandoned;
    }
    // Once the final answer has begun it is too late to invite the body (RFC 9110
    // §10.1.1); a client that sends it anyway is still read.
    if let Some(answering) = expect_continue
        && buf.is_empty()
        && !answering.load(Ordering::Relaxed)
    {
        let stream: &TcpStream = rd.get_ref().as_ref();
        let mut line: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
        while !line.is_empty() {
            match stream.try_write(line) {
                Ok(n) => line = &line[n..],
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if stream.writable().await.is_err() {
                        return Pumped::Failed;
                    }
                }
                Err(_) => return Pumped::Failed,
            }
        }
    }
    loop {
        let Ok(permit) = tx.reserve().await else {
            return Pumped::Abandoned;
        };
        let next = std::future::poll_fn(|cx| decoder.poll_data(Pin::new(&mut rd), buf, cx)).await;
        match next {
            Some(Ok(data)) => permit.send(Piece::Data(data)),
            Some(Err(err)) => {
                permit.send(Piece::Failed(err));
                return Pumped::Failed;
            }
            None => {
                permit.send(Piece::End);
                return Pumped::Complete;
            }
        }
    }
}

/// A request body as the handler sees it: read from the connection on demand (the
/// first poll starts the reading, and answers `Expect: 100-continue`).
#[derive(Debug)]
pub struct Incoming {
    /// `None` once ended, or for a request without a body.
    from: Option<Reader>,
}

#[derive(Debug)]
struct Reader {
    rx: mpsc::Receiver<Piece>,
    /// Told on the first poll: the connection starts reading (and answers
    /// `Expect: 100-continue`) only then.
    want: Option<oneshot::Sender<()>>,
    /// Bytes left of a `Content-Length` body.
    remaining: Option<u64>,
}

impl Incoming {
    /// No body.
    pub fn empty() -> Self {
        Self { from: None }
    }
}

impl http_body::Body for Incoming {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let Some(reader) = self.from.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(want) = reader.want.take() {
            let _ = want.send(());
        }
        let piece = match reader.rx.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(piece) => piece,
        };
        match piece {
            Some(Piece::Data(data)) => {
                if let Some(left) = reader.remaining.as_mut() {
                    *left = left.saturating_sub(data.len() as u64);
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Some(Piece::End) => {
                self.from = None;
                Poll::Ready(None)
            }
            Some(Piece::Failed(err)) => {
                self.from = None;
                Poll::Ready(Some(Err(err)))
            }
            // The connection went away mid-body: never a clean end.
            None => {
                self.from = None;
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the request body was cut off",
                ))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.from.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.from {
            None => SizeHint::with_exact(0),
            Some(Reader {
                remaining: Some(left),
                ..
            }) => SizeHint::with_exact(*left),
            Some(_) => SizeHint::default(),
        }
    }
}

/// How an answer ended, for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Complete; the connection can carry another request.
    KeepAlive,
    /// Complete; the connection closes.
    Close,
    /// Incomplete: the connection must be reset, so the client cannot take it for whole.
    Abort,
}

/// Writes `response` (marking `answering` first).
async fn write_response<B>(
    wr: &mut Writer<'_>,
    out: &mut Vec<u8>,
    response: Response<B>,
    exchange: Exchange,
    answering: &AtomicBool,
) -> io::Result<Ended>
where
    B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Unpin,
{
    answering.store(true, Ordering::Relaxed);
    let (mut parts, body) = response.into_parts();
    let mut body = Some(body);
    if parts.status.is_informational() {
        // Only a final answer ends an exchange; an interim one would leave the client
        // waiting and desynchronise the connection.
        tracing::error!(status = %parts.status, "the handler answered with an interim status");
        parts.status = StatusCode::INTERNAL_SERVER_ERROR;
        parts.headers.clear();
        body = None;
    }
    let size = body
        .as_ref()
        .map_or(SizeHint::with_exact(0), http_body::Body::size_hint);
    let status = parts.status;
    let bodiless_status = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| {
        let mut f = FramingHeaders::default();
        f.content_length(v.as_bytes()).ok().and(f.length)
    });
    let framing = if exchange.head_request || bodiless_status {
        Out::None
    } else if let Some(len) = size.exact().or(declared) {
        Out::Length(len)
    } else if exchange.http10 {
        Out::UntilClose
    } else {
        Out::Chunked
    };
    let keep_alive = exchange.keep_alive && framing != Out::UntilClose;

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // Framing and connection management are the server's.
    push_headers(out, &parts.headers, |name| {
        matches!(
            name,
            "connection" | "transfer-encoding" | "content-length" | "keep-alive"
        )
    });
    if !parts.headers.contains_key(header::DATE) {
        push_date(out);
    }
    match framing {
        // HEAD: the length the body would have (the upstream's, or the body's own).
        Out::None if exchange.head_request && !bodiless_status => {
            // The declared length, else the body's own, unless that is an empty body
            // standing for an upstream's answer to HEAD.
            let own = size.exact().filter(|len| *len > 0);
            if let Some(len) = declared.or(own) {
                push_length(out, len);
            }
        }
        Out::None if status == StatusCode::NOT_MODIFIED => {
            if let Some(value) = parts.headers.get(header::CONTENT_LENGTH) {
                push_header(out, &header::CONTENT_LENGTH, value);
            }
        }
        framing => push_framing(out, framing),
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if exchange.http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");

    let mut body = match body {
        Some(body) if framing != Out::None && !body.is_end_stream() => body,
        _ => return write_bodiless(wr, out, framing, keep_alive).await,
    };
    match write_body(wr, out, &mut body, framing).await? {
        BodyEnd::Complete if keep_alive => Ok(Ended::KeepAlive),
        BodyEnd::Complete => Ok(Ended::Close),
        // Cut off: the client must see an incomplete message, never a whole one.
        BodyEnd::Short => Ok(Ended::Abort),
        BodyEnd::TooLong => {
            tracing::warn!("response body longer than its Content-Length; closing");
            Ok(Ended::Abort)
        }
        BodyEnd::Failed(err) => {
            tracing::debug!(error = %err, "response body failed mid-stream");
            Ok(Ended::Abort)
        }
    }
}

/// Ends an answer that has no body to write (or an empty one): its head, in `out`, goes.
async fn write_bodiless(
    wr: &mut Writer<'_>,
    out: &mut Vec<u8>,
    framing: Out,
    keep_alive: bool,
) -> io::Result<Ended> {
    if let Out::Length(len) = framing
        && len != 0
    {
        // A body that promised bytes and has none.
        wr.write_all(out).await?;
        return Ok(Ended::Abort);
    }
    if framing == Out::Chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    wr.write_all(out).await?;
    Ok(if keep_alive {
        Ended::KeepAlive
    } else {
        Ended::Close
    })
}

/// Appends a `date` header, formatted once a second per thread.
fn push_date(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, date)| {
        if *at != secs || date.is_empty() {
            *at = secs;
            *date = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date.as_bytes());
        out.extend_from_slice(b"\r\n");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_head_past_64_kib_is_refused_even_when_it_is_all_in_the_buffer() {
        let mut head = b"GET / HTTP/1.1\r\nhost: gw\r\nx-big: ".to_vec();
        head.extend(std::iter::repeat_n(b'a', 70_000));
        head.extend_from_slice(b"\r\n\r\n");
        let mut buf = BytesMut::from(&head[..]);
        let refused = HeadReader::default().read(&mut buf).unwrap_err();
        assert_eq!(refused, Refusal::bad_request("request head too large"));
        // Just under the limit is read.
        let mut head = b"GET / HTTP/1.1\r\nhost: gw\r\nx-big: ".to_vec();
        head.extend(std::iter::repeat_n(b'a', 60_000));
        head.extend_from_slice(b"\r\n\r\n");
        let mut buf = BytesMut::from(&head[..]);
        assert!(HeadReader::default().read(&mut buf).unwrap().is_some());
    }
}
