//! Transactional metadata: repositories, blob links, manifests, tags with history, referrers and
//! upload sessions.
//!
//! The content layer talks to a [`MetadataStore`]; [`SqliteMetadata`] is the embedded
//! implementation (the default), [`PgMetadata`] the same schema on PostgreSQL for several
//! replicas sharing one database. Both pass one test suite (`testsuite`).

mod postgres;
mod sqlite;
#[cfg(test)]
mod testsuite;

use async_trait::async_trait;
use hoist_oci::{Digest, DigesterState};

pub use postgres::PgMetadata;
pub use sqlite::{SqliteMetadata, open_wal};

/// What went wrong in the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("metadata database: {}", pg_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection from the PostgreSQL pool (timed out, or the pool is closed).
    #[error("metadata database pool: {0}")]
    Pool(String),
    #[error("manifest references content the repository does not have: {}", list(.0))]
    MissingReferences(Vec<Digest>),
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    #[error("metadata task failed: {0}")]
    Task(String),
}

/// What the server said (`tokio_postgres::Error` alone says only "db error").
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

fn list(ds: &[Digest]) -> String {
    ds.iter().map(Digest::as_str).collect::<Vec<_>>().join(", ")
}

/// A resumable upload: where it is, and the hash of what it holds so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    pub id: String,
    pub repo: String,
    /// Bytes received and durable.
    pub offset: u64,
    /// The hash state after `offset` bytes.
    pub hash: DigesterState,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A manifest stored in a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// `artifactType`, or for an image manifest without one, its config's media type.
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    /// The manifest's `annotations`, as JSON text.
    pub annotations: Option<String>,
    pub created_at: i64,
}

/// What a manifest points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// A config or layer blob.
    Blob,
    /// A child manifest of an index.
    Manifest,
}

impl RefKind {
    fn as_str(self) -> &'static str {
        match self {
            RefKind::Blob => "blob",
            RefKind::Manifest => "manifest",
        }
    }
}

/// A tag's move: to a manifest, or removed (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagEvent {
    pub digest: Option<Digest>,
    pub at: i64,
}

/// A tag and the manifest it points at, for listings across repositories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRow {
    pub repo: String,
    pub tag: String,
    pub digest: Digest,
    pub updated_at: i64,
}

/// One page of a sorted listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    pub items: Vec<String>,
    /// Whether more items follow the last one.
    pub more: bool,
}

/// The transactional half of storage. Every method is one transaction.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Size of a committed blob, in any repository.
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, MetaError>;
    /// Size of a blob if it is linked into `repo`.
    async fn repo_blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, MetaError>;
    /// Records a committed blob and links it into `repo` (creating the repository).
    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<(), MetaError>;
    /// Removes a blob's link from `repo`; false when it was not linked.
    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool, MetaError>;

    async fn upload_create(&self, session: &UploadSession) -> Result<(), MetaError>;
    async fn upload_get(&self, id: &str) -> Result<Option<UploadSession>, MetaError>;
    /// Moves an upload from `from_offset` to the new offset and hash state. Fails (false) when the
    /// session is gone or another request moved it first.
    async fn upload_advance(
        &self,
        id: &str,
        from_offset: u64,
        offset: u64,
        hash: &DigesterState,
    ) -> Result<bool, MetaError>;
    /// Removes a session; false when it did not exist.
    async fn upload_delete(&self, id: &str) -> Result<bool, MetaError>;
    /// Every session id, for startup clean-up.
    async fn upload_ids(&self) -> Result<Vec<String>, MetaError>;
    /// Sessions not touched since `before` (seconds since the epoch).
    async fn stale_uploads(&self, before: i64) -> Result<Vec<String>, MetaError>;
    /// Ends an upload: the session goes, the blob is recorded and linked into the session's repo.
    async fn upload_finish(&self, id: &str, digest: &Digest, size: u64) -> Result<(), MetaError>;

    /// Stores a manifest in `repo` and optionally points `tag` at it, after checking inside the
    /// transaction that every reference exists in the repository.
    async fn manifest_put(
        &self,
        repo: &str,
        record: &ManifestRecord,
        refs: &[(Digest, RefKind)],
        tag: Option<&str>,
    ) -> Result<(), MetaError>;
    async fn manifest_by_digest(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, MetaError>;
    async fn manifest_by_tag(
        &self,
        repo: &str,
        tag: &str,
    ) -> Result<Option<ManifestRecord>, MetaError>;
    /// Removes a manifest and the tags that point at it; false when it was not there.
    async fn manifest_delete(&self, repo: &str, digest: &Digest) -> Result<bool, MetaError>;
    /// Removes a tag; false when it was not there.
    async fn tag_delete(&self, repo: &str, tag: &str) -> Result<bool, MetaError>;
    /// A page of `repo`'s tags in lexical order after `last`; `None` when the repository is unknown.
    async fn tags(
        &self,
        repo: &str,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Option<Page>, MetaError>;
    /// Where a tag pointed over time, oldest first.
    async fn tag_history(&self, repo: &str, tag: &str) -> Result<Vec<TagEvent>, MetaError>;
    /// A page of repository names in lexical order after `last`.
    async fn repositories(&self, n: Option<usize>, last: Option<&str>) -> Result<Page, MetaError>;
    async fn repo_exists(&self, repo: &str) -> Result<bool, MetaError>;
    /// Manifests in `repo` whose subject is `subject`, ordered by digest.
    async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
    ) -> Result<Vec<ManifestRecord>, MetaError>;
    /// Garbage collection, first step: removes up to `limit` links created before `before` that
    /// no manifest of their repository references, checking both as they go. Returns how many
    /// went (fewer than `limit`: no more are due).
    async fn unlink_unreferenced(&self, before: i64, limit: usize) -> Result<u64, MetaError>;
    /// Garbage collection, mark: up to `limit` blobs after `after` (in digest order) recorded
    /// before `before` that no repository links and that are no manifest's bytes. Reads only.
    async fn blob_candidates(
        &self,
        before: i64,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<Digest>, MetaError>;
    /// Garbage collection, sweep: removes and returns those of `candidates` that are still
    /// garbage by the rules of [`MetadataStore::blob_candidates`], checked again in the same
    /// transaction (a write since the mark refreshes or links them).
    async fn sweep_blobs(
        &self,
        before: i64,
        candidates: &[Digest],
    ) -> Result<Vec<(Digest, u64)>, MetaError>;
    /// Every blob digest that is recorded, for garbage collection and consistency checks.
    async fn all_blobs(&self) -> Result<Vec<Digest>, MetaError>;

    /// Every tag of every repository, ordered by repository and tag (a local store's image list).
    async fn all_tags(&self) -> Result<Vec<TagRow>, MetaError>;
    /// Every manifest of every repository with its repository, ordered by repository and digest.
    async fn all_manifests(&self) -> Result<Vec<(String, ManifestRecord)>, MetaError>;
    /// The manifests of `repo` that name `digest` as a child (the indexes it belongs to).
    async fn manifest_parents(&self, repo: &str, digest: &Digest)
    -> Result<Vec<Digest>, MetaError>;
    /// The repositories that hold the manifest `digest`, in lexical order.
    async fn manifest_repos(&self, digest: &Digest) -> Result<Vec<String>, MetaError>;

    // ----- coordination between processes sharing the store -----
    /// Claims the periodic `task` at `now` (seconds since the epoch) when no process claimed it
    /// after `now - every` seconds: true means this caller runs it now, and every other caller
    /// sharing the store is refused until `every` has passed again.
    async fn claim_task(&self, task: &str, every: u64, now: i64) -> Result<bool, MetaError>;
    /// Takes the store-wide commit lock (shared for commits, exclusive for garbage collection's
    /// sweep; see `content::gc`) across every process using this metadata, held until the guard
    /// drops. `None`: this store has no such lock of its own (the content layer's file lock
    /// covers the processes that share a data directory).
    async fn commit_lock(&self, _exclusive: bool) -> Result<Option<LockGuard>, MetaError> {
        Ok(None)
    }
}

/// Holds a [`MetadataStore::commit_lock`] until dropped.
pub struct LockGuard(#[allow(dead_code)] Box<dyn Send + Sync>);

impl LockGuard {
    pub fn new(inner: impl Send + Sync + 'static) -> LockGuard {
        LockGuard(Box::new(inner))
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
