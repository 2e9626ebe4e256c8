//! Admin service endpoints (through admin-gateway): CRUD, publishing workflow, audit.

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use ic_audit::{Change, OperationType};
use ic_http::{
    context::Actor,
    extract::{Json, Path, Query},
    paging::Page,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{AuditQuery, ServicesPage, snapshot};
use crate::{
    AppState,
    db::{
        self,
        services::{AdminFilter, ServiceRecord},
    },
    domain::{
        DEFAULT_CATEGORY_ID, PublishingStatus, TransitionError,
        inputs::{CreateService, UpdateService},
    },
    error::Error,
};

const MAX_LIMIT: u32 = 100;

/// The admin service routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/api/v1/services",
            get(list_services).post(create_service),
        )
        .route(
            "/admin/api/v1/services/{id}",
            get(get_service).put(update_service).delete(delete_service),
        )
        .route("/admin/api/v1/services/{id}/publish", post(publish_service))
        .route("/admin/api/v1/services/{id}/archive", post(archive_service))
        .route("/admin/api/v1/services/{id}/audit", get(get_service_audit))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    page: Option<u32>,
    limit: Option<u32>,
    status: Option<PublishingStatus>,
    category_id: Option<Uuid>,
    include_deleted: Option<bool>,
}

async fn list_services(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<ServicesPage<ServiceRecord>>, Error> {
    let page = Page::new(q.page, q.limit, MAX_LIMIT)?;
    let filter = AdminFilter {
        status: q.status.map(PublishingStatus::as_str),
        category_id: q.category_id,
        include_deleted: q.include_deleted.unwrap_or(false),
    };
    let (rows, total) =
        db::services::list_admin(&state.pool, &filter, page.sql_limit(), page.offset()).await?;
    Ok(Json(ServicesPage::new(rows, page, total)))
}

async fn get_service(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<ServiceRecord>, Error> {
    db::services::get_admin(&state.pool, id)
        .await?
        .map(Json)
        .ok_or(Error::NotFound("service"))
}

/// Checks (and share-locks) that `category_id` is a live category.
async fn require_live_category(
    tx: &mut sqlx::PgConnection,
    category_id: Uuid,
) -> Result<(), Error> {
    match db::categories::share_live(tx, category_id).await? {
        Some(true) => Ok(()),
        Some(false) => Err(Error::rule(Some("category_id"), "the category is deleted")),
        None => Err(Error::rule(
            Some("category_id"),
            "the category does not exist",
        )),
    }
}

async fn create_service(
    State(state): State<AppState>,
    actor: Actor,
    Json(input): Json<CreateService>,
) -> Result<(StatusCode, Json<ServiceRecord>), Error> {
    let new = input.validate()?;
    let category_id = new.category_id.unwrap_or(DEFAULT_CATEGORY_ID);
    let mut tx = state.pool.begin().await?;
    require_live_category(&mut tx, category_id).await?;
    let id = Uuid::now_v7();
    db::services::insert(&mut tx, id, &new, category_id, &actor.identity.user_id).await?;
    let after = db::services::lock(&mut tx, id)
        .await?
        .ok_or(Error::NotFound("service"))?;
    state
        .record(
            &mut tx,
            &actor.ctx,
            Change {
                entity_type: "service",
                entity_id: id,
                action: "created",
                operation: OperationType::Insert,
                before: None,
                after: snapshot(&after),
            },
        )
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(after)))
}

async fn live_locked(tx: &mut sqlx::PgConnection, id: Uuid) -> Result<ServiceRecord, Error> {
    db::services::lock(tx, id)
        .await?
        .filter(|s| !s.is_deleted)
        .ok_or(Error::NotFound("service"))
}

async fn update_service(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(input): Json<UpdateService>,
) -> Result<Json<ServiceRecord>, Error> {
    let patch = input.validate()?;
    let mut tx = state.pool.begin().await?;
    // Lock order everywhere: category, then service (a category delete takes them in
    // that order too), so concurrent writes cannot deadlock.
    if let Some(category_id) = patch.category_id {
        require_live_category(&mut tx, category_id).await?;
    }
    let before = live_locked(&mut tx, id).await?;
    db::services::update(&mut tx, id, &patch, &actor.identity.user_id).await?;
    let after = db::services::lock(&mut tx, id)
        .await?
        .ok_or(Error::NotFound("service"))?;
    state
        .record(
            &mut tx,
            &actor.ctx,
            Change {
                entity_type: "service",
                entity_id: id,
                action: "updated",
                operation: OperationType::Update,
                before: snapshot(&before),
                after: snapshot(&after),
            },
        )
        .await?;
    tx.commit().await?;
    Ok(Json(after))
}

async fn delete_service(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, Error> {
    let mut tx = state.pool.begin().await?;
    let before = db::services::lock(&mut tx, id)
        .await?
        .ok_or(Error::NotFound("service"))?;
    if before.is_deleted {
        // DELETE is idempotent: already gone, nothing to record.
        return Ok(StatusCode::NO_CONTENT);
    }
    db::services::soft_delete(&mut tx, id, &actor.identity.user_id).await?;
    let after = db::services::lock(&mut tx, id)
        .await?
        .ok_or(Error::NotFound("service"))?;
    state
        .record(
            &mut tx,
            &actor.ctx,
            Change {
                entity_type: "service",
                entity_id: id,
                action: "deleted",
                operation: OperationType::Delete,
                before: snapshot(&before),
                after: snapshot(&after),
            },
        )
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize)]
struct Transition {
    service_id: Uuid,
    previous_status: PublishingStatus,
    current_status: PublishingStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    published_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    published_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    archived_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    archived_by: Option<String>,
}

async fn transition(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    to: PublishingStatus,
) -> Result<Json<Transition>, Error> {
    let mut tx = state.pool.begin().await?;
    let before = live_locked(&mut tx, id).await?;
    let from = before.status();
    from.transition(to).map_err(|err| match err {
        TransitionError::AlreadyInState(s) => Error::conflict(
            Some("publishing_status"),
            format!("the service is already {}", s.as_str()),
        ),
        TransitionError::NotAllowed { from, to } => Error::conflict(
            Some("publishing_status"),
            format!("a {} service cannot become {}", from.as_str(), to.as_str()),
        ),
    })?;
    db::services::set_status(&mut tx, id, to, &actor.identity.user_id).await?;
    let after = db::services::lock(&mut tx, id)
        .await?
        .ok_or(Error::NotFound("service"))?;
    let action = if to == PublishingStatus::Published {
        "published"
    } else {
        "archived"
    };
    state
        .record(
            &mut tx,
            &actor.ctx,
            Change {
                entity_type: "service",
                entity_id: id,
                action,
                operation: OperationType::Update,
                before: snapshot(&before),
                after: snapshot(&after),
            },
        )
        .await?;
    tx.commit().await?;
    let at = after.modified_on;
    let by = after.modified_by.clone();
    let published = to == PublishingStatus::Published;
    Ok(Json(Transition {
        service_id: id,
        previous_status: from,
        current_status: to,
        published_at: at.filter(|_| published),
        published_by: by.clone().filter(|_| published),
        archived_at: at.filter(|_| !published),
        archived_by: by.filter(|_| !published),
    }))
}

async fn publish_service(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Json<Transition>, Error> {
    transition(&state, &actor, id, PublishingStatus::Published).await
}

async fn archive_service(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Json<Transition>, Error> {
    transition(&state, &actor, id, PublishingStatus::Archived).await
}

async fn get_service_audit(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, Error> {
    if db::services::get_admin(&state.pool, id).await?.is_none() {
        return Err(Error::NotFound("service"));
    }
    super::audit_history(&state, "service", id, q).await
}
