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

/// Query of the audit endpoints.
#[derive(Debug, serde::Deserialize)]
pub struct AuditQuery {
    /// Inclusive lower bound (RFC 3339).
    pub start: Option<chrono::DateTime<chrono::Utc>>,
    /// Exclusive upper bound (RFC 3339).
    pub end: Option<chrono::DateTime<chrono::Utc>>,
    /// 1-based page.
    pub page: Option<u32>,
    /// Page size (1..100).
    pub limit: Option<u32>,
}

/// Reads an entity's audit history, newest first, from the retained `IC_AUDIT` stream.
pub async fn audit_history(
    state: &crate::AppState,
    entity_type: &'static str,
    id: uuid::Uuid,
    q: AuditQuery,
) -> Result<ic_http::extract::Json<serde_json::Value>, crate::error::Error> {
    let page = Page::new(q.page, q.limit, 100)?;
    let end = q.end.unwrap_or_else(chrono::Utc::now);
    if let Some(start) = q.start
        && start >= end
    {
        let field = if q.end.is_some() { "end" } else { "start" };
        return Err(crate::error::Error::validation(
            field,
            "start must be before end (or now)",
        ));
    }
    if state.loki.is_some()
        && let Some(start) = q.start
        && end - start > ic_audit::loki::MAX_LOKI_RANGE
    {
        return Err(crate::error::Error::validation(
            "start",
            "audit history is read from Loki: ask for at most 30 days at a time",
        ));
    }
    let offset = usize::try_from(page.offset()).unwrap_or(usize::MAX);
    let query = ic_audit::HistoryQuery {
        app_id: crate::SERVICE_NAME,
        entity_type,
        entity_id: id.to_string(),
        start: q.start,
        end: q.end,
        offset,
        limit: page.limit as usize,
    };
    let (history, source) = match &state.loki {
        Some(loki) => (loki.history(&query).await?, "loki"),
        None => (
            ic_audit::history_from_jetstream(&state.jetstream, &query).await?,
            "jetstream",
        ),
    };
    Ok(ic_http::extract::Json(serde_json::json!({
        "audit_records": history.records,
        "pagination": page.pagination(i64::try_from(history.total).unwrap_or(i64::MAX)),
        "source": source,
    })))
}
