//! The content layer: what a registry or a local store means by blobs, uploads, manifests, tags
//! and referrers, built on a [`StorageDriver`] for bytes and a [`MetadataStore`] for the rest.
//!
//! **Architecture Invariant:** a blob becomes visible only after its digest was verified and its
//! bytes are durable: upload bytes are hashed as they arrive, fsynced, renamed into
//! `blobs/` (then the directory is fsynced), and only then linked in one metadata transaction.
//! A crash at any point leaves either no visible blob or a complete one.

mod gc;
mod manifest;
pub mod paths;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use hoist_oci::{Algorithm, Digest, Digester, RepoName};
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;

use crate::driver::{BoxReader, ByteStream, DriverError, DriverWriter, StorageDriver};
use crate::metadata::{ManifestRecord, MetaError, MetadataStore, Page, TagRow, UploadSession, now};

pub use gc::GcReport;
pub use manifest::{PutManifest, Reference, StoredManifest, analyse};

/// Upload directories without a session and untouched this long are leftovers of a crash.
const STALE_UPLOAD_DIR: std::time::Duration = std::time::Duration::from_secs(3600);

/// The largest manifest the store accepts.
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// What went wrong, in terms a registry maps to its error codes.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("blob unknown to repository: {0}")]
    BlobUnknown(Digest),
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    #[error("repository name not known to registry: {0}")]
    NameUnknown(String),
    #[error("blob upload unknown: {0}")]
    UploadUnknown(String),
    #[error("digest mismatch: expected {expected}, content is {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("invalid digest: {0}")]
    DigestInvalid(String),
    #[error("upload is at offset {current}, the chunk starts at {requested}")]
    RangeInvalid { current: u64, requested: u64 },
    #[error("the chunk declared {declared} bytes and its body has {received}")]
    ChunkLength { declared: u64, received: u64 },
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeInvalid { expected: u64, actual: u64 },
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest is {0} bytes, over the {MAX_MANIFEST_SIZE} byte limit")]
    ManifestTooLarge(usize),
    #[error("manifest references unknown content: {}", .0.iter().map(Digest::as_str).collect::<Vec<_>>().join(", "))]
    ManifestBlobUnknown(Vec<Digest>),
    #[error("invalid tag: {0}")]
    TagInvalid(String),
    #[error("stored content is corrupt: {0}")]
    Corrupt(String),
    #[error("request body: {0}")]
    Body(String),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Meta(MetaError),
}

impl From<MetaError> for ContentError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::MissingReferences(ds) => ContentError::ManifestBlobUnknown(ds),
            other => ContentError::Meta(other),
        }
    }
}

pub type Result<T, E = ContentError> = std::result::Result<T, E>;

/// Where an upload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    pub id: String,
    /// Bytes received so far.
    pub offset: u64,
}

/// A blob opened for reading.
pub struct BlobReader {
    /// The whole blob's size.
    pub size: u64,
    pub reader: BoxReader,
}

/// The content store. Cheap to share behind an `Arc`.
pub struct Store {
    driver: Arc<dyn StorageDriver>,
    meta: Arc<dyn MetadataStore>,
    /// One lock per upload session, so two requests never append to one upload at once.
    upload_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Manifest bytes by digest. Content-addressed, so never stale; visibility is checked in
    /// metadata before the cache is consulted.
    manifests: Mutex<lru::LruCache<Digest, Bytes>>,
    /// Commits hold it shared, garbage collection exclusive.
    commit_lock: gc::CommitLock,
}

/// Where [`Store::open_backends`] keeps blobs.
#[derive(Debug, Clone)]
pub enum Blobs {
    /// The data directory (the fs driver).
    Fs,
    /// An S3 or S3-compatible bucket (the object driver).
    S3(crate::S3Config),
}

impl Store {
    /// Opens a store and cleans up what a crash may have left: upload directories without a
    /// session, and sessions whose bytes are gone.
    pub async fn open(
        driver: Arc<dyn StorageDriver>,
        meta: Arc<dyn MetadataStore>,
    ) -> Result<Self> {
        Self::open_locked(driver, meta, None).await
    }

    async fn open_locked(
        driver: Arc<dyn StorageDriver>,
        meta: Arc<dyn MetadataStore>,
        lock_file: Option<std::path::PathBuf>,
    ) -> Result<Self> {
        let store = Store {
            commit_lock: gc::CommitLock::new(lock_file, meta.clone()),
            driver,
            meta,
            upload_locks: Mutex::new(HashMap::new()),
            manifests: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(4096).expect("nonzero"),
            )),
        };
        store.recover().await?;
        Ok(store)
    }

    /// Opens the filesystem store under `dir`: `metadata.db` plus the key tree of
    /// [`paths`].
    pub async fn open_fs(dir: &std::path::Path) -> Result<Self> {
        let driver = crate::FsDriver::new(dir)
            .map_err(|e| DriverError::io(&dir.display().to_string(), e))?;
        let meta = crate::SqliteMetadata::open(dir.join("metadata.db"))?;
        Store::open_locked(
            Arc::new(driver),
            Arc::new(meta),
            Some(dir.join(paths::LOCK_FILE)),
        )
        .await
    }

    /// Opens a store on an object-storage driver: the key tree of [`paths`] in the bucket,
    /// `metadata.db` and the commit lock file under `metadata_dir` (created if missing), as
    /// [`Store::open_fs`] keeps them beside its tree.
    pub async fn open_object(
        driver: crate::ObjectDriver,
        metadata_dir: &std::path::Path,
    ) -> Result<Self> {
        std::fs::create_dir_all(metadata_dir)
            .map_err(|e| DriverError::io(&metadata_dir.display().to_string(), e))?;
        let meta = crate::SqliteMetadata::open(metadata_dir.join("metadata.db"))?;
        Store::open_locked(
            Arc::new(driver),
            Arc::new(meta),
            Some(metadata_dir.join(paths::LOCK_FILE)),
        )
        .await
    }

    /// Opens a store on `driver` (bytes) with its metadata in the PostgreSQL database at `url`
    /// (at most `pool_size` connections; see [`crate::metadata::PgMetadata::connect`]), for
    /// several replicas sharing one object store and one database. Garbage collection's lock is
    /// the database's (an advisory lock), so a collection on one replica is safe while the
    /// others accept pushes.
    pub async fn open_postgres(
        driver: Arc<dyn StorageDriver>,
        url: &str,
        pool_size: usize,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self> {
        let meta = crate::metadata::PgMetadata::connect_tls(url, pool_size, tls).await?;
        Store::open(driver, Arc::new(meta)).await
    }

    /// Opens the store a registry's configuration names: blobs in the data directory `data` or
    /// an S3 bucket, metadata in SQLite beside them (under `data`) or in PostgreSQL
    /// (`postgres`: the url, the pool size, and TLS's client configuration when the connection
    /// is to be TLS).
    pub async fn open_backends(
        data: &std::path::Path,
        blobs: Blobs,
        postgres: Option<(&str, usize, Option<Arc<rustls::ClientConfig>>)>,
    ) -> Result<Self> {
        let io = |e| DriverError::io(&data.display().to_string(), e);
        std::fs::create_dir_all(data).map_err(io)?;
        match (blobs, postgres) {
            (Blobs::Fs, None) => Store::open_fs(data).await,
            (Blobs::S3(s3), None) => Store::open_object(crate::ObjectDriver::s3(&s3)?, data).await,
            (blobs, Some((url, pool_size, tls))) => {
                let driver: Arc<dyn StorageDriver> = match blobs {
                    Blobs::Fs => Arc::new(crate::FsDriver::new(data).map_err(io)?),
                    Blobs::S3(s3) => Arc::new(crate::ObjectDriver::s3(&s3)?),
                };
                Store::open_postgres(driver, url, pool_size, tls).await
            }
        }
    }

    pub fn driver(&self) -> &Arc<dyn StorageDriver> {
        &self.driver
    }

    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.meta
    }

    /// Claims the periodic `task` (due every `every`) for this process: true when it should run
    /// it now, false when a process sharing the metadata ran it less than `every` ago.
    pub async fn claim_task(&self, task: &str, every: std::time::Duration) -> Result<bool> {
        Ok(self.meta.claim_task(task, every.as_secs(), now()).await?)
    }

    async fn recover(&self) -> Result<()> {
        let sessions = self.meta.upload_ids().await?;
        let mut removed = 0usize;
        let cutoff = std::time::SystemTime::now() - STALE_UPLOAD_DIR;
        for key in self.driver.list(paths::UPLOADS).await? {
            let Some(id) = paths::upload_id_of(&key) else {
                continue;
            };
            if sessions.binary_search_by(|s| s.as_str().cmp(id)).is_ok() {
                continue;
            }
            // Another process sharing the store may be writing it (a monolithic upload has no
            // session): only bytes untouched for a while are leftovers.
            let recent = match self.driver.stat(&paths::upload_data(id)).await {
                Ok(info) => info.modified.is_some_and(|t| t > cutoff),
                Err(e) if e.is_not_found() => false,
                Err(e) => return Err(e.into()),
            };
            if !recent {
                ignore_missing(self.driver.delete(&key).await)?;
                removed += 1;
            }
        }
        for id in &sessions {
            if let Err(e) = self.driver.stat(&paths::upload_data(id)).await {
                if !e.is_not_found() {
                    return Err(e.into());
                }
                self.meta.upload_delete(id).await?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed leftovers of interrupted uploads");
        }
        Ok(())
    }

    // ----- blobs -----

    /// The size of a blob if `repo` may see it.
    pub async fn blob_stat(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.meta.repo_blob_size(repo.as_str(), digest).await?)
    }

    /// Opens a blob of `repo` from `offset`.
    pub async fn blob_open(
        &self,
        repo: &RepoName,
        digest: &Digest,
        offset: u64,
    ) -> Result<BlobReader> {
        let size = self
            .blob_stat(repo, digest)
            .await?
            .ok_or_else(|| ContentError::BlobUnknown(digest.clone()))?;
        let reader = self
            .driver
            .reader(&paths::blob_data(digest), offset)
            .await
            .map_err(|e| linked_bytes_error(digest, e))?;
        Ok(BlobReader { size, reader })
    }

    /// A URL the client may fetch a blob of `repo` from directly (a presigned object-store URL),
    /// when the driver hands them out; `None` otherwise. The caller has checked the blob is
    /// linked into `repo`.
    pub async fn blob_redirect(&self, digest: &Digest) -> Option<String> {
        self.driver.redirect_url(&paths::blob_data(digest)).await
    }

    /// Streams `len` bytes of a blob of `repo` from `offset` (to the end when `None`).
    pub async fn blob_stream(
        &self,
        repo: &RepoName,
        digest: &Digest,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream> {
        self.blob_chunks(repo, digest, offset, len, false).await
    }

    /// As [`blob_stream`](Self::blob_stream), for a writer that sends mapped bytes with
    /// `sendfile` (a plain TCP socket): the driver may hand out the blob
    /// [mapped](crate::driver::mapped).
    pub async fn blob_send(
        &self,
        repo: &RepoName,
        digest: &Digest,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream> {
        self.blob_chunks(repo, digest, offset, len, true).await
    }

    async fn blob_chunks(
        &self,
        repo: &RepoName,
        digest: &Digest,
        offset: u64,
        len: Option<u64>,
        mapped: bool,
    ) -> Result<ByteStream> {
        if self.blob_stat(repo, digest).await?.is_none() {
            return Err(ContentError::BlobUnknown(digest.clone()));
        }
        let key = paths::blob_data(digest);
        let stream = if mapped {
            self.driver.stream_immutable(&key, offset, len).await
        } else {
            self.driver.stream(&key, offset, len).await
        };
        stream.map_err(|e| linked_bytes_error(digest, e))
    }

    /// Removes a blob's link from `repo`. The bytes stay for other repositories (and GC).
    pub async fn blob_delete(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        if self.meta.unlink_blob(repo.as_str(), digest).await? {
            Ok(())
        } else {
            Err(ContentError::BlobUnknown(digest.clone()))
        }
    }

    /// Links a blob `from` one repository into another. `None` when `from` does not have it.
    pub async fn blob_mount(
        &self,
        repo: &RepoName,
        from: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        let _commit = self.commit_lock.shared().await?;
        let Some(size) = self.meta.repo_blob_size(from.as_str(), digest).await? else {
            return Ok(None);
        };
        self.meta.link_blob(repo.as_str(), digest, size).await?;
        Ok(Some(size))
    }

    // ----- uploads -----

    /// Opens an upload session in `repo`.
    pub async fn upload_start(&self, repo: &RepoName) -> Result<UploadStatus> {
        let id = uuid::Uuid::new_v4().to_string();
        self.driver
            .put_content(&paths::upload_data(&id), Bytes::new())
            .await?;
        let t = now();
        self.meta
            .upload_create(&UploadSession {
                id: id.clone(),
                repo: repo.to_string(),
                offset: 0,
                hash: Digester::sha256().state(),
                created_at: t,
                updated_at: t,
            })
            .await?;
        Ok(UploadStatus { id, offset: 0 })
    }

    async fn session(&self, repo: &RepoName, id: &str) -> Result<UploadSession> {
        match self.meta.upload_get(id).await? {
            Some(s) if s.repo == repo.as_str() => Ok(s),
            _ => Err(ContentError::UploadUnknown(id.to_owned())),
        }
    }

    fn upload_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.upload_locks.lock();
        if locks.len() > 1024 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(id.to_owned()).or_default().clone()
    }

    /// Where an upload stands.
    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<UploadStatus> {
        let s = self.session(repo, id).await?;
        Ok(UploadStatus {
            id: s.id,
            offset: s.offset,
        })
    }

    /// Appends a body to an upload. With `start`, the chunk must begin exactly at the upload's
    /// offset. Bytes are hashed as they stream and made durable before the offset moves. If the
    /// body breaks off, what arrived is kept (a client resumes from the offset) and the error is
    /// returned.
    pub async fn upload_append<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
        body: S,
    ) -> Result<UploadStatus>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display + Send,
    {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        let session = self.session(repo, id).await?;
        if let Some(start) = start
            && start != session.offset
        {
            return Err(ContentError::RangeInvalid {
                current: session.offset,
                requested: start,
            });
        }
        Ok(self.append_locked(&session, body).await?.0)
    }

    /// Appends a chunk that declares where it starts and how long it is (a `Content-Range`). It
    /// is taken whole or not at all: a body longer or shorter than `len` is refused with
    /// [`ContentError::ChunkLength`] and the upload's offset does not move. A body that breaks
    /// off keeps what arrived, as [`Store::upload_append`] does.
    pub async fn upload_append_exact<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        start: u64,
        len: u64,
        body: S,
    ) -> Result<UploadStatus>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display + Send,
    {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        let session = self.session(repo, id).await?;
        if start != session.offset {
            return Err(ContentError::RangeInvalid {
                current: session.offset,
                requested: start,
            });
        }
        let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = received.clone();
        // Stops the body at the first byte past `len`, so an overlong chunk never lands.
        let limited = body.map(move |item| {
            let chunk = item.map_err(|e| e.to_string())?;
            let total = seen.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed)
                + chunk.len() as u64;
            if total > len {
                Err(format!("the chunk is longer than its declared {len} bytes"))
            } else {
                Ok(chunk)
            }
        });
        let mut digester =
            Digester::resume(&session.hash).map_err(|e| ContentError::Corrupt(e.to_string()))?;
        let key = paths::upload_data(&session.id);
        let (offset, broken) = self
            .stream_into(&key, session.offset, &mut digester, limited)
            .await?;
        let received = received.load(std::sync::atomic::Ordering::Relaxed);
        if received > len || (broken.is_none() && received != len) {
            // Cut the file back to the upload's offset: the next chunk starts there, and a
            // completion must not find these bytes behind it.
            self.driver
                .writer(&key, session.offset)
                .await?
                .commit()
                .await?;
            return Err(ContentError::ChunkLength {
                declared: len,
                received,
            });
        }
        self.record_progress(&session, offset, &digester, broken)
            .await
    }

    /// Records that `session` has reached `offset` with `digester`'s state, then reports a
    /// body that broke off (what arrived before the break is kept, as the spec's resumption
    /// needs).
    async fn record_progress(
        &self,
        session: &UploadSession,
        offset: u64,
        digester: &Digester,
        broken: Option<String>,
    ) -> Result<UploadStatus> {
        if offset != session.offset {
            let moved = self
                .meta
                .upload_advance(&session.id, session.offset, offset, &digester.state())
                .await?;
            if !moved {
                return Err(ContentError::UploadUnknown(session.id.clone()));
            }
        }
        if let Some(e) = broken {
            return Err(ContentError::Body(e));
        }
        Ok(UploadStatus {
            id: session.id.clone(),
            offset,
        })
    }

    /// Streams `body` into `key` from `offset`, hashing as it goes, and makes what arrived
    /// durable. Returns the new size and, if the body broke off, why.
    async fn stream_into<S, E>(
        &self,
        key: &str,
        offset: u64,
        digester: &mut Digester,
        body: S,
    ) -> Result<(u64, Option<String>)>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display + Send,
    {
        let writer = self.driver.writer(key, offset).await?;
        let (writer, broken) = pump(writer, digester, body).await?;
        let size = writer.size();
        writer.commit().await?;
        Ok((size, broken))
    }

    /// Streams a whole blob the client named by digest straight to its key through an
    /// [atomic writer](crate::driver::StorageDriver::atomic_writer) (an object store: no copy
    /// to make afterwards), commits it only once the digest matches, and links it as `link`
    /// says, under the commit lock as any commit.
    async fn put_atomic<S, E>(
        &self,
        writer: Box<dyn DriverWriter>,
        expected: &Digest,
        body: S,
        link: Link<'_>,
    ) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display + Send,
    {
        let mut digester = Digester::new(expected.algorithm());
        let (writer, broken) = pump(writer, &mut digester, body).await?;
        let failed = match broken {
            Some(broken) => Some(ContentError::Body(broken)),
            None => {
                let actual = digester.finish();
                (actual != *expected).then(|| ContentError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                })
            }
        };
        if let Some(e) = failed {
            writer.cancel().await?;
            return Err(e);
        }
        let size = writer.size();
        let _commit = self.commit_lock.shared().await?;
        writer.commit().await?;
        match link {
            Link::Repo(repo) => self.meta.link_blob(repo.as_str(), expected, size).await?,
            Link::Upload(id) => self.meta.upload_finish(id, expected, size).await?,
        }
        Ok(size)
    }

    async fn append_locked<S, E>(
        &self,
        session: &UploadSession,
        body: S,
    ) -> Result<(UploadStatus, Digester)>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display + Send,
    {
        let mut digester =
            Digester::resume(&session.hash).map_err(|e| ContentError::Corrupt(e.to_string()))?;
        let key = paths::upload_data(&session.id);
        let (offset, broken) = self
            .stream_into(&key, session.offset, &mut digester, body)
            .await?;
        let status = self
            .record_progress(session, offset, &digester, broken)
            .await?;
        Ok((status, digester))
    }

    /// Finishes an upload: appends an optional last body, checks the digest, and commits the blob
    /// into the repository. On a digest mismatch the upload is discarded.
    pub async fn upload_complete<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        expected: &Digest,
        last: Option<S>,
    ) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display + Send,
    {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        let session = self.session(repo, id).await?;
        // The whole blob in this request: straight to its key where the driver can.
        if session.offset == 0
            && let Some(body) = last
        {
            let blob_key = paths::blob_data(expected);
            let Some(writer) = self.driver.atomic_writer(&blob_key).await? else {
                return self.complete_locked(&session, expected, Some(body)).await;
            };
            let done = self
                .put_atomic(writer, expected, body, Link::Upload(id))
                .await;
            if matches!(done, Err(ContentError::DigestMismatch { .. })) {
                self.upload_cancel_locked(id).await?;
            } else if done.is_ok() {
                // An empty PATCH may have left an empty object.
                ignore_missing(self.driver.delete(&paths::upload_dir(id)).await)?;
            }
            return done;
        }
        self.complete_locked(&session, expected, last).await
    }

    /// [`Store::upload_complete`] through the session's own key, under its lock.
    async fn complete_locked<S, E>(
        &self,
        session: &UploadSession,
        expected: &Digest,
        last: Option<S>,
    ) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display + Send,
    {
        let id = session.id.as_str();
        let data_key = paths::upload_data(id);
        let (size, hashed) = match last {
            Some(body) => {
                let (st, digester) = self.append_locked(session, body).await?;
                (st.offset, digester)
            }
            None => (
                session.offset,
                Digester::resume(&session.hash)
                    .map_err(|e| ContentError::Corrupt(e.to_string()))?,
            ),
        };
        let actual = if expected.algorithm() == hashed.algorithm() {
            hashed.finish()
        } else {
            self.rehash(&data_key, expected.algorithm()).await?
        };
        if actual != *expected {
            self.upload_cancel_locked(id).await?;
            return Err(ContentError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        {
            let _commit = self.commit_lock.shared().await?;
            match self.commit_blob(&data_key, expected, size).await {
                Ok(()) => {}
                // The session's bytes are gone (a store that lost an upload another process was
                // completing): the session goes too, and the client starts a new one.
                Err(ContentError::Driver(e)) if e.is_not_found() => {
                    tracing::warn!(id, digest = %expected, "an upload's bytes are gone; its session is closed");
                    self.meta.upload_delete(id).await?;
                    ignore_missing(self.driver.delete(&paths::upload_dir(id)).await)?;
                    return Err(ContentError::UploadUnknown(id.to_owned()));
                }
                Err(e) => return Err(e),
            }
            self.meta.upload_finish(id, expected, size).await?;
        }
        ignore_missing(self.driver.delete(&paths::upload_dir(id)).await)?;
        Ok(size)
    }

    /// Moves verified bytes into `blobs/`, unless the same content is already there.
    async fn commit_blob(&self, from_key: &str, digest: &Digest, size: u64) -> Result<()> {
        let blob_key = paths::blob_data(digest);
        if !self.bytes_present(&blob_key, size).await? {
            self.driver.rename(from_key, &blob_key).await?;
        }
        Ok(())
    }

    /// Whether `key` holds `size` bytes already (content-addressed keys: same size, same bytes).
    async fn bytes_present(&self, key: &str, size: u64) -> Result<bool> {
        match self.driver.stat(key).await {
            Ok(info) => Ok(info.size == size),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn rehash(&self, key: &str, algorithm: Algorithm) -> Result<Digest> {
        let mut r = self.driver.reader(key, 0).await?;
        let mut d = Digester::new(algorithm);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = r
                .read(&mut buf)
                .await
                .map_err(|e| DriverError::io(key, e))?;
            if n == 0 {
                break;
            }
            d.update(&buf[..n]);
        }
        Ok(d.finish())
    }

    /// Cancels an upload and removes its bytes.
    pub async fn upload_cancel(&self, repo: &RepoName, id: &str) -> Result<()> {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        self.session(repo, id).await?;
        self.upload_cancel_locked(id).await
    }

    async fn upload_cancel_locked(&self, id: &str) -> Result<()> {
        self.meta.upload_delete(id).await?;
        ignore_missing(self.driver.delete(&paths::upload_dir(id)).await)?;
        Ok(())
    }

    /// Cancels uploads nobody touched for `max_age`, as the CNCF registry's upload purger does.
    /// Returns how many went.
    pub async fn purge_stale_uploads(&self, max_age: std::time::Duration) -> Result<usize> {
        let before = now() - max_age.as_secs() as i64;
        let stale = self.meta.stale_uploads(before).await?;
        for id in &stale {
            let lock = self.upload_lock(id);
            let _guard = lock.lock().await;
            self.upload_cancel_locked(id).await?;
        }
        if !stale.is_empty() {
            tracing::info!(count = stale.len(), "purged stale uploads");
        }
        Ok(stale.len())
    }

    /// Pushes a whole blob in one call (a monolithic upload). No session is recorded: a crash
    /// mid-way leaves an upload directory without one, which `open` removes.
    pub async fn blob_put<S, E>(&self, repo: &RepoName, expected: &Digest, body: S) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display + Send,
    {
        let blob_key = paths::blob_data(expected);
        if let Some(writer) = self.driver.atomic_writer(&blob_key).await? {
            return self
                .put_atomic(writer, expected, body, Link::Repo(repo))
                .await;
        }
        let id = uuid::Uuid::new_v4().to_string();
        let key = paths::upload_data(&id);
        let mut digester = Digester::new(expected.algorithm());
        let outcome = match self.stream_into(&key, 0, &mut digester, body).await {
            Ok((_, Some(broken))) => Err(ContentError::Body(broken)),
            Ok((size, None)) => {
                let actual = digester.finish();
                if actual == *expected {
                    Ok(size)
                } else {
                    Err(ContentError::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    })
                }
            }
            Err(e) => Err(e),
        };
        let committed = match outcome {
            Ok(size) => {
                let commit = self.commit_lock.shared().await?;
                match self.commit_blob(&key, expected, size).await {
                    Ok(()) => Ok((size, commit)),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        ignore_missing(self.driver.delete(&paths::upload_dir(&id)).await)?;
        let (size, _commit) = committed?;
        self.meta.link_blob(repo.as_str(), expected, size).await?;
        Ok(size)
    }

    // ----- listings -----

    /// A page of `repo`'s tags.
    pub async fn tags(
        &self,
        repo: &RepoName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Page> {
        self.meta
            .tags(repo.as_str(), n, last)
            .await?
            .ok_or_else(|| ContentError::NameUnknown(repo.to_string()))
    }

    /// A page of repository names.
    pub async fn catalog(&self, n: Option<usize>, last: Option<&str>) -> Result<Page> {
        Ok(self.meta.repositories(n, last).await?)
    }

    /// Every tag of every repository with the manifest it names (a local store's image list).
    pub async fn all_tags(&self) -> Result<Vec<TagRow>> {
        Ok(self.meta.all_tags().await?)
    }

    /// Every manifest of every repository, with its repository.
    pub async fn all_manifests(&self) -> Result<Vec<(String, ManifestRecord)>> {
        Ok(self.meta.all_manifests().await?)
    }

    /// The indexes of `repo` that name the manifest `digest` as a child.
    pub async fn manifest_parents(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Digest>> {
        Ok(self.meta.manifest_parents(repo.as_str(), digest).await?)
    }

    /// The repositories holding the manifest `digest`.
    pub async fn manifest_repos(&self, digest: &Digest) -> Result<Vec<String>> {
        Ok(self.meta.manifest_repos(digest).await?)
    }
}

/// A linked blob whose bytes cannot be found is corruption, not an unknown blob.
fn linked_bytes_error(digest: &Digest, e: DriverError) -> ContentError {
    if e.is_not_found() {
        ContentError::Corrupt(format!("blob {digest} is linked but its bytes are missing"))
    } else {
        e.into()
    }
}

fn ignore_missing(r: std::result::Result<(), DriverError>) -> std::result::Result<(), DriverError> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// Records a manifest's bytes in the cache after checking them against their digest.
fn verified(digest: &Digest, bytes: Bytes) -> Result<Bytes> {
    if digest.matches(&bytes) {
        Ok(bytes)
    } else {
        Err(ContentError::Corrupt(format!(
            "stored manifest {digest} does not match its digest"
        )))
    }
}

#[cfg(test)]
mod tests;

/// How a blob written whole is recorded: linked into a repository (a monolithic POST), or as
/// the end of an upload session (which links it into the session's repository).
enum Link<'a> {
    Repo(&'a RepoName),
    Upload(&'a str),
}

/// Streams `body` into `writer`, hashing as it goes, without committing. Returns the writer and,
/// if the body broke off, why; a failed write cancels the writer.
async fn pump<S, E>(
    mut writer: Box<dyn DriverWriter>,
    digester: &mut Digester,
    body: S,
) -> Result<(Box<dyn DriverWriter>, Option<String>)>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Send,
    E: std::fmt::Display + Send,
{
    let mut body = std::pin::pin!(body);
    loop {
        // Nothing ready (a slow or stalled client): write out what is buffered first, so a
        // waiting upload holds no buffered bytes.
        let next = match futures::poll!(body.next()) {
            std::task::Poll::Ready(next) => next,
            std::task::Poll::Pending => {
                if let Err(e) = writer.flush().await {
                    let _ = writer.cancel().await;
                    return Err(e.into());
                }
                body.next().await
            }
        };
        let Some(chunk) = next else { break };
        match chunk {
            Ok(chunk) => {
                digester.update(&chunk);
                if let Err(e) = writer.write(chunk).await {
                    let _ = writer.cancel().await;
                    return Err(e.into());
                }
            }
            Err(e) => return Ok((writer, Some(e.to_string()))),
        }
    }
    Ok((writer, None))
}
