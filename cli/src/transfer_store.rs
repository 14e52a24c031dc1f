//! The local image store as the transfer engine's [`BlobSink`] (pull) and [`BlobSource`] (push).
//!
//! A pulled blob streams into a partial file in the store's spool directory
//! (`$HOIST_HOME/tmp/pull-<algorithm>-<hex>.part`), named by its digest so an interrupted pull
//! resumes where it stopped. The file is locked while written, so two processes pulling the same
//! blob do not interleave (the second one writes a private file and does not resume). On commit
//! the file goes into the store through [`ImageStore::put_blob_file`], which verifies digest and
//! size before anything is visible; a mismatch removes the partial file.

use std::io;
use std::path::PathBuf;

use bytes::Bytes;
use futures::StreamExt;
use hoist_client::{BlobSink, BlobSource, BlobWriter, ByteStream};
use hoist_oci::{Digest, RepoName};
use hoist_storage::ContentError;
use hoist_storage::content::Reference as ContentRef;
use hoist_storage::images::{ImageError, ImageStore};
use tokio::io::AsyncWriteExt;

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Pulls into one local repository.
pub struct StoreSink {
    store: ImageStore,
    repo: RepoName,
    /// Other local repositories, asked for a blob before it is fetched.
    others: Vec<RepoName>,
}

impl StoreSink {
    pub fn new(store: ImageStore, repo: RepoName, others: Vec<RepoName>) -> Self {
        Self {
            store,
            repo,
            others,
        }
    }
}

impl BlobSink for StoreSink {
    type Writer = PartialWriter;

    async fn has(&self, digest: &Digest) -> io::Result<bool> {
        let store = self.store.store();
        if store
            .blob_stat(&self.repo, digest)
            .await
            .map_err(io_err)?
            .is_some()
        {
            return Ok(true);
        }
        // Another local repository may hold it: link it instead of fetching it again.
        for from in &self.others {
            if store
                .blob_mount(&self.repo, from, digest)
                .await
                .map_err(io_err)?
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn writer(&self, digest: &Digest, size: u64) -> io::Result<PartialWriter> {
        let name = format!("pull-{}-{}.part", digest.algorithm().as_str(), digest.hex());
        let shared = self.store.tmp_dir().join(name);
        let (path, file, offset) = tokio::task::spawn_blocking(move || open_partial(shared, size))
            .await
            .map_err(io_err)??;
        Ok(PartialWriter {
            store: self.store.clone(),
            repo: self.repo.clone(),
            digest: digest.clone(),
            size,
            path,
            file: tokio::fs::File::from_std(file),
            offset,
        })
    }
}

/// Opens (creating) the partial file for a blob and locks it. When another process holds the
/// lock, a private file is used instead. Returns the path, the file positioned at its end, and
/// how many bytes it holds.
fn open_partial(shared: PathBuf, size: u64) -> io::Result<(PathBuf, std::fs::File, u64)> {
    use std::io::{Seek, SeekFrom};
    let open = |p: &PathBuf| {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(p)
    };
    let mut file = open(&shared)?;
    let path = match file.try_lock() {
        Ok(()) => shared,
        Err(_) => {
            let private = shared.with_extension(format!(
                "{}-{}.part",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ));
            file = open(&private)?;
            file.try_lock().map_err(io_err)?;
            private
        }
    };
    let mut len = file.metadata()?.len();
    if len > size {
        file.set_len(0)?;
        len = 0;
    }
    file.seek(SeekFrom::Start(len))?;
    Ok((path, file, len))
}

/// One blob being pulled into a partial file.
pub struct PartialWriter {
    store: ImageStore,
    repo: RepoName,
    digest: Digest,
    size: u64,
    path: PathBuf,
    file: tokio::fs::File,
    offset: u64,
}

impl PartialWriter {
    async fn remove(self) -> io::Result<()> {
        drop(self.file);
        match tokio::fs::remove_file(&self.path).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

impl BlobWriter for PartialWriter {
    fn offset(&self) -> u64 {
        self.offset
    }

    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        if self.offset + data.len() as u64 > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: more than the {} bytes expected",
                    self.digest, self.size
                ),
            ));
        }
        self.file.write_all(&data).await?;
        self.offset += data.len() as u64;
        Ok(())
    }

    async fn commit(mut self) -> io::Result<()> {
        self.file.flush().await?;
        if self.offset != self.size {
            let detail = format!("{}: {} of {} bytes", self.digest, self.offset, self.size);
            self.remove().await?;
            return Err(io::Error::new(io::ErrorKind::InvalidData, detail));
        }
        let put = self
            .store
            .put_blob_file(&self.repo, &self.digest, &self.path)
            .await;
        let result = match put {
            Ok(n) if n == self.size => Ok(()),
            Ok(n) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: stored {n} bytes, expected {}", self.digest, self.size),
            )),
            Err(ImageError::Content(
                e @ (ContentError::DigestMismatch { .. } | ContentError::SizeInvalid { .. }),
            )) => Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            Err(e) => return Err(io_err(e)),
        };
        self.remove().await?;
        result
    }

    async fn discard(self) -> io::Result<()> {
        self.remove().await
    }
}

/// Pushes from one local repository. Manifests are read by digest like blobs.
pub struct StoreSource {
    store: ImageStore,
    repo: RepoName,
}

impl StoreSource {
    pub fn new(store: ImageStore, repo: RepoName) -> Self {
        Self { store, repo }
    }
}

impl BlobSource for StoreSource {
    async fn size(&self, digest: &Digest) -> io::Result<Option<u64>> {
        let store = self.store.store();
        if let Some(n) = store.blob_stat(&self.repo, digest).await.map_err(io_err)? {
            return Ok(Some(n));
        }
        match store
            .manifest_stat(&self.repo, &ContentRef::Digest(digest.clone()))
            .await
        {
            Ok(m) => Ok(Some(m.size)),
            Err(ContentError::ManifestUnknown(_) | ContentError::NameUnknown(_)) => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }

    async fn open(&self, digest: &Digest, offset: u64) -> io::Result<ByteStream> {
        let store = self.store.store();
        if store
            .blob_stat(&self.repo, digest)
            .await
            .map_err(io_err)?
            .is_some()
        {
            return store
                .blob_stream(&self.repo, digest, offset, None)
                .await
                .map_err(io_err);
        }
        let m = store
            .manifest_get(&self.repo, &ContentRef::Digest(digest.clone()))
            .await
            .map_err(|e| match e {
                ContentError::ManifestUnknown(_) | ContentError::NameUnknown(_) => {
                    io::Error::new(io::ErrorKind::NotFound, format!("{digest} is not stored"))
                }
                e => io_err(e),
            })?;
        let start = (offset as usize).min(m.bytes.len());
        let rest = m.bytes.slice(start..);
        Ok(futures::stream::once(async move { Ok(rest) }).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sink() -> (tempfile::TempDir, StoreSink) {
        let home = tempfile::tempdir().unwrap();
        let store = ImageStore::open(home.path()).await.unwrap();
        let repo = RepoName::parse("localhost__5000/a/b").unwrap();
        (home, StoreSink::new(store, repo, Vec::new()))
    }

    #[tokio::test]
    async fn an_interrupted_blob_resumes_and_commits_verified() {
        let (_home, sink) = sink().await;
        let data = Bytes::from(vec![7u8; 100_000]);
        let digest = Digest::sha256_of(&data);
        let mut w = sink.writer(&digest, 100_000).await.unwrap();
        w.write(data.slice(..40_000)).await.unwrap();
        drop(w);
        let mut w = sink.writer(&digest, 100_000).await.unwrap();
        assert_eq!(w.offset(), 40_000);
        assert!(w.write(data.clone()).await.is_err(), "grew past the size");
        w.write(data.slice(40_000..)).await.unwrap();
        w.commit().await.unwrap();
        assert!(sink.has(&digest).await.unwrap());
        let mut spool = std::fs::read_dir(sink.store.tmp_dir()).unwrap();
        assert!(spool.next().is_none(), "the partial file is gone");
        let source = StoreSource::new(sink.store.clone(), sink.repo.clone());
        assert_eq!(source.size(&digest).await.unwrap(), Some(100_000));
    }

    #[tokio::test]
    async fn a_corrupted_blob_is_rejected_and_nothing_is_stored() {
        let (_home, sink) = sink().await;
        let digest = Digest::sha256_of(b"the real bytes");
        let mut w = sink.writer(&digest, 14).await.unwrap();
        w.write(Bytes::from_static(b"other bytes!!!"))
            .await
            .unwrap();
        let err = w.commit().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(!sink.has(&digest).await.unwrap());
        let mut spool = std::fs::read_dir(sink.store.tmp_dir()).unwrap();
        assert!(spool.next().is_none(), "the partial file is gone");
    }
}
