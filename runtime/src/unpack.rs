//! Safe extraction of one OCI layer tar into a directory.
//!
//! Never `tar::Archive::unpack`: every entry's parent directory is opened with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` relative to the destination, so `..`,
//! absolute symlinks and symlinked parent directories all resolve inside it, and the entry itself
//! is created with `*at` calls relative to that directory descriptor, never following a symlink
//! in its last component. Entry names with a `..` component are rejected; absolute names are taken
//! relative to the destination; hard link targets resolve inside the destination too.
//!
//! Layer semantics (OCI image spec, "Image Layer Filesystem Changeset"): regular files, directories
//! (an existing directory is kept and its metadata updated; anything else in the way is removed),
//! hard links, symlinks, character and block devices, fifos; numeric ownership (when running as
//! root), mode bits including setuid/setgid/sticky, mtimes (directories last, after their
//! contents), `SCHILY.xattr.*` extended attributes where the filesystem allows (overlay's own
//! `trusted.overlay.*`/`user.overlay.*` are never taken from a layer). Whiteouts `.wh.NAME` and
//! opaque markers `.wh..wh..opq` become overlay whiteouts (character device 0/0) and the
//! `trusted.overlay.opaque=y` xattr in [`Whiteouts::Overlay`] mode (the destination is an overlay
//! lower dir), or are applied, deleting what lower layers put there, in [`Whiteouts::Apply`] mode
//! (the destination is a merged tree). Either way they only hide what lower layers hold: paths the
//! same layer creates are kept.
//!
//! Bounded: the tar stream (after decompression) may not exceed [`UnpackOptions::max_size`]; an
//! entry whose header claims more than what is left of the limit is refused before anything is
//! written.

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use hoist_oci::compression::{Compression, sniff_reader};
use hoist_oci::{Digest, Digester};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags, makedev};
use rustix::io::Errno;

use crate::rootfs::{OPAQUE_MARKER, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};

/// The default bound on a layer's uncompressed size: 64 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 64 << 30;

/// What to do with OCI whiteouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Whiteouts {
    /// The destination is an overlay lower dir: `.wh.NAME` becomes a character device 0/0 named
    /// NAME, `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory.
    #[default]
    Overlay,
    /// The destination is a merged tree holding the lower layers: `.wh.NAME` deletes NAME,
    /// `.wh..wh..opq` deletes what lower layers put in its directory.
    Apply,
    /// The tar is a plain tree, not a layer (`hoist cp`): `.wh.` names are files like any.
    Keep,
}

/// Options for [`unpack_layer`].
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    pub whiteouts: Whiteouts,
    /// The most bytes of (uncompressed) tar stream read.
    pub max_size: u64,
    /// Set numeric owners from the layer (needs CAP_CHOWN); otherwise files belong to the caller.
    pub chown: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            whiteouts: Whiteouts::Overlay,
            max_size: DEFAULT_MAX_SIZE,
            chown: rustix::process::geteuid().is_root(),
        }
    }
}

/// What [`unpack_layer`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    /// The sha256 of the whole tar stream read (the layer's diff_id when the stream is the
    /// uncompressed layer).
    pub diff_id: Digest,
    /// Bytes of tar stream read.
    pub size: u64,
    /// Tar entries processed (PAX and GNU extension headers not counted).
    pub entries: u64,
}

/// What went wrong unpacking a layer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {entry:?}: {reason}")]
    Entry { entry: String, reason: String },
    #[error("layer entry {entry:?}: {source}")]
    EntryIo {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("layer entry {entry:?}: the layer is larger than the limit of {limit} bytes")]
    TooLarge { entry: String, limit: u64 },
    #[error("reading the layer after entry {after:?}: {source}")]
    Read {
        after: String,
        #[source]
        source: io::Error,
    },
    #[error("{}: {source}", path.display())]
    Dest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = UnpackError> = std::result::Result<T, E>;

/// A reader of the uncompressed bytes of a layer blob: gzip (one or several members), zstd or a
/// plain tar, told apart by their first bytes.
pub fn decompress<'a, R: Read + Send + 'a>(r: R) -> io::Result<Box<dyn Read + Send + 'a>> {
    let mut r = BufReader::with_capacity(256 * 1024, r);
    Ok(match sniff_reader(&mut r)? {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        Compression::None => Box::new(r),
    })
}

/// Counts and hashes the tar stream, failing past the limit.
struct Bounded<R> {
    inner: R,
    digester: Digester,
    limit: u64,
    exceeded: Rc<Cell<bool>>,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.limit - self.digester.len();
        if left == 0 {
            // Only an error if there is more.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.exceeded.set(true);
                    Err(io::Error::other("layer size limit exceeded"))
                }
            };
        }
        let max = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.digester.update(&buf[..n]);
        self.read.set(self.digester.len());
        Ok(n)
    }
}

/// Unpacks the (uncompressed) layer tar `reader` into the directory `dest`. Nothing is written
/// outside `dest`; a malicious entry is contained or refused with an error naming it.
pub fn unpack_layer(reader: impl Read, dest: &Path, opts: &UnpackOptions) -> Result<UnpackStats> {
    let root = rustix::fs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::Dest {
        path: dest.to_owned(),
        source: e.into(),
    })?;
    unpack_layer_at(reader, root, opts)
}

/// [`unpack_layer`] into the directory `root` (a descriptor the caller opened inside its own
/// confined tree, e.g. [`crate::confined::Root::create_dir_all`]).
pub fn unpack_layer_at(
    reader: impl Read,
    root: OwnedFd,
    opts: &UnpackOptions,
) -> Result<UnpackStats> {
    let exceeded = Rc::new(Cell::new(false));
    let read = Rc::new(Cell::new(0));
    let bounded = Bounded {
        inner: reader,
        digester: Digester::sha256(),
        limit: opts.max_size,
        exceeded: exceeded.clone(),
        read: read.clone(),
    };
    let mut u = Unpacker {
        root,
        opts,
        created: HashSet::new(),
        touched: HashSet::new(),
        dirs: Vec::new(),
        cache: None,
    };
    let mut archive = tar::Archive::new(bounded);
    let mut entries_n = 0u64;
    let mut last = String::new();
    let too_large = |entry: &str| UnpackError::TooLarge {
        entry: entry.to_owned(),
        limit: opts.max_size,
    };
    {
        let entries = archive.entries().map_err(|e| UnpackError::Read {
            after: String::new(),
            source: e,
        })?;
        for entry in entries {
            let mut entry = entry.map_err(|e| {
                if exceeded.get() {
                    too_large(&last)
                } else {
                    UnpackError::Read {
                        after: last.clone(),
                        source: e,
                    }
                }
            })?;
            let raw = entry.path_bytes().into_owned();
            last = String::from_utf8_lossy(&raw).into_owned();
            entries_n += 1;
            let size = entry.size();
            if size > opts.max_size.saturating_sub(read.get()) {
                return Err(too_large(&last));
            }
            u.entry(&mut entry, &raw, &last).map_err(|e| match e {
                _ if exceeded.get() => too_large(&last),
                e => e,
            })?;
        }
    }
    u.finish_dirs();
    // What follows the end-of-archive blocks is part of the stream, so of the diff_id.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| {
        if exceeded.get() {
            too_large(&last)
        } else {
            UnpackError::Read {
                after: last.clone(),
                source: e,
            }
        }
    })?;
    let size = rest.digester.len();
    Ok(UnpackStats {
        diff_id: rest.digester.finish(),
        size,
        entries: entries_n,
    })
}

struct Unpacker<'a> {
    root: OwnedFd,
    opts: &'a UnpackOptions,
    /// Paths (relative, `/`-joined) this layer created.
    created: HashSet<Vec<u8>>,
    /// Those and all their ancestors.
    touched: HashSet<Vec<u8>>,
    /// Directories whose mode and times are set once everything is written.
    dirs: Vec<(Vec<u8>, u32, i64)>,
    /// The last parent directory resolved.
    cache: Option<(Vec<u8>, OwnedFd)>,
}

/// The metadata of one entry, PAX records applied.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn errno(e: Errno) -> io::Error {
    e.into()
}

/// The components of an entry name: `/`, `.` and empty components dropped; `..` refused.
fn components(name: &[u8]) -> std::result::Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    for c in name.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("the path has a \"..\" component".to_owned()),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

pub(crate) use crate::confined::remove_all_at;
use crate::confined::{DIR_FLAGS, in_root as resolve_flags, list};

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>, raw: &[u8], name: &str) -> Result<()> {
        let bad = |reason: String| UnpackError::Entry {
            entry: name.to_owned(),
            reason,
        };
        let io_err = |source: io::Error| UnpackError::EntryIo {
            entry: name.to_owned(),
            source,
        };
        let kind = e.header().entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            // Global PAX records (`git archive` writes a commit id there): nothing to create.
            return Ok(());
        }
        let comps = components(raw).map_err(bad)?;
        let Some((base, parent_comps)) = comps.split_last() else {
            // The root itself ("./"): its metadata is the destination's, not the layer's.
            return Ok(());
        };
        let meta = self.meta(e).map_err(io_err)?;
        let rel = join(&comps);

        // Whiteouts.
        if let Some(target) = base
            .strip_prefix(WHITEOUT_PREFIX.as_bytes())
            .filter(|_| self.opts.whiteouts != Whiteouts::Keep)
        {
            let parent = self.parent(parent_comps, name)?;
            if *base == OPAQUE_MARKER.as_bytes() {
                return self.opaque(&parent, parent_comps).map_err(io_err);
            }
            if target.is_empty() || target == b"." || target == b".." || target.contains(&b'/') {
                return Err(bad(format!(
                    "whiteout names an invalid path {:?}",
                    String::from_utf8_lossy(target)
                )));
            }
            let mut hidden = join(parent_comps);
            if !hidden.is_empty() {
                hidden.push(b'/');
            }
            hidden.extend_from_slice(target);
            if self.touched.contains(&hidden) {
                // The same layer created it: a whiteout hides only what lower layers hold.
                return Ok(());
            }
            return self.whiteout(&parent, target, &meta).map_err(io_err);
        }

        let parent = self.parent(parent_comps, name)?;
        let base = *base;
        let is_dir = kind == tar::EntryType::Directory;
        // Whatever is in the way goes, unless a directory meets a directory.
        match rustix::fs::statat(&parent, os(base), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let existing_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                if !(is_dir && existing_dir) {
                    self.remove(&parent, base).map_err(io_err)?;
                }
            }
            Err(Errno::NOENT) => {}
            Err(err) => return Err(io_err(errno(err))),
        }
        let mode = Mode::from_raw_mode(meta.mode & 0o7777);
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = rustix::fs::openat(
                    &parent,
                    os(base),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| io_err(errno(e)))?;
                let mut f = std::fs::File::from(fd);
                copy_data(e, &mut f).map_err(io_err)?;
                self.owner_mode_fd(&f, &meta, true).map_err(io_err)?;
                set_xattrs_fd(&f, &meta.xattrs);
                rustix::fs::futimens(&f, &times(meta.mtime)).map_err(|e| io_err(errno(e)))?;
            }
            tar::EntryType::Directory => {
                match rustix::fs::mkdirat(&parent, os(base), Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(err) => return Err(io_err(errno(err))),
                }
                let fd = rustix::fs::openat(&parent, os(base), DIR_FLAGS, Mode::empty())
                    .map_err(|e| io_err(errno(e)))?;
                self.owner_mode_fd(&fd, &meta, false).map_err(io_err)?;
                set_xattrs_fd(&fd, &meta.xattrs);
                self.dirs
                    .push((rel.clone(), meta.mode & 0o7777, meta.mtime));
            }
            tar::EntryType::Symlink => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| bad("a symlink without a target".to_owned()))?;
                if target.is_empty() {
                    return Err(bad("a symlink with an empty target".to_owned()));
                }
                rustix::fs::symlinkat(os(&target), &parent, os(base))
                    .map_err(|e| io_err(errno(e)))?;
                self.owner_at(&parent, base, &meta).map_err(io_err)?;
                rustix::fs::utimensat(
                    &parent,
                    os(base),
                    &times(meta.mtime),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| io_err(errno(e)))?;
            }
            tar::EntryType::Link => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| bad("a hard link without a target".to_owned()))?
                    .into_owned();
                let tcomps =
                    components(&target).map_err(|r| bad(format!("hard link target: {r}")))?;
                let Some((tbase, tparent)) = tcomps.split_last() else {
                    return Err(bad("a hard link to the root directory".to_owned()));
                };
                let tdir = self.resolve_existing(tparent).map_err(|err| {
                    bad(format!(
                        "hard link target {:?}: {err}",
                        String::from_utf8_lossy(&target)
                    ))
                })?;
                rustix::fs::linkat(&tdir, os(tbase), &parent, os(base), AtFlags::empty()).map_err(
                    |err| {
                        bad(format!(
                            "hard link to {:?}: {}",
                            String::from_utf8_lossy(&target),
                            errno(err)
                        ))
                    },
                )?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (ft, dev) = match kind {
                    tar::EntryType::Fifo => (FileType::Fifo, 0),
                    _ => {
                        let h = e.header();
                        let maj = h.device_major().map_err(io_err)?.unwrap_or(0);
                        let min = h.device_minor().map_err(io_err)?.unwrap_or(0);
                        let ft = if kind == tar::EntryType::Char {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (ft, makedev(maj, min))
                    }
                };
                rustix::fs::mknodat(&parent, os(base), ft, mode, dev)
                    .map_err(|e| io_err(errno(e)))?;
                self.owner_at(&parent, base, &meta).map_err(io_err)?;
                // mknod applied the umask (and chown cleared setuid/setgid).
                rustix::fs::chmodat(&parent, os(base), mode, AtFlags::empty())
                    .map_err(|e| io_err(errno(e)))?;
                rustix::fs::utimensat(
                    &parent,
                    os(base),
                    &times(meta.mtime),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| io_err(errno(e)))?;
            }
            other => {
                return Err(bad(format!("unsupported entry type {other:?}")));
            }
        }
        self.note_created(rel);
        Ok(())
    }

    fn note_created(&mut self, rel: Vec<u8>) {
        let mut p = rel.as_slice();
        while let Some(i) = p.iter().rposition(|b| *b == b'/') {
            p = &p[..i];
            if !self.touched.insert(p.to_vec()) {
                break;
            }
        }
        self.touched.insert(rel.clone());
        self.created.insert(rel);
    }

    /// PAX records over the header: uid, gid, mtime, xattrs.
    fn meta<R: Read>(&self, e: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
        let h = e.header();
        let old = h.as_old();
        // A blank numeric field is zero (some writers leave ids of root blank).
        let blank = |f: &[u8]| f.iter().all(|b| *b == 0 || *b == b' ');
        let mut m = Meta {
            mode: if blank(&old.mode) { 0 } else { h.mode()? },
            uid: if blank(&old.uid) { 0 } else { h.uid()? },
            gid: if blank(&old.gid) { 0 } else { h.gid()? },
            mtime: if blank(&old.mtime) {
                0
            } else {
                i64::try_from(h.mtime()?).unwrap_or(i64::MAX)
            },
            xattrs: Vec::new(),
        };
        if let Some(pax) = e.pax_extensions()? {
            for rec in pax {
                let rec = rec?;
                let Ok(key) = rec.key() else { continue };
                let value = rec.value_bytes();
                let num = || std::str::from_utf8(value).ok();
                match key {
                    "uid" => m.uid = num().and_then(|v| v.parse().ok()).unwrap_or(m.uid),
                    "gid" => m.gid = num().and_then(|v| v.parse().ok()).unwrap_or(m.gid),
                    "mtime" => {
                        if let Some(secs) = num()
                            .and_then(|v| v.split('.').next())
                            .and_then(|v| v.parse().ok())
                        {
                            m.mtime = secs;
                        }
                    }
                    k => {
                        if let Some(x) = k.strip_prefix("SCHILY.xattr.") {
                            // Overlay's own attributes are the store's to set, never a layer's.
                            if !x.starts_with("trusted.overlay.") && !x.starts_with("user.overlay.")
                            {
                                m.xattrs.push((x.as_bytes().to_vec(), value.to_vec()));
                            }
                        }
                    }
                }
            }
        }
        Ok(m)
    }

    fn owner_mode_fd(&self, fd: impl AsFd, m: &Meta, chmod_now: bool) -> io::Result<()> {
        if self.opts.chown {
            let uid = u32::try_from(m.uid).map_err(|_| io::Error::other("uid out of range"))?;
            let gid = u32::try_from(m.gid).map_err(|_| io::Error::other("gid out of range"))?;
            rustix::fs::fchown(
                &fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )?;
        }
        if chmod_now {
            // After chown, which clears setuid/setgid.
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(m.mode & 0o7777))?;
        }
        Ok(())
    }

    /// Ownership of a symlink, device or fifo, not following it.
    fn owner_at(&self, parent: &OwnedFd, base: &[u8], m: &Meta) -> io::Result<()> {
        if !self.opts.chown {
            return Ok(());
        }
        let uid = u32::try_from(m.uid).map_err(|_| io::Error::other("uid out of range"))?;
        let gid = u32::try_from(m.gid).map_err(|_| io::Error::other("gid out of range"))?;
        rustix::fs::chownat(
            parent,
            os(base),
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }

    /// Opens the parent directory `comps` inside the root, creating missing directories.
    fn parent(&mut self, comps: &[&[u8]], name: &str) -> Result<OwnedFd> {
        let key = join(comps);
        if let Some((k, fd)) = &self.cache
            && *k == key
        {
            return rustix::io::dup(fd).map_err(|e| UnpackError::EntryIo {
                entry: name.to_owned(),
                source: e.into(),
            });
        }
        let fd = self
            .open_or_create(comps)
            .map_err(|e| UnpackError::EntryIo {
                entry: name.to_owned(),
                source: e,
            })?;
        let dup = rustix::io::dup(&fd).map_err(|e| UnpackError::EntryIo {
            entry: name.to_owned(),
            source: e.into(),
        })?;
        self.cache = Some((key, fd));
        Ok(dup)
    }

    fn open_or_create(&mut self, comps: &[&[u8]]) -> io::Result<OwnedFd> {
        if comps.is_empty() {
            return Ok(rustix::io::dup(&self.root)?);
        }
        match rustix::fs::openat2(
            &self.root,
            os(&join(comps)),
            DIR_FLAGS.difference(OFlags::NOFOLLOW),
            Mode::empty(),
            resolve_flags(),
        ) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        // Create what is missing, one component at a time, each resolved inside the root.
        let mut cur = rustix::io::dup(&self.root)?;
        for i in 0..comps.len() {
            let prefix = join(&comps[..=i]);
            match rustix::fs::openat2(
                &self.root,
                os(&prefix),
                DIR_FLAGS.difference(OFlags::NOFOLLOW),
                Mode::empty(),
                resolve_flags(),
            ) {
                Ok(fd) => cur = fd,
                Err(Errno::NOENT) => {
                    match rustix::fs::mkdirat(&cur, os(comps[i]), Mode::from_raw_mode(0o755)) {
                        Ok(()) => {}
                        Err(Errno::EXIST) => {
                            return Err(io::Error::other(format!(
                                "{:?} is a dangling symlink",
                                String::from_utf8_lossy(&prefix)
                            )));
                        }
                        Err(e) => return Err(e.into()),
                    }
                    // mkdirat applied the umask.
                    cur = rustix::fs::openat(&cur, os(comps[i]), DIR_FLAGS, Mode::empty())?;
                    rustix::fs::fchmod(&cur, Mode::from_raw_mode(0o755))?;
                    self.note_created(prefix);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(cur)
    }

    /// Opens an existing directory inside the root (for hard link targets).
    fn resolve_existing(&self, comps: &[&[u8]]) -> io::Result<OwnedFd> {
        if comps.is_empty() {
            return Ok(rustix::io::dup(&self.root)?);
        }
        Ok(rustix::fs::openat2(
            &self.root,
            os(&join(comps)),
            DIR_FLAGS.difference(OFlags::NOFOLLOW),
            Mode::empty(),
            resolve_flags(),
        )?)
    }

    /// Removes `name` in `dir` (recursively for a directory). The parent cache is dropped: a
    /// removed directory may have been on its path.
    fn remove(&mut self, dir: &OwnedFd, name: &[u8]) -> io::Result<()> {
        self.cache = None;
        remove_all_at(dir, name)
    }

    fn whiteout(&mut self, parent: &OwnedFd, target: &[u8], meta: &Meta) -> io::Result<()> {
        match self.opts.whiteouts {
            Whiteouts::Keep => Ok(()),
            Whiteouts::Apply => match self.remove(parent, target) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r,
            },
            Whiteouts::Overlay => {
                match self.remove(parent, target) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    r => r?,
                }
                rustix::fs::mknodat(
                    parent,
                    os(target),
                    FileType::CharacterDevice,
                    Mode::empty(),
                    makedev(0, 0),
                )?;
                // The whiteout keeps the entry's owner and time, so the tree writes back to
                // the same layer.
                self.owner_at(parent, target, meta)?;
                rustix::fs::utimensat(
                    parent,
                    os(target),
                    &times(meta.mtime),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
                Ok(())
            }
        }
    }

    fn opaque(&mut self, parent: &OwnedFd, parent_comps: &[&[u8]]) -> io::Result<()> {
        match self.opts.whiteouts {
            Whiteouts::Keep => Ok(()),
            Whiteouts::Overlay => {
                rustix::fs::fsetxattr(parent, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())?;
                Ok(())
            }
            Whiteouts::Apply => {
                self.cache = None;
                clear_lower(parent, &join(parent_comps), &self.touched)
            }
        }
    }

    /// Sets directory modes and times, deepest first, now that their contents are written.
    fn finish_dirs(&mut self) {
        let dirs = std::mem::take(&mut self.dirs);
        for (rel, mode, mtime) in dirs.into_iter().rev() {
            let Ok(fd) = rustix::fs::openat2(
                &self.root,
                os(&rel),
                DIR_FLAGS,
                Mode::empty(),
                resolve_flags(),
            ) else {
                continue;
            };
            let _ = rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode));
            let _ = rustix::fs::futimens(&fd, &times(mtime));
        }
    }
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn copy_data<R: Read>(e: &mut tar::Entry<'_, R>, f: &mut std::fs::File) -> io::Result<()> {
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = match e.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        f.write_all(&buf[..n])?;
    }
}

/// Extended attributes where the filesystem allows them; a refusal is not an error.
fn set_xattrs_fd(fd: impl AsFd, xattrs: &[(Vec<u8>, Vec<u8>)]) {
    for (k, v) in xattrs {
        if let Err(e) = rustix::fs::fsetxattr(&fd, os(k), v, XattrFlags::empty()) {
            tracing::debug!("xattr {} not set: {e}", String::from_utf8_lossy(k));
        }
    }
}

/// In a merged tree, removes what lower layers put under `dir` (relative path `rel`): every
/// entry this layer did not create, keeping the directories on the way to what it did create.
fn clear_lower(dir: &OwnedFd, rel: &[u8], touched: &HashSet<Vec<u8>>) -> io::Result<()> {
    for child in list(dir)? {
        let mut crel = rel.to_vec();
        if !crel.is_empty() {
            crel.push(b'/');
        }
        crel.extend_from_slice(&child);
        if !touched.contains(&crel) {
            remove_all_at(dir, &child)?;
            continue;
        }
        let st = rustix::fs::statat(dir, os(&child), AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let sub = rustix::fs::openat(dir, os(&child), DIR_FLAGS, Mode::empty())?;
            clear_lower(&sub, &crel, touched)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_split_and_dotdot_refused() {
        assert_eq!(
            components(b"./a//b/./c/").unwrap(),
            vec![&b"a"[..], b"b", b"c"]
        );
        assert_eq!(
            components(b"/etc/passwd").unwrap(),
            vec![&b"etc"[..], b"passwd"]
        );
        assert!(components(b"a/../../x").is_err());
        assert!(components(b"./").unwrap().is_empty());
    }
}
