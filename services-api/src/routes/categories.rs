//! Admin category endpoints.

use axum::{Router, extract::State, http::StatusCode, routing::get};
use ic_audit::{Change, OperationType};
use ic_http::{
    context::Actor,
    extract::{Json, Path, Query},
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{AuditQuery, snapshot};
use crate::{
    AppState,
    db::{self, categories::CategoryRecord},
    domain::{
        DEFAULT_CATEGORY_ID,
        inputs::{CreateCategory, UpdateCategory},
    },
    error::Error,
};

/// The admin category routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/api/v1/services/categories",
            get(list_categories).post(create_category),
        )
        .route(
            "/admin/api/v1/services/categories/{id}",
            get(get_category)
                .put(update_category)
                .delete(delete_category),
        )
        .route(
            "/admin/api/v1/services/categories/{id}/audit",
            get(get_category_audit),
        )
}

async fn list_categories(State(state): State<AppState>) -> Result<Json<Value>, Error> {
    let categories = db::categories::list_live(&state.pool, true).await?;
    Ok(Json(json!({ "categories": categories })))
}

async fn get_category(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<CategoryRecord>, Error> {
    db::categories::get(&state.pool, id)
        .await?
        .filter(|c| !c.is_deleted)
        .map(Json)
        .ok_or(Error::NotFound("category"))
}

async fn create_category(
    State(state): State<AppState>,
    actor: Actor,
    Json(input): Json<CreateCategory>,
) -> Result<(StatusCode, Json<CategoryRecord>), Error> {
    let new = input.validate()?;
    let mut tx = state.pool.begin().await?;
    let id = Uuid::now_v7();
    db::categories::insert(&mut tx, id, &new, &actor.identity.user_id).await?;
    let after = db::categories::lock(&mut tx, id)
        .await?
        .ok_or(Error::NotFound("category"))?;
    state
        .record(
            &mut tx,
            &actor.ctx,
            Change {
                entity_type: "category",
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

async fn update_category(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(input): Json<UpdateCategory>,
) -> Result<Json<CategoryRecord>, Error> {
    let patch = input.validate()?;
    let mut tx = state.pool.begin().await?;
    let before = db::categories::lock(&mut tx, id)
        .await?
        .filter(|c| !c.is_deleted)
        .ok_or(Error::NotFound("category"))?;
    db::categories::update(&mut tx, id, &patch, &actor.identity.user_id).await?;
    let after = db::categories::lock(&mut tx, id)
        .await?
        .ok_or(Error::NotFound("category"))?;
    state
        .record(
            &mut tx,
            &actor.ctx,
            Change {
                entity_type: "category",
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

/// Rule 4: soft delete; its live services move to the default category and its feature
/// assignment is removed, all in one transaction, each change recorded.
async fn delete_category(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, Error> {
    let user = actor.identity.user_id.as_str();
    let mut tx = state.pool.begin().await?;
    let before = db::categories::lock(&mut tx, id)
        .await?
        .ok_or(Error::NotFound("category"))?;
    if before.is_deleted {
        return Ok(StatusCode::NO_CONTENT);
    }
    if before.is_default_unassigned {
        return Err(Error::rule(None, "the default category cannot be deleted"));
    }
    let moving = db::services::lock_of_category(&mut tx, id).await?;
    db::services::reassign_category(&mut tx, id, DEFAULT_CATEGORY_ID, user).await?;
    for service in moving {
        let after = db::services::lock(&mut tx, service.service_id).await?;
        state
            .record(
                &mut tx,
                &actor.ctx,
                Change {
                    entity_type: "service",
                    entity_id: service.service_id,
                    action: "updated",
                    operation: OperationType::Update,
                    before: snapshot(&service),
                    after: after.as_ref().and_then(snapshot),
                },
            )
            .await?;
    }
    if let Some(feature) = db::featured::lock_category(&mut tx, id).await? {
        db::featured::delete(&mut tx, feature.featured_category_id).await?;
        state
            .record(
                &mut tx,
                &actor.ctx,
                Change {
                    entity_type: "featured_category",
                    entity_id: feature.featured_category_id,
                    action: "removed",
                    operation: OperationType::Delete,
                    before: snapshot(&feature),
                    after: None,
                },
            )
            .await?;
    }
    db::categories::soft_delete(&mut tx, id, user).await?;
    let after = db::categories::lock(&mut tx, id).await?;
    state
        .record(
            &mut tx,
            &actor.ctx,
            Change {
                entity_type: "category",
                entity_id: id,
                action: "deleted",
                operation: OperationType::Delete,
                before: snapshot(&before),
                after: after.as_ref().and_then(snapshot),
            },
        )
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_category_audit(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, Error> {
    if db::categories::get(&state.pool, id).await?.is_none() {
        return Err(Error::NotFound("category"));
    }
    super::audit_history(&state, "category", id, q).await
}
