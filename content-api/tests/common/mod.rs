//! Shared set-up of the content-api integration tests: the real router over a fresh,
//! migrated database (from `#[sqlx::test]`), a private nats-server (the processing
//! consumer is durable and shared by name: tests must not take each other's jobs), the
//! harness's clamd, and either a directory or an Azurite container as the blob store.
#![allow(dead_code)]

use std::time::Duration;

use axum::{Router, body::Body};
use content_api::{
    AppState, OUTBOX,
    access_log::AccessLog,
    config::BlobStoreConfig,
    metrics::Metrics,
    processing::{Processor, ProcessorConfig, Scanner},
    scan::Clamd,
    startup::UploadRules,
    storage::BlobStore,
};
use http::{Method, Request};
use ic_events::{Relay, RelayConfig};
use ic_http::{Secret, app_token::AppToken};
use ic_testkit::NatsServer;
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const ADMIN: &str = "editor-1";

#[allow(clippy::disallowed_methods)] // tests read the harness's addresses
pub fn harness(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by `cargo xtask test`"))
}

/// Which blob store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// A temporary directory.
    File,
    /// A fresh container in the harness's Azurite.
    Azurite,
}

pub struct Options {
    pub store: Store,
    pub max_upload_bytes: u64,
    pub clamd: Option<String>,
    pub access_log_buffer: usize,
    pub write_access_log: bool,
}

impl Options {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            max_upload_bytes: 1024 * 1024,
            clamd: Some(harness("IC_TEST_CLAMD_ADDRESS")),
            access_log_buffer: content_api::access_log::BUFFER_ENTRIES,
            write_access_log: true,
        }
    }
}

pub struct TestApp {
    pub router: Router,
    pub metrics: Metrics,
    pub pool: PgPool,
    pub store: BlobStore,
    pub blob_config: BlobStoreConfig,
    pub nats: NatsServer,
    pub js: async_nats::jetstream::Context,
    _dir: Option<tempfile::TempDir>,
    token: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

pub use ic_testkit::app::TestResponse;

pub async fn migrate(pool: &PgPool) {
    let mut conn = pool.acquire().await.expect("connection");
    ic_migrations::up_all(&mut conn)
        .await
        .expect("migrations apply");
}

/// A blob store config for `store` (a new directory or container).
pub fn blob_config(store: Store) -> (BlobStoreConfig, Option<tempfile::TempDir>) {
    match store {
        Store::File => {
            let dir = tempfile::tempdir().unwrap();
            (BlobStoreConfig::File(dir.path().join("blobs")), Some(dir))
        }
        Store::Azurite => {
            let endpoint = harness("IC_TEST_AZURITE_ENDPOINT");
            let container = format!("t{}", Uuid::new_v4().simple());
            ic_testkit::storage::create_container(&endpoint, &container);
            let options = ic_testkit::storage::azurite_settings(&endpoint)
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), Secret::new(v)))
                .collect();
            (BlobStoreConfig::Azure { container, options }, None)
        }
    }
}

impl TestApp {
    pub async fn new(pool: PgPool, store: Store) -> Self {
        Self::with(pool, Options::new(store)).await
    }

    pub async fn with(pool: PgPool, options: Options) -> Self {
        ic_telemetry::install_crypto_provider();
        migrate(&pool).await;
        let nats_server = NatsServer::start();
        let nats = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(nats_server.url())
            .await
            .expect("nats connect");
        let js = async_nats::jetstream::new(nats.clone());
        let (blob_config, dir) = blob_config(options.store);
        let store = BlobStore::open(&blob_config).expect("open store");
        let metrics = Metrics::new();
        let (access_log, access_log_writer) =
            AccessLog::new(pool.clone(), metrics.clone(), options.access_log_buffer);
        let state = AppState::new(
            pool.clone(),
            nats.clone(),
            "development",
            store.clone(),
            UploadRules {
                max_bytes: options.max_upload_bytes,
                allowed_mime_types: content_api::domain::mime::DEFAULT_ALLOWED_MIME_TYPES
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            },
            access_log,
            metrics.clone(),
        );
        let token = CancellationToken::new();
        if options.write_access_log {
            tokio::spawn(access_log_writer.run(token.clone()));
        } else {
            // Held, never run: the buffer fills (the drop path).
            std::mem::forget(access_log_writer);
        }
        let clamd = options
            .clamd
            .map(|address| Clamd::new(address, Duration::from_secs(30)));
        let processor = Processor::new(
            state.clone(),
            nats.clone(),
            clamd.clone().map_or(Scanner::Skipped, Scanner::Clamd),
            ProcessorConfig {
                ack_wait: Duration::from_secs(3),
                first_retry: Duration::from_millis(200),
                ..ProcessorConfig::default()
            },
        );
        tokio::spawn(processor.run(token.clone()));
        let relay = Relay::new(
            pool.clone(),
            nats.clone(),
            OUTBOX,
            RelayConfig {
                poll_interval: Duration::from_millis(100),
                max_backoff: Duration::from_millis(500),
                ack_timeout: Duration::from_secs(2),
                ..RelayConfig::default()
            },
        );
        tokio::spawn(relay.run(token.clone()));
        let router = content_api::app(
            state,
            content_api::health("development", pool.clone(), nats, store.clone(), clamd),
            AppToken(None),
        );
        Self {
            router,
            metrics,
            pool,
            store,
            blob_config,
            nats: nats_server,
            js,
            _dir: dir,
            token,
        }
    }

    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        ic_testkit::app::call(&self.router, request).await
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        let mut builder = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let body = match body {
            Some(json) => {
                builder = builder.header("content-type", "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.send(builder.body(body).unwrap()).await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.request(Method::GET, path, None, &[]).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> TestResponse {
        self.request(Method::GET, path, None, headers).await
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> TestResponse {
        self.request(
            method,
            path,
            body,
            &[("x-user-id", ADMIN), ("x-user-roles", "content-manager")],
        )
        .await
    }

    /// Uploads `bytes` as the `file` part (with its name and declared type) plus text
    /// `fields`.
    pub async fn upload(
        &self,
        filename: &str,
        content_type: Option<&str>,
        bytes: &[u8],
        fields: &[(&str, &str)],
    ) -> TestResponse {
        let (boundary, body) = multipart(filename, content_type, bytes, fields);
        let request = Request::builder()
            .method(Method::POST)
            .uri("/admin/api/v1/content/upload")
            .header("x-user-id", ADMIN)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(body))
            .unwrap();
        self.send(request).await
    }

    /// Uploads a public file and waits until it is available; returns its id.
    pub async fn available(&self, filename: &str, bytes: &[u8]) -> String {
        let res = self
            .upload(filename, None, bytes, &[("access_level", "public")])
            .await;
        assert_eq!(res.status, 202, "{}", res.body);
        let id = res.body["content_id"].as_str().unwrap().to_owned();
        self.wait_status(&id, "available").await;
        id
    }

    /// Polls the admin status until `upload_status` is `status`.
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        ic_testkit::eventually(
            Duration::from_secs(30),
            &format!("{id} {status}"),
            || async {
                let res = self
                    .admin(
                        Method::GET,
                        &format!("/admin/api/v1/content/{id}/status"),
                        None,
                    )
                    .await;
                (res.body["upload_status"] == status).then_some(res.body)
            },
        )
        .await
    }

    /// Every object in the store (content, staging and previews).
    pub async fn objects(&self) -> Vec<String> {
        let mut out = Vec::new();
        for prefix in ["content", "staging", "previews"] {
            out.extend(
                self.store
                    .list(prefix)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|m| m.location.to_string()),
            );
        }
        out.sort();
        out
    }

    pub async fn rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM content.content")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

pub use ic_testkit::multipart::form as multipart;

/// A small, valid-looking PDF of `n` bytes (magic number first), distinct per `seed`.
pub fn pdf(n: usize, seed: u8) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut x: u32 = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push((x & 0xff) as u8);
    }
    out.truncate(n);
    out
}

/// A 1×1 PNG.
pub const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\xff\xff?\0\x05\xfe\x02\xfe\xa7\x35\x81\x84\0\0\0\0IEND\xaeB`\x82";

/// Runs an `async fn(TestApp)` scenario once per blob store, as two tests.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                use super::*;

                #[sqlx::test(migrations = false)]
                async fn on_the_file_store(pool: sqlx::PgPool) {
                    super::$name(common::TestApp::new(pool, common::Store::File).await).await;
                }

                #[sqlx::test(migrations = false)]
                async fn on_azurite(pool: sqlx::PgPool) {
                    super::$name(common::TestApp::new(pool, common::Store::Azurite).await).await;
                }
            }
        )+
    };
}
