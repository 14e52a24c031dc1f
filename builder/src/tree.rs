//! Every file operation the builder makes on an image or layer tree: reading a snapshot's
//! layers as overlay shows them ([`View`]) and writing a step's upper dir ([`Upper`]), both on
//! [`hoist_runtime::confined`] (the descriptors and `*at`/`openat2` calls the unpacker uses).
//!
//! No path is ever joined onto a layer dir and handed to `std::fs`. Symlinks are resolved by
//! [`View::resolve`] through the merged view, inside the root (an absolute target restarts at the
//! image's root, `..` never climbs above it), as BuildKit resolves paths in a rootfs; the result
//! is then walked component by component with no symlink followed, so a link planted by a base
//! image, an earlier step or an earlier source of the same COPY cannot send a read or a write to
//! the host. `tests/tidy_confined.rs` keeps it that way.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hoist_runtime::confined::{
    DIR_FLAGS, Root, lstat_at, open_dir_beneath, read_link_at, remove_all_at,
};
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid};

const OVERLAY_OPAQUE: &str = "trusted.overlay.opaque";

/// What kind of entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    /// Devices, fifos, sockets.
    Other,
}

/// An entry's `lstat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

impl Meta {
    pub fn of(st: &rustix::fs::Stat) -> Meta {
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => Kind::Dir,
            FileType::RegularFile => Kind::File,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        };
        Meta {
            kind,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec as i64,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    pub fn is_file(&self) -> bool {
        self.kind == Kind::File
    }

    pub fn is_symlink(&self) -> bool {
        self.kind == Kind::Symlink
    }
}

fn is_whiteout(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

fn is_opaque(dir: impl AsFd) -> bool {
    let mut buf = [0u8; 4];
    matches!(rustix::fs::fgetxattr(dir, OVERLAY_OPAQUE, &mut buf), Ok(n) if &buf[..n] == b"y")
}

fn bytes(comps: &[String]) -> Vec<&[u8]> {
    comps.iter().map(|c| c.as_bytes()).collect()
}

/// One entry of a [`View`]: the layer holding it and its path there (no symlink in it).
#[derive(Debug, Clone)]
pub struct Entry {
    pub layer: usize,
    pub path: Vec<String>,
    pub meta: Meta,
}

impl Entry {
    /// The path, `/`-joined, relative to the root.
    pub fn rel(&self) -> String {
        self.path.join("/")
    }
}

enum Probe {
    /// Not in this layer: look below.
    Missing,
    /// Hidden from this layer down (a whiteout, a non-directory parent, an opaque parent).
    Hidden,
    Found(Meta),
}

/// Layer dirs (bottom..top) read as overlay merges them: the topmost entry wins, a whiteout
/// (char 0/0) or an opaque directory hides what is below.
#[derive(Debug, Clone, Default)]
pub struct View {
    layers: Vec<Arc<Root>>,
}

impl View {
    pub fn open(dirs: &[PathBuf]) -> io::Result<View> {
        let layers = dirs
            .iter()
            .map(|d| Root::open(d).map(Arc::new))
            .collect::<io::Result<_>>()?;
        Ok(View { layers })
    }

    /// This view with `top` as a new topmost layer.
    pub fn with_top(&self, top: Arc<Root>) -> View {
        let mut layers = self.layers.clone();
        layers.push(top);
        View { layers }
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    fn probe(root: &Root, comps: &[&[u8]]) -> io::Result<Probe> {
        let mut dir = rustix::io::dup(root.fd())?;
        let mut opaque = false;
        for (i, c) in comps.iter().enumerate() {
            let st = match lstat_at(&dir, c) {
                Ok(st) => st,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(if opaque {
                        Probe::Hidden
                    } else {
                        Probe::Missing
                    });
                }
                Err(e) => return Err(e),
            };
            if is_whiteout(&st) {
                return Ok(Probe::Hidden);
            }
            if i + 1 == comps.len() {
                return Ok(Probe::Found(Meta::of(&st)));
            }
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                // A file (or link) here hides the lower layers' directory.
                return Ok(Probe::Hidden);
            }
            dir = rustix::fs::openat(&dir, OsStr::from_bytes(c), DIR_FLAGS, Mode::empty())?;
            opaque |= is_opaque(&dir);
        }
        let st = rustix::fs::fstat(&dir)?;
        Ok(Probe::Found(Meta::of(&st)))
    }

    /// What the merged tree has at `comps` (a path with no symlink in it: each component is
    /// looked up without following).
    pub fn get(&self, comps: &[String]) -> io::Result<Option<Entry>> {
        let c = bytes(comps);
        for (i, root) in self.layers.iter().enumerate().rev() {
            match Self::probe(root, &c)? {
                Probe::Missing => continue,
                Probe::Hidden => return Ok(None),
                Probe::Found(meta) => {
                    return Ok(Some(Entry {
                        layer: i,
                        path: comps.to_vec(),
                        meta,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// `rel` with every symlink in it (the last one too when `follow_last`) resolved through
    /// the merged tree, inside the root: an absolute target restarts at the root, `..` stops
    /// there. Missing components are kept as they are.
    pub fn resolve(&self, rel: &str, follow_last: bool) -> io::Result<Vec<String>> {
        let mut todo: std::collections::VecDeque<String> = rel
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_owned)
            .collect();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop_front() {
            if c == ".." {
                done.pop();
                continue;
            }
            done.push(c);
            if todo.is_empty() && !follow_last {
                break;
            }
            let Some(e) = self.get(&done)? else { continue };
            if e.meta.kind != Kind::Symlink {
                continue;
            }
            hops += 1;
            if hops > 40 {
                return Err(io::Error::other(format!(
                    "/{rel}: too many levels of symbolic links"
                )));
            }
            let target = self.read_link(&e)?;
            let target = target.as_os_str().to_string_lossy().into_owned();
            done.pop();
            if target.starts_with('/') {
                done.clear();
            }
            for part in target
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .rev()
            {
                todo.push_front(part.to_owned());
            }
        }
        Ok(done)
    }

    /// `lstat` of `rel`: its parents resolved, its last component not followed.
    pub fn lstat(&self, rel: &str) -> io::Result<Option<Entry>> {
        let p = self.resolve(rel, false)?;
        self.get(&p)
    }

    /// `stat` of `rel`: every symlink resolved inside the root.
    pub fn stat(&self, rel: &str) -> io::Result<Option<Entry>> {
        let p = self.resolve(rel, true)?;
        self.get(&p)
    }

    /// The directory holding `e`, in its layer.
    fn parent_fd(&self, e: &Entry) -> io::Result<(OwnedFd, Vec<u8>)> {
        let root = &self.layers[e.layer];
        let Some((base, parent)) = e.path.split_last() else {
            return Err(io::Error::other("the root has no parent"));
        };
        Ok((
            open_dir_beneath(root.fd(), &bytes(parent))?,
            base.as_bytes().to_vec(),
        ))
    }

    /// The regular file `e` for reading.
    pub fn open_entry(&self, e: &Entry) -> io::Result<File> {
        let (dir, base) = self.parent_fd(e)?;
        let fd = rustix::fs::openat(
            &dir,
            OsStr::from_bytes(&base),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }

    /// The target of the symlink `e`.
    pub fn read_link(&self, e: &Entry) -> io::Result<PathBuf> {
        let (dir, base) = self.parent_fd(e)?;
        read_link_at(&dir, &base)
    }

    /// A small text file of the tree (`/etc/passwd`), symlinks resolved inside the root;
    /// `None` when there is no such regular file.
    pub fn read_to_string(&self, rel: &str, limit: u64) -> io::Result<Option<String>> {
        let Some(e) = self.stat(rel)? else {
            return Ok(None);
        };
        if !e.meta.is_file() {
            return Ok(None);
        }
        let mut s = String::new();
        self.open_entry(&e)?.take(limit).read_to_string(&mut s)?;
        Ok(Some(s))
    }

    /// The names the merged directory `comps` (no symlink in it) shows, sorted.
    pub fn list(&self, comps: &[String]) -> io::Result<Vec<String>> {
        let c = bytes(comps);
        let mut seen: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
        for root in self.layers.iter().rev() {
            let dir = match Self::probe(root, &c)? {
                Probe::Missing => continue,
                Probe::Hidden => break,
                Probe::Found(m) if m.kind != Kind::Dir => break,
                Probe::Found(_) => open_dir_beneath(root.fd(), &c)?,
            };
            for name in hoist_runtime::confined::list(&dir)? {
                let visible = !lstat_at(&dir, &name).is_ok_and(|st| is_whiteout(&st));
                seen.entry(name).or_insert(visible);
            }
            if !c.is_empty() && is_opaque(&dir) {
                break;
            }
        }
        Ok(seen
            .into_iter()
            .filter(|(_, v)| *v)
            .map(|(n, _)| String::from_utf8_lossy(&n).into_owned())
            .collect())
    }

    /// Everything under the merged directory `comps`, parents before their contents, sorted:
    /// (path relative to `comps`, entry).
    pub fn walk(&self, comps: &[String]) -> io::Result<Vec<(String, Entry)>> {
        let mut out = Vec::new();
        self.walk_into(comps, "", &mut out)?;
        Ok(out)
    }

    fn walk_into(
        &self,
        comps: &[String],
        prefix: &str,
        out: &mut Vec<(String, Entry)>,
    ) -> io::Result<()> {
        for name in self.list(comps)? {
            let mut p = comps.to_vec();
            p.push(name.clone());
            let Some(e) = self.get(&p)? else { continue };
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let is_dir = e.meta.is_dir();
            out.push((rel.clone(), e));
            if is_dir {
                self.walk_into(&p, &rel, out)?;
            }
        }
        Ok(())
    }
}

/// Where a COPY reads an entry: a snapshot's layers or a directory tree the builder holds (the
/// build context, a git checkout), never a host path.
#[derive(Debug, Clone)]
pub enum Source {
    /// An entry of a [`View`].
    Tree(Arc<View>, Entry),
    /// `rel` inside a directory (symlinks on the way resolved inside it, the last not followed).
    Dir(Arc<Root>, String),
}

impl Source {
    fn split(root: &Root, rel: &str) -> io::Result<(OwnedFd, Vec<u8>)> {
        let rel = rel.trim_matches('/');
        let (parent, base) = match rel.rsplit_once('/') {
            Some((p, b)) => (p, b),
            None => ("", rel),
        };
        if base.is_empty() || base == ".." {
            return Err(io::Error::other(format!("{rel:?} names no entry")));
        }
        Ok((root.open_dir(parent)?, base.as_bytes().to_vec()))
    }

    pub fn meta(&self) -> io::Result<Meta> {
        match self {
            Source::Tree(_, e) => Ok(e.meta.clone()),
            Source::Dir(root, rel) => {
                if rel.trim_matches('/').is_empty() {
                    return Ok(Meta::of(&rustix::fs::fstat(root.fd())?));
                }
                let (dir, base) = Self::split(root, rel)?;
                Ok(Meta::of(&lstat_at(&dir, &base)?))
            }
        }
    }

    /// The regular file, for reading.
    pub fn open(&self) -> io::Result<File> {
        match self {
            Source::Tree(v, e) => v.open_entry(e),
            Source::Dir(root, rel) => {
                let (dir, base) = Self::split(root, rel)?;
                Ok(File::from(rustix::fs::openat(
                    &dir,
                    OsStr::from_bytes(&base),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?))
            }
        }
    }

    pub fn link_target(&self) -> io::Result<PathBuf> {
        match self {
            Source::Tree(v, e) => v.read_link(e),
            Source::Dir(root, rel) => {
                let (dir, base) = Self::split(root, rel)?;
                read_link_at(&dir, &base)
            }
        }
    }

    /// For messages.
    pub fn describe(&self) -> String {
        match self {
            Source::Tree(_, e) => format!("/{}", e.rel()),
            Source::Dir(root, rel) => root.path().join(rel).display().to_string(),
        }
    }
}

/// Owner and mode of a directory the writer makes where the layers below have none.
#[derive(Debug, Clone, Copy)]
pub struct NewDir {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl NewDir {
    pub const ROOT: NewDir = NewDir {
        mode: 0o755,
        uid: 0,
        gid: 0,
    };
}

/// BuildKit's refusal to write a directory where a non-directory is.
fn not_a_directory(path: &[String]) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotADirectory,
        format!("cannot copy to non-directory: /{}", path.join("/")),
    )
}

fn times(secs: i64, nsec: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: nsec,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn owner(uid: u32, gid: u32) -> (Option<Uid>, Option<Gid>) {
    (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
}

/// Who a copied entry belongs to, a `--chmod`, and an mtime that replaces the source's.
#[derive(Debug, Clone, Copy)]
pub struct CopyAs {
    pub uid: u32,
    pub gid: u32,
    pub chmod: Option<u32>,
    pub mtime: Option<i64>,
}

/// A step's upper dir, written over the layers below it. Paths are resolved through the merged
/// view (below + what this step wrote so far), so a symlink an earlier source wrote is followed
/// inside the root like one from a lower layer.
pub struct Upper {
    root: Arc<Root>,
    below: View,
    view: View,
}

impl Upper {
    pub fn new(upper: &Path, below: &View) -> io::Result<Upper> {
        let root = Arc::new(Root::open(upper)?);
        Ok(Upper {
            view: below.with_top(root.clone()),
            below: below.clone(),
            root,
        })
    }

    /// The merged view (below + upper).
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Makes the directories `path` (resolved: no symlink in it) in the upper dir: one the
    /// layers below have keeps its mode, owner and mtime; a new one is 0755 root, the last one
    /// `last`. A non-directory in the way (below or written by this step) is an error, as
    /// BuildKit's copy refuses it: a directory never silently replaces a file.
    fn make_dirs(&self, path: &[String], last: NewDir, all: bool) -> io::Result<OwnedFd> {
        let mut cur = rustix::io::dup(self.root.fd())?;
        for (i, c) in path.iter().enumerate() {
            let name = OsStr::new(c);
            match lstat_at(&cur, c.as_bytes()) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                found => {
                    match found {
                        Ok(_) => return Err(not_a_directory(&path[..=i])),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                    if self
                        .below
                        .get(&path[..=i])?
                        .is_some_and(|e| !e.meta.is_dir())
                    {
                        return Err(not_a_directory(&path[..=i]));
                    }
                    rustix::fs::mkdirat(&cur, name, Mode::from_raw_mode(0o700))?;
                    let fd = rustix::fs::openat(&cur, name, DIR_FLAGS, Mode::empty())?;
                    match self.below.get(&path[..=i])? {
                        Some(e) if e.meta.is_dir() => {
                            let (u, g) = owner(e.meta.uid, e.meta.gid);
                            rustix::fs::fchown(&fd, u, g)?;
                            rustix::fs::fchmod(&fd, Mode::from_raw_mode(e.meta.mode))?;
                            rustix::fs::futimens(&fd, &times(e.meta.mtime, e.meta.mtime_nsec))?;
                        }
                        _ => {
                            let n = if all || i + 1 == path.len() {
                                last
                            } else {
                                NewDir::ROOT
                            };
                            let (u, g) = owner(n.uid, n.gid);
                            rustix::fs::fchown(&fd, u, g)?;
                            rustix::fs::fchmod(&fd, Mode::from_raw_mode(n.mode))?;
                        }
                    }
                }
            }
            cur = rustix::fs::openat(&cur, name, DIR_FLAGS, Mode::empty())?;
        }
        Ok(cur)
    }

    /// The directory at `rel` (every symlink followed inside the root), made in the upper dir
    /// (with its parents) when missing there.
    pub fn dir(&self, rel: &str, last: NewDir) -> io::Result<OwnedFd> {
        let path = self.view.resolve(rel, true)?;
        self.make_dirs(&path, last, false)
    }

    /// [`Upper::dir`] with every directory it makes (not only the last) owned and moded as `new`.
    pub fn dir_all(&self, rel: &str, new: NewDir) -> io::Result<OwnedFd> {
        let path = self.view.resolve(rel, true)?;
        self.make_dirs(&path, new, true)
    }

    /// The upper dir's directory that will hold the non-directory `rel` (its parents followed
    /// inside the root, its last component not) with whatever the upper dir has at that name
    /// removed. A directory there is an error, as BuildKit's copy refuses to replace one.
    fn slot(&self, rel: &str) -> io::Result<(OwnedFd, String)> {
        let path = self.view.resolve(rel, false)?;
        let Some((base, parent)) = path.split_last() else {
            return Err(io::Error::other(format!(
                "/{rel}: the root cannot be replaced"
            )));
        };
        if self.view.get(&path)?.is_some_and(|e| e.meta.is_dir()) {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("cannot replace to directory /{} with file", path.join("/")),
            ));
        }
        let dir = self.make_dirs(parent, NewDir::ROOT, false)?;
        match lstat_at(&dir, base.as_bytes()) {
            Ok(_) => remove_all_at(&dir, base.as_bytes())?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok((dir, base.clone()))
    }

    /// A regular file at `rel` with `data`, replacing what was there (a symlink is replaced,
    /// never written through).
    pub fn write_file(
        &self,
        rel: &str,
        data: &mut dyn Read,
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: Option<(i64, i64)>,
    ) -> io::Result<()> {
        let (dir, base) = self.slot(rel)?;
        let fd = rustix::fs::openat(
            &dir,
            OsStr::new(&base),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut f = File::from(fd);
        io::copy(data, &mut f)?;
        let (u, g) = owner(uid, gid);
        rustix::fs::fchown(&f, u, g)?;
        // After chown, which clears setuid/setgid.
        rustix::fs::fchmod(&f, Mode::from_raw_mode(mode & 0o7777))?;
        if let Some((s, ns)) = mtime {
            rustix::fs::futimens(&f, &times(s, ns))?;
        }
        Ok(())
    }

    /// A symlink at `rel` to `target`, replacing what was there.
    pub fn write_symlink(
        &self,
        rel: &str,
        target: &Path,
        uid: u32,
        gid: u32,
        mtime: Option<(i64, i64)>,
    ) -> io::Result<()> {
        let (dir, base) = self.slot(rel)?;
        rustix::fs::symlinkat(target, &dir, OsStr::new(&base))?;
        let (u, g) = owner(uid, gid);
        rustix::fs::chownat(&dir, OsStr::new(&base), u, g, AtFlags::SYMLINK_NOFOLLOW)?;
        if let Some((s, ns)) = mtime {
            rustix::fs::utimensat(
                &dir,
                OsStr::new(&base),
                &times(s, ns),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        Ok(())
    }

    /// The directory `rel` (made when missing) with this mode, owner and mtime. A non-directory
    /// at `rel` (a symlink too: it is not written through) is an error, as BuildKit's copy
    /// refuses it.
    pub fn write_dir(
        &self,
        rel: &str,
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: Option<(i64, i64)>,
    ) -> io::Result<()> {
        if let Some(e) = self.view.lstat(rel)?
            && !e.meta.is_dir()
        {
            return Err(not_a_directory(&e.path));
        }
        let fd = self.dir(
            rel,
            NewDir {
                mode: mode & 0o7777,
                uid,
                gid,
            },
        )?;
        let (u, g) = owner(uid, gid);
        rustix::fs::fchown(&fd, u, g)?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777))?;
        if let Some((s, ns)) = mtime {
            rustix::fs::futimens(&fd, &times(s, ns))?;
        }
        Ok(())
    }

    /// Sets the mtime of `rel` (not following its last component) in the upper dir.
    pub fn set_mtime(&self, rel: &str, secs: i64) -> io::Result<()> {
        let path = self.view.resolve(rel, false)?;
        let t = times(secs, 0);
        match path.split_last() {
            None => rustix::fs::futimens(self.root.fd(), &t)?,
            Some((base, parent)) => {
                let dir = open_dir_beneath(self.root.fd(), &bytes(parent))?;
                rustix::fs::utimensat(&dir, OsStr::new(base), &t, AtFlags::SYMLINK_NOFOLLOW)?;
            }
        }
        Ok(())
    }

    /// Copies `src` to `rel`: a directory's mode, owner and mtime, a file's content, a symlink as
    /// a link. Devices, fifos and sockets are not copied (docker copies none from a context).
    pub fn copy(&self, src: &Source, meta: &Meta, rel: &str, how: &CopyAs) -> io::Result<()> {
        let CopyAs {
            uid,
            gid,
            chmod,
            mtime,
        } = *how;
        let t = Some(mtime.map_or((meta.mtime, meta.mtime_nsec), |s| (s, 0)));
        let mode = chmod.unwrap_or(meta.mode);
        match meta.kind {
            Kind::Dir => self.write_dir(rel, mode, uid, gid, t),
            Kind::File => self.write_file(rel, &mut src.open()?, mode, uid, gid, t),
            Kind::Symlink => {
                self.write_symlink(rel, &src.link_target()?, uid, gid, mtime.map(|s| (s, 0)))
            }
            Kind::Other => Ok(()),
        }
    }

    /// Removes what the runtime made for a mount at `target` (an empty directory or file the
    /// layers below do not have, and its parents likewise), as BuildKit does: the path is
    /// resolved inside the root and walked with no symlink followed, so a link the step planted
    /// cannot point the removal at the host.
    pub fn remove_mount_stub(&self, target: &str) -> io::Result<()> {
        let mut path = self.view.resolve(target, true)?;
        while let Some((base, parent)) = path.split_last() {
            if self.below.get(&path)?.is_some() {
                break;
            }
            let Ok(dir) = open_dir_beneath(self.root.fd(), &bytes(parent)) else {
                break;
            };
            let Ok(st) = lstat_at(&dir, base.as_bytes()) else {
                break;
            };
            let m = Meta::of(&st);
            let removed = match m.kind {
                Kind::Dir => {
                    rustix::fs::unlinkat(&dir, OsStr::new(base), AtFlags::REMOVEDIR).is_ok()
                }
                Kind::File if m.size == 0 => {
                    rustix::fs::unlinkat(&dir, OsStr::new(base), AtFlags::empty()).is_ok()
                }
                _ => false,
            };
            if !removed {
                break;
            }
            path.pop();
        }
        Ok(())
    }
}
