//! The delivery tasks in `IC_DELIVERIES`: their subjects, ids and consumers, named once
//! for the fan-out that writes them, the deliverer that works them and the dead letters
//! that replay them.

/// The durable consumer of one subscription.
pub fn consumer_name(subscription_id: &str) -> String {
    format!("deliveries-{subscription_id}")
}

/// The subject of one subscription's tasks.
pub fn task_subject(subscription_id: &str) -> String {
    format!("deliveries.{subscription_id}")
}

/// The `Nats-Msg-Id` of a task: one per event and subscription, so a redelivered event
/// never creates a second task.
pub fn task_id(event_id: &str, subscription_id: &str) -> String {
    format!("{event_id}:{subscription_id}")
}
