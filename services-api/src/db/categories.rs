//! The `services.service_categories` table.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

use crate::domain::inputs::{CategoryPatch, NewCategory};

/// A category as admins see it, with its number of published services.
#[derive(Debug, Clone, PartialEq, Serialize, FromRow)]
pub struct CategoryRecord {
    pub category_id: Uuid,
    pub name: String,
    pub slug: String,
    pub order_number: i32,
    pub is_default_unassigned: bool,
    pub service_count: i64,
    pub created_on: DateTime<Utc>,
    pub created_by: String,
    pub modified_on: Option<DateTime<Utc>>,
    pub modified_by: Option<String>,
    pub is_deleted: bool,
    pub deleted_on: Option<DateTime<Utc>>,
    pub deleted_by: Option<String>,
}

/// A category as the public sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicCategory {
    pub category_id: Uuid,
    pub name: String,
    pub slug: String,
    pub order_number: i32,
    pub service_count: i64,
}

impl From<CategoryRecord> for PublicCategory {
    fn from(c: CategoryRecord) -> Self {
        Self {
            category_id: c.category_id,
            name: c.name,
            slug: c.slug,
            order_number: c.order_number,
            service_count: c.service_count,
        }
    }
}

const SELECT: &str = "SELECT c.category_id, c.name, c.slug, c.order_number, c.is_default_unassigned,
        (SELECT count(*) FROM services.services s
          WHERE s.category_id = c.category_id AND s.publishing_status = 'published' AND NOT s.is_deleted) AS service_count,
        c.created_on, c.created_by, c.modified_on, c.modified_by, c.is_deleted, c.deleted_on, c.deleted_by
    FROM services.service_categories c";

/// Live categories, the default one included or not, by order then name.
pub async fn list_live(
    db: impl PgExecutor<'_>,
    include_default: bool,
) -> Result<Vec<CategoryRecord>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE NOT c.is_deleted AND ($1 OR NOT c.is_default_unassigned) ORDER BY c.order_number, c.name, c.category_id"
    )))
    .bind(include_default)
    .fetch_all(db)
    .await
}

/// One category by id (deleted included).
pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<CategoryRecord>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE c.category_id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Locks a category row (deleted included) and returns it.
pub async fn lock(tx: &mut PgConnection, id: Uuid) -> Result<Option<CategoryRecord>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE c.category_id = $1 FOR UPDATE OF c"
    )))
    .bind(id)
    .fetch_optional(tx)
    .await
}

/// Locks a category against deletion while a service or feature refers to it; returns
/// whether it is live.
pub async fn share_live(tx: &mut PgConnection, id: Uuid) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT NOT is_deleted FROM services.service_categories WHERE category_id = $1 FOR SHARE",
    )
    .bind(id)
    .fetch_optional(tx)
    .await
}

/// Inserts a category.
pub async fn insert(
    tx: &mut PgConnection,
    id: Uuid,
    c: &NewCategory,
    user: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO services.service_categories (category_id, name, slug, order_number, created_by)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(&c.name)
    .bind(&c.slug)
    .bind(c.order_number)
    .bind(user)
    .execute(tx)
    .await?;
    Ok(())
}

/// Applies a patch.
pub async fn update(
    tx: &mut PgConnection,
    id: Uuid,
    p: &CategoryPatch,
    user: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE services.service_categories SET name = coalesce($2, name), slug = coalesce($3, slug),
             order_number = coalesce($4, order_number), modified_on = now(), modified_by = $5
         WHERE category_id = $1",
    )
    .bind(id)
    .bind(&p.name)
    .bind(&p.slug)
    .bind(p.order_number)
    .bind(user)
    .execute(tx)
    .await?;
    Ok(())
}

/// Soft-deletes a category.
pub async fn soft_delete(tx: &mut PgConnection, id: Uuid, user: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE services.service_categories SET is_deleted = true, deleted_on = now(), deleted_by = $2,
             modified_on = now(), modified_by = $2
         WHERE category_id = $1",
    )
    .bind(id)
    .bind(user)
    .execute(tx)
    .await?;
    Ok(())
}
