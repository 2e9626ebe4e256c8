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

/// A migrated development services-api served over TCP on a free loopback port.
async fn serve_development(pool: PgPool) -> std::net::SocketAddr {
    common::migrate(&pool).await;
    let nats = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(common::nats_url())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = services_api::development_app(pool, nats);
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// `services-api healthcheck` (the image's HEALTHCHECK) probes the service's own `/health`.
#[sqlx::test(migrations = false)]
async fn the_healthcheck_command_probes_the_services_own_health(pool: PgPool) {
    let port = serve_development(pool).await.port();
    let binary = env!("CARGO_BIN_EXE_services-api");
    tokio::task::spawn_blocking(move || {
        ic_testkit::assert_healthcheck(binary, "SERVICES_API_PORT", port, &[])
    })
    .await
    .unwrap();
}

/// The running binary (environment `vars` only, logs kept) and its port.
struct Process {
    child: std::process::Child,
    port: u16,
}

impl Process {
    fn spawn(vars: &[(&str, String)]) -> Self {
        let port = ic_testkit::free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_services-api"))
            .env_clear()
            .env("HOST", "127.0.0.1")
            .env("SERVICES_API_PORT", port.to_string())
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("services-api runs");
        Self { child, port }
    }

    async fn get(&self, path: &str, app_token: Option<&str>) -> Option<u16> {
        ic_telemetry::install_crypto_provider();
        let mut request =
            reqwest::Client::new().get(format!("http://127.0.0.1:{}{path}", self.port));
        if let Some(token) = app_token {
            request = request.header("dapr-api-token", token);
        }
        Some(request.send().await.ok()?.status().as_u16())
    }

    /// SIGTERM, then everything it wrote.
    fn stop(self) -> String {
        let _ = ic_testkit::process::signal(self.child.id(), ic_testkit::process::Signal::TERM);
        let out = self.child.wait_with_output().expect("services-api ends");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

/// With `DAPR_SECRET_STORE` set, services-api reads its database URL and app token from
/// the sidecar's secrets API (gRPC `GetBulkSecret`, presenting `DAPR_API_TOKEN`): in
/// production, with neither in its environment, it starts, reaches the database and
/// enforces the token from the store, and no secret value reaches its logs, even at
/// debug level.
#[sqlx::test(migrations = false)]
async fn secrets_come_from_the_dapr_sidecar_and_never_reach_the_logs(pool: PgPool) {
    use ic_testkit::dapr::SecretSidecar;
    common::migrate(&pool).await;
    let database_url = ic_testkit::database_url(pool.connect_options().get_database().unwrap());
    let app_token = format!("app-token-{}", uuid::Uuid::new_v4().simple());
    let sidecar = SecretSidecar::start(
        "secretstore",
        // One name as the variable (local.env), one in kebab case (Azure Key Vault).
        &[
            ("DATABASE_URL", &database_url),
            ("app-api-token", &app_token),
        ],
        Some("sidecar-token"),
    )
    .await;
    let app = Process::spawn(&[
        ("ENVIRONMENT", "production".into()),
        ("NATS_URL", common::nats_url()),
        ("DAPR_SECRET_STORE", "secretstore".into()),
        ("DAPR_GRPC_PORT", sidecar.port.to_string()),
        ("DAPR_API_TOKEN", "sidecar-token".into()),
        ("RUST_LOG", "debug".into()),
    ]);
    ic_testkit::eventually(
        Duration::from_secs(20),
        "ready with the store's database URL",
        || async { (app.get("/health/ready", None).await == Some(200)).then_some(()) },
    )
    .await;
    assert_eq!(
        app.get("/api/v1/services", None).await,
        Some(401),
        "the store's token is required"
    );
    assert_eq!(app.get("/api/v1/services", Some("wrong")).await, Some(401));
    assert_eq!(
        app.get("/api/v1/services", Some(&app_token)).await,
        Some(200)
    );
    assert_eq!(sidecar.calls(), 1, "one call at start");
    let logs = app.stop();
    assert!(
        logs.contains("secrets read from the Dapr secret store"),
        "{logs}"
    );
    assert!(
        logs.contains("DATABASE_URL") && logs.contains("APP_API_TOKEN"),
        "{logs}"
    );
    assert!(!logs.contains(&app_token), "the app token was logged");
    assert!(!logs.contains(&database_url), "the database URL was logged");
}

/// The sidecar path's failures: a sidecar that comes up late is waited for; a secret the
/// store lacks keeps its environment value; a wrong store name or a refused sidecar token
/// ends the start at once, and a sidecar that never answers ends it after
/// `DAPR_SECRETS_TIMEOUT_SECONDS`, each with one line naming the store (exit code 1).
#[sqlx::test(migrations = false)]
async fn the_sidecar_is_waited_for_and_its_refusals_end_the_start(pool: PgPool) {
    use ic_testkit::dapr::SecretSidecar;
    common::migrate(&pool).await;
    let database_url = ic_testkit::database_url(pool.connect_options().get_database().unwrap());
    let late_port = ic_testkit::free_port();
    let app = Process::spawn(&[
        ("NATS_URL", common::nats_url()),
        ("APP_API_TOKEN", "from-the-environment".into()),
        ("DAPR_SECRET_STORE", "secretstore".into()),
        ("DAPR_GRPC_PORT", late_port.to_string()),
    ]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        app.get("/health", None).await,
        None,
        "not serving before its secrets"
    );
    let sidecar = SecretSidecar::start_on(
        late_port,
        "secretstore",
        &[("DATABASE_URL", &database_url)],
        None,
    )
    .await;
    ic_testkit::eventually(
        Duration::from_secs(20),
        "ready once the sidecar is up",
        || async { (app.get("/health/ready", None).await == Some(200)).then_some(()) },
    )
    .await;
    assert_eq!(
        app.get("/api/v1/services", Some("from-the-environment"))
            .await,
        Some(200),
        "a secret the store lacks keeps its environment value"
    );
    app.stop();

    // Off the test's runtime thread, which serves the stand-in sidecar.
    let run = async |vars: Vec<(&'static str, String)>| {
        tokio::task::spawn_blocking(move || {
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_services-api"))
                .env_clear()
                .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
                .output()
                .expect("services-api runs");
            (
                output.status.code(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        })
        .await
        .unwrap()
    };
    let port = sidecar.port.to_string();
    for (vars, expected) in [
        (
            vec![
                ("DAPR_SECRET_STORE", "elsewhere".into()),
                ("DAPR_GRPC_PORT", port.clone()),
            ],
            "failed finding secret store with key elsewhere",
        ),
        (
            vec![
                ("DAPR_SECRET_STORE", "secretstore".into()),
                ("DAPR_GRPC_PORT", ic_testkit::free_port().to_string()),
                ("DAPR_SECRETS_TIMEOUT_SECONDS", "1".into()),
            ],
            "did not answer within 1 s",
        ),
    ] {
        let (code, stderr) = run(vars).await;
        assert_eq!(code, Some(1), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(
            stderr.contains("secret store \""),
            "names the store: {stderr}"
        );
    }
    drop(sidecar);
    let guarded = SecretSidecar::start("secretstore", &[], Some("sidecar-token")).await;
    let (code, stderr) = run(vec![
        ("DAPR_SECRET_STORE", "secretstore".into()),
        ("DAPR_GRPC_PORT", guarded.port.to_string()),
        ("DAPR_API_TOKEN", "not-the-token".into()),
    ])
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("Unauthenticated"), "{stderr}");
    assert!(!stderr.contains("not-the-token"), "{stderr}");
}

/// A body the handler never reads (a publish takes none; a 404 comes before any JSON is
/// parsed) still leaves the connection open for the next request, even when the body
/// arrives after the head: a gateway that pooled the connection must not meet a closed
/// one (a 502 for its next POST, seen under load).
#[sqlx::test(migrations = false)]
async fn a_body_the_handler_ignores_leaves_the_connection_reusable(pool: PgPool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = serve_development(pool).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    async fn head(stream: &mut tokio::net::TcpStream) -> String {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "closed: {got:?}");
            got.push(byte[0]);
        }
        let text = String::from_utf8(got).unwrap();
        let length: usize = text
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.unwrap();
        text
    }
    let publish = format!(
        "POST /admin/api/v1/services/{}/publish HTTP/1.1\r\nHost: x\r\nX-User-ID: u\r\nX-User-Roles: admin\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n",
        uuid::Uuid::new_v4()
    );
    stream.write_all(publish.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.write_all(b"{}").await.unwrap();
    let answer = head(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = head(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
