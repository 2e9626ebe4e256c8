//! The Loki shipper against a real nats-server and the fake Loki receiver.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use chrono::Utc;
use futures::StreamExt;
use ic_audit::{
    AuditRecord, DataSnapshot, HistoryQuery, OperationType, audit_subject,
    loki::{DEAD_LETTER_REASON, LokiClient, LokiConfig, SHIPPER_CONSUMER, Shipper, ShipperConfig},
};
use ic_http::Secret;
use ic_testkit::{NatsServer, eventually, fake_loki::FakeLoki};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

fn record(entity_id: &str, user: &str) -> AuditRecord {
    AuditRecord {
        audit_id: Uuid::now_v7(),
        entity_type: "service".into(),
        entity_id: entity_id.into(),
        operation_type: OperationType::Update,
        audit_timestamp: Utc::now(),
        user_id: user.into(),
        correlation_id: Uuid::new_v4().to_string(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        data_snapshot: DataSnapshot {
            before: Some(json!({"title": "a"})),
            after: Some(json!({"title": "b"})),
        },
        environment: "development".into(),
        service: "services-api".into(),
        action: "updated".into(),
    }
}

struct Setup {
    _nats: NatsServer,
    js: jetstream::Context,
    token: CancellationToken,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

async fn setup(loki: &FakeLoki, tenant: Option<&str>, user: Option<(&str, &str)>) -> Setup {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    ic_events::streams::ensure(&js).await.unwrap();
    let token = CancellationToken::new();
    ic_telemetry::install_crypto_provider();
    let shipper = Shipper::new(
        client.clone(),
        LokiClient::new(LokiConfig {
            url: loki.url(),
            username: user.map(|(u, _)| u.to_owned()),
            api_key: user.map(|(_, k)| Secret::new(k)),
            tenant_id: tenant.map(str::to_owned),
        }),
        ShipperConfig {
            batch_size: 100,
            fetch_wait: Duration::from_millis(200),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
        },
    );
    tokio::spawn(shipper.run(token.clone()));
    Setup {
        _nats: nats,
        js,
        token,
    }
}

async fn publish(js: &jetstream::Context, record: &AuditRecord) {
    let subject = audit_subject(&record.service, &record.entity_type, &record.entity_id);
    js.publish(subject, serde_json::to_vec(record).unwrap().into())
        .await
        .unwrap()
        .await
        .unwrap();
}

async fn shipper_consumer(js: &jetstream::Context) -> PullConsumer {
    eventually(WAIT, "the shipper's durable consumer", || async {
        js.get_stream("IC_AUDIT")
            .await
            .ok()?
            .get_consumer(SHIPPER_CONSUMER)
            .await
            .ok()
    })
    .await
}

/// Waits until the durable consumer has nothing pending or unacknowledged.
async fn drained(js: &jetstream::Context) {
    let consumer = shipper_consumer(js).await;
    eventually(WAIT, "the shipper to acknowledge everything", || {
        let mut consumer = consumer.clone();
        async move {
            let info = consumer.info().await.ok()?;
            (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn records_reach_loki_with_the_spec_labels_line_tenant_and_basic_auth() {
    let loki = FakeLoki::start().await;
    let s = setup(&loki, Some("tenant-42"), Some(("12345", "glc_key"))).await;
    let records: Vec<AuditRecord> = (0..3).map(|i| record(&format!("e{i}"), "editor")).collect();
    for r in &records {
        publish(&s.js, r).await;
    }
    eventually(WAIT, "three entries in Loki", || async {
        (loki.entries().len() == 3).then_some(())
    })
    .await;
    drained(&s.js).await;
    let entries = loki.entries();
    for e in &entries {
        assert_eq!(
            e.labels.get("job").map(String::as_str),
            Some("services-audit")
        );
        assert_eq!(
            e.labels.get("environment").map(String::as_str),
            Some("development")
        );
        assert_eq!(
            e.labels.get("entity_type").map(String::as_str),
            Some("service")
        );
        assert_eq!(
            e.labels.get("operation_type").map(String::as_str),
            Some("UPDATE")
        );
        assert_eq!(
            e.labels.get("service").map(String::as_str),
            Some("services-api")
        );
        assert_eq!(
            e.labels.len(),
            5,
            "few labels: everything else is in the line"
        );
        let line: AuditRecord = serde_json::from_str(&e.line).unwrap();
        assert!(records.contains(&line));
        assert_eq!(
            e.ts,
            line.audit_timestamp
                .timestamp_nanos_opt()
                .unwrap()
                .to_string()
        );
    }
    let push = &loki.pushes()[0];
    assert_eq!(push.tenant.as_deref(), Some("tenant-42"));
    // base64("12345:glc_key")
    assert_eq!(
        push.authorization.as_deref(),
        Some("Basic MTIzNDU6Z2xjX2tleQ==")
    );
}

#[tokio::test]
async fn a_loki_outage_loses_nothing() {
    let mut loki = FakeLoki::start().await;
    loki.stop().await;
    let s = setup(&loki, None, None).await;
    let records: Vec<AuditRecord> = (0..5).map(|i| record(&format!("o{i}"), "u")).collect();
    for r in &records {
        publish(&s.js, r).await;
    }
    // The shipper has tried and failed: its deliveries are being redelivered.
    let consumer = shipper_consumer(&s.js).await;
    eventually(WAIT, "failed deliveries to be retried", || {
        let mut consumer = consumer.clone();
        async move { (consumer.info().await.ok()?.num_redelivered > 0).then_some(()) }
    })
    .await;
    assert!(loki.entries().is_empty());
    loki.restart().await;
    eventually(WAIT, "every record after the outage", || async {
        (loki.entries().len() == 5).then_some(())
    })
    .await;
    drained(&s.js).await;
    assert_eq!(loki.entries().len(), 5, "each record stored once");
}

#[tokio::test]
async fn status_429_and_5xx_are_retried_until_accepted() {
    let loki = FakeLoki::start().await;
    loki.fail_with(Some(429));
    let s = setup(&loki, None, None).await;
    for i in 0..4 {
        publish(&s.js, &record(&format!("r{i}"), "u")).await;
    }
    eventually(WAIT, "two refused pushes (429)", || async {
        (loki.pushes().iter().filter(|p| p.status == 429).count() >= 2).then_some(())
    })
    .await;
    loki.fail_with(Some(503));
    eventually(WAIT, "two refused pushes (503)", || async {
        (loki.pushes().iter().filter(|p| p.status == 503).count() >= 2).then_some(())
    })
    .await;
    assert!(loki.entries().is_empty());
    loki.fail_with(None);
    eventually(WAIT, "all four records", || async {
        (loki.entries().len() == 4).then_some(())
    })
    .await;
    drained(&s.js).await;
}

#[tokio::test]
async fn a_400_for_one_record_dead_letters_it_without_blocking_the_rest() {
    let loki = FakeLoki::start().await;
    loki.reject_lines_containing(Some("poison-user"));
    let s = setup(&loki, None, None).await;
    let poison = record("bad", "poison-user");
    publish(&s.js, &record("g1", "u")).await;
    publish(&s.js, &poison).await;
    publish(&s.js, &record("g2", "u")).await;
    publish(&s.js, &record("g3", "u")).await;
    eventually(WAIT, "the three good records", || async {
        (loki.entries().len() == 3).then_some(())
    })
    .await;
    drained(&s.js).await;
    assert!(
        loki.entries()
            .iter()
            .all(|e| !e.line.contains("poison-user"))
    );

    let dlq = s.js.get_stream("IC_AUDIT_DLQ").await.unwrap();
    let consumer: PullConsumer = dlq
        .create_consumer(jetstream::consumer::pull::Config::default())
        .await
        .unwrap();
    let mut messages = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    let message = messages.next().await.expect("a dead letter").unwrap();
    assert_eq!(
        message.subject.as_str(),
        "dlq.audit.services-api.service.bad"
    );
    let reason = message
        .headers
        .as_ref()
        .and_then(|h| h.get(DEAD_LETTER_REASON))
        .unwrap()
        .to_string();
    assert!(
        reason.contains("400") && reason.contains("too old"),
        "{reason}"
    );
    let dead: AuditRecord = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(dead, poison);
    assert!(
        messages.next().await.is_none(),
        "only the bad record is dead-lettered"
    );
}

#[tokio::test]
async fn history_reads_an_entitys_records_back_from_loki_newest_first() {
    let loki = FakeLoki::start().await;
    let s = setup(&loki, None, None).await;
    let mut older = record("h1", "u");
    older.audit_timestamp = Utc::now() - chrono::Duration::minutes(5);
    let newer = record("h1", "u");
    publish(&s.js, &older).await;
    publish(&s.js, &newer).await;
    publish(&s.js, &record("other", "u")).await;
    eventually(WAIT, "three entries", || async {
        (loki.entries().len() == 3).then_some(())
    })
    .await;
    ic_telemetry::install_crypto_provider();
    let client = LokiClient::new(LokiConfig {
        url: loki.url(),
        username: None,
        api_key: None,
        tenant_id: None,
    });
    let page = client
        .history(&HistoryQuery {
            app_id: "services-api",
            entity_type: "service",
            entity_id: "h1".into(),
            start: None,
            end: None,
            offset: 0,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(page.records, vec![newer, older]);
}
