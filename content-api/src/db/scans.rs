//! The `content.content_virus_scan` table.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

/// One scan.
#[derive(Debug, Clone, PartialEq, Serialize, FromRow)]
pub struct ScanRecord {
    pub scan_id: Uuid,
    pub content_id: Uuid,
    pub scan_timestamp: DateTime<Utc>,
    pub scanner_engine: String,
    pub scanner_version: Option<String>,
    pub scan_status: String,
    pub threats_detected: Vec<String>,
    pub scan_duration_ms: i32,
    pub correlation_id: Option<Uuid>,
}

/// Records a scan.
pub async fn insert(tx: &mut PgConnection, scan: &ScanRecord) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO content.content_virus_scan (scan_id, content_id, scan_timestamp, scanner_engine, \
         scanner_version, scan_status, threats_detected, scan_duration_ms, correlation_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(scan.scan_id)
    .bind(scan.content_id)
    .bind(scan.scan_timestamp)
    .bind(&scan.scanner_engine)
    .bind(&scan.scanner_version)
    .bind(&scan.scan_status)
    .bind(&scan.threats_detected)
    .bind(scan.scan_duration_ms)
    .bind(scan.correlation_id)
    .execute(tx)
    .await?;
    Ok(())
}

/// A file's scans, newest first.
pub async fn list(
    db: impl PgExecutor<'_>,
    content_id: Uuid,
) -> Result<Vec<ScanRecord>, sqlx::Error> {
    sqlx::query_as(
        "SELECT scan_id, content_id, scan_timestamp, scanner_engine, scanner_version, scan_status, \
         threats_detected, scan_duration_ms, correlation_id FROM content.content_virus_scan \
         WHERE content_id = $1 ORDER BY scan_timestamp DESC, scan_id DESC LIMIT 100",
    )
    .bind(content_id)
    .fetch_all(db)
    .await
}

/// The latest scan's status of a file.
pub async fn latest_status(
    db: impl PgExecutor<'_>,
    content_id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT scan_status FROM content.content_virus_scan WHERE content_id = $1 \
         ORDER BY scan_timestamp DESC, scan_id DESC LIMIT 1",
    )
    .bind(content_id)
    .fetch_optional(db)
    .await
}
