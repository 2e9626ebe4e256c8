//! The blob store: one abstraction over a local directory and Azure Blob Storage, both
//! through `object_store` (`shared/spec/content-api.md`, "Storage").
//!
//! Uploads are written to `staging/<upload id>` while they are hashed, then moved to
//! their final, content-addressed path; a crash in between leaves an object that no row
//! names, which the lifecycle endpoints report and clean.

use std::{ops::Range, path::PathBuf, sync::Arc, time::Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use object_store::{
    GetOptions, GetRange, GetResultPayload, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload,
    WriteMultipart,
    azure::{AzureConfigKey, MicrosoftAzureBuilder},
    local::LocalFileSystem,
    path::Path,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::config::BlobStoreConfig;

/// Where uploads are written before their hash is known.
pub const STAGING_PREFIX: &str = "staging";
/// Where stored files live.
pub const CONTENT_PREFIX: &str = "content";
/// Where generated previews live.
pub const PREVIEWS_PREFIX: &str = "previews";
/// Part size of multipart uploads (Azure blocks): bounds the memory one upload holds.
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts of one upload in flight at once.
pub const PARTS_IN_FLIGHT: usize = 2;
/// Read buffer for files served from a local directory.
const FILE_READ_BYTES: usize = 256 * 1024;

/// A blob store failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object does not exist.
    #[error("object not found")]
    NotFound,
    /// The store could not be opened (configuration).
    #[error("blob store configuration: {0}")]
    Config(String),
    /// Any other failure of the store.
    #[error("blob store")]
    Store(#[source] object_store::Error),
    /// Reading a local file failed.
    #[error("blob store file")]
    Io(#[source] std::io::Error),
}

impl From<object_store::Error> for StorageError {
    fn from(err: object_store::Error) -> Self {
        match err {
            object_store::Error::NotFound { .. } => Self::NotFound,
            other => Self::Store(other),
        }
    }
}

/// The kind of backend, as `content_storage_backend.backend_type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// A directory.
    LocalFilesystem,
    /// Azure Blob Storage (or Azurite).
    AzureBlob,
}

impl BackendKind {
    /// The `backend_type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LocalFilesystem => "local-filesystem",
            Self::AzureBlob => "azure-blob",
        }
    }
}

/// The store content-api writes to and reads from.
#[derive(Debug, Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    kind: BackendKind,
    name: String,
    location: String,
    /// The directory of a local store.
    root: Option<PathBuf>,
}

/// A byte stream read from the store.
pub type ByteStream = BoxStream<'static, Result<Bytes, StorageError>>;

impl BlobStore {
    /// Opens the configured store (a directory is created if missing).
    pub fn open(config: &BlobStoreConfig) -> Result<Self, StorageError> {
        match config {
            BlobStoreConfig::File(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StorageError::Config(format!("cannot create {}: {e}", dir.display()))
                })?;
                let store = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| StorageError::Config(e.to_string()))?
                    .with_automatic_cleanup(true);
                let absolute = std::fs::canonicalize(dir).unwrap_or_else(|_| PathBuf::from(dir));
                Ok(Self {
                    inner: Arc::new(store),
                    kind: BackendKind::LocalFilesystem,
                    name: "local".into(),
                    location: format!("file://{}", absolute.display()),
                    root: Some(absolute),
                })
            }
            BlobStoreConfig::Azure { container, options } => {
                let mut builder = MicrosoftAzureBuilder::new().with_container_name(container);
                let mut account = None;
                for (name, value) in options {
                    if let Ok(key) = name.parse::<AzureConfigKey>() {
                        if matches!(key, AzureConfigKey::AccountName) {
                            account = Some(value.expose().to_owned());
                        }
                        builder = builder.with_config(key, value.expose());
                    }
                }
                let store = builder
                    .build()
                    .map_err(|e| StorageError::Config(e.to_string()))?;
                let account = account.unwrap_or_else(|| "devstoreaccount1".into());
                Ok(Self {
                    inner: Arc::new(store),
                    kind: BackendKind::AzureBlob,
                    name: "azure".into(),
                    location: format!("az://{account}/{container}"),
                    root: None,
                })
            }
        }
    }

    /// The backend's kind.
    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    /// The backend's name (`content_storage_backend.backend_name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it is, without secrets (`base_url`).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Starts a streamed write to `path` (bounded memory: [`PART_BYTES`] ×
    /// [`PARTS_IN_FLIGHT`]).
    pub async fn writer(&self, path: &str) -> Result<BlobWriter, StorageError> {
        let upload = self.inner.put_multipart(&Path::from(path)).await?;
        Ok(BlobWriter {
            inner: WriteMultipart::new_with_chunk_size(upload, PART_BYTES),
        })
    }

    /// Writes a small object at once (previews, probes).
    pub async fn put(&self, path: &str, bytes: Bytes) -> Result<(), StorageError> {
        self.inner
            .put(&Path::from(path), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    /// Moves an object (a rename in a directory; copy then delete in Azure).
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        self.inner
            .rename(&Path::from(from), &Path::from(to))
            .await?;
        Ok(())
    }

    /// Deletes an object; a missing one is not an error.
    pub async fn delete(&self, path: &str) -> Result<(), StorageError> {
        match self.inner.delete(&Path::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// An object's size and modification time.
    pub async fn head(&self, path: &str) -> Result<ObjectMeta, StorageError> {
        Ok(self.inner.head(&Path::from(path)).await?)
    }

    /// Whether an object exists.
    pub async fn exists(&self, path: &str) -> Result<bool, StorageError> {
        match self.head(path).await {
            Ok(_) => Ok(true),
            Err(StorageError::NotFound) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Streams `range` of an object (the whole object when `None`).
    pub async fn read(
        &self,
        path: &str,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, StorageError> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = self.inner.get_opts(&Path::from(path), options).await?;
        let range = result.range.clone();
        match result.payload {
            // object_store reads files 8 KiB at a time; larger reads serve big files at
            // several times the speed.
            GetResultPayload::File(file, _) => {
                let mut file = tokio::fs::File::from_std(file);
                file.seek(std::io::SeekFrom::Start(range.start))
                    .await
                    .map_err(StorageError::Io)?;
                let limited = file.take(range.end - range.start);
                Ok(ReaderStream::with_capacity(limited, FILE_READ_BYTES)
                    .map_err(StorageError::Io)
                    .boxed())
            }
            GetResultPayload::Stream(stream) => Ok(stream.map_err(StorageError::from).boxed()),
        }
    }

    /// Reads a whole (small) object.
    pub async fn read_all(&self, path: &str) -> Result<Bytes, StorageError> {
        Ok(self.inner.get(&Path::from(path)).await?.bytes().await?)
    }

    /// Every object under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        Ok(self
            .inner
            .list(Some(&Path::from(prefix)))
            .try_collect()
            .await?)
    }

    /// Uploads a local store was writing when its process died: object_store writes
    /// `<path>#<n>` files its listings do not show. (Azure keeps uncommitted blocks out
    /// of sight too, and discards them after a week.)
    pub fn partial_uploads(&self) -> Result<Vec<PartialUpload>, StorageError> {
        let Some(root) = &self.root else {
            return Ok(Vec::new());
        };
        let dir = root.join(STAGING_PREFIX);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(StorageError::Io(err)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(StorageError::Io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.contains('#') {
                continue;
            }
            let meta = entry.metadata().map_err(StorageError::Io)?;
            out.push(PartialUpload {
                path: format!("{STAGING_PREFIX}/{name}"),
                size: meta.len(),
                last_modified: meta
                    .modified()
                    .map(chrono::DateTime::<chrono::Utc>::from)
                    .unwrap_or_else(|_| chrono::Utc::now()),
            });
        }
        Ok(out)
    }

    /// Removes a partial upload found by [`BlobStore::partial_uploads`].
    pub fn delete_partial(&self, path: &str) -> Result<(), StorageError> {
        let Some(root) = &self.root else {
            return Ok(());
        };
        let name = path
            .strip_prefix(&format!("{STAGING_PREFIX}/"))
            .filter(|n| n.contains('#') && !n.contains('/') && !n.contains(".."))
            .ok_or_else(|| StorageError::Config("not a partial upload".into()))?;
        match std::fs::remove_file(root.join(STAGING_PREFIX).join(name)) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(StorageError::Io(err)),
        }
    }

    /// Write, read back and delete a probe object; the time of each step.
    pub async fn probe(&self) -> Result<ProbeTimings, StorageError> {
        let path = format!("health/{}", uuid::Uuid::new_v4());
        let payload = Bytes::from_static(b"content-api storage probe");
        let started = Instant::now();
        self.put(&path, payload.clone()).await?;
        let write_ms = elapsed_ms(started);
        let started = Instant::now();
        let read = self.read_all(&path).await;
        let read_ms = elapsed_ms(started);
        let started = Instant::now();
        self.delete(&path).await?;
        let delete_ms = elapsed_ms(started);
        if read? != payload {
            return Err(StorageError::Config(
                "the probe object read back differs from what was written".into(),
            ));
        }
        Ok(ProbeTimings {
            write_ms,
            read_ms,
            delete_ms,
        })
    }
}

fn elapsed_ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

/// An upload a local store was writing when its process died.
#[derive(Debug, Clone)]
pub struct PartialUpload {
    /// `staging/<name>#<n>`.
    pub path: String,
    /// Bytes written.
    pub size: u64,
    /// Last write.
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// The staging objects this process is writing or committing: the lifecycle cleanup
/// leaves them alone, whatever their age (an upload in flight is not an orphan).
#[derive(Debug, Clone, Default)]
pub struct InFlightUploads {
    paths: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl InFlightUploads {
    /// Registers `path` until the returned guard is dropped.
    pub fn register(&self, path: &str) -> InFlightGuard {
        self.lock().insert(path.to_owned());
        InFlightGuard {
            uploads: self.clone(),
            path: path.to_owned(),
        }
    }

    /// Whether `path` (or the partial file of it, `<path>#<n>`) is in flight.
    pub fn contains(&self, path: &str) -> bool {
        let base = path.split('#').next().unwrap_or(path);
        self.lock().contains(base)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.paths
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Keeps a staging path registered as in flight while it lives.
#[derive(Debug)]
pub struct InFlightGuard {
    uploads: InFlightUploads,
    path: String,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.uploads.lock().remove(&self.path);
    }
}

/// The steps of a storage probe, in milliseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ProbeTimings {
    /// Writing the probe object.
    pub write_ms: f64,
    /// Reading it back.
    pub read_ms: f64,
    /// Deleting it.
    pub delete_ms: f64,
}

/// A streamed write in progress; dropped without [`BlobWriter::finish`], nothing becomes
/// visible (call [`BlobWriter::abort`] to clean up at once).
pub struct BlobWriter {
    inner: WriteMultipart,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobWriter")
    }
}

impl BlobWriter {
    /// Appends bytes, waiting while too many parts are in flight.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), StorageError> {
        self.inner.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        self.inner.put(bytes);
        Ok(())
    }

    /// Completes the object.
    pub async fn finish(self) -> Result<(), StorageError> {
        self.inner.finish().await?;
        Ok(())
    }

    /// Abandons the object (uploaded parts are discarded).
    pub async fn abort(self) -> Result<(), StorageError> {
        self.inner.abort().await?;
        Ok(())
    }
}
