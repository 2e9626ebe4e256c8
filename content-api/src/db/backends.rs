//! The `content.content_storage_backend` table: one row per store a deployment has used,
//! the configured one active.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use crate::storage::BlobStore;

/// One backend.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct BackendRow {
    pub backend_id: Uuid,
    pub backend_name: String,
    pub backend_type: String,
    pub is_active: bool,
    pub priority_order: i32,
    pub base_url: Option<String>,
    pub configuration: serde_json::Value,
    pub last_health_check: Option<DateTime<Utc>>,
    pub health_status: String,
}

const COLUMNS: &str = "backend_id, backend_name, backend_type, is_active, priority_order, base_url, \
     configuration, last_health_check, health_status";

/// Records the configured store (created on first use, refreshed after) and marks it the
/// only active one.
pub async fn ensure(db: impl PgExecutor<'_>, store: &BlobStore) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH upserted AS (INSERT INTO content.content_storage_backend \
           (backend_id, backend_name, backend_type, base_url, configuration, is_active) \
           VALUES ($1, $2, $3, $4, $5, true) \
           ON CONFLICT (backend_name) DO UPDATE SET backend_type = EXCLUDED.backend_type, \
           base_url = EXCLUDED.base_url, configuration = EXCLUDED.configuration, is_active = true, \
           modified_on = now() RETURNING backend_id) \
         UPDATE content.content_storage_backend SET is_active = false \
         WHERE backend_name <> $2 AND is_active",
    )
    .bind(Uuid::now_v7())
    .bind(store.name())
    .bind(store.kind().as_str())
    .bind(store.location())
    .bind(serde_json::json!({ "location": store.location() }))
    .execute(db)
    .await?;
    Ok(())
}

/// Every backend, active first.
pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<BackendRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM content.content_storage_backend \
         ORDER BY is_active DESC, priority_order, backend_name"
    )))
    .fetch_all(db)
    .await
}

/// One backend.
pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<BackendRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM content.content_storage_backend WHERE backend_id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Records a health check's outcome.
pub async fn set_health(
    db: impl PgExecutor<'_>,
    id: Uuid,
    status: &str,
) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE content.content_storage_backend SET health_status = $2, last_health_check = now() \
         WHERE backend_id = $1 RETURNING last_health_check",
    )
    .bind(id)
    .bind(status)
    .fetch_one(db)
    .await
}

/// What the files of the library weigh.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct Statistics {
    /// Rows (deleted ones included: their objects stay until cleaned).
    pub files: i64,
    /// Live rows.
    pub live_files: i64,
    /// Sum of the rows' sizes.
    pub total_bytes: i64,
    /// Distinct objects (identical bytes are stored once).
    pub stored_objects: i64,
    /// Bytes of the distinct objects.
    pub stored_bytes: i64,
}

/// Statistics of the library (all of it lives in the active backend).
pub async fn statistics(db: impl PgExecutor<'_>) -> Result<Statistics, sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*) AS files, count(*) FILTER (WHERE NOT is_deleted) AS live_files, \
         coalesce(sum(file_size), 0)::int8 AS total_bytes, \
         count(DISTINCT storage_path) AS stored_objects, \
         coalesce((SELECT sum(s) FROM (SELECT max(file_size) AS s FROM content.content GROUP BY storage_path) o), 0)::int8 AS stored_bytes \
         FROM content.content",
    )
    .fetch_one(db)
    .await
}

/// Of `paths`, those a live row names.
pub async fn live_paths(
    db: impl PgExecutor<'_>,
    paths: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT storage_path FROM content.content WHERE NOT is_deleted AND storage_path = ANY($1)",
    )
    .bind(paths)
    .fetch_all(db)
    .await
}
