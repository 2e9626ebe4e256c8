//! Reading what services published to JetStream, as their tests check it.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use futures::StreamExt;
use http::HeaderMap;
use serde_json::Value;

/// Every message of `stream` (optionally filtered by subject) as JSON.
pub async fn stream_messages(
    js: &jetstream::Context,
    stream: &str,
    filter_subject: &str,
) -> Vec<(String, HeaderMap, Value)> {
    let stream = js.get_stream(stream).await.expect("stream exists");
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: filter_subject.to_owned(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut consumer = consumer;
    let pending = consumer.info().await.unwrap().num_pending as usize;
    let mut out = Vec::new();
    while out.len() < pending {
        let mut batch = consumer
            .fetch()
            .max_messages(pending - out.len())
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .unwrap();
        let before = out.len();
        while let Some(Ok(m)) = batch.next().await {
            let mut headers = HeaderMap::new();
            if let Some(h) = &m.headers {
                for (k, values) in h.iter() {
                    if let Some(v) = values.first() {
                        headers.insert(
                            http::HeaderName::from_bytes(AsRef::<str>::as_ref(k).as_bytes())
                                .unwrap(),
                            v.as_str().parse().unwrap(),
                        );
                    }
                }
            }
            out.push((
                m.subject.to_string(),
                headers,
                serde_json::from_slice(&m.payload).unwrap_or(Value::Null),
            ));
        }
        if out.len() == before {
            break;
        }
    }
    out
}
