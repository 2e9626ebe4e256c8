//! Public reads (through public-gateway): the list of public files, one file's metadata,
//! and its bytes (`shared/spec/content-api.md`, "Public endpoints").
//!
//! Visibility: a file is seen when it is `available` and not deleted, and either public,
//! or internal with an identified caller (`X-User-ID`). Anything else, restricted files
//! included, is 404: the answer does not tell whether an id exists.

use std::ops::RangeInclusive;

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use futures::{StreamExt, stream};
use ic_http::{
    RequestContext,
    etag::if_none_match,
    extract::{Json, Path, Query},
    paging::{Page, Pagination},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    AppState,
    access_log::AccessEntry,
    db::{
        self,
        content::{ContentRecord, PublicFilter},
    },
    domain::{
        AccessLevel, AccessType, Category, UploadStatus,
        filename::content_disposition,
        range::{self, Ranges},
    },
    error::Error,
    preview::{PreviewFormat, PreviewSize, has_preview, preview_path, render},
    storage::StorageError,
};

const MAX_LIMIT: u32 = 100;
/// Public files never change (the path names their hash): cached for a year.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Internal files: the browser may keep them, shared caches may not.
pub const PRIVATE: &str = "private, max-age=3600";

/// The public routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/content", get(list_content))
        .route("/api/v1/content/{id}", get(get_content))
        .route("/api/v1/content/{id}/download", get(download_content))
        .route("/api/v1/content/{id}/preview", get(preview_content))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    page: Option<u32>,
    limit: Option<u32>,
    category: Option<Category>,
    mime_type: Option<String>,
    tags: Option<String>,
}

/// A file as the public sees it.
#[derive(Debug, Serialize)]
pub struct PublicContent {
    pub content_id: Uuid,
    pub original_filename: String,
    pub file_size: i64,
    pub mime_type: String,
    pub content_hash: String,
    pub content_category: String,
    pub access_level: String,
    pub upload_status: String,
    pub alt_text: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub created_on: chrono::DateTime<chrono::Utc>,
    pub modified_on: Option<chrono::DateTime<chrono::Utc>>,
    pub download_url: String,
    pub preview_url: Option<String>,
}

impl From<ContentRecord> for PublicContent {
    fn from(r: ContentRecord) -> Self {
        let preview_url =
            has_preview(&r.mime_type).then(|| format!("/api/v1/content/{}/preview", r.content_id));
        Self {
            download_url: format!("/api/v1/content/{}/download", r.content_id),
            preview_url,
            content_id: r.content_id,
            original_filename: r.original_filename,
            file_size: r.file_size,
            mime_type: r.mime_type,
            content_hash: r.content_hash,
            content_category: r.content_category,
            access_level: r.access_level,
            upload_status: r.upload_status,
            alt_text: r.alt_text,
            description: r.description,
            tags: r.tags,
            created_on: r.created_on,
            modified_on: r.modified_on,
        }
    }
}

#[derive(Debug, Serialize)]
struct ContentPage {
    content: Vec<PublicContent>,
    pagination: Pagination,
}

async fn list_content(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<ContentPage>, Error> {
    let page = Page::new(q.page, q.limit, MAX_LIMIT)?;
    let mime_type = q
        .mime_type
        .as_deref()
        .map(crate::domain::inputs::mime_filter)
        .transpose()?;
    let tags = match q.tags.as_deref() {
        Some(tags) => match crate::domain::inputs::tags_filter(tags)? {
            Some(tags) => tags,
            // A tag no file can carry: an empty page.
            None => {
                return Ok(Json(ContentPage {
                    content: Vec::new(),
                    pagination: page.pagination(0),
                }));
            }
        },
        None => Vec::new(),
    };
    let filter = PublicFilter {
        category: q.category.map(Category::as_str),
        mime_type,
        tags,
    };
    let (rows, total) =
        db::content::list_public(&state.pool, &filter, page.sql_limit(), page.offset()).await?;
    Ok(Json(ContentPage {
        content: rows.into_iter().map(PublicContent::from).collect(),
        pagination: page.pagination(total),
    }))
}

/// The file if `ctx`'s caller may see it.
async fn visible(state: &AppState, ctx: &RequestContext, id: Uuid) -> Result<ContentRecord, Error> {
    let record = db::content::get(&state.pool, id)
        .await?
        .ok_or(Error::NotFound("content"))?;
    let readable = match record.access() {
        AccessLevel::Public => true,
        AccessLevel::Internal => ctx.identity.is_some(),
        AccessLevel::Restricted => false,
    };
    if record.is_deleted || record.status() != UploadStatus::Available || !readable {
        return Err(Error::NotFound("content"));
    }
    Ok(record)
}

async fn get_content(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Json<PublicContent>, Error> {
    let record = visible(&state, &ctx, id).await?;
    state.access_log.record(AccessEntry::start(
        &ctx,
        &headers,
        id,
        AccessType::View,
        state.store.name(),
    ));
    Ok(Json(record.into()))
}

#[derive(Debug, Deserialize)]
struct DownloadQuery {
    inline: Option<bool>,
}

/// Types a browser may show inline; everything else (SVG and text included) is an
/// attachment whatever is asked.
fn may_be_inline(mime: &str) -> bool {
    (mime.starts_with("image/") && mime != "image/svg+xml")
        || mime.starts_with("video/")
        || mime.starts_with("audio/")
        || mime == "application/pdf"
}

async fn download_content(
    State(state): State<AppState>,
    ctx: RequestContext,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Query(q): Query<DownloadQuery>,
) -> Result<Response, Error> {
    let record = visible(&state, &ctx, id).await?;
    let mut entry =
        AccessEntry::start(&ctx, &headers, id, AccessType::Download, state.store.name());
    let etag = format!("\"{}\"", record.content_hash);
    let size = u64::try_from(record.file_size).unwrap_or(0);
    let mut response_headers = delivery_headers(&record, &etag);
    set(&mut response_headers, header::ACCEPT_RANGES, "bytes");
    set(
        &mut response_headers,
        header::HeaderName::from_static("x-content-hash"),
        &record.content_hash,
    );
    if if_none_match(&headers, &etag) {
        entry.status = 304;
        entry.cache_hit = true;
        state.access_log.record(entry);
        return Ok((StatusCode::NOT_MODIFIED, response_headers).into_response());
    }
    let inline = q.inline.unwrap_or(false) && may_be_inline(&record.mime_type);
    set(
        &mut response_headers,
        header::CONTENT_DISPOSITION,
        &content_disposition(inline, &record.original_filename),
    );
    // `If-Range` with another validator: the ranges were for other bytes; send all.
    let range_header = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| {
            headers
                .get(header::IF_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v == etag)
        });
    let head = method == Method::HEAD;
    match range::evaluate(range_header, size) {
        Ranges::Full => {
            set(
                &mut response_headers,
                header::CONTENT_TYPE,
                &record.mime_type,
            );
            set(
                &mut response_headers,
                header::CONTENT_LENGTH,
                &size.to_string(),
            );
            let body = if head {
                state.access_log.record(entry);
                Body::empty()
            } else {
                body_of(&state, &record.storage_path, None, entry).await?
            };
            Ok((StatusCode::OK, response_headers, body).into_response())
        }
        Ranges::Unsatisfiable => {
            set(
                &mut response_headers,
                header::CONTENT_RANGE,
                &format!("bytes */{size}"),
            );
            let mut response = ic_http::ApiError::new(
                ic_http::ErrorCode::ValidationError,
                "the requested range is not satisfiable",
            )
            .with_details(serde_json::json!({ "field": "range", "size": size }))
            .into_response();
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            response.headers_mut().extend(response_headers);
            entry.status = 416;
            state.access_log.record(entry);
            Ok(response)
        }
        Ranges::Partial(ranges) if ranges.len() == 1 => {
            let range = ranges[0].clone();
            set(
                &mut response_headers,
                header::CONTENT_TYPE,
                &record.mime_type,
            );
            set(
                &mut response_headers,
                header::CONTENT_RANGE,
                &format!("bytes {}-{}/{size}", range.start(), range.end()),
            );
            set(
                &mut response_headers,
                header::CONTENT_LENGTH,
                &(range.end() - range.start() + 1).to_string(),
            );
            entry.status = 206;
            let body = if head {
                state.access_log.record(entry);
                Body::empty()
            } else {
                body_of(&state, &record.storage_path, Some(range), entry).await?
            };
            Ok((StatusCode::PARTIAL_CONTENT, response_headers, body).into_response())
        }
        Ranges::Partial(ranges) => {
            let boundary = Uuid::new_v4().simple().to_string();
            let parts: Vec<(Bytes, RangeInclusive<u64>)> = ranges
                .into_iter()
                .map(|r| {
                    let head = format!(
                        "\r\n--{boundary}\r\nContent-Type: {}\r\nContent-Range: bytes {}-{}/{size}\r\n\r\n",
                        record.mime_type,
                        r.start(),
                        r.end()
                    );
                    (Bytes::from(head), r)
                })
                .collect();
            let tail = Bytes::from(format!("\r\n--{boundary}--\r\n"));
            let length: u64 = parts
                .iter()
                .map(|(head, r)| head.len() as u64 + r.end() - r.start() + 1)
                .sum::<u64>()
                + tail.len() as u64;
            set(
                &mut response_headers,
                header::CONTENT_TYPE,
                &format!("multipart/byteranges; boundary={boundary}"),
            );
            set(
                &mut response_headers,
                header::CONTENT_LENGTH,
                &length.to_string(),
            );
            if head {
                return Ok(
                    (StatusCode::PARTIAL_CONTENT, response_headers, Body::empty()).into_response(),
                );
            }
            let store = state.store.clone();
            let path = record.storage_path.clone();
            let body = stream::iter(parts)
                .then(move |(head, range)| {
                    let store = store.clone();
                    let path = path.clone();
                    async move {
                        let bytes = store
                            .read(&path, Some(*range.start()..range.end() + 1))
                            .await?;
                        Ok::<_, StorageError>(
                            stream::once(async move { Ok(head) }).chain(bytes).boxed(),
                        )
                    }
                })
                .map(|part| match part {
                    Ok(s) => s,
                    Err(err) => stream::once(async move { Err(err) }).boxed(),
                })
                .flatten()
                .chain(stream::once(async move { Ok(tail) }));
            Ok((
                StatusCode::PARTIAL_CONTENT,
                response_headers,
                Body::from_stream(state.access_log.metered(body.boxed(), entry)),
            )
                .into_response())
        }
    }
}

/// Sets a header whose value is built from data (skipped if it cannot be a header).
fn set(map: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        map.insert(name, value);
    }
}

/// What every answer carrying a file's bytes (or a preview) has: its `ETag`, caching by
/// access level, and the headers that keep a browser from running it.
fn delivery_headers(record: &ContentRecord, etag: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    set(&mut headers, header::ETAG, etag);
    set(
        &mut headers,
        header::CACHE_CONTROL,
        if record.access() == AccessLevel::Public {
            IMMUTABLE
        } else {
            PRIVATE
        },
    );
    set(
        &mut headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; sandbox",
    );
    set(&mut headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    headers
}

/// The object's bytes (or a range of them) as a streamed body.
async fn body_of(
    state: &AppState,
    path: &str,
    range: Option<RangeInclusive<u64>>,
    entry: AccessEntry,
) -> Result<Body, Error> {
    let stream = state
        .store
        .read(path, range.map(|r| *r.start()..r.end() + 1))
        .await
        .map_err(|err| match err {
            // The row says available but the object is gone: not the client's fault.
            StorageError::NotFound => {
                tracing::error!(path, "an available file's object is missing from the store");
                Error::Storage(StorageError::NotFound)
            }
            other => Error::Storage(other),
        })?;
    Ok(Body::from_stream(state.access_log.metered(stream, entry)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewQuery {
    size: Option<PreviewSize>,
    format: Option<PreviewFormat>,
}

/// Largest image previews are made of.
const MAX_PREVIEW_SOURCE_BYTES: i64 = 50 * 1024 * 1024;

/// The preview of an image: from the store when made before, else made now (once, even
/// for concurrent first requests) and kept.
async fn preview_content(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Query(q): Query<PreviewQuery>,
) -> Result<Response, Error> {
    let size = q.size.unwrap_or(PreviewSize::Medium);
    let format = q.format.unwrap_or(PreviewFormat::Webp);
    let record = visible(&state, &ctx, id).await?;
    if !has_preview(&record.mime_type) {
        return Err(Error::Rule(format!(
            "previews are made of PNG, JPEG, GIF and WebP images; this file is {}",
            record.mime_type
        )));
    }
    if record.file_size > MAX_PREVIEW_SOURCE_BYTES {
        return Err(Error::Rule("the image is too large to preview".into()));
    }
    let mut entry = AccessEntry::start(&ctx, &headers, id, AccessType::Preview, state.store.name());
    let etag = format!(
        "\"{}-{}-{}\"",
        record.content_hash,
        size.as_str(),
        format.extension()
    );
    let mut response_headers = delivery_headers(&record, &etag);
    if if_none_match(&headers, &etag) {
        entry.status = 304;
        entry.cache_hit = true;
        state.access_log.record(entry);
        return Ok((StatusCode::NOT_MODIFIED, response_headers).into_response());
    }
    let path = preview_path(&record.content_hash, size, format);
    let lock = state.previews.lock_for(&path);
    let guard = lock.lock().await;
    let bytes = match state.store.read_all(&path).await {
        Ok(bytes) => {
            entry.cache_hit = true;
            state.metrics.preview("cached");
            bytes
        }
        Err(StorageError::NotFound) => {
            let source = state.store.read_all(&record.storage_path).await?;
            let rendered = tokio::task::spawn_blocking(move || render(&source, size, format))
                .await
                .map_err(|_| Error::Rule("the image cannot be previewed".into()))?
                .map_err(|e| Error::Rule(e.to_string()))?;
            let rendered = Bytes::from(rendered);
            state.store.put(&path, rendered.clone()).await?;
            state.metrics.preview("generated");
            rendered
        }
        Err(err) => return Err(err.into()),
    };
    drop(guard);
    set(&mut response_headers, header::CONTENT_TYPE, format.mime());
    set(
        &mut response_headers,
        header::CONTENT_LENGTH,
        &bytes.len().to_string(),
    );
    let stem = record
        .original_filename
        .rsplit_once('.')
        .map_or(record.original_filename.as_str(), |(stem, _)| stem);
    set(
        &mut response_headers,
        header::CONTENT_DISPOSITION,
        &content_disposition(
            true,
            &format!("{stem}-{}.{}", size.as_str(), format.extension()),
        ),
    );
    let body = stream::once(async move { Ok::<_, StorageError>(bytes) }).boxed();
    Ok((
        StatusCode::OK,
        response_headers,
        Body::from_stream(state.access_log.metered(body, entry)),
    )
        .into_response())
}
