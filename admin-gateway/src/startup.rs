//! Startup (zero2prod's `startup.rs`): [`App`] loads the keys and the policies, connects
//! the audit publisher, binds the port and serves the pipeline until stopped.

use std::{net::SocketAddr, sync::Arc};

use ic_audit::{
    AuditorConfig, RequestAuditor,
    loki::{LokiClient, Shipper, ShipperConfig},
};
use ic_authz::{Authorizer, AuthzError, OpaClient, Policies};
use ic_gateway::serve::ServeOptions;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    DEFAULT_POLICIES, SERVICE_NAME,
    config::{Authorization, Config},
    pipeline::{AdminGateway, Gateway, app},
};

/// Startup failures.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A port could not be bound.
    #[error(transparent)]
    Bind(#[from] ic_http::serve::BindError),
    /// The policies could not be loaded.
    #[error("authorization policies: {0}")]
    Policies(#[from] AuthzError),
    /// The NATS URL is unusable.
    #[error("NATS_URL: {0}")]
    Nats(#[from] async_nats::ConnectError),
}

/// A built, bound gateway.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    gateway: AdminGateway,
    token: CancellationToken,
    options: ServeOptions,
    /// Stopped once the last request is answered, so every record is queued first.
    audit_token: CancellationToken,
    audit_task: JoinHandle<()>,
    shipper: Option<Shipper>,
}

/// The authorizer a configuration names.
pub fn authorizer(authorization: &Authorization) -> Result<Authorizer, AuthzError> {
    Ok(match authorization {
        Authorization::Embedded(None) => Authorizer::Embedded(Box::new(Policies::from_sources(
            DEFAULT_POLICIES
                .iter()
                .map(|(name, source)| ((*name).to_owned(), (*source).to_owned()))
                .collect(),
        )?)),
        Authorization::Embedded(Some(dir)) => {
            Authorizer::Embedded(Box::new(Policies::load_dir(dir)?))
        }
        Authorization::Opa { url, timeout } => Authorizer::Opa(OpaClient::new(url, *timeout)),
    })
}

impl App {
    /// Loads the policies and the issuer's keys (a key fetch that fails is retried and
    /// shown by readiness), connects to NATS lazily (records wait while it is down),
    /// binds the port.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let authorizer = authorizer(&config.authorization)?;
        let addr = SocketAddr::new(config.host, config.port);
        let listener = ic_http::serve::bind(addr).await?;
        let token = CancellationToken::new();
        let verifier = config.auth.clone().start(token.clone()).await;
        let nats = async_nats::ConnectOptions::new()
            .name(SERVICE_NAME)
            .retry_on_initial_connect()
            .connect(config.nats_url.as_str())
            .await?;
        let audit_token = CancellationToken::new();
        let (auditor, audit_task) =
            RequestAuditor::start(nats.clone(), AuditorConfig::default(), audit_token.clone());
        let shipper = config.loki.clone().map(|loki| {
            Shipper::new(
                nats.clone(),
                LokiClient::new(loki),
                ShipperConfig::default(),
            )
        });
        let mut registry = prometheus_client::registry::Registry::default();
        if let Some(shipper) = &shipper {
            shipper.register(&mut registry);
        }
        let gateway = app(Gateway::new(
            &config, verifier, authorizer, auditor, nats, registry,
        ));
        Ok(Self {
            listener,
            gateway,
            token,
            options: ServeOptions {
                max_connections: config.gateway.max_connections,
                ..ServeOptions::default()
            },
            audit_token,
            audit_task,
            shipper,
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

    /// Serves until SIGTERM / Ctrl-C (or the token); in-flight requests finish, then the
    /// audit records still queued are published (for up to 5 s).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        tracing::info!(port = self.port(), "admin-gateway listening");
        tokio::spawn(ic_http::serve::shutdown_signal(self.token.clone()));
        if let Some(shipper) = self.shipper {
            tokio::spawn(shipper.run(self.token.clone()));
        }
        let served = ic_gateway::serve::serve_with(
            self.listener,
            Arc::new(self.gateway),
            self.token,
            self.options,
        )
        .await;
        self.audit_token.cancel();
        let _ = self.audit_task.await;
        served
    }
}
