//! Request bodies of the admin endpoints and their validation into domain values.

use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use super::{DeliveryMode, slug, text};
use crate::error::Error;

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn nullable<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

fn title(value: &str) -> Result<String, Error> {
    text::text("title", value, 1, 255, false)
}

fn description(value: &str) -> Result<String, Error> {
    text::text("description", value, 1, 10_000, true)
}

fn name(value: &str) -> Result<String, Error> {
    text::text("name", value, 1, 255, false)
}

fn explicit_slug(value: &str) -> Result<String, Error> {
    let value = value.trim();
    if slug::is_valid(value) {
        Ok(value.to_owned())
    } else {
        Err(Error::validation(
            "slug",
            "slug must be lower-case letters and digits separated by single hyphens, at most 100 characters",
        ))
    }
}

fn slug_or_generated(given: Option<&str>, from: &str) -> Result<String, Error> {
    match given {
        Some(s) => explicit_slug(s),
        None => slug::slugify(from).ok_or_else(|| {
            Error::validation(
                "slug",
                "no slug can be generated from this text; give one explicitly",
            )
        }),
    }
}

fn optional_url(field: &'static str, value: Option<&str>) -> Result<Option<String>, Error> {
    value.map(|v| text::https_url(field, v)).transpose()
}

/// `POST /admin/api/v1/services`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateService {
    title: String,
    description: String,
    slug: Option<String>,
    long_description_url: Option<String>,
    category_id: Option<Uuid>,
    image_url: Option<String>,
    order_number: Option<i32>,
    delivery_mode: DeliveryMode,
}

/// A validated new service.
#[derive(Debug, Clone)]
pub struct NewService {
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Given or generated slug.
    pub slug: String,
    /// https URL.
    pub long_description_url: Option<String>,
    /// Requested category (the default one when absent).
    pub category_id: Option<Uuid>,
    /// https URL.
    pub image_url: Option<String>,
    /// Ordering.
    pub order_number: i32,
    /// Delivery mode.
    pub delivery_mode: DeliveryMode,
}

impl CreateService {
    /// Validates every field.
    pub fn validate(self) -> Result<NewService, Error> {
        let title = title(&self.title)?;
        Ok(NewService {
            slug: slug_or_generated(self.slug.as_deref(), &title)?,
            description: description(&self.description)?,
            long_description_url: optional_url(
                "long_description_url",
                self.long_description_url.as_deref(),
            )?,
            image_url: optional_url("image_url", self.image_url.as_deref())?,
            category_id: self.category_id,
            order_number: self.order_number.unwrap_or(0),
            delivery_mode: self.delivery_mode,
            title,
        })
    }
}

/// `PUT /admin/api/v1/services/{id}`: a partial update; `null` clears the URL fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateService {
    title: Option<String>,
    description: Option<String>,
    slug: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    long_description_url: Option<Option<String>>,
    category_id: Option<Uuid>,
    #[serde(default, deserialize_with = "nullable")]
    image_url: Option<Option<String>>,
    order_number: Option<i32>,
    delivery_mode: Option<DeliveryMode>,
}

/// A validated partial update of a service.
#[derive(Debug, Clone, Default)]
pub struct ServicePatch {
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New slug.
    pub slug: Option<String>,
    /// New URL (`Some(None)` clears).
    pub long_description_url: Option<Option<String>>,
    /// New category.
    pub category_id: Option<Uuid>,
    /// New URL (`Some(None)` clears).
    pub image_url: Option<Option<String>>,
    /// New ordering.
    pub order_number: Option<i32>,
    /// New delivery mode.
    pub delivery_mode: Option<DeliveryMode>,
}

impl UpdateService {
    /// Validates the fields present; at least one is required.
    pub fn validate(self) -> Result<ServicePatch, Error> {
        let nullable_url =
            |field, v: Option<Option<String>>| -> Result<Option<Option<String>>, Error> {
                v.map(|inner| inner.map(|u| text::https_url(field, &u)).transpose())
                    .transpose()
            };
        let patch = ServicePatch {
            title: self.title.as_deref().map(title).transpose()?,
            description: self.description.as_deref().map(description).transpose()?,
            slug: self.slug.as_deref().map(explicit_slug).transpose()?,
            long_description_url: nullable_url("long_description_url", self.long_description_url)?,
            category_id: self.category_id,
            image_url: nullable_url("image_url", self.image_url)?,
            order_number: self.order_number,
            delivery_mode: self.delivery_mode,
        };
        let empty = patch.title.is_none()
            && patch.description.is_none()
            && patch.slug.is_none()
            && patch.long_description_url.is_none()
            && patch.category_id.is_none()
            && patch.image_url.is_none()
            && patch.order_number.is_none()
            && patch.delivery_mode.is_none();
        if empty {
            return Err(Error::validation(
                "body",
                "give at least one field to update",
            ));
        }
        Ok(patch)
    }
}

/// `POST /admin/api/v1/services/categories`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCategory {
    name: String,
    slug: Option<String>,
    order_number: Option<i32>,
}

/// A validated new category.
#[derive(Debug, Clone)]
pub struct NewCategory {
    /// Name.
    pub name: String,
    /// Given or generated slug.
    pub slug: String,
    /// Ordering.
    pub order_number: i32,
}

impl CreateCategory {
    /// Validates every field.
    pub fn validate(self) -> Result<NewCategory, Error> {
        let name = name(&self.name)?;
        Ok(NewCategory {
            slug: slug_or_generated(self.slug.as_deref(), &name)?,
            order_number: self.order_number.unwrap_or(0),
            name,
        })
    }
}

/// `PUT /admin/api/v1/services/categories/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCategory {
    name: Option<String>,
    slug: Option<String>,
    order_number: Option<i32>,
}

/// A validated partial update of a category.
#[derive(Debug, Clone, Default)]
pub struct CategoryPatch {
    /// New name.
    pub name: Option<String>,
    /// New slug.
    pub slug: Option<String>,
    /// New ordering.
    pub order_number: Option<i32>,
}

impl UpdateCategory {
    /// Validates the fields present; at least one is required.
    pub fn validate(self) -> Result<CategoryPatch, Error> {
        let patch = CategoryPatch {
            name: self.name.as_deref().map(name).transpose()?,
            slug: self.slug.as_deref().map(explicit_slug).transpose()?,
            order_number: self.order_number,
        };
        if patch.name.is_none() && patch.slug.is_none() && patch.order_number.is_none() {
            return Err(Error::validation(
                "body",
                "give at least one field to update",
            ));
        }
        Ok(patch)
    }
}

/// `POST /admin/api/v1/services/featured-categories`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureCategory {
    /// The category to feature.
    pub category_id: Uuid,
    /// 1 or 2.
    pub feature_position: i64,
}

/// Validates a feature position (1 or 2).
pub fn feature_position(value: i64) -> Result<i16, Error> {
    match value {
        1 => Ok(1),
        2 => Ok(2),
        _ => Err(Error::validation(
            "feature_position",
            "feature_position must be 1 or 2",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(json: serde_json::Value) -> Result<NewService, Error> {
        serde_json::from_value::<CreateService>(json)
            .unwrap()
            .validate()
    }

    fn field(err: Error) -> &'static str {
        match err {
            Error::Validation { field, .. } => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_service_without_slug_gets_one_from_its_title() {
        let s = create(serde_json::json!({"title": "Home Dialysis", "description": "d", "delivery_mode": "mobile_service"})).unwrap();
        assert_eq!(s.slug, "home-dialysis");
        assert_eq!(s.order_number, 0);
    }

    #[test]
    fn each_invalid_field_is_named() {
        let base = serde_json::json!({"title": "T", "description": "d", "delivery_mode": "mobile_service"});
        let with = |k: &str, v: serde_json::Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        assert_eq!(
            field(create(with("title", "x".repeat(256).into())).unwrap_err()),
            "title"
        );
        assert_eq!(
            field(create(with("description", "".into())).unwrap_err()),
            "description"
        );
        assert_eq!(
            field(create(with("slug", "Bad Slug".into())).unwrap_err()),
            "slug"
        );
        assert_eq!(
            field(create(with("image_url", "http://x.org/a.png".into())).unwrap_err()),
            "image_url"
        );
        assert_eq!(
            field(create(with("long_description_url", "ftp://x".into())).unwrap_err()),
            "long_description_url"
        );
        assert_eq!(
            field(create(with("title", "%%%".into())).unwrap_err()),
            "slug"
        );
    }

    #[test]
    fn an_update_distinguishes_null_from_absent_and_refuses_an_empty_body() {
        let patch: UpdateService = serde_json::from_str(r#"{"image_url": null}"#).unwrap();
        assert_eq!(patch.validate().unwrap().image_url, Some(None));
        let patch: UpdateService = serde_json::from_str(r#"{"title": "New"}"#).unwrap();
        let patch = patch.validate().unwrap();
        assert_eq!(patch.image_url, None);
        assert_eq!(patch.title.as_deref(), Some("New"));
        let empty: UpdateService = serde_json::from_str("{}").unwrap();
        assert_eq!(field(empty.validate().unwrap_err()), "body");
    }

    #[test]
    fn feature_positions_are_one_or_two() {
        assert_eq!(feature_position(1).unwrap(), 1);
        assert_eq!(feature_position(2).unwrap(), 2);
        for bad in [0, 3, -1, i64::MAX] {
            assert_eq!(
                field(feature_position(bad).unwrap_err()),
                "feature_position"
            );
        }
    }
}
