//! Reads of `content.content_access_log` (writes are batched by `crate::access_log`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

/// One logged access.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct AccessRow {
    pub access_id: Uuid,
    pub content_id: Uuid,
    pub access_timestamp: DateTime<Utc>,
    pub user_id: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub access_type: String,
    pub http_status_code: i16,
    pub bytes_served: i64,
    pub response_time_ms: i32,
    pub correlation_id: Option<Uuid>,
    pub referer_url: Option<String>,
    pub cache_hit: bool,
    pub storage_backend: Option<String>,
}

/// Sums over a set of accesses.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct Totals {
    pub total_accesses: i64,
    /// Distinct callers: the user id when identified, else the client address.
    pub unique_visitors: i64,
    pub total_bytes_served: i64,
    /// Milliseconds.
    pub average_response_time: f64,
    /// Share of accesses answered without reading the object (0..1).
    pub cache_hit_rate: f64,
    pub downloads: i64,
    pub views: i64,
    pub previews: i64,
}

/// Which accesses: one file's or all, within `[start, end)`, of one type or all.
#[derive(Debug, Clone)]
pub struct Window {
    pub content_id: Option<Uuid>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub access_type: Option<&'static str>,
}

const WHERE: &str = "($1::uuid IS NULL OR content_id = $1) AND access_timestamp >= $2 \
     AND access_timestamp < $3 AND ($4::text IS NULL OR access_type = $4)";

/// The totals of a window.
pub async fn totals(db: impl PgExecutor<'_>, w: &Window) -> Result<Totals, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) AS total_accesses, \
         count(DISTINCT coalesce(user_id, host(client_ip))) AS unique_visitors, \
         coalesce(sum(bytes_served), 0)::int8 AS total_bytes_served, \
         coalesce(avg(response_time_ms), 0)::float8 AS average_response_time, \
         coalesce(avg(cache_hit::int), 0)::float8 AS cache_hit_rate, \
         count(*) FILTER (WHERE access_type = 'download') AS downloads, \
         count(*) FILTER (WHERE access_type = 'view') AS views, \
         count(*) FILTER (WHERE access_type = 'preview') AS previews \
         FROM content.content_access_log WHERE {WHERE}"
    )))
    .bind(w.content_id)
    .bind(w.start)
    .bind(w.end)
    .bind(w.access_type)
    .fetch_one(db)
    .await
}

/// A page of a window's accesses, newest first.
pub async fn page(
    db: impl PgExecutor<'_>,
    w: &Window,
    limit: i64,
    offset: i64,
) -> Result<Vec<AccessRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT access_id, content_id, access_timestamp, user_id, host(client_ip) AS client_ip, \
         user_agent, access_type, http_status_code, bytes_served, response_time_ms, correlation_id, \
         referer_url, cache_hit, storage_backend FROM content.content_access_log WHERE {WHERE} \
         ORDER BY access_timestamp DESC, access_id DESC LIMIT $5 OFFSET $6"
    )))
    .bind(w.content_id)
    .bind(w.start)
    .bind(w.end)
    .bind(w.access_type)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await
}

/// The most accessed files of a window.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct TopContent {
    pub content_id: Uuid,
    pub original_filename: String,
    pub accesses: i64,
    pub bytes_served: i64,
}

/// The `limit` most accessed files.
pub async fn top_content(
    db: impl PgExecutor<'_>,
    w: &Window,
    limit: i64,
) -> Result<Vec<TopContent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT l.content_id, c.original_filename, count(*) AS accesses, \
         coalesce(sum(l.bytes_served), 0)::int8 AS bytes_served \
         FROM content.content_access_log l JOIN content.content c USING (content_id) \
         WHERE l.access_timestamp >= $1 AND l.access_timestamp < $2 \
         GROUP BY l.content_id, c.original_filename ORDER BY accesses DESC, l.content_id LIMIT $3",
    )
    .bind(w.start)
    .bind(w.end)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// One period of the access pattern.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct Period {
    pub period: DateTime<Utc>,
    pub accesses: i64,
    pub bytes_served: i64,
    pub unique_visitors: i64,
}

/// Accesses per `granularity` (`hour`, `day` or `week`), every period of the window
/// present (zeros included).
pub async fn pattern(
    db: impl PgExecutor<'_>,
    w: &Window,
    granularity: &'static str,
) -> Result<Vec<Period>, sqlx::Error> {
    sqlx::query_as(
        "WITH periods AS (SELECT generate_series(date_trunc($3, $1 AT TIME ZONE 'UTC'), \
           $2 AT TIME ZONE 'UTC' - interval '1 microsecond', ('1 ' || $3)::interval) AS p) \
         SELECT (periods.p AT TIME ZONE 'UTC') AS period, count(l.access_id) AS accesses, \
         coalesce(sum(l.bytes_served), 0)::int8 AS bytes_served, \
         count(DISTINCT coalesce(l.user_id, host(l.client_ip))) AS unique_visitors \
         FROM periods LEFT JOIN content.content_access_log l \
           ON date_trunc($3, l.access_timestamp AT TIME ZONE 'UTC') = periods.p \
           AND l.access_timestamp >= $1 AND l.access_timestamp < $2 \
         GROUP BY periods.p ORDER BY periods.p",
    )
    .bind(w.start)
    .bind(w.end)
    .bind(granularity)
    .fetch_all(db)
    .await
}
