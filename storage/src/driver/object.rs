//! The object-storage driver: a key is an object under a prefix in a bucket (S3 and S3-compatible
//! stores, through `object_store`).
//!
//! Object stores have no directories, no appends and no rename, so the driver emulates them:
//!
//! - **Directories** are prefixes: `stat` of a prefix with objects under it is a directory, `list`
//!   returns the direct children (objects and common prefixes), `delete` removes a key and every
//!   object under `key/`. As on a filesystem, a key is a file or a directory, never both; files
//!   are found by listing from just before them rather than by HEAD, which some S3-compatible
//!   stores that keep objects as files (s3s-fs) fail with a 500 on a directory.
//! - **Streaming writes** go to a multipart upload in parts of [`PART_SIZE`]; only the bytes below
//!   one part are buffered (the writer never holds more than one part). `flush` writes the
//!   buffered bytes to a *tail segment* object and releases them once they are at least
//!   [`FLUSH_MIN`], so a stalled upload holds less than that, and a part is gathered from a few
//!   segments, not one PUT per network chunk.
//! - **Resumable across processes.** The content layer commits a writer at the end of every
//!   request (a PATCH) and continues the upload with `writer(key, offset)` on the next one, which
//!   may land on another replica. `commit` therefore makes a durable *checkpoint* instead of
//!   completing the upload: the bytes below one part become one tail object, and a small JSON
//!   sidecar records the multipart upload id, the parts (number, size, etag) and the tail. The key
//!   is then *pending*: `stat` reports the sidecar's size, and `writer(key, size)` on any
//!   `ObjectDriver` sharing the bucket continues the same multipart upload. A writer that never
//!   uploaded a whole part commits with one PUT (a plain object), and a continuation reads it back
//!   (it is below one part). A pending key is completed (its tail uploaded as the last part) when
//!   its whole content is needed: `rename`, `reader`, `get_content`.
//! - **Continuing at an earlier offset** keeps the parts before it when the offset is in the tail;
//!   otherwise the key is completed and its first `offset` bytes are streamed into a new
//!   multipart upload (server-side ranged part copies are not in `object_store`), one part at a
//!   time. Correct, but it moves those bytes through this process.
//! - **Rename** is a server-side copy, then the delete of the source. A copy is atomic (a reader
//!   of the destination sees the old object or the whole new one), which is what the durability
//!   contract asks; the content layer renames one upload to one blob key. Objects above the
//!   single-request copy limit ([`COPY_LIMIT`], S3's 5 GiB) are copied through a multipart upload
//!   at the destination (streamed through this process, one part in memory), which completion
//!   makes visible at once: atomic too. Renaming a directory moves its keys one by one; only each
//!   key's move is atomic.
//! - **Durability:** a PUT, a completed multipart upload and a copy are durable when the store
//!   answers, so `put_content`, `commit` (the checkpoint is PUTs) and `rename` return only once
//!   their bytes survive a crash.
//!
//! Layout under the prefix: keys at `<prefix>/<key>`; the driver's own state at
//! `<prefix>/.hoist-pending/<key>` (sidecars) and `<prefix>/.hoist-tail/<key>/<id>` (tail
//! segments). Keys whose first component starts with `.hoist-` are refused.
//!
//! Not cleaned up by the driver: a multipart upload of a writer dropped before its first commit
//! (the process died mid-request). Give the bucket a lifecycle rule aborting incomplete multipart
//! uploads after a day (`AbortIncompleteMultipartUpload`). Tail segments of such writers are
//! removed by the key's next commit or delete.
//!
//! One writer per key at a time: the content layer serialises the requests of an upload.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, aws::AmazonS3Builder,
};
use serde::{Deserialize, Serialize};

use super::{BoxReader, DriverError, DriverWriter, FileInfo, StorageDriver, validate_key};

/// The size of every multipart part but the last (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 << 20;
/// The least a `flush` writes out: a stalled writer holds less than this in memory, and a part
/// is made of at most `PART_SIZE / FLUSH_MIN` flushed segments.
pub const FLUSH_MIN: usize = 1 << 20;
/// The largest object one copy request copies (S3's CopyObject limit).
pub const COPY_LIMIT: u64 = 5 << 30;
/// How long a presigned redirect URL is valid.
pub const REDIRECT_EXPIRY: std::time::Duration = std::time::Duration::from_secs(20 * 60);

const PENDING: &str = ".hoist-pending";
const TAIL: &str = ".hoist-tail";
const RESERVED: &str = ".hoist-";

/// Where an S3 (or S3-compatible) bucket is and how to reach it. Nothing is read from the
/// environment: every setting is explicit.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Config {
    pub bucket: String,
    /// `http(s)://host:port` of an S3-compatible store (path-style requests); `None` for AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Every key lives under this prefix (`""`: the bucket's root).
    #[serde(default)]
    pub prefix: String,
    /// Allow a plain-`http` endpoint.
    #[serde(default)]
    pub allow_http: bool,
    /// Hand clients presigned GET URLs ([`StorageDriver::redirect_url`]).
    #[serde(default)]
    pub redirect: bool,
}

/// The secret stays out of logs.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("prefix", &self.prefix)
            .field("allow_http", &self.allow_http)
            .field("redirect", &self.redirect)
            .finish()
    }
}

/// What an object store needs to offer the driver: objects and the multipart API.
pub trait ObjectBackend: ObjectStore + MultipartStore {}
impl<T: ObjectStore + MultipartStore> ObjectBackend for T {}

struct Inner {
    store: Arc<dyn ObjectBackend>,
    signer: Option<Arc<dyn Signer>>,
    /// Object path prefix (no leading or trailing `/`; empty for the root).
    prefix: String,
    part_size: usize,
    copy_limit: u64,
}

/// A [`StorageDriver`] on an object store. Cheap to clone.
#[derive(Clone)]
pub struct ObjectDriver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ObjectDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectDriver")
            .field("store", &self.inner.store.to_string())
            .field("prefix", &self.inner.prefix)
            .field("redirect", &self.inner.signer.is_some())
            .finish()
    }
}

/// What a listing found at a path.
#[derive(Default)]
struct Probe {
    file: Option<ObjectMeta>,
    dir: bool,
}

/// The durable checkpoint of a pending key (the sidecar).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingState {
    upload_id: String,
    parts: Vec<PartRecord>,
    /// The bytes after the parts, as one object, if any.
    tail: Option<Segment>,
    size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartRecord {
    etag: String,
    size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Segment {
    /// The segment's id under the key's tail directory.
    id: String,
    /// The bytes of it that count (a truncated continuation uses a prefix).
    size: u64,
}

fn obj_err(key: &str, e: object_store::Error) -> DriverError {
    match e {
        object_store::Error::NotFound { .. } => DriverError::NotFound(key.to_owned()),
        other => DriverError::Io {
            key: key.to_owned(),
            source: std::io::Error::other(other),
        },
    }
}

fn other(key: &str, msg: String) -> DriverError {
    DriverError::Io {
        key: key.to_owned(),
        source: std::io::Error::other(msg),
    }
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl ObjectDriver {
    /// A driver on `store` (any object store with the multipart API), keys under `prefix`.
    pub fn new<S: ObjectBackend>(store: Arc<S>, prefix: &str) -> Self {
        Self::from_parts(store, None, prefix)
    }

    /// Like [`ObjectDriver::new`], handing out presigned URLs made by `signer` as redirects.
    pub fn with_signer<S: ObjectBackend + Signer>(store: Arc<S>, prefix: &str) -> Self {
        let signer: Arc<dyn Signer> = store.clone();
        Self::from_parts(store, Some(signer), prefix)
    }

    fn from_parts(
        store: Arc<dyn ObjectBackend>,
        signer: Option<Arc<dyn Signer>>,
        prefix: &str,
    ) -> Self {
        ObjectDriver {
            inner: Arc::new(Inner {
                store,
                signer,
                prefix: prefix.trim_matches('/').to_owned(),
                part_size: PART_SIZE,
                copy_limit: COPY_LIMIT,
            }),
        }
    }

    /// An S3 driver for `config`. Path-style requests; credentials, region and endpoint only
    /// from `config` (never from `AWS_*` variables).
    pub fn s3(config: &S3Config) -> Result<Self, DriverError> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_allow_http(config.allow_http)
            .with_virtual_hosted_style_request(false);
        if let Some(endpoint) = &config.endpoint {
            b = b.with_endpoint(endpoint);
        }
        let store = Arc::new(b.build().map_err(|e| obj_err(&config.bucket, e))?);
        Ok(if config.redirect {
            Self::with_signer(store, &config.prefix)
        } else {
            Self::new(store, &config.prefix)
        })
    }

    /// The same driver with other part and copy sizes (tests of the paths big objects take).
    #[cfg(test)]
    fn with_sizes(&self, part_size: usize, copy_limit: u64) -> Self {
        ObjectDriver {
            inner: Arc::new(Inner {
                store: self.inner.store.clone(),
                signer: self.inner.signer.clone(),
                prefix: self.inner.prefix.clone(),
                part_size,
                copy_limit,
            }),
        }
    }

    fn check(key: &str) -> Result<(), DriverError> {
        validate_key(key)?;
        if key.starts_with(RESERVED) {
            return Err(DriverError::InvalidKey(key.to_owned()));
        }
        Ok(())
    }

    fn join(&self, rest: &str) -> Path {
        if self.inner.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.inner.prefix))
        }
    }

    fn path(&self, key: &str) -> Path {
        self.join(key)
    }

    fn sidecar(&self, key: &str) -> Path {
        self.join(&format!("{PENDING}/{key}"))
    }

    fn tail_dir(&self, key: &str) -> Path {
        self.join(&format!("{TAIL}/{key}"))
    }

    fn tail(&self, key: &str, id: &str) -> Path {
        self.tail_dir(key).join(id)
    }

    /// The key an object path names, relative to `base` (the prefix, or a state directory).
    fn key_of(&self, base: &str, location: &Path) -> Option<String> {
        let root = self.join(base);
        let rest: Vec<String> = location
            .prefix_match(&root)?
            .map(|p| p.as_ref().to_owned())
            .collect();
        (!rest.is_empty()).then(|| rest.join("/"))
    }

    async fn load_pending(
        &self,
        key: &str,
    ) -> Result<Option<(PendingState, ObjectMeta)>, DriverError> {
        match self.inner.store.get(&self.sidecar(key)).await {
            Ok(got) => {
                let meta = got.meta.clone();
                let bytes = got.bytes().await.map_err(|e| obj_err(key, e))?;
                let state = serde_json::from_slice(&bytes)
                    .map_err(|e| other(key, format!("corrupt upload state: {e}")))?;
                Ok(Some((state, meta)))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(obj_err(key, e)),
        }
    }

    async fn head_plain(&self, key: &str) -> Result<Option<ObjectMeta>, DriverError> {
        match self.inner.store.head(&self.path(key)).await {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(obj_err(key, e)),
        }
    }

    async fn delete_quiet(&self, key: &str, path: &Path) -> Result<(), DriverError> {
        match self.inner.store.delete(path).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(obj_err(key, e)),
        }
    }

    async fn read_segment(&self, key: &str, seg: &Segment) -> Result<Bytes, DriverError> {
        if seg.size == 0 {
            return Ok(Bytes::new());
        }
        let got = self
            .inner
            .store
            .get_range(&self.tail(key, &seg.id), 0..seg.size)
            .await
            .map_err(|e| obj_err(key, e))?;
        if got.len() as u64 != seg.size {
            return Err(other(
                key,
                format!(
                    "tail segment {} has {} bytes, {} expected",
                    seg.id,
                    got.len(),
                    seg.size
                ),
            ));
        }
        Ok(got)
    }

    /// Removes the tail segments of `key` except `keep`.
    async fn prune_tails(&self, key: &str, keep: Option<&str>) -> Result<(), DriverError> {
        let listed = self
            .inner
            .store
            .list_with_delimiter(Some(&self.tail_dir(key)))
            .await
            .map_err(|e| obj_err(key, e))?;
        for o in listed.objects {
            if keep.is_some_and(|k| o.location.filename() == Some(k)) {
                continue;
            }
            self.delete_quiet(key, &o.location).await?;
        }
        Ok(())
    }

    /// Completes a pending key: uploads its tail as the last part, completes the multipart upload
    /// (the whole object appears at the key at once), then removes the state.
    async fn finalize(&self, key: &str, state: &PendingState) -> Result<(), DriverError> {
        let store = &self.inner.store;
        let path = self.path(key);
        let mut parts: Vec<PartId> = state
            .parts
            .iter()
            .map(|p| PartId {
                content_id: p.etag.clone(),
            })
            .collect();
        // Why completing failed, if it did.
        let mut failed: Option<String> = None;
        if let Some(tail) = &state.tail {
            let bytes = self.read_segment(key, tail).await;
            match bytes {
                Ok(bytes) => {
                    match store
                        .put_part(
                            &path,
                            &state.upload_id,
                            parts.len(),
                            PutPayload::from(bytes),
                        )
                        .await
                    {
                        Ok(id) => parts.push(id),
                        Err(e) => failed = Some(format!("uploading the last part: {e}")),
                    }
                }
                // Another process completed it and removed the tail meanwhile.
                Err(e) if e.is_not_found() => failed = Some(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        if failed.is_none()
            && let Err(e) = store
                .complete_multipart(&path, &state.upload_id, parts)
                .await
        {
            failed = Some(e.to_string());
        }
        if let Some(why) = failed {
            // Fine if another process completed it: the key then has the whole object.
            match self.head_plain(key).await? {
                Some(meta) if meta.size == state.size => {}
                Some(_) => {
                    return Err(other(
                        key,
                        format!("completing the pending upload failed: {why}"),
                    ));
                }
                None => {
                    // The multipart upload is gone and no object took its place: a process
                    // that completed it died on a store whose completion is not atomic (s3s-fs
                    // removes the upload before it writes the object). The bytes are lost; the
                    // stale state goes, and the key is reported missing, so the caller can start
                    // over.
                    tracing::warn!(key, reason = %why, "a pending upload's bytes are lost");
                    self.delete_quiet(key, &self.sidecar(key)).await?;
                    self.prune_tails(key, None).await?;
                    return Err(DriverError::NotFound(key.to_owned()));
                }
            }
        }
        self.delete_quiet(key, &self.sidecar(key)).await?;
        self.prune_tails(key, None).await
    }

    /// Completes `key` if it is pending (and no plain object shadows its state).
    async fn settle(&self, key: &str) -> Result<(), DriverError> {
        if self.head_plain(key).await?.is_some() {
            return Ok(());
        }
        if let Some((state, _)) = self.load_pending(key).await? {
            self.finalize(key, &state).await?;
        }
        Ok(())
    }

    /// Every key at or under `key`: plain objects and pending keys. A key is a file or a
    /// directory, never both (as on a filesystem): one with children is not looked up itself
    /// (some S3-compatible stores keep objects as files and fail a HEAD of a directory).
    async fn tree(&self, key: &str) -> Result<Vec<String>, DriverError> {
        let mut out = Vec::new();
        for (base, root) in [("", self.path(key)), (PENDING, self.sidecar(key))] {
            let mut listed = self.inner.store.list(Some(&root));
            while let Some(meta) = listed.try_next().await.map_err(|e| obj_err(key, e))? {
                if let Some(k) = self.key_of(base, &meta.location) {
                    out.push(k);
                }
            }
        }
        if out.is_empty()
            && (self.probe(key, &self.path(key)).await?.file.is_some()
                || self.probe(key, &self.sidecar(key)).await?.file.is_some())
        {
            out.push(key.to_owned());
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// What is at `path`: an object, children, both or neither, from one listing of its parent
    /// starting just before it. Unlike a HEAD, this never fails on a path some S3-compatible
    /// stores keep as a directory (s3s-fs answers a HEAD of one with a 500).
    async fn probe(&self, key: &str, path: &Path) -> Result<Probe, DriverError> {
        let raw = path.as_ref();
        let parent = raw.rsplit_once('/').map_or("", |(p, _)| p);
        // The listing starts after `offset`: `raw` without its last character sorts before it.
        let offset = Path::from(&raw[..raw.len() - 1]);
        let parent = Path::from(parent);
        let mut listed = self
            .inner
            .store
            .list_with_offset((!parent.as_ref().is_empty()).then_some(&parent), &offset);
        let mut probe = Probe::default();
        let under = format!("{raw}/");
        while let Some(meta) = listed.try_next().await.map_err(|e| obj_err(key, e))? {
            let at = meta.location.as_ref();
            if at == raw {
                probe.file = Some(meta);
            } else if at.starts_with(&under) {
                probe.dir = true;
                break;
            } else if !at.starts_with(raw) && at > raw {
                break;
            }
        }
        Ok(probe)
    }

    /// Removes one key: its object, its pending state (aborting the upload) and tail segments.
    async fn remove_one(&self, key: &str) -> Result<(), DriverError> {
        self.delete_quiet(key, &self.path(key)).await?;
        if let Some((state, _)) = self.load_pending(key).await? {
            let _ = self
                .inner
                .store
                .abort_multipart(&self.path(key), &state.upload_id)
                .await;
            self.delete_quiet(key, &self.sidecar(key)).await?;
        }
        self.prune_tails(key, None).await
    }

    /// Copies one complete object: server-side when the store allows it in one request, else
    /// through a multipart upload at the destination. Atomic either way.
    async fn copy_object(&self, from: &str, to: &str) -> Result<(), DriverError> {
        let meta = self
            .head_plain(from)
            .await?
            .ok_or_else(|| DriverError::NotFound(from.to_owned()))?;
        let store = &self.inner.store;
        if meta.size <= self.inner.copy_limit {
            return store
                .copy(&self.path(from), &self.path(to))
                .await
                .map_err(|e| obj_err(from, e));
        }
        let dst = self.path(to);
        let id = store
            .create_multipart(&dst)
            .await
            .map_err(|e| obj_err(to, e))?;
        let copied = async {
            let parts = self.stream_parts(from, &dst, &id, meta.size, true).await?.0;
            store
                .complete_multipart(&dst, &id, parts)
                .await
                .map_err(|e| obj_err(to, e))
        }
        .await;
        if copied.is_err() {
            let _ = store.abort_multipart(&dst, &id).await;
        }
        copied.map(|_| ())
    }

    /// Streams bytes `0..len` of the plain object `from` into parts of the upload `id` at `dst`:
    /// whole parts, and the rest as a last part too when `all`. Returns the parts and, unless
    /// `all`, the bytes left over (below one part), for the caller to continue from.
    async fn stream_parts(
        &self,
        from: &str,
        dst: &Path,
        id: &str,
        len: u64,
        all: bool,
    ) -> Result<(Vec<PartId>, Vec<PartRecord>, Bytes), DriverError> {
        let part = self.inner.part_size as u64;
        let mut ids = Vec::new();
        let mut records = Vec::new();
        let mut at = 0u64;
        while len - at >= part || (all && at < len) {
            let end = (at + part).min(len);
            let bytes = self
                .inner
                .store
                .get_range(&self.path(from), at..end)
                .await
                .map_err(|e| obj_err(from, e))?;
            let n = bytes.len() as u64;
            let pid = self
                .inner
                .store
                .put_part(dst, &id.to_owned(), ids.len(), PutPayload::from(bytes))
                .await
                .map_err(|e| obj_err(from, e))?;
            records.push(PartRecord {
                etag: pid.content_id.clone(),
                size: n,
            });
            ids.push(pid);
            at = end;
        }
        let rest = if at < len {
            self.inner
                .store
                .get_range(&self.path(from), at..len)
                .await
                .map_err(|e| obj_err(from, e))?
        } else {
            Bytes::new()
        };
        Ok((ids, records, rest))
    }

    async fn open_writer(&self, key: &str, offset: u64) -> Result<ObjectWriter, DriverError> {
        Self::check(key)?;
        let mut w = ObjectWriter::new(self, key, offset, false);
        let plain = self.head_plain(key).await?;
        let pending = if plain.is_none() {
            self.load_pending(key).await?
        } else {
            None
        };
        let size = match (&plain, &pending) {
            (Some(meta), _) => meta.size,
            (None, Some((state, _))) => state.size,
            (None, None) => 0,
        };
        if offset > size {
            return Err(DriverError::InvalidOffset {
                key: key.to_owned(),
                offset,
                size,
            });
        }
        if offset == 0 {
            w.base = pending.map(|(s, _)| s);
            return Ok(w);
        }
        if let Some((state, _)) = pending {
            let parts_total: u64 = state.parts.iter().map(|p| p.size).sum();
            if offset >= parts_total {
                // Keep the parts; the tail (or its prefix) follows them.
                w.upload = Some(state.upload_id.clone());
                w.parts = state.parts.clone();
                if let Some(tail) = &state.tail
                    && offset > parts_total
                {
                    w.segments.push(Segment {
                        id: tail.id.clone(),
                        size: offset - parts_total,
                    });
                    w.seg_bytes = offset - parts_total;
                }
                w.base = Some(state);
                return Ok(w);
            }
            // The offset is inside the uploaded parts, which cannot be read or cut: complete the
            // key, then continue as on a plain object.
            self.finalize(key, &state).await?;
        }
        // A plain object: its first `offset` bytes start the new content.
        if offset < self.inner.part_size as u64 {
            let bytes = self
                .inner
                .store
                .get_range(&self.path(key), 0..offset)
                .await
                .map_err(|e| obj_err(key, e))?;
            w.push(bytes);
            return Ok(w);
        }
        let dst = self.path(key);
        let id = self
            .inner
            .store
            .create_multipart(&dst)
            .await
            .map_err(|e| obj_err(key, e))?;
        w.upload = Some(id.clone());
        let (_, records, rest) = self.stream_parts(key, &dst, &id, offset, false).await?;
        w.parts = records;
        w.push(rest);
        Ok(w)
    }
}

/// A writer on an [`ObjectDriver`]: whole parts go to the multipart upload, the bytes below one
/// part stay in `segments` (persisted by `flush`) and `buf` (in memory).
pub struct ObjectWriter {
    driver: ObjectDriver,
    key: String,
    upload: Option<String>,
    parts: Vec<PartRecord>,
    /// Persisted bytes after the parts, in order (the committed tail first, then what `flush`
    /// wrote); together below one part.
    segments: Vec<Segment>,
    seg_bytes: u64,
    /// In-memory bytes after the segments.
    buf: Vec<Bytes>,
    buf_len: usize,
    size: u64,
    /// The pending state this writer started from.
    base: Option<PendingState>,
    /// The most bytes ever held in `buf` (tests of the memory bound).
    max_buffered: usize,
    /// An [atomic writer](StorageDriver::atomic_writer): `commit` completes the object rather
    /// than checkpointing, and the writer touches only its own upload and segments.
    atomic: bool,
}

impl ObjectWriter {
    /// A writer of `key` at `size` with nothing uploaded or buffered yet.
    fn new(driver: &ObjectDriver, key: &str, size: u64, atomic: bool) -> ObjectWriter {
        ObjectWriter {
            driver: driver.clone(),
            key: key.to_owned(),
            upload: None,
            parts: Vec::new(),
            segments: Vec::new(),
            seg_bytes: 0,
            buf: Vec::new(),
            buf_len: 0,
            size,
            base: None,
            max_buffered: 0,
            atomic,
        }
    }

    /// Bytes held in memory now.
    pub fn buffered(&self) -> usize {
        self.buf_len
    }

    /// The most bytes this writer ever held in memory.
    pub fn max_buffered(&self) -> usize {
        self.max_buffered
    }

    fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.buf_len += data.len();
            self.buf.push(data);
        }
        self.max_buffered = self.max_buffered.max(self.buf_len);
    }

    fn inner(&self) -> &Inner {
        &self.driver.inner
    }

    async fn segments_bytes(&self) -> Result<Vec<Bytes>, DriverError> {
        let mut out = Vec::with_capacity(self.segments.len());
        for seg in &self.segments {
            out.push(self.driver.read_segment(&self.key, seg).await?);
        }
        Ok(out)
    }

    /// Takes the first `n` buffered bytes.
    fn take(&mut self, mut n: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        while n > 0 {
            let first = &mut self.buf[0];
            if first.len() <= n {
                n -= first.len();
                self.buf_len -= first.len();
                out.push(self.buf.remove(0));
            } else {
                out.push(first.split_to(n));
                self.buf_len -= n;
                n = 0;
            }
        }
        out
    }

    /// Uploads whole parts while the segments and the buffer hold one.
    ///
    /// An atomic writer uploads a part only once more than one part is held: a blob of at most
    /// one part then goes up in one PUT at commit rather than as a multipart upload of one part
    /// (three requests, and a store that copies the parts to complete it).
    async fn drain_parts(&mut self) -> Result<(), DriverError> {
        let part = self.inner().part_size;
        let more = usize::from(self.atomic);
        while self.seg_bytes as usize + self.buf_len >= part + more {
            let path = self.driver.path(&self.key);
            let store = self.inner().store.clone();
            let id = match &self.upload {
                Some(id) => id.clone(),
                None => {
                    let id = store
                        .create_multipart(&path)
                        .await
                        .map_err(|e| obj_err(&self.key, e))?;
                    self.upload = Some(id.clone());
                    id
                }
            };
            let mut chunks = self.segments_bytes().await?;
            let want = part - self.seg_bytes as usize;
            chunks.extend(self.take(want));
            let payload: PutPayload = chunks.into_iter().collect();
            let pid = store
                .put_part(&path, &id, self.parts.len(), payload)
                .await
                .map_err(|e| obj_err(&self.key, e))?;
            self.parts.push(PartRecord {
                etag: pid.content_id,
                size: part as u64,
            });
            // Segments of this writer are garbage now; the committed tail stays until commit.
            let committed_tail = self.committed_tail().map(str::to_owned);
            for seg in std::mem::take(&mut self.segments) {
                if Some(seg.id.as_str()) != committed_tail.as_deref() {
                    self.driver
                        .delete_quiet(&self.key, &self.driver.tail(&self.key, &seg.id))
                        .await?;
                }
            }
            self.seg_bytes = 0;
        }
        Ok(())
    }

    fn committed_tail(&self) -> Option<&str> {
        self.base
            .as_ref()
            .and_then(|b| b.tail.as_ref())
            .map(|t| t.id.as_str())
    }

    /// Writes `chunks` as a new tail segment.
    async fn put_segment(&self, chunks: Vec<Bytes>) -> Result<Segment, DriverError> {
        let size: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let payload: PutPayload = chunks.into_iter().collect();
        self.inner()
            .store
            .put(&self.driver.tail(&self.key, &id), payload)
            .await
            .map_err(|e| obj_err(&self.key, e))?;
        Ok(Segment { id, size })
    }

    /// An atomic writer's commit: everything after the parts goes up as one last part and the
    /// upload is completed (or, below one part, one PUT), so the whole object appears at once.
    async fn complete(mut self: Box<Self>) -> Result<(), DriverError> {
        let key = self.key.clone();
        let path = self.driver.path(&key);
        let store = self.inner().store.clone();
        let mut rest = self.segments_bytes().await?;
        rest.extend(self.take(self.buf_len));
        let payload: PutPayload = rest.into_iter().collect();
        match self.upload.clone() {
            None => {
                store
                    .put(&path, payload)
                    .await
                    .map_err(|e| obj_err(&key, e))?;
            }
            Some(id) => {
                let mut parts: Vec<PartId> = self
                    .parts
                    .iter()
                    .map(|p| PartId {
                        content_id: p.etag.clone(),
                    })
                    .collect();
                if payload.content_length() > 0 {
                    let last = store
                        .put_part(&path, &id, parts.len(), payload)
                        .await
                        .map_err(|e| obj_err(&key, e))?;
                    parts.push(last);
                }
                store
                    .complete_multipart(&path, &id, parts)
                    .await
                    .map_err(|e| obj_err(&key, e))?;
            }
        }
        self.drop_segments().await
    }

    /// Removes this writer's own tail segments (an atomic writer's; another may write the key).
    async fn drop_segments(&mut self) -> Result<(), DriverError> {
        for seg in std::mem::take(&mut self.segments) {
            let tail = self.driver.tail(&self.key, &seg.id);
            self.driver.delete_quiet(&self.key, &tail).await?;
        }
        self.seg_bytes = 0;
        Ok(())
    }

    async fn abort_all(&self) -> Result<(), DriverError> {
        let path = self.driver.path(&self.key);
        let store = &self.inner().store;
        let mut ids: Vec<&str> = self.upload.iter().map(String::as_str).collect();
        if let Some(b) = &self.base {
            ids.push(&b.upload_id);
        }
        ids.dedup();
        for id in ids {
            let _ = store.abort_multipart(&path, &id.to_owned()).await;
        }
        Ok(())
    }
}

#[async_trait]
impl DriverWriter for ObjectWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), DriverError> {
        self.size += data.len() as u64;
        self.push(data);
        self.drain_parts().await
    }

    fn size(&self) -> u64 {
        self.size
    }

    /// Persists the buffer as a tail segment once it holds [`FLUSH_MIN`] bytes: the content layer
    /// flushes whenever the body has nothing ready, which on a network-bound upload is after
    /// nearly every chunk, and a PUT each time would cost more than the memory it frees.
    async fn flush(&mut self) -> Result<(), DriverError> {
        if self.buf_len < FLUSH_MIN.min(self.inner().part_size) || self.buf_len == 0 {
            return Ok(());
        }
        let chunks = self.take(self.buf_len);
        let seg = self.put_segment(chunks).await?;
        self.seg_bytes += seg.size;
        self.segments.push(seg);
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<(), DriverError> {
        if self.atomic {
            return self.complete().await;
        }
        let key = self.key.clone();
        let d = self.driver.clone();
        let store = self.inner().store.clone();
        if self.parts.is_empty() {
            // Below one part: one PUT of a plain object.
            let mut chunks = self.segments_bytes().await?;
            chunks.extend(self.take(self.buf_len));
            let payload: PutPayload = chunks.into_iter().collect();
            store
                .put(&d.path(&key), payload)
                .await
                .map_err(|e| obj_err(&key, e))?;
            self.abort_all().await?;
            d.delete_quiet(&key, &d.sidecar(&key)).await?;
            return d.prune_tails(&key, None).await;
        }
        // A checkpoint: the tail as one object, then the sidecar naming it.
        let tail = if self.segments.len() == 1 && self.buf_len == 0 {
            Some(self.segments[0].clone())
        } else if self.seg_bytes > 0 || self.buf_len > 0 {
            let mut chunks = self.segments_bytes().await?;
            chunks.extend(self.take(self.buf_len));
            Some(self.put_segment(chunks).await?)
        } else {
            None
        };
        let state = PendingState {
            upload_id: self.upload.clone().expect("parts belong to an upload"),
            parts: std::mem::take(&mut self.parts),
            tail,
            size: self.size,
        };
        let json = serde_json::to_vec(&state).expect("serialisable");
        store
            .put(&d.sidecar(&key), PutPayload::from(json))
            .await
            .map_err(|e| obj_err(&key, e))?;
        // An older plain object would shadow the state.
        d.delete_quiet(&key, &d.path(&key)).await?;
        if let Some(b) = &self.base
            && b.upload_id != state.upload_id
        {
            let _ = store.abort_multipart(&d.path(&key), &b.upload_id).await;
        }
        d.prune_tails(&key, state.tail.as_ref().map(|t| t.id.as_str()))
            .await
    }

    async fn cancel(mut self: Box<Self>) -> Result<(), DriverError> {
        self.buf.clear();
        self.buf_len = 0;
        self.abort_all().await?;
        if self.atomic {
            return self.drop_segments().await;
        }
        let d = self.driver.clone();
        d.remove_one(&self.key).await
    }
}

#[async_trait]
impl StorageDriver for ObjectDriver {
    fn name(&self) -> &'static str {
        "object"
    }

    async fn get_content(&self, key: &str) -> Result<Bytes, DriverError> {
        Self::check(key)?;
        match self.inner.store.get(&self.path(key)).await {
            Ok(got) => return got.bytes().await.map_err(|e| obj_err(key, e)),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(obj_err(key, e)),
        }
        let (state, _) = self
            .load_pending(key)
            .await?
            .ok_or_else(|| DriverError::NotFound(key.to_owned()))?;
        self.finalize(key, &state).await?;
        let got = self
            .inner
            .store
            .get(&self.path(key))
            .await
            .map_err(|e| obj_err(key, e))?;
        got.bytes().await.map_err(|e| obj_err(key, e))
    }

    async fn put_content(&self, key: &str, data: Bytes) -> Result<(), DriverError> {
        Self::check(key)?;
        self.inner
            .store
            .put(&self.path(key), PutPayload::from(data))
            .await
            .map_err(|e| obj_err(key, e))?;
        Ok(())
    }

    async fn reader(&self, key: &str, offset: u64) -> Result<BoxReader, DriverError> {
        Self::check(key)?;
        let meta = match self.head_plain(key).await? {
            Some(meta) => meta,
            None => {
                let (state, _) = self
                    .load_pending(key)
                    .await?
                    .ok_or_else(|| DriverError::NotFound(key.to_owned()))?;
                self.finalize(key, &state).await?;
                self.head_plain(key)
                    .await?
                    .ok_or_else(|| DriverError::NotFound(key.to_owned()))?
            }
        };
        if offset > meta.size {
            return Err(DriverError::InvalidOffset {
                key: key.to_owned(),
                offset,
                size: meta.size,
            });
        }
        if offset == meta.size {
            return Ok(Box::pin(tokio::io::empty()));
        }
        let opts = GetOptions {
            range: (offset > 0).then_some(GetRange::Offset(offset)),
            ..Default::default()
        };
        let got = self
            .inner
            .store
            .get_opts(&self.path(key), opts)
            .await
            .map_err(|e| obj_err(key, e))?;
        let stream = got.into_stream().map_err(std::io::Error::other);
        Ok(Box::pin(tokio_util::io::StreamReader::new(stream)))
    }

    async fn writer(&self, key: &str, offset: u64) -> Result<Box<dyn DriverWriter>, DriverError> {
        Ok(Box::new(self.open_writer(key, offset).await?))
    }

    /// Parts go to a multipart upload of the key itself, which no reader sees until it is
    /// completed; concurrent writers have their own uploads and segments, and the last to
    /// complete wins.
    async fn atomic_writer(&self, key: &str) -> Result<Option<Box<dyn DriverWriter>>, DriverError> {
        Self::check(key)?;
        Ok(Some(Box::new(ObjectWriter::new(self, key, 0, true))))
    }

    async fn stat(&self, key: &str) -> Result<FileInfo, DriverError> {
        Self::check(key)?;
        // Children first: a key is a file or a directory (see `tree`).
        let plain = self.probe(key, &self.path(key)).await?;
        let dir = FileInfo {
            size: 0,
            is_dir: true,
            modified: None,
        };
        if plain.dir {
            return Ok(dir);
        }
        if let Some(meta) = plain.file {
            return Ok(FileInfo {
                size: meta.size,
                is_dir: false,
                modified: Some(meta.last_modified.into()),
            });
        }
        let pending = self.probe(key, &self.sidecar(key)).await?;
        if pending.dir {
            return Ok(dir);
        }
        if pending.file.is_some()
            && let Some((state, meta)) = self.load_pending(key).await?
        {
            return Ok(FileInfo {
                size: state.size,
                is_dir: false,
                modified: Some(meta.last_modified.into()),
            });
        }
        Err(DriverError::NotFound(key.to_owned()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, DriverError> {
        Self::check(prefix)?;
        let mut out = Vec::new();
        for (base, root) in [("", self.path(prefix)), (PENDING, self.sidecar(prefix))] {
            let listed = self
                .inner
                .store
                .list_with_delimiter(Some(&root))
                .await
                .map_err(|e| obj_err(prefix, e))?;
            let locations = listed
                .common_prefixes
                .iter()
                .chain(listed.objects.iter().map(|o| &o.location));
            out.extend(locations.filter_map(|l| self.key_of(base, l)));
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), DriverError> {
        Self::check(from)?;
        Self::check(to)?;
        let keys = self.tree(from).await?;
        if keys.is_empty() {
            return Err(DriverError::NotFound(from.to_owned()));
        }
        // What the destination holds that the move does not overwrite goes.
        let moved: Vec<String> = keys
            .iter()
            .map(|k| format!("{to}{}", &k[from.len()..]))
            .collect();
        for k in &keys {
            self.settle(k).await?;
        }
        for (src, dst) in keys.iter().zip(&moved) {
            self.copy_object(src, dst).await?;
            // A pending state of the destination is stale now.
            if let Some((state, _)) = self.load_pending(dst).await? {
                let _ = self
                    .inner
                    .store
                    .abort_multipart(&self.path(dst), &state.upload_id)
                    .await;
                self.delete_quiet(dst, &self.sidecar(dst)).await?;
                self.prune_tails(dst, None).await?;
            }
        }
        for old in self.tree(to).await? {
            if !moved.contains(&old) && !keys.contains(&old) {
                self.remove_one(&old).await?;
            }
        }
        for src in &keys {
            if !moved.contains(src) {
                self.remove_one(src).await?;
            }
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), DriverError> {
        Self::check(key)?;
        let keys = self.tree(key).await?;
        // Tail segments of writers that never committed, under the key.
        let mut orphans = self.inner.store.list(Some(&self.tail_dir(key)));
        let mut tails = Vec::new();
        while let Some(meta) = orphans.try_next().await.map_err(|e| obj_err(key, e))? {
            tails.push(meta.location);
        }
        for k in &keys {
            self.remove_one(k).await?;
        }
        for t in tails {
            self.delete_quiet(key, &t).await?;
        }
        if keys.is_empty() {
            return Err(DriverError::NotFound(key.to_owned()));
        }
        Ok(())
    }

    async fn redirect_url(&self, key: &str) -> Option<String> {
        let signer = self.inner.signer.as_ref()?;
        Self::check(key).ok()?;
        match signer
            // `http::Method`, named through its `FromStr` (object_store takes the http crate's).
            .signed_url("GET".parse().ok()?, &self.path(key), REDIRECT_EXPIRY)
            .await
        {
            Ok(url) => Some(url.to_string()),
            Err(e) => {
                tracing::warn!(key, error = %e, "presigning a redirect failed");
                None
            }
        }
    }
}

#[cfg(test)]
#[path = "object_tests.rs"]
mod tests;
