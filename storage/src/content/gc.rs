//! Garbage collection, safe while pushes continue.
//!
//! Every operation that makes a blob reachable (committing upload bytes and linking them, mounting,
//! storing manifest bytes and recording the manifest) holds the commit lock *shared* for the few
//! milliseconds between "the bytes are there" and "the metadata says so". The sweep holds it
//! *exclusive* while it removes unreferenced blobs' rows and bytes, so it never removes bytes that
//! a commit is about to link. For an fs store the lock is also a file lock (`gc.lock`), so several
//! processes sharing one store coordinate too.
//!
//! Policy: a link that no manifest of its repository references is garbage once it is older than
//! the grace period (a push uploads blobs before its manifest); a blob with no link that is no
//! manifest's bytes is garbage once older than the grace period; bytes with no metadata at all
//! (left by a crash between rename and link) are removed at once, since under the exclusive lock no
//! commit can be half-way. Untagged manifests are kept: they are addressable by digest.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use super::{Result, Store, ignore_missing, paths};
use crate::driver::DriverError;
use crate::metadata::now;

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

/// The lock commits take shared and the sweep takes exclusive.
pub(crate) struct CommitLock {
    memory: Arc<RwLock<()>>,
    file: Option<PathBuf>,
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
}

impl CommitLock {
    pub(crate) fn new(file: Option<PathBuf>) -> Self {
        CommitLock {
            memory: Arc::new(RwLock::new(())),
            file,
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
        Ok(CommitGuard {
            _memory: memory,
            _file: file,
        })
    }

    pub(crate) async fn exclusive(&self) -> Result<CommitGuard> {
        let memory = MemoryGuard::Exclusive(self.memory.clone().write_owned().await);
        let file = self.file_lock(true).await?;
        Ok(CommitGuard {
            _memory: memory,
            _file: file,
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
    pub(crate) async fn gc_before(&self, before: i64) -> Result<GcReport> {
        let mut report = GcReport {
            unlinked: self.meta.unlink_unreferenced(before).await?,
            ..GcReport::default()
        };
        let _guard = self.commit_lock.exclusive().await?;
        for (digest, size) in self.meta.sweep_blobs(before).await? {
            ignore_missing(self.driver.delete(&paths::blob_dir(&digest)).await)?;
            report.blobs_removed += 1;
            report.bytes_freed += size;
        }
        for alg in self.driver.list(paths::BLOBS).await? {
            for prefix in self.driver.list(&alg).await? {
                for key in self.driver.list(&prefix).await? {
                    let Some(digest) = paths::blob_digest_of(&key) else {
                        continue;
                    };
                    if self.meta.blob_size(&digest).await?.is_none() {
                        ignore_missing(self.driver.delete(&key).await)?;
                        report.orphans_removed += 1;
                    }
                }
            }
        }
        if report != GcReport::default() {
            tracing::info!(?report, "garbage collected");
        }
        Ok(report)
    }
}
