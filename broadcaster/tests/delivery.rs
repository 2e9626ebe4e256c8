//! Deliveries against real nats-server (JetStream) and real HTTP receivers on loopback.

mod common;

use std::time::Duration;

use common::{Receiver, Reply, publish, start, subscription};
use ic_testkit::NatsServer;
use serde_json::Value;

async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn an_event_is_delivered_signed_with_trace_context_and_user_agent() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let subs = subscription("crm", &receiver.url("/hook"), ", headers: {X-Api-Key: k1}");
    let broadcaster = start(&nats.url(), &subs, &[]).await;
    let js = common::jetstream(&nats.url()).await;
    let event = publish(&js, "published").await;
    let got = receiver.wait_for("/hook", 1).await;
    let request = &got[0];
    assert_eq!(request.header("webhook-id"), event.id.to_string());
    assert!(request.header("webhook-signature").starts_with("v1,"));
    assert!(request.header("webhook-timestamp").parse::<i64>().is_ok());
    assert_eq!(request.header("content-type"), "application/json");
    assert!(request.header("user-agent").starts_with("ic-broadcaster/"));
    assert_eq!(request.header("x-api-key"), "k1");
    assert!(
        request
            .header("traceparent")
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "the event's trace continues: {}",
        request.header("traceparent")
    );
    assert_eq!(request.json()["id"], event.id.to_string());
    assert_eq!(
        request.json()["type"],
        "org.internationalcenter.services.service.published"
    );
    broadcaster.stop().await;
}

#[tokio::test]
async fn filters_choose_the_subscriptions_and_each_gets_its_own_copy() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let subs = [
        subscription("all", &receiver.url("/all"), ""),
        subscription(
            "published-only",
            &receiver.url("/published"),
            ", event_types: ['*.published']",
        ),
        subscription("off", &receiver.url("/off"), ", enabled: false"),
    ]
    .concat();
    let broadcaster = start(&nats.url(), &subs, &[]).await;
    let js = common::jetstream(&nats.url()).await;
    publish(&js, "created").await;
    let published = publish(&js, "published").await;
    broadcaster.wait_fanned_out(2).await;
    receiver.wait_for("/all", 2).await;
    let only = receiver.wait_for("/published", 1).await;
    assert_eq!(only[0].header("webhook-id"), published.id.to_string());
    broadcaster.stop().await;
    assert_eq!(receiver.seen_at("/published").len(), 1);
    assert!(
        receiver.seen_at("/off").is_empty(),
        "a disabled subscription gets nothing"
    );
}

#[tokio::test]
async fn a_failing_endpoint_that_recovers_gets_the_event_again_with_the_same_id_on_schedule() {
    let nats = NatsServer::start();
    // Fails three times, then accepts.
    let receiver = Receiver::start(|_, n| Reply::Status(if n < 3 { 503 } else { 200 })).await;
    let broadcaster = start(
        &nats.url(),
        &subscription("flaky", &receiver.url("/hook"), ""),
        &[("BROADCASTER_RETRY_SCHEDULE", "300ms,600ms,1200ms,5s")],
    )
    .await;
    let js = common::jetstream(&nats.url()).await;
    let event = publish(&js, "published").await;
    let got = receiver.wait_for("/hook", 4).await;
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert!(ids.iter().all(|id| *id == event.id.to_string()), "{ids:?}");
    // The delays themselves (schedule, jitter) are the retry module's unit tests; timing
    // is for benchmarks, not assertions here.
    broadcaster.stop().await;
    assert_eq!(
        receiver.seen_at("/hook").len(),
        4,
        "delivered once, never again"
    );
}

#[tokio::test]
async fn a_429_or_503_with_retry_after_is_retried_and_then_delivered() {
    let nats = NatsServer::start();
    // 429 then 503, each asking for a second; then accepted. (How long each wait is, the
    // longer of the schedule and Retry-After, is `retry::next_delay`'s unit test.)
    let receiver = Receiver::start(|_, n| match n {
        0 => Reply::WithHeaders(429, vec![("retry-after", "1".into())]),
        1 => Reply::WithHeaders(503, vec![("retry-after", "1".into())]),
        _ => Reply::Status(200),
    })
    .await;
    let broadcaster = start(
        &nats.url(),
        &subscription("busy", &receiver.url("/hook"), ""),
        &[("BROADCASTER_RETRY_SCHEDULE", "100ms,100ms,100ms")],
    )
    .await;
    let js = common::jetstream(&nats.url()).await;
    let event = publish(&js, "published").await;
    let got = receiver.wait_for("/hook", 3).await;
    assert!(
        got.iter()
            .all(|r| r.header("webhook-id") == event.id.to_string())
    );
    broadcaster
        .wait_metrics(&[
            r#"broadcaster_webhook_requests_total{subscription="busy",status_class="4xx"} 1"#,
            r#"broadcaster_webhook_requests_total{subscription="busy",status_class="5xx"} 1"#,
            r#"broadcaster_deliveries_total{subscription="busy",result="delivered"} 1"#,
        ])
        .await;
    broadcaster.stop().await;
    assert_eq!(
        receiver.seen_at("/hook").len(),
        3,
        "delivered once, never again"
    );
}

#[tokio::test]
async fn a_call_that_times_out_is_a_failed_attempt_retried_with_the_same_id() {
    let nats = NatsServer::start();
    // The first call is held past the subscription's timeout; the retry is answered.
    let receiver = Receiver::start(|_, n| {
        if n == 0 {
            Reply::Hold
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let broadcaster = start(
        &nats.url(),
        &subscription("slow", &receiver.url("/hook"), ", timeout: 200ms"),
        &[("BROADCASTER_RETRY_SCHEDULE", "100ms,100ms")],
    )
    .await;
    let js = common::jetstream(&nats.url()).await;
    let event = publish(&js, "published").await;
    let got = receiver.wait_for("/hook", 2).await;
    assert!(
        got.iter()
            .all(|r| r.header("webhook-id") == event.id.to_string())
    );
    broadcaster
        .wait_metrics(&[
            r#"broadcaster_webhook_requests_total{subscription="slow",status_class="timeout"} 1"#,
            r#"broadcaster_deliveries_total{subscription="slow",result="delivered"} 1"#,
        ])
        .await;
    receiver.release();
    broadcaster.stop().await;
}

#[tokio::test]
async fn a_refused_connection_is_retried_and_ends_as_a_dead_letter_with_the_error() {
    let nats = NatsServer::start();
    let closed = ic_testkit::free_port();
    let broadcaster = start(
        &nats.url(),
        &subscription("gone", &format!("http://127.0.0.1:{closed}/hook"), ""),
        &[("BROADCASTER_RETRY_SCHEDULE", "50ms,50ms")],
    )
    .await;
    let js = common::jetstream(&nats.url()).await;
    let event = publish(&js, "published").await;
    let letters = ic_testkit::eventually(Duration::from_secs(30), "a dead letter", || async {
        let body = get_json(&broadcaster.url("/dead-letters")).await;
        (body["count"] == 1).then_some(body)
    })
    .await;
    let letter = &letters["dead_letters"][0];
    assert_eq!(letter["webhook_id"], event.id.to_string());
    assert_eq!(letter["attempts"], 3);
    assert!(letter["last_status"].is_null(), "no answer: {letter}");
    assert!(
        !letter["last_error"].as_str().unwrap_or_default().is_empty(),
        "the error is kept: {letter}"
    );
    let url = format!("http://127.0.0.1:{}/metrics", broadcaster.metrics_port);
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(
        text.contains(
            r#"broadcaster_webhook_requests_total{subscription="gone",status_class="error"} 3"#
        ),
        "{text}"
    );
    broadcaster.stop().await;
}

#[tokio::test]
async fn exhausted_retries_become_dead_letters_with_the_last_status_and_replay_delivers_them() {
    let nats = NatsServer::start();
    let healed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let heal = healed.clone();
    let receiver = Receiver::start(move |_, _| {
        Reply::Status(if heal.load(std::sync::atomic::Ordering::SeqCst) {
            200
        } else {
            500
        })
    })
    .await;
    let broadcaster = start(
        &nats.url(),
        &subscription("down", &receiver.url("/hook"), ""),
        &[("BROADCASTER_RETRY_SCHEDULE", "100ms,100ms")],
    )
    .await;
    let js = common::jetstream(&nats.url()).await;
    let event = publish(&js, "published").await;
    receiver.wait_for("/hook", 3).await;
    let letters = ic_testkit::eventually(Duration::from_secs(30), "a dead letter", || async {
        let body = get_json(&broadcaster.url("/dead-letters?subscription_id=down")).await;
        (body["count"] == 1).then_some(body)
    })
    .await;
    let letter = &letters["dead_letters"][0];
    assert_eq!(letter["webhook_id"], event.id.to_string());
    assert_eq!(letter["attempts"], 3);
    assert_eq!(letter["last_status"], 500);
    assert_eq!(letter["event"]["id"], event.id.to_string());
    let subs = get_json(&broadcaster.url("/subscriptions")).await;
    assert_eq!(subs["subscriptions"][0]["counters"]["dead_letters"], 1);
    assert!(
        !subs.to_string().contains("MfKQ"),
        "secrets are never shown: {subs}"
    );

    healed.store(true, std::sync::atomic::Ordering::SeqCst);
    let sequence = letter["sequence"].as_u64().unwrap();
    let replay = reqwest::Client::new()
        .post(broadcaster.url(&format!("/dead-letters/{sequence}/replay")))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 202);
    let got = receiver.wait_for("/hook", 4).await;
    assert_eq!(
        got[3].header("webhook-id"),
        event.id.to_string(),
        "the same webhook-id"
    );
    let after = get_json(&broadcaster.url("/dead-letters")).await;
    assert_eq!(after["count"], 0, "a replayed dead letter is gone: {after}");
    let again = reqwest::Client::new()
        .post(broadcaster.url(&format!("/dead-letters/{sequence}/replay")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    broadcaster.stop().await;
}

#[tokio::test]
async fn gone_disables_the_subscription() {
    let nats = NatsServer::start();
    let receiver = Receiver::start(|_, _| Reply::Status(410)).await;
    let broadcaster = start(
        &nats.url(),
        &subscription("gone", &receiver.url("/hook"), ""),
        &[],
    )
    .await;
    let js = common::jetstream(&nats.url()).await;
    publish(&js, "published").await;
    receiver.wait_for("/hook", 1).await;
    let subs = ic_testkit::eventually(
        Duration::from_secs(10),
        "the subscription disabled",
        || async {
            let body = get_json(&broadcaster.url("/subscriptions")).await;
            (body["subscriptions"][0]["state"] == "disabled_gone").then_some(body)
        },
    )
    .await;
    assert_eq!(subs["subscriptions"][0]["counters"]["dead_letters"], 1);
    publish(&js, "archived").await;
    broadcaster.wait_fanned_out(2).await;
    let letters = get_json(&broadcaster.url("/dead-letters")).await;
    assert_eq!(letters["dead_letters"][0]["last_status"], 410);
    broadcaster.stop().await;
    assert_eq!(
        receiver.seen_at("/hook").len(),
        1,
        "nothing is sent to a disabled subscription"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let nats = NatsServer::start();
    let receiver = Receiver::start(|request, _| {
        if request.path == "/hook" {
            Reply::WithHeaders(307, vec![("location", "/elsewhere".into())])
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let broadcaster = start(
        &nats.url(),
        &subscription("moved", &receiver.url("/hook"), ""),
        &[("BROADCASTER_RETRY_SCHEDULE", "100ms")],
    )
    .await;
    let js = common::jetstream(&nats.url()).await;
    publish(&js, "published").await;
    ic_testkit::eventually(Duration::from_secs(30), "a dead letter", || async {
        let body = get_json(&broadcaster.url("/dead-letters")).await;
        (body["count"] == 1).then_some(())
    })
    .await;
    broadcaster.stop().await;
    assert_eq!(receiver.seen_at("/hook").len(), 2);
    assert!(
        receiver.seen_at("/elsewhere").is_empty(),
        "the redirect was not followed"
    );
}

#[tokio::test]
async fn private_and_loopback_targets_are_refused_unless_allowed() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let port = receiver.addr.port();
    let subs = [
        subscription("literal", &format!("http://127.0.0.1:{port}/literal"), ""),
        subscription("named", &format!("http://localhost:{port}/named"), ""),
    ]
    .concat();
    let broadcaster = start(
        &nats.url(),
        &subs,
        &[
            ("BROADCASTER_ALLOW_PRIVATE_TARGETS", "false"),
            ("BROADCASTER_RETRY_SCHEDULE", "100ms"),
        ],
    )
    .await;
    let js = common::jetstream(&nats.url()).await;
    publish(&js, "published").await;
    let letters = ic_testkit::eventually(Duration::from_secs(30), "two dead letters", || async {
        let body = get_json(&broadcaster.url("/dead-letters")).await;
        (body["count"] == 2).then_some(body)
    })
    .await;
    for letter in letters["dead_letters"].as_array().unwrap() {
        assert!(
            letter["last_error"].as_str().unwrap().contains("private"),
            "{letter}"
        );
        assert!(letter["last_status"].is_null());
    }
    broadcaster.stop().await;
    assert!(
        receiver.seen().is_empty(),
        "nothing reached a private address"
    );
}

#[tokio::test]
async fn a_slow_endpoint_never_delays_a_healthy_one() {
    let nats = NatsServer::start();
    let receiver = Receiver::start(|request, _| {
        if request.path == "/slow" {
            Reply::Hold
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let subs = [
        subscription(
            "slow",
            &receiver.url("/slow"),
            ", max_concurrency: 2, timeout: 60s",
        ),
        subscription("healthy", &receiver.url("/healthy"), ""),
    ]
    .concat();
    let broadcaster = start(&nats.url(), &subs, &[]).await;
    let js = common::jetstream(&nats.url()).await;
    for _ in 0..20 {
        publish(&js, "published").await;
    }
    // Every event reaches the healthy endpoint while the slow one still holds its first
    // two calls (its concurrency limit).
    receiver.wait_for("/healthy", 20).await;
    assert_eq!(receiver.seen_at("/slow").len(), 2);
    receiver.release();
    receiver.wait_for("/slow", 20).await;
    broadcaster.stop().await;
    assert_eq!(receiver.seen_at("/healthy").len(), 20);
}

#[tokio::test]
async fn an_open_breaker_makes_deliveries_wait_without_using_up_attempts() {
    let nats = NatsServer::start();
    let receiver = Receiver::start(|_, _| Reply::Status(500)).await;
    let broadcaster = start(
        &nats.url(),
        &subscription("down", &receiver.url("/hook"), ", max_concurrency: 4"),
        &[
            ("BROADCASTER_RETRY_SCHEDULE", "50ms,50ms"),
            ("BROADCASTER_BREAKER_FAILURES", "2"),
            ("BROADCASTER_BREAKER_COOLDOWN_SECONDS", "0.5"),
        ],
    )
    .await;
    let js = common::jetstream(&nats.url()).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(publish(&js, "published").await.id.to_string());
    }
    let letters = ic_testkit::eventually(Duration::from_secs(60), "five dead letters", || async {
        let body = get_json(&broadcaster.url("/dead-letters")).await;
        (body["count"] == 5).then_some(body)
    })
    .await;
    broadcaster.stop().await;
    let seen = receiver.seen();
    // (The breaker's cool-down itself is the breaker's unit test.)
    for letter in letters["dead_letters"].as_array().unwrap() {
        let id = letter["webhook_id"].as_str().unwrap();
        let calls = seen.iter().filter(|r| r.header("webhook-id") == id).count();
        assert_eq!(
            letter["attempts"], 3,
            "every delivery had its three attempts: {letter}"
        );
        assert_eq!(
            calls, 3,
            "each attempt was a real call, none burnt waiting ({id})"
        );
    }
}

#[tokio::test]
async fn metrics_are_exported_under_their_specified_names() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let broadcaster = start(
        &nats.url(),
        &subscription("m", &receiver.url("/hook"), ""),
        &[],
    )
    .await;
    let url = format!("http://127.0.0.1:{}/metrics", broadcaster.metrics_port);
    // Before any event, every series whose labels are known is there at zero.
    let before = reqwest::get(&url).await.unwrap().text().await.unwrap();
    for zero in [
        r#"broadcaster_messages_processed_total{result="fanned_out"} 0"#,
        r#"broadcaster_messages_processed_total{result="invalid"} 0"#,
        r#"broadcaster_webhook_requests_total{subscription="m",status_class="2xx"} 0"#,
        r#"broadcaster_webhook_requests_total{subscription="m",status_class="timeout"} 0"#,
        r#"broadcaster_request_duration_seconds_count{subscription="m"} 0"#,
        r#"broadcaster_deliveries_total{subscription="m",result="delivered"} 0"#,
        r#"broadcaster_deliveries_total{subscription="m",result="failed"} 0"#,
        r#"broadcaster_dead_letters_total{subscription="m"} 0"#,
    ] {
        assert!(before.contains(zero), "{zero} missing from:\n{before}");
    }
    ic_testkit::promtool_check_metrics(&before).unwrap();
    let js = common::jetstream(&nats.url()).await;
    publish(&js, "published").await;
    receiver.wait_for("/hook", 1).await;
    let text = ic_testkit::eventually(Duration::from_secs(10), "metrics", || async {
        let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
        text.contains("broadcaster_delivery_lag_seconds_count 1")
            .then_some(text)
    })
    .await;
    for name in [
        r#"broadcaster_messages_processed_total{result="fanned_out"} 1"#,
        r#"broadcaster_webhook_requests_total{subscription="m",status_class="2xx"} 1"#,
        r#"broadcaster_deliveries_total{subscription="m",result="delivered"} 1"#,
        "broadcaster_nats_connected 1",
        r#"broadcaster_request_duration_seconds_bucket{le="#,
        "broadcaster_dead_letters_total",
        "broadcaster_consumer_pending",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    ic_testkit::promtool_check_metrics(&text).unwrap();
    broadcaster.stop().await;
}

#[tokio::test]
async fn health_is_unready_while_nats_is_down_and_ready_again_without_a_restart() {
    let mut nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let broadcaster = start(
        &nats.url(),
        &subscription("h", &receiver.url("/hook"), ""),
        &[],
    )
    .await;
    nats.stop();
    ic_testkit::eventually(Duration::from_secs(30), "unready", || async {
        let status = reqwest::get(broadcaster.url("/health"))
            .await
            .ok()?
            .status();
        (status == 503).then_some(())
    })
    .await;
    let live = reqwest::get(broadcaster.url("/healthz")).await.unwrap();
    assert_eq!(live.status(), 200, "liveness never depends on NATS");
    nats.restart();
    common::wait_ready(&broadcaster.url("/health")).await;
    let js = common::jetstream(&nats.url()).await;
    publish(&js, "published").await;
    receiver.wait_for("/hook", 1).await;
    broadcaster.stop().await;
}

#[tokio::test]
async fn the_operating_routes_need_the_admin_token_when_one_is_set() {
    let nats = NatsServer::start();
    let broadcaster = start(&nats.url(), "[]", &[("BROADCASTER_ADMIN_TOKEN", "s3cret")]).await;
    let client = reqwest::Client::new();
    let denied = client
        .get(broadcaster.url("/subscriptions"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let body: Value = denied.json().await.unwrap();
    assert_eq!(body["error"]["code"], "UNAUTHORIZED");
    let wrong_token = client
        .get(broadcaster.url("/subscriptions"))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_token.status(), 401);
    let allowed = client
        .get(broadcaster.url("/subscriptions"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let health = client.get(broadcaster.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "health needs no token");
    let wrong = client
        .post(broadcaster.url("/subscriptions"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "METHOD_NOT_ALLOWED");
    let not_a_sequence = client
        .post(broadcaster.url("/dead-letters/abc/replay"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_sequence.status(), 400);
    for (method, path) in [
        (http::Method::GET, "/dead-letters?limit=0"),
        (http::Method::GET, "/dead-letters?limit=abc"),
        (http::Method::GET, "/dead-letters?colour=blue"),
        (http::Method::GET, "/dead-letters?subscription_id=nobody"),
        (http::Method::POST, "/dead-letters/0/replay"),
        (
            http::Method::POST,
            "/dead-letters/replay?subscription_id=nobody",
        ),
    ] {
        let bad = client
            .request(method, broadcaster.url(path))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400, "{path}");
        let body: Value = bad.json().await.unwrap();
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR", "{path}");
    }
    let missing = client
        .post(broadcaster.url("/dead-letters/99/replay"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    broadcaster.stop().await;
}

#[tokio::test]
async fn shutdown_lets_calls_in_flight_finish_and_acknowledges_them() {
    let nats = NatsServer::start();
    let receiver = Receiver::start(|_, _| Reply::Hold).await;
    let subs = subscription("held", &receiver.url("/hook"), ", timeout: 60s");
    let broadcaster = start(&nats.url(), &subs, &[]).await;
    let js = common::jetstream(&nats.url()).await;
    let event = publish(&js, "published").await;
    receiver.wait_for("/hook", 1).await;
    // Shutdown begins while the call is held; it completes once the endpoint answers.
    broadcaster.token.cancel();
    let healthz = broadcaster.url("/healthz");
    ic_testkit::eventually(
        Duration::from_secs(10),
        "the operating port closed",
        || async { reqwest::get(&healthz).await.is_err().then_some(()) },
    )
    .await;
    receiver.release();
    broadcaster.handle.await.unwrap().unwrap();
    // Nothing is left for another replica: the task was acknowledged before exit.
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream("IC_DELIVERIES")
        .await
        .unwrap()
        .get_consumer("deliveries-held")
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!((info.num_ack_pending, info.num_pending), (0, 0), "{info:?}");
    assert_eq!(receiver.seen_at("/hook").len(), 1);
    assert_eq!(
        receiver.seen_at("/hook")[0].header("webhook-id"),
        event.id.to_string()
    );
}

#[tokio::test]
async fn with_loki_configured_the_broadcaster_ships_audit_records_too() {
    let nats = NatsServer::start();
    let loki = ic_testkit::fake_loki::FakeLoki::start().await;
    let broadcaster = start(&nats.url(), "[]", &[("LOKI_URL", &loki.url())]).await;
    let js = common::jetstream(&nats.url()).await;
    let id = uuid::Uuid::new_v4();
    let record = serde_json::json!({
        "audit_id": uuid::Uuid::new_v4(),
        "entity_type": "service",
        "entity_id": id.to_string(),
        "operation_type": "INSERT",
        "audit_timestamp": chrono::Utc::now(),
        "user_id": "editor-1",
        "correlation_id": uuid::Uuid::new_v4().to_string(),
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "data_snapshot": {"before": null, "after": {"title": "Audited"}},
        "environment": "development",
        "service": "services-api",
        "action": "created",
    });
    js.publish(
        format!("audit.services-api.service.{id}"),
        serde_json::to_vec(&record).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    ic_testkit::eventually(Duration::from_secs(30), "the record in Loki", || async {
        loki.entries()
            .iter()
            .any(|e| e.line.contains(&id.to_string()))
            .then_some(())
    })
    .await;
    broadcaster.stop().await;
}

#[tokio::test]
async fn a_changed_timeout_updates_the_delivery_consumer_on_restart() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let before = start(
        &nats.url(),
        &subscription("t", &receiver.url("/hook"), ", timeout: 2s"),
        &[],
    )
    .await;
    before.stop().await;
    let after = start(
        &nats.url(),
        &subscription("t", &receiver.url("/hook"), ", timeout: 20s"),
        &[],
    )
    .await;
    let js = common::jetstream(&nats.url()).await;
    publish(&js, "published").await;
    receiver.wait_for("/hook", 1).await;
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream("IC_DELIVERIES")
        .await
        .unwrap()
        .get_consumer("deliveries-t")
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(
        info.config.ack_wait,
        Duration::from_secs(30),
        "the ack wait follows the new timeout (20 s + 10 s)"
    );
    after.stop().await;
}

#[tokio::test]
async fn events_that_are_not_cloudevents_with_a_usable_id_are_set_aside() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let broadcaster = start(
        &nats.url(),
        &subscription("s", &receiver.url("/hook"), ""),
        &[],
    )
    .await;
    let js = common::jetstream(&nats.url()).await;
    for body in [
        "not json".to_owned(),
        serde_json::json!({"id": "bad\nid", "type": "org.internationalcenter.services.service.created"}).to_string(),
    ] {
        js.publish("ic.services.service.created", body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let good = publish(&js, "published").await;
    let got = receiver.wait_for("/hook", 1).await;
    assert_eq!(got[0].header("webhook-id"), good.id.to_string());
    let url = format!("http://127.0.0.1:{}/metrics", broadcaster.metrics_port);
    ic_testkit::eventually(
        Duration::from_secs(10),
        "two invalid events counted",
        || async {
            let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
            text.contains(r#"broadcaster_messages_processed_total{result="invalid"} 2"#)
                .then_some(())
        },
    )
    .await;
    broadcaster.stop().await;
    assert_eq!(receiver.seen_at("/hook").len(), 1);
}

/// Publishes `event` again, under the message id `msg_id`; whether JetStream took it for
/// a duplicate.
async fn republish(
    js: &async_nats::jetstream::Context,
    event: &ic_events::CloudEvent,
    msg_id: &str,
) -> bool {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(ic_events::NATS_MSG_ID, msg_id);
    js.publish_with_headers(
        event.subject_for_type().unwrap(),
        headers,
        serde_json::to_vec(event).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap()
    .duplicate
}

#[tokio::test]
async fn an_event_published_twice_is_delivered_once() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let broadcaster = start(
        &nats.url(),
        &subscription("once", &receiver.url("/hook"), ""),
        &[],
    )
    .await;
    let js = common::jetstream(&nats.url()).await;
    let event = publish(&js, "published").await;
    // Again under the same `Nats-Msg-Id` (an outbox relay retrying a publish whose ack
    // it lost): JetStream drops it.
    assert!(republish(&js, &event, &event.id.to_string()).await);
    // A copy under another message id reaches IC_EVENTS, and the fan-out: the task it
    // writes has the same id as the first one's, and JetStream drops that instead.
    assert!(!republish(&js, &event, "another-message-id").await);
    broadcaster.wait_fanned_out(2).await;
    receiver.wait_for("/hook", 1).await;
    let tasks = js
        .get_stream(ic_events::streams::IC_DELIVERIES)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .last_sequence;
    assert_eq!(tasks, 1, "one task ever stored for the event");
    broadcaster.stop().await;
    assert_eq!(receiver.seen_at("/hook").len(), 1);
}

#[tokio::test]
async fn a_bulk_replay_of_one_subscription_delivers_each_of_its_dead_letters_again() {
    let nats = NatsServer::start();
    let healed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let heal = healed.clone();
    let receiver = Receiver::start(move |_, _| {
        Reply::Status(if heal.load(std::sync::atomic::Ordering::SeqCst) {
            200
        } else {
            500
        })
    })
    .await;
    let subs = format!(
        "{}{}",
        subscription("bulk", &receiver.url("/bulk"), ""),
        subscription("other", &receiver.url("/other"), "")
    );
    let broadcaster = start(
        &nats.url(),
        &subs,
        &[
            ("BROADCASTER_RETRY_SCHEDULE", "50ms"),
            // No breaker pausing the endpoints between the failures.
            ("BROADCASTER_BREAKER_FAILURES", "100"),
        ],
    )
    .await;
    let js = common::jetstream(&nats.url()).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(publish(&js, "published").await.id.to_string());
    }
    ic_testkit::eventually(Duration::from_secs(30), "six dead letters", || async {
        let body = get_json(&broadcaster.url("/dead-letters")).await;
        (body["count"] == 6).then_some(())
    })
    .await;
    healed.store(true, std::sync::atomic::Ordering::SeqCst);
    let replay = reqwest::Client::new()
        .post(broadcaster.url("/dead-letters/replay?subscription_id=bulk"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 202);
    let body: Value = replay.json().await.unwrap();
    assert_eq!(body["replayed"].as_array().unwrap().len(), 3, "{body}");
    assert_eq!(body["skipped"], serde_json::json!([]));
    // Two failed attempts each, then the replay's successful one.
    let got = receiver.wait_for("/bulk", 9).await;
    let mut delivered: Vec<&str> = got[6..].iter().map(|r| r.header("webhook-id")).collect();
    delivered.sort_unstable();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(delivered, expected, "each dead letter once more, same ids");
    let left = get_json(&broadcaster.url("/dead-letters")).await;
    assert_eq!(left["count"], 3, "the other subscription's stay: {left}");
    assert!(
        left["dead_letters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["subscription_id"] == "other"),
        "{left}"
    );
    broadcaster.stop().await;
}

#[tokio::test]
async fn only_the_subjects_broadcaster_subjects_names_are_consumed() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let broadcaster = start(
        &nats.url(),
        &subscription("all", &receiver.url("/hook"), ""),
        &[("BROADCASTER_SUBJECTS", "ic.services.service.published")],
    )
    .await;
    let js = common::jetstream(&nats.url()).await;
    let created = publish(&js, "created").await;
    let published = publish(&js, "published").await;
    // Only the one subject is fanned out; the other event is never taken.
    broadcaster.wait_fanned_out(1).await;
    let got = receiver.wait_for("/hook", 1).await;
    assert_eq!(got[0].header("webhook-id"), published.id.to_string());
    let text = reqwest::get(format!(
        "http://127.0.0.1:{}/metrics",
        broadcaster.metrics_port
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(
        text.contains(r#"broadcaster_messages_processed_total{result="fanned_out"} 1"#),
        "{text}"
    );
    // The other event is in the stream, and nothing is left for the consumer to take.
    let stream = js.get_stream(ic_events::streams::IC_EVENTS).await.unwrap();
    let mut consumer = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(
            broadcaster::fanout::WORKERS_CONSUMER,
        )
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(info.num_pending, 0, "{info:?}");
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
    broadcaster.stop().await;
    assert!(
        receiver
            .seen_at("/hook")
            .iter()
            .all(|r| r.header("webhook-id") != created.id.to_string()),
        "the created event was not consumed"
    );
}
