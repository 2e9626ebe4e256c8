//! The `content.content` table.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

use crate::domain::{AccessLevel, UploadStatus, inputs::Patch};

/// A file as admins see it (every column).
#[derive(Debug, Clone, PartialEq, Serialize, FromRow)]
pub struct ContentRecord {
    pub content_id: Uuid,
    pub original_filename: String,
    pub file_size: i64,
    pub mime_type: String,
    pub content_hash: String,
    pub storage_path: String,
    pub upload_status: String,
    pub alt_text: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub content_category: String,
    pub access_level: String,
    pub upload_correlation_id: Uuid,
    pub processing_attempts: i32,
    pub last_processed_at: Option<DateTime<Utc>>,
    pub processing_error: Option<String>,
    pub processing_details: serde_json::Value,
    pub created_on: DateTime<Utc>,
    pub created_by: String,
    pub modified_on: Option<DateTime<Utc>>,
    pub modified_by: Option<String>,
    pub is_deleted: bool,
    pub deleted_on: Option<DateTime<Utc>>,
    pub deleted_by: Option<String>,
}

impl ContentRecord {
    /// The current status.
    pub fn status(&self) -> UploadStatus {
        UploadStatus::from_db(&self.upload_status).unwrap_or(UploadStatus::Failed)
    }

    /// The access level.
    pub fn access(&self) -> AccessLevel {
        AccessLevel::from_db(&self.access_level).unwrap_or(AccessLevel::Restricted)
    }
}

const COLUMNS: &str = "content_id, original_filename, file_size, mime_type, content_hash, storage_path, \
     upload_status, alt_text, description, tags, content_category, access_level, upload_correlation_id, \
     processing_attempts, last_processed_at, processing_error, processing_details, created_on, created_by, \
     modified_on, modified_by, is_deleted, deleted_on, deleted_by";

/// A new row (status `processing`).
#[derive(Debug, Clone)]
pub struct NewContent<'a> {
    pub content_id: Uuid,
    pub original_filename: &'a str,
    pub file_size: i64,
    pub mime_type: &'a str,
    pub content_hash: &'a str,
    pub storage_path: &'a str,
    pub alt_text: Option<&'a str>,
    pub description: Option<&'a str>,
    pub tags: &'a [String],
    pub content_category: &'a str,
    pub access_level: &'a str,
    pub upload_correlation_id: Uuid,
    pub created_on: DateTime<Utc>,
    pub created_by: &'a str,
}

/// Inserts an upload's row.
pub async fn insert(tx: &mut PgConnection, new: &NewContent<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO content.content (content_id, original_filename, file_size, mime_type, content_hash, \
         storage_path, alt_text, description, tags, content_category, access_level, upload_correlation_id, \
         created_on, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(new.content_id)
    .bind(new.original_filename)
    .bind(new.file_size)
    .bind(new.mime_type)
    .bind(new.content_hash)
    .bind(new.storage_path)
    .bind(new.alt_text)
    .bind(new.description)
    .bind(new.tags)
    .bind(new.content_category)
    .bind(new.access_level)
    .bind(new.upload_correlation_id)
    .bind(new.created_on)
    .bind(new.created_by)
    .execute(tx)
    .await?;
    Ok(())
}

/// Serialises uploads of the same bytes (transaction-scoped advisory lock on the hash).
pub async fn lock_hash(tx: &mut PgConnection, sha256: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
        .bind(sha256)
        .execute(tx)
        .await?;
    Ok(())
}

/// The stored object of earlier identical bytes that is still kept, if any.
pub async fn stored_object_of(
    tx: &mut PgConnection,
    sha256: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT storage_path FROM content.content WHERE content_hash = $1 ORDER BY created_on LIMIT 1",
    )
    .bind(sha256)
    .fetch_optional(tx)
    .await
}

/// One row, any status, deleted or not.
pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<ContentRecord>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM content.content WHERE content_id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// One row, locked for update.
pub async fn lock(tx: &mut PgConnection, id: Uuid) -> Result<Option<ContentRecord>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM content.content WHERE content_id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(tx)
    .await
}

/// Filters of the admin list.
#[derive(Debug, Clone, Default)]
pub struct AdminFilter {
    pub status: Option<&'static str>,
    pub access_level: Option<&'static str>,
    pub category: Option<&'static str>,
    pub include_deleted: bool,
}

#[derive(FromRow)]
struct WithTotal {
    #[sqlx(flatten)]
    record: ContentRecord,
    total: i64,
}

/// A page of every file, newest first, and the total.
pub async fn list_admin(
    db: impl PgExecutor<'_>,
    filter: &AdminFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ContentRecord>, i64), sqlx::Error> {
    let rows: Vec<WithTotal> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, count(*) OVER () AS total FROM content.content \
         WHERE ($1::text IS NULL OR upload_status = $1) AND ($2::text IS NULL OR access_level = $2) \
         AND ($3::text IS NULL OR content_category = $3) AND ($4 OR NOT is_deleted) \
         ORDER BY created_on DESC, content_id LIMIT $5 OFFSET $6"
    )))
    .bind(filter.status)
    .bind(filter.access_level)
    .bind(filter.category)
    .bind(filter.include_deleted)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?;
    Ok(split_total(rows))
}

fn split_total(rows: Vec<WithTotal>) -> (Vec<ContentRecord>, i64) {
    let total = rows.first().map_or(0, |r| r.total);
    (rows.into_iter().map(|r| r.record).collect(), total)
}

/// Filters of the public list.
#[derive(Debug, Clone, Default)]
pub struct PublicFilter {
    pub category: Option<&'static str>,
    pub mime_type: Option<String>,
    pub tags: Vec<String>,
}

/// Public visibility: available, public, live.
const PUBLIC: &str = "upload_status = 'available' AND access_level = 'public' AND NOT is_deleted";

/// A page of public files, newest first, and the total (a page past the end still
/// reports the total).
pub async fn list_public(
    db: impl PgExecutor<'_> + Copy,
    filter: &PublicFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ContentRecord>, i64), sqlx::Error> {
    let conditions = "($1::text IS NULL OR content_category = $1) AND ($2::text IS NULL OR mime_type = $2) \
         AND (cardinality($3::text[]) = 0 OR tags @> $3)";
    let page = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM content.content WHERE {PUBLIC} AND {conditions} \
         ORDER BY created_on DESC, content_id LIMIT $4 OFFSET $5"
    )))
    .bind(filter.category)
    .bind(filter.mime_type.as_deref())
    .bind(&filter.tags)
    .bind(limit)
    .bind(offset)
    .fetch_all(db);
    let count = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM content.content WHERE {PUBLIC} AND {conditions}"
    )))
    .bind(filter.category)
    .bind(filter.mime_type.as_deref())
    .bind(&filter.tags)
    .fetch_one(db);
    tokio::try_join!(page, count)
}

/// Applies a metadata update.
pub async fn update_metadata(
    tx: &mut PgConnection,
    id: Uuid,
    patch: &Patch,
    user: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE content.content SET \
         alt_text = CASE WHEN $2 THEN $3 ELSE alt_text END, \
         description = CASE WHEN $4 THEN $5 ELSE description END, \
         tags = COALESCE($6, tags), access_level = COALESCE($7, access_level), \
         modified_on = now(), modified_by = $8 WHERE content_id = $1",
    )
    .bind(id)
    .bind(patch.alt_text.is_some())
    .bind(patch.alt_text.clone().flatten())
    .bind(patch.description.is_some())
    .bind(patch.description.clone().flatten())
    .bind(patch.tags.as_deref())
    .bind(patch.access_level.map(AccessLevel::as_str))
    .bind(user)
    .execute(tx)
    .await?;
    Ok(())
}

/// Soft-deletes a row (the object stays).
pub async fn soft_delete(tx: &mut PgConnection, id: Uuid, user: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE content.content SET is_deleted = true, deleted_on = now(), deleted_by = $2 \
         WHERE content_id = $1",
    )
    .bind(id)
    .bind(user)
    .execute(tx)
    .await?;
    Ok(())
}

/// Counts one processing attempt (committed before the work, so a crash still counts).
pub async fn count_attempt(db: impl PgExecutor<'_>, id: Uuid) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE content.content SET processing_attempts = processing_attempts + 1, \
         last_processed_at = now() WHERE content_id = $1 RETURNING processing_attempts",
    )
    .bind(id)
    .fetch_one(db)
    .await
}

/// Sets the outcome of processing.
pub async fn set_outcome(
    tx: &mut PgConnection,
    id: Uuid,
    status: UploadStatus,
    error: Option<&str>,
    details: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE content.content SET upload_status = $2, processing_error = $3, \
         processing_details = processing_details || $4, last_processed_at = now() WHERE content_id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(error)
    .bind(details)
    .execute(tx)
    .await?;
    Ok(())
}

/// Puts a row back to `processing` (reprocess, rescan).
pub async fn requeue(tx: &mut PgConnection, id: Uuid, user: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE content.content SET upload_status = 'processing', processing_error = NULL, \
         modified_on = now(), modified_by = $2 WHERE content_id = $1",
    )
    .bind(id)
    .bind(user)
    .execute(tx)
    .await?;
    Ok(())
}

/// The processing queue's figures.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct QueueCounts {
    /// Waiting for their first attempt.
    pub pending: i64,
    /// Attempted at least once, not finished.
    pub processing: i64,
    /// Failed.
    pub failed: i64,
    /// Mean seconds from upload to the end of processing, over the last 24 hours.
    pub average_processing_seconds: Option<f64>,
}

/// Counts for the processing-queue endpoint.
pub async fn queue_counts(db: impl PgExecutor<'_>) -> Result<QueueCounts, sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE upload_status = 'processing' AND processing_attempts = 0) AS pending, \
         count(*) FILTER (WHERE upload_status = 'processing' AND processing_attempts > 0) AS processing, \
         count(*) FILTER (WHERE upload_status = 'failed') AS failed, \
         (avg(extract(epoch FROM last_processed_at - created_on)) FILTER (WHERE upload_status IN ('available', 'failed') \
            AND last_processed_at > now() - interval '24 hours'))::float8 AS average_processing_seconds \
         FROM content.content WHERE NOT is_deleted",
    )
    .fetch_one(db)
    .await
}

/// The most recently processed files.
pub async fn recent_activity(
    db: impl PgExecutor<'_>,
    limit: i64,
) -> Result<Vec<ContentRecord>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM content.content WHERE last_processed_at IS NOT NULL \
         ORDER BY last_processed_at DESC LIMIT $1"
    )))
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Whether any row (deleted or not) names `storage_path`.
pub async fn path_in_use(db: impl PgExecutor<'_>, storage_path: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM content.content WHERE storage_path = $1)")
        .bind(storage_path)
        .fetch_one(db)
        .await
}
