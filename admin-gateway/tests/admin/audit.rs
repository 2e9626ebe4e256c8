//! Audit: every request that reached authentication is exactly one record on `IC_AUDIT`
//! (`audit.admin-gateway.request.<correlation id>`), secrets redacted, uploads reduced
//! to their file's name, size and type; records queued while NATS is down arrive when
//! it returns.

use std::time::Duration;

use http::Method;
use serde_json::{Value, json};

use crate::common::{Recorder, Stack, audit_records, nats_url};

async fn one_record(correlation_id: &str) -> Value {
    let mut records = audit_records(&nats_url(), correlation_id, 1, Duration::from_secs(10)).await;
    assert_eq!(
        records.len(),
        1,
        "exactly one record for {correlation_id}: {records:?}"
    );
    records.remove(0)
}

#[tokio::test]
async fn a_write_a_401_a_403_and_a_429_each_give_exactly_one_redacted_record() {
    let upstream = Recorder::start().await;
    let stack = Stack::start(&upstream.url(), &[("ADMIN_RATE_LIMIT_PER_MINUTE", "2")]).await;
    let ada = stack.token("ada", &["admin", "services-manager"]);

    let (res, write) = stack
        .call(
            Method::POST,
            "/admin/api/v1/services?api_key=k1&page=1",
            Some(&ada),
            Some(json!({
                "title": "Cardiology",
                "password": "hunter2",
                "settings": {"client_secret": "s3", "note": "kept"},
            })),
        )
        .await;
    assert_eq!(res.status(), 201);
    let forwarded = &upstream.seen()[0];
    assert_eq!(forwarded.method, "POST");
    let sent: Value = serde_json::from_slice(&forwarded.body).unwrap();
    assert_eq!(
        sent["password"], "hunter2",
        "the backend gets the body untouched"
    );

    let record = one_record(&write).await;
    assert_eq!(record["service"], "admin-gateway");
    assert_eq!(record["entity_type"], "request");
    assert_eq!(record["user_id"], "ada");
    assert_eq!(record["roles"], json!(["admin", "services-manager"]));
    assert_eq!(record["method"], "POST");
    assert_eq!(record["route"], "/admin/api/v1/services");
    assert_eq!(record["path"], "/admin/api/v1/services");
    assert_eq!(record["query"], "api_key=[REDACTED]&page=1");
    assert_eq!(record["status"], 201);
    assert_eq!(record["client_ip"], "127.0.0.1");
    assert_eq!(record["correlation_id"], write.as_str());
    assert_eq!(record["trace_id"].as_str().unwrap().len(), 32);
    assert!(record["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(record["reason"], "allowed by role");
    assert_eq!(
        record["body"],
        json!({"title": "Cardiology", "password": "[REDACTED]", "settings": {"client_secret": "[REDACTED]", "note": "kept"}})
    );

    let (res, unauthenticated) = stack
        .call(
            Method::DELETE,
            "/admin/api/v1/services/x",
            Some("not.a.token"),
            None,
        )
        .await;
    assert_eq!(res.status(), 401);
    let record = one_record(&unauthenticated).await;
    assert_eq!(record["status"], 401);
    assert_eq!(record["user_id"], "unauthenticated");
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .starts_with("invalid token"),
        "{record}"
    );

    let viewer = stack.token("vic", &["audit-viewer"]);
    let (res, forbidden) = stack
        .call(Method::GET, "/admin/api/v1/content", Some(&viewer), None)
        .await;
    assert_eq!(res.status(), 403);
    let record = one_record(&forbidden).await;
    assert_eq!(
        (record["status"].as_u64(), record["user_id"].as_str()),
        (Some(403), Some("vic"))
    );
    assert_eq!(record["route"], "/admin/api/v1/content");
    assert_eq!(
        record["reason"],
        "content routes need admin or content-manager"
    );

    let (res, _) = stack
        .call(Method::GET, "/admin/api/v1/services", Some(&ada), None)
        .await;
    assert_eq!(res.status(), 200);
    let (res, limited) = stack
        .call(Method::GET, "/admin/api/v1/services", Some(&ada), None)
        .await;
    assert_eq!(res.status(), 429);
    let record = one_record(&limited).await;
    assert_eq!(record["status"], 429);

    // Preflights and health checks never reach authentication: no record.
    let health = "0d9b6f0e-3c1e-4d55-9f61-4a9a3c1e0b77";
    let res = stack
        .http
        .get(format!("{}/health", stack.url))
        .header("x-correlation-id", health)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let preflight = "5a1c2e3f-4b5d-4e6f-8a7b-9c0d1e2f3a4b";
    let res = stack
        .http
        .request(
            Method::OPTIONS,
            format!("{}/admin/api/v1/services", stack.url),
        )
        .header("x-correlation-id", preflight)
        .header("origin", "http://localhost:3001")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    for id in [health, preflight] {
        let none = audit_records(&nats_url(), id, 1, Duration::from_millis(500)).await;
        assert!(none.is_empty(), "{id}: {none:?}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn an_upload_is_recorded_as_its_file_name_size_and_type() {
    let upstream = Recorder::start().await;
    let stack = Stack::start(&upstream.url(), &[]).await;
    let token = stack.token("cm", &["content-manager"]);
    let mut form = b"--XyZ\r\nContent-Disposition: form-data; name=\"alt_text\"\r\n\r\nA chart\r\n\
        --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"report.pdf\"\r\n\
        Content-Type: application/pdf\r\n\r\n"
        .to_vec();
    form.extend(vec![b'%'; 1536 * 1024]);
    form.extend(b"\r\n--XyZ--\r\n");
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let res = stack
        .http
        .post(format!("{}/admin/content/upload", stack.url))
        .bearer_auth(&token)
        .header("x-correlation-id", &correlation_id)
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        201,
        "over the 1 MiB of other routes: the upload route has its own limit"
    );
    assert!(upstream.seen()[0].body.len() > 1536 * 1024);
    let record = one_record(&correlation_id).await;
    assert_eq!(record["route"], "/admin/api/v1/content/upload");
    assert_eq!(record["body"]["file_name"], "report.pdf");
    assert_eq!(record["body"]["type"], "application/pdf");
    assert!(record["body"]["size"].as_u64().unwrap() > 1536 * 1024);
    stack.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limits_are_413_before_any_upstream_call() {
    let upstream = Recorder::start().await;
    let stack = Stack::start(&upstream.url(), &[("CONTENT_MAX_UPLOAD_BYTES", "2000000")]).await;
    let token = stack.token("ada", &["admin"]);
    let big = json!({"title": "x".repeat(1024 * 1024 + 1)});
    let (res, _) = stack
        .call(
            Method::POST,
            "/admin/api/v1/services",
            Some(&token),
            Some(big),
        )
        .await;
    assert_eq!(res.status(), 413);
    let res = stack
        .http
        .post(format!("{}/admin/api/v1/content/upload", stack.url))
        .bearer_auth(&token)
        .header("content-type", "multipart/form-data; boundary=x")
        .body(vec![b'a'; 2_100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert!(upstream.seen().is_empty());
    stack.stop().await;
}

#[tokio::test]
async fn records_made_while_nats_is_down_arrive_when_it_returns() {
    let mut nats = ic_testkit::NatsServer::start();
    let upstream = Recorder::start().await;
    let stack = Stack::start(&upstream.url(), &[("NATS_URL", &nats.url())]).await;
    let token = stack.token("ada", &["admin"]);
    // The stream exists once the first record went through.
    let (_, first) = stack
        .call(Method::GET, "/admin/api/v1/services", Some(&token), None)
        .await;
    assert_eq!(
        audit_records(&nats.url(), &first, 1, Duration::from_secs(10))
            .await
            .len(),
        1
    );

    nats.stop();
    let mut during = Vec::new();
    for _ in 0..5 {
        let (res, id) = stack
            .call(Method::GET, "/admin/api/v1/services", Some(&token), None)
            .await;
        assert_eq!(res.status(), 200, "the response never waits for the audit");
        during.push(id);
    }
    let (status, ready) = stack.get_json("/health/ready").await;
    assert_eq!(
        (status, &ready["status"]),
        (200, &json!("degraded")),
        "{ready}"
    );
    assert_eq!(ready["checks"]["audit"]["status"], "down");

    nats.restart();
    for id in &during {
        let records = audit_records(&nats.url(), id, 1, Duration::from_secs(30)).await;
        assert_eq!(records.len(), 1, "{id}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn with_loki_configured_records_reach_it_as_admin_audit_even_after_it_was_down() {
    // A private NATS: the harness's is shared with other tests' shippers.
    let nats = ic_testkit::NatsServer::start();
    let loki = ic_testkit::fake_loki::FakeLoki::start().await;
    loki.fail_with(Some(503));
    let upstream = Recorder::start().await;
    let stack = Stack::start(
        &upstream.url(),
        &[("NATS_URL", &nats.url()), ("LOKI_URL", &loki.url())],
    )
    .await;
    let admin = stack.token("ada", &["admin"]);
    let viewer = stack.token("vic", &["audit-viewer"]);
    let (created, write) = stack
        .call(
            Method::POST,
            "/admin/api/v1/services",
            Some(&admin),
            Some(json!({"title": "x", "token": "t"})),
        )
        .await;
    assert_eq!(created.status(), 201);
    let (refused, unauthenticated) = stack
        .call(Method::GET, "/admin/api/v1/services", None, None)
        .await;
    assert_eq!(refused.status(), 401);
    let (denied, forbidden) = stack
        .call(Method::GET, "/admin/api/v1/services", Some(&viewer), None)
        .await;
    assert_eq!(denied.status(), 403);

    ic_testkit::eventually(Duration::from_secs(20), "a refused push", || async {
        loki.pushes().iter().any(|p| p.status == 503).then_some(())
    })
    .await;
    loki.fail_with(None);
    let ids = [write, unauthenticated, forbidden];
    let entries = ic_testkit::eventually(
        Duration::from_secs(60),
        "the three records in Loki",
        || async {
            let entries: Vec<_> = loki
                .entries()
                .into_iter()
                .filter(|e| ids.iter().any(|id| e.line.contains(id.as_str())))
                .collect();
            (entries.len() >= 3).then_some(entries)
        },
    )
    .await;
    assert_eq!(entries.len(), 3, "each once");
    for entry in &entries {
        assert_eq!(entry.labels["job"], "admin-audit");
        assert_eq!(entry.labels["entity_type"], "request");
        assert_eq!(entry.labels["service"], "admin-gateway");
        let line: Value = serde_json::from_str(&entry.line).unwrap();
        assert_eq!(
            entry.labels["operation_type"],
            line["method"].as_str().unwrap()
        );
        if line["status"] == 201 {
            assert_eq!(line["body"]["token"], "[REDACTED]");
        }
    }
    stack.stop().await;
}
