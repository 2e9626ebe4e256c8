//! Admin endpoints (through admin-gateway): every file whatever its status, metadata
//! updates, soft deletes, reprocessing and rescans, the processing queue, scan history
//! and audit history (`shared/spec/content-api.md`, "Admin endpoints").

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    routing::{get, post},
};
use ic_audit::{AuditQuery, Change, OperationType};
use ic_http::{
    context::Actor,
    extract::{Json, Path, Query},
    paging::{Page, Pagination},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    AppState,
    db::{
        self,
        content::{AdminFilter, ContentRecord},
        scans::ScanRecord,
    },
    domain::{AccessLevel, Category, UploadStatus, inputs::UpdateContent},
    error::Error,
    processing::{self, JobReason},
};

const MAX_LIMIT: u32 = 100;

/// The admin routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/api/v1/content", get(list_content))
        .route(
            "/admin/api/v1/content/processing-queue",
            get(get_processing_queue),
        )
        .route(
            "/admin/api/v1/content/{id}",
            get(get_content).put(update_content).delete(delete_content),
        )
        .route("/admin/api/v1/content/{id}/status", get(get_status))
        .route(
            "/admin/api/v1/content/{id}/reprocess",
            post(reprocess_content),
        )
        .route(
            "/admin/api/v1/content/{id}/virus-scans",
            get(list_virus_scans),
        )
        .route("/admin/api/v1/content/{id}/virus-scan", post(scan_content))
        .route("/admin/api/v1/content/{id}/audit", get(get_content_audit))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    page: Option<u32>,
    limit: Option<u32>,
    status: Option<UploadStatus>,
    access_level: Option<AccessLevel>,
    category: Option<Category>,
    include_deleted: Option<bool>,
}

#[derive(Debug, Serialize)]
struct ContentPage {
    content: Vec<ContentRecord>,
    pagination: Pagination,
}

async fn list_content(
    State(state): State<AppState>,
    _actor: Actor,
    Query(q): Query<ListQuery>,
) -> Result<Json<ContentPage>, Error> {
    let page = Page::new(q.page, q.limit, MAX_LIMIT)?;
    let filter = AdminFilter {
        status: q.status.map(UploadStatus::as_str),
        access_level: q.access_level.map(AccessLevel::as_str),
        category: q.category.map(Category::as_str),
        include_deleted: q.include_deleted.unwrap_or(false),
    };
    let (rows, total) =
        db::content::list_admin(&state.pool, &filter, page.sql_limit(), page.offset()).await?;
    Ok(Json(ContentPage {
        content: rows,
        pagination: page.pagination(total),
    }))
}

async fn get_content(
    State(state): State<AppState>,
    _actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Json<ContentRecord>, Error> {
    db::content::get(&state.pool, id)
        .await?
        .map(Json)
        .ok_or(Error::NotFound("content"))
}

async fn live_locked(tx: &mut sqlx::PgConnection, id: Uuid) -> Result<ContentRecord, Error> {
    db::content::lock(tx, id)
        .await?
        .filter(|c| !c.is_deleted)
        .ok_or(Error::NotFound("content"))
}

async fn update_content(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(input): Json<UpdateContent>,
) -> Result<Json<ContentRecord>, Error> {
    let patch = input.validate()?;
    let mut tx = state.pool.begin().await?;
    let before = live_locked(&mut tx, id).await?;
    db::content::update_metadata(&mut tx, id, &patch, &actor.identity.user_id).await?;
    let after = db::content::get(&mut *tx, id)
        .await?
        .ok_or(Error::NotFound("content"))?;
    record(&state, &mut tx, &actor, "updated", &before, Some(&after)).await?;
    tx.commit().await?;
    Ok(Json(after))
}

async fn delete_content(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, Error> {
    let mut tx = state.pool.begin().await?;
    let before = live_locked(&mut tx, id).await?;
    db::content::soft_delete(&mut tx, id, &actor.identity.user_id).await?;
    record(&state, &mut tx, &actor, "deleted", &before, None).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Records an update (`after` given) or a delete of a file: its event and audit record.
async fn record(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    actor: &Actor,
    action: &'static str,
    before: &ContentRecord,
    after: Option<&ContentRecord>,
) -> Result<(), Error> {
    state
        .record(
            tx,
            &actor.ctx,
            Change {
                entity_type: "content",
                entity_id: before.content_id,
                action,
                operation: if after.is_some() {
                    OperationType::Update
                } else {
                    OperationType::Delete
                },
                before: serde_json::to_value(before).ok(),
                after: after.and_then(|a| serde_json::to_value(a).ok()),
            },
        )
        .await
}

/// Puts a file back to `processing` and queues a job (reprocess or rescan).
async fn requeue(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    reason: JobReason,
) -> Result<ContentRecord, Error> {
    let mut tx = state.pool.begin().await?;
    let before = live_locked(&mut tx, id).await?;
    db::content::requeue(&mut tx, id, &actor.identity.user_id).await?;
    let after = db::content::get(&mut *tx, id)
        .await?
        .ok_or(Error::NotFound("content"))?;
    if before.status() != UploadStatus::Processing {
        record(state, &mut tx, actor, "updated", &before, Some(&after)).await?;
    }
    processing::enqueue(&mut tx, &actor.ctx, id, reason).await?;
    tx.commit().await?;
    Ok(after)
}

async fn reprocess_content(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let record = requeue(&state, &actor, id, JobReason::Reprocess).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "content_id": id,
            "processing_status": "queued",
            "correlation_id": actor.ctx.correlation_id,
            "estimated_processing_time": processing::estimated_seconds(
                u64::try_from(record.file_size).unwrap_or(0)
            ),
        })),
    ))
}

async fn scan_content(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<Value>), Error> {
    requeue(&state, &actor, id, JobReason::Rescan).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "content_id": id,
            "scan_status": "queued",
            "correlation_id": actor.ctx.correlation_id,
        })),
    ))
}

async fn get_status(
    State(state): State<AppState>,
    _actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, Error> {
    let record = db::content::get(&state.pool, id)
        .await?
        .ok_or(Error::NotFound("content"))?;
    let scan = db::scans::latest_status(&state.pool, id).await?;
    let details = &record.processing_details;
    let flag = |name: &str| details.get(name).and_then(Value::as_bool).unwrap_or(false);
    Ok(Json(json!({
        "content_id": id,
        "upload_status": record.upload_status,
        "processing_attempts": record.processing_attempts,
        "last_processed_at": record.last_processed_at,
        "processing_details": {
            "virus_scan_status": scan.unwrap_or_else(|| "pending".into()),
            "metadata_extracted": flag("metadata_extracted"),
            "thumbnail_generated": flag("thumbnail_generated"),
            "storage_verified": flag("storage_verified"),
        },
        "error_message": record.processing_error,
        "is_deleted": record.is_deleted,
    })))
}

async fn list_virus_scans(
    State(state): State<AppState>,
    _actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, Error> {
    if db::content::get(&state.pool, id).await?.is_none() {
        return Err(Error::NotFound("content"));
    }
    let scans: Vec<ScanRecord> = db::scans::list(&state.pool, id).await?;
    Ok(Json(json!({ "content_id": id, "virus_scans": scans })))
}

async fn get_processing_queue(
    State(state): State<AppState>,
    _actor: Actor,
) -> Result<Json<Value>, Error> {
    let counts = db::content::queue_counts(&state.pool).await?;
    let recent = db::content::recent_activity(&state.pool, 10).await?;
    let recent: Vec<Value> = recent
        .into_iter()
        .map(|r| {
            json!({
                "content_id": r.content_id,
                "original_filename": r.original_filename,
                "upload_status": r.upload_status,
                "processing_attempts": r.processing_attempts,
                "last_processed_at": r.last_processed_at,
                "error_message": r.processing_error,
            })
        })
        .collect();
    Ok(Json(json!({
        "pending": counts.pending,
        "processing": counts.processing,
        "failed": counts.failed,
        "average_processing_time_seconds": counts.average_processing_seconds,
        "recent_activity": recent,
    })))
}

async fn get_content_audit(
    State(state): State<AppState>,
    _actor: Actor,
    Path(id): Path<Uuid>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, Error> {
    let answer = ic_audit::audit_endpoint(
        &state.jetstream,
        state.loki.as_ref(),
        crate::SERVICE_NAME,
        "content",
        id,
        q,
    )
    .await?;
    Ok(Json(answer))
}
