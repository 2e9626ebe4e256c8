//! Storage operations (admin): the backends with their health and statistics, a
//! write/read/delete probe, and the lifecycle of objects no live row names — reported,
//! and cleaned with a dry run first (`shared/spec/content-api.md`, "Admin endpoints").

use axum::{
    Router,
    extract::State,
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use ic_http::{
    context::Actor,
    extract::{Json, Path, Query},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    AppState,
    db::{self, backends},
    error::Error,
    storage::{CONTENT_PREFIX, STAGING_PREFIX},
};

/// The storage routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/api/v1/content/storage-backends",
            get(list_storage_backends),
        )
        .route(
            "/admin/api/v1/content/storage-backends/{id}/health-check",
            post(check_storage_backend),
        )
        .route(
            "/admin/api/v1/content/lifecycle/orphaned",
            get(list_orphaned),
        )
        .route("/admin/api/v1/content/lifecycle/cleanup", post(cleanup))
}

async fn list_storage_backends(
    State(state): State<AppState>,
    _actor: Actor,
) -> Result<Json<Value>, Error> {
    backends::ensure(&state.pool, &state.store).await?;
    let (rows, statistics) = tokio::try_join!(
        backends::list(&state.pool),
        backends::statistics(&state.pool)
    )?;
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|row| {
            let statistics = row.is_active.then(|| statistics.clone());
            let mut value = json!(row);
            value["statistics"] = json!(statistics);
            value
        })
        .collect();
    Ok(Json(json!({ "storage_backends": rows })))
}

/// Slower probes than this make a backend `degraded`.
const DEGRADED_AFTER_MS: f64 = 1000.0;

async fn check_storage_backend(
    State(state): State<AppState>,
    _actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, Error> {
    backends::ensure(&state.pool, &state.store).await?;
    let row = backends::get(&state.pool, id)
        .await?
        .ok_or(Error::NotFound("storage backend"))?;
    if !row.is_active {
        return Err(Error::Conflict(format!(
            "{} is not the configured backend; only the configured one can be probed",
            row.backend_name
        )));
    }
    let probe = state.store.probe().await;
    let (status, timings, error) = match &probe {
        Ok(t) if t.write_ms + t.read_ms + t.delete_ms > DEGRADED_AFTER_MS => {
            ("degraded", Some(*t), None)
        }
        Ok(t) => ("healthy", Some(*t), None),
        Err(err) => ("unhealthy", None, Some(err.to_string())),
    };
    let checked_at = backends::set_health(&state.pool, id, status).await?;
    Ok(Json(json!({
        "backend_id": id,
        "backend_name": row.backend_name,
        "backend_type": row.backend_type,
        "health_status": status,
        "checked_at": checked_at,
        "timings": timings,
        "error": error,
    })))
}

/// An object no live row names.
#[derive(Debug, Clone, Serialize)]
pub struct Orphan {
    /// Its path in the store.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Last written.
    pub last_modified: DateTime<Utc>,
    /// `unreferenced` (a stored file whose rows are all deleted, or whose row was never
    /// committed), `staging` (a finished upload never committed) or `partial_upload` (an
    /// upload cut off by a crash).
    pub kind: &'static str,
}

/// The orphans last written more than `older_than_days` ago.
async fn orphans(state: &AppState, older_than_days: u32) -> Result<Vec<Orphan>, Error> {
    let cutoff = Utc::now() - chrono::Duration::days(i64::from(older_than_days));
    let mut out = Vec::new();
    for prefix in [CONTENT_PREFIX, STAGING_PREFIX] {
        let objects = state.store.list(prefix).await?;
        let old: Vec<_> = objects
            .into_iter()
            .filter(|o| o.last_modified <= cutoff)
            .collect();
        for chunk in old.chunks(1000) {
            let paths: Vec<String> = chunk.iter().map(|o| o.location.to_string()).collect();
            let live = if prefix == CONTENT_PREFIX {
                backends::live_paths(&state.pool, &paths).await?
            } else {
                Vec::new()
            };
            out.extend(
                chunk
                    .iter()
                    .zip(paths)
                    .filter(|(_, path)| !live.contains(path))
                    .filter(|(_, path)| !state.uploads_in_flight.contains(path))
                    .map(|(o, path)| Orphan {
                        path,
                        size: o.size,
                        last_modified: o.last_modified,
                        kind: if prefix == CONTENT_PREFIX {
                            "unreferenced"
                        } else {
                            "staging"
                        },
                    }),
            );
        }
    }
    out.extend(
        state
            .store
            .partial_uploads()?
            .into_iter()
            .filter(|p| p.last_modified <= cutoff)
            .filter(|p| !state.uploads_in_flight.contains(&p.path))
            .map(|p| Orphan {
                path: p.path,
                size: p.size,
                last_modified: p.last_modified,
                kind: "partial_upload",
            }),
    );
    Ok(out)
}

/// Most orphans listed in one answer (all are counted).
const MAX_LISTED: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrphanQuery {
    older_than_days: Option<u32>,
}

fn days(value: Option<u32>, default: u32) -> Result<u32, Error> {
    let days = value.unwrap_or(default);
    if days > 3650 {
        return Err(Error::validation(
            "older_than_days",
            "older_than_days must be between 0 and 3650",
        ));
    }
    Ok(days)
}

async fn list_orphaned(
    State(state): State<AppState>,
    _actor: Actor,
    Query(q): Query<OrphanQuery>,
) -> Result<Json<Value>, Error> {
    let older_than_days = days(q.older_than_days, 7)?;
    let found = orphans(&state, older_than_days).await?;
    let total_bytes: u64 = found.iter().map(|o| o.size).sum();
    Ok(Json(json!({
        "storage_backend": state.store.name(),
        "older_than_days": older_than_days,
        "total_count": found.len(),
        "total_bytes": total_bytes,
        "orphaned": found.iter().take(MAX_LISTED).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CleanupRequest {
    older_than_days: u32,
    dry_run: Option<bool>,
    storage_backend: Option<String>,
}

async fn cleanup(
    State(state): State<AppState>,
    actor: Actor,
    Json(input): Json<CleanupRequest>,
) -> Result<Json<Value>, Error> {
    let older_than_days = days(Some(input.older_than_days), 7)?;
    if let Some(name) = &input.storage_backend
        && name != state.store.name()
    {
        return Err(Error::validation(
            "storage_backend",
            format!("this replica cleans {:?} only", state.store.name()),
        ));
    }
    let dry_run = input.dry_run.unwrap_or(true);
    let found = orphans(&state, older_than_days).await?;
    let processed = found.len();
    let candidate_bytes: u64 = found.iter().map(|o| o.size).sum();
    if dry_run {
        return Ok(Json(json!({
            "dry_run": true,
            "storage_backend": state.store.name(),
            "files_processed": processed,
            "files_deleted": 0,
            "files_skipped": processed,
            "storage_reclaimed": 0,
            "would_delete": processed,
            "would_reclaim": candidate_bytes,
            "errors": [],
        })));
    }
    let (mut deleted, mut skipped, mut reclaimed) = (0usize, 0usize, 0u64);
    let mut errors = Vec::new();
    for orphan in &found {
        match remove(&state, orphan).await {
            Ok(true) => {
                deleted += 1;
                reclaimed += orphan.size;
            }
            Ok(false) => skipped += 1,
            Err(err) => errors.push(json!({ "path": orphan.path, "error": err.to_string() })),
        }
    }
    tracing::info!(
        user_id = %actor.identity.user_id,
        deleted,
        skipped,
        reclaimed,
        errors = errors.len(),
        "storage cleanup"
    );
    Ok(Json(json!({
        "dry_run": false,
        "storage_backend": state.store.name(),
        "files_processed": processed,
        "files_deleted": deleted,
        "files_skipped": skipped,
        "storage_reclaimed": reclaimed,
        "errors": errors,
    })))
}

/// Deletes an orphan unless a live row names it by now (an upload of the same bytes
/// may have claimed it since it was listed): under the same per-hash lock uploads take.
async fn remove(state: &AppState, orphan: &Orphan) -> Result<bool, Error> {
    match orphan.kind {
        "partial_upload" => {
            state.store.delete_partial(&orphan.path)?;
            Ok(true)
        }
        "staging" => {
            state.store.delete(&orphan.path).await?;
            Ok(true)
        }
        _ => {
            let hash = orphan
                .path
                .rsplit('/')
                .next()
                .and_then(|name| name.split('.').next())
                .unwrap_or(&orphan.path);
            let mut tx = state.pool.begin().await?;
            db::content::lock_hash(&mut tx, hash).await?;
            if !backends::live_paths(&mut *tx, std::slice::from_ref(&orphan.path))
                .await?
                .is_empty()
            {
                return Ok(false);
            }
            state.store.delete(&orphan.path).await?;
            tx.commit().await?;
            Ok(true)
        }
    }
}
