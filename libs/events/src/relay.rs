//! Publishes outbox rows to JetStream: wakes on the commit notification and also polls,
//! publishes a batch pipelined, deletes what JetStream acknowledged, keeps the rest for
//! the next round, and backs off while NATS (or Postgres) is down.

use std::time::{Duration, Instant};

use async_nats::{HeaderMap, jetstream};
use bytes::Bytes;
use prometheus_client::{
    metrics::{counter::Counter, histogram::Histogram},
    registry::Registry,
};
use sqlx::{AssertSqlSafe, PgPool, Row, postgres::PgListener};
use tokio_util::sync::CancellationToken;

use crate::{NATS_MSG_ID, Outbox, streams};

/// Relay tuning.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows published per round.
    pub batch_size: i64,
    /// Poll interval when no notification arrives.
    pub poll_interval: Duration,
    /// Longest wait between attempts while a dependency is down.
    pub max_backoff: Duration,
    /// How long a publish may wait for JetStream's acknowledgement.
    pub ack_timeout: Duration,
    /// How long shutdown may spend flushing what is left.
    pub flush_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            poll_interval: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(5),
            flush_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a round did not publish everything.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Postgres failed.
    #[error("outbox database error")]
    Database(#[from] sqlx::Error),
    /// NATS / JetStream failed.
    #[error("publishing to JetStream failed: {0}")]
    Publish(String),
}

/// The outbox relay of one service.
#[derive(Debug, Clone)]
pub struct Relay {
    pool: PgPool,
    jetstream: jetstream::Context,
    outbox: Outbox,
    config: RelayConfig,
    metrics: RelayMetrics,
}

/// What the relay published, how late, and how often a round failed.
#[derive(Debug, Clone)]
struct RelayMetrics {
    published: Counter,
    failed_rounds: Counter,
    lag_seconds: Histogram,
}

impl Default for RelayMetrics {
    fn default() -> Self {
        Self {
            published: Counter::default(),
            failed_rounds: Counter::default(),
            lag_seconds: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
        }
    }
}

impl Relay {
    /// A relay for `outbox`.
    pub fn new(
        pool: PgPool,
        client: async_nats::Client,
        outbox: Outbox,
        config: RelayConfig,
    ) -> Self {
        let mut jetstream = jetstream::new(client);
        jetstream.set_timeout(config.ack_timeout);
        Self {
            pool,
            jetstream,
            outbox,
            config,
            metrics: RelayMetrics::default(),
        }
    }

    /// Registers `outbox_published_total`, `outbox_relay_failures_total` (rounds that
    /// failed: Postgres or JetStream down) and `outbox_lag_seconds` (from the commit
    /// that wrote a message to JetStream's acknowledgement of it).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "outbox_published",
            "Outbox messages published to JetStream (and removed from the outbox)",
            self.metrics.published.clone(),
        );
        registry.register(
            "outbox_relay_failures",
            "Relay rounds that failed (Postgres or JetStream unavailable); the rows stay for the next round",
            self.metrics.failed_rounds.clone(),
        );
        registry.register(
            "outbox_lag_seconds",
            "Time from the commit that wrote an outbox message to JetStream's acknowledgement",
            self.metrics.lag_seconds.clone(),
        );
    }

    /// Publishes one batch; returns how many rows were published and removed.
    pub async fn relay_once(&self) -> Result<usize, RelayError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT seq, message_id, subject, payload, headers, extract(epoch FROM clock_timestamp() - created_at)::float8 AS age FROM {} ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
            self.outbox.table()
        )))
        .bind(self.config.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let selected = Instant::now();
        let mut pending = Vec::with_capacity(rows.len());
        let mut failure = None;
        for row in &rows {
            let seq: i64 = row.try_get("seq")?;
            let age: f64 = row.try_get("age")?;
            let id: uuid::Uuid = row.try_get("message_id")?;
            let subject: String = row.try_get("subject")?;
            let payload: serde_json::Value = row.try_get("payload")?;
            let extra: sqlx::types::Json<std::collections::BTreeMap<String, String>> =
                row.try_get("headers")?;
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MSG_ID, id.to_string().as_str());
            for (k, v) in &extra.0 {
                headers.insert(k.as_str(), v.as_str());
            }
            let body = Bytes::from(serde_json::to_vec(&payload).unwrap_or_default());
            match self
                .jetstream
                .publish_with_headers(subject, headers, body)
                .await
            {
                Ok(ack) => pending.push((seq, age, ack)),
                Err(err) => {
                    failure = Some(err.to_string());
                    break;
                }
            }
        }
        let mut published = Vec::with_capacity(pending.len());
        let mut lags = Vec::with_capacity(pending.len());
        for (seq, age, ack) in pending {
            match ack.await {
                Ok(_) => {
                    published.push(seq);
                    lags.push(age + selected.elapsed().as_secs_f64());
                }
                Err(err) => failure = Some(err.to_string()),
            }
        }
        if !published.is_empty() {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {} WHERE seq = ANY($1)",
                self.outbox.table()
            )))
            .bind(&published)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(reason) = &failure {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {} SET attempts = attempts + 1, last_error = left($2, 500) WHERE seq = (SELECT min(seq) FROM {} WHERE NOT (seq = ANY($1)))",
                self.outbox.table(),
                self.outbox.table()
            )))
            .bind(&published)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.metrics.published.inc_by(published.len() as u64);
        for lag in lags {
            self.metrics.lag_seconds.observe(lag.max(0.0));
        }
        match failure {
            Some(reason) => Err(RelayError::Publish(reason)),
            None => Ok(published.len()),
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await.ok()?;
        listener.listen(self.outbox.channel()).await.ok()?;
        Some(listener)
    }

    /// Runs until `token` is cancelled, then flushes what is left (bounded by
    /// `flush_timeout`).
    pub async fn run(self, token: CancellationToken) {
        let mut streams_ready = false;
        let mut listener: Option<PgListener> = None;
        let mut backoff = Duration::from_millis(100);
        while !token.is_cancelled() {
            if !streams_ready {
                match streams::ensure(&self.jetstream).await {
                    Ok(()) => streams_ready = true,
                    Err(err) => {
                        tracing::warn!(error = %err, "JetStream streams not ready; retrying");
                        self.pause(&token, &mut backoff).await;
                        continue;
                    }
                }
            }
            if listener.is_none() {
                listener = self.listen().await;
            }
            match self.relay_once().await {
                Ok(n) if i64::try_from(n).unwrap_or(i64::MAX) >= self.config.batch_size => {
                    backoff = Duration::from_millis(100);
                }
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(
                            published = n,
                            table = self.outbox.table(),
                            "outbox relayed"
                        );
                    }
                    backoff = Duration::from_millis(100);
                    let wait = async {
                        match listener.as_mut() {
                            Some(l) => l.recv().await.map(drop),
                            None => {
                                std::future::pending::<()>().await;
                                Ok(())
                            }
                        }
                    };
                    tokio::select! {
                        () = token.cancelled() => {}
                        res = tokio::time::timeout(self.config.poll_interval, wait) => {
                            if let Ok(Err(_)) = res { listener = None; }
                        }
                    }
                }
                Err(err) => {
                    self.metrics.failed_rounds.inc();
                    tracing::warn!(error = %err, table = self.outbox.table(), "outbox relay round failed; retrying");
                    if matches!(err, RelayError::Database(_)) {
                        listener = None;
                    }
                    self.pause(&token, &mut backoff).await;
                }
            }
        }
        let flush = async {
            while let Ok(n) = self.relay_once().await {
                if n == 0 {
                    break;
                }
            }
        };
        if tokio::time::timeout(self.config.flush_timeout, flush)
            .await
            .is_err()
        {
            tracing::warn!(
                table = self.outbox.table(),
                "outbox flush on shutdown timed out; rows stay for the next start"
            );
        }
    }

    async fn pause(&self, token: &CancellationToken, backoff: &mut Duration) {
        let jitter = Duration::from_millis(rand::random_range(
            0..=backoff.as_millis().min(1000) as u64 / 4,
        ));
        tokio::select! {
            () = token.cancelled() => {}
            () = tokio::time::sleep(*backoff + jitter) => {}
        }
        *backoff = (*backoff * 2).min(self.config.max_backoff);
    }
}
