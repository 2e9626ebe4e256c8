use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OperationType {
    /// Created.
    Insert,
    /// Changed (including state changes such as publish).
    Update,
    /// Deleted (soft or hard).
    Delete,
}

impl OperationType {
    /// As written in records and Loki labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "INSERT",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }
}

/// The entity before and after the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSnapshot {
    /// `null` for inserts.
    pub before: Option<Value>,
    /// `null` for hard deletes.
    pub after: Option<Value>,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unique id (also the `Nats-Msg-Id`).
    pub audit_id: Uuid,
    /// e.g. `service`.
    pub entity_type: String,
    /// The entity's id.
    pub entity_id: String,
    /// INSERT | UPDATE | DELETE.
    pub operation_type: OperationType,
    /// When the change was made.
    pub audit_timestamp: DateTime<Utc>,
    /// Who made it (`X-User-ID`).
    pub user_id: String,
    /// The request's correlation id.
    pub correlation_id: String,
    /// The request's trace id.
    pub trace_id: String,
    /// Before/after.
    pub data_snapshot: DataSnapshot,
    /// development | staging | production.
    pub environment: String,
    /// The producing app id.
    pub service: String,
    /// The action in domain words (`published`, `deleted`...).
    #[serde(default)]
    pub action: String,
}

/// `audit.<app id>.<entity_type>.<entity_id>`.
pub fn audit_subject(app_id: &str, entity_type: &str, entity_id: &str) -> String {
    format!("audit.{app_id}.{entity_type}.{entity_id}")
}

/// The Loki `job` label of a domain: `services-audit`, `content-audit`, `admin-audit`.
pub fn loki_job(domain: &str) -> String {
    format!("{domain}-audit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_jobs_follow_the_spec() {
        assert_eq!(
            audit_subject("services-api", "service", "7b1"),
            "audit.services-api.service.7b1"
        );
        assert_eq!(loki_job("services"), "services-audit");
        assert_eq!(
            serde_json::to_string(&OperationType::Insert).unwrap(),
            "\"INSERT\""
        );
    }
}
