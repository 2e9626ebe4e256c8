//! The NATS floor of `cargo xtask bench broadcaster`: the JetStream work that
//! `shared/spec/broadcaster.md` prescribes for every delivery, with no HTTP call at all.
//! Events are pulled from `IC_EVENTS`, one task per event is published to
//! `IC_DELIVERIES` with its `Nats-Msg-Id` and its store acknowledgement awaited, the event
//! is acknowledged, and the task is pulled and acknowledged. The rate it reaches is what
//! any broadcaster built on that design can reach on this machine, however fast its HTTP
//! client is.
//!
//! Usage: `nats_floor <nats url> <n> <subject domain>` (the `n` events must already be in
//! `IC_EVENTS` on `ic.<domain>.>`); prints the tasks acknowledged per second.
#![allow(clippy::disallowed_methods)] // a benchmark tool reads its arguments

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::{
    HeaderMap,
    jetstream::{
        self,
        consumer::{AckPolicy, pull},
    },
};
use futures::StreamExt;
use ic_events::streams::{IC_DELIVERIES, IC_EVENTS};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args[1].parse().expect("a count");
    let domain = &args[2];
    let client = async_nats::connect(&args[0]).await.expect("NATS");
    let js = jetstream::new(client);
    let events = js
        .get_stream(IC_EVENTS)
        .await
        .expect("IC_EVENTS")
        .get_or_create_consumer(
            "floor-workers",
            pull::Config {
                durable_name: Some("floor-workers".into()),
                filter_subject: format!("ic.{domain}.>"),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(10),
                max_ack_pending: 10_000,
                ..Default::default()
            },
        )
        .await
        .expect("the event consumer");
    let task_subject = format!("deliveries.floor-{domain}");
    let tasks = js
        .get_stream(IC_DELIVERIES)
        .await
        .expect("IC_DELIVERIES")
        .get_or_create_consumer(
            "floor-deliveries",
            pull::Config {
                durable_name: Some("floor-deliveries".into()),
                filter_subject: task_subject.clone(),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(25),
                max_ack_pending: 100_000,
                ..Default::default()
            },
        )
        .await
        .expect("the task consumer");

    let fan_out = {
        let js = js.clone();
        async move {
            let messages = events
                .stream()
                .max_messages_per_batch(512)
                .messages()
                .await
                .expect("pulling events");
            messages
                .take(n)
                .for_each_concurrent(256, |message| {
                    let js = js.clone();
                    let subject = task_subject.clone();
                    async move {
                        let message = message.expect("an event");
                        let mut headers = HeaderMap::new();
                        let id = message.info().map(|i| i.stream_sequence).unwrap_or(0);
                        headers.insert("Nats-Msg-Id", format!("{id}:floor").as_str());
                        js.publish_with_headers(subject, headers, message.payload.clone())
                            .await
                            .expect("publishing a task")
                            .await
                            .expect("the task stored");
                        message.ack().await.expect("acknowledging the event");
                    }
                })
                .await;
        }
    };
    let done = Arc::new(AtomicUsize::new(0));
    let deliver = {
        let done = done.clone();
        async move {
            let messages = tasks
                .stream()
                .max_messages_per_batch(32)
                .messages()
                .await
                .expect("pulling tasks");
            let mut started = None;
            messages
                .take(n)
                .for_each_concurrent(32, |message| {
                    started.get_or_insert_with(Instant::now);
                    let done = done.clone();
                    async move {
                        message
                            .expect("a task")
                            .ack()
                            .await
                            .expect("acknowledging the task");
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .await;
            started.map(|t| t.elapsed())
        }
    };
    let (_, elapsed) = tokio::join!(fan_out, deliver);
    let seconds = elapsed.unwrap_or_default().as_secs_f64().max(1e-3);
    println!("{:.0}", done.load(Ordering::Relaxed) as f64 / seconds);
}
