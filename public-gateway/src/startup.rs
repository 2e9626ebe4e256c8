//! Startup (zero2prod's `startup.rs`): [`App`] binds the port and serves the pipeline
//! until stopped.

use std::{net::SocketAddr, sync::Arc};

use ic_gateway::serve::ServeOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::pipeline::{Gateway, PublicGateway, app};

/// Startup failures.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A port could not be bound.
    #[error(transparent)]
    Bind(#[from] ic_http::serve::BindError),
}

/// A built, bound gateway.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    gateway: PublicGateway,
    token: CancellationToken,
    options: ServeOptions,
}

impl App {
    /// Binds the port.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let addr = SocketAddr::new(config.host, config.port);
        let listener = ic_http::serve::bind(addr).await?;
        let token = CancellationToken::new();
        let verifier = match config.auth.clone() {
            Some(auth) => Some(auth.start(token.clone()).await),
            None => None,
        };
        let gateway = app(Gateway::new(&config, verifier));
        Ok(Self {
            listener,
            gateway,
            token,
            options: ServeOptions {
                max_connections: config.gateway.max_connections,
                ..ServeOptions::default()
            },
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        ic_http::serve::bound_port(&self.listener)
    }

    /// A token that stops the gateway when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Serves until SIGTERM / Ctrl-C (or the token); in-flight requests finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        tracing::info!(port = self.port(), "public-gateway listening");
        tokio::spawn(ic_http::serve::shutdown_signal(self.token.clone()));
        ic_gateway::serve::serve_with(
            self.listener,
            Arc::new(self.gateway),
            self.token,
            self.options,
        )
        .await
    }
}
