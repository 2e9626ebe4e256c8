//! Events and audit records through the outbox: exactly one of each per committed write,
//! none for a rolled-back one, none lost while NATS is down; audit history endpoints.

mod common;

use std::time::Duration;

use common::{ADMIN, TestApp, audit_records, events_with_correlation};
use http::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

async fn write(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (Uuid, common::TestResponse) {
    let correlation = Uuid::new_v4();
    let c = correlation.to_string();
    let res = app
        .request(
            method,
            path,
            body,
            &[
                ("x-user-id", ADMIN),
                ("x-correlation-id", &c),
                (
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
            ],
        )
        .await;
    assert_eq!(
        res.header("x-correlation-id"),
        Some(c.as_str()),
        "the correlation id is echoed"
    );
    (correlation, res)
}

#[sqlx::test(migrations = false)]
async fn each_committed_write_yields_one_event_and_one_audit_record(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (c1, created) = write(
        &app,
        Method::POST,
        "/admin/api/v1/services",
        Some(json!({"title": "Evented", "description": "d", "delivery_mode": "mobile_service"})),
    )
    .await;
    assert_eq!(created.status, 201);
    let id = created.body["service_id"].as_str().unwrap().to_owned();
    let (c2, published) = write(
        &app,
        Method::POST,
        &format!("/admin/api/v1/services/{id}/publish"),
        None,
    )
    .await;
    assert_eq!(published.status, 200);
    app.wait_relayed().await;

    let events = events_with_correlation(&app.jetstream, c1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let (subject, event) = &events[0];
    assert_eq!(subject, "ic.services.service.created");
    assert_eq!(
        event["type"],
        "org.internationalcenter.services.service.created"
    );
    assert_eq!(event["source"], "/services-api");
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["subject"], id.as_str());
    assert_eq!(event["data"]["title"], "Evented");
    assert!(
        event["traceparent"]
            .as_str()
            .unwrap()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "the trace continues into the event"
    );
    let events = events_with_correlation(&app.jetstream, c2).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "ic.services.service.published");
    assert_eq!(events[0].1["data"]["publishing_status"], "published");

    let records = audit_records(&app.jetstream, "service", &id).await;
    assert_eq!(records.len(), 2, "{records:?}");
    let insert = &records[0];
    assert_eq!(insert["operation_type"], "INSERT");
    assert_eq!(insert["entity_type"], "service");
    assert_eq!(insert["entity_id"], id.as_str());
    assert_eq!(insert["user_id"], ADMIN);
    assert_eq!(insert["correlation_id"], c1.to_string());
    assert_eq!(insert["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(insert["environment"], "development");
    assert_eq!(insert["data_snapshot"]["before"], Value::Null);
    assert_eq!(insert["data_snapshot"]["after"]["title"], "Evented");
    let update = &records[1];
    assert_eq!(update["operation_type"], "UPDATE");
    assert_eq!(
        update["data_snapshot"]["before"]["publishing_status"],
        "draft"
    );
    assert_eq!(
        update["data_snapshot"]["after"]["publishing_status"],
        "published"
    );
    assert_eq!(update["correlation_id"], c2.to_string());
}

#[sqlx::test(migrations = false)]
async fn a_rolled_back_write_yields_neither_event_nor_audit_record(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.create_service(json!({"title": "Taken"})).await;
    // Same slug: the insert fails inside the transaction after nothing else was written.
    let (correlation, res) = write(
        &app,
        Method::POST,
        "/admin/api/v1/services",
        Some(json!({"title": "Taken", "description": "d", "delivery_mode": "mobile_service"})),
    )
    .await;
    assert_eq!(res.status, 409);
    // A transaction that did write its event and audit record to the outbox, then rolled
    // back: nothing of it may ever be published.
    let rolled_back = Uuid::new_v4();
    let never = Uuid::new_v4();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-correlation-id", rolled_back.to_string().parse().unwrap());
    headers.insert("x-user-id", ADMIN.parse().unwrap());
    let ctx = ic_http::RequestContext::from_headers("services-api", &headers);
    let mut tx = app.pool.begin().await.unwrap();
    let state = services_api::AppState::new(app.pool.clone(), app.nats.clone(), "development");
    state
        .record(
            &mut tx,
            &ctx,
            ic_audit::Change {
                entity_type: "service",
                entity_id: never,
                action: "created",
                operation: ic_audit::OperationType::Insert,
                before: None,
                after: Some(json!({"title": "never"})),
            },
        )
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    // A later write in the same test is relayed, so the relay has had its chance.
    let (after, _) = write(
        &app,
        Method::POST,
        "/admin/api/v1/services/categories",
        Some(json!({"name": "Later"})),
    )
    .await;
    app.wait_relayed().await;
    assert_eq!(
        events_with_correlation(&app.jetstream, after).await.len(),
        1
    );
    assert!(
        events_with_correlation(&app.jetstream, correlation)
            .await
            .is_empty()
    );
    assert!(
        events_with_correlation(&app.jetstream, rolled_back)
            .await
            .is_empty()
    );
    assert!(
        audit_records(&app.jetstream, "service", &never.to_string())
            .await
            .is_empty(),
        "no audit record either"
    );
}

#[sqlx::test(migrations = false)]
async fn with_nats_stopped_writes_succeed_and_their_events_arrive_once_it_is_back(pool: PgPool) {
    let mut nats = ic_testkit::NatsServer::start();
    let app = TestApp::with(pool, &nats.url(), None).await;
    let s = app.create_service(json!({"title": "Before outage"})).await;
    app.wait_relayed().await;

    nats.stop();
    let (correlation, res) = write(
        &app,
        Method::PUT,
        &format!(
            "/admin/api/v1/services/{}",
            s["service_id"].as_str().unwrap()
        ),
        Some(json!({"title": "During outage"})),
    )
    .await;
    assert_eq!(res.status, 200, "writes do not need NATS");
    assert!(
        app.outbox_backlog().await >= 2,
        "the event and audit record wait in the outbox"
    );
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["status"], "degraded");

    nats.restart();
    app.wait_relayed().await;
    let events = ic_testkit::eventually(
        Duration::from_secs(30),
        "the event after the outage",
        || async {
            let events = events_with_correlation(&app.jetstream, correlation).await;
            (!events.is_empty()).then_some(events)
        },
    )
    .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1["data"]["title"], "During outage");
    let records = audit_records(&app.jetstream, "service", s["service_id"].as_str().unwrap()).await;
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[1]["data_snapshot"]["after"]["title"],
        "During outage"
    );
}

#[sqlx::test(migrations = false)]
async fn audit_history_endpoints_answer_from_jetstream_newest_first(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.create_service(json!({"title": "Audited"})).await;
    let id = s["service_id"].as_str().unwrap();
    for title in ["Second", "Third"] {
        app.admin(
            Method::PUT,
            &format!("/admin/api/v1/services/{id}"),
            Some(json!({"title": title})),
        )
        .await;
    }
    app.wait_relayed().await;
    let res = app.get(&format!("/admin/api/v1/services/{id}/audit")).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let records = res.body["audit_records"].as_array().unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["data_snapshot"]["after"]["title"], "Third");
    assert_eq!(records[2]["operation_type"], "INSERT");
    assert_eq!(res.body["pagination"]["total_items"], 3);
    assert_eq!(res.body["source"], "jetstream");

    let res = app
        .get(&format!("/admin/api/v1/services/{id}/audit?page=2&limit=2"))
        .await;
    assert_eq!(res.body["audit_records"].as_array().unwrap().len(), 1);
    assert_eq!(res.body["audit_records"][0]["operation_type"], "INSERT");

    let res = app
        .get(&format!(
            "/admin/api/v1/services/{id}/audit?end=2000-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(res.body["audit_records"], json!([]));
    let res = app
        .get(&format!(
            "/admin/api/v1/services/{id}/audit?start=2000-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(res.body["audit_records"].as_array().unwrap().len(), 3);
    let res = app
        .get(&format!(
            "/admin/api/v1/services/{id}/audit?start=2999-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(
        res.error(400, "VALIDATION_ERROR").as_deref(),
        Some("start"),
        "a start in the future"
    );
    let res = app
        .get(&format!(
            "/admin/api/v1/services/{id}/audit?start=yesterday"
        ))
        .await;
    assert_eq!(res.error(400, "VALIDATION_ERROR").as_deref(), Some("start"));
    let res = app
        .get(&format!(
            "/admin/api/v1/services/{id}/audit?start=2030-01-01T00:00:00Z&end=2020-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(res.error(400, "VALIDATION_ERROR").as_deref(), Some("end"));
    app.get(&format!("/admin/api/v1/services/{}/audit", Uuid::new_v4()))
        .await
        .error(404, "NOT_FOUND");

    let cat = app.create_category("Audited category").await;
    let cat_id = cat["category_id"].as_str().unwrap();
    app.admin(
        Method::DELETE,
        &format!("/admin/api/v1/services/categories/{cat_id}"),
        None,
    )
    .await;
    app.wait_relayed().await;
    let res = app
        .get(&format!("/admin/api/v1/services/categories/{cat_id}/audit"))
        .await;
    let records = res.body["audit_records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "deleted entities keep their history");
    assert_eq!(records[0]["operation_type"], "DELETE");
}

#[sqlx::test(migrations = false)]
async fn with_loki_configured_audit_records_are_shipped_there_and_history_is_read_from_it(
    pool: PgPool,
) {
    // A private nats-server: the shipper's durable consumer is shared by design.
    let nats = ic_testkit::NatsServer::start();
    let loki = ic_testkit::fake_loki::FakeLoki::start().await;
    let app = TestApp::with_loki(pool, &nats.url(), &loki.url()).await;
    let s = app.create_service(json!({"title": "Shipped"})).await;
    let id = s["service_id"].as_str().unwrap();
    app.admin(
        Method::POST,
        &format!("/admin/api/v1/services/{id}/publish"),
        None,
    )
    .await;
    ic_testkit::eventually(Duration::from_secs(30), "two entries in Loki", || async {
        (loki
            .entries()
            .iter()
            .filter(|e| e.line.contains(id))
            .count()
            == 2)
            .then_some(())
    })
    .await;
    let res = app.get(&format!("/admin/api/v1/services/{id}/audit")).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["source"], "loki");
    let records = res.body["audit_records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[0]["data_snapshot"]["after"]["publishing_status"],
        "published"
    );
    assert_eq!(records[1]["operation_type"], "INSERT");
    let res = app
        .get(&format!(
            "/admin/api/v1/services/{id}/audit?start=2020-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(
        res.error(400, "VALIDATION_ERROR").as_deref(),
        Some("start"),
        "Loki serves 30 days at a time"
    );
}

#[sqlx::test(migrations = false)]
async fn every_kind_of_write_publishes_its_own_subject_and_audit_record(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut steps: Vec<(Uuid, &[&str])> = Vec::new();
    let mut step = async |method: Method,
                          path: String,
                          body: Option<Value>,
                          subjects: &'static [&'static str]| {
        let (correlation, res) = write(&app, method, &path, body).await;
        assert!(
            res.status.is_success(),
            "{path}: {} {:?}",
            res.status,
            res.body
        );
        steps.push((correlation, subjects));
        res.body
    };
    let category = step(
        Method::POST,
        "/admin/api/v1/services/categories".into(),
        Some(json!({"name": "Cardio"})),
        &["ic.services.category.created"],
    )
    .await;
    let category_id = category["category_id"].as_str().unwrap().to_owned();
    step(
        Method::PUT,
        format!("/admin/api/v1/services/categories/{category_id}"),
        Some(json!({"name": "Cardiology"})),
        &["ic.services.category.updated"],
    )
    .await;
    let service = step(
        Method::POST,
        "/admin/api/v1/services".into(),
        Some(json!({"title": "Echo", "description": "d", "delivery_mode": "mobile_service", "category_id": category_id})),
        &["ic.services.service.created"],
    )
    .await;
    let service_id = service["service_id"].as_str().unwrap().to_owned();
    step(
        Method::PUT,
        format!("/admin/api/v1/services/{service_id}"),
        Some(json!({"title": "Echocardiography"})),
        &["ic.services.service.updated"],
    )
    .await;
    step(
        Method::POST,
        format!("/admin/api/v1/services/{service_id}/publish"),
        None,
        &["ic.services.service.published"],
    )
    .await;
    step(
        Method::POST,
        format!("/admin/api/v1/services/{service_id}/archive"),
        None,
        &["ic.services.service.archived"],
    )
    .await;
    let featured = step(
        Method::POST,
        "/admin/api/v1/services/featured-categories".into(),
        Some(json!({"category_id": category_id, "feature_position": 1})),
        &["ic.services.featured_category.set"],
    )
    .await;
    step(
        Method::DELETE,
        "/admin/api/v1/services/featured-categories/1".into(),
        None,
        &["ic.services.featured_category.removed"],
    )
    .await;
    // Deleting a category moves its services to the default one: each move is an event.
    step(
        Method::DELETE,
        format!("/admin/api/v1/services/categories/{category_id}"),
        None,
        &[
            "ic.services.category.deleted",
            "ic.services.service.updated",
        ],
    )
    .await;
    step(
        Method::DELETE,
        format!("/admin/api/v1/services/{service_id}"),
        None,
        &["ic.services.service.deleted"],
    )
    .await;
    app.wait_relayed().await;
    for (correlation, expected) in &steps {
        let events = events_with_correlation(&app.jetstream, *correlation).await;
        let mut subjects: Vec<&str> = events.iter().map(|(s, _)| s.as_str()).collect();
        subjects.sort_unstable();
        assert_eq!(subjects, *expected, "the events of one write");
    }
    // The featured category's audit trail: set, then removed.
    let featured_id = featured["featured_category_id"]
        .as_str()
        .or_else(|| featured["id"].as_str())
        .unwrap_or_else(|| panic!("the featured category's id: {featured}"))
        .to_owned();
    let records = audit_records(&app.jetstream, "featured_category", &featured_id).await;
    let operations: Vec<&str> = records
        .iter()
        .map(|r| r["operation_type"].as_str().unwrap())
        .collect();
    assert_eq!(operations, ["INSERT", "DELETE"], "{records:?}");
    assert_eq!(records[0]["data_snapshot"]["after"]["feature_position"], 1);
    assert_eq!(records[1]["data_snapshot"]["after"], Value::Null);
}
