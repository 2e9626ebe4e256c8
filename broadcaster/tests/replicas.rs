//! Several broadcaster processes: the real binary, started and killed like in production.

mod common;

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::{Receiver, Reply, publish, subscription};
use ic_testkit::{NatsServer, process::Signal};

/// A broadcaster process.
struct Process {
    child: Child,
    health: String,
    _dir: tempfile::TempDir,
}

impl Process {
    fn spawn(nats_url: &str, subscriptions: &str, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("subscriptions.yaml");
        std::fs::write(&file, subscriptions).unwrap();
        let vars: HashMap<String, String> = common::env(nats_url, &file, extra);
        let health = format!("http://127.0.0.1:{}/health", vars["BROADCASTER_PORT"]);
        let child = Command::new(env!("CARGO_BIN_EXE_broadcaster"))
            .env_clear()
            .envs(&vars)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the broadcaster binary starts");
        Self {
            child,
            health,
            _dir: dir,
        }
    }

    async fn ready(self) -> Self {
        common::wait_ready(&self.health).await;
        self
    }

    fn kill_9(&mut self) {
        ic_testkit::process::signal(self.child.id(), Signal::KILL).expect("SIGKILL");
        let _ = self.child.wait();
    }

    fn terminate(&mut self) -> Option<i32> {
        ic_testkit::process::signal(self.child.id(), Signal::TERM).expect("SIGTERM");
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn two_healthy_replicas_deliver_each_event_once_per_subscription() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let subs = [
        subscription("a", &receiver.url("/a"), ""),
        subscription("b", &receiver.url("/b"), ""),
    ]
    .concat();
    let mut first = Process::spawn(&nats.url(), &subs, &[]).ready().await;
    let mut second = Process::spawn(&nats.url(), &subs, &[]).ready().await;
    let js = common::jetstream(&nats.url()).await;
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(publish(&js, "published").await.id.to_string());
    }
    for path in ["/a", "/b"] {
        receiver.wait_for(path, 50).await;
    }
    // Both stop gracefully, so nothing in flight could still arrive afterwards.
    assert_eq!(first.terminate(), Some(0));
    assert_eq!(second.terminate(), Some(0));
    for path in ["/a", "/b"] {
        let mut got: Vec<String> = receiver
            .seen_at(path)
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        got.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(got, want, "each event exactly once at {path}");
    }
}

#[tokio::test]
async fn kill_9_during_deliveries_loses_nothing_and_duplicates_only_what_was_in_flight() {
    let nats = NatsServer::start();
    // A slowish endpoint, so deliveries are in flight when the process dies.
    let receiver = Receiver::start(|_, _| Reply::Status(200)).await;
    let slow = Receiver::start(|_, n| {
        if n % 3 == 0 {
            Reply::Hold
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let subs = [
        subscription("fast", &receiver.url("/fast"), ", timeout: 2s"),
        subscription(
            "slow",
            &slow.url("/slow"),
            ", max_concurrency: 4, timeout: 2s",
        ),
    ]
    .concat();
    // The killed process's unacknowledged tasks come back after the ack wait
    // (timeout + 10 s).
    let mut doomed = Process::spawn(&nats.url(), &subs, &[]).ready().await;
    let js = common::jetstream(&nats.url()).await;
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(publish(&js, "published").await.id.to_string());
    }
    slow.wait_for("/slow", 4).await;
    doomed.kill_9();
    slow.release();
    let _survivor = Process::spawn(&nats.url(), &subs, &[]).ready().await;
    for (receiver, path, consumer) in [
        (&receiver, "/fast", "deliveries-fast"),
        (&slow, "/slow", "deliveries-slow"),
    ] {
        ic_testkit::eventually(Duration::from_secs(90), "every event delivered", || async {
            let seen: Vec<String> = receiver
                .seen_at(path)
                .iter()
                .map(|r| r.header("webhook-id").to_owned())
                .collect();
            ids.iter().all(|id| seen.contains(id)).then_some(())
        })
        .await;
        // Count only once every task is settled: redeliveries of what the killed
        // process held come back after the ack wait and must be counted too.
        ic_testkit::eventually(
            Duration::from_secs(90),
            "every task acknowledged",
            || async {
                let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
                    .get_stream("IC_DELIVERIES")
                    .await
                    .ok()?
                    .get_consumer(consumer)
                    .await
                    .ok()?;
                let info = consumer.info().await.ok()?;
                (info.num_ack_pending == 0 && info.num_pending == 0).then_some(())
            },
        )
        .await;
        let got: Vec<String> = receiver
            .seen_at(path)
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        let duplicates = got.len() - ids.len();
        assert!(
            duplicates <= 4,
            "{path}: {duplicates} duplicates, more than the 4 calls that can be in flight"
        );
        for id in &got {
            assert!(ids.contains(id), "{path}: unknown webhook-id {id}");
        }
    }
}

#[tokio::test]
async fn an_invalid_subscription_fails_at_start_naming_the_entry_with_exit_code_2() {
    let nats = NatsServer::start();
    let mut process = Process::spawn(
        &nats.url(),
        "- {id: good, url: 'https://a.example/h', secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}\n- {id: broken, url: 'not a url', secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}\n",
        &[],
    );
    let status = process.child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.yaml");
    std::fs::write(
        &file,
        "- {id: broken, url: 'not a url', secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_broadcaster"))
        .env_clear()
        .envs(common::env(&nats.url(), &file, &[]))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"broken\""), "{stderr}");
    assert!(stderr.contains("url"), "{stderr}");
    assert!(
        !stderr.contains("MfKQ"),
        "the secret is never printed: {stderr}"
    );
}

/// `broadcaster healthcheck` (the image's HEALTHCHECK) probes the broadcaster's own
/// `/health`.
#[tokio::test]
async fn the_healthcheck_command_probes_the_broadcasters_own_health() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let running = common::start(
        &nats.url(),
        &subscription("a", &receiver.url("/hook"), ""),
        &[],
    )
    .await;
    let port = running.port;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.yaml");
    std::fs::write(&file, subscription("a", &receiver.url("/hook"), "")).unwrap();
    let env: Vec<(&'static str, String)> = vec![
        ("NATS_URL", nats.url()),
        ("WEBHOOK_SUBSCRIPTIONS_FILE", file.display().to_string()),
        ("BROADCASTER_ALLOW_PRIVATE_TARGETS", "true".to_owned()),
    ];
    let binary = env!("CARGO_BIN_EXE_broadcaster");
    tokio::task::spawn_blocking(move || {
        ic_testkit::assert_healthcheck(binary, "BROADCASTER_PORT", port, &env)
    })
    .await
    .unwrap();
    running.stop().await;
}
