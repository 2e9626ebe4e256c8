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
