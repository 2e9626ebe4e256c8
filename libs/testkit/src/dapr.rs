//! A stand-in Dapr sidecar for the secrets API: a real gRPC server (HTTP/2, the `dapr`
//! crate's generated messages and tonic's codec, as daprd serves them) answering
//! `dapr.proto.runtime.v1.Dapr/GetBulkSecret` from a fixed store. daprd itself cannot be
//! installed here (`shared/STACK.md`). Every other method answers `UNIMPLEMENTED`, as a
//! gRPC server does for a method it lacks.

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use dapr::dapr::proto::runtime::v1::{GetBulkSecretRequest, GetBulkSecretResponse, SecretResponse};
use tokio::{net::TcpListener, task::JoinHandle};
use tonic::{Request, Response, Status, body::Body, server::NamedService};

const BULK_SECRET: &str = "/dapr.proto.runtime.v1.Dapr/GetBulkSecret";

#[derive(Debug)]
struct Store {
    name: String,
    secrets: HashMap<String, String>,
    api_token: Option<String>,
    calls: AtomicUsize,
}

/// A running stand-in sidecar; stops when dropped.
#[derive(Debug)]
pub struct SecretSidecar {
    /// Its gRPC port (what `DAPR_GRPC_PORT` names).
    pub port: u16,
    store: Arc<Store>,
    task: JoinHandle<()>,
}

impl SecretSidecar {
    /// Serves `secrets` (name → value, named as the store names them) as the store
    /// `store` on a free loopback port; with `api_token`, a call without the matching
    /// `dapr-api-token` metadata is refused (`UNAUTHENTICATED`), as daprd does.
    pub async fn start(store: &str, secrets: &[(&str, &str)], api_token: Option<&str>) -> Self {
        Self::start_on(0, store, secrets, api_token).await
    }

    /// [`SecretSidecar::start`] on a given port (a sidecar that comes up late).
    pub async fn start_on(
        port: u16,
        store: &str,
        secrets: &[(&str, &str)],
        api_token: Option<&str>,
    ) -> Self {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .expect("bind the stand-in sidecar");
        let port = listener.local_addr().expect("local address").port();
        let store = Arc::new(Store {
            name: store.to_owned(),
            secrets: secrets
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            api_token: api_token.map(str::to_owned),
            calls: AtomicUsize::new(0),
        });
        let service = Sidecar(store.clone());
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        Self { port, store, task }
    }

    /// `GetBulkSecret` calls answered with the secrets.
    pub fn calls(&self) -> usize {
        self.store.calls.load(Ordering::SeqCst)
    }
}

impl Drop for SecretSidecar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, Clone)]
struct Sidecar(Arc<Store>);

impl NamedService for Sidecar {
    const NAME: &'static str = "dapr.proto.runtime.v1.Dapr";
}

impl Store {
    fn bulk_secret(
        &self,
        request: Request<GetBulkSecretRequest>,
    ) -> Result<Response<GetBulkSecretResponse>, Status> {
        if let Some(expected) = &self.api_token {
            let presented = request
                .metadata()
                .get("dapr-api-token")
                .and_then(|v| v.to_str().ok());
            if presented != Some(expected.as_str()) {
                return Err(Status::unauthenticated(
                    "authentication error: api token mismatch",
                ));
            }
        }
        let request = request.into_inner();
        if request.store_name != self.name {
            return Err(Status::invalid_argument(format!(
                "failed finding secret store with key {}",
                request.store_name
            )));
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        // local.env's shape: each secret is one key named as the secret.
        let data = self
            .secrets
            .iter()
            .map(|(name, value)| {
                let secrets = HashMap::from([(name.clone(), value.clone())]);
                (name.clone(), SecretResponse { secrets })
            })
            .collect();
        Ok(Response::new(GetBulkSecretResponse { data }))
    }
}

#[derive(Debug, Clone)]
struct BulkSecret(Arc<Store>);

impl tonic::server::UnaryService<GetBulkSecretRequest> for BulkSecret {
    type Response = GetBulkSecretResponse;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Self::Response>, Status>> + Send>>;

    fn call(&mut self, request: Request<GetBulkSecretRequest>) -> Self::Future {
        let store = self.0.clone();
        Box::pin(async move { store.bulk_secret(request) })
    }
}

impl tower::Service<http::Request<Body>> for Sidecar {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let store = self.0.clone();
        Box::pin(async move {
            if request.uri().path() == BULK_SECRET {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(BulkSecret(store), request).await)
            } else {
                Ok(
                    Status::unimplemented(format!("{} is not served here", request.uri().path()))
                        .into_http(),
                )
            }
        })
    }
}
