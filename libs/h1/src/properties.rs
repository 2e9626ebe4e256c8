//! Property tests of the engine's parsers with arbitrary bytes and arbitrary read splits,
//! where the stable toolchain allows no coverage-guided fuzzer: the request-head reader,
//! the body decoder (and the body writer it must invert), and the response-head parser.
//! Inputs are random bytes, and mutations of a corpus of valid, edge and hostile messages
//! (the smuggling cases the engine refuses among them).
//!
//! Each property runs `IC_FUZZ_ITERATIONS` cases (default 300, a bounded run inside
//! `cargo xtask test`; `cargo xtask fuzz` runs millions) from the seed `IC_FUZZ_SEED`
//! (default: a fresh one, printed on failure so a failing case can be replayed).
#![allow(clippy::disallowed_methods)] // the run's length and seed come from the environment

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::io::{AsyncRead, ReadBuf};

use crate::{
    client::parse_head as parse_response_head,
    framing::{Decoder, Framing, MAX_CHUNK_OVERHEAD, push_chunk_size},
    server::HeadReader,
    writer::{Out, write_body},
};

/// Requests the engine must read, and ones it must refuse (`libs/h1/tests/engine`
/// covers each answer; here they seed the mutations).
pub(crate) const REQUEST_CORPUS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nhost: gw\r\n\r\n",
    b"GET /api/v1/services?limit=2 HTTP/1.1\r\nHost: gw:8000\r\naccept: */*\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nhost: gw\r\ncontent-length: 5\r\n\r\nhello",
    b"POST /echo HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nx: y\r\n\r\n",
    b"GET http://gw/x HTTP/1.1\r\nhost: other\r\n\r\n",
    b"GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nhost: gw\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nhost: gw\r\ncontent-length: 5, 6\r\n\r\nhello!",
    b"GET /echo HTTP/1.1\r\nhost: gw\r\nx-folded: a\r\n b\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nhost: gw\rx-cr: 1\r\n\r\n",
    b"GET /echo HTTP/1.1\nhost: gw\n\n",
    b"GET /echo HTTP/1.2\r\nhost: gw\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nhost: a b\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nhost: [::1\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nhost: gw\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\nx",
    b"GET /a HTTP/1.1\r\nhost: gw\r\n\r\nGET /b HTTP/1.1\r\nhost: gw\r\n\r\n",
];

/// Answers the client must read, and ones it must refuse.
const RESPONSE_CORPUS: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nuntil close",
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 600 Nope\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n",
];

fn iterations() -> usize {
    std::env::var("IC_FUZZ_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300)
}

/// The run's seed: `IC_FUZZ_SEED`, else a fresh one. Printed, so a failure can be
/// replayed (nextest shows a failing test's output).
fn rng(property: &str) -> StdRng {
    let seed = std::env::var("IC_FUZZ_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!(
        "{property}: IC_FUZZ_SEED={seed} IC_FUZZ_ITERATIONS={}",
        iterations()
    );
    StdRng::seed_from_u64(seed)
}

/// A random input: random bytes, or a corpus entry mutated a few times (bytes flipped,
/// inserted or removed; CR, LF, colons, spaces and digits favoured, as they move
/// message boundaries).
fn input(rng: &mut StdRng, corpus: &[&[u8]]) -> Vec<u8> {
    if rng.random_bool(0.2) {
        let len = rng.random_range(0..200);
        return (0..len).map(|_| rng.random()).collect();
    }
    let mut bytes = corpus[rng.random_range(0..corpus.len())].to_vec();
    const SPECIAL: &[u8] = b"\r\n: \t0123456789abcdef;,\0\x7f";
    for _ in 0..rng.random_range(0..4) {
        let at = rng.random_range(0..=bytes.len());
        let byte = if rng.random_bool(0.6) {
            SPECIAL[rng.random_range(0..SPECIAL.len())]
        } else {
            rng.random()
        };
        match rng.random_range(0..3) {
            0 => bytes.insert(at, byte),
            1 if at < bytes.len() => bytes[at] = byte,
            _ if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => {}
        }
    }
    bytes
}

/// Where `bytes` is cut into reads: random sizes, single bytes often.
fn splits(rng: &mut StdRng, len: usize) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut at = 0;
    while at < len {
        at += if rng.random_bool(0.3) {
            1
        } else {
            rng.random_range(1..=64)
        };
        cuts.push(at.min(len));
    }
    cuts
}

/// What a head reader made of a whole input: the head (as text, to compare), `None`
/// when it wants more, or the refusal.
fn read_heads(pieces: &[&[u8]]) -> Vec<Result<Option<String>, String>> {
    let mut reader = HeadReader::default();
    let mut buf = BytesMut::new();
    let mut outcomes = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        // Heads after a head (pipelining) are read from what is left.
        loop {
            match reader.read(&mut buf) {
                Ok(Some(head)) => outcomes.push(Ok(Some(format!("{head:?}")))),
                Ok(None) => break,
                Err(refusal) => {
                    outcomes.push(Err(refusal.to_string()));
                    return outcomes;
                }
            }
            if outcomes.len() > 8 {
                return outcomes;
            }
        }
    }
    outcomes.push(Ok(None));
    outcomes
}

#[test]
fn request_heads_read_in_any_pieces_are_read_as_from_one_buffer_and_never_panic() {
    let mut rng = rng("request heads");
    for case in 0..iterations() {
        let bytes = input(&mut rng, REQUEST_CORPUS);
        let whole = read_heads(&[&bytes]);
        let cuts = splits(&mut rng, bytes.len());
        let mut pieces = Vec::new();
        let mut from = 0;
        for cut in cuts {
            pieces.push(&bytes[from..cut]);
            from = cut;
        }
        let mut pieced = read_heads(&pieces);
        // Read in pieces, a malformed head may be refused only once an empty line
        // arrives (the reader parses again only when one may have: a head sent a byte at
        // a time is not parsed from the start for every byte). Its refusal must be the
        // same then.
        if matches!(whole.last(), Some(Err(_))) && pieced.last() == Some(&Ok(None)) {
            pieces.push(b"\r\n\r\n");
            pieced = read_heads(&pieces);
        }
        assert_eq!(
            whole,
            pieced,
            "case {case}: {:?} read whole and in pieces",
            String::from_utf8_lossy(&bytes)
        );
    }
}

/// Hands out its bytes in the sizes `splits` chose (the rest at once).
struct Reads {
    bytes: Vec<u8>,
    at: usize,
    cuts: std::vec::IntoIter<usize>,
}

impl AsyncRead for Reads {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let end = self.cuts.next().unwrap_or(self.bytes.len());
        let end = end.max(self.at).min(self.at + out.remaining());
        let at = self.at;
        out.put_slice(&self.bytes[at..end]);
        self.at = end;
        Poll::Ready(Ok(()))
    }
}

/// Decodes one body from `wire`, read in the pieces `cuts` says: the body or its
/// error, and the bytes left after it. Bounded: every poll either takes bytes or ends.
fn decode(framing: Framing, wire: Vec<u8>, cuts: Vec<usize>) -> (io::Result<Vec<u8>>, Vec<u8>) {
    let len = wire.len();
    let mut io = Reads {
        bytes: wire,
        at: 0,
        cuts: cuts.into_iter(),
    };
    let mut buf = BytesMut::new();
    let mut decoder = Decoder::new(framing);
    let mut body = Vec::new();
    let mut cx = Context::from_waker(std::task::Waker::noop());
    for _ in 0..=(2 * len + 16) {
        match decoder.poll_data(Pin::new(&mut io), &mut buf, &mut cx) {
            Poll::Ready(Some(Ok(data))) => body.extend_from_slice(&data),
            Poll::Ready(Some(Err(err))) => return (Err(err), buf.to_vec()),
            Poll::Ready(None) => return (Ok(body), buf.to_vec()),
            Poll::Pending => unreachable!("reads never wait here"),
        }
    }
    panic!("the decoder made no progress on {len} bytes");
}

/// A body chunked at random: sizes, zero padding, extensions and trailers within the
/// caps.
fn chunked(rng: &mut StdRng, body: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    let mut rest = body;
    let mut overhead = 0;
    while !rest.is_empty() {
        let size = rng.random_range(1..=rest.len().min(700));
        let mut line = vec![b'0'; rng.random_range(0..3)];
        push_chunk_size(&mut line, size);
        line.truncate(line.len() - 2);
        if rng.random_bool(0.2) && overhead + 40 < MAX_CHUNK_OVERHEAD {
            line.extend_from_slice(b";name=\"quoted; value\"");
            overhead += line.len();
        }
        wire.extend_from_slice(&line);
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(&rest[..size]);
        wire.extend_from_slice(b"\r\n");
        rest = &rest[size..];
    }
    wire.extend_from_slice(b"0\r\n");
    for i in 0..rng.random_range(0..3) {
        wire.extend_from_slice(format!("x-trailer-{i}: {i}\r\n").as_bytes());
    }
    wire.extend_from_slice(b"\r\n");
    wire
}

#[test]
fn bodies_chunked_and_read_in_any_pieces_decode_whole_and_leave_what_follows() {
    let mut rng = rng("bodies");
    let next = b"GET /next HTTP/1.1\r\nhost: gw\r\n\r\n";
    for case in 0..iterations() {
        let len = rng.random_range(0..3000);
        let body: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let (framing, mut wire) = if rng.random_bool(0.5) {
            (Framing::Chunked, chunked(&mut rng, &body))
        } else {
            (Framing::Length(len as u64), body.clone())
        };
        wire.extend_from_slice(next);
        let cuts = splits(&mut rng, wire.len());
        let (decoded, left) = decode(framing, wire, cuts);
        assert_eq!(decoded.expect("a whole body"), body, "case {case}");
        assert!(next.starts_with(&left), "case {case}: {left:?} left");
    }
}

#[test]
fn arbitrary_chunked_bytes_end_in_a_body_or_an_error_never_a_panic_or_a_hang() {
    let mut rng = rng("arbitrary chunks");
    let corpus: &[&[u8]] = &[
        b"5\r\nhello\r\n0\r\n\r\n",
        b"5;e=1\r\nhello\r\n0\r\nx: y\r\n\r\n",
        b"0000000000000005\r\nhello\r\n0\r\n\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"5\nhello\n0\n\n",
        b"ffffffffffffffff\r\n",
    ];
    for _ in 0..iterations() {
        let wire = input(&mut rng, corpus);
        let cuts = splits(&mut rng, wire.len());
        let _ = decode(Framing::Chunked, wire, cuts);
    }
}

#[tokio::test]
async fn what_the_body_writer_writes_the_decoder_reads_back_whole() {
    let mut rng = rng("writer");
    for case in 0..iterations() {
        let pieces: Vec<Bytes> = (0..rng.random_range(0..8))
            .map(|_| {
                let len = if rng.random_bool(0.2) {
                    rng.random_range(16 * 1024..40 * 1024)
                } else {
                    rng.random_range(0..300)
                };
                (0..len)
                    .map(|_| rng.random::<u8>())
                    .collect::<Vec<u8>>()
                    .into()
            })
            .collect();
        let body: Vec<u8> = pieces.concat();
        let chunked = rng.random_bool(0.5);
        let framing = if chunked {
            Out::Chunked
        } else {
            Out::Length(body.len() as u64)
        };
        let stream = futures_lite_stream(pieces);
        let mut source = http_body_util::StreamBody::new(stream);
        let mut wire = Vec::new();
        let mut out = Vec::new();
        let end = write_body(&mut wire, &mut out, &mut source, framing)
            .await
            .unwrap();
        assert!(
            matches!(end, crate::writer::BodyEnd::Complete),
            "case {case}"
        );
        let cuts = splits(&mut rng, wire.len());
        let framing = if chunked {
            Framing::Chunked
        } else {
            Framing::Length(body.len() as u64)
        };
        let (decoded, left) = decode(framing, wire, cuts);
        assert_eq!(decoded.unwrap(), body, "case {case}");
        assert!(left.is_empty(), "case {case}");
    }
}

/// A body's pieces as a stream of frames.
fn futures_lite_stream(
    pieces: Vec<Bytes>,
) -> impl futures::Stream<Item = Result<http_body::Frame<Bytes>, io::Error>> + Unpin {
    futures::stream::iter(
        pieces
            .into_iter()
            .map(|data| Ok(http_body::Frame::data(data))),
    )
}

#[test]
fn arbitrary_response_heads_are_parsed_or_refused_never_a_panic() {
    let mut rng = rng("response heads");
    for _ in 0..iterations() {
        let bytes = input(&mut rng, RESPONSE_CORPUS);
        let head_request = rng.random_bool(0.2);
        let mut buf = BytesMut::from(&bytes[..]);
        // Interim answers are taken off the front one at a time, as the client does.
        for _ in 0..10 {
            match parse_response_head(&mut buf, head_request) {
                Ok(Some((None, _, _))) => continue,
                Ok(_) | Err(_) => break,
            }
        }
    }
}
