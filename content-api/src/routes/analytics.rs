//! Access analytics (admin): one file's access log with its totals, and the library's
//! summary, top files and access pattern over time (`shared/spec/content-api.md`).

use axum::{Router, extract::State, routing::get};
use ic_http::{
    context::Actor,
    extract::{Json, Path, Query},
    paging::Page,
};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    AppState,
    db::{self, access_log::Window},
    domain::{
        AccessType,
        inputs::{DateBound, window},
    },
    error::Error,
};

/// Largest access-log page.
const MAX_LIMIT: u32 = 200;

/// The analytics routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/api/v1/content/{id}/access-log", get(get_access_log))
        .route("/admin/api/v1/content/analytics", get(get_analytics))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessLogQuery {
    page: Option<u32>,
    limit: Option<u32>,
    start_date: Option<DateBound>,
    end_date: Option<DateBound>,
    access_type: Option<AccessType>,
}

async fn get_access_log(
    State(state): State<AppState>,
    _actor: Actor,
    Path(id): Path<Uuid>,
    Query(q): Query<AccessLogQuery>,
) -> Result<Json<Value>, Error> {
    let page = Page::new(q.page, q.limit, MAX_LIMIT)?;
    let (start, end) = window(q.start_date, q.end_date, 366)?;
    if db::content::get(&state.pool, id).await?.is_none() {
        return Err(Error::NotFound("content"));
    }
    let w = Window {
        content_id: Some(id),
        start,
        end,
        access_type: q.access_type.map(AccessType::as_str),
    };
    let (rows, totals) = tokio::try_join!(
        db::access_log::page(&state.pool, &w, page.sql_limit(), page.offset()),
        db::access_log::totals(&state.pool, &w),
    )?;
    Ok(Json(json!({
        "content_id": id,
        "start_date": start,
        "end_date": end,
        "access_log": rows,
        "pagination": page.pagination(totals.total_accesses),
        "analytics": {
            "total_accesses": totals.total_accesses,
            "unique_visitors": totals.unique_visitors,
            "total_bytes_served": totals.total_bytes_served,
            "average_response_time": totals.average_response_time,
            "cache_hit_rate": totals.cache_hit_rate,
        },
    })))
}

/// Time buckets of the access pattern.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Granularity {
    Hour,
    Day,
    Week,
}

impl Granularity {
    fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
        }
    }

    /// The longest window of each (bounded series: at most ~750 points).
    fn max_days(self) -> i64 {
        match self {
            Self::Hour => 31,
            Self::Day => 731,
            Self::Week => 3660,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnalyticsQuery {
    start_date: Option<DateBound>,
    end_date: Option<DateBound>,
    granularity: Option<Granularity>,
}

async fn get_analytics(
    State(state): State<AppState>,
    _actor: Actor,
    Query(q): Query<AnalyticsQuery>,
) -> Result<Json<Value>, Error> {
    let granularity = q.granularity.unwrap_or(Granularity::Day);
    let (start, end) = window(q.start_date, q.end_date, granularity.max_days())?;
    let w = Window {
        content_id: None,
        start,
        end,
        access_type: None,
    };
    let (summary, top, pattern) = tokio::try_join!(
        db::access_log::totals(&state.pool, &w),
        db::access_log::top_content(&state.pool, &w, 10),
        db::access_log::pattern(&state.pool, &w, granularity.as_str()),
    )?;
    Ok(Json(json!({
        "start_date": start,
        "end_date": end,
        "granularity": granularity.as_str(),
        "summary": summary,
        "top_content": top,
        "access_patterns": pattern,
    })))
}
