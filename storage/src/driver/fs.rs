//! The filesystem driver: a key is a file under the root.
//!
//! Small keys are written to `.tmp/` beside the tree, fsynced, and renamed into place, then the
//! directory is fsynced. Writers buffer up to [`WRITE_BUF`] and write from the blocking pool, so a
//! multi-gigabyte stream costs one buffer of memory.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncSeekExt;
use tokio::sync::mpsc;

use super::{
    BoxReader, ByteStream, DriverError, DriverWriter, FileInfo, StorageDriver, validate_key,
};

/// How much a writer gathers before one write to the file.
const WRITE_BUF: usize = 1 << 20;
/// How many full buffers may wait for the writing thread.
const IN_FLIGHT: usize = 4;
/// The writing thread flushes to disk every this many bytes.
const SYNC_EVERY: u64 = 16 << 20;
/// Chunk size of streamed reads.
const READ_CHUNK: usize = 512 * 1024;
/// How many chunks a streamed read keeps ahead of its consumer.
const READ_AHEAD: usize = 4;
/// Temporary files older than this are leftovers of a crash.
pub const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(3600);
/// Where temporary files live, beside the key tree. Not a valid content key prefix.
const TMP_DIR: &str = ".tmp";

#[derive(Debug, Clone)]
pub struct FsDriver {
    root: PathBuf,
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// How often an operation that creates under a directory tries again when a concurrent delete
/// pruned that directory (or a parent) between its creation and the operation's use of it.
const PRUNED_RETRIES: usize = 64;

/// Creates `dir` and its missing parents, fsyncing each parent whose entries changed.
///
/// Deletes prune directories they leave empty, in this process or another sharing the root, so
/// any directory may vanish the moment it is empty: a parent removed between our check and our
/// `mkdir` is created again.
fn create_dirs_durable(dir: &Path) -> std::io::Result<()> {
    let mut attempt = 0;
    loop {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            create_dirs_durable(parent)?;
        }
        let made = fs::create_dir(dir).and_then(|()| match dir.parent() {
            Some(parent) => sync_dir(parent),
            None => Ok(()),
        });
        match made {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < PRUNED_RETRIES => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs `op`, which creates an entry in `dir`, after creating `dir`. When `op` finds no `dir`
/// (a concurrent delete pruned it once it was empty), `dir` is created again and `op` retried:
/// no delete can make a concurrent writer fail. `source` is what `op` moves, if anything: when
/// it is gone, the `NotFound` is about it and is returned at once.
fn in_dir<T>(
    dir: &Path,
    source: Option<&Path>,
    mut op: impl FnMut() -> std::io::Result<T>,
) -> std::io::Result<T> {
    let mut attempt = 0;
    loop {
        create_dirs_durable(dir)?;
        match op() {
            // Whether `dir` exists now says nothing: another writer may have made it again.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && attempt < PRUNED_RETRIES
                    && source.is_none_or(Path::exists) =>
            {
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn blocking<T: Send + 'static>(
    key: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, DriverError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DriverError::io(key, std::io::Error::other(e)))?
        .map_err(|e| DriverError::io(key, e))
}

/// Maps the `InvalidInput` a blocking open reports for an offset past the end.
fn invalid_offset(e: DriverError, key: &str, offset: u64) -> DriverError {
    match e {
        DriverError::Io { source, .. } if source.kind() == std::io::ErrorKind::InvalidInput => {
            DriverError::InvalidOffset {
                key: key.to_owned(),
                offset,
                size: 0,
            }
        }
        other => other,
    }
}

impl FsDriver {
    /// Opens (creating) a driver rooted at `root`, removing temporary files a crash left behind.
    /// Only files older than [`STALE_TMP`] go: another process sharing the root may be writing
    /// the younger ones.
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        let tmp = root.join(TMP_DIR);
        if let Ok(entries) = fs::read_dir(&tmp) {
            let cutoff = std::time::SystemTime::now() - STALE_TMP;
            for entry in entries.flatten() {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < cutoff);
                if old {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(FsDriver { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, DriverError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    fn tmp_path(&self) -> PathBuf {
        self.root
            .join(TMP_DIR)
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Removes now-empty directories from `dir` up to (not including) the root.
    fn prune_empty(&self, mut dir: &Path) {
        while dir != self.root && dir.starts_with(&self.root) {
            if fs::remove_dir(dir).is_err() {
                break;
            }
            match dir.parent() {
                Some(p) => dir = p,
                None => break,
            }
        }
    }
}

/// A writer hands full buffers to its own thread over a bounded channel, so hashing and
/// receiving overlap with writing, and memory stays at `IN_FLIGHT` buffers.
struct FsWriter {
    key: String,
    path: PathBuf,
    tx: Option<mpsc::Sender<Bytes>>,
    thread: Option<tokio::task::JoinHandle<std::io::Result<File>>>,
    buf: BytesMut,
    size: u64,
}

impl FsWriter {
    fn start(key: &str, path: PathBuf, file: File, offset: u64) -> Self {
        let (tx, mut rx) = mpsc::channel::<Bytes>(IN_FLIGHT);
        let thread = tokio::task::spawn_blocking(move || {
            let mut file = file;
            let mut unsynced = 0u64;
            // Flush as we go, on a second descriptor in a second thread, so the disk works
            // while more bytes arrive and the final fsync has little left to do. At most one
            // background flush runs at a time; writing never waits for it.
            let mut flushing: Option<std::thread::JoinHandle<std::io::Result<()>>> = None;
            while let Some(data) = rx.blocking_recv() {
                file.write_all(&data)?;
                unsynced += data.len() as u64;
                if unsynced >= SYNC_EVERY && flushing.as_ref().is_none_or(|f| f.is_finished()) {
                    if let Some(done) = flushing.take() {
                        done.join()
                            .map_err(|_| std::io::Error::other("flush thread panicked"))??;
                    }
                    let dup = file.try_clone()?;
                    flushing = Some(std::thread::spawn(move || dup.sync_data()));
                    unsynced = 0;
                }
            }
            if let Some(done) = flushing {
                done.join()
                    .map_err(|_| std::io::Error::other("flush thread panicked"))??;
            }
            Ok(file)
        });
        FsWriter {
            key: key.to_owned(),
            path,
            tx: Some(tx),
            thread: Some(thread),
            buf: BytesMut::new(),
            size: offset,
        }
    }

    async fn send(&mut self, data: Bytes) -> Result<(), DriverError> {
        let tx = self.tx.as_ref().expect("writer used after commit");
        if tx.send(data).await.is_err() {
            // The thread stopped early: it hit an error; report it.
            return Err(match self.stop().await {
                Err(e) => e,
                Ok(_) => DriverError::io(&self.key, std::io::Error::other("writer thread stopped")),
            });
        }
        Ok(())
    }

    async fn flush_buf(&mut self) -> Result<(), DriverError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = self.buf.split().freeze();
        self.send(data).await
    }

    /// Closes the channel and waits for the thread to write everything it was given.
    async fn stop(&mut self) -> Result<File, DriverError> {
        self.tx = None;
        let thread = self.thread.take().expect("writer used after commit");
        thread
            .await
            .map_err(|e| DriverError::io(&self.key, std::io::Error::other(e)))?
            .map_err(|e| DriverError::io(&self.key, e))
    }
}

#[async_trait]
impl DriverWriter for FsWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), DriverError> {
        self.size += data.len() as u64;
        if self.buf.is_empty() && data.len() >= WRITE_BUF {
            return self.send(data).await;
        }
        self.buf.extend_from_slice(&data);
        if self.buf.len() >= WRITE_BUF {
            self.flush_buf().await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn commit(mut self: Box<Self>) -> Result<(), DriverError> {
        self.flush_buf().await?;
        let file = self.stop().await?;
        blocking(&self.key, move || file.sync_data()).await
    }

    async fn cancel(mut self: Box<Self>) -> Result<(), DriverError> {
        let _ = self.stop().await;
        let path = self.path.clone();
        blocking(&self.key, move || fs::remove_file(path)).await
    }
}

#[async_trait]
impl StorageDriver for FsDriver {
    fn name(&self) -> &'static str {
        "fs"
    }

    async fn get_content(&self, key: &str) -> Result<Bytes, DriverError> {
        let path = self.path(key)?;
        tokio::fs::read(&path)
            .await
            .map(Bytes::from)
            .map_err(|e| DriverError::io(key, e))
    }

    async fn put_content(&self, key: &str, data: Bytes) -> Result<(), DriverError> {
        let path = self.path(key)?;
        let tmp = self.tmp_path();
        blocking(key, move || {
            let mut f = in_dir(tmp.parent().expect("tmp has a parent"), None, || {
                File::create(&tmp)
            })?;
            f.write_all(&data)?;
            f.sync_data()?;
            let parent = path.parent().expect("key has a parent");
            in_dir(parent, Some(&tmp), || fs::rename(&tmp, &path))?;
            sync_dir(parent)
        })
        .await
    }

    async fn reader(&self, key: &str, offset: u64) -> Result<BoxReader, DriverError> {
        let path = self.path(key)?;
        let mut f = tokio::fs::File::open(&path)
            .await
            .map_err(|e| DriverError::io(key, e))?;
        let size = f
            .metadata()
            .await
            .map_err(|e| DriverError::io(key, e))?
            .len();
        if offset > size {
            return Err(DriverError::InvalidOffset {
                key: key.to_owned(),
                offset,
                size,
            });
        }
        if offset > 0 {
            f.seek(SeekFrom::Start(offset))
                .await
                .map_err(|e| DriverError::io(key, e))?;
        }
        Ok(Box::pin(f))
    }

    async fn stream(
        &self,
        key: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, DriverError> {
        let path = self.path(key)?;
        let file = blocking(key, move || {
            let mut f = File::open(&path)?;
            let size = f.metadata()?.len();
            if offset > size {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("offset {offset} past the end ({size} bytes)"),
                ));
            }
            f.seek(SeekFrom::Start(offset))?;
            Ok((f, size))
        })
        .await
        .map_err(|e| invalid_offset(e, key, offset))?;
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(READ_AHEAD);
        // A thread reads ahead a bounded number of chunks; it stops when the receiver goes.
        tokio::task::spawn_blocking(move || {
            let (mut f, _) = file;
            let mut remaining = len;
            loop {
                let want = remaining.map_or(READ_CHUNK, |n| n.min(READ_CHUNK as u64) as usize);
                if want == 0 {
                    break;
                }
                let mut buf = BytesMut::zeroed(want);
                let item = match f.read(&mut buf) {
                    Ok(0) => match remaining.filter(|n| *n > 0) {
                        Some(n) => Err(super::missing(n)),
                        None => break,
                    },
                    Ok(k) => {
                        buf.truncate(k);
                        remaining = remaining.map(|n| n - k as u64);
                        Ok(buf.freeze())
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let failed = item.is_err();
                if tx.blocking_send(item).is_err() || failed {
                    break;
                }
            }
        });
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })))
    }

    async fn writer(&self, key: &str, offset: u64) -> Result<Box<dyn DriverWriter>, DriverError> {
        let path = self.path(key)?;
        let p = path.clone();
        let owned_key = key.to_owned();
        let file = blocking(key, move || {
            let mut f = in_dir(p.parent().expect("key has a parent"), None, || {
                OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(false)
                    .open(&p)
            })?;
            let size = f.metadata()?.len();
            if offset > size {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("offset {offset} past the end of {owned_key} ({size} bytes)"),
                ));
            }
            f.set_len(offset)?;
            f.seek(SeekFrom::Start(offset))?;
            Ok(f)
        })
        .await
        .map_err(|e| invalid_offset(e, key, offset))?;
        Ok(Box::new(FsWriter::start(key, path, file, offset)))
    }

    async fn stat(&self, key: &str) -> Result<FileInfo, DriverError> {
        let path = self.path(key)?;
        let md = tokio::fs::metadata(&path)
            .await
            .map_err(|e| DriverError::io(key, e))?;
        Ok(FileInfo {
            size: if md.is_dir() { 0 } else { md.len() },
            is_dir: md.is_dir(),
            modified: md.modified().ok(),
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, DriverError> {
        let path = self.path(prefix)?;
        let owned = prefix.to_owned();
        blocking(prefix, move || {
            let entries = match fs::read_dir(&path) {
                Ok(e) => e,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    return Ok(Vec::new());
                }
                Err(e) => return Err(e),
            };
            let mut out = Vec::new();
            for entry in entries {
                let name = entry?.file_name();
                if let Some(name) = name.to_str() {
                    out.push(format!("{owned}/{name}"));
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), DriverError> {
        let src = self.path(from)?;
        let dst = self.path(to)?;
        let root = self.root.clone();
        let driver = self.clone();
        blocking(from, move || {
            if !src.exists() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "rename source",
                ));
            }
            let dst_parent = dst.parent().expect("key has a parent").to_owned();
            if dst.is_dir() {
                fs::remove_dir_all(&dst)?;
            }
            in_dir(&dst_parent, Some(&src), || fs::rename(&src, &dst))?;
            sync_dir(&dst_parent)?;
            let src_parent = src.parent().expect("key has a parent");
            if src_parent != dst_parent && src_parent.exists() {
                // A concurrent delete may have pruned it since: then there is nothing to sync.
                match sync_dir(src_parent) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    other => other?,
                }
                driver.prune_empty(src_parent);
            }
            debug_assert!(dst.starts_with(&root));
            Ok(())
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), DriverError> {
        let path = self.path(key)?;
        let driver = self.clone();
        blocking(key, move || {
            let md = fs::symlink_metadata(&path)?;
            if md.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
            if let Some(parent) = path.parent() {
                driver.prune_empty(parent);
            }
            Ok(())
        })
        .await
    }
}
