//! Shared set-up of the services-api integration tests: the real router over a fresh,
//! migrated database (from `#[sqlx::test]`) and the harness's nats-server, with the
//! outbox relay running.
#![allow(dead_code)]

use std::time::Duration;

use async_nats::jetstream;
use axum::{Router, body::Body};
use http::{Method, Request};
use ic_audit::loki::{LokiClient, LokiConfig, Shipper, ShipperConfig};
use ic_events::{Relay, RelayConfig};
use ic_http::{Secret, app_token::AppToken};
use serde_json::{Value, json};
use services_api::{AppState, OUTBOX};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const ADMIN: &str = "admin-1";

pub fn nats_url() -> String {
    #[allow(clippy::disallowed_methods)] // tests read the harness's URLs
    std::env::var("NATS_URL").expect("NATS_URL is set by `cargo xtask test`")
}

pub struct TestApp {
    pub router: Router,
    pub pool: PgPool,
    pub nats: async_nats::Client,
    pub jetstream: jetstream::Context,
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

impl TestApp {
    pub async fn new(pool: PgPool) -> Self {
        Self::with(pool, &nats_url(), None).await
    }

    pub async fn with(pool: PgPool, nats_url: &str, app_token: Option<&str>) -> Self {
        Self::build(pool, nats_url, app_token, None).await
    }

    /// With audit records shipped to (and history read from) Loki at `loki_url`.
    pub async fn with_loki(pool: PgPool, nats_url: &str, loki_url: &str) -> Self {
        let config = LokiConfig {
            url: loki_url.to_owned(),
            username: None,
            api_key: None,
            tenant_id: None,
        };
        Self::build(pool, nats_url, None, Some(config)).await
    }

    async fn build(
        pool: PgPool,
        nats_url: &str,
        app_token: Option<&str>,
        loki: Option<LokiConfig>,
    ) -> Self {
        ic_telemetry::install_crypto_provider();
        migrate(&pool).await;
        let nats = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(nats_url)
            .await
            .expect("nats connect");
        let token = CancellationToken::new();
        let mut state = AppState::new(pool.clone(), nats.clone(), "development");
        if let Some(loki) = loki {
            state = state.with_loki(LokiClient::new(loki.clone()));
            let shipper = Shipper::new(
                nats.clone(),
                LokiClient::new(loki),
                ShipperConfig {
                    fetch_wait: Duration::from_millis(200),
                    ..ShipperConfig::default()
                },
            );
            tokio::spawn(shipper.run(token.clone()));
        }
        let router = services_api::app(
            state,
            services_api::health("development", pool.clone(), nats.clone()),
            ic_telemetry::HttpMetrics::default(),
            AppToken(app_token.map(Secret::new)),
        );
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
        Self {
            router,
            pool,
            jetstream: jetstream::new(nats.clone()),
            nats,
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

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> TestResponse {
        self.request(
            method,
            path,
            body,
            &[("x-user-id", ADMIN), ("x-user-roles", "admin")],
        )
        .await
    }

    pub async fn create_category(&self, name: &str) -> Value {
        let res = self
            .admin(
                Method::POST,
                "/admin/api/v1/services/categories",
                Some(json!({ "name": name })),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
        res.body
    }

    pub async fn create_service(&self, body: Value) -> Value {
        let mut full = json!({ "title": "A service", "description": "Described.", "delivery_mode": "outpatient_service" });
        for (k, v) in body.as_object().unwrap() {
            full[k] = v.clone();
        }
        let res = self
            .admin(Method::POST, "/admin/api/v1/services", Some(full))
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
        res.body
    }

    /// Creates and publishes a service.
    pub async fn published(&self, body: Value) -> Value {
        let created = self.create_service(body).await;
        let id = created["service_id"].as_str().unwrap();
        let res = self
            .admin(
                Method::POST,
                &format!("/admin/api/v1/services/{id}/publish"),
                None,
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.body);
        created
    }

    pub async fn outbox_backlog(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM services.outbox")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Waits until the relay has published everything.
    pub async fn wait_relayed(&self) {
        ic_testkit::eventually(Duration::from_secs(30), "the outbox to drain", || async {
            (self.outbox_backlog().await == 0).then_some(())
        })
        .await;
    }
}

pub use ic_testkit::nats::stream_messages;

/// The domain events on `IC_EVENTS` carrying `correlation_id`.
pub async fn events_with_correlation(
    js: &jetstream::Context,
    correlation_id: Uuid,
) -> Vec<(String, Value)> {
    stream_messages(js, "IC_EVENTS", "ic.services.>")
        .await
        .into_iter()
        .filter(|(_, _, v)| v["correlationid"] == correlation_id.to_string())
        .map(|(s, _, v)| (s, v))
        .collect()
}

/// The audit records of one entity on `IC_AUDIT`.
pub async fn audit_records(js: &jetstream::Context, entity_type: &str, id: &str) -> Vec<Value> {
    stream_messages(
        js,
        "IC_AUDIT",
        &format!("audit.services-api.{entity_type}.{id}"),
    )
    .await
    .into_iter()
    .map(|(_, _, v)| v)
    .collect()
}
