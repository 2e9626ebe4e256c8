//! From a staff member's token to a verified webhook: admin-gateway admits the write,
//! services-api commits it, the outbox relay publishes the event, the broadcaster
//! delivers it, and the official `standardwebhooks` Python package (installed by
//! `cargo xtask test`, path in `IC_TEST_PYTHON`) verifies it — one correlation id and one
//! trace throughout, the gateway's audit record included.

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

/// admin-gateway in front of services-api at `backend`, trusting a fresh issuer's keys;
/// its URL, the issuer's token for an admin, and the token stopping it.
async fn admin_gateway(backend: &str, nats_url: &str) -> (String, String, CancellationToken) {
    admin_gateway_to(
        &[("SERVICES_API_URL", backend)],
        "services-manager",
        nats_url,
    )
    .await
}

/// admin-gateway in front of the `upstreams` (`SERVICES_API_URL`, `CONTENT_API_URL`),
/// trusting a fresh issuer's keys; its URL, a token for `editor-1` with `role`, and the
/// token stopping it.
async fn admin_gateway_to(
    upstreams: &[(&str, &str)],
    role: &str,
    nats_url: &str,
) -> (String, String, CancellationToken) {
    use ic_testkit::jwt::{JwksServer, RsaIssuer, claims};
    ic_telemetry::install_crypto_provider();
    let issuer = RsaIssuer::generate("k1");
    let jwks = JwksServer::start(vec![issuer.jwk()]).await;
    let env: ic_config::Env = [
        ("HOST", "127.0.0.1".to_owned()),
        ("ADMIN_GATEWAY_PORT", "0".to_owned()),
        ("AUTHENTIK_ISSUER_URL", jwks.issuer()),
        ("AUTHENTIK_ADMIN_AUDIENCE", "ic-admin".to_owned()),
        ("NATS_URL", nats_url.to_owned()),
    ]
    .into_iter()
    .chain(upstreams.iter().map(|(k, v)| (*k, (*v).to_owned())))
    .collect();
    let app = admin_gateway::App::build(admin_gateway::config::Config::from_env(env).unwrap())
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    let stop = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    let token = issuer.token(&claims(
        &jwks.issuer(),
        "ic-admin",
        "editor-1",
        &[role],
        300,
    ));
    (url, token, stop)
}

#[sqlx::test(migrations = false)]
async fn an_admin_write_through_admin_gateway_becomes_a_webhook_the_official_library_verifies(
    pool: sqlx::PgPool,
) {
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

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, backend).await });
    let (gateway, bearer, gateway_stop) = admin_gateway(&backend_url, &nats.url()).await;

    let created = reqwest::Client::new()
        .post(format!("{gateway}/admin/api/v1/services"))
        .bearer_auth(&bearer)
        .header("content-type", "application/json")
        .header("x-correlation-id", CORRELATION_ID)
        .header("traceparent", TRACEPARENT)
        .body(r#"{"title":"Webhook check","description":"Sent to a webhook.","delivery_mode":"mobile_service"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["x-correlation-id"], CORRELATION_ID);
    let created: serde_json::Value = created.json().await.unwrap();
    assert_eq!(
        created["created_by"], "editor-1",
        "the token's user reached services-api"
    );

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

    // The gateway's audit record and services-api's change record: the same ids.
    let js = common::jetstream(&nats.url()).await;
    for subject in [
        format!("audit.admin-gateway.request.{CORRELATION_ID}"),
        format!(
            "audit.services-api.service.{}",
            created["service_id"].as_str().unwrap()
        ),
    ] {
        let record = common::last_message(&js, "IC_AUDIT", &subject).await;
        assert_eq!(record["correlation_id"], CORRELATION_ID, "{subject}");
        assert_eq!(
            record["trace_id"].as_str(),
            TRACEPARENT.split('-').nth(1),
            "{subject}: the same trace"
        );
    }

    broadcaster.stop().await;
    gateway_stop.cancel();
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

/// The URL of database `pool` on the harness's PostgreSQL.
fn url_of(pool: &sqlx::PgPool) -> String {
    ic_testkit::database_url(
        pool.connect_options()
            .get_database()
            .expect("a test database"),
    )
}

#[sqlx::test(migrations = false)]
async fn an_upload_through_admin_gateway_is_scanned_announced_and_served_by_public_gateway(
    pool: sqlx::PgPool,
) {
    let mut conn = pool.acquire().await.unwrap();
    ic_migrations::up_all(&mut conn).await.expect("migrations");
    drop(conn);
    ic_telemetry::install_crypto_provider();
    let nats = NatsServer::start();
    let blobs = tempfile::tempdir().unwrap();
    #[allow(clippy::disallowed_methods)] // the harness's clamd
    let clamd = std::env::var("IC_TEST_CLAMD_ADDRESS")
        .expect("IC_TEST_CLAMD_ADDRESS from cargo xtask test");
    let (content_url, content_stop) =
        content_api::spawn_development(&url_of(&pool), &nats.url(), blobs.path(), Some(&clamd))
            .await;
    let receiver = Receiver::ok().await;
    let broadcaster = start(
        &nats.url(),
        &subscription(
            "website",
            &receiver.url("/files"),
            ", event_types: ['org.internationalcenter.content.content.available']",
        ),
        &[],
    )
    .await;
    let (admin, bearer, admin_stop) = admin_gateway_to(
        &[("CONTENT_API_URL", &content_url)],
        "content-manager",
        &nats.url(),
    )
    .await;
    let env: ic_config::Env = [
        ("HOST", "127.0.0.1".to_owned()),
        ("PUBLIC_GATEWAY_PORT", "0".to_owned()),
        ("CONTENT_API_URL", content_url.clone()),
    ]
    .into_iter()
    .collect();
    let public = public_gateway::App::build(public_gateway::config::Config::from_env(env).unwrap())
        .await
        .unwrap();
    let public_url = format!("http://127.0.0.1:{}", public.port());
    let public_stop = public.shutdown_token();
    tokio::spawn(public.run_until_stopped());

    let bytes = {
        let mut b = b"%PDF-1.7\n".to_vec();
        b.extend((0..50_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
        b
    };
    let (boundary, body) = ic_testkit::multipart::form(
        "Guide.pdf",
        Some("application/pdf"),
        &bytes,
        &[("access_level", "public")],
    );
    let client = reqwest::Client::new();
    let accepted = client
        .post(format!("{admin}/admin/api/v1/content/upload"))
        .bearer_auth(&bearer)
        .header(
            "content-type",
            ic_testkit::multipart::content_type(&boundary),
        )
        .header("x-correlation-id", CORRELATION_ID)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let accepted: serde_json::Value = accepted.json().await.unwrap();
    let id = accepted["content_id"].as_str().unwrap().to_owned();
    assert_eq!(accepted["upload_correlation_id"], CORRELATION_ID);

    // Scanned clean by clamd, announced to the subscriber with the upload's ids.
    let request = receiver.wait_for("/files", 1).await.remove(0);
    let event = request.json();
    assert_eq!(
        event["type"],
        "org.internationalcenter.content.content.available"
    );
    assert_eq!(event["subject"], id.as_str());
    assert_eq!(event["correlationid"], CORRELATION_ID);
    assert_eq!(event["data"]["created_by"], "editor-1", "the token's user");

    // Served through public-gateway, ranges and validators intact.
    let url = format!("{public_url}/api/v1/content/{id}/download");
    let whole = client.get(&url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    let etag = whole.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        whole.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(whole.bytes().await.unwrap() == bytes);
    let part = client
        .get(&url)
        .header("range", "bytes=0-7")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().as_ref(), b"%PDF-1.7");
    let cached = client
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    // The alias and the list.
    let listed: serde_json::Value = client
        .get(format!("{public_url}/content"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["content"][0]["content_id"], id.as_str());
    // Staff routes are not public.
    let refused = client
        .get(format!("{public_url}/admin/api/v1/content/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);

    broadcaster.stop().await;
    admin_stop.cancel();
    public_stop.cancel();
    content_stop.cancel();
}
