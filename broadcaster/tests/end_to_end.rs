//! From an admin write in services-api to a verified webhook: the outbox relay publishes
//! the event, the broadcaster delivers it, and the official `standardwebhooks` Python
//! package (installed by `cargo xtask test`, path in `IC_TEST_PYTHON`) verifies it.

mod common;

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use common::{Receiver, SECRET, publish, start, subscription};
use ic_events::{Relay, RelayConfig};
use ic_testkit::NatsServer;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Runs `standardwebhooks.Webhook(secret).verify(body, headers)`; the payload's `id` on
/// success, `None` when verification fails.
fn verify_with_python(secret: &str, body: &[u8], headers: [(&str, &str); 3]) -> Option<String> {
    #[allow(clippy::disallowed_methods)]
    let python = std::env::var("IC_TEST_PYTHON").expect("IC_TEST_PYTHON from cargo xtask test");
    let headers: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
        .collect();
    let script = "import sys, json\n\
from standardwebhooks.webhooks import Webhook\n\
payload = Webhook(sys.argv[1]).verify(sys.stdin.buffer.read(), json.loads(sys.argv[2]))\n\
print(payload['id'])\n";
    let mut child = Command::new(python)
        .args([
            "-c",
            script,
            secret,
            &serde_json::Value::Object(headers).to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the venv's python runs");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let output = child.wait_with_output().unwrap();
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

const CORRELATION_ID: &str = "3f2c1e0a-5b6d-4e7f-8a9b-0c1d2e3f4a5b";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[sqlx::test(migrations = false)]
async fn an_admin_write_becomes_a_webhook_the_official_library_verifies(pool: sqlx::PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    ic_migrations::up_all(&mut conn).await.expect("migrations");
    drop(conn);
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let backend = services_api::development_app(pool.clone(), client.clone());
    let token = CancellationToken::new();
    let relay = Relay::new(
        pool.clone(),
        client.clone(),
        services_api::OUTBOX,
        RelayConfig {
            poll_interval: Duration::from_millis(100),
            ..RelayConfig::default()
        },
    );
    tokio::spawn(relay.run(token.clone()));
    let receiver = Receiver::ok().await;
    let broadcaster = start(
        &nats.url(),
        &subscription(
            "website",
            &receiver.url("/hook"),
            ", event_types: ['org.internationalcenter.services.service.created']",
        ),
        &[],
    )
    .await;

    let created = backend
        .oneshot(
            http::Request::post("/admin/api/v1/services")
                .header("content-type", "application/json")
                .header("x-user-id", "editor-1")
                .header("x-correlation-id", CORRELATION_ID)
                .header("traceparent", TRACEPARENT)
                .body(axum::body::Body::from(
                    r#"{"title":"Webhook check","description":"Sent to a webhook.","delivery_mode":"mobile_service"}"#,
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    let request = receiver.wait_for("/hook", 1).await.remove(0);
    let event = request.json();
    assert_eq!(
        event["type"],
        "org.internationalcenter.services.service.created"
    );
    assert_eq!(event["data"]["title"], "Webhook check");
    // The request's correlation id and trace reach the subscriber, in headers and event.
    assert_eq!(request.header("x-correlation-id"), CORRELATION_ID);
    assert_eq!(event["correlationid"], CORRELATION_ID);
    let traceparent = request.header("traceparent");
    assert_eq!(
        traceparent.split('-').nth(1),
        TRACEPARENT.split('-').nth(1),
        "the same trace: {traceparent}"
    );
    assert_ne!(traceparent, TRACEPARENT, "a span of its own in that trace");
    let headers = [
        ("webhook-id", request.header("webhook-id")),
        ("webhook-timestamp", request.header("webhook-timestamp")),
        ("webhook-signature", request.header("webhook-signature")),
    ];
    assert_eq!(
        verify_with_python(SECRET, &request.body, headers).as_deref(),
        event["id"].as_str(),
        "standardwebhooks verifies the signature"
    );
    let mut tampered = request.body.to_vec();
    tampered.extend_from_slice(b" ");
    assert_eq!(
        verify_with_python(SECRET, &tampered, headers),
        None,
        "and rejects a body changed on the way"
    );

    broadcaster.stop().await;
    token.cancel();
}

#[tokio::test]
async fn a_rotated_secret_pair_verifies_with_either_secret() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let new_secret = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3";
    let broadcaster = start(
        &nats.url(),
        &format!(
            "- {{id: rotating, url: '{}', secret: [{SECRET}, {new_secret}]}}\n",
            receiver.url("/hook")
        ),
        &[],
    )
    .await;
    let js = common::jetstream(&nats.url()).await;
    publish(&js, "published").await;
    let request = receiver.wait_for("/hook", 1).await.remove(0);
    let signatures: Vec<&str> = request.header("webhook-signature").split(' ').collect();
    assert_eq!(signatures.len(), 2, "one signature per secret");
    let headers = [
        ("webhook-id", request.header("webhook-id")),
        ("webhook-timestamp", request.header("webhook-timestamp")),
        ("webhook-signature", request.header("webhook-signature")),
    ];
    for secret in [SECRET, new_secret] {
        assert!(
            verify_with_python(secret, &request.body, headers).is_some(),
            "a subscriber holding either secret verifies it ({secret})"
        );
    }
    let other = "whsec_WllaWVpZWllaWVpZWllaWVpZWllaWVpZWllaWVo=";
    assert!(
        verify_with_python(other, &request.body, headers).is_none(),
        "and one holding neither does not"
    );
    broadcaster.stop().await;
}
