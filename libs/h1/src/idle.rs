//! The idle timeout of a connection's reads and writes, shared by the server and the
//! client.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An I/O half whose reads and writes fail with `TimedOut` once one has made no progress
/// for `idle` (never, when `idle` is too long to add to the clock). Its timer is made the
/// first time an operation has to wait and re-armed only when a new wait begins: an
/// operation that completes at once costs nothing.
#[derive(Debug)]
pub struct Idle<T> {
    io: T,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    waiting: bool,
}

impl<T> Idle<T> {
    /// Wraps `io`.
    pub fn new(io: T, idle: Duration) -> Self {
        Self {
            io,
            idle,
            timer: None,
            waiting: false,
        }
    }

    /// The wrapped half.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The wrapped half, for good.
    pub fn into_inner(self) -> T {
        self.io
    }

    /// Passes a finished operation on; for a pending one, runs the timer.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.waiting = false;
            return polled;
        }
        if !self.waiting {
            self.waiting = true;
            let Some(deadline) = tokio::time::Instant::now().checked_add(self.idle) else {
                self.timer = None;
                return Poll::Pending;
            };
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let Some(timer) = &mut self.timer else {
            // No deadline: the wait is the operation's alone.
            return Poll::Pending;
        };
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.waiting = false;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "nothing was sent or taken for {} s",
                        self.idle.as_secs_f32()
                    ),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Idle<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        self.watch(cx, polled)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Idle<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        self.watch(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
