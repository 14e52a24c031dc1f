//! Storage drivers: a small key/blob interface the content layer is built on.
//!
//! Keys are `/`-separated relative paths (`blobs/sha256/ab/<hex>/data`). A driver knows nothing
//! of digests, repositories or manifests; the content layer builds every key in
//! [`crate::content::paths`].
//!
//! **Durability contract:** `put_content`, `DriverWriter::commit` and `rename` return only once
//! the bytes (and, for `rename`, the new name) survive a crash. `rename` is atomic: readers see
//! the old key or the new one, never a partial file.

mod fs;
pub mod mapped;
mod memory;
mod object;
pub mod testsuite;

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt};

pub use fs::FsDriver;
pub use memory::MemoryDriver;
pub use object::{
    COPY_LIMIT, FLUSH_MIN, ObjectBackend, ObjectDriver, ObjectWriter, PART_SIZE, REDIRECT_EXPIRY,
    S3Config,
};

/// A boxed reader a driver hands out.
pub type BoxReader = Pin<Box<dyn AsyncRead + Send>>;

/// A stream of chunks a driver hands out.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// The chunk size of the default [`StorageDriver::stream`].
pub const STREAM_CHUNK: usize = 256 * 1024;

/// What went wrong in a driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("key not found: {0}")]
    NotFound(String),
    #[error("invalid key {0:?}")]
    InvalidKey(String),
    #[error("invalid offset {offset} for {key} of {size} bytes")]
    InvalidOffset { key: String, offset: u64, size: u64 },
    #[error("storage i/o on {key}: {source}")]
    Io {
        key: String,
        #[source]
        source: std::io::Error,
    },
}

impl DriverError {
    pub fn io(key: &str, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            DriverError::NotFound(key.to_owned())
        } else {
            DriverError::Io {
                key: key.to_owned(),
                source,
            }
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, DriverError::NotFound(_))
    }
}

/// What `stat` knows of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    pub size: u64,
    pub is_dir: bool,
    /// Last modification, where the backend knows it.
    pub modified: Option<std::time::SystemTime>,
}

/// A streaming writer for one key. Nothing is guaranteed durable until `commit`.
#[async_trait]
pub trait DriverWriter: Send {
    /// Appends bytes.
    async fn write(&mut self, data: Bytes) -> Result<(), DriverError>;
    /// Bytes in the key so far (the starting offset plus what was written).
    fn size(&self) -> u64;
    /// Hands what is buffered to the backend and releases the buffer: called when the source
    /// has nothing ready, so a stalled upload holds no buffered bytes.
    async fn flush(&mut self) -> Result<(), DriverError> {
        Ok(())
    }
    /// Makes everything written durable.
    async fn commit(self: Box<Self>) -> Result<(), DriverError>;
    /// Abandons the writer and removes the key.
    async fn cancel(self: Box<Self>) -> Result<(), DriverError>;
}

/// The key/blob interface every backend implements. One shared test suite
/// ([`testsuite::run_all`]) checks every driver.
#[async_trait]
pub trait StorageDriver: Send + Sync + 'static {
    /// A short name for logs (`fs`, `memory`, `object`).
    fn name(&self) -> &'static str;
    /// Reads a whole small key (manifests, small metadata).
    async fn get_content(&self, key: &str) -> Result<Bytes, DriverError>;
    /// Writes a whole small key atomically and durably.
    async fn put_content(&self, key: &str, data: Bytes) -> Result<(), DriverError>;
    /// Streams a key from `offset`.
    async fn reader(&self, key: &str, offset: u64) -> Result<BoxReader, DriverError>;
    /// Streams `len` bytes of a key (all of it when `None`) from `offset`, in chunks. A key
    /// shorter than asked for ends the stream with an `UnexpectedEof` error.
    async fn stream(
        &self,
        key: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, DriverError> {
        let reader = self.reader(key, offset).await?;
        let start = Some((reader, len, vec![0u8; STREAM_CHUNK]));
        Ok(Box::pin(futures::stream::unfold(
            start,
            |state| async move {
                let (mut r, remaining, mut buf) = state?;
                let want = remaining.map_or(STREAM_CHUNK, |n| n.min(STREAM_CHUNK as u64) as usize);
                if want == 0 {
                    return None;
                }
                match r.read(&mut buf[..want]).await {
                    Ok(0) => remaining
                        .filter(|n| *n > 0)
                        .map(|n| (Err(missing(n)), None)),
                    Ok(k) => {
                        let chunk = Bytes::copy_from_slice(&buf[..k]);
                        Some((Ok(chunk), Some((r, remaining.map(|n| n - k as u64), buf))))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            },
        )))
    }

    /// As [`stream`](Self::stream), for a key whose bytes never change in place (a
    /// content-addressed blob, replaced only by a rename): a driver may hand out its bytes
    /// [`mapped`], which a plain-TCP server sends with `sendfile`.
    async fn stream_immutable(
        &self,
        key: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, DriverError> {
        self.stream(key, offset, len).await
    }

    /// A writer whose bytes appear at `key` only when it commits, whole and at once (replacing
    /// what was there), and never when it is cancelled or dropped; several may write one key at
    /// a time (the last commit wins). `None` where writers write in place (a filesystem): the
    /// caller then writes elsewhere and renames.
    async fn atomic_writer(
        &self,
        _key: &str,
    ) -> Result<Option<Box<dyn DriverWriter>>, DriverError> {
        Ok(None)
    }

    /// Opens a writer that continues the key at `offset`, dropping anything after it. Offset 0
    /// creates or truncates the key. An offset past the end is an error.
    async fn writer(&self, key: &str, offset: u64) -> Result<Box<dyn DriverWriter>, DriverError>;
    async fn stat(&self, key: &str) -> Result<FileInfo, DriverError>;
    /// The direct children of a prefix, as full keys, sorted. An absent prefix lists nothing.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, DriverError>;
    /// Moves a key (and everything under it) atomically, replacing the destination.
    async fn rename(&self, from: &str, to: &str) -> Result<(), DriverError>;
    /// Removes a key and everything under it. Removing an absent key is `NotFound`.
    async fn delete(&self, key: &str) -> Result<(), DriverError>;
    /// A URL a client may fetch the key from directly, where the backend has one.
    async fn redirect_url(&self, _key: &str) -> Option<String> {
        None
    }
}

/// The error for a key that ended `n` bytes before the caller's range did.
pub(crate) fn missing(n: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        format!("{n} bytes missing at the end"),
    )
}

/// Checks a key: relative, `/`-separated, no empty, `.` or `..` components, printable ASCII.
pub fn validate_key(key: &str) -> Result<(), DriverError> {
    let ok = !key.is_empty()
        && key.len() <= 1024
        && key
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && key.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    if ok {
        Ok(())
    } else {
        Err(DriverError::InvalidKey(key.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        for ok in ["a", "a/b", "some/sha256/ab/abc/data", "_under/x.y"] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "../a", "a/../b", "a/./b", "a b", "a\\b", "é",
        ] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fs_driver_removes_only_stale_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join(".tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(tmp.join("old"), b"crash leftover").unwrap();
        std::fs::write(tmp.join("young"), b"another process writing").unwrap();
        let old = std::time::SystemTime::now() - 2 * fs::STALE_TMP;
        std::fs::File::options()
            .write(true)
            .open(tmp.join("old"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        FsDriver::new(dir.path()).unwrap();
        assert!(!tmp.join("old").exists());
        assert!(tmp.join("young").exists());
    }

    #[tokio::test]
    async fn memory_driver_passes_the_shared_suite() {
        testsuite::run_all(|| async { MemoryDriver::new() }).await;
    }

    #[tokio::test]
    async fn fs_driver_passes_the_shared_suite() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        testsuite::run_all(|| {
            let root = root.clone();
            async move { FsDriver::new(root).unwrap() }
        })
        .await;
        // The suite must have removed every file it wrote, temporary files included.
        fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    files(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut left = Vec::new();
        files(dir.path(), &mut left);
        assert!(left.is_empty(), "fs driver left files behind: {left:?}");
    }
}
