//! Admin featured-category endpoints (rule 5).

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    routing::{delete, get},
};
use ic_audit::{Change, OperationType};
use ic_http::{
    context::Actor,
    extract::{Json, Path},
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    AppState,
    db::{self, featured::FeaturedRecord},
    domain::inputs::{FeatureCategory, feature_position},
    error::Error,
};

/// The admin featured-category routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/api/v1/services/featured-categories",
            get(list_featured).post(set_featured),
        )
        .route(
            "/admin/api/v1/services/featured-categories/{position}",
            delete(remove_featured),
        )
}

async fn list_featured(State(state): State<AppState>) -> Result<Json<Value>, Error> {
    let featured = db::featured::list(&state.pool).await?;
    Ok(Json(json!({ "featured_categories": featured })))
}

async fn set_featured(
    State(state): State<AppState>,
    actor: Actor,
    Json(input): Json<FeatureCategory>,
) -> Result<(StatusCode, Json<FeaturedRecord>), Error> {
    let position = feature_position(input.feature_position)?;
    let mut tx = state.pool.begin().await?;
    let category = db::categories::lock(&mut tx, input.category_id)
        .await?
        .ok_or_else(|| Error::rule(Some("category_id"), "the category does not exist"))?;
    if category.is_deleted {
        return Err(Error::rule(
            Some("category_id"),
            "a deleted category cannot be featured",
        ));
    }
    if category.is_default_unassigned {
        return Err(Error::rule(
            Some("category_id"),
            "the default category cannot be featured",
        ));
    }
    if db::featured::lock_position(&mut tx, position)
        .await?
        .is_some()
    {
        return Err(Error::conflict(
            Some("feature_position"),
            "this feature position is occupied; remove it first",
        ));
    }
    if db::featured::lock_category(&mut tx, input.category_id)
        .await?
        .is_some()
    {
        return Err(Error::conflict(
            Some("category_id"),
            "this category is already featured",
        ));
    }
    let id = Uuid::now_v7();
    db::featured::insert(
        &mut tx,
        id,
        input.category_id,
        position,
        &actor.identity.user_id,
    )
    .await?;
    let after = db::featured::lock_position(&mut tx, position)
        .await?
        .ok_or(Error::NotFound("featured category"))?;
    state
        .record(
            &mut tx,
            &actor.ctx,
            Change {
                entity_type: "featured_category",
                entity_id: id,
                action: "set",
                operation: OperationType::Insert,
                before: None,
                after: crate::routes::snapshot(&after),
            },
        )
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(after)))
}

async fn remove_featured(
    State(state): State<AppState>,
    actor: Actor,
    Path(position): Path<i64>,
) -> Result<StatusCode, Error> {
    let position = feature_position(position)?;
    let mut tx = state.pool.begin().await?;
    let Some(before) = db::featured::lock_position(&mut tx, position).await? else {
        return Ok(StatusCode::NO_CONTENT);
    };
    db::featured::delete(&mut tx, before.featured_category_id).await?;
    state
        .record(
            &mut tx,
            &actor.ctx,
            Change {
                entity_type: "featured_category",
                entity_id: before.featured_category_id,
                action: "removed",
                operation: OperationType::Delete,
                before: crate::routes::snapshot(&before),
                after: None,
            },
        )
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
