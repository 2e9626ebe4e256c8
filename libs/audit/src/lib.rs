//! Audit records (`shared/spec/README.md`, "Audit"): every create/update/delete/state
//! change is recorded, through the same outbox as its domain event, on the JetStream
//! stream `IC_AUDIT` under `audit.<app id>.<entity_type>.<entity_id>`; from there it is
//! shipped to Loki. Nothing is ever written to an audit table in Postgres. Requests to
//! the admin API are recorded too, by admin-gateway ([`RequestAuditor`]).

mod history;
pub mod loki;
mod record;
mod recorder;
mod request;

pub use history::{
    AuditHistoryError, AuditQuery, HistoryPage, HistoryQuery, audit_endpoint,
    history_from_jetstream,
};
pub use record::{AuditRecord, DataSnapshot, OperationType, audit_subject, loki_job};
pub use recorder::{Change, ChangeRecorder, context_headers};
pub use request::{
    AuditorConfig, REDACTED, RequestAuditor, RequestRecord, is_sensitive, redact, redact_query,
};
