//! The HTTP/1.1 client for upstream servers: one pool of keep-alive connections per
//! authority ([`crate::pool`]), the request written by us (our own framing, never the
//! caller's), the response head parsed with `httparse` and its body streamed straight
//! from the socket.
//!
//! Why not hyper's pooled client: it runs each connection as its own task and hands every
//! request to it through channels, which cost more per request than everything else the
//! gateway does (`cargo xtask bench gateway`). Here the request's own task does the I/O,
//! and a connection goes back to the pool the moment its response body has been read.
//!
//! Framing follows RFC 9112 §6: no body for HEAD, 1xx, 204 and 304; `Transfer-Encoding`
//! that is exactly `chunked` is decoded (any other coding, or a `Content-Length` next to
//! it, is refused); conflicting `Content-Length`s are refused; otherwise the body lasts until the upstream closes, and
//! such a connection is not reused. A reused connection that turns out closed before any
//! response byte is retried once on a fresh one when the request had no body. A body the
//! upstream stops sending for the client's idle timeout fails (its connection is dropped).
//! A request body goes up while the answer is watched for, within its own deadline and
//! failing sooner without progress (the idle timeout); the wait for the answer starts
//! once it has gone up, and an answer that comes first ends it.

use std::{
    collections::HashMap,
    io,
    mem::MaybeUninit,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};

use crate::{
    BoxError,
    framing::{Decoder, Framing, FramingError, FramingHeaders, READ_CHUNK, header_places},
    idle::Idle,
    pool::{Pool, Slot},
    writer::{BodyEnd, Out, push_framing, push_headers, push_length, write_body},
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body as _, Frame, SizeHint};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

/// Largest response head accepted from an upstream.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most response headers accepted from an upstream.
const MAX_HEADERS: usize = 128;
/// Interim (1xx) responses skipped before the final one.
const MAX_INTERIM: usize = 8;
/// Connections in use per upstream by default ([`Client::with_max_connections`]).
pub const DEFAULT_MAX_ACTIVE: usize = 512;

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URI has no `http` authority.
    #[error("not an http:// upstream URI: {0}")]
    Uri(String),
    /// No connection within the connect timeout.
    #[error("connecting to the upstream timed out")]
    ConnectTimeout,
    /// No answer within the wait after the request was sent, or a request body the
    /// upstream took nothing of for the idle timeout.
    #[error(
        "out of time: the request body did not go up, or the answer's head did not come, within its deadline, or the upstream took nothing for the idle timeout"
    )]
    Timeout,
    /// Every connection the client may have to this upstream was in use for the whole
    /// connect timeout.
    #[error("too many requests to the upstream in flight")]
    Busy,
    /// Refused, unreachable, reset.
    #[error("upstream connection failed: {0}")]
    Io(#[from] io::Error),
    /// The upstream answered something that is not HTTP/1.1.
    #[error("invalid upstream response: {0}")]
    Protocol(&'static str),
    /// The client's request body failed while it was streamed up (too large, cut off).
    #[error("request body: {0}")]
    RequestBody(#[source] BoxError),
}

/// How long one exchange with an upstream may take, besides the idle timeout (nothing
/// sent or taken for that long fails it at any stage).
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// For the request body to go up, whole.
    pub upload: Duration,
    /// For the answer's head, once the request has been sent.
    pub answer: Duration,
}

/// The pooled client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pools: Mutex<HashMap<String, Arc<Pool>>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_active: usize,
}

impl Client {
    /// A client with these timeouts: connect, and how long a connection may sit idle (in
    /// the pool, or sending nothing of a response body: the body then fails).
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        Self::with_max_connections(connect_timeout, idle_timeout, DEFAULT_MAX_ACTIVE)
    }

    /// [`Client::new`] with at most `max_active` exchanges at once per upstream:
    /// one past that waits for one to end, up to the connect timeout, and then fails with
    /// [`ClientError::Busy`]. An exchange takes an idle connection before it opens one,
    /// so no more than `max_active` connections to an upstream are open at once either.
    pub fn with_max_connections(
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_active: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pools: Mutex::default(),
                connect_timeout,
                idle_timeout,
                max_active,
            }),
        }
    }

    fn pool(&self, authority: &str) -> Arc<Pool> {
        let mut pools = self.inner.pools.lock().unwrap_or_else(|e| e.into_inner());
        match pools.get(authority) {
            Some(pool) => pool.clone(),
            None => pools
                .entry(authority.to_owned())
                .or_insert_with(|| Arc::new(Pool::new(self.inner.max_active)))
                .clone(),
        }
    }

    /// The upstream an `http://` URI names, with its connection pool: resolved once and
    /// kept, it saves [`Client::send_to`] parsing the authority and looking up
    /// the pool on every request.
    pub fn target(&self, uri: &http::Uri) -> Result<Target, ClientError> {
        let (authority, host, port) =
            target(uri).ok_or_else(|| ClientError::Uri(uri.to_string()))?;
        Ok(Target {
            authority: authority.to_owned(),
            host: host.to_owned(),
            port,
            pool: self.pool(authority),
        })
    }

    async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, ClientError> {
        let stream =
            tokio::time::timeout(self.inner.connect_timeout, TcpStream::connect((host, port)))
                .await
                .map_err(|_| ClientError::ConnectTimeout)??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Sends `request` (absolute `http://` URI) and returns the response once its head has
    /// arrived (the upload and the wait for the answer each allowed the idle timeout); the
    /// body streams from the connection as it is read.
    pub async fn send<B>(&self, request: Request<B>) -> Result<Response<ResponseBody>, ClientError>
    where
        B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin,
    {
        let target = self.target(request.uri())?;
        let idle = self.inner.idle_timeout;
        let deadlines = Deadlines {
            upload: idle,
            answer: idle,
        };
        self.send_to(&target, request, deadlines).await
    }

    /// [`Client::send`] to a [`Target`] resolved beforehand; of the request's URI
    /// only the path and query are used. The wait for the answer starts once the request
    /// has been sent, its body included: a slow upload is not a slow upstream. A body gets
    /// its own deadline, and fails sooner when the upstream takes nothing of it for the
    /// idle timeout. An answer that comes before the body has all gone up (an early
    /// `413`, say) ends the upload and is returned; that connection is not reused.
    pub async fn send_to<B>(
        &self,
        target: &Target,
        request: Request<B>,
        deadlines: Deadlines,
    ) -> Result<Response<ResponseBody>, ClientError>
    where
        B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin,
    {
        let (parts, body) = request.into_parts();
        let Target {
            authority,
            host,
            port,
            pool,
        } = target;
        let size = body.size_hint();
        let has_body = !(size.exact() == Some(0) || body.is_end_stream());
        let head = request_head(&parts, authority, &size, has_body);
        let head_request = parts.method == Method::HEAD;

        // A pooled connection with anything to read (stray bytes after the last response,
        // or the upstream's close) is never used. That costs no system call unless the
        // runtime saw the socket become readable. A close that arrives while the request
        // is sent is retried once on a fresh connection, but only for a request that can
        // safely be sent twice.
        let retryable = !has_body && parts.method.is_idempotent();
        let slot = match pool.try_slot() {
            Some(slot) => slot,
            None => {
                let wait = Box::pin(pool.clone().wait_slot(self.inner.connect_timeout));
                wait.await?
            }
        };
        let mut body = Some(body);
        let mut fresh = false;
        loop {
            let pooled = if fresh {
                None
            } else {
                pool.take(self.inner.idle_timeout)
            };
            let (mut stream, reused) = match pooled {
                Some((stream, idle_for)) if alive(&stream, idle_for) => (stream, true),
                _ => (self.connect(host, *port).await?, false),
            };
            let Exchanged {
                head: result,
                finished,
                write_error,
            } = exchange(
                &mut stream,
                &head,
                if has_body { body.take() } else { None },
                head_request,
                deadlines,
                self.inner.idle_timeout,
            )
            .await?;
            match result {
                Ok((response, framing, buf, keep_alive)) => {
                    let keep_alive = keep_alive && finished;
                    let stream = Idle::new(stream, self.inner.idle_timeout);
                    let mut body =
                        ResponseBody::new(stream, buf, framing, keep_alive, pool.clone(), slot);
                    // A body whose first bytes came with the head and are malformed is
                    // known bad before anything has been answered: 502, not a head and
                    // then a reset.
                    body.peek().map_err(|err| match err.kind() {
                        io::ErrorKind::InvalidData => {
                            ClientError::Protocol("malformed response body")
                        }
                        _ => ClientError::Io(err),
                    })?;
                    return Ok(response.map(|()| body));
                }
                // Not a byte of an answer: the upstream never took the request.
                Err(ReadError::Closed) if reused && retryable => {
                    fresh = true;
                }
                Err(ReadError::Closed) => {
                    return Err(ClientError::Io(
                        write_error.unwrap_or_else(|| io::ErrorKind::UnexpectedEof.into()),
                    ));
                }
                Err(ReadError::Io(err)) => return Err(ClientError::Io(err)),
                Err(ReadError::Protocol(why)) => return Err(ClientError::Protocol(why)),
            }
        }
    }
}

/// An upstream server ([`Client::target`]).
#[derive(Debug, Clone)]
pub struct Target {
    /// For `Host` and the pool.
    authority: String,
    /// Bare (an IPv6 literal without brackets), for the resolver.
    host: String,
    port: u16,
    pool: Arc<Pool>,
}

/// The authority (for `Host` and the pool), host and port of an `http://` URI.
fn target(uri: &http::Uri) -> Option<(&str, &str, u16)> {
    let authority = uri
        .authority()
        .filter(|_| uri.scheme_str() == Some("http"))?;
    Some((
        authority.as_str(),
        // An IPv6 literal comes bracketed; the resolver wants it bare.
        authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']'),
        authority.port_u16().unwrap_or(80),
    ))
}

/// A connection idle this long is asked by the kernel whether it is still open (one
/// `recv(MSG_PEEK)`); a younger one only by the runtime's readiness cache.
const PEEK_AFTER_IDLE: Duration = Duration::from_millis(250);

/// Whether an idle connection is still open (nothing to read, no EOF). The runtime's
/// readiness cache answers without a system call, but only knows of a close the reactor
/// has already seen: on a busy runtime a connection the upstream closed while parked
/// (its idle timeout) still looks open, and a request written to it fails with a broken
/// pipe (a 502 for a POST, which is never retried). So a connection parked for longer
/// than [`PEEK_AFTER_IDLE`] also gets a non-blocking peek at the socket itself; the hot
/// path (a connection reused within that time) stays free of system calls.
fn alive(stream: &TcpStream, idle_for: Duration) -> bool {
    let mut probe = [0u8; 1];
    match stream.try_read(&mut probe) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        _ => return false,
    }
    if idle_for < PEEK_AFTER_IDLE {
        return true;
    }
    let mut peek = [MaybeUninit::<u8>::uninit(); 1];
    matches!(
        socket2::SockRef::from(stream).peek(&mut peek),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock
    )
}

/// The request line and headers, with our own framing and `Host`.
fn request_head(
    parts: &http::request::Parts,
    authority: &str,
    size: &SizeHint,
    has_body: bool,
) -> Vec<u8> {
    let mut head = Vec::with_capacity(1024);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(
        parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes(),
    );
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(authority.as_bytes());
    head.extend_from_slice(b"\r\n");
    // Ours to set (framing, host) or about the caller's own connection: the server has
    // already answered `Expect`, and the body is always sent. (One `match` on the text:
    // cheaper than comparing `HeaderName`s one by one.)
    push_headers(&mut head, &parts.headers, |name| {
        matches!(
            name,
            "host"
                | "content-length"
                | "transfer-encoding"
                | "connection"
                | "expect"
                | "upgrade"
                | "te"
                | "keep-alive"
                | "proxy-connection"
                | "proxy-authorization"
                | "proxy-authenticate"
                | "trailer"
        )
    });
    match (has_body, size.exact()) {
        (true, Some(len)) => push_framing(&mut head, Out::Length(len)),
        (true, None) => push_framing(&mut head, Out::Chunked),
        // An empty body still says so where the method usually carries one.
        (false, _) if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) => {
            push_length(&mut head, 0);
        }
        (false, _) => {}
    }
    head.extend_from_slice(b"\r\n");
    head
}

enum WriteError {
    Io(io::Error),
    Body(BoxError),
}

/// What [`exchange`] got.
struct Exchanged {
    /// The answer's head, or why there is none.
    head: Result<Head, ReadError>,
    /// The request went up whole; otherwise the connection is not reused.
    finished: bool,
    /// Why writing it stopped, if it failed.
    write_error: Option<io::Error>,
}

/// Sends the request and reads the answer's head, which may take `deadlines.answer` once
/// the request has been sent. A body goes up within `deadlines.upload`, its writes failing
/// after `idle` without progress, while the answer is watched for: one that comes first
/// ends the upload.
async fn exchange<B>(
    stream: &mut TcpStream,
    head: &[u8],
    body: Option<B>,
    head_request: bool,
    deadlines: Deadlines,
    idle: Duration,
) -> Result<Exchanged, ClientError>
where
    B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Unpin,
{
    async fn within<T>(limit: Duration, work: impl Future<Output = T>) -> Result<T, ClientError> {
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| ClientError::Timeout)
    }
    let Some(body) = body else {
        // A head alone goes at once: written and answered within the wait.
        return within(deadlines.answer, async {
            let written = stream.write_all(head).await;
            Exchanged {
                // Even when writing failed: the upstream may have answered and closed.
                head: read_head(stream, head_request).await,
                finished: written.is_ok(),
                write_error: written.err(),
            }
        })
        .await;
    };
    let (mut reader, writer) = stream.split();
    let mut writer = Idle::new(writer, idle);
    let read = read_head(&mut reader, head_request);
    let write = within(
        deadlines.upload,
        write_request(&mut writer, head, Some(body)),
    );
    tokio::pin!(read, write);
    tokio::select! {
        // Answered before the body has all gone up (an early 413, say): the upload ends.
        head = &mut read => Ok(Exchanged { head, finished: false, write_error: None }),
        written = &mut write => match written? {
            Ok(()) => Ok(Exchanged {
                head: within(deadlines.answer, read).await?,
                finished: true,
                write_error: None,
            }),
            Err(WriteError::Body(err)) => Err(ClientError::RequestBody(err)),
            Err(WriteError::Io(err)) if err.kind() == io::ErrorKind::TimedOut => {
                Err(ClientError::Timeout)
            }
            // The upstream may have answered and closed: its answer is still worth reading.
            Err(WriteError::Io(err)) => Ok(Exchanged {
                head: within(deadlines.answer, read).await?,
                finished: false,
                write_error: Some(err),
            }),
        },
    }
}

/// Writes the head, then the body (`Content-Length` when its size is known, chunked
/// otherwise). A body that fails or does not match its declared size leaves the request
/// unfinished, so the upstream never takes a truncated body for a whole one.
async fn write_request<W, B>(stream: &mut W, head: &[u8], body: Option<B>) -> Result<(), WriteError>
where
    W: AsyncWrite + Unpin,
    B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Unpin,
{
    let Some(mut body) = body else {
        return stream.write_all(head).await.map_err(WriteError::Io);
    };
    // As the head said (`request_head`).
    let framing = match body.size_hint().exact() {
        Some(len) => Out::Length(len),
        None => Out::Chunked,
    };
    let mut out = Vec::with_capacity(head.len() + 4096);
    out.extend_from_slice(head);
    match write_body(stream, &mut out, &mut body, framing)
        .await
        .map_err(WriteError::Io)?
    {
        BodyEnd::Complete => Ok(()),
        BodyEnd::Short => Err(WriteError::Body("the body ended before its length".into())),
        BodyEnd::TooLong => Err(WriteError::Body("the body outgrew its length".into())),
        BodyEnd::Failed(err) => Err(WriteError::Body(err)),
    }
}

pub(crate) enum ReadError {
    /// Closed before any byte of a response.
    Closed,
    Io(io::Error),
    Protocol(&'static str),
}

type Head = (Response<()>, Framing, BytesMut, bool);

/// Reads until a final (non-1xx) response head has arrived; the bytes after it stay in
/// the returned buffer.
async fn read_head<R: AsyncRead + Unpin>(
    stream: &mut R,
    head_request: bool,
) -> Result<Head, ReadError> {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut received = false;
    let mut interim = 0;
    loop {
        if !buf.is_empty() {
            if let Some((response, framing, keep_alive)) = parse_head(&mut buf, head_request)? {
                match response {
                    Some(response) => return Ok((response, framing, buf, keep_alive)),
                    // 1xx: the real answer follows (within reason).
                    None if interim < MAX_INTERIM => {
                        interim += 1;
                        continue;
                    }
                    None => return Err(ReadError::Protocol("too many interim responses")),
                }
            }
            if buf.len() >= MAX_HEAD_BYTES {
                return Err(ReadError::Protocol("response head too large"));
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(READ_CHUNK);
        }
        match tokio::io::AsyncReadExt::read_buf(stream, &mut buf).await {
            Ok(0) if !received => return Err(ReadError::Closed),
            Ok(0) => return Err(ReadError::Protocol("response head cut off")),
            Ok(_) => received = true,
            Err(err) if !received && err.kind() == io::ErrorKind::ConnectionReset => {
                return Err(ReadError::Closed);
            }
            Err(err) => return Err(ReadError::Io(err)),
        }
    }
}

/// `Some((response or None for 1xx, framing, keep-alive))` once complete, the head taken
/// off `buf`.
#[allow(clippy::type_complexity)]
pub(crate) fn parse_head(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<(Option<Response<()>>, Framing, bool)>, ReadError> {
    // Left uninitialised: the parser writes only the headers it finds.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut headers,
    ) {
        // However it arrived (one read may bring its end past the limit).
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD_BYTES => {
            return Err(ReadError::Protocol("response head too large"));
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ReadError::Protocol("too many response headers"));
        }
        Err(_) => return Err(ReadError::Protocol("malformed response head")),
    };
    let code = parsed.code.unwrap_or(0);
    // RFC 9110 §15: three digits, 100 to 599; `http` would take up to 999.
    if !(100..=599).contains(&code) {
        return Err(ReadError::Protocol("status code outside 100-599"));
    }
    let status =
        StatusCode::from_u16(code).map_err(|_| ReadError::Protocol("invalid status code"))?;
    if status.is_informational() {
        if code == 101 {
            return Err(ReadError::Protocol("protocol upgrades are not proxied"));
        }
        buf.advance(len);
        return Ok(Some((None, Framing::Empty, true)));
    }
    let http11 = parsed.version == Some(1);
    // The head is frozen and shared by the header values instead of copied into each.
    let places = header_places(buf, parsed.headers);
    let head = buf.split_to(len).freeze();
    let mut map = HeaderMap::with_capacity(places.len() + 24);
    let mut framing_headers = FramingHeaders::default();
    let mut close = !http11;
    for (name, value) in places {
        let name = HeaderName::from_bytes(&head[name])
            .map_err(|_| ReadError::Protocol("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(value))
            .map_err(|_| ReadError::Protocol("invalid header value"))?;
        if name == header::CONTENT_LENGTH {
            framing_headers
                .content_length(value.as_bytes())
                .map_err(|err| match err {
                    FramingError::InvalidLength => ReadError::Protocol("invalid content-length"),
                    FramingError::ConflictingLengths => {
                        ReadError::Protocol("conflicting content-lengths")
                    }
                })?;
        } else if name == header::TRANSFER_ENCODING {
            framing_headers.transfer_encoding(value.as_bytes());
        } else if name == header::CONNECTION {
            let tokens = value.to_str().unwrap_or_default();
            let mut names_others = false;
            for token in tokens.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    if !http11 {
                        close = false;
                    }
                } else {
                    names_others = true;
                }
            }
            // This connection's business, and never passed on: kept only when it names
            // other headers, for the proxy to strip those as well.
            if !names_others {
                continue;
            }
        } else if name == "keep-alive" {
            continue;
        }
        map.append(name, value);
    }
    let FramingHeaders {
        length,
        chunked,
        other_coding,
        ..
    } = framing_headers;

    if chunked.is_some() {
        // RFC 9112 §6.3: a message with both "ought to be handled as an error" (it may be
        // response splitting), as hyper's client does: 502, never a guess at its end.
        if length.is_some() {
            return Err(ReadError::Protocol(
                "Transfer-Encoding and Content-Length together",
            ));
        }
        // The header in an HTTP/1.0 answer: that connection is closed after it.
        if !http11 {
            close = true;
        }
    }
    let framing = if head_request || matches!(code, 204 | 304) {
        Framing::Empty
    } else if let Some(chunked) = chunked {
        if !chunked || other_coding {
            // A coding we would have to undo is never passed on unmarked: de-chunking
            // `gzip, chunked` would hand the client gzip that nothing names, and carrying
            // the coding on would need the client to have asked for it (`TE`). So is
            // `chunked, chunked`. Refused: 502.
            return Err(ReadError::Protocol("unsupported transfer coding"));
        }
        Framing::Chunked
    } else if let Some(len) = length {
        Framing::Length(len)
    } else {
        Framing::UntilClose
    };
    let keep_alive = !close && framing != Framing::UntilClose;
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.headers_mut() = map;
    Ok(Some((Some(response), framing, keep_alive)))
}

/// A response body read from the upstream connection as the client takes it. The
/// connection returns to its pool as soon as the last byte is read.
#[derive(Debug)]
pub struct ResponseBody {
    /// The first piece, decoded from what came with the head ([`ResponseBody::peek`]).
    peeked: Option<Bytes>,
    /// An upstream that sends nothing of the body for the client's idle timeout fails it.
    stream: Option<Idle<TcpStream>>,
    buf: BytesMut,
    decoder: Decoder,
    keep_alive: bool,
    pool: Arc<Pool>,
    /// The pool's slot for this exchange, freed once the body is read or failed.
    slot: Option<Slot>,
}

impl ResponseBody {
    fn new(
        stream: Idle<TcpStream>,
        buf: BytesMut,
        framing: Framing,
        keep_alive: bool,
        pool: Arc<Pool>,
        slot: Slot,
    ) -> Self {
        let mut body = Self {
            peeked: None,
            stream: Some(stream),
            buf,
            decoder: Decoder::new(framing),
            keep_alive,
            pool,
            slot: Some(slot),
        };
        if body.decoder.is_done() {
            body.finish();
        }
        body
    }

    /// Decodes the first piece of a chunked body from the bytes that came with the head,
    /// if any, without waiting for more: an error there fails the exchange before its
    /// head is passed on. (A body framed by its length or the close has nothing to be
    /// wrong about before it is cut short.)
    fn peek(&mut self) -> io::Result<()> {
        if self.buf.is_empty() || self.stream.is_none() || !self.decoder.is_chunked() {
            return Ok(());
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(&mut *self).poll_frame(&mut cx) {
            Poll::Ready(Some(Err(err))) => Err(err),
            Poll::Ready(Some(Ok(frame))) => {
                self.peeked = frame.into_data().ok().filter(|data| !data.is_empty());
                Ok(())
            }
            Poll::Ready(None) | Poll::Pending => Ok(()),
        }
    }

    /// The body is complete: the connection goes back to the pool if it can be reused
    /// (keep-alive, and nothing unexpected after the body).
    fn finish(&mut self) {
        if let Some(stream) = self.stream.take()
            && self.keep_alive
            && self.buf.is_empty()
        {
            self.pool.put(stream.into_inner());
        }
        self.slot = None;
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if let Some(data) = this.peeked.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = ready!(this.decoder.poll_data(Pin::new(stream), &mut this.buf, cx));
        match &polled {
            Some(Err(_)) => {
                this.stream = None;
                this.slot = None;
            }
            _ if this.decoder.is_done() => this.finish(),
            _ => {}
        }
        Poll::Ready(polled.map(|data| data.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.peeked.is_none() && (self.stream.is_none() || self.decoder.is_done())
    }

    fn size_hint(&self) -> SizeHint {
        let peeked = self.peeked.as_ref().map_or(0, |data| data.len() as u64);
        let rest = self.decoder.size_hint();
        if peeked == 0 {
            return rest;
        }
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + peeked);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + peeked);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_defaults_to_80_and_ipv6_literals_are_unbracketed() {
        let uri: http::Uri = "http://services-api/api/v1/services".parse().unwrap();
        assert_eq!(target(&uri), Some(("services-api", "services-api", 80)));
        let uri: http::Uri = "http://[::1]:8080/x".parse().unwrap();
        assert_eq!(target(&uri), Some(("[::1]:8080", "::1", 8080)));
        let uri: http::Uri = "https://example.org/".parse().unwrap();
        assert_eq!(target(&uri), None);
    }

    #[test]
    fn a_whole_head_past_64_kib_is_refused_even_when_it_is_all_in_the_buffer() {
        let mut head = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
        head.extend(std::iter::repeat_n(b'a', 70_000));
        head.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
        let mut buf = BytesMut::from(&head[..]);
        assert!(matches!(
            parse_head(&mut buf, false),
            Err(ReadError::Protocol("response head too large"))
        ));
    }

    fn parsed(head: &str) -> (HeaderMap, bool) {
        let mut buf = BytesMut::from(head);
        let Ok(Some((Some(response), _, keep_alive))) = parse_head(&mut buf, false) else {
            panic!("a complete response head");
        };
        (response.headers().clone(), keep_alive)
    }

    #[test]
    fn connection_options_stay_behind_and_a_connection_naming_headers_is_kept_for_the_proxy() {
        let (headers, keep_alive) = parsed(
            "HTTP/1.1 200 OK\r\nconnection: keep-alive\r\nkeep-alive: timeout=5\r\n\
             content-length: 0\r\nx-app: 1\r\n\r\n",
        );
        assert!(keep_alive);
        assert!(!headers.contains_key("connection"), "{headers:?}");
        assert!(!headers.contains_key("keep-alive"), "{headers:?}");
        assert!(headers.contains_key("x-app"));

        let (headers, keep_alive) = parsed(
            "HTTP/1.1 200 OK\r\nconnection: close, x-hop\r\nx-hop: 1\r\ncontent-length: 0\r\n\r\n",
        );
        assert!(!keep_alive);
        assert_eq!(
            headers["connection"], "close, x-hop",
            "kept, so the proxy strips the header it names"
        );

        let (_, keep_alive) =
            parsed("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n");
        assert!(keep_alive, "HTTP/1.0 keeps the connection only when asked");
        let (_, keep_alive) = parsed("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert!(!keep_alive);
    }
}
