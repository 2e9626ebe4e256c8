//! A small webhook receiver for local development (`cargo xtask up` runs it on 8090):
//! prints every delivery it gets and whether it verifies as a subscriber's would, with
//! the official Standard Webhooks library (signature, and a timestamp within 5 minutes).
//!
//! Usage: `webhook_receiver` with `WEBHOOK_RECEIVER_PORT` (default 8090) and
//! `WEBHOOK_SECRET` (`whsec_…`).
#![allow(clippy::disallowed_methods)] // a dev tool reads its environment

use std::net::SocketAddr;

use axum::{Router, body::Bytes, http::HeaderMap, http::StatusCode};
use standardwebhooks::Webhook;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("WEBHOOK_RECEIVER_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8090);
    let secret = std::env::var("WEBHOOK_SECRET").expect("WEBHOOK_SECRET: a whsec_… secret");
    let webhook =
        std::sync::Arc::new(Webhook::new(&secret).expect("WEBHOOK_SECRET: a whsec_… secret"));
    let router = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let webhook = webhook.clone();
        async move {
            let id = header(&headers, "webhook-id");
            let verified = webhook.verify(&body, &headers);
            let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            println!(
                "webhook {} {} subject={} webhook-id={id} signature={}",
                event["time"].as_str().unwrap_or("?"),
                event["type"].as_str().unwrap_or("?"),
                event["subject"].as_str().unwrap_or("?"),
                match &verified {
                    Ok(()) => "verified".to_owned(),
                    Err(err) => format!("INVALID ({err})"),
                },
            );
            if verified.is_ok() {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::UNAUTHORIZED
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("bind the receiver's port");
    println!("webhook receiver listening on http://127.0.0.1:{port}");
    axum::serve(listener, router).await.expect("serve");
}
