//! The OpenAPI document describes exactly the routes and methods the gateway lets
//! through, with the bearer scheme.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::common::{Recorder, Stack};

#[tokio::test]
async fn the_openapi_document_is_the_route_allowlist_with_a_bearer_scheme() {
    let upstream = Recorder::start().await;
    let stack = Stack::start(&upstream.url(), &[]).await;
    let res = stack
        .http
        .get(format!("{}/openapi.json", stack.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));

    // Documented: path → methods (HEAD is implied by GET, as the document says).
    let mut documented: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let mut methods: Vec<String> = item.as_object().unwrap().keys().cloned().collect();
        methods.sort();
        documented.insert(path.clone(), methods);
        for (method, op) in item.as_object().unwrap() {
            assert!(op["operationId"].is_string(), "{method} {path}");
            let open = !path.starts_with("/admin/");
            assert_eq!(
                op["security"] == serde_json::json!([]),
                open,
                "{method} {path}: only the open paths drop the bearer"
            );
        }
    }
    let mut served: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let table = admin_gateway::routes::table(1);
    for route in table.routes() {
        let mut methods: Vec<String> = route
            .methods()
            .unwrap()
            .iter()
            .filter(|m| **m != http::Method::HEAD)
            .map(|m| m.as_str().to_lowercase())
            .collect();
        methods.sort();
        served.insert(route.template().to_owned(), methods);
    }
    for open in ic_http::app_token::OPEN_PATHS
        .iter()
        .chain([&admin_gateway::OPENAPI_PATH])
    {
        served.insert((*open).to_owned(), vec!["get".to_owned()]);
    }
    assert_eq!(documented, served);
    stack.stop().await;
}

/// Whatever a signed-in administrator sends, nothing behind admin-gateway answers a
/// server error and every status is one the document lists: schemathesis (in the
/// harness's venv) generates requests for every operation of `/openapi.json`, with an
/// admin's token, against the real services-api and content-api. Bounded: a fixed seed,
/// 10 cases an operation.
#[sqlx::test(migrations = false)]
async fn schemathesis_finds_no_server_error_behind_admin_gateway(pool: sqlx::PgPool) {
    #[allow(clippy::disallowed_methods)]
    let python = std::env::var("IC_TEST_PYTHON").expect("IC_TEST_PYTHON from cargo xtask test");
    let mut conn = pool.acquire().await.unwrap();
    ic_migrations::up_all(&mut conn).await.expect("migrations");
    drop(conn);
    ic_telemetry::install_crypto_provider();
    let nats = ic_testkit::NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let services = services_api::development_app(pool.clone(), client);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let services_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, services).await });
    let blobs = tempfile::tempdir().unwrap();
    let (content_url, content_stop) = content_api::spawn_development(
        &ic_testkit::database_url(pool.connect_options().get_database().unwrap()),
        &nats.url(),
        blobs.path(),
        None,
    )
    .await;
    let stack = Stack::start(
        &services_url,
        &[
            ("CONTENT_API_URL", &content_url),
            ("NATS_URL", &nats.url()),
            ("ADMIN_RATE_LIMIT_PER_MINUTE", "1000000"),
        ],
    )
    .await;
    let token = stack.token("fuzzer", &["admin"]);
    ic_testkit::schemathesis::assert_conforms(
        &python,
        &format!("{}/openapi.json", stack.url),
        "not_a_server_error,status_code_conformance",
        10,
        20,
        &[format!("Authorization: Bearer {token}")],
    )
    .await;
    content_stop.cancel();
    stack.stop().await;
}
