//! For a copy rootfs ([`super::RootfsKind::Copy`]): what the container changed, written into its
//! upper dir in overlay form, so that [`super::diff`] and [`super::write_layer`] (`hoist diff`,
//! `hoist commit`) work on it as on an overlay upper dir.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps, XattrFlags};

use super::diff::in_lowers;
use super::mount::COPY_DONE;
use super::{Result, RootfsError, is_overlay_whiteout};

const DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// If `work` records a copy rootfs at `target`, replaces the contents of `upper` with the changes
/// of `target` over `lowers` (bottom..top) in overlay form: new and changed entries copied
/// (owners, modes, mtimes, xattrs, hard links within the changes), deleted ones as whiteouts.
/// Returns whether it did. The target is walked by descriptor, never following its symlinks.
/// Run it while the container is stopped (or paused) for an exact picture.
pub fn sync_copy_changes(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<bool> {
    if !work.join(COPY_DONE).exists() {
        return Ok(false);
    }
    fs::create_dir_all(upper).map_err(|e| RootfsError::io(upper, e))?;
    let up = fs::File::open(upper).map_err(|e| RootfsError::io(upper, e))?;
    for e in fs::read_dir(upper).map_err(|e| RootfsError::io(upper, e))? {
        let e = e.map_err(|e| RootfsError::io(upper, e))?;
        crate::unpack::remove_all_at(&up, e.file_name().as_bytes())
            .map_err(|err| RootfsError::io(e.path(), err))?;
    }
    let root = rustix::fs::open(target, DIR, Mode::empty())
        .map_err(|e| RootfsError::io(target, e.into()))?;
    let mut s = Sync {
        lowers,
        upper: upper.to_owned(),
        links: HashMap::new(),
    };
    s.dir(&root, Path::new(""))?;
    Ok(true)
}

struct Sync<'a> {
    lowers: &'a [PathBuf],
    upper: PathBuf,
    /// (dev, ino) in the target -> the upper path written for it.
    links: HashMap<(u64, u64), PathBuf>,
}

/// The topmost visible lower entry at `rel`, if any (never through a symlink).
fn lower_entry(lowers: &[PathBuf], rel: &Path) -> Option<PathBuf> {
    if !in_lowers(lowers, rel) {
        return None;
    }
    for l in lowers.iter().rev() {
        let p = l.join(rel);
        // Every ancestor in this lower must be a real directory.
        let mut q = l.clone();
        let mut ok = true;
        let comps: Vec<_> = rel.components().collect();
        for (i, c) in comps.iter().enumerate() {
            let Component::Normal(n) = c else { continue };
            q.push(n);
            match fs::symlink_metadata(&q) {
                Ok(md) if i + 1 == comps.len() => {
                    if is_overlay_whiteout(&md) {
                        return None;
                    }
                }
                Ok(md) if md.is_dir() => {}
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            return Some(p);
        }
    }
    None
}

fn same(st: &Stat, md: &fs::Metadata) -> bool {
    let ft = FileType::from_raw_mode(st.st_mode);
    let same_type = FileType::from_raw_mode(md.mode()) == ft;
    same_type
        && st.st_mode == md.mode()
        && st.st_uid == md.uid()
        && st.st_gid == md.gid()
        && (ft == FileType::Directory
            || (st.st_size as u64 == md.size()
                // Whole seconds: the copy came through a tar, which keeps no more.
                && st.st_mtime == md.mtime()
                && st.st_rdev == md.rdev()))
}

impl Sync<'_> {
    /// Compares the directory `dir` (relative path `rel`) with the lowers; returns whether
    /// anything under it changed (then it exists in the upper).
    fn dir(&mut self, dir: &OwnedFd, rel: &Path) -> Result<bool> {
        let mut names = BTreeSet::new();
        let mut d = rustix::fs::Dir::read_from(dir).map_err(|e| self.err(rel, e))?;
        while let Some(ent) = d.read() {
            let ent = ent.map_err(|e| self.err(rel, e))?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.insert(n.to_vec());
            }
        }
        let mut changed = false;
        for name in &names {
            let r = rel.join(std::ffi::OsStr::from_bytes(name));
            let st = rustix::fs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| self.err(&r, e))?;
            let lower = lower_entry(self.lowers, &r);
            let lmd = lower.as_ref().and_then(|p| fs::symlink_metadata(p).ok());
            let ft = FileType::from_raw_mode(st.st_mode);
            if ft == FileType::Directory {
                let sub = rustix::fs::openat(dir, name.as_slice(), DIR, Mode::empty())
                    .map_err(|e| self.err(&r, e))?;
                let was_dir = lmd.as_ref().is_some_and(|m| m.is_dir());
                let meta_changed = !lmd.as_ref().is_some_and(|m| same(&st, m));
                if !was_dir || meta_changed {
                    self.ensure_dir(&r, &st)?;
                }
                // A new directory hides nothing below; an old one is compared entry by entry.
                let inner = if was_dir {
                    self.dir(&sub, &r)?
                } else {
                    self.copy_tree(&sub, &r)?;
                    true
                };
                if inner {
                    self.ensure_dir(&r, &st)?;
                }
                changed |= inner || !was_dir || meta_changed;
            } else {
                let unchanged = lmd.as_ref().is_some_and(|m| {
                    same(&st, m)
                        && (ft != FileType::Symlink
                            || rustix::fs::readlinkat(dir, name.as_slice(), Vec::new())
                                .ok()
                                .map(|t| t.into_bytes())
                                == fs::read_link(lower.as_ref().expect("a lower"))
                                    .ok()
                                    .map(|p| p.into_os_string().into_vec()))
                });
                if !unchanged {
                    self.copy_entry(dir, name, &r, &st)?;
                    changed = true;
                }
            }
        }
        // What the lowers have here and the target does not: deleted.
        let mut lower_names = BTreeSet::new();
        for l in self.lowers {
            if let Ok(rd) = fs::read_dir(l.join(rel)) {
                lower_names.extend(rd.flatten().map(|e| e.file_name().as_bytes().to_vec()));
            }
        }
        for gone in lower_names.difference(&names) {
            let r = rel.join(std::ffi::OsStr::from_bytes(gone));
            if lower_entry(self.lowers, &r).is_some() {
                self.ensure_parent(&r)?;
                let p = self.upper.join(&r);
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &p,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(|e| RootfsError::io(&p, e.into()))?;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// A whole new directory tree: every entry copied.
    fn copy_tree(&mut self, dir: &OwnedFd, rel: &Path) -> Result<()> {
        let mut d = rustix::fs::Dir::read_from(dir).map_err(|e| self.err(rel, e))?;
        let mut names = Vec::new();
        while let Some(ent) = d.read() {
            let ent = ent.map_err(|e| self.err(rel, e))?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        for name in names {
            let r = rel.join(std::ffi::OsStr::from_bytes(&name));
            let st = rustix::fs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| self.err(&r, e))?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                self.ensure_dir(&r, &st)?;
                let sub = rustix::fs::openat(dir, name.as_slice(), DIR, Mode::empty())
                    .map_err(|e| self.err(&r, e))?;
                self.copy_tree(&sub, &r)?;
            } else {
                self.copy_entry(dir, &name, &r, &st)?;
            }
        }
        Ok(())
    }

    fn err(&self, rel: &Path, e: rustix::io::Errno) -> RootfsError {
        RootfsError::io(Path::new("/").join(rel), e.into())
    }

    fn ensure_parent(&self, rel: &Path) -> Result<()> {
        if let Some(p) = rel.parent() {
            let full = self.upper.join(p);
            fs::create_dir_all(&full).map_err(|e| RootfsError::io(&full, e))?;
        }
        Ok(())
    }

    /// The directory `rel` in the upper, with the target's ownership, mode and mtime.
    fn ensure_dir(&self, rel: &Path, st: &Stat) -> Result<()> {
        let p = self.upper.join(rel);
        match fs::create_dir_all(&p) {
            Ok(()) => {}
            Err(e) => return Err(RootfsError::io(&p, e)),
        }
        let _ = rustix::fs::chown(
            &p,
            Some(rustix::fs::Uid::from_raw(st.st_uid)),
            Some(rustix::fs::Gid::from_raw(st.st_gid)),
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(st.st_mode & 0o7777))
            .map_err(|e| RootfsError::io(&p, e))?;
        set_times(&p, st);
        Ok(())
    }

    fn copy_entry(&mut self, dir: &OwnedFd, name: &[u8], rel: &Path, st: &Stat) -> Result<()> {
        self.ensure_parent(rel)?;
        let dst = self.upper.join(rel);
        let io = |e: io::Error| RootfsError::io(&dst, e);
        let ft = FileType::from_raw_mode(st.st_mode);
        let key = (st.st_dev, st.st_ino);
        if st.st_nlink > 1 {
            if let Some(first) = self.links.get(&key) {
                return fs::hard_link(first, &dst).map_err(io);
            }
            self.links.insert(key, dst.clone());
        }
        match ft {
            FileType::RegularFile => {
                let src = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io(e.into()))?;
                let mut src = fs::File::from(src);
                let mut out = fs::File::create(&dst).map_err(io)?;
                io::copy(&mut src, &mut out).map_err(io)?;
                copy_xattrs(&src, &dst);
            }
            FileType::Symlink => {
                let t = rustix::fs::readlinkat(dir, name, Vec::new()).map_err(|e| io(e.into()))?;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(t.as_bytes()), &dst)
                    .map_err(io)?;
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                rustix::fs::mknodat(rustix::fs::CWD, &dst, ft, Mode::empty(), st.st_rdev)
                    .map_err(|e| io(e.into()))?;
            }
            // Sockets cannot be in a layer.
            _ => return Ok(()),
        }
        rustix::fs::chownat(
            rustix::fs::CWD,
            &dst,
            Some(rustix::fs::Uid::from_raw(st.st_uid)),
            Some(rustix::fs::Gid::from_raw(st.st_gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io(e.into()))?;
        if ft != FileType::Symlink {
            fs::set_permissions(&dst, fs::Permissions::from_mode(st.st_mode & 0o7777))
                .map_err(io)?;
        }
        set_times(&dst, st);
        Ok(())
    }
}

/// Extended attributes from an open file to `dst`, overlay's own left out; best effort.
fn copy_xattrs(src: &impl AsFd, dst: &Path) {
    let mut names = vec![0u8; 64 * 1024];
    let Ok(n) = rustix::fs::flistxattr(src, &mut names[..]) else {
        return;
    };
    names.truncate(n);
    for k in names.split(|b| *b == 0).filter(|k| !k.is_empty()) {
        if k.starts_with(b"trusted.overlay.") || k.starts_with(b"user.overlay.") {
            continue;
        }
        let mut v = vec![0u8; 64 * 1024];
        if let Ok(n) = rustix::fs::fgetxattr(src, k, &mut v[..]) {
            let _ = rustix::fs::lsetxattr(dst, k, &v[..n], XattrFlags::empty());
        }
    }
}

fn set_times(p: &Path, st: &Stat) {
    let t = Timespec {
        tv_sec: st.st_mtime,
        tv_nsec: st.st_mtime_nsec as _,
    };
    let _ = rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    );
}
