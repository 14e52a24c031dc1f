//! `hoist cp` and `hoist export`: files between a container and the host, and a container's
//! filesystem as a tar stream, with docker's semantics (docker's CLI `cp.go` and its daemon's
//! `archive.go`: which side's symlinks are followed, `/` and `/.` at the end of a path, how the
//! archive's entries are renamed for the destination, its errors).
//!
//! The container's filesystem is the merged view it sees: the rootfs mounted by its supervisor
//! while it runs (writes go through the overlay to its upper dir, as docker's into the running
//! container's mount), else the same overlay mounted in a private mount namespace of this process
//! for the time of the copy (holding the container's supervisor lock: a `start` meanwhile
//! waits for the copy). Every file operation inside it goes through [`hoist_runtime::confined`] on a
//! descriptor of that root (`openat2(RESOLVE_IN_ROOT)` to follow symlinks as the container would,
//! `*at` calls that follow none), and archives are extracted into it by the runtime's confined
//! unpacker: a symlink in the container never makes a copy read or write a host path.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{OptionExt, ResultExt as _};
use crate::{EngineError, Result, bail};
use hoist_runtime::confined::{self, DIR_FLAGS, Root};
use hoist_runtime::container::{Container, ContainerStore};
use hoist_runtime::rootfs::{Rootfs, RootfsKind};
use hoist_runtime::unpack::{UnpackOptions, Whiteouts, unpack_layer_at};
use rustix::fs::{FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

// ---- paths, as Go's path/filepath and docker's pkg/archive handle them ----

/// Go's `filepath.Clean`.
fn clean(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !abs {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let s = out.join("/");
    match (abs, s.is_empty()) {
        (true, _) => format!("/{s}"),
        (false, true) => ".".to_owned(),
        (false, false) => s,
    }
}

/// Go's `filepath.Base`.
fn base(p: &str) -> String {
    if p.is_empty() {
        return ".".to_owned();
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".to_owned();
    }
    t.rsplit('/').next().unwrap_or(t).to_owned()
}

/// Go's `filepath.Dir`.
fn dir(p: &str) -> String {
    let i = p.rfind('/').map_or(0, |i| i + 1);
    clean(&p[..i])
}

/// Go's `filepath.Split`: everything up to the last `/`, and what follows it.
fn split(p: &str) -> (&str, &str) {
    let i = p.rfind('/').map_or(0, |i| i + 1);
    (&p[..i], &p[i..])
}

fn specifies_current_dir(p: &str) -> bool {
    base(p) == "."
}

fn asserts_directory(p: &str) -> bool {
    p.ends_with('/') || specifies_current_dir(p)
}

/// docker's `archive.SplitPathDirEntry`.
fn split_dir_entry(p: &str) -> (String, String) {
    let mut c = clean(p);
    if specifies_current_dir(p) {
        c.push_str("/.");
    }
    (dir(&c), base(&c))
}

/// docker's `archive.PreserveTrailingDotOrSeparator`.
fn preserve_trailing(cleaned: &str, original: &str) -> String {
    let mut c = cleaned.to_owned();
    if !specifies_current_dir(&c) && specifies_current_dir(original) {
        if !c.ends_with('/') {
            c.push('/');
        }
        c.push('.');
    }
    if !c.ends_with('/') && original.ends_with('/') {
        c.push('/');
    }
    c
}

/// docker's `archive.GetRebaseName`.
fn rebase_name(path: &str, resolved: &str) -> (String, String) {
    let mut r = resolved.to_owned();
    if specifies_current_dir(path) && !specifies_current_dir(&r) {
        r.push_str("/.");
    }
    if path.ends_with('/') && !r.ends_with('/') {
        r.push('/');
    }
    let name = if base(path) != base(&r) {
        base(path)
    } else {
        String::new()
    };
    (r, name)
}

/// Go's `strings.Replace(s, old, new, 1)`, as docker renames archive entries.
fn replace_first(s: &str, old: &str, new: &str) -> String {
    match s.find(old) {
        Some(i) => format!("{}{}{}", &s[..i], new, &s[i + old.len()..]),
        None => s.to_owned(),
    }
}

/// An I/O error as Go prints a `*PathError`: `lstat /x: no such file or directory`.
fn path_error(op: &str, path: &str, e: &io::Error) -> EngineError {
    EngineError::Invalid(format!("{op} {path}: {}", errno_text(e)))
}

fn errno_text(e: &io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s).to_owned();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

fn ioe(e: Errno) -> io::Error {
    e.into()
}

/// docker's `splitCpArg`: `CONTAINER:PATH`, unless the argument is an absolute path or a
/// relative one starting with `.`.
pub fn split_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.starts_with('.') => (Some(c), p),
        _ => (None, arg),
    }
}

// ---- the container's filesystem ----

/// The file the runtime leaves in a container's work dir once its rootfs is a complete copy
/// (`rootfs::mount`'s marker, private to the runtime; its name is the contract).
const COPY_DONE: &str = "hoist-copy-complete";

/// A container's merged filesystem, open for the time of a copy.
struct ContainerFs {
    root: Root,
    /// The container as the user named it (docker's messages use that).
    name: String,
    container: Container,
    /// Set for a stopped container whose rootfs is a copy: its changes go to the upper dir
    /// afterwards (`diff` and `commit` read it).
    sync_copy: bool,
    mounted: Option<Rootfs>,
    _lock: Option<nix_lock::Lock>,
}

/// The supervisor's lock of a container, held while a stopped container's filesystem is
/// mounted here (so it cannot start under the copy).
mod nix_lock {
    use std::fs::File;
    use std::path::Path;

    pub struct Lock(#[allow(dead_code)] File);

    /// `Some` when taken (the container has no supervisor), `None` when its supervisor holds it.
    pub fn try_lock(path: &Path) -> std::io::Result<Option<Lock>> {
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Lock(f))),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits for the lock.
    pub fn lock(path: &Path) -> std::io::Result<Lock> {
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
        Ok(Lock(f))
    }
}

impl ContainerFs {
    /// `volumes`: with the container's volumes and binds at their places (`cp`), or the rootfs
    /// alone (`export`, as docker's).
    fn open(store: &ContainerStore, name: &str, volumes: bool) -> Result<ContainerFs> {
        let c = store.get(name)?;
        let lock_path = c.dir.join("supervisor.lock");
        let mut lock = nix_lock::try_lock(&lock_path)
            .with_ctx(|| format!("locking {}", lock_path.display()))?;
        if lock.is_none() && !c.state.running() {
            // Another copy holds a stopped container's filesystem: wait for it.
            lock = Some(
                nix_lock::lock(&lock_path)
                    .with_ctx(|| format!("locking {}", lock_path.display()))?,
            );
        }
        let (root, mounted, sync_copy) = match &lock {
            None => {
                // Running: the supervisor's mount of the rootfs (or its copy, where overlay
                // is unavailable: the runtime marks a complete copy in the work dir).
                if !hoist_runtime::container::is_mount_point(&c.rootfs())
                    && !c.work().join(COPY_DONE).exists()
                {
                    bail!("the filesystem of the running container {name} is not mounted");
                }
                if volumes && !c.config.mounts.is_empty() {
                    private_mount_namespace().with_ctx(|| {
                        format!("mounting the volumes of the running container {name}")
                    })?;
                }
                let root = Root::open(&c.rootfs())
                    .with_ctx(|| format!("opening the filesystem of {name}"))?;
                (root, None, false)
            }
            Some(_) => {
                private_mount_namespace().with_ctx(|| {
                    format!("mounting the filesystem of the stopped container {name}")
                })?;
                let marker = c.work().join(COPY_DONE);
                let was_copy = marker.exists();
                let fs = Rootfs::mount(&c.lowers(), &c.upper(), &c.work(), &c.rootfs())
                    .with_ctx(|| format!("mounting the filesystem of {name}"))?;
                if fs.kind() == RootfsKind::Copy
                    && !was_copy
                    && std::fs::read_dir(c.upper()).is_ok_and(|mut d| d.next().is_some())
                {
                    // Overlay failed here although the container's changes are in overlay
                    // form: a copy made now would stand for the container's filesystem from
                    // then on and lose them at its next stop. Undone, and refused.
                    let _ = std::fs::remove_file(&marker);
                    bail!("cannot mount the filesystem of {name}: overlay is unavailable");
                }
                let root = Root::open(fs.target())
                    .with_ctx(|| format!("opening the filesystem of {name}"))?;
                let copy = fs.kind() == RootfsKind::Copy;
                (root, Some(fs), copy)
            }
        };
        if volumes {
            mount_volumes(&c, &root).with_ctx(|| format!("mounting the volumes of {name}"))?;
        }
        Ok(ContainerFs {
            root,
            name: name.to_owned(),
            container: c,
            sync_copy,
            mounted,
            _lock: lock,
        })
    }

    /// Unmounts what [`ContainerFs::open`] mounted; records a copy rootfs's changes.
    fn close(mut self, wrote: bool) -> Result<()> {
        let c = &self.container;
        if wrote && self.sync_copy {
            hoist_runtime::rootfs::sync_copy_changes(
                &c.lowers(),
                &c.upper(),
                &c.work(),
                &c.rootfs(),
            )
            .with_ctx(|| format!("recording the changes of {}", self.name))?;
        }
        if let Some(m) = self.mounted.take() {
            drop(std::mem::replace(
                &mut self.root,
                Root::open(Path::new("/"))?,
            ));
            m.unmount()
                .with_ctx(|| format!("unmounting the filesystem of {}", self.name))?;
        }
        Ok(())
    }

    /// docker's `ResolvePath` + `Lstat`: the directory part of `abs` resolved in the root (all
    /// symlinks followed), its last element not followed. Returns the directory and the entry's
    /// name in it (`None`: the directory itself, for `/`, `dir/` and `dir/.`).
    fn locate(&self, abs: &str) -> io::Result<(OwnedFd, Option<Vec<u8>>, Stat)> {
        let (d, b) = split(abs);
        let fd = self.root.open_dir(d)?;
        match b {
            "" | "." => {
                let st = rustix::fs::fstat(&fd).map_err(ioe)?;
                Ok((fd, None, st))
            }
            b => {
                let st = confined::lstat_at(&fd, b.as_bytes())?;
                Ok((fd, Some(b.as_bytes().to_vec()), st))
            }
        }
    }

    /// The container path `abs` resolves to, every symlink followed (docker's
    /// `GetResourcePath`, as an absolute path inside the container), a dangling one's target
    /// included: a missing last part is kept as it is.
    fn resolve(&self, abs: &str) -> io::Result<String> {
        let mut path = clean(abs);
        for _ in 0..40 {
            match self.root.open_in(&path, OFlags::PATH) {
                Ok(fd) => return self.path_of(&fd),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let (d, b) = (dir(&path), base(&path));
            let pfd = self.root.open_dir(&d)?;
            let p = self.path_of(&pfd)?;
            let joined = if p == "/" {
                format!("/{b}")
            } else {
                format!("{p}/{b}")
            };
            match confined::read_link_at(&pfd, b.as_bytes()) {
                Ok(t) => {
                    let t = t.to_string_lossy();
                    path = if t.starts_with('/') {
                        clean(&t)
                    } else {
                        clean(&format!("{p}/{t}"))
                    };
                }
                Err(_) => return Ok(joined),
            }
        }
        Err(io::Error::other(format!(
            "{abs}: too many levels of symbolic links"
        )))
    }

    /// The path inside the container of a descriptor opened in it.
    fn path_of(&self, fd: &OwnedFd) -> io::Result<String> {
        let link = |fd: BorrowedFd<'_>| {
            std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .map(|p| p.as_os_str().as_bytes().to_vec())
        };
        let root = link(self.root.fd())?;
        let p = link(fd.as_fd())?;
        let rest = p
            .strip_prefix(root.as_slice())
            .filter(|r| r.is_empty() || r.starts_with(b"/"))
            .ok_or_else(|| io::Error::other("a path outside the container's root"))?;
        let s = String::from_utf8_lossy(rest).into_owned();
        Ok(if s.is_empty() { "/".to_owned() } else { s })
    }

    fn not_found(&self, path: &str) -> EngineError {
        EngineError::Invalid(format!(
            "could not find the file {path} in container {}",
            self.name
        ))
    }
}

/// The container's volumes and binds, bind-mounted (in this process's own mount namespace) at
/// their destinations inside `root`, as docker mounts them for a copy: what is copied into or
/// out of a volume's path is the volume's. Each destination is resolved inside the root and
/// mounted on through its descriptor; one that does not exist (a container never started) is
/// left out.
fn mount_volumes(c: &Container, root: &Root) -> Result<()> {
    let mut mounts: Vec<_> = c.config.mounts.iter().collect();
    mounts.sort_by_key(|m| m.destination.matches('/').count());
    for m in mounts {
        let Ok(fd) = root.open_in(&m.destination, OFlags::PATH) else {
            continue;
        };
        let at = format!("/proc/self/fd/{}", fd.as_raw_fd());
        rustix::mount::mount_bind(&m.source, &at)
            .map_err(ioe)
            .with_ctx(|| format!("binding {} at {}", m.source.display(), m.destination))?;
    }
    Ok(())
}

/// The read-only volume or bind of the container whose destination holds `path`, if any; and
/// whether `path` is in a volume at all.
fn volume_of<'a>(
    c: &'a Container,
    path: &str,
) -> Option<&'a hoist_runtime::container::MountRecord> {
    c.config
        .mounts
        .iter()
        .filter(|m| {
            let d = clean(&m.destination);
            path == d || path.starts_with(&format!("{}/", d.trim_end_matches('/')))
        })
        .max_by_key(|m| m.destination.len())
}

/// Moves this thread (and the threads it starts) into a mount namespace of its own whose
/// mounts do not propagate back, so what it mounts is seen by no other process and goes away
/// with it.
fn private_mount_namespace() -> Result<()> {
    use rustix::mount::{MountPropagationFlags, mount_change};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| io::Error::from_raw_os_error(e as i32))
        .ctx("a private mount namespace (root is needed)")?;
    mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(ioe)
    .ctx("making the mounts of the private namespace private")?;
    Ok(())
}

// ---- archives ----

/// How entries are named and owned as they are written, and what is checked before each.
struct TarOpts {
    /// docker's entry renaming: the first occurrence of `.0` in a name becomes `.1`.
    rebase: Vec<(String, String)>,
    /// Every entry owned by this uid/gid (`cp -a` with a container user).
    owner: Option<(u32, u32)>,
}

/// What is checked of each entry (its final name, type, link target) before it is written.
type EntryCheck<'a> = dyn FnMut(&str, tar::EntryType, Option<&[u8]>) -> Result<()> + 'a;

/// Writes a tree as docker's `TarWithOptions` does: names sorted in each directory,
/// directories with a trailing `/`, hard links (a file with several links seen before) as
/// links, sockets left out, numeric owners, `security.capability` kept.
struct TarWriter<'a, W: Write> {
    out: tar::Builder<W>,
    opts: &'a TarOpts,
    seen: HashMap<(u64, u64), String>,
    names: Names,
    check: Option<&'a mut EntryCheck<'a>>,
}

impl<'a, W: Write> TarWriter<'a, W> {
    fn new(out: W, opts: &'a TarOpts) -> Self {
        let mut b = tar::Builder::new(out);
        b.mode(tar::HeaderMode::Complete);
        TarWriter {
            out: b,
            opts,
            seen: HashMap::new(),
            names: Names::default(),
            check: None,
        }
    }

    fn name(&self, n: &str) -> String {
        let mut n = n.to_owned();
        for (old, new) in &self.opts.rebase {
            if old.is_empty() {
                n = format!("{new}{n}");
            } else {
                n = replace_first(&n, old, new);
            }
        }
        n
    }

    /// The entry `name` of `dir`, archived as `tar_name` (and, for a directory, everything
    /// below it).
    fn add_at(&mut self, dir: &OwnedFd, name: &[u8], tar_name: &str) -> Result<()> {
        let st = confined::lstat_at(dir, name).with_ctx(|| format!("lstat {tar_name}"))?;
        let ft = FileType::from_raw_mode(st.st_mode);
        match ft {
            FileType::Directory => {
                let fd = rustix::fs::openat(dir, OsStr::from_bytes(name), DIR_FLAGS, Mode::empty())
                    .map_err(ioe)
                    .with_ctx(|| format!("open {tar_name}"))?;
                self.add_dir(&fd, &st, tar_name)
            }
            FileType::RegularFile => {
                let fd = rustix::fs::openat(
                    dir,
                    OsStr::from_bytes(name),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(ioe)
                .with_ctx(|| format!("open {tar_name}"))?;
                self.file(File::from(fd), &st, tar_name)
            }
            FileType::Symlink => {
                let t = confined::read_link_at(dir, name)
                    .with_ctx(|| format!("readlink {tar_name}"))?;
                let mut h = self.header(&st, tar::EntryType::Symlink);
                self.emit(
                    &mut h,
                    tar_name,
                    Some(t.as_os_str().as_bytes()),
                    &[],
                    io::empty(),
                )
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                let kind = match ft {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let mut h = self.header(&st, kind);
                if ft != FileType::Fifo {
                    h.set_device_major(rustix::fs::major(st.st_rdev))?;
                    h.set_device_minor(rustix::fs::minor(st.st_rdev))?;
                }
                self.emit(&mut h, tar_name, None, &[], io::empty())
            }
            // Sockets cannot be archived (docker logs and skips them).
            _ => Ok(()),
        }
    }

    fn add_dir(&mut self, fd: &OwnedFd, st: &Stat, tar_name: &str) -> Result<()> {
        let mut h = self.header(st, tar::EntryType::Directory);
        self.emit(&mut h, &format!("{tar_name}/"), None, &[], io::empty())?;
        self.add_children(fd, tar_name)
    }

    /// The root's entries named `NAME` (docker's export).
    fn export_children(&mut self, fd: &OwnedFd) -> Result<()> {
        let mut names = confined::list(fd).ctx("reading /")?;
        names.sort();
        for n in names {
            let child = String::from_utf8_lossy(&n).into_owned();
            self.add_at(fd, &n, &child)?;
        }
        Ok(())
    }

    /// What `fd` holds, named `prefix/NAME` (`/NAME` for the root rebased to `/`).
    fn add_children(&mut self, fd: &OwnedFd, prefix: &str) -> Result<()> {
        let mut names = confined::list(fd).with_ctx(|| format!("reading {prefix}/"))?;
        names.sort();
        for n in names {
            let child = format!("{prefix}/{}", String::from_utf8_lossy(&n));
            self.add_at(fd, &n, &child)?;
        }
        Ok(())
    }

    fn file(&mut self, f: File, st: &Stat, tar_name: &str) -> Result<()> {
        let mut h = self.header(st, tar::EntryType::Regular);
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.seen.get(&key).cloned() {
                let mut h = self.header(st, tar::EntryType::Link);
                h.set_size(0);
                return self.emit(&mut h, tar_name, Some(first.as_bytes()), &[], io::empty());
            }
            self.seen.insert(key, self.name(tar_name));
        }
        let mut caps = vec![0u8; 1024];
        let xattrs: Vec<(&str, Vec<u8>)> =
            match rustix::fs::fgetxattr(&f, "security.capability", &mut caps[..]) {
                Ok(n) => {
                    caps.truncate(n);
                    vec![("SCHILY.xattr.security.capability", caps)]
                }
                Err(_) => Vec::new(),
            };
        h.set_size(st.st_size as u64);
        let x: Vec<(&str, &[u8])> = xattrs.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        self.emit(&mut h, tar_name, None, &x, f.take(st.st_size as u64))
    }

    fn header(&self, st: &Stat, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        // Go's archive/tar keeps the file type bits in the mode (040755, 0100644, ...).
        h.set_mode(st.st_mode & 0o177_777);
        let (uid, gid) = self.opts.owner.unwrap_or((st.st_uid, st.st_gid));
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        if let Some(n) = self.names.users.get(&uid) {
            let _ = h.set_username(n);
        }
        if let Some(n) = self.names.groups.get(&gid) {
            let _ = h.set_groupname(n);
        }
        h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        h.set_size(0);
        h
    }

    /// Writes one entry: the name (renamed) and link target go into the header when they fit,
    /// else into a PAX header before it, as Go's archive/tar does.
    fn emit(
        &mut self,
        h: &mut tar::Header,
        tar_name: &str,
        link: Option<&[u8]>,
        xattrs: &[(&str, &[u8])],
        data: impl Read,
    ) -> Result<()> {
        let name = self.name(tar_name);
        if let Some(check) = self.check.as_mut() {
            check(&name, h.entry_type(), link)?;
        }
        let mut pax: Vec<(&str, &[u8])> = xattrs.to_vec();
        {
            let old = h.as_old_mut();
            if name.len() <= old.name.len() {
                old.name = [0; 100];
                old.name[..name.len()].copy_from_slice(name.as_bytes());
            } else {
                pax.push(("path", name.as_bytes()));
                let short = &name.as_bytes()[..old.name.len()];
                old.name.copy_from_slice(short);
            }
            if let Some(l) = link {
                if l.len() <= old.linkname.len() {
                    old.linkname = [0; 100];
                    old.linkname[..l.len()].copy_from_slice(l);
                } else {
                    pax.push(("linkpath", l));
                }
            }
        }
        if !pax.is_empty() {
            let mut body = Vec::new();
            for (k, v) in &pax {
                // "LEN KEY=VALUE\n", LEN counting itself.
                let rest = k.len() + v.len() + 3;
                let mut len = rest + rest.to_string().len();
                if len.to_string().len() + rest != len {
                    len = rest + len.to_string().len();
                }
                body.extend_from_slice(format!("{len} {k}=").as_bytes());
                body.extend_from_slice(v);
                body.push(b'\n');
            }
            let mut x = tar::Header::new_ustar();
            x.set_entry_type(tar::EntryType::XHeader);
            x.set_mode(0o644);
            x.set_size(body.len() as u64);
            let pname = format!("PaxHeaders.0/{}", base(&name));
            let pname = &pname.as_bytes()[..pname.len().min(99)];
            x.as_old_mut().name[..pname.len()].copy_from_slice(pname);
            x.set_cksum();
            self.out.append(&x, body.as_slice())?;
        }
        h.set_cksum();
        self.out.append(h, data)?;
        Ok(())
    }

    fn finish(mut self) -> Result<W> {
        self.out.finish()?;
        Ok(self.out.into_inner()?)
    }
}

/// User and group names by id, for the archive headers. docker's daemon writes a container's
/// archives chrooted into it, so their names come from the container's `/etc/passwd` and
/// `/etc/group`; its client names the host's files from the host's.
#[derive(Default)]
struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    fn parse(passwd: &str, group: &str) -> Names {
        let read = |text: &str| {
            let mut m = HashMap::new();
            for l in text.lines() {
                let f: Vec<&str> = l.split(':').collect();
                if f.len() >= 3
                    && let Ok(id) = f[2].parse::<u32>()
                {
                    m.entry(id).or_insert_with(|| f[0].to_owned());
                }
            }
            m
        };
        Names {
            users: read(passwd),
            groups: read(group),
        }
    }

    fn host() -> Names {
        let r = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Names::parse(&r("/etc/passwd"), &r("/etc/group"))
    }

    fn of(root: &Root) -> Names {
        let r = |p: &str| root.read_to_string(p, 4 << 20).unwrap_or_default();
        Names::parse(&r("/etc/passwd"), &r("/etc/group"))
    }
}

/// Archives `name` of `dir` (or the directory `dir` itself) as `tar_name` into `out`.
fn write_source<W: Write>(
    w: &mut TarWriter<'_, W>,
    dir: &OwnedFd,
    name: Option<&[u8]>,
    tar_name: &str,
) -> Result<()> {
    match name {
        Some(n) => w.add_at(dir, n, tar_name),
        None => {
            let st = rustix::fs::fstat(dir).map_err(ioe)?;
            w.add_dir(dir, &st, tar_name)
        }
    }
}

/// What docker's extraction refuses of an entry, checked before it is written: a directory
/// replaced by a non-directory or the other way (`NoOverwriteDirNonDir`; symlinks on the way
/// resolve inside `dest`, as the unpacker resolves them, the entry itself is not followed), and
/// a symlink whose target, taken from its directory, leaves the extraction directory.
fn entry_check(
    dest: &Root,
    shown_dest: &str,
    name: &str,
    kind: tar::EntryType,
    link: Option<&[u8]>,
) -> Result<()> {
    let c = clean(name);
    let rel = c.trim_start_matches('/');
    if rel.is_empty() || rel == "." {
        return Ok(());
    }
    let path = if shown_dest == "/" {
        format!("/{rel}")
    } else {
        format!("{shown_dest}/{rel}")
    };
    if kind == tar::EntryType::Symlink
        && let Some(t) = link
    {
        let t = String::from_utf8_lossy(t);
        let target = clean(&format!("{}/{t}", dir(&path)));
        if !target.starts_with(shown_dest) {
            bail!("invalid symlink {path:?} -> {t:?}");
        }
    }
    let is_dir = kind == tar::EntryType::Directory;
    let (d, b) = (dir(rel), base(rel));
    let Ok(parent) = dest.open_dir(&d) else {
        return Ok(());
    };
    let Ok(st) = confined::lstat_at(&parent, b.as_bytes()) else {
        return Ok(());
    };
    let existing_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
    if existing_dir && !is_dir {
        bail!("cannot overwrite directory {path:?} with non-directory {shown_dest:?}");
    }
    if !existing_dir && is_dir {
        bail!("cannot overwrite non-directory {path:?} with directory {shown_dest:?}");
    }
    Ok(())
}

/// Streams what `produce` writes, as a tar, into the confined unpacker extracting into `dest`;
/// the producer's error comes first (the unpacker's is then only that its input stopped).
fn pipe_into(
    dest: OwnedFd,
    chown: bool,
    produce: impl FnOnce(io::PipeWriter) -> Result<()> + Send,
) -> Result<()> {
    let (r, w) = io::pipe().ctx("creating a pipe")?;
    std::thread::scope(|s| {
        let producer = s.spawn(move || produce(w));
        let unpacked = unpack_layer_at(
            io::BufReader::with_capacity(256 * 1024, r),
            dest,
            &UnpackOptions {
                whiteouts: Whiteouts::Keep,
                max_size: u64::MAX,
                chown,
            },
        );
        let produced = producer
            .join()
            .map_err(|_| EngineError::Invalid("the archive thread panicked".into()))?;
        produced?;
        unpacked.map_err(|e| EngineError::Invalid(e.to_string()))?;
        Ok(())
    })
}

// ---- cp ----

/// `hoist cp CONTAINER:SRC DEST` (`dest` `-`: a tar stream to stdout): what was copied.
pub fn copy_out(
    store: &ContainerStore,
    container: &str,
    src: &str,
    dest: &str,
    follow: bool,
) -> Result<Copied> {
    let fs = ContainerFs::open(store, container, true)?;
    let r = copy_from(&fs, src, dest, follow);
    fs.close(false)?;
    r
}

/// `hoist cp SRC CONTAINER:DEST` (`src` `-`: a tar stream from stdin): what was copied.
pub fn copy_in(
    store: &ContainerStore,
    container: &str,
    src: &str,
    dest: &str,
    follow: bool,
    archive: bool,
) -> Result<Copied> {
    let fs = ContainerFs::open(store, container, true)?;
    let r = copy_to(&fs, src, dest, follow, archive);
    fs.close(true)?;
    r
}

/// What a copy wrote (the archive's bytes) and where, for docker's last line.
pub type Copied = Option<(u64, String)>;

/// Counts what goes through.
struct Counter<W> {
    inner: W,
    n: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<W: Write> Write for Counter<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.n
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The absolute form of a local path, its trailing `/` or `/.` kept (docker's
/// `resolveLocalPath`).
fn local_abs(p: &str) -> Result<String> {
    let abs = if p.starts_with('/') {
        clean(p)
    } else {
        let cwd = std::env::current_dir().ctx("the current directory")?;
        clean(&format!("{}/{p}", cwd.display()))
    };
    Ok(preserve_trailing(&abs, p))
}

fn container_abs(p: &str) -> String {
    preserve_trailing(&clean(&format!("/{p}")), p)
}

/// `hoist cp CONTAINER:SRC DEST`.
fn copy_from(fs: &ContainerFs, src: &str, dest: &str, follow: bool) -> Result<Copied> {
    let dest = if dest == "-" {
        dest.to_owned()
    } else {
        local_abs(dest)?
    };
    validate_output_path(&dest)?;
    let mut src = src.to_owned();
    let mut rebase = String::new();
    if follow {
        let abs = container_abs(&src);
        if let Ok((_, _, st)) = fs.locate(&abs)
            && FileType::from_raw_mode(st.st_mode) == FileType::Symlink
            && let Ok(target) = fs.resolve(&abs)
        {
            let (t, r) = rebase_name(&src, &target);
            src = t;
            rebase = r;
        }
    }
    // The daemon's side: the archive of SRC, its entries named after SRC's last element.
    let abs = container_abs(&src);
    let (dir_fd, name, st) = match fs.locate(&abs) {
        Ok(x) => x,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(fs.not_found(&src)),
        Err(e) => return Err(path_error("lstat", &abs, &e)),
    };
    let src_is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
    let daemon_name = match base(&abs).as_str() {
        "/" => String::new(),
        b => b.to_owned(),
    };
    let mut renames = Vec::new();
    let (dest_dir, chown) = if dest == "-" {
        (None, false)
    } else {
        let (_, mut src_base) = split_dir_entry(&src);
        if !rebase.is_empty() {
            renames.push((src_base.clone(), rebase.clone()));
            src_base = rebase;
        }
        let info = destination_info(&dest)?;
        let (ddir, dbase) = split_dir_entry(&info.path);
        let (extract_into, rename) = prepare_copy(&info, src_is_dir, &src_base, &ddir, &dbase)?;
        if let Some(r) = rename {
            renames.push(r);
        }
        (Some(extract_into), false)
    };
    let fix_root = |v: &mut Vec<(String, String)>| {
        // docker: a rebase of the root ("/") renames the empty prefix.
        for (old, _) in v.iter_mut() {
            if old == "/" {
                old.clear();
            }
        }
    };
    fix_root(&mut renames);
    let opts = TarOpts {
        rebase: renames,
        owner: None,
    };
    match dest_dir {
        None => {
            let stdout = io::stdout().lock();
            let mut w = TarWriter::new(io::BufWriter::with_capacity(256 * 1024, stdout), &opts);
            w.names = Names::of(&fs.root);
            write_source(&mut w, &dir_fd, name.as_deref(), &daemon_name)?;
            w.finish()?.flush().ctx("writing to stdout")?;
            Ok(None)
        }
        Some(into) => {
            let dest_root =
                Root::open(Path::new(&into)).map_err(|e| path_error("open", &into, &e))?;
            let check_root = Root::from_fd(
                rustix::io::dup(dest_root.fd()).map_err(ioe)?,
                PathBuf::from(&into),
            );
            let target = rustix::io::dup(dest_root.fd()).map_err(ioe)?;
            let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let n = count.clone();
            pipe_into(target, chown, |pw| {
                let pw = Counter { inner: pw, n };
                let mut check = |n: &str, k: tar::EntryType, l: Option<&[u8]>| {
                    entry_check(&check_root, &into, n, k, l)
                };
                let mut w = TarWriter::new(io::BufWriter::with_capacity(256 * 1024, pw), &opts);
                w.names = Names::of(&fs.root);
                w.check = Some(&mut check);
                write_source(&mut w, &dir_fd, name.as_deref(), &daemon_name)?;
                w.finish()?.flush()?;
                Ok(())
            })?;
            Ok(Some((
                count.load(std::sync::atomic::Ordering::Relaxed),
                dest,
            )))
        }
    }
}

/// docker's `command.ValidateOutputPath`.
fn validate_output_path(p: &str) -> Result<()> {
    if p == "-" {
        return Ok(());
    }
    let d = dir(&clean(p));
    if d != "." && std::fs::metadata(&d).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        bail!("invalid output path: directory {d:?} does not exist");
    }
    match std::fs::metadata(p) {
        Ok(md) if md.is_dir() || md.is_file() => Ok(()),
        Ok(md) => {
            use std::os::unix::fs::FileTypeExt;
            let what = if md.file_type().is_block_device() || md.file_type().is_char_device() {
                "got a device"
            } else {
                "got an irregular file"
            };
            bail!("invalid output path: {p:?} must be a directory or a regular file: {what}")
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(path_error("stat", p, &e)),
    }
}

/// docker's `CopyInfo` of a destination.
struct DestInfo {
    path: String,
    exists: bool,
    is_dir: bool,
}

/// docker's `CopyInfoDestinationPath`, on the host: symlinks at the end followed (at most 10),
/// a missing destination needs an existing parent directory.
fn destination_info(p: &str) -> Result<DestInfo> {
    let mut path = p.to_owned();
    let mut md = std::fs::symlink_metadata(&path);
    let mut n = 0;
    while let Ok(m) = &md
        && m.file_type().is_symlink()
    {
        if n > 10 {
            bail!("too many symlinks in {p}");
        }
        n += 1;
        let t = std::fs::read_link(&path).map_err(|e| path_error("readlink", &path, &e))?;
        let t = t.to_string_lossy().into_owned();
        path = if t.starts_with('/') {
            t
        } else {
            clean(&format!("{}/{t}", split_dir_entry(&path).0))
        };
        md = std::fs::symlink_metadata(&path);
    }
    match md {
        Ok(m) => Ok(DestInfo {
            path,
            exists: true,
            is_dir: m.is_dir(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let (parent, _) = split_dir_entry(&path);
            let pm = std::fs::metadata(&parent).map_err(|e| path_error("stat", &parent, &e))?;
            if !pm.is_dir() {
                bail!("not a directory");
            }
            Ok(DestInfo {
                path,
                exists: false,
                is_dir: false,
            })
        }
        Err(e) => Err(path_error("lstat", &path, &e)),
    }
}

/// docker's `PrepareArchiveCopy`: the directory to extract into and the renaming of the
/// archive's entries (source base -> destination base).
fn prepare_copy(
    dest: &DestInfo,
    src_is_dir: bool,
    src_base: &str,
    dest_dir: &str,
    dest_base: &str,
) -> Result<(String, Option<(String, String)>)> {
    let rename = Some((src_base.to_owned(), dest_base.to_owned()));
    if dest.exists && dest.is_dir {
        return Ok((dest.path.clone(), None));
    }
    if dest.exists && src_is_dir {
        bail!("cannot copy directory");
    }
    if dest.exists || src_is_dir {
        return Ok((dest_dir.to_owned(), rename));
    }
    if asserts_directory(&dest.path) {
        bail!("no such directory");
    }
    Ok((dest_dir.to_owned(), rename))
}

/// `hoist cp SRC CONTAINER:DEST`.
fn copy_to(fs: &ContainerFs, src: &str, dest: &str, follow: bool, archive: bool) -> Result<Copied> {
    let src = if src == "-" {
        src.to_owned()
    } else {
        local_abs(src)?
    };
    // The destination as the container sees it: a symlink at its end followed once (its
    // target fully resolved in the container).
    let mut info = DestInfo {
        path: dest.to_owned(),
        exists: false,
        is_dir: false,
    };
    let mut st = fs.locate(&container_abs(dest));
    if let Ok((_, _, s)) = &st
        && FileType::from_raw_mode(s.st_mode) == FileType::Symlink
    {
        let target = fs
            .resolve(&container_abs(dest))
            .map_err(|e| path_error("lstat", dest, &e))?;
        info.path = target;
        st = fs.locate(&container_abs(&info.path));
        if let Ok((_, _, s)) = &st {
            let ft = FileType::from_raw_mode(s.st_mode);
            if matches!(ft, FileType::BlockDevice | FileType::CharacterDevice) {
                bail!(
                    "destination \"{}:{dest}\" must be a directory or a regular file: got a device",
                    fs.name
                );
            }
        }
    }
    if let Ok((_, _, s)) = &st {
        info.exists = true;
        info.is_dir = FileType::from_raw_mode(s.st_mode) == FileType::Directory;
    }
    let owner = if archive { container_user(fs)? } else { None };
    if src == "-" {
        if !info.is_dir {
            bail!("destination \"{}:{dest}\" must be a directory", fs.name);
        }
        let into = extraction_point(fs, &info.path)?;
        let shown = fs.path_of(&into).unwrap_or_else(|_| info.path.clone());
        check_read_only(fs, &shown)?;
        return extract_stdin(into, &shown, owner).map(|()| None);
    }
    // The source on the host (docker's `CopyInfoSourcePath`).
    let (resolved, rebase) = host_source(&src, follow)?;
    let md =
        std::fs::symlink_metadata(&resolved).map_err(|e| path_error("lstat", &resolved, &e))?;
    let (sdir, sbase) = split_dir_entry(&resolved);
    let mut renames = Vec::new();
    // TarResourceRebase: the source's base renamed to the name asked for.
    if !rebase.is_empty() {
        renames.push((sbase.clone(), rebase.clone()));
    }
    let src_base = if rebase.is_empty() {
        sbase.clone()
    } else {
        rebase
    };
    let (ddir, dbase) = split_dir_entry(&info.path);
    let (extract_dir, rename) = prepare_copy(&info, md.is_dir(), &src_base, &ddir, &dbase)?;
    if let Some(r) = rename {
        renames.push(r);
    }
    for (old, _) in renames.iter_mut() {
        if old == "/" {
            old.clear();
        }
    }
    let into = extraction_point(fs, &extract_dir)?;
    let shown = fs.path_of(&into).unwrap_or(extract_dir);
    check_read_only(fs, &shown)?;
    let host = Root::open(Path::new(&sdir)).map_err(|e| path_error("open", &sdir, &e))?;
    let host_dir = rustix::io::dup(host.fd()).map_err(ioe)?;
    let name = (sbase != "." && sbase != "/").then(|| sbase.clone().into_bytes());
    let tar_name = sbase;
    let opts = TarOpts {
        rebase: renames,
        owner,
    };
    let check_root = Root::from_fd(rustix::io::dup(&into).map_err(ioe)?, PathBuf::from(&shown));
    let root_user = rustix::process::geteuid().is_root();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let n = count.clone();
    let shown_dest = format!("{}:{}", fs.name, info.path);
    pipe_into(into, root_user, |pw| {
        let pw = Counter { inner: pw, n };
        let mut check = |n: &str, k: tar::EntryType, l: Option<&[u8]>| {
            entry_check(&check_root, &shown, n, k, l)
        };
        let mut w = TarWriter::new(io::BufWriter::with_capacity(256 * 1024, pw), &opts);
        w.names = Names::host();
        w.check = Some(&mut check);
        write_source(&mut w, &host_dir, name.as_deref(), &tar_name)?;
        w.finish()?.flush()?;
        Ok(())
    })?;
    Ok(Some((
        count.load(std::sync::atomic::Ordering::Relaxed),
        shown_dest,
    )))
}

/// The directory of the container an archive is extracted into: every symlink followed inside
/// the root (docker's `GetResourcePath` of the last element too).
fn extraction_point(fs: &ContainerFs, path: &str) -> Result<OwnedFd> {
    let abs = container_abs(path);
    // O_PATH first: opening a fifo planted there for reading would block.
    match fs.root.open_in(&abs, OFlags::PATH) {
        Ok(fd) => {
            let st = rustix::fs::fstat(&fd).map_err(ioe)?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                bail!("extraction point is not a directory");
            }
            fs.root
                .open_dir(&abs)
                .map_err(|e| path_error("open", &abs, &e))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(fs.not_found(path)),
        Err(e) if e.raw_os_error() == Some(libc_enotdir()) => {
            bail!("extraction point is not a directory")
        }
        Err(e) => Err(path_error("lstat", &abs, &e)),
    }
}

fn libc_enotdir() -> i32 {
    Errno::NOTDIR.raw_os_error()
}

/// docker's refusals of a write at `path` (inside the container): a read-only volume, or a
/// read-only rootfs outside any volume.
fn check_read_only(fs: &ContainerFs, path: &str) -> Result<()> {
    match volume_of(&fs.container, path) {
        Some(m) if m.read_only => bail!("mounted volume is marked read-only"),
        Some(_) => Ok(()),
        None if fs.container.config.options.read_only => {
            bail!("container rootfs is marked read-only")
        }
        None => Ok(()),
    }
}

/// `cp -a`: docker gives every entry the container's user (and its primary group) when the
/// container has one; otherwise the source's owners are kept, as without `-a`. The user is
/// looked up in the container's `/etc/passwd` and `/etc/group`.
fn container_user(fs: &ContainerFs) -> Result<Option<(u32, u32)>> {
    let user = fs.container.config.options.user.clone().or_else(|| {
        fs.container
            .config
            .image_config
            .pointer("/config/User")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    });
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u.to_owned(), Some(g.to_owned())),
        None => (user.clone(), None),
    };
    let passwd = fs
        .root
        .read_to_string("/etc/passwd", 4 << 20)
        .unwrap_or_default();
    let group = fs
        .root
        .read_to_string("/etc/group", 4 << 20)
        .unwrap_or_default();
    let entry = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && (f[0] == u || f[2] == u))
            .then(|| (f[2].parse::<u32>().ok(), f[3].parse::<u32>().ok()))
    });
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => entry.and_then(|e| e.0).or_invalid(|| {
            format!("unable to find user {u}: no matching entries in passwd file")
        })?,
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 3 && f[0] == g).then(|| f[2].parse::<u32>().ok())
                })
                .flatten()
                .or_invalid(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        },
        None => entry.and_then(|e| e.1).unwrap_or(uid),
    };
    Ok(Some((uid, gid)))
}

/// docker's `ResolveHostSourcePath`: with `-L` the whole path's symlinks are followed (and the
/// archive renamed back to the name asked for), else only those of its directory.
fn host_source(path: &str, follow: bool) -> Result<(String, String)> {
    if follow {
        let r = std::fs::canonicalize(path).map_err(|e| path_error("lstat", path, &e))?;
        let r = r.to_string_lossy().into_owned();
        return Ok(rebase_name(path, &r));
    }
    let (d, b) = split(path);
    let rd = std::fs::canonicalize(if d.is_empty() { "." } else { d }).map_err(|e| {
        // Go's EvalSymlinks says only this of a file with a `/` after it.
        if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) {
            EngineError::Invalid("not a directory".into())
        } else {
            path_error("lstat", &clean(d), &e)
        }
    })?;
    let rd = rd.to_string_lossy().into_owned();
    let resolved = if rd == "/" {
        format!("/{b}")
    } else {
        format!("{rd}/{b}")
    };
    let rebase = if path.ends_with('/') && base(path) != base(&resolved) {
        base(path)
    } else {
        String::new()
    };
    Ok((resolved, rebase))
}

/// `hoist cp - CONTAINER:DIR`: the tar on stdin, extracted by the confined unpacker; each entry
/// is checked first as docker's daemon checks it (a directory never replaced by a
/// non-directory, nor the other way), and passed on, byte for byte, only then.
fn extract_stdin(into: OwnedFd, shown: &str, owner: Option<(u32, u32)>) -> Result<()> {
    let check_root = Root::from_fd(rustix::io::dup(&into).map_err(ioe)?, PathBuf::from(shown));
    let shown = shown.to_owned();
    let root_user = rustix::process::geteuid().is_root();
    pipe_into(into, root_user, move |mut pw| {
        let buf = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let rec = Recorder {
            inner: io::stdin().lock(),
            buf: buf.clone(),
        };
        let mut archive = tar::Archive::new(rec);
        {
            let entries = archive.entries().ctx("reading the archive")?;
            for e in entries {
                let mut e = e.ctx("reading the archive")?;
                if let Some((uid, gid)) = owner {
                    // `cp -a` into a container with a user: every entry is the user's. The
                    // entry's own header is the last block read so far; it is rewritten.
                    let mut b = buf.borrow_mut();
                    let n = b.len();
                    if n < 512 || b[n - 512..] != e.header().as_bytes()[..] {
                        bail!("reading the archive: an entry header could not be rewritten");
                    }
                    let mut h = e.header().clone();
                    h.set_uid(u64::from(uid));
                    h.set_gid(u64::from(gid));
                    h.set_cksum();
                    b[n - 512..].copy_from_slice(h.as_bytes());
                }
                let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                let link = e.link_name_bytes().map(|l| l.into_owned());
                entry_check(
                    &check_root,
                    &shown,
                    &name,
                    e.header().entry_type(),
                    link.as_deref(),
                )?;
                io::copy(&mut e, &mut io::sink()).ctx("reading the archive")?;
                // This entry's headers and data go to the unpacker.
                let b = std::mem::take(&mut *buf.borrow_mut());
                pw.write_all(&b)?;
            }
        }
        let mut rest = archive.into_inner();
        let b = std::mem::take(&mut *buf.borrow_mut());
        pw.write_all(&b)?;
        io::copy(&mut rest.inner, &mut pw)?;
        Ok(())
    })
}

/// Keeps what is read, to pass it on.
struct Recorder<R> {
    inner: R,
    buf: std::rc::Rc<std::cell::RefCell<Vec<u8>>>,
}

impl<R: Read> Read for Recorder<R> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(b)?;
        self.buf.borrow_mut().extend_from_slice(&b[..n]);
        Ok(n)
    }
}

// ---- export ----

/// `hoist export`: the container's merged filesystem as a tar stream to `output` (else
/// stdout), entries named as docker's (`bin/`, `bin/sh`, no entry for the root), written as the
/// tree is walked.
pub fn export(store: &ContainerStore, container: &str, output: Option<&Path>) -> Result<()> {
    let fs = ContainerFs::open(store, container, false)?;
    let opts = TarOpts {
        rebase: Vec::new(),
        owner: None,
    };
    let root = fs.root.open_dir("/").ctx("opening the container's root")?;
    let r = (|| -> Result<()> {
        let out: Box<dyn Write> = match output {
            Some(p) => Box::new(File::create(p).with_ctx(|| format!("creating {}", p.display()))?),
            None => Box::new(io::stdout().lock()),
        };
        let mut w = TarWriter::new(io::BufWriter::with_capacity(256 * 1024, out), &opts);
        w.names = Names::of(&fs.root);
        w.export_children(&root)?;
        w.finish()?.flush().ctx("writing the archive")?;
        Ok(())
    })();
    fs.close(false)?;
    r
}

#[cfg(test)]
mod tests;
