//! Serving with graceful shutdown: SIGTERM or Ctrl-C cancels a token; in-flight requests
//! finish; background tasks watching the same token stop.

use std::{io, net::SocketAddr};

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A port that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("binding {addr}: {source}")]
pub struct BindError {
    /// The address.
    pub addr: SocketAddr,
    /// Why (in use, no permission).
    #[source]
    pub source: io::Error,
}

/// Binds a service's listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// The port `listener` is bound to (0 if it cannot say), e.g. after binding port 0.
pub fn bound_port(listener: &TcpListener) -> u16 {
    listener.local_addr().map(|a| a.port()).unwrap_or_default()
}

/// Resolves on SIGTERM or Ctrl-C and cancels `token`; resolves at once if `token` is
/// cancelled by someone else.
pub async fn shutdown_signal(token: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
        () = token.cancelled() => {}
    }
    token.cancel();
}

/// Serves `router` on `listener` until `token` is cancelled, then lets in-flight
/// requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    token: CancellationToken,
) -> io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { token.cancelled().await })
    .await
}

/// `<binary> healthcheck`: probes the service's own `GET /health` on `host:port` (the
/// unspecified address means loopback) and answers the process's exit code: 0 when it
/// answers 200 within 2 s, 1 otherwise, with the reason on stderr. For container
/// `HEALTHCHECK`s: the images have no curl. Plain HTTP/1.1 over a socket, nothing else.
pub fn healthcheck(host: std::net::IpAddr, port: u16) -> std::process::ExitCode {
    use std::io::{Read, Write};
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
    let host = if host.is_unspecified() {
        match host {
            std::net::IpAddr::V4(_) => std::net::IpAddr::from([127, 0, 0, 1]),
            std::net::IpAddr::V6(_) => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        }
    } else {
        host
    };
    let addr = SocketAddr::new(host, port);
    let probe = || -> io::Result<String> {
        let mut stream = std::net::TcpStream::connect_timeout(&addr, TIMEOUT)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 64];
        let n = stream.read(&mut head)?;
        Ok(String::from_utf8_lossy(&head[..n]).into_owned())
    };
    match probe() {
        Ok(answer) if answer.starts_with("HTTP/1.1 200 ") => std::process::ExitCode::SUCCESS,
        Ok(answer) => {
            let status = answer.lines().next().unwrap_or_default().to_owned();
            eprintln!("healthcheck: {addr}/health answered {status:?}");
            std::process::ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("healthcheck: {addr}/health: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
