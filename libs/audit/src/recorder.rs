use std::collections::BTreeMap;

use ic_events::{CloudEvent, Outbox, OutboxMessage};
use ic_http::RequestContext;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{AuditRecord, DataSnapshot, OperationType, audit_subject};

/// One change to record: the entity, what happened, and the snapshots.
#[derive(Debug, Clone)]
pub struct Change {
    /// e.g. `service`.
    pub entity_type: &'static str,
    /// The entity id.
    pub entity_id: Uuid,
    /// Event action: `created`, `updated`, `published`...
    pub action: &'static str,
    /// INSERT | UPDATE | DELETE.
    pub operation: OperationType,
    /// The entity before (None for creates).
    pub before: Option<Value>,
    /// The entity after.
    pub after: Option<Value>,
}

/// The NATS headers that carry a request's context into the messages it causes: its
/// trace context and correlation id.
pub fn context_headers(ctx: &RequestContext) -> BTreeMap<String, String> {
    let mut headers: BTreeMap<String, String> = ctx
        .trace
        .header_pairs()
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    headers.insert(
        ic_http::headers::X_CORRELATION_ID.to_owned(),
        ctx.correlation_id.to_string(),
    );
    headers
}

/// Writes, for each change, its CloudEvent and its audit record into the outbox, in the
/// caller's transaction.
#[derive(Debug, Clone)]
pub struct ChangeRecorder {
    app_id: &'static str,
    domain: &'static str,
    environment: String,
    outbox: Outbox,
}

impl ChangeRecorder {
    /// A recorder for `app_id` (e.g. `services-api`) whose events are `ic.<domain>.…`.
    pub fn new(
        app_id: &'static str,
        domain: &'static str,
        environment: String,
        outbox: Outbox,
    ) -> Self {
        Self {
            app_id,
            domain,
            environment,
            outbox,
        }
    }

    /// The outbox written to.
    pub fn outbox(&self) -> Outbox {
        self.outbox
    }

    /// Records `change` made in the request `ctx`: one event on `IC_EVENTS` and one audit
    /// record on `IC_AUDIT`, both through the outbox of `conn`'s transaction.
    pub async fn record(
        &self,
        conn: &mut PgConnection,
        ctx: &RequestContext,
        change: Change,
    ) -> Result<(), sqlx::Error> {
        let traceparent = ctx.trace.traceparent();
        let headers = context_headers(ctx);

        let data = change
            .after
            .clone()
            .or_else(|| change.before.clone())
            .unwrap_or(Value::Null);
        let mut event = CloudEvent::new(
            self.app_id,
            self.domain,
            change.entity_type,
            change.action,
            change.entity_id,
            data,
        );
        event.correlationid = Some(ctx.correlation_id.to_string());
        event.traceparent = Some(traceparent);
        let subject = CloudEvent::nats_subject(self.domain, change.entity_type, change.action);
        self.outbox
            .enqueue(
                conn,
                &OutboxMessage {
                    id: event.id,
                    subject,
                    payload: serde_json::to_value(&event)
                        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
                    headers: headers.clone(),
                },
            )
            .await?;

        let record = AuditRecord {
            audit_id: Uuid::now_v7(),
            entity_type: change.entity_type.to_owned(),
            entity_id: change.entity_id.to_string(),
            operation_type: change.operation,
            audit_timestamp: event.time,
            user_id: ctx.user_id().to_owned(),
            correlation_id: ctx.correlation_id.to_string(),
            trace_id: ctx.trace.trace_id.to_string(),
            data_snapshot: DataSnapshot {
                before: change.before,
                after: change.after,
            },
            environment: self.environment.clone(),
            service: self.app_id.to_owned(),
            action: change.action.to_owned(),
        };
        self.outbox
            .enqueue(
                conn,
                &OutboxMessage {
                    id: record.audit_id,
                    subject: audit_subject(self.app_id, &record.entity_type, &record.entity_id),
                    payload: serde_json::to_value(&record)
                        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
                    headers,
                },
            )
            .await
    }
}
