//! The webhook sink of `cargo xtask bench broadcaster`: answers 204 to every POST,
//! counts them and records each event's lag (arrival minus the event's `time`).
//! `GET /stats` → `{"count", "p50_ms", "p99_ms"}`; `POST /reset` clears them.
//!
//! Usage: `bench_sink <port>`.
#![allow(clippy::disallowed_methods)] // a benchmark tool reads its arguments

use std::sync::{Arc, Mutex};

use axum::{
    Json, Router,
    body::Bytes,
    http::StatusCode,
    routing::{get, post},
};
use serde_json::{Value, json};

#[derive(Default)]
struct Stats {
    count: u64,
    lags_ms: Vec<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("a port");
    let stats: Arc<Mutex<Stats>> = Arc::default();
    let (record, report, reset) = (stats.clone(), stats.clone(), stats);
    let router = Router::new()
        .route(
            "/stats",
            get(move || {
                let report = report.clone();
                async move {
                    let stats = report.lock().unwrap();
                    let mut lags = stats.lags_ms.clone();
                    lags.sort_by(f64::total_cmp);
                    Json(json!({
                        "count": stats.count,
                        "p50_ms": percentile(&lags, 50.0),
                        "p99_ms": percentile(&lags, 99.0),
                    }))
                }
            }),
        )
        .route(
            "/reset",
            post(move || {
                let reset = reset.clone();
                async move {
                    *reset.lock().unwrap() = Stats::default();
                    StatusCode::NO_CONTENT
                }
            }),
        )
        .fallback(move |body: Bytes| {
            let record = record.clone();
            async move {
                let lag = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["time"].as_str().map(str::to_owned))
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                    .map(|t| {
                        (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                            .num_microseconds()
                            .unwrap_or_default() as f64
                            / 1000.0
                    });
                let mut stats = record.lock().unwrap();
                stats.count += 1;
                if let Some(lag) = lag {
                    stats.lags_ms.push(lag);
                }
                StatusCode::NO_CONTENT
            }
        });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    axum::serve(listener, router).await.expect("serve");
}
