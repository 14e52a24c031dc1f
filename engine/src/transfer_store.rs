//! The local image store as the transfer engine's [`BlobSink`] (pull) and [`BlobSource`] (push).
//!
//! A pulled blob streams straight into an upload session of the store (`Store::upload_append`):
//! the store hashes the bytes as they arrive, writes them once, and makes them durable before the
//! session's offset moves; `Store::upload_complete` verifies digest and size, renames the bytes
//! into `blobs/` and links them under the commit lock. Nothing is copied again and nothing is
//! visible before it is verified. The append is ended (durable offset and hash state) every
//! [`CHECKPOINT`] bytes, so an interrupted pull, even a killed one, resumes from the last
//! checkpoint.
//!
//! The session's id is kept in `$HOIST_HOME/tmp/pull-<algorithm>-<hex>.session`, named by the
//! blob's digest so a later pull into the same repository resumes it. That file is locked while a
//! writer uses the session, so two processes pulling the same blob do not interleave (the second
//! one uses a private session and does not resume).

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use hoist_client::{BlobSink, BlobSource, BlobWriter, ByteStream};
use hoist_oci::{Digest, RepoName};
use hoist_storage::ContentError;
use hoist_storage::content::Reference as ContentRef;
use hoist_storage::images::ImageStore;

/// How many bytes one append streams before it is ended and made durable (a resume point).
const CHECKPOINT: u64 = 64 << 20;

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// A verification failure of the store as the engine expects it.
fn content_err(e: ContentError) -> io::Error {
    match e {
        e @ (ContentError::DigestMismatch { .. }
        | ContentError::SizeInvalid { .. }
        | ContentError::RangeInvalid { .. }) => {
            io::Error::new(io::ErrorKind::InvalidData, e.to_string())
        }
        e => io_err(e),
    }
}

/// Pulls into one local repository.
pub struct StoreSink {
    store: ImageStore,
    repo: RepoName,
    /// Other local repositories, asked for a blob before it is fetched.
    others: Vec<RepoName>,
    /// One lock per blob in this process: a writer dropped with an append still running keeps
    /// it until that append has ended, so the next writer of the blob sees where it stopped.
    busy: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
}

impl StoreSink {
    pub fn new(store: ImageStore, repo: RepoName, others: Vec<RepoName>) -> Self {
        Self {
            store,
            repo,
            others,
            busy: Mutex::new(HashMap::new()),
        }
    }
}

impl BlobSink for StoreSink {
    type Writer = UploadWriter;

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

    async fn writer(&self, digest: &Digest, size: u64) -> io::Result<UploadWriter> {
        let busy = self
            .busy
            .lock()
            .expect("busy map")
            .entry(digest.clone())
            .or_default()
            .clone();
        let guard = busy.lock_owned().await;
        let name = format!(
            "pull-{}-{}.session",
            digest.algorithm().as_str(),
            digest.hex()
        );
        let path = self.store.tmp_dir().join(name);
        let (file, recorded) = tokio::task::spawn_blocking(move || open_session_file(path))
            .await
            .map_err(io_err)??;
        let store = self.store.store();
        let mut resumed = None;
        if let (Some(_), Some(id)) = (&file, &recorded) {
            match store.upload_status(&self.repo, id).await {
                Ok(st) if st.offset <= size => resumed = Some(st),
                Ok(st) => {
                    let _ = store.upload_cancel(&self.repo, &st.id).await;
                }
                Err(ContentError::UploadUnknown(_)) => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        let status = match resumed {
            Some(st) => st,
            None => {
                let st = store.upload_start(&self.repo).await.map_err(io_err)?;
                if let Some((path, _)) = &file {
                    let (path, id) = (path.clone(), st.id.clone());
                    tokio::task::spawn_blocking(move || std::fs::write(path, id))
                        .await
                        .map_err(io_err)??;
                }
                st
            }
        };
        let (session_file, lock) = match file {
            Some((path, lock)) => (Some(path), Some(lock)),
            None => (None, None),
        };
        Ok(UploadWriter {
            store: self.store.clone(),
            repo: self.repo.clone(),
            digest: digest.clone(),
            size,
            id: status.id,
            offset: status.offset,
            session_file,
            hold: Some(Hold {
                _lock: lock,
                _guard: guard,
            }),
            append: None,
        })
    }
}

/// Opens (creating) the session file of a blob and locks it; returns it with the session id it
/// records. `None` when another process holds it (the caller then uses a private session).
#[allow(clippy::type_complexity)]
fn open_session_file(
    path: PathBuf,
) -> io::Result<(Option<(PathBuf, std::fs::File)>, Option<String>)> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)?;
    if file.try_lock().is_err() {
        return Ok((None, None));
    }
    let id = std::fs::read_to_string(&path)?.trim().to_owned();
    let id = (!id.is_empty()).then_some(id);
    Ok((Some((path, file)), id))
}

/// What keeps other writers of the same blob waiting: the session file's lock (other
/// processes) and the blob's lock in this process.
struct Hold {
    _lock: Option<std::fs::File>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

/// One append in progress: bytes go through the channel into `Store::upload_append`.
struct Append {
    tx: mpsc::Sender<Bytes>,
    task: tokio::task::JoinHandle<(Result<(), ContentError>, Hold)>,
    start: u64,
}

/// One blob being pulled into an upload session of the store.
pub struct UploadWriter {
    store: ImageStore,
    repo: RepoName,
    digest: Digest,
    size: u64,
    id: String,
    /// Bytes handed to the store (the session's offset once the running append ends).
    offset: u64,
    /// The shared session file, when this writer recorded its session there.
    session_file: Option<PathBuf>,
    /// Held by the writer, or by its running append.
    hold: Option<Hold>,
    append: Option<Append>,
}

impl UploadWriter {
    fn begin(&mut self) {
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        let store = self.store.clone();
        let (repo, id, start) = (self.repo.clone(), self.id.clone(), self.offset);
        let hold = self.hold.take().expect("the writer holds the blob");
        let task = tokio::spawn(async move {
            let body = rx.map(Ok::<Bytes, io::Error>);
            let r = store
                .store()
                .upload_append(&repo, &id, Some(start), body)
                .await
                .map(|_| ());
            (r, hold)
        });
        self.append = Some(Append { tx, task, start });
    }

    /// Ends the running append: its bytes are durable and the session's offset moved.
    async fn end(&mut self) -> io::Result<()> {
        let Some(Append { tx, task, .. }) = self.append.take() else {
            return Ok(());
        };
        drop(tx);
        let (r, hold) = task.await.map_err(io_err)?;
        self.hold = Some(hold);
        r.map_err(content_err)
    }

    async fn remove(mut self) -> io::Result<()> {
        let _ = self.end().await;
        match self.store.store().upload_cancel(&self.repo, &self.id).await {
            Ok(()) | Err(ContentError::UploadUnknown(_)) => {}
            Err(e) => return Err(io_err(e)),
        }
        self.forget().await
    }

    /// Removes the session file (the session is finished or cancelled).
    async fn forget(&mut self) -> io::Result<()> {
        if let Some(path) = self.session_file.take() {
            match tokio::fs::remove_file(&path).await {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

impl BlobWriter for UploadWriter {
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
        if self
            .append
            .as_ref()
            .is_some_and(|a| self.offset - a.start >= CHECKPOINT)
        {
            self.end().await?;
        }
        if self.append.is_none() {
            self.begin();
        }
        let n = data.len() as u64;
        let append = self.append.as_mut().expect("an append runs");
        if append.tx.send(data).await.is_err() {
            // The append stopped: its error says why.
            self.end().await?;
            return Err(io_err(format!(
                "{}: the store stopped the upload",
                self.digest
            )));
        }
        self.offset += n;
        Ok(())
    }

    async fn commit(mut self) -> io::Result<()> {
        if let Err(e) = self.end().await {
            let _ = self.remove().await;
            return Err(e);
        }
        if self.offset != self.size {
            let detail = format!("{}: {} of {} bytes", self.digest, self.offset, self.size);
            self.remove().await?;
            return Err(io::Error::new(io::ErrorKind::InvalidData, detail));
        }
        let none: Option<futures::stream::Empty<Result<Bytes, io::Error>>> = None;
        let done = self
            .store
            .store()
            .upload_complete(&self.repo, &self.id, &self.digest, none)
            .await;
        match done {
            Ok(n) if n == self.size => {
                self.forget().await?;
                Ok(())
            }
            Ok(n) => {
                self.forget().await?;
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: stored {n} bytes, expected {}", self.digest, self.size),
                ))
            }
            // A mismatch cancels the session itself.
            Err(e @ ContentError::DigestMismatch { .. }) => {
                self.forget().await?;
                Err(content_err(e))
            }
            Err(e) => Err(io_err(e)),
        }
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
        assert!(spool.next().is_none(), "the session file is gone");
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
