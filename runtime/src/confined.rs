//! File operations confined to a tree: an image's rootfs, a layer directory, a build step's upper
//! dir. The one mechanism the unpacker, the container supervisor and the builder share.
//!
//! A [`Root`] is a directory descriptor. Paths inside it are resolved by the kernel, never by
//! joining them onto the root's host path:
//! - *following* symlinks (what a process chrooted at the root would see):
//!   `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: absolute targets and `..` stay inside;
//! - *not following* any ([`open_dir_beneath`], [`lstat_at`], the `*at` calls on a descriptor):
//!   `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, `O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`.
//!
//! Either way a symlink planted in the tree (by a layer, a build step or an earlier source of the
//! same copy) cannot send a read or a write to the host.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// A directory opened for reading, never through a symlink in its last component.
pub const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW);

/// Symlinks resolve as if the root were `/`.
pub fn in_root() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

/// No symlink is followed and nothing leaves the starting directory.
pub fn beneath_no_symlinks() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

fn errno(e: Errno) -> io::Error {
    e.into()
}

/// `rel` as a relative path for `openat2`: leading `/` dropped, the root itself `.`.
fn relative(rel: &[u8]) -> &OsStr {
    let mut r = rel;
    while let [b'/', rest @ ..] = r {
        r = rest;
    }
    if r.is_empty() {
        OsStr::new(".")
    } else {
        OsStr::from_bytes(r)
    }
}

/// The normal components of `rel` (`/`, `.` and empty ones dropped); `..` refused, since a
/// caller that means "no symlink followed" has resolved the path already.
pub fn components(rel: &[u8]) -> io::Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    for c in rel.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the path has a \"..\" component",
                ));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// A directory whose tree is operated on only through its descriptor.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Opens the tree at `path` (the caller's own directory: a layer dir, a mount point).
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {}", path.display(), errno(e))))?;
        Ok(Root {
            fd,
            path: path.to_owned(),
        })
    }

    /// Wraps a directory descriptor; `path` is only for messages.
    pub fn from_fd(fd: OwnedFd, path: PathBuf) -> Root {
        Root { fd, path }
    }

    /// The host path the root was opened at, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `rel` opened with `flags`, symlinks resolved inside the root.
    pub fn open_in(&self, rel: impl AsRef<OsStr>, flags: OFlags) -> io::Result<OwnedFd> {
        rustix::fs::openat2(
            &self.fd,
            relative(rel.as_ref().as_bytes()),
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            in_root(),
        )
        .map_err(errno)
    }

    /// The directory `rel`, symlinks resolved inside the root.
    pub fn open_dir(&self, rel: impl AsRef<OsStr>) -> io::Result<OwnedFd> {
        self.open_in(rel, OFlags::RDONLY | OFlags::DIRECTORY)
    }

    /// The file `rel` for reading, symlinks resolved inside the root.
    pub fn open_file(&self, rel: impl AsRef<OsStr>) -> io::Result<File> {
        Ok(File::from(self.open_in(rel, OFlags::RDONLY)?))
    }

    /// A small file of the tree (`/etc/passwd`): at most `limit` bytes, symlinks resolved
    /// inside the root.
    pub fn read_to_string(&self, rel: impl AsRef<OsStr>, limit: u64) -> io::Result<String> {
        let mut s = String::new();
        self.open_file(rel)?.take(limit).read_to_string(&mut s)?;
        Ok(s)
    }

    /// `mkdir -p` of `rel` inside the root, as `mkdir -p` chrooted at the root would do it but
    /// also through dangling symlinks (as docker makes a WORKDIR): symlinks on the way resolve
    /// inside the root (absolute targets from the root, `..` never above it), a missing
    /// directory (or a dangling link's target) is made with `mode` (not masked). Every step is
    /// an `*at` call that follows no symlink. Returns the directory.
    pub fn create_dir_all(&self, rel: impl AsRef<OsStr>, mode: u32) -> io::Result<OwnedFd> {
        let mut todo: std::collections::VecDeque<Vec<u8>> = rel
            .as_ref()
            .as_bytes()
            .split(|b| *b == b'/')
            .map(<[u8]>::to_vec)
            .collect();
        let mut stack: Vec<Vec<u8>> = Vec::new();
        let mut cur = rustix::io::dup(&self.fd)?;
        let mut hops = 0;
        while let Some(c) = todo.pop_front() {
            match c.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    stack.pop();
                    let comps: Vec<&[u8]> = stack.iter().map(Vec::as_slice).collect();
                    cur = open_dir_beneath(&self.fd, &comps)?;
                    continue;
                }
                _ => {}
            }
            match lstat_at(&cur, &c) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    hops += 1;
                    if hops > 40 {
                        return Err(io::Error::other(format!(
                            "{}: too many levels of symbolic links",
                            String::from_utf8_lossy(rel.as_ref().as_bytes())
                        )));
                    }
                    let t = read_link_at(&cur, &c)?;
                    let t = t.as_os_str().as_bytes();
                    if t.starts_with(b"/") {
                        stack.clear();
                        cur = rustix::io::dup(&self.fd)?;
                    }
                    for part in t.split(|b| *b == b'/').rev() {
                        todo.push_front(part.to_vec());
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match rustix::fs::mkdirat(
                        &cur,
                        OsStr::from_bytes(&c),
                        Mode::from_raw_mode(0o700),
                    ) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(errno(e)),
                    }
                    let fd =
                        rustix::fs::openat(&cur, OsStr::from_bytes(&c), DIR_FLAGS, Mode::empty())
                            .map_err(errno)?;
                    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(errno)?;
                }
                Err(e) => return Err(e),
            }
            cur = rustix::fs::openat(&cur, OsStr::from_bytes(&c), DIR_FLAGS, Mode::empty())
                .map_err(errno)?;
            stack.push(c);
        }
        Ok(cur)
    }
}

/// The directory `comps` below `dir`, no symlink followed (`ELOOP`/`ENOTDIR`/`ENOENT` when a
/// component is a symlink, not a directory, or missing).
pub fn open_dir_beneath(dir: impl AsFd, comps: &[&[u8]]) -> io::Result<OwnedFd> {
    let rel = comps.join(&b'/');
    rustix::fs::openat2(
        dir,
        relative(&rel),
        DIR_FLAGS,
        Mode::empty(),
        beneath_no_symlinks(),
    )
    .map_err(errno)
}

/// `lstat` of `name` in `dir`.
pub fn lstat_at(dir: impl AsFd, name: &[u8]) -> io::Result<rustix::fs::Stat> {
    rustix::fs::statat(dir, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW).map_err(errno)
}

/// The target of the symlink `name` in `dir`.
pub fn read_link_at(dir: impl AsFd, name: &[u8]) -> io::Result<PathBuf> {
    let t = rustix::fs::readlinkat(dir, OsStr::from_bytes(name), Vec::new()).map_err(errno)?;
    Ok(PathBuf::from(OsStr::from_bytes(t.as_bytes())))
}

/// Removes `name` in `dir`, recursively, never following a symlink.
pub fn remove_all_at(dir: impl AsFd, name: &[u8]) -> io::Result<()> {
    let st = lstat_at(&dir, name)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let sub = rustix::fs::openat(&dir, OsStr::from_bytes(name), DIR_FLAGS, Mode::empty())
            .map_err(errno)?;
        for child in list(&sub)? {
            remove_all_at(&sub, &child)?;
        }
        rustix::fs::unlinkat(&dir, OsStr::from_bytes(name), AtFlags::REMOVEDIR).map_err(errno)?;
    } else {
        rustix::fs::unlinkat(&dir, OsStr::from_bytes(name), AtFlags::empty()).map_err(errno)?;
    }
    Ok(())
}

/// The names in a directory, `.` and `..` excluded.
pub fn list(dir: impl AsFd) -> io::Result<Vec<Vec<u8>>> {
    let fd = rustix::fs::openat(&dir, ".", DIR_FLAGS, Mode::empty()).map_err(errno)?;
    let mut d = rustix::fs::Dir::new(fd).map_err(errno)?;
    let mut out = Vec::new();
    while let Some(ent) = d.read() {
        let ent = ent.map_err(errno)?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(n.to_vec());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_mkdirs_stay_inside_the_root() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("secret"), "host").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("secret"), "inside").unwrap();
        let abs = format!("{}/secret", host.path().display());
        std::os::unix::fs::symlink(&abs, root.path().join("etc/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../../secret", root.path().join("etc/rel")).unwrap();
        std::os::unix::fs::symlink(host.path(), root.path().join("w")).unwrap();
        let r = Root::open(root.path()).unwrap();
        assert!(r.read_to_string("/etc/abs", 100).is_err());
        assert_eq!(r.read_to_string("etc/rel", 100).unwrap(), "inside");
        r.create_dir_all("/w/new/deep", 0o755).unwrap();
        std::os::unix::fs::symlink(
            format!("{}/made", host.path().display()),
            root.path().join("d"),
        )
        .unwrap();
        r.create_dir_all("d/x", 0o755).unwrap();
        assert!(!host.path().join("made").exists());
        assert!(!host.path().join("new").exists());
        let inside = root.path().join(host.path().strip_prefix("/").unwrap());
        assert!(inside.join("new/deep").is_dir());
        assert!(inside.join("made/x").is_dir());
        let etc = open_dir_beneath(r.fd(), &[b"etc"]).unwrap();
        assert!(open_dir_beneath(r.fd(), &[b"w"]).is_err());
        assert!(lstat_at(&etc, b"abs").is_ok());
        assert_eq!(
            read_link_at(&etc, b"rel").unwrap(),
            PathBuf::from("../../../../../secret")
        );
    }
}
