//! The credit puller against a real nats-server: a task arrives with the permit it was
//! asked for under, and an expired request gives back the permits of the tasks it did
//! not bring (otherwise an idle subscription would starve itself), and one the server
//! never answers (a restart forgets it) is given up with its permits freed.

mod common;

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::consumer::{AckPolicy, pull};
use broadcaster::pull::{Pulled, Puller};
use ic_events::streams::IC_DELIVERIES;
use ic_testkit::NatsServer;
use tokio::sync::Semaphore;

async fn puller(js: &async_nats::jetstream::Context) -> Puller {
    ic_events::streams::ensure_all(js, ic_events::streams::broadcaster())
        .await
        .unwrap();
    js.get_stream(IC_DELIVERIES)
        .await
        .unwrap()
        .create_consumer(pull::Config {
            durable_name: Some("deliveries-p".into()),
            filter_subject: "deliveries.p".into(),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    Puller::new(js, IC_DELIVERIES, "deliveries-p")
        .await
        .unwrap()
        .with_expiry(Duration::from_millis(200))
}

/// Drives the puller until its requests in flight are settled by the server's expiry
/// answers (not by the puller giving them up for lost, and without any task).
async fn settle(puller: &mut Puller) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while puller.outstanding() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "requests never settled"
        );
        // An expiry answer is handled inside `next`, which then keeps waiting.
        match tokio::time::timeout(Duration::from_millis(50), puller.next()).await {
            Err(_) => {}
            Ok(Pulled::Idle) => panic!("the expiry answer was missed; requests given up for lost"),
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn expired_requests_free_their_permits_and_tasks_come_with_theirs() {
    let nats = NatsServer::start();
    let js = common::jetstream(&nats.url()).await;
    let mut puller = puller(&js).await;
    let permits = Arc::new(Semaphore::new(3));

    // Nothing to pull: the request expires and its three permits come back.
    let asked: Vec<_> = (0..3)
        .map(|_| permits.clone().try_acquire_owned().unwrap())
        .collect();
    puller.request(asked).await.unwrap();
    assert_eq!(puller.outstanding(), 3);
    assert_eq!(permits.available_permits(), 0);
    settle(&mut puller).await;
    assert_eq!(permits.available_permits(), 3);

    // One task, three asked for: the task carries a permit, and the two unfilled
    // ones come back when the request expires.
    js.publish("deliveries.p", "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let asked: Vec<_> = (0..3)
        .map(|_| permits.clone().try_acquire_owned().unwrap())
        .collect();
    puller.request(asked).await.unwrap();
    let Pulled::Task(task, Some(permit)) = puller.next().await else {
        panic!("expected the task with its permit");
    };
    assert_eq!(&task.payload[..], b"{}");
    task.ack().await.unwrap();
    settle(&mut puller).await;
    assert_eq!(permits.available_permits(), 2, "the task still holds one");
    drop(permit);
    assert_eq!(permits.available_permits(), 3);
}

#[tokio::test]
async fn a_request_the_server_never_answers_gives_its_permits_back() {
    let mut nats = NatsServer::start();
    let js = common::jetstream(&nats.url()).await;
    let mut puller = puller(&js).await.with_expiry(Duration::from_secs(1));
    let permits = Arc::new(Semaphore::new(2));
    let asked: Vec<_> = (0..2)
        .map(|_| permits.clone().try_acquire_owned().unwrap())
        .collect();
    puller.request(asked).await.unwrap();
    // The server goes away before the request expires: no answer will ever come.
    nats.stop();
    let pulled = tokio::time::timeout(Duration::from_secs(30), puller.next())
        .await
        .expect("the request is given up for lost");
    assert!(matches!(pulled, Pulled::Idle), "{pulled:?}");
    assert_eq!(puller.outstanding(), 0);
    assert_eq!(permits.available_permits(), 2);
}
