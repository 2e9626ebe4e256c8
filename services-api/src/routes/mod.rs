//! One module per resource, each with `router()`.

pub mod categories;
pub mod featured;
pub mod public;
pub mod services;

use ic_http::paging::{Page, Pagination};
use serde::Serialize;

/// The JSON snapshot of an entity for events and audit records.
pub fn snapshot<T: Serialize>(entity: &T) -> Option<serde_json::Value> {
    serde_json::to_value(entity).ok()
}

/// `{"<key>": [...], "pagination": {...}}` for the services lists.
#[derive(Debug, Serialize)]
pub struct ServicesPage<T> {
    /// Items.
    pub services: Vec<T>,
    /// Paging.
    pub pagination: Pagination,
}

impl<T> ServicesPage<T> {
    /// A page of items.
    pub fn new(services: Vec<T>, page: Page, total: i64) -> Self {
        Self {
            services,
            pagination: page.pagination(total),
        }
    }
}

pub use ic_audit::AuditQuery;

/// Reads an entity's audit history, newest first (`ic_audit::audit_endpoint`).
pub async fn audit_history(
    state: &crate::AppState,
    entity_type: &'static str,
    id: uuid::Uuid,
    q: AuditQuery,
) -> Result<ic_http::extract::Json<serde_json::Value>, crate::error::Error> {
    let answer = ic_audit::audit_endpoint(
        &state.jetstream,
        state.loki.as_ref(),
        crate::SERVICE_NAME,
        entity_type,
        id,
        q,
    )
    .await?;
    Ok(ic_http::extract::Json(answer))
}
