//! The filesystem driver: a key is a file under the root.
//!
//! Small keys are written to `.tmp/` beside the tree, fsynced, and renamed into place, then the
//! directory is fsynced. Writers buffer up to [`WRITE_BUF`] and write from the blocking pool, so a
//! multi-gigabyte stream costs two buffers of memory, and a stalled one none and no thread.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncSeekExt;

use super::{
    BoxReader, ByteStream, DriverError, DriverWriter, FileInfo, StorageDriver, validate_key,
};

/// How much a writer gathers before one write to the file.
const WRITE_BUF: usize = 1 << 20;
/// The writing thread flushes to disk every this many bytes.
const SYNC_EVERY: u64 = 16 << 20;
/// Chunk size of streamed reads.
const READ_CHUNK: usize = 512 * 1024;
/// An immutable key's range at least this long is streamed from a mapping (see
/// [`super::mapped`]); shorter ones are read, which costs less than a mapping.
const MAP_MIN: u64 = 1 << 20;
/// The chunks a mapped range is streamed in (slices of one mapping: no copy, no allocation).
const MAP_CHUNK: usize = 8 << 20;
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

/// Opens `path` for reading and its size, refusing an `offset` past the end (`InvalidInput`,
/// which [`invalid_offset`] maps).
fn open_at_most(path: &Path, offset: u64) -> std::io::Result<(File, u64)> {
    let f = File::open(path)?;
    let size = f.metadata()?.len();
    if offset > size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("offset {offset} past the end ({size} bytes)"),
        ));
    }
    Ok((f, size))
}

/// Streams `len` bytes (to the end when `None`) of `f` from where it is positioned: one chunk is
/// read ahead on the blocking pool while the consumer takes the last; a consumer that stops
/// reading holds no thread.
fn read_ahead(f: File, len: Option<u64>) -> ByteStream {
    let want = |remaining: Option<u64>| {
        remaining.map_or(READ_CHUNK, |n| n.min(READ_CHUNK as u64) as usize)
    };
    let next = (want(len) > 0).then(|| read_chunk(f, want(len)));
    Box::pin(futures::stream::unfold(
        (next, len),
        move |(next, remaining)| async move {
            let (f, item) = match next?.await {
                Ok(done) => done,
                Err(e) => return Some((Err(std::io::Error::other(e)), (None, remaining))),
            };
            match item {
                Ok(chunk) if chunk.is_empty() => remaining
                    .filter(|n| *n > 0)
                    .map(|n| (Err(super::missing(n)), (None, remaining))),
                Ok(chunk) => {
                    let remaining = remaining.map(|n| n - chunk.len() as u64);
                    let next = (want(remaining) > 0).then(|| read_chunk(f, want(remaining)));
                    Some((Ok(chunk), (next, remaining)))
                }
                Err(e) => Some((Err(e), (None, remaining))),
            }
        },
    ))
}

/// Reads up to `want` bytes of `f` on the blocking pool; gives the file back.
fn read_chunk(mut f: File, want: usize) -> tokio::task::JoinHandle<(File, std::io::Result<Bytes>)> {
    tokio::task::spawn_blocking(move || {
        let mut buf = BytesMut::zeroed(want);
        loop {
            match f.read(&mut buf) {
                Ok(k) => {
                    buf.truncate(k);
                    return (f, Ok(buf.freeze()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return (f, Err(e)),
            }
        }
    })
}

/// A writer keeps at most one buffer's write in flight on the blocking pool while the next
/// buffer fills, so receiving and hashing overlap with writing. Between writes it holds no
/// thread, so a slow or stalled upload costs a file descriptor and at most one buffer.
struct FsWriter {
    key: String,
    path: PathBuf,
    /// The file, while no write is in flight.
    file: Option<File>,
    /// The write in flight; it gives the file back with the bytes not yet flushed to disk.
    pending: Option<tokio::task::JoinHandle<std::io::Result<(File, u64)>>>,
    /// Bytes written since the last `sync_data`.
    unsynced: u64,
    buf: BytesMut,
    size: u64,
}

impl FsWriter {
    fn start(key: &str, path: PathBuf, file: File, offset: u64) -> Self {
        FsWriter {
            key: key.to_owned(),
            path,
            file: Some(file),
            pending: None,
            unsynced: 0,
            buf: BytesMut::new(),
            size: offset,
        }
    }

    /// Waits for the write in flight, if any, and takes the file back.
    async fn wait(&mut self) -> Result<(), DriverError> {
        if let Some(write) = self.pending.take() {
            let (file, unsynced) = write
                .await
                .map_err(|e| DriverError::io(&self.key, std::io::Error::other(e)))?
                .map_err(|e| DriverError::io(&self.key, e))?;
            self.file = Some(file);
            self.unsynced = unsynced;
        }
        Ok(())
    }

    /// Starts writing `data` once the previous write is done. Every [`SYNC_EVERY`] bytes the
    /// write also flushes to disk, so the final fsync has little left to do.
    async fn send(&mut self, data: Bytes) -> Result<(), DriverError> {
        self.wait().await?;
        let mut file = self.file.take().expect("writer used after commit");
        let mut unsynced = self.unsynced + data.len() as u64;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            file.write_all(&data)?;
            if unsynced >= SYNC_EVERY {
                file.sync_data()?;
                unsynced = 0;
            }
            Ok((file, unsynced))
        }));
        Ok(())
    }

    async fn flush_buf(&mut self) -> Result<(), DriverError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = self.buf.split().freeze();
        self.send(data).await
    }

    /// Waits for everything given to be written and returns the file.
    async fn stop(&mut self) -> Result<File, DriverError> {
        self.wait().await?;
        Ok(self.file.take().expect("writer used after commit"))
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

    async fn flush(&mut self) -> Result<(), DriverError> {
        self.flush_buf().await?;
        self.wait().await?;
        self.buf = BytesMut::new();
        Ok(())
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
            let (mut f, _) = open_at_most(&path, offset)?;
            f.seek(SeekFrom::Start(offset))?;
            Ok(f)
        })
        .await
        .map_err(|e| invalid_offset(e, key, offset))?;
        Ok(read_ahead(file, len))
    }

    async fn stream_immutable(
        &self,
        key: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, DriverError> {
        let path = self.path(key)?;
        // The mapping and the range's length, or (a short range) the file, positioned.
        let mapped = blocking(key, move || {
            let (mut f, size) = open_at_most(&path, offset)?;
            let want = len.unwrap_or(size - offset);
            if want < MAP_MIN {
                f.seek(SeekFrom::Start(offset))?;
                return Ok(Err(f));
            }
            // Start reading the range into the page cache now, so a cold blob's sends wait less.
            let _ = rustix::fs::fadvise(
                &f,
                offset,
                std::num::NonZeroU64::new(want),
                rustix::fs::Advice::WillNeed,
            );
            Ok(Ok((super::mapped::map(f, size)?, want)))
        })
        .await
        .map_err(|e| invalid_offset(e, key, offset))?;
        // A short range is read from the file already open, as `stream` reads.
        let (bytes, want) = match mapped {
            Ok(mapped) => mapped,
            Err(f) => return Ok(read_ahead(f, len)),
        };
        let start = offset as usize;
        let end = (offset + want).min(bytes.len() as u64) as usize;
        let short = want - (end - start) as u64;
        let chunks = (start..end)
            .step_by(MAP_CHUNK)
            .map(move |at| Ok(bytes.slice(at..end.min(at + MAP_CHUNK))))
            .chain((short > 0).then(|| Err(super::missing(short))));
        Ok(Box::pin(futures::stream::iter(chunks)))
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
