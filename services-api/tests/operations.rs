//! Health, readiness across a Postgres outage, the app token, metrics labels.

mod common;

use std::time::Duration;

use common::TestApp;
use http::Method;
use serde_json::json;
use sqlx::{PgPool, postgres::PgPoolOptions};

#[sqlx::test(migrations = false)]
async fn liveness_never_touches_the_database_and_readiness_does(pool: PgPool) {
    common::migrate(&pool).await;
    // A pool pointed at a port where nothing listens.
    let dead = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy(&format!(
            "postgres://postgres@127.0.0.1:{}/none",
            ic_testkit::free_port()
        ))
        .unwrap();
    let nats = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(common::nats_url())
        .await
        .unwrap();
    let router = services_api::app(
        services_api::AppState::new(dead.clone(), nats.clone(), "development"),
        services_api::health("development", dead, nats),
        ic_telemetry::HttpMetrics::default(),
        ic_http::app_token::AppToken(None),
    );
    let mut app = TestApp::new(pool).await;
    app.router = router;
    for path in ["/health", "/healthz"] {
        let res = app.get(path).await;
        assert_eq!(res.status, 200);
        assert_eq!(res.body["status"], "healthy");
        assert_eq!(res.body["service"], "services-api");
        assert_eq!(res.body["dapr_app_id"], "services-api");
        assert_eq!(res.body["environment"], "development");
        assert!(res.body["correlation_id"].is_string() && res.body["version"].is_string());
    }
    let res = app.get("/health/ready").await;
    assert_eq!(res.status, 503);
    assert_eq!(res.body["status"], "not_ready");
    assert_eq!(res.body["checks"]["postgres"]["status"], "down");
    let res = app.get("/api/v1/services").await;
    res.error(503, "SERVICE_UNAVAILABLE");
    assert!(
        !res.body.to_string().contains("127.0.0.1"),
        "no connection details leak"
    );
}

#[tokio::test]
async fn readiness_follows_postgres_down_and_up_without_a_restart() {
    let postgres = ic_testkit::PostgresServer::start();
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(1))
        .connect(&postgres.url("postgres"))
        .await
        .unwrap();
    let app = TestApp::new(pool).await;
    app.published(json!({"title": "Survivor"})).await;
    assert_eq!(app.get("/health/ready").await.status, 200);

    postgres.stop();
    let res = ic_testkit::eventually(Duration::from_secs(20), "readiness to fail", || async {
        let res = app.get("/health/ready").await;
        (res.status == 503).then_some(res)
    })
    .await;
    assert_eq!(res.body["checks"]["postgres"]["status"], "down");
    app.get("/api/v1/services")
        .await
        .error(503, "SERVICE_UNAVAILABLE");
    assert_eq!(app.get("/health").await.status, 200, "liveness stays up");

    postgres.start_again();
    ic_testkit::eventually(Duration::from_secs(30), "readiness to recover", || async {
        (app.get("/health/ready").await.status == 200).then_some(())
    })
    .await;
    let res = ic_testkit::eventually(
        Duration::from_secs(30),
        "requests to succeed again",
        || async {
            let res = app.get("/api/v1/services").await;
            (res.status == 200).then_some(res)
        },
    )
    .await;
    assert_eq!(res.body["services"][0]["title"], "Survivor");
    let res = app.create_service(json!({"title": "After recovery"})).await;
    assert_eq!(res["title"], "After recovery");
}

#[sqlx::test(migrations = false)]
async fn with_an_app_token_requests_without_the_matching_dapr_api_token_are_401(pool: PgPool) {
    let app = TestApp::with(pool, &common::nats_url(), Some("s3cret-token")).await;
    app.get("/api/v1/services").await.error(401, "UNAUTHORIZED");
    app.request(
        Method::GET,
        "/api/v1/services",
        None,
        &[("dapr-api-token", "wrong")],
    )
    .await
    .error(401, "UNAUTHORIZED");
    let forged = app
        .request(
            Method::POST,
            "/admin/api/v1/services",
            Some(json!({"title": "T", "description": "D", "delivery_mode": "mobile_service"})),
            &[("x-user-id", "attacker")],
        )
        .await;
    forged.error(401, "UNAUTHORIZED");
    let written: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM services.services) + (SELECT count(*) FROM services.outbox)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(written, 0, "the forged write left nothing behind");
    let ok = app
        .request(
            Method::GET,
            "/api/v1/services",
            None,
            &[("dapr-api-token", "s3cret-token")],
        )
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(app.get("/health").await.status, 200, "probes need no token");
}

#[sqlx::test(migrations = false)]
async fn metrics_label_requests_by_route_template_never_by_raw_id(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.published(json!({"title": "Counted"})).await;
    let id = s["service_id"].as_str().unwrap();
    app.get(&format!("/api/v1/services/{id}")).await;
    app.get("/api/v1/services/6f1c2a64-3b7e-4a0e-9a57-1d1f7c1ab001")
        .await;
    app.get("/no/such/path/123").await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status, 200);
    let text = String::from_utf8(res.bytes).unwrap();
    assert!(
        text.contains(r#"http_server_requests_total{method="GET",route="/api/v1/services/{id}",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/api/v1/services/{id}",status="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/admin/api/v1/services/{id}/publish",status="200"}"#),
        "{text}"
    );
    assert!(
        text.contains("http_server_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        !text.contains(id) && !text.contains("/no/such/path"),
        "{text}"
    );
    // The classic text format unless OpenMetrics is asked for, and clean for promtool.
    assert_eq!(
        res.headers["content-type"],
        ic_telemetry::PROMETHEUS_CONTENT_TYPE
    );
    assert!(
        text.contains("# TYPE http_server_requests_total counter"),
        "{text}"
    );
    ic_testkit::promtool_check_metrics(&text).unwrap();
}

#[test]
fn a_malformed_variable_is_one_line_naming_it_and_exit_code_2() {
    for (name, value) in [
        ("SERVICES_API_PORT", "eighty"),
        ("DATABASE_MAX_CONNECTIONS", "-1"),
        ("ENVIRONMENT", "nonsense"),
    ] {
        ic_testkit::assert_config_error(env!("CARGO_BIN_EXE_services-api"), name, value);
    }
}

/// `services-api healthcheck` (the image's HEALTHCHECK) probes the service's own `/health`.
#[sqlx::test(migrations = false)]
async fn the_healthcheck_command_probes_the_services_own_health(pool: PgPool) {
    common::migrate(&pool).await;
    let nats = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(common::nats_url())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = services_api::development_app(pool, nats);
    tokio::spawn(async move { axum::serve(listener, router).await });
    let binary = env!("CARGO_BIN_EXE_services-api");
    tokio::task::spawn_blocking(move || {
        ic_testkit::assert_healthcheck(binary, "SERVICES_API_PORT", port, &[])
    })
    .await
    .unwrap();
}
