//! The transactional outbox: messages are inserted in the caller's transaction, next to
//! the change they describe, so a committed change always yields its message and a
//! rolled-back one never does. The [`crate::Relay`] publishes them afterwards.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

/// One service's outbox table and its wake-up channel.
///
/// The table (created by that service's migrations) has the columns
/// `seq bigint identity, message_id uuid unique, subject text, payload jsonb,
/// headers jsonb, created_at timestamptz, attempts int, last_error text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outbox {
    table: &'static str,
    channel: &'static str,
}

impl Outbox {
    /// An outbox in `table` (schema-qualified, e.g. `services.outbox`), notifying
    /// `channel` on commit.
    ///
    /// # Panics
    /// When either name is not a plain SQL identifier (they are compile-time constants).
    pub const fn new(table: &'static str, channel: &'static str) -> Self {
        assert!(is_identifier(table.as_bytes(), true) && is_identifier(channel.as_bytes(), false));
        Self { table, channel }
    }

    /// The schema-qualified table name.
    pub const fn table(&self) -> &'static str {
        self.table
    }

    /// The LISTEN/NOTIFY channel.
    pub const fn channel(&self) -> &'static str {
        self.channel
    }

    /// Inserts `message` in the caller's transaction and notifies the relay (Postgres
    /// delivers the notification only if the transaction commits).
    pub async fn enqueue(
        &self,
        conn: &mut PgConnection,
        message: &OutboxMessage,
    ) -> Result<(), sqlx::Error> {
        let headers =
            serde_json::to_value(&message.headers).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (message_id, subject, payload, headers) VALUES ($1, $2, $3, $4)",
            self.table
        )))
        .bind(message.id)
        .bind(&message.subject)
        .bind(&message.payload)
        .bind(headers)
        .execute(&mut *conn)
        .await?;
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(self.channel)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Messages waiting to be relayed.
    pub async fn backlog(&self, conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            self.table
        )))
        .fetch_one(conn)
        .await
    }
}

const fn is_identifier(bytes: &[u8], allow_dot: bool) -> bool {
    if bytes.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || (allow_dot && b == b'.'))
        {
            return false;
        }
        i += 1;
    }
    true
}

/// A message to publish: its id (the `Nats-Msg-Id`), subject, JSON payload and extra
/// NATS headers (trace context, correlation id).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    /// Message id; JetStream de-duplicates on it.
    pub id: Uuid,
    /// NATS subject.
    pub subject: String,
    /// JSON payload.
    pub payload: Value,
    /// Extra NATS headers.
    pub headers: BTreeMap<String, String>,
}
