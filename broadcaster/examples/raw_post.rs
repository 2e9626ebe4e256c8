//! The raw peer of `cargo xtask bench broadcaster`: a bare hyper client POSTing the same
//! payload `n` times at a fixed concurrency (no NATS, no signing, no acks) and printing
//! the rate.
//!
//! Usage: `raw_post <url> <n> <concurrency> <payload file>`.
#![allow(clippy::disallowed_methods)] // a benchmark tool reads its arguments

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url: hyper::Uri = args[0].parse().expect("a URL");
    let n: usize = args[1].parse().expect("a count");
    let concurrency: usize = args[2].parse().expect("a concurrency");
    let payload = Bytes::from(std::fs::read(&args[3]).expect("the payload file"));
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, payload, next) =
                (client.clone(), url.clone(), payload.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let request = hyper::Request::post(url.clone())
                        .header("content-type", "application/json")
                        .body(Full::new(payload.clone()))
                        .expect("a request");
                    let response = client.request(request).await.expect("the sink answers");
                    assert!(response.status().is_success());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a worker");
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{:.1}", n as f64 / seconds);
}
