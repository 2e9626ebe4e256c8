//! The `services.featured_categories` table.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

/// A feature assignment with its category's name and slug.
#[derive(Debug, Clone, PartialEq, Serialize, FromRow)]
pub struct FeaturedRecord {
    pub featured_category_id: Uuid,
    pub category_id: Uuid,
    pub name: String,
    pub slug: String,
    pub feature_position: i16,
    pub created_on: DateTime<Utc>,
    pub created_by: String,
    pub modified_on: Option<DateTime<Utc>>,
    pub modified_by: Option<String>,
}

const SELECT: &str = "SELECT f.featured_category_id, f.category_id, c.name, c.slug, f.feature_position,
        f.created_on, f.created_by, f.modified_on, f.modified_by
    FROM services.featured_categories f JOIN services.service_categories c ON c.category_id = f.category_id";

/// Current assignments by position (only live categories are ever featured).
pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<FeaturedRecord>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE NOT c.is_deleted ORDER BY f.feature_position"
    )))
    .fetch_all(db)
    .await
}

/// The assignment at `position`, locked.
pub async fn lock_position(
    tx: &mut PgConnection,
    position: i16,
) -> Result<Option<FeaturedRecord>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE f.feature_position = $1 FOR UPDATE OF f"
    )))
    .bind(position)
    .fetch_optional(tx)
    .await
}

/// The assignment of `category_id`, locked.
pub async fn lock_category(
    tx: &mut PgConnection,
    category_id: Uuid,
) -> Result<Option<FeaturedRecord>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE f.category_id = $1 FOR UPDATE OF f"
    )))
    .bind(category_id)
    .fetch_optional(tx)
    .await
}

/// Inserts an assignment (the unique constraints turn races into 409s).
pub async fn insert(
    tx: &mut PgConnection,
    id: Uuid,
    category_id: Uuid,
    position: i16,
    user: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO services.featured_categories (featured_category_id, category_id, feature_position, created_by)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(category_id)
    .bind(position)
    .bind(user)
    .execute(tx)
    .await?;
    Ok(())
}

/// Removes an assignment.
pub async fn delete(tx: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM services.featured_categories WHERE featured_category_id = $1")
        .bind(id)
        .execute(tx)
        .await?;
    Ok(())
}
