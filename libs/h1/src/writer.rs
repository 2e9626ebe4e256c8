//! Writing a message, shared by the server (answers) and the client (requests): the
//! header lines and the framing header of a head, and a body framed by its length or in
//! chunks, gathered into batches so a body's small pieces and the head go out in as few
//! writes as possible.

use std::{io, pin::Pin, task::Poll};

use bytes::Bytes;
use http::HeaderMap;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::{
    BoxError,
    framing::{push_chunk_size, push_decimal, push_header},
};

/// Bytes gathered before they are written.
const WRITE_BATCH: usize = 64 * 1024;
/// Data pieces at least this large are written as they are, not copied.
const WRITE_DIRECT: usize = 16 * 1024;

/// How a body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Out {
    /// No body.
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (HTTP/1.0 answers).
    UntilClose,
}

/// Appends the header lines of `headers`, but those whose names `skip` takes (framing and
/// connection management, which each end writes itself).
pub(crate) fn push_headers(out: &mut Vec<u8>, headers: &HeaderMap, skip: impl Fn(&str) -> bool) {
    for (name, value) in headers {
        if !skip(name.as_str()) {
            push_header(out, name, value);
        }
    }
}

/// Appends the framing header a body framed so needs (none for `None`/`UntilClose`).
pub(crate) fn push_framing(out: &mut Vec<u8>, framing: Out) {
    match framing {
        Out::Length(len) => push_length(out, len),
        Out::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Out::None | Out::UntilClose => {}
    }
}

/// Appends `content-length: <len>`.
pub(crate) fn push_length(out: &mut Vec<u8>, len: u64) {
    out.extend_from_slice(b"content-length: ");
    push_decimal(out, len);
    out.extend_from_slice(b"\r\n");
}

/// How writing a body ended (the bytes gathered have all been written).
#[derive(Debug)]
pub(crate) enum BodyEnd {
    /// Whole, as framed.
    Complete,
    /// Ended before its `Content-Length`.
    Short,
    /// Went past its `Content-Length` (nothing past it was written).
    TooLong,
    /// The body failed.
    Failed(BoxError),
}

/// Writes `body` after what `out` holds (a head), framed as `framing` (`Length`,
/// `Chunked` or `UntilClose`). What the body has ready goes out with what is gathered;
/// the writer is written to only when the body has to wait or the batch is full. `out`
/// is empty on return.
pub(crate) async fn write_body<W, B>(
    wr: &mut W,
    out: &mut Vec<u8>,
    body: &mut B,
    framing: Out,
) -> io::Result<BodyEnd>
where
    W: AsyncWrite + Unpin,
    B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Unpin,
{
    let mut sent: u64 = 0;
    let end = loop {
        let polled =
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await;
        let next = match polled {
            Poll::Ready(next) => next,
            Poll::Pending => {
                flush(wr, out).await?;
                std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
            }
        };
        let data = match next {
            None => break None,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
            Some(Err(err)) => break Some(BodyEnd::Failed(err.into())),
        };
        sent += data.len() as u64;
        match framing {
            Out::Length(len) if sent > len => break Some(BodyEnd::TooLong),
            Out::Chunked => {
                push_chunk_size(out, data.len());
                push_data(wr, out, &data).await?;
                out.extend_from_slice(b"\r\n");
            }
            _ => push_data(wr, out, &data).await?,
        }
        if out.len() >= WRITE_BATCH {
            flush(wr, out).await?;
        }
    };
    let end = match (end, framing) {
        (Some(broken), _) => broken,
        (None, Out::Length(len)) if sent != len => BodyEnd::Short,
        (None, Out::Chunked) => {
            out.extend_from_slice(b"0\r\n\r\n");
            BodyEnd::Complete
        }
        (None, _) => BodyEnd::Complete,
    };
    flush(wr, out).await?;
    Ok(end)
}

/// Writes what is gathered.
async fn flush<W: AsyncWrite + Unpin>(wr: &mut W, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        wr.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// Appends `data` to the batch, or writes the batch and `data` when `data` is large.
async fn push_data<W: AsyncWrite + Unpin>(
    wr: &mut W,
    out: &mut Vec<u8>,
    data: &Bytes,
) -> io::Result<()> {
    if data.len() < WRITE_DIRECT {
        out.extend_from_slice(data);
        return Ok(());
    }
    flush(wr, out).await?;
    wr.write_all(data).await
}
