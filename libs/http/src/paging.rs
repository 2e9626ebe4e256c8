//! Page/limit validation and the pagination object of list responses.

use serde::Serialize;

use crate::ApiError;

/// Default page size when `limit` is absent.
pub const DEFAULT_LIMIT: u32 = 20;

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1-based page number.
    pub page: u32,
    /// Page size.
    pub limit: u32,
}

impl Page {
    /// Validates `page ≥ 1` and `1 ≤ limit ≤ max_limit` (400 naming the parameter).
    pub fn new(page: Option<u32>, limit: Option<u32>, max_limit: u32) -> Result<Self, ApiError> {
        let page = page.unwrap_or(1);
        let limit = limit.unwrap_or(DEFAULT_LIMIT.min(max_limit));
        if page == 0 {
            return Err(ApiError::validation("page", "page must be 1 or greater"));
        }
        if limit == 0 || limit > max_limit {
            return Err(ApiError::validation(
                "limit",
                format!("limit must be between 1 and {max_limit}"),
            ));
        }
        Ok(Self { page, limit })
    }

    /// SQL `OFFSET`.
    pub fn offset(self) -> i64 {
        (i64::from(self.page) - 1) * i64::from(self.limit)
    }

    /// SQL `LIMIT`.
    pub fn sql_limit(self) -> i64 {
        i64::from(self.limit)
    }

    /// The pagination object for a result of `total_items` rows.
    pub fn pagination(self, total_items: i64) -> Pagination {
        let total_items = total_items.max(0);
        let limit = i64::from(self.limit);
        let total_pages = (total_items + limit - 1) / limit;
        Pagination {
            page: self.page,
            limit: self.limit,
            total_items,
            total_pages,
            has_next: i64::from(self.page) < total_pages,
            has_previous: self.page > 1,
        }
    }
}

/// `"pagination"` of list responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pagination {
    /// 1-based page number.
    pub page: u32,
    /// Page size.
    pub limit: u32,
    /// Rows matching the query.
    pub total_items: i64,
    /// Pages at this size.
    pub total_pages: i64,
    /// Whether a later page has rows.
    pub has_next: bool,
    /// Whether this is not the first page.
    pub has_previous: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_and_limit_edges() {
        assert!(Page::new(Some(0), None, 100).is_err());
        assert!(Page::new(None, Some(0), 100).is_err());
        assert!(Page::new(None, Some(101), 100).is_err());
        assert!(Page::new(None, Some(51), 50).is_err());
        assert_eq!(
            Page::new(None, None, 100).unwrap(),
            Page { page: 1, limit: 20 }
        );
        let p = Page::new(Some(3), Some(10), 100).unwrap();
        assert_eq!(p.offset(), 20);
        let pg = p.pagination(25);
        assert_eq!(
            (pg.total_pages, pg.has_next, pg.has_previous),
            (3, false, true)
        );
        let pg = Page::new(Some(1), Some(10), 100).unwrap().pagination(0);
        assert_eq!(
            (pg.total_pages, pg.has_next, pg.has_previous),
            (0, false, false)
        );
        let far = Page::new(Some(u32::MAX), Some(100), 100).unwrap();
        assert!(far.offset() > 0);
    }
}
