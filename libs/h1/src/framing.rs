//! HTTP/1.1 message framing shared by the server ([`crate::server`]) and the client
//! ([`crate::client`]): reading `Content-Length` and `Transfer-Encoding` (RFC 9112 §6),
//! decoding a body from a socket, writing header lines and chunk sizes; where parsed
//! header lines lie in a head.

use std::{
    io,
    ops::Range,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderName, HeaderValue};
use http_body::SizeHint;
use tokio::io::AsyncRead;

/// Read buffer size, and how much more is asked of the socket once it is used up.
pub const READ_CHUNK: usize = 16 * 1024;
/// Longest chunk-size or trailer line accepted.
const MAX_CHUNK_LINE: usize = 8 * 1024;
/// Bytes of chunk-size lines past the size itself (extensions, padding), and of trailer
/// lines, accepted per body, each (hyper allows 16 KiB of each too). Without a cap, a
/// peer could send megabytes of extensions around one byte of data per chunk, or trickle
/// trailer lines, and hold the connection (and its upstream) for as long as it likes.
pub const MAX_CHUNK_OVERHEAD: usize = 16 * 1024;
/// A chunk-size line this long or shorter costs nothing of [`MAX_CHUNK_OVERHEAD`]: 16 hex
/// digits are the largest size there is.
const PLAIN_CHUNK_LINE: usize = 16;

/// How a message body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (or the body has been read).
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the peer closes (responses only).
    UntilClose,
}

/// The framing headers of one message as read.
#[derive(Debug, Default)]
pub struct FramingHeaders {
    /// The `Content-Length`, if any (all its values agreed).
    pub length: Option<u64>,
    /// `Transfer-Encoding` seen: whether its last coding is `chunked`.
    pub chunked: Option<bool>,
    /// `Transfer-Encoding` had a coding other than one final `chunked`.
    pub other_coding: bool,
    /// `Transfer-Encoding` named a coding other than `chunked` (`gzip`, say): one the
    /// engine does not implement.
    pub unknown_coding: bool,
}

/// Why the framing headers cannot be believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// A `Content-Length` value that is not a plain decimal number.
    InvalidLength,
    /// `Content-Length` values that differ.
    ConflictingLengths,
}

impl FramingHeaders {
    /// Takes in one `Content-Length` header value (a list of equal numbers is one number).
    pub fn content_length(&mut self, value: &[u8]) -> Result<(), FramingError> {
        for part in value.split(|b| *b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return Err(FramingError::InvalidLength);
            }
            let n = part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            if self.length.is_some_and(|l| l != n) {
                return Err(FramingError::ConflictingLengths);
            }
            self.length = Some(n);
        }
        Ok(())
    }

    /// Takes in one `Transfer-Encoding` header value (the last one seen decides).
    pub fn transfer_encoding(&mut self, value: &[u8]) {
        let codings = value.split(|b| *b == b',').map(<[u8]>::trim_ascii);
        let mut last_chunked = false;
        for coding in codings {
            if coding.is_empty() {
                continue;
            }
            if last_chunked || !coding.eq_ignore_ascii_case(b"chunked") {
                self.other_coding = true;
            }
            self.unknown_coding |= !coding.eq_ignore_ascii_case(b"chunked");
            last_chunked = coding.eq_ignore_ascii_case(b"chunked");
        }
        if self.chunked == Some(true) {
            // `chunked` in an earlier header line and more codings after it.
            self.other_coding = true;
        }
        self.chunked = Some(last_chunked);
    }
}

/// Appends `name: value\r\n`.
pub fn push_header(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a decimal number.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends a chunk-size line (`{len:x}\r\n`).
pub fn push_chunk_size(out: &mut Vec<u8>, mut len: usize) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[len & 0xf];
        len >>= 4;
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, this much left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
}

/// Decodes one body from a socket and the bytes already read from it. Bytes after the
/// body stay in the buffer. Chunk extensions and trailers are capped
/// ([`MAX_CHUNK_OVERHEAD`]), chunk lines with control bytes refused.
#[derive(Debug)]
pub struct Decoder {
    framing: Framing,
    /// Bytes left of a `Content-Length` body.
    remaining: u64,
    chunk: Chunk,
    /// How much of the buffer is known to hold no line end of the line being read.
    scanned: usize,
    /// Chunk-line bytes past the sizes, and trailer bytes, read so far.
    extensions: usize,
    trailers: usize,
}

impl Decoder {
    /// A decoder for a body framed so.
    pub fn new(framing: Framing) -> Self {
        let framing = match framing {
            Framing::Length(0) => Framing::Empty,
            other => other,
        };
        Self {
            framing,
            remaining: match framing {
                Framing::Length(len) => len,
                _ => 0,
            },
            chunk: Chunk::Size,
            scanned: 0,
            extensions: 0,
            trailers: 0,
        }
    }

    /// Whether the body is chunked (and not yet all read).
    pub fn is_chunked(&self) -> bool {
        self.framing == Framing::Chunked
    }

    /// The whole body has been read (or it failed).
    pub fn is_done(&self) -> bool {
        self.framing == Framing::Empty
    }

    /// What is known of the size of the rest of the body.
    pub fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Empty => SizeHint::with_exact(0),
            Framing::Length(_) => SizeHint::with_exact(self.remaining),
            Framing::Chunked | Framing::UntilClose => SizeHint::default(),
        }
    }

    /// The next piece of the body; `None` once it is complete. An error ends it.
    pub fn poll_data<R: AsyncRead + ?Sized>(
        &mut self,
        mut io: Pin<&mut R>,
        buf: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Bytes>>> {
        let polled = match self.framing {
            Framing::Empty => return Poll::Ready(None),
            Framing::Length(_) => self.poll_length(io.as_mut(), buf, cx),
            Framing::Chunked => self.poll_chunked(io.as_mut(), buf, cx),
            Framing::UntilClose => self.poll_until_close(io.as_mut(), buf, cx),
        };
        if let Poll::Ready(Some(Err(_))) = polled {
            self.framing = Framing::Empty;
        }
        polled
    }

    fn poll_length<R: AsyncRead + ?Sized>(
        &mut self,
        io: Pin<&mut R>,
        buf: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Bytes>>> {
        if buf.is_empty() && ready!(poll_fill(io, buf, cx))? == 0 {
            return Poll::Ready(Some(Err(cut_off())));
        }
        let take = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let data = buf.split_to(take).freeze();
        self.remaining -= take as u64;
        if self.remaining == 0 {
            self.framing = Framing::Empty;
        }
        Poll::Ready(Some(Ok(data)))
    }

    fn poll_until_close<R: AsyncRead + ?Sized>(
        &mut self,
        io: Pin<&mut R>,
        buf: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Bytes>>> {
        if buf.is_empty() && ready!(poll_fill(io, buf, cx))? == 0 {
            self.framing = Framing::Empty;
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(buf.split().freeze())))
    }

    fn poll_chunked<R: AsyncRead + ?Sized>(
        &mut self,
        mut io: Pin<&mut R>,
        buf: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Bytes>>> {
        let bad = |why: &'static str| {
            Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::InvalidData, why))))
        };
        loop {
            match self.chunk {
                Chunk::Size | Chunk::Trailers => {
                    // The search resumes where the last one ended: a line trickled in a
                    // byte at a time is not scanned from its start for every byte.
                    let from = self.scanned.min(buf.len());
                    let Some(end) = buf[from..]
                        .windows(2)
                        .position(|w| w == b"\r\n")
                        .map(|at| from + at)
                    else {
                        if buf.len() > MAX_CHUNK_LINE {
                            return bad("chunk header too long");
                        }
                        self.scanned = buf.len().saturating_sub(1);
                        if ready!(poll_fill(io.as_mut(), buf, cx))? == 0 {
                            return Poll::Ready(Some(Err(cut_off())));
                        }
                        continue;
                    };
                    self.scanned = 0;
                    if end > MAX_CHUNK_LINE {
                        return bad("chunk header too long");
                    }
                    let line = buf.split_to(end + 2);
                    let line = &line[..end];
                    // A bare LF or CR (or any control byte) inside a chunk line ends it
                    // for some parsers and not others: refused, never guessed at.
                    if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                        return bad("control character in a chunk line");
                    }
                    if let Chunk::Trailers = self.chunk {
                        if line.is_empty() {
                            self.framing = Framing::Empty;
                            return Poll::Ready(None);
                        }
                        if !line.contains(&b':') || line[0] == b' ' || line[0] == b'\t' {
                            return bad("malformed trailer line");
                        }
                        self.trailers += line.len() + 2;
                        if self.trailers > MAX_CHUNK_OVERHEAD {
                            return bad("trailers too large");
                        }
                        continue;
                    }
                    self.extensions += line.len().saturating_sub(PLAIN_CHUNK_LINE);
                    if self.extensions > MAX_CHUNK_OVERHEAD {
                        return bad("chunk extensions too large");
                    }
                    let digits = line.split(|b| *b == b';').next().unwrap_or_default();
                    let digits = std::str::from_utf8(digits)
                        .unwrap_or("")
                        .trim_end_matches([' ', '\t']);
                    // Leading zeros say nothing about the size ("000" is still zero).
                    let digits = match digits.trim_start_matches('0') {
                        "" if !digits.is_empty() => "0",
                        rest => rest,
                    };
                    if digits.is_empty()
                        || digits.len() > 15
                        || !digits.bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        return bad("invalid chunk size");
                    }
                    let Ok(size) = u64::from_str_radix(digits, 16) else {
                        return bad("invalid chunk size");
                    };
                    self.chunk = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(left) => {
                    if buf.is_empty() && ready!(poll_fill(io.as_mut(), buf, cx))? == 0 {
                        return Poll::Ready(Some(Err(cut_off())));
                    }
                    let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.chunk = if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    };
                    return Poll::Ready(Some(Ok(data)));
                }
                Chunk::DataEnd => {
                    if buf.len() < 2 {
                        if ready!(poll_fill(io.as_mut(), buf, cx))? == 0 {
                            return Poll::Ready(Some(Err(cut_off())));
                        }
                        continue;
                    }
                    if &buf[..2] != b"\r\n" {
                        return bad("chunk data not followed by CRLF");
                    }
                    buf.advance(2);
                    self.chunk = Chunk::Size;
                }
            }
        }
    }
}

/// Reads more from `io` into `buf`; `Ok(0)` at EOF.
pub fn poll_fill<R: AsyncRead + ?Sized>(
    io: Pin<&mut R>,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_CHUNK);
    }
    tokio_util::io::poll_read_buf(io, cx, buf)
}

fn cut_off() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed mid-body")
}

/// Where each parsed header's name and value lie in `buf`, the buffer they were parsed
/// from: the head can then be frozen and shared by the values instead of copied.
pub fn header_places(
    buf: &[u8],
    headers: &[httparse::Header<'_>],
) -> Vec<(Range<usize>, Range<usize>)> {
    headers
        .iter()
        .map(|h| (place(buf, h.name.as_bytes()), place(buf, h.value)))
        .collect()
}

/// Where `piece`, a slice of `buf`, lies in it.
pub fn place(buf: &[u8], piece: &[u8]) -> Range<usize> {
    let start = piece.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + piece.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_lists_of_one_number_are_one_number_and_anything_else_is_refused() {
        let mut f = FramingHeaders::default();
        assert_eq!(f.content_length(b"42"), Ok(()));
        assert_eq!(f.content_length(b"42, 42"), Ok(()));
        assert_eq!(f.length, Some(42));
        assert_eq!(
            f.content_length(b"43"),
            Err(FramingError::ConflictingLengths)
        );
        for bad in [
            &b""[..],
            b"+1",
            b"-1",
            b"0x10",
            b"1 2",
            b"99999999999999999999",
        ] {
            assert_eq!(
                FramingHeaders::default().content_length(bad),
                Err(FramingError::InvalidLength),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_one_final_chunked_coding_is_plain_chunked() {
        let te = |values: &[&[u8]]| {
            let mut f = FramingHeaders::default();
            for v in values {
                f.transfer_encoding(v);
            }
            (f.chunked, f.other_coding)
        };
        assert_eq!(te(&[b"chunked"]), (Some(true), false));
        assert_eq!(te(&[b"Chunked "]), (Some(true), false));
        assert_eq!(te(&[b"gzip, chunked"]), (Some(true), true));
        assert_eq!(te(&[b"chunked, chunked"]), (Some(true), true));
        assert_eq!(te(&[b"chunked", b"chunked"]), (Some(true), true));
        assert_eq!(te(&[b"chunked, identity"]), (Some(false), true));
        assert_eq!(te(&[b"chunked", b"gzip"]), (Some(false), true));
    }

    /// Hands out its bytes a few at a time, as a socket might.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        seed: u64,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.seed = self.seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let want = 1 + (self.seed >> 33) as usize % 700;
            let n = want.min(out.remaining()).min(self.bytes.len() - self.at);
            out.put_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Poll::Ready(Ok(()))
        }
    }

    async fn decode(framing: Framing, wire: Vec<u8>, seed: u64) -> (io::Result<Vec<u8>>, Vec<u8>) {
        let mut io = Trickle {
            bytes: wire,
            at: 0,
            seed,
        };
        let mut buf = BytesMut::new();
        let mut decoder = Decoder::new(framing);
        let mut body = Vec::new();
        loop {
            let next =
                std::future::poll_fn(|cx| decoder.poll_data(Pin::new(&mut io), &mut buf, cx)).await;
            match next {
                Some(Ok(data)) => body.extend_from_slice(&data),
                Some(Err(err)) => return (Err(err), buf.to_vec()),
                None => return (Ok(body), buf.to_vec()),
            }
        }
    }

    #[tokio::test]
    async fn any_chunking_read_in_any_pieces_decodes_to_the_body_and_leaves_what_follows() {
        let mut seed = 7u64;
        for round in 0..200u64 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(round);
            let len = (seed >> 40) as usize % 5000;
            let body: Vec<u8> = (0..len).map(|i| (i as u64 ^ seed) as u8).collect();
            let next_request = b"GET /next HTTP/1.1\r\n\r\n";

            let mut wire = Vec::new();
            let mut rest = &body[..];
            let mut s = seed;
            while !rest.is_empty() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(3);
                let size = (1 + (s >> 35) as usize % 1200).min(rest.len());
                push_chunk_size(&mut wire, size);
                wire.extend_from_slice(&rest[..size]);
                wire.extend_from_slice(b"\r\n");
                rest = &rest[size..];
            }
            wire.extend_from_slice(b"0\r\n");
            if round % 2 == 0 {
                wire.extend_from_slice(b"x-trailer: 1\r\n");
            }
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(next_request);
            let (decoded, left) = decode(Framing::Chunked, wire, seed).await;
            assert_eq!(decoded.unwrap(), body, "round {round}");
            assert!(next_request.starts_with(&left), "round {round}: {left:?}");

            let mut wire = body.clone();
            wire.extend_from_slice(next_request);
            let (decoded, left) = decode(Framing::Length(len as u64), wire, seed).await;
            assert_eq!(decoded.unwrap(), body, "round {round}");
            assert!(next_request.starts_with(&left), "round {round}");
        }
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error_never_a_shorter_body() {
        let (decoded, _) = decode(Framing::Length(10), b"12345".to_vec(), 1).await;
        assert_eq!(decoded.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        let (decoded, _) = decode(Framing::Chunked, b"5\r\n12345\r\n".to_vec(), 1).await;
        assert_eq!(decoded.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        let (decoded, _) = decode(Framing::UntilClose, b"12345".to_vec(), 1).await;
        assert_eq!(decoded.unwrap(), b"12345");
    }

    #[tokio::test]
    async fn chunk_extensions_and_trailers_are_capped_per_body() {
        // The flood a review sent: 20,000 chunks of one byte, each with ~8 KB of
        // extensions. Refused once the allowance is spent, after a few chunks.
        let extension = format!("1;e={}\r\nx\r\n", "a".repeat(7990));
        let mut wire = Vec::new();
        for _ in 0..20_000 {
            wire.extend_from_slice(extension.as_bytes());
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let (decoded, _) = decode(Framing::Chunked, wire, 3).await;
        assert_eq!(
            decoded.unwrap_err().to_string(),
            "chunk extensions too large"
        );

        // Trailer lines past the allowance.
        let mut wire = b"2\r\nok\r\n0\r\n".to_vec();
        for i in 0..5 {
            wire.extend_from_slice(format!("x-t{i}: {}\r\n", "b".repeat(4000)).as_bytes());
        }
        wire.extend_from_slice(b"\r\n");
        let (decoded, _) = decode(Framing::Chunked, wire, 5).await;
        assert_eq!(decoded.unwrap_err().to_string(), "trailers too large");

        // One line past 8 KiB, even arriving whole with its line end, is refused.
        let wire = format!("1;e={}\r\nx\r\n0\r\n\r\n", "a".repeat(9000)).into_bytes();
        let (decoded, _) = decode(Framing::Chunked, wire, 11).await;
        assert_eq!(decoded.unwrap_err().to_string(), "chunk header too long");

        // Within it: a few short extensions, padded sizes and trailers are fine.
        let wire =
            b"0002;name=value\r\nok\r\n00000000000000001;a;b=\"c\"\r\n!\r\n0\r\nx-t: 1\r\n\r\n";
        let (decoded, _) = decode(Framing::Chunked, wire.to_vec(), 9).await;
        assert_eq!(decoded.unwrap(), b"ok!");
    }

    #[test]
    fn decimals_are_written_without_formatting() {
        for n in [0, 7, 10, 1234567890, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
        for n in [0, 9, 10, 255, 16 * 1024, usize::MAX] {
            let mut out = Vec::new();
            push_chunk_size(&mut out, n);
            assert_eq!(out, format!("{n:x}\r\n").into_bytes());
        }
    }
}
