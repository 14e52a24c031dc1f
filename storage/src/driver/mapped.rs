//! Immutable files handed out as memory-mapped [`Bytes`], which a socket writer can recognise
//! and send with `sendfile(2)` instead of copying them.
//!
//! A mapping is registered while it lives: [`find`] takes an address a writer was given and
//! answers with the file and offset behind it, so the HTTP server's plain-TCP writer sends those
//! bytes from the page cache straight to the socket, without a copy through user space. Anything
//! else that reads such `Bytes` (TLS, a test) reads the mapped file, which is the same bytes,
//! so a writer that does not know of mappings is still correct, only slower.
//!
//! Only content-addressed keys are mapped: hoist replaces such a file only by renaming a new
//! one over it and never truncates it in place, so a mapping's pages stay valid until it is
//! dropped (a file truncated under a mapping by someone else would fault a reader).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;

/// The live mappings by start address: the file and the mapping's length.
static LIVE: RwLock<BTreeMap<usize, (Arc<File>, usize)>> = RwLock::new(BTreeMap::new());
/// How many mappings are live; [`find`] answers `None` without a lock when there are none.
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// One read-only shared mapping of a whole file, unmapped on drop.
struct Mapping {
    addr: usize,
    len: usize,
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        #[allow(unsafe_code)]
        // SAFETY: `addr..addr + len` is a live PROT_READ mapping owned by `self` (unmapped only
        // in drop), and the file behind it is never written in place (module docs).
        unsafe {
            std::slice::from_raw_parts(self.addr as *const u8, self.len)
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        LIVE.write().remove(&self.addr);
        COUNT.fetch_sub(1, Ordering::Release);
        #[allow(unsafe_code)]
        // SAFETY: the mapping was made by `map` with this address and length, and no `Bytes`
        // refers to it any more (this owner is dropped with the last one).
        unsafe {
            let _ = rustix::mm::munmap(self.addr as *mut std::ffi::c_void, self.len);
        }
    }
}

/// Maps all of `file` (`len` bytes, non-zero) read-only and registers the mapping.
pub fn map(file: File, len: u64) -> std::io::Result<Bytes> {
    let size = usize::try_from(len)
        .map_err(|_| std::io::Error::other(format!("a file of {len} bytes cannot be mapped")))?;
    if size == 0 {
        return Ok(Bytes::new());
    }
    #[allow(unsafe_code)]
    // SAFETY: a fresh shared read-only mapping chosen by the kernel (a null hint), of a file
    // this process keeps open; nothing else in the process refers to that address range.
    let addr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            size,
            rustix::mm::ProtFlags::READ,
            rustix::mm::MapFlags::SHARED,
            file.as_fd(),
            0,
        )
    }?;
    let addr = addr as usize;
    COUNT.fetch_add(1, Ordering::Release);
    LIVE.write().insert(addr, (Arc::new(file), size));
    Ok(Bytes::from_owner(Mapping { addr, len: size }))
}

/// The mapped file behind the bytes at `ptr`, if they belong to a live mapping: the file, the
/// offset of `ptr` in it, and how many bytes of the mapping follow `ptr`.
pub fn find(ptr: *const u8) -> Option<Region> {
    if COUNT.load(Ordering::Acquire) == 0 {
        return None;
    }
    let at = ptr as usize;
    let live = LIVE.read();
    let (&start, (file, len)) = live.range(..=at).next_back()?;
    let offset = at - start;
    (offset < *len).then(|| Region {
        file: file.clone(),
        offset: offset as u64,
        remaining: len - offset,
    })
}

/// Where some mapped bytes come from (see [`find`]).
#[derive(Debug, Clone)]
pub struct Region {
    file: Arc<File>,
    /// The offset in the file.
    pub offset: u64,
    /// Bytes of the mapping from `offset` on.
    pub remaining: usize,
}

impl Region {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn mapped_bytes_read_as_the_file_and_are_found_while_they_live() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3 * 4096 + 17).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let bytes = map(f, data.len() as u64).unwrap();
        assert_eq!(&bytes[..], &data[..]);
        let tail = bytes.slice(5000..);
        let region = find(tail.as_ptr()).expect("a slice of a mapping is found");
        assert_eq!(region.offset, 5000);
        assert_eq!(region.remaining, data.len() - 5000);
        let other = [0u8; 64];
        assert!(find(other.as_ptr()).is_none());
        let ptr = tail.as_ptr();
        drop(bytes);
        assert!(find(ptr).is_some(), "a slice keeps the mapping");
        drop(tail);
        // Another test's mapping may take the address once it is free, never this file's.
        let ours = |r: Region| Arc::ptr_eq(&r.file, &region.file);
        assert!(!find(ptr).is_some_and(ours), "the last drop unregisters it");
    }
}
