//! Serving a gateway: HTTP/1.1 straight on hyper, with no router in front of the
//! pipeline (every request goes through it anyway), `TCP_NODELAY`, a header read
//! timeout against slow clients, and graceful shutdown (in-flight requests finish).

use std::{
    convert::Infallible,
    io,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use axum::{body::Body, extract::Request, response::Response};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A gateway's request pipeline.
pub trait Pipeline: Send + Sync + 'static {
    /// Answers one request from the socket peer `peer`.
    fn handle(&self, request: Request, peer: IpAddr) -> impl Future<Output = Response> + Send;
}

/// Time allowed for a client to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Time in-flight requests get to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `pipeline` on `listener` until `token` is cancelled, then stops accepting and
/// lets in-flight requests finish (up to 30 s).
pub async fn serve<P: Pipeline>(
    listener: TcpListener,
    pipeline: Arc<P>,
    token: CancellationToken,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    // Slow-header clients are cut off. This arms a timer per request, which costs
    // about a tenth of the throughput in `cargo xtask bench gateway`, and is kept.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
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
        let peer: SocketAddr = peer;
        let pipeline = pipeline.clone();
        let service = service_fn(move |request: hyper::Request<Incoming>| {
            let pipeline = pipeline.clone();
            async move { Ok::<_, Infallible>(pipeline.handle(request.map(Body::new), peer.ip()).await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests still running after the drain timeout");
    }
    Ok(())
}
