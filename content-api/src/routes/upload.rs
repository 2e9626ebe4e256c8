//! `POST /admin/api/v1/content/upload`: the multipart body streamed into the store while
//! it is hashed and counted, never held whole (`shared/spec/content-api.md`, "Upload
//! pipeline").
//!
//! The bytes go to `staging/<id>` first; once the hash is known, the object is moved to
//! its content-addressed path, or dropped when identical bytes are already stored, and
//! the row, its event, its audit record and its processing job are committed together.
//! A refused upload (too large, wrong type, bad field) leaves nothing behind.

use axum::{
    Router,
    extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State, multipart::Field},
    http::{StatusCode, header::CONTENT_LENGTH},
    routing::post,
};
use bytes::BytesMut;
use chrono::Utc;
use ic_audit::{Change, OperationType};
use ic_http::{context::Actor, extract::Json};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    AppState,
    db::{self, content::NewContent},
    domain::{
        AccessLevel, Category,
        filename::{extension, sanitize},
        inputs::{self, Metadata},
        mime::{self, Known, SNIFF_BYTES},
        object_path,
    },
    error::Error,
    processing::{self, JobReason},
    storage::{BlobWriter, InFlightGuard, STAGING_PREFIX},
};

/// Largest metadata field (alt text, description, tags…).
const MAX_FIELD_BYTES: usize = 64 * 1024;
/// Room for the multipart framing and metadata fields around the file.
const FORM_OVERHEAD_BYTES: u64 = 1024 * 1024;

/// The upload route (its body limit is the upload limit, enforced while streaming).
pub fn router() -> Router<AppState> {
    Router::new().route(
        "/admin/api/v1/content/upload",
        post(upload_content).layer(DefaultBodyLimit::disable()),
    )
}

/// The file as stored in staging.
struct Staged {
    path: String,
    /// Registered as in flight until the upload is done with it.
    _in_flight: InFlightGuard,
    size: u64,
    sha256: String,
    known: &'static Known,
    filename: String,
}

async fn upload_content(
    State(state): State<AppState>,
    actor: Actor,
    request: Request,
) -> Result<(StatusCode, Json<Value>), Error> {
    let max = state.uploads.max_bytes;
    let declared_length = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|len| len > max.saturating_add(FORM_OVERHEAD_BYTES)) {
        return Err(Error::TooLarge { limit: max });
    }
    let multipart = Multipart::from_request(request, &state)
        .await
        .map_err(|_| {
            Error::validation(
                "body",
                "a multipart/form-data body with a boundary is required",
            )
        })?;
    let mut staged = None;
    let form = read_form(&state, multipart, &mut staged).await;
    let result = match form {
        // On any failure below the staged object is deleted (a no-op once it was moved).
        Ok(metadata) => match &staged {
            Some(file) => store(&state, &actor, file, metadata).await,
            None => Err(Error::validation("file", "a file field is required")),
        },
        Err(err) => Err(err),
    };
    if let Err(err) = &result {
        if let Some(file) = staged {
            let _ = state.store.delete(&file.path).await;
        }
        match err {
            Error::TooLarge { .. } => state.metrics.upload("too_large", 0),
            Error::UnsupportedType(_) => state.metrics.upload("unsupported_type", 0),
            Error::Validation { .. } | Error::Api(_) => state.metrics.upload("invalid", 0),
            _ => {}
        }
    }
    result
}

/// Reads the form: metadata fields, and the file streamed to staging.
async fn read_form(
    state: &AppState,
    mut multipart: Multipart,
    staged: &mut Option<Staged>,
) -> Result<Metadata, Error> {
    let mut metadata = Metadata::default();
    let mut fields = 0;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        fields += 1;
        if fields > 20 {
            return Err(Error::validation("body", "too many form fields"));
        }
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "file" => {
                if staged.is_some() {
                    return Err(Error::validation("file", "one file per upload"));
                }
                *staged = Some(stream_file(state, field).await?);
            }
            "alt_text" => metadata.alt_text = inputs::alt_text(&text_field(field).await?)?,
            "description" => {
                metadata.description = inputs::description(&text_field(field).await?)?;
            }
            "tags" => metadata.tags = Some(inputs::tags_field(&text_field(field).await?)?),
            "access_level" => {
                metadata.access_level = Some(inputs::enum_field::<AccessLevel>(
                    "access_level",
                    &text_field(field).await?,
                    "public, internal, restricted",
                )?);
            }
            "content_category" => {
                metadata.content_category = Some(inputs::enum_field::<Category>(
                    "content_category",
                    &text_field(field).await?,
                    "document, image, video, audio, archive",
                )?);
            }
            _ => {
                return Err(Error::Validation {
                    field: "body",
                    message: format!(
                        "unknown form field {:?} (expected file, alt_text, description, tags, access_level, content_category)",
                        name.chars().take(64).collect::<String>()
                    ),
                });
            }
        }
    }
    Ok(metadata)
}

fn multipart_error(err: axum::extract::multipart::MultipartError) -> Error {
    Error::validation(
        "body",
        format!("malformed multipart body: {}", err.body_text()),
    )
}

/// A metadata field's text (UTF-8, at most 64 KiB).
async fn text_field(mut field: Field<'_>) -> Result<String, Error> {
    let name: &'static str = match field.name() {
        Some("alt_text") => "alt_text",
        Some("description") => "description",
        Some("tags") => "tags",
        Some("access_level") => "access_level",
        _ => "content_category",
    };
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if buf.len() + chunk.len() > MAX_FIELD_BYTES {
            return Err(Error::validation(name, "the field is too long"));
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf).map_err(|_| Error::validation(name, "the field must be UTF-8 text"))
}

/// Streams the file part to staging while hashing and counting it; its type is decided
/// from the first bytes before anything is written.
async fn stream_file(state: &AppState, mut field: Field<'_>) -> Result<Staged, Error> {
    let max = state.uploads.max_bytes;
    let filename = sanitize(field.file_name().unwrap_or("file"));
    let declared = field.content_type().map(str::to_owned);
    let mut head = BytesMut::new();
    while head.len() < SNIFF_BYTES {
        match field.chunk().await.map_err(multipart_error)? {
            Some(chunk) => head.extend_from_slice(&chunk),
            None => break,
        }
    }
    if head.is_empty() {
        return Err(Error::validation("file", "the file is empty"));
    }
    if head.len() as u64 > max {
        return Err(Error::TooLarge { limit: max });
    }
    let known = mime::decide(
        &head[..head.len().min(SNIFF_BYTES)],
        declared.as_deref(),
        extension(&filename),
        &state.uploads.allowed_mime_types,
    )?;
    let path = format!("{STAGING_PREFIX}/{}", Uuid::new_v4());
    let in_flight = state.uploads_in_flight.register(&path);
    let mut writer = state.store.writer(&path).await?;
    let mut hasher = Sha256::new();
    let mut size = head.len() as u64;
    hasher.update(&head);
    let written = async {
        writer.write(head.freeze()).await?;
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            size += chunk.len() as u64;
            if size > max {
                return Err(Error::TooLarge { limit: max });
            }
            hasher.update(&chunk);
            writer.write(chunk).await?;
        }
        Ok::<(), Error>(())
    }
    .await;
    finish(writer, written).await?;
    Ok(Staged {
        path,
        _in_flight: in_flight,
        size,
        sha256: hex::encode(hasher.finalize()),
        known,
        filename,
    })
}

/// Completes the staged object, or abandons it (nothing visible) when the body failed.
async fn finish(writer: BlobWriter, written: Result<(), Error>) -> Result<(), Error> {
    match written {
        Ok(()) => Ok(writer.finish().await?),
        Err(err) => {
            let _ = writer.abort().await;
            Err(err)
        }
    }
}

/// Moves the staged object into place (or drops it for identical stored bytes) and
/// commits the row, its event, audit record and processing job.
async fn store(
    state: &AppState,
    actor: &Actor,
    file: &Staged,
    metadata: Metadata,
) -> Result<(StatusCode, Json<Value>), Error> {
    let content_id = Uuid::now_v7();
    let created_on = Utc::now();
    let category = metadata.content_category.unwrap_or(file.known.category);
    let access = metadata.access_level.unwrap_or(AccessLevel::Internal);
    let tags = metadata.tags.clone().unwrap_or_default();
    let mut tx = state.pool.begin().await?;
    db::content::lock_hash(&mut tx, &file.sha256).await?;
    let existing = match db::content::stored_object_of(&mut tx, &file.sha256).await? {
        Some(path) if state.store.exists(&path).await? => Some(path),
        _ => None,
    };
    let (storage_path, moved) = match existing {
        Some(path) => {
            state.store.delete(&file.path).await?;
            (path, false)
        }
        None => {
            let path = object_path(
                created_on,
                content_id,
                &file.sha256,
                file.known.extensions[0],
            );
            state.store.rename(&file.path, &path).await?;
            (path, true)
        }
    };
    let committed = async {
        db::content::insert(
            &mut tx,
            &NewContent {
                content_id,
                original_filename: &file.filename,
                file_size: i64::try_from(file.size).unwrap_or(i64::MAX),
                mime_type: file.known.mime,
                content_hash: &file.sha256,
                storage_path: &storage_path,
                alt_text: metadata.alt_text.as_deref(),
                description: metadata.description.as_deref(),
                tags: &tags,
                content_category: category.as_str(),
                access_level: access.as_str(),
                upload_correlation_id: actor.ctx.correlation_id,
                created_on,
                created_by: &actor.identity.user_id,
            },
        )
        .await?;
        let after = db::content::get(&mut *tx, content_id).await?;
        state
            .record(
                &mut tx,
                &actor.ctx,
                Change {
                    entity_type: "content",
                    entity_id: content_id,
                    action: "uploaded",
                    operation: OperationType::Insert,
                    before: None,
                    after: after.as_ref().and_then(|a| serde_json::to_value(a).ok()),
                },
            )
            .await?;
        processing::enqueue(&mut tx, &actor.ctx, content_id, JobReason::Upload).await?;
        tx.commit().await?;
        Ok::<(), Error>(())
    }
    .await;
    if let Err(err) = committed {
        if moved {
            let _ = state.store.delete(&storage_path).await;
        }
        return Err(err);
    }
    state
        .metrics
        .upload(if moved { "accepted" } else { "deduplicated" }, file.size);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "content_id": content_id,
            "original_filename": &file.filename,
            "file_size": file.size,
            "mime_type": file.known.mime,
            "upload_status": "processing",
            "upload_correlation_id": actor.ctx.correlation_id,
            "estimated_processing_time": processing::estimated_seconds(file.size),
            "created_on": created_on,
        })),
    ))
}
