//! Garbage collection, safe while pushes continue.
//!
//! Every operation that makes a blob reachable (committing upload bytes and linking them, mounting,
//! storing manifest bytes and recording the manifest) holds the commit lock *shared* for the few
//! milliseconds between "the bytes are there" and "the metadata says so". The sweep holds it
//! *exclusive* while it removes unreferenced blobs' rows and bytes, so it never removes bytes that
//! a commit is about to link. Candidates are marked without the lock and swept in bounded
//! batches, each checked again under it, so a collection over many blobs never stalls pushes
//! for longer than one batch. For an fs store the lock is also a file lock (`gc.lock`), so several
//! processes sharing one store coordinate too; on PostgreSQL it is also an advisory lock in the
//! database, so replicas sharing it do.
//!
//! Policy: a link that no manifest of its repository references is garbage once it is older than
//! the grace period (a push uploads blobs before its manifest). Every write that makes content
//! reachable (an upload completing, a mount, a manifest naming the blob) restarts the grace of
//! the link and blob it touches, so content acknowledged to a client keeps its whole grace; a blob with no link that is no
//! manifest's bytes is garbage once older than the grace period; bytes with no metadata at all
//! (left by a crash between rename and link) are removed at once, since under the exclusive lock no
//! commit can be half-way. Untagged manifests are kept: they are addressable by digest.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use hoist_oci::Digest;

use super::{Result, Store, ignore_missing, paths};
use crate::driver::DriverError;
use crate::metadata::{LockGuard, MetadataStore, now};

/// How many blobs one exclusive section of a collection handles at most.
pub(crate) const GC_BATCH: usize = 32;

/// What a collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Links no manifest referenced.
    pub unlinked: u64,
    /// Blobs removed, with their bytes.
    pub blobs_removed: u64,
    /// Bytes freed by those blobs.
    pub bytes_freed: u64,
    /// Blob files that had no metadata at all.
    pub orphans_removed: u64,
}

/// The lock commits take shared and the sweep takes exclusive: in memory for this process, a
/// file lock for processes sharing a data directory, and the metadata store's own lock for
/// replicas sharing a database ([`MetadataStore::commit_lock`]).
pub(crate) struct CommitLock {
    memory: Arc<RwLock<()>>,
    file: Option<PathBuf>,
    meta: Arc<dyn MetadataStore>,
}

enum MemoryGuard {
    Shared(#[allow(dead_code)] OwnedRwLockReadGuard<()>),
    Exclusive(#[allow(dead_code)] OwnedRwLockWriteGuard<()>),
}

/// Held while a commit or a sweep runs; released on drop.
pub(crate) struct CommitGuard {
    _memory: MemoryGuard,
    // Dropping the file closes it, which releases the advisory lock.
    _file: Option<std::fs::File>,
    _meta: Option<LockGuard>,
}

impl CommitLock {
    pub(crate) fn new(file: Option<PathBuf>, meta: Arc<dyn MetadataStore>) -> Self {
        CommitLock {
            memory: Arc::new(RwLock::new(())),
            file,
            meta,
        }
    }

    async fn file_lock(&self, exclusive: bool) -> Result<Option<std::fs::File>> {
        let Some(path) = self.file.clone() else {
            return Ok(None);
        };
        let key = path.display().to_string();
        let file = tokio::task::spawn_blocking(move || {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            if exclusive {
                f.lock()?;
            } else {
                f.lock_shared()?;
            }
            Ok::<_, std::io::Error>(f)
        })
        .await
        .map_err(|e| DriverError::io(&key, std::io::Error::other(e)))?
        .map_err(|e| DriverError::io(&key, e))?;
        Ok(Some(file))
    }

    pub(crate) async fn shared(&self) -> Result<CommitGuard> {
        let memory = MemoryGuard::Shared(self.memory.clone().read_owned().await);
        let file = self.file_lock(false).await?;
        let meta = self.meta.commit_lock(false).await?;
        Ok(CommitGuard {
            _memory: memory,
            _file: file,
            _meta: meta,
        })
    }

    pub(crate) async fn exclusive(&self) -> Result<CommitGuard> {
        let memory = MemoryGuard::Exclusive(self.memory.clone().write_owned().await);
        let file = self.file_lock(true).await?;
        let meta = self.meta.commit_lock(true).await?;
        Ok(CommitGuard {
            _memory: memory,
            _file: file,
            _meta: meta,
        })
    }
}

impl Store {
    /// Removes what nothing references any more (see the module docs for the policy). `grace`
    /// protects pushes in progress: links and blobs younger than it are kept.
    pub async fn gc(&self, grace: Duration) -> Result<GcReport> {
        self.gc_before(now() - grace.as_secs() as i64).await
    }

    /// [`Store::gc`] with an explicit cutoff in seconds since the epoch.
    ///
    /// Nothing here holds the commit lock exclusive for more than one batch of [`GC_BATCH`]
    /// blobs: candidates are marked without it, and each batch is checked again under it
    /// before anything goes, so pushes wait at most one short batch.
    pub(crate) async fn gc_before(&self, before: i64) -> Result<GcReport> {
        let mut report = GcReport::default();
        // Links: each batch is one metadata transaction that checks age and references as it
        // deletes; no bytes move, so the commit lock is not needed.
        loop {
            let n = self.meta.unlink_unreferenced(before, GC_BATCH).await?;
            report.unlinked += n;
            if n < GC_BATCH as u64 {
                break;
            }
        }
        // Blobs nothing links or owns: marked in pages without the lock, swept under it.
        let mut after: Option<Digest> = None;
        loop {
            let marked = self
                .meta
                .blob_candidates(before, after.as_ref(), GC_BATCH)
                .await?;
            let Some(last) = marked.last() else {
                break;
            };
            after = Some(last.clone());
            let full = marked.len() == GC_BATCH;
            let guard = self.commit_lock.exclusive().await?;
            // Under the lock no commit is half-way; what a commit linked or refreshed since the
            // mark is not garbage any more, and the sweep checks that again.
            for (digest, size) in self.meta.sweep_blobs(before, &marked).await? {
                ignore_missing(self.driver.delete(&paths::blob_dir(&digest)).await)?;
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
            drop(guard);
            if !full {
                break;
            }
        }
        // Bytes with no metadata at all (a crash between rename and link): listed without the
        // lock, each checked again under it.
        let mut listed = Vec::new();
        for alg in self.driver.list(paths::BLOBS).await? {
            for prefix in self.driver.list(&alg).await? {
                for key in self.driver.list(&prefix).await? {
                    if let Some(digest) = paths::blob_digest_of(&key) {
                        listed.push(digest);
                    }
                }
            }
        }
        let known: HashSet<Digest> = self.meta.all_blobs().await?.into_iter().collect();
        listed.retain(|d| !known.contains(d));
        for batch in listed.chunks(GC_BATCH) {
            let _guard = self.commit_lock.exclusive().await?;
            for digest in batch {
                if self.meta.blob_size(digest).await?.is_none() {
                    ignore_missing(self.driver.delete(&paths::blob_dir(digest)).await)?;
                    report.orphans_removed += 1;
                }
            }
        }
        if report != GcReport::default() {
            tracing::info!(?report, "garbage collected");
        }
        Ok(report)
    }
}
