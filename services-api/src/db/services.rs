//! The `services.services` table.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

use crate::domain::{
    PublishingStatus,
    inputs::{NewService, ServicePatch},
};

/// A service as admins see it (every column, plus its category's name and slug).
#[derive(Debug, Clone, PartialEq, Serialize, FromRow)]
pub struct ServiceRecord {
    pub service_id: Uuid,
    pub title: String,
    pub description: String,
    pub slug: String,
    pub long_description_url: Option<String>,
    pub category_id: Uuid,
    pub category_name: String,
    pub category_slug: String,
    pub image_url: Option<String>,
    pub order_number: i32,
    pub delivery_mode: String,
    pub publishing_status: String,
    pub created_on: DateTime<Utc>,
    pub created_by: String,
    pub modified_on: Option<DateTime<Utc>>,
    pub modified_by: Option<String>,
    pub is_deleted: bool,
    pub deleted_on: Option<DateTime<Utc>>,
    pub deleted_by: Option<String>,
}

impl ServiceRecord {
    /// The current status.
    pub fn status(&self) -> PublishingStatus {
        PublishingStatus::from_db(&self.publishing_status).unwrap_or(PublishingStatus::Draft)
    }
}

/// A service as the public sees it. `publishing_status` and `category_slug` appear in
/// single-item views only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicService {
    pub service_id: Uuid,
    pub title: String,
    pub description: String,
    pub slug: String,
    pub long_description_url: Option<String>,
    pub category_id: Uuid,
    pub category_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category_slug: Option<String>,
    pub image_url: Option<String>,
    pub delivery_mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publishing_status: Option<String>,
    pub created_on: DateTime<Utc>,
}

impl PublicService {
    /// The list-item view.
    pub fn item(r: ServiceRecord) -> Self {
        Self {
            service_id: r.service_id,
            title: r.title,
            description: r.description,
            slug: r.slug,
            long_description_url: r.long_description_url,
            category_id: r.category_id,
            category_name: r.category_name,
            category_slug: None,
            image_url: r.image_url,
            delivery_mode: r.delivery_mode,
            publishing_status: None,
            created_on: r.created_on,
        }
    }

    /// The single-item view.
    pub fn single(r: ServiceRecord) -> Self {
        let category_slug = Some(r.category_slug.clone());
        let publishing_status = Some(r.publishing_status.clone());
        Self {
            category_slug,
            publishing_status,
            ..Self::item(r)
        }
    }
}

/// The columns of a [`ServiceRecord`] (macros, so the SQL constants below stay literals).
macro_rules! service_select {
    () => {
        "SELECT s.service_id, s.title, s.description, s.slug, s.long_description_url, s.category_id,
        c.name AS category_name, c.slug AS category_slug, s.image_url, s.order_number, s.delivery_mode,
        s.publishing_status, s.created_on, s.created_by, s.modified_on, s.modified_by, s.is_deleted,
        s.deleted_on, s.deleted_by"
    };
}

/// The join every service query reads from.
macro_rules! service_from {
    () => {
        " FROM services.services s JOIN services.service_categories c ON c.category_id = s.category_id"
    };
}

/// Public visibility (rule 3): published, live, in a live category.
macro_rules! public_visible {
    () => {
        "s.publishing_status = 'published' AND NOT s.is_deleted AND NOT c.is_deleted"
    };
}

/// The optional filters of the public list and search: `$n` category, `$n+1` mode.
macro_rules! public_filters {
    ($category:literal, $mode:literal) => {
        concat!(
            "($",
            $category,
            "::uuid IS NULL OR s.category_id = $",
            $category,
            ") AND ($",
            $mode,
            "::text IS NULL OR s.delivery_mode = $",
            $mode,
            ")"
        )
    };
}

const SELECT: &str = service_select!();
const FROM: &str = service_from!();
const PUBLIC: &str = public_visible!();

/// Filters of the public list.
#[derive(Debug, Clone, Default)]
pub struct PublicFilter {
    pub category_id: Option<Uuid>,
    pub delivery_mode: Option<&'static str>,
}

/// A row of a query that also reports the total with `count(*) OVER ()`.
#[derive(FromRow)]
struct WithTotal {
    #[sqlx(flatten)]
    record: ServiceRecord,
    total: i64,
}

/// The public page query: walks `services_public_list_idx` in `ORDER BY` order and stops
/// after `LIMIT` rows. Also what `cargo xtask bench` gives pgbench.
pub const PUBLIC_PAGE_SQL: &str = concat!(
    service_select!(),
    service_from!(),
    " WHERE ",
    public_visible!(),
    " AND ",
    public_filters!(1, 2),
    " ORDER BY s.order_number, s.title, s.service_id LIMIT $3 OFFSET $4"
);

/// The total of the public list (a separate query: a `count(*) OVER ()` on the page query
/// would make Postgres read and sort every published row for each page).
pub const PUBLIC_COUNT_SQL: &str = concat!(
    "SELECT count(*)",
    service_from!(),
    " WHERE ",
    public_visible!(),
    " AND ",
    public_filters!(1, 2)
);

/// A page of published services and the total; the two queries run concurrently.
pub async fn list_public(
    db: impl PgExecutor<'_> + Copy,
    filter: &PublicFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ServiceRecord>, i64), sqlx::Error> {
    let page = sqlx::query_as(PUBLIC_PAGE_SQL)
        .bind(filter.category_id)
        .bind(filter.delivery_mode)
        .bind(limit)
        .bind(offset)
        .fetch_all(db);
    let count = sqlx::query_scalar(PUBLIC_COUNT_SQL)
        .bind(filter.category_id)
        .bind(filter.delivery_mode)
        .fetch_one(db);
    tokio::try_join!(page, count)
}

/// One published service by id.
pub async fn get_public(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<ServiceRecord>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT}{FROM}
         WHERE s.service_id = $1 AND {PUBLIC}"
    )))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// One published service by slug.
pub async fn get_public_by_slug(
    db: impl PgExecutor<'_>,
    slug: &str,
) -> Result<Option<ServiceRecord>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT}{FROM}
         WHERE s.slug = $1 AND {PUBLIC}"
    )))
    .bind(slug)
    .fetch_optional(db)
    .await
}

/// Published services of several categories (for the featured view), ordered.
pub async fn public_of_categories(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
) -> Result<Vec<ServiceRecord>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT}{FROM}
         WHERE s.category_id = ANY($1) AND {PUBLIC} ORDER BY s.order_number, s.title, s.service_id"
    )))
    .bind(ids)
    .fetch_all(db)
    .await
}

/// Full-text search over published services: title matches first, then rank
/// (title weighted A above description B), then the usual order.
const SEARCH_FILTERS: &str = public_filters!(2, 3);

pub async fn search_public(
    db: impl PgExecutor<'_> + Copy,
    q: &str,
    filter: &PublicFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ServiceRecord>, i64), sqlx::Error> {
    let rows: Vec<WithTotal> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT}, count(*) OVER () AS total{FROM},
              websearch_to_tsquery('english', $1) AS query
         WHERE s.search_vector @@ query AND {PUBLIC}
           AND {SEARCH_FILTERS}
         ORDER BY (to_tsvector('english', s.title) @@ query) DESC, ts_rank(s.search_vector, query) DESC,
                  s.order_number, s.title, s.service_id
         LIMIT $4 OFFSET $5"
    )))
    .bind(q)
    .bind(filter.category_id)
    .bind(filter.delivery_mode)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?;
    let total = match rows.first() {
        Some(r) => r.total,
        None if offset > 0 => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*){FROM},
                        websearch_to_tsquery('english', $1) AS query
                 WHERE s.search_vector @@ query AND {PUBLIC} AND {SEARCH_FILTERS}"
            )))
            .bind(q)
            .bind(filter.category_id)
            .bind(filter.delivery_mode)
            .fetch_one(db)
            .await?
        }
        None => 0,
    };
    Ok((rows.into_iter().map(|r| r.record).collect(), total))
}

/// Filters of the admin list.
#[derive(Debug, Clone, Default)]
pub struct AdminFilter {
    pub status: Option<&'static str>,
    pub category_id: Option<Uuid>,
    pub include_deleted: bool,
}

/// A page of every service (any status) and the total.
pub async fn list_admin(
    db: impl PgExecutor<'_> + Copy,
    filter: &AdminFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ServiceRecord>, i64), sqlx::Error> {
    const WHERE: &str = "($1::text IS NULL OR s.publishing_status = $1) AND ($2::uuid IS NULL OR s.category_id = $2)
           AND ($3 OR NOT s.is_deleted)";
    let rows: Vec<WithTotal> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT}, count(*) OVER () AS total{FROM}
         WHERE {WHERE}
         ORDER BY s.order_number, s.title, s.service_id LIMIT $4 OFFSET $5"
    )))
    .bind(filter.status)
    .bind(filter.category_id)
    .bind(filter.include_deleted)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?;
    let total = match rows.first() {
        Some(r) => r.total,
        None if offset > 0 => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM services.services s WHERE {WHERE}"
            )))
            .bind(filter.status)
            .bind(filter.category_id)
            .bind(filter.include_deleted)
            .fetch_one(db)
            .await?
        }
        None => 0,
    };
    Ok((rows.into_iter().map(|r| r.record).collect(), total))
}

/// One service by id, any status, deleted included.
pub async fn get_admin(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<ServiceRecord>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT}{FROM}
         WHERE s.service_id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Locks the service row for a change and returns it (deleted included).
pub async fn lock(tx: &mut PgConnection, id: Uuid) -> Result<Option<ServiceRecord>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT}{FROM}
         WHERE s.service_id = $1 FOR UPDATE OF s"
    )))
    .bind(id)
    .fetch_optional(tx)
    .await
}

/// Inserts a new draft service.
pub async fn insert(
    tx: &mut PgConnection,
    id: Uuid,
    s: &NewService,
    category_id: Uuid,
    user: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO services.services (service_id, title, description, slug, long_description_url, category_id,
             image_url, order_number, delivery_mode, publishing_status, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'draft', $10)",
    )
    .bind(id)
    .bind(&s.title)
    .bind(&s.description)
    .bind(&s.slug)
    .bind(&s.long_description_url)
    .bind(category_id)
    .bind(&s.image_url)
    .bind(s.order_number)
    .bind(s.delivery_mode.as_str())
    .bind(user)
    .execute(tx)
    .await?;
    Ok(())
}

/// Applies a validated patch.
pub async fn update(
    tx: &mut PgConnection,
    id: Uuid,
    p: &ServicePatch,
    user: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE services.services SET
             title = coalesce($2, title),
             description = coalesce($3, description),
             slug = coalesce($4, slug),
             long_description_url = CASE WHEN $5 THEN $6 ELSE long_description_url END,
             category_id = coalesce($7, category_id),
             image_url = CASE WHEN $8 THEN $9 ELSE image_url END,
             order_number = coalesce($10, order_number),
             delivery_mode = coalesce($11, delivery_mode),
             modified_on = now(), modified_by = $12
         WHERE service_id = $1",
    )
    .bind(id)
    .bind(&p.title)
    .bind(&p.description)
    .bind(&p.slug)
    .bind(p.long_description_url.is_some())
    .bind(p.long_description_url.clone().flatten())
    .bind(p.category_id)
    .bind(p.image_url.is_some())
    .bind(p.image_url.clone().flatten())
    .bind(p.order_number)
    .bind(p.delivery_mode.map(|d| d.as_str()))
    .bind(user)
    .execute(tx)
    .await?;
    Ok(())
}

/// Sets the publishing status.
pub async fn set_status(
    tx: &mut PgConnection,
    id: Uuid,
    status: PublishingStatus,
    user: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE services.services SET publishing_status = $2, modified_on = now(), modified_by = $3 WHERE service_id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(user)
    .execute(tx)
    .await?;
    Ok(())
}

/// Soft-deletes a service.
pub async fn soft_delete(tx: &mut PgConnection, id: Uuid, user: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE services.services SET is_deleted = true, deleted_on = now(), deleted_by = $2,
             modified_on = now(), modified_by = $2
         WHERE service_id = $1",
    )
    .bind(id)
    .bind(user)
    .execute(tx)
    .await?;
    Ok(())
}

/// Moves every service of `from` (soft-deleted ones included, so no row points at a
/// deleted category) to `to`.
pub async fn reassign_category(
    tx: &mut PgConnection,
    from: Uuid,
    to: Uuid,
    user: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE services.services SET category_id = $2, modified_on = now(), modified_by = $3
         WHERE category_id = $1",
    )
    .bind(from)
    .bind(to)
    .bind(user)
    .execute(tx)
    .await?;
    Ok(())
}

/// Locks and returns every service of a category (soft-deleted ones included).
pub async fn lock_of_category(
    tx: &mut PgConnection,
    category_id: Uuid,
) -> Result<Vec<ServiceRecord>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT}{FROM}
         WHERE s.category_id = $1 ORDER BY s.service_id FOR UPDATE OF s"
    )))
    .bind(category_id)
    .fetch_all(tx)
    .await
}
