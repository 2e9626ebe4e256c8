//! Every change of a file is a CloudEvent on `IC_EVENTS` and an audit record on
//! `IC_AUDIT`, through the outbox; processing's outcome carries the upload's
//! correlation id; the processing job is a work subject, not an event.

mod common;

use std::time::Duration;

use common::{Store, TestApp, pdf};
use http::Method;
use ic_testkit::nats::stream_messages;
use serde_json::{Value, json};
use sqlx::PgPool;

#[sqlx::test(migrations = false)]
async fn each_change_of_a_file_is_one_event_and_one_audit_record(pool: PgPool) {
    let app = TestApp::new(pool, Store::File).await;
    let res = app
        .upload("e.pdf", None, &pdf(2000, 60), &[("access_level", "public")])
        .await;
    assert_eq!(res.status, 202, "{}", res.body);
    let id = res.body["content_id"].as_str().unwrap().to_owned();
    let correlation = res.body["upload_correlation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_status(&id, "available").await;
    let res = app
        .admin(
            Method::PUT,
            &format!("/admin/api/v1/content/{id}"),
            Some(json!({"description": "Described"})),
        )
        .await;
    assert_eq!(res.status, 200);
    let res = app
        .admin(Method::DELETE, &format!("/admin/api/v1/content/{id}"), None)
        .await;
    assert_eq!(res.status, 204);

    let events: Vec<Value> =
        ic_testkit::eventually(Duration::from_secs(20), "four events", || async {
            let events: Vec<Value> = stream_messages(&app.js, "IC_EVENTS", "ic.content.content.>")
                .await
                .into_iter()
                .map(|(_, _, v)| v)
                .filter(|v| v["subject"] == id.as_str())
                .collect();
            (events.len() == 4).then_some(events)
        })
        .await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "org.internationalcenter.content.content.uploaded",
            "org.internationalcenter.content.content.available",
            "org.internationalcenter.content.content.updated",
            "org.internationalcenter.content.content.deleted",
        ]
    );
    assert_eq!(events[0]["source"], "/content-api");
    assert_eq!(events[0]["data"]["upload_status"], "processing");
    assert_eq!(events[1]["data"]["upload_status"], "available");
    // The outcome of processing belongs to the upload's request.
    assert_eq!(events[0]["correlationid"], correlation.as_str());
    assert_eq!(events[1]["correlationid"], correlation.as_str());

    let audit: Vec<Value> =
        ic_testkit::eventually(Duration::from_secs(20), "four audit records", || async {
            let records: Vec<Value> = stream_messages(
                &app.js,
                "IC_AUDIT",
                &format!("audit.content-api.content.{id}"),
            )
            .await
            .into_iter()
            .map(|(_, _, v)| v)
            .collect();
            (records.len() == 4).then_some(records)
        })
        .await;
    let operations: Vec<&str> = audit
        .iter()
        .map(|r| r["operation_type"].as_str().unwrap())
        .collect();
    assert_eq!(operations, ["INSERT", "UPDATE", "UPDATE", "DELETE"]);
    assert_eq!(audit[0]["user_id"], common::ADMIN);
    assert_eq!(audit[1]["user_id"], "system:content-processor");
    assert_eq!(
        audit[2]["data_snapshot"]["after"]["description"],
        "Described"
    );
    assert!(audit[3]["data_snapshot"]["after"].is_null());

    // The job went through IC_EVENTS as a work subject.
    let jobs = stream_messages(&app.js, "IC_EVENTS", "ic.content.process").await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].2["content_id"], id.as_str());
    assert_eq!(jobs[0].2["reason"], "upload");
}
