//! Serving a gateway's pipeline on the engine's HTTP/1.1 server ([`ic_h1::server`]):
//! the request body becomes axum's, and what the server refuses to read becomes the
//! error envelope ([`ApiError`]) before the gateway adds what every answer carries.

use std::{io, net::IpAddr, sync::Arc};

use axum::{
    body::Body,
    extract::Request,
    response::{IntoResponse, Response},
};
use http_body::Body as _;
pub use ic_h1::server::{DEFAULT_MAX_CONNECTIONS, ServeOptions};
use ic_h1::server::{Handler, Incoming, Refusal};
use ic_http::{ApiError, ErrorCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A gateway's request pipeline.
pub trait Pipeline: Send + Sync + 'static {
    /// Answers one request from the socket peer `peer`.
    fn handle(&self, request: Request, peer: IpAddr) -> impl Future<Output = Response> + Send;

    /// The answer to a request from `peer` that the server refused to read (malformed
    /// or ambiguous: nothing of it reaches [`Pipeline::handle`]); the connection closes
    /// after it. By default the bare error envelope; a gateway adds what every answer
    /// of its carries (ids, rate-limit and security headers).
    fn refuse(&self, error: ApiError, peer: IpAddr) -> impl Future<Output = Response> + Send {
        let _ = peer;
        std::future::ready(error.into_response())
    }
}

/// A refusal of the server in the error envelope: its status and reason kept.
pub fn refusal_error(refusal: Refusal) -> ApiError {
    let code = match refusal.status {
        http::StatusCode::EXPECTATION_FAILED => ErrorCode::ExpectationFailed,
        http::StatusCode::HTTP_VERSION_NOT_SUPPORTED => ErrorCode::HttpVersionNotSupported,
        http::StatusCode::NOT_IMPLEMENTED => ErrorCode::NotImplemented,
        _ => ErrorCode::ValidationError,
    };
    ApiError::new(code, refusal.reason)
}

/// A pipeline as the engine's handler.
struct Served<P>(Arc<P>);

impl<P: Pipeline> Handler for Served<P> {
    type Body = Body;

    fn handle(
        &self,
        request: http::Request<Incoming>,
        peer: IpAddr,
    ) -> impl Future<Output = Response> + Send {
        // No box for a request without a body.
        let request = request.map(|body| {
            if body.is_end_stream() {
                Body::empty()
            } else {
                Body::new(body)
            }
        });
        self.0.handle(request, peer)
    }

    fn refuse(&self, refusal: Refusal, peer: IpAddr) -> impl Future<Output = Response> + Send {
        self.0.refuse(refusal_error(refusal), peer)
    }
}

/// Serves `pipeline` on `listener` until `token` is cancelled, then stops accepting and
/// lets in-flight requests finish (up to 30 s).
pub async fn serve<P: Pipeline>(
    listener: TcpListener,
    pipeline: Arc<P>,
    token: CancellationToken,
) -> io::Result<()> {
    serve_with(listener, pipeline, token, ServeOptions::default()).await
}

/// [`serve`] with other timeouts and limits.
pub async fn serve_with<P: Pipeline>(
    listener: TcpListener,
    pipeline: Arc<P>,
    token: CancellationToken,
    options: ServeOptions,
) -> io::Result<()> {
    ic_h1::server::serve_with(listener, Arc::new(Served(pipeline)), token, options).await
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    #[test]
    fn each_refusal_keeps_its_status_in_the_envelope() {
        for status in [
            StatusCode::BAD_REQUEST,
            StatusCode::EXPECTATION_FAILED,
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            StatusCode::NOT_IMPLEMENTED,
        ] {
            let error = refusal_error(Refusal {
                status,
                reason: "why",
            });
            assert_eq!(error.code().status(), status);
        }
    }
}
