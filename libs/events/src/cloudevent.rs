use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The prefix of every event `type`.
pub const TYPE_PREFIX: &str = "org.internationalcenter";

/// A CloudEvents 1.0 event in structured JSON mode, with the platform's extensions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always "1.0".
    pub specversion: String,
    /// Unique event id (also the `Nats-Msg-Id`).
    pub id: Uuid,
    /// The producer, e.g. `/services-api`.
    pub source: String,
    /// e.g. `org.internationalcenter.services.service.published`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The entity id.
    pub subject: String,
    /// When the change happened.
    pub time: DateTime<Utc>,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// The entity after the change.
    pub data: Value,
    /// Extension: the correlation id of the request that caused the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlationid: Option<String>,
    /// Extension: W3C trace context of the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl CloudEvent {
    /// The NATS subject of a domain event: `ic.<domain>.<entity>.<action>`.
    pub fn nats_subject(domain: &str, entity: &str, action: &str) -> String {
        format!("ic.{domain}.{entity}.{action}")
    }

    /// The CloudEvents type: `org.internationalcenter.<domain>.<entity>.<action>`.
    pub fn type_name(domain: &str, entity: &str, action: &str) -> String {
        format!("{TYPE_PREFIX}.{domain}.{entity}.{action}")
    }

    /// A new event.
    pub fn new(
        app_id: &str,
        domain: &str,
        entity: &str,
        action: &str,
        entity_id: impl ToString,
        data: Value,
    ) -> Self {
        Self {
            specversion: "1.0".into(),
            id: Uuid::now_v7(),
            source: format!("/{app_id}"),
            event_type: Self::type_name(domain, entity, action),
            subject: entity_id.to_string(),
            time: Utc::now(),
            datacontenttype: "application/json".into(),
            data,
            correlationid: None,
            traceparent: None,
        }
    }

    /// The NATS subject this event is published on, derived from its type.
    pub fn subject_for_type(&self) -> Option<String> {
        self.event_type
            .strip_prefix(TYPE_PREFIX)
            .and_then(|rest| rest.strip_prefix('.'))
            .map(|rest| format!("ic.{rest}"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_event_serialises_as_structured_cloudevents_json() {
        let mut event = CloudEvent::new(
            "services-api",
            "services",
            "service",
            "published",
            "abc",
            json!({"x": 1}),
        );
        event.correlationid = Some("c".into());
        let v = serde_json::to_value(&event).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(
            v["type"],
            "org.internationalcenter.services.service.published"
        );
        assert_eq!(v["source"], "/services-api");
        assert_eq!(v["subject"], "abc");
        assert_eq!(v["correlationid"], "c");
        assert!(v.get("traceparent").is_none());
        assert_eq!(
            event.subject_for_type().unwrap(),
            "ic.services.service.published"
        );
        let back: CloudEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, event);
    }
}
