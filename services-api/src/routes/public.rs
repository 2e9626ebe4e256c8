//! Public reads (anonymous, through public-gateway): published services only.

use std::time::Instant;

use axum::{
    Router,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};
use ic_http::{
    extract::{Json, Path, Query},
    paging::Page,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::ServicesPage;
use crate::{
    AppState,
    db::{
        self,
        categories::PublicCategory,
        services::{PublicFilter, PublicService},
    },
    domain::{DeliveryMode, text},
    error::Error,
};

/// Largest page of the lists.
const MAX_LIMIT: u32 = 100;
/// Largest page of search results.
const MAX_SEARCH_LIMIT: u32 = 50;

/// The public routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/services", get(list_services))
        .route("/api/v1/services/{id}", get(get_service))
        .route("/api/v1/services/slug/{slug}", get(get_service_by_slug))
        .route("/api/v1/services/featured", get(list_featured))
        .route("/api/v1/services/categories", get(list_categories))
        .route(
            "/api/v1/services/categories/{id}/services",
            get(list_category_services),
        )
        .route("/api/v1/services/search", get(search_services))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    page: Option<u32>,
    limit: Option<u32>,
    category_id: Option<Uuid>,
    delivery_mode: Option<DeliveryMode>,
}

async fn list_services(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<ServicesPage<PublicService>>, Error> {
    let page = Page::new(q.page, q.limit, MAX_LIMIT)?;
    let filter = PublicFilter {
        category_id: q.category_id,
        delivery_mode: q.delivery_mode.map(DeliveryMode::as_str),
    };
    let (rows, total) =
        db::services::list_public(&state.pool, &filter, page.sql_limit(), page.offset()).await?;
    Ok(Json(ServicesPage::new(
        rows.into_iter().map(PublicService::item).collect(),
        page,
        total,
    )))
}

async fn get_service(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<PublicService>, Error> {
    db::services::get_public(&state.pool, id)
        .await?
        .map(|r| Json(PublicService::single(r)))
        .ok_or(Error::NotFound("service"))
}

async fn get_service_by_slug(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Json<PublicService>, Error> {
    if !crate::domain::slug::is_valid(&slug) {
        // A malformed slug cannot name a service.
        return Err(Error::NotFound("service"));
    }
    db::services::get_public_by_slug(&state.pool, &slug)
        .await?
        .map(|r| Json(PublicService::single(r)))
        .ok_or(Error::NotFound("service"))
}

#[derive(Debug, Serialize)]
struct FeaturedCategory {
    category_id: Uuid,
    name: String,
    slug: String,
    feature_position: i16,
    services: Vec<PublicService>,
}

async fn list_featured(State(state): State<AppState>) -> Result<Json<Value>, Error> {
    let featured = db::featured::list(&state.pool).await?;
    let ids: Vec<Uuid> = featured.iter().map(|f| f.category_id).collect();
    let services = db::services::public_of_categories(&state.pool, &ids).await?;
    let featured: Vec<FeaturedCategory> = featured
        .into_iter()
        .map(|f| FeaturedCategory {
            services: services
                .iter()
                .filter(|s| s.category_id == f.category_id)
                .cloned()
                .map(PublicService::item)
                .collect(),
            category_id: f.category_id,
            name: f.name,
            slug: f.slug,
            feature_position: f.feature_position,
        })
        .collect();
    Ok(Json(json!({ "featured_categories": featured })))
}

async fn list_categories(State(state): State<AppState>) -> Result<Json<Value>, Error> {
    let categories: Vec<PublicCategory> = db::categories::list_live(&state.pool, false)
        .await?
        .into_iter()
        .map(PublicCategory::from)
        .collect();
    Ok(Json(json!({ "categories": categories })))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    page: Option<u32>,
    limit: Option<u32>,
}

async fn list_category_services(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(q): Query<PageQuery>,
) -> Result<Json<ServicesPage<PublicService>>, Error> {
    let page = Page::new(q.page, q.limit, MAX_LIMIT)?;
    let category = db::categories::get(&state.pool, id).await?;
    // The default category is not listed publicly, so it has no public page either.
    if !category.is_some_and(|c| !c.is_deleted && !c.is_default_unassigned) {
        return Err(Error::NotFound("category"));
    }
    let filter = PublicFilter {
        category_id: Some(id),
        delivery_mode: None,
    };
    let (rows, total) =
        db::services::list_public(&state.pool, &filter, page.sql_limit(), page.offset()).await?;
    Ok(Json(ServicesPage::new(
        rows.into_iter().map(PublicService::item).collect(),
        page,
        total,
    )))
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    q: Option<String>,
    page: Option<u32>,
    limit: Option<u32>,
    category_id: Option<Uuid>,
    delivery_mode: Option<DeliveryMode>,
}

async fn search_services(
    State(state): State<AppState>,
    Query(q): Query<SearchQuery>,
) -> Result<Response, Error> {
    let query = text::text("q", q.q.as_deref().unwrap_or_default(), 1, 200, false)?;
    let page = Page::new(q.page, q.limit, MAX_SEARCH_LIMIT)?;
    let filter = PublicFilter {
        category_id: q.category_id,
        delivery_mode: q.delivery_mode.map(DeliveryMode::as_str),
    };
    let started = Instant::now();
    let (rows, total) = db::services::search_public(
        &state.pool,
        &query,
        &filter,
        page.sql_limit(),
        page.offset(),
    )
    .await?;
    let search_time_ms = started.elapsed().as_secs_f64() * 1000.0;
    let services: Vec<PublicService> = rows.into_iter().map(PublicService::item).collect();
    let pagination = page.pagination(total);
    // The timing differs on every call: the ETag covers the results only, so a repeated
    // search still answers If-None-Match with 304.
    let stable = serde_json::to_vec(&(&services, &pagination, &query)).unwrap_or_default();
    let etag = ic_http::etag::etag_of(&stable);
    let body = json!({
        "services": services,
        "pagination": pagination,
        "query": query,
        "search_metadata": { "total_matches": total, "search_time_ms": (search_time_ms * 1000.0).round() / 1000.0 },
    });
    Ok(([(header::ETAG, etag)], Json(body)).into_response())
}
