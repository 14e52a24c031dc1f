//! The container's filesystem, set up by its init in its own mount namespace: the rootfs bind,
//! the spec's mounts, /dev, pivot_root, masked and read-only paths.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

/// What a step of the container's filesystem setup gives: an error is a message naming what failed.
pub(crate) type SetupResult<T> = Result<T, String>;

pub(crate) trait Ctx<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> SetupResult<T>;
}
impl<T> Ctx<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> SetupResult<T> {
        self.map_err(|e| format!("{}: {e}", what()))
    }
}
impl<T> Ctx<T> for nix::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> SetupResult<T> {
        self.map_err(|e| format!("{}: {}", what(), io::Error::from(e)))
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

/// mount(2) with optional source, fstype and data.
pub(crate) fn mount(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src_c = src.map(cstr);
    let target_c = cstr(target);
    let fs_c = fstype.map(|f| CString::new(f).unwrap_or_default());
    let data_c = data.map(|d| CString::new(d).unwrap_or_default());
    // SAFETY: every pointer is a NUL-terminated string alive for the call, or null.
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::mount(
            src_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            target_c.as_ptr(),
            fs_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            data_c
                .as_ref()
                .map_or(std::ptr::null(), |c| c.as_ptr().cast()),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn umount2(target: &Path, flags: i32) -> io::Result<()> {
    let c = cstr(target);
    // SAFETY: c is a NUL-terminated string.
    #[allow(unsafe_code)]
    let r = unsafe { libc::umount2(c.as_ptr(), flags) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Parsed mount options: flags to set, flags to clear (for remounts), propagation, data.
#[derive(Default)]
struct Opts {
    flags: libc::c_ulong,
    clear: libc::c_ulong,
    propagation: Vec<libc::c_ulong>,
    data: Vec<String>,
    bind: bool,
    rec: bool,
}

fn parse_options(options: &[String]) -> Opts {
    let mut o = Opts::default();
    for opt in options {
        let (set, clr): (libc::c_ulong, libc::c_ulong) = match opt.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "mand" => (libc::MS_MANDLOCK, 0),
            "nomand" => (0, libc::MS_MANDLOCK),
            "atime" => (0, libc::MS_NOATIME),
            "noatime" => (libc::MS_NOATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "bind" => {
                o.bind = true;
                (0, 0)
            }
            "rbind" => {
                o.bind = true;
                o.rec = true;
                (0, 0)
            }
            "private" => {
                o.propagation.push(libc::MS_PRIVATE);
                (0, 0)
            }
            "rprivate" => {
                o.propagation.push(libc::MS_PRIVATE | libc::MS_REC);
                (0, 0)
            }
            "shared" => {
                o.propagation.push(libc::MS_SHARED);
                (0, 0)
            }
            "rshared" => {
                o.propagation.push(libc::MS_SHARED | libc::MS_REC);
                (0, 0)
            }
            "slave" => {
                o.propagation.push(libc::MS_SLAVE);
                (0, 0)
            }
            "rslave" => {
                o.propagation.push(libc::MS_SLAVE | libc::MS_REC);
                (0, 0)
            }
            "unbindable" => {
                o.propagation.push(libc::MS_UNBINDABLE);
                (0, 0)
            }
            "runbindable" => {
                o.propagation.push(libc::MS_UNBINDABLE | libc::MS_REC);
                (0, 0)
            }
            // runtime-only hints that carry no mount meaning here
            "tmpcopyup" | "defaults" | "" => (0, 0),
            other => {
                o.data.push(other.to_string());
                (0, 0)
            }
        };
        o.flags = (o.flags | set) & !clr;
        o.clear |= clr;
    }
    o
}

/// Resolves `path` (absolute, as seen in the container) inside `root`, following symlinks as if
/// `root` were `/`: the result never leaves `root`. Components that don't exist are appended.
pub(crate) fn resolve_in_root(root: &Path, path: &Path) -> SetupResult<PathBuf> {
    let mut todo: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut cur: Vec<std::ffi::OsString> = Vec::new();
    let mut links = 0;
    while let Some(comp) = todo.pop() {
        if comp == ".." {
            cur.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(cur.iter());
        candidate.push(&comp);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(format!(
                        "resolve {} in the rootfs: too many symlinks",
                        path.display()
                    ));
                }
                let target = std::fs::read_link(&candidate)
                    .ctx(|| format!("readlink {}", candidate.display()))?;
                if target.is_absolute() {
                    cur.clear();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => todo.push(n.to_os_string()),
                        Component::ParentDir => todo.push("..".into()),
                        _ => {}
                    }
                }
            }
            Ok(_) => cur.push(comp),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                cur.push(comp);
                while let Some(rest) = todo.pop() {
                    if rest == ".." {
                        cur.pop();
                    } else {
                        cur.push(rest);
                    }
                }
            }
            Err(e) => return Err(format!("stat {}: {e}", candidate.display())),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(cur.iter());
    Ok(out)
}

fn mkdir_all(p: &Path) -> SetupResult<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(p)
        .ctx(|| format!("mkdir {}", p.display()))
}

/// Creates `dest` as an empty file (if `file`) or a directory, with its parents.
fn ensure_target(dest: &Path, file: bool) -> SetupResult<()> {
    if file {
        if let Some(parent) = dest.parent() {
            mkdir_all(parent)?;
        }
        match std::fs::symlink_metadata(dest) {
            Ok(_) => Ok(()),
            Err(_) => std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dest)
                .map(drop)
                .ctx(|| format!("create mount point {}", dest.display())),
        }
    } else {
        mkdir_all(dest)
    }
}

/// MS_* flags of the mount at `p` that must be kept on a bind remount (locked in a user ns).
fn locked_flags(p: &Path) -> libc::c_ulong {
    let Ok(st) = nix::sys::statvfs::statvfs(p) else {
        return 0;
    };
    use nix::sys::statvfs::FsFlags;
    let f = st.flags();
    let mut out = 0;
    for (ff, mf) in [
        (FsFlags::ST_NOSUID, libc::MS_NOSUID),
        (FsFlags::ST_NODEV, libc::MS_NODEV),
        (FsFlags::ST_NOEXEC, libc::MS_NOEXEC),
        (FsFlags::ST_RDONLY, libc::MS_RDONLY),
        (FsFlags::ST_NOATIME, libc::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, libc::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if f.contains(ff) {
            out |= mf;
        }
    }
    out
}

/// Remounts the bind mount at `p` with `flags` (MS_BIND|MS_REMOUNT added), keeping locked flags
/// when the kernel insists.
fn remount_bind(p: &Path, flags: libc::c_ulong) -> SetupResult<()> {
    let base = libc::MS_BIND | libc::MS_REMOUNT;
    match mount(None, p, None, base | flags, None) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let keep = locked_flags(p) & !libc::MS_RDONLY;
            mount(None, p, None, base | flags | keep, None)
                .ctx(|| format!("remount {} with flags {flags:#x}", p.display()))
        }
        Err(e) => Err(format!(
            "remount {} with flags {flags:#x}: {e}",
            p.display()
        )),
    }
}

/// What the init needs to know to set up the filesystem.
pub(crate) struct FsContext<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub console: Option<&'a Path>,
    pub userns: bool,
    /// /proc/self/cgroup as read before a cgroup namespace was entered (host paths).
    pub host_cgroups: &'a str,
}

/// Everything up to and including pivot_root.
pub(crate) fn setup(ctx: &FsContext<'_>) -> SetupResult<()> {
    let linux = ctx.spec.linux().as_ref();
    // Nothing we mount may propagate back to the host.
    let prop = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        None | Some("") | Some("rprivate") | Some("private") => libc::MS_PRIVATE,
        Some("rslave") | Some("slave") => libc::MS_SLAVE,
        Some("rshared") | Some("shared") => libc::MS_SHARED,
        Some("runbindable") | Some("unbindable") => libc::MS_UNBINDABLE,
        Some(other) => return Err(format!("unknown linux.rootfsPropagation {other:?}")),
    };
    let make_private = if prop == libc::MS_SHARED {
        libc::MS_PRIVATE
    } else {
        prop
    };
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | make_private,
        None,
    )
    .ctx(|| "make / private".into())?;
    let rootfs = ctx.rootfs;
    mount(
        Some(rootfs),
        rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .ctx(|| format!("bind the rootfs {}", rootfs.display()))?;

    let mounts = ctx.spec.mounts().as_deref().unwrap_or(&[]);
    let mut dev_mounted = false;
    for m in mounts {
        if m.destination() == Path::new("/dev") {
            dev_mounted = true;
        }
        mount_one(ctx, m)?;
    }
    if dev_mounted {
        let devices = linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]);
        setup_dev(ctx, devices)?;
    }
    if let Some(console) = ctx.console {
        let dest = rootfs.join("dev/console");
        ensure_target(&dest, true)?;
        mount(Some(console), &dest, None, libc::MS_BIND, None)
            .ctx(|| format!("bind {} to /dev/console", console.display()))?;
    }
    // The process's cwd is created now: the root may become read-only below.
    if let Some(p) = ctx.spec.process().as_ref()
        && p.cwd().is_absolute()
    {
        let cwd = resolve_in_root(rootfs, p.cwd())?;
        if std::fs::symlink_metadata(&cwd).is_err() {
            mkdir_all(&cwd)?;
        }
    }
    if prop == libc::MS_SHARED {
        mount(None, rootfs, None, libc::MS_SHARED | libc::MS_REC, None)
            .ctx(|| "make the rootfs shared".into())?;
    }
    pivot_root(rootfs)
}

/// After pivot_root (and the sysctls): the read-only root, read-only and masked paths.
pub(crate) fn finish(ctx: &FsContext<'_>) -> SetupResult<()> {
    let linux = ctx.spec.linux().as_ref();
    let readonly_root = ctx.spec.root().as_ref().and_then(|r| r.readonly()) == Some(true);
    if readonly_root {
        remount_bind(Path::new("/"), libc::MS_RDONLY | libc::MS_REC)?;
    }
    if let Some(l) = linux {
        for p in l.readonly_paths().iter().flatten() {
            readonly_path(Path::new(p))?;
        }
        for p in l.masked_paths().iter().flatten() {
            mask_path(Path::new(p))?;
        }
    }
    Ok(())
}

fn mount_one(ctx: &FsContext<'_>, m: &Mount) -> SetupResult<()> {
    let dest = resolve_in_root(ctx.rootfs, m.destination())?;
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().as_deref().unwrap_or("");
    let data = (!opts.data.is_empty()).then(|| opts.data.join(","));
    if opts.bind || typ == "bind" {
        let src = m
            .source()
            .as_ref()
            .ok_or_else(|| format!("bind mount {} has no source", m.destination().display()))?;
        let src = if src.is_absolute() {
            src.clone()
        } else {
            ctx.bundle.join(src)
        };
        let meta = std::fs::metadata(&src).ctx(|| format!("bind source {}", src.display()))?;
        ensure_target(&dest, !meta.is_dir())?;
        let mut flags = libc::MS_BIND;
        if opts.rec {
            flags |= libc::MS_REC;
        }
        mount(Some(&src), &dest, None, flags, None)
            .ctx(|| format!("bind {} to {}", src.display(), m.destination().display()))?;
        let extra = opts.flags
            & (libc::MS_RDONLY
                | libc::MS_NOSUID
                | libc::MS_NODEV
                | libc::MS_NOEXEC
                | libc::MS_NOATIME
                | libc::MS_NODIRATIME
                | libc::MS_RELATIME
                | libc::MS_STRICTATIME);
        if extra != 0 {
            remount_bind(&dest, extra)?;
        }
    } else if typ == "cgroup" {
        mount_cgroup_v1(ctx, &dest, &opts)?;
    } else {
        ensure_target(&dest, false)?;
        let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
        let fstype = if typ.is_empty() { None } else { Some(typ) };
        let r = mount(Some(&source), &dest, fstype, opts.flags, data.as_deref());
        match r {
            Ok(()) => {}
            // sysfs can't be mounted in a user namespace without a network namespace of its
            // own: bind the host's read-only instead (as runc does).
            Err(e) if typ == "sysfs" && e.raw_os_error() == Some(libc::EPERM) => {
                mount(
                    Some(Path::new("/sys")),
                    &dest,
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )
                .ctx(|| "bind /sys".into())?;
                remount_bind(&dest, opts.flags | libc::MS_RDONLY)?;
            }
            Err(e) => {
                return Err(format!("mount {typ} on {}: {e}", m.destination().display()));
            }
        }
    }
    for p in &opts.propagation {
        mount(None, &dest, None, *p, None)
            .ctx(|| format!("set propagation of {}", m.destination().display()))?;
    }
    Ok(())
}

/// A `cgroup` mount on cgroup v1: a tmpfs with the container's own cgroup directory of each
/// hierarchy bound at /<dest>/<controller> (the container sees only its cgroup).
fn mount_cgroup_v1(ctx: &FsContext<'_>, dest: &Path, opts: &Opts) -> SetupResult<()> {
    ensure_target(dest, false)?;
    let root = Path::new("/sys/fs/cgroup");
    if super::cgroups::is_cgroup2(root) {
        mount(
            Some(Path::new("cgroup2")),
            dest,
            Some("cgroup2"),
            opts.flags,
            None,
        )
        .ctx(|| "mount cgroup2".into())?;
        return Ok(());
    }
    mount(
        Some(Path::new("tmpfs")),
        dest,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("mode=755"),
    )
    .ctx(|| format!("mount tmpfs on {}", dest.display()))?;
    for line in ctx.host_cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(cg)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if ctrls.is_empty() {
            continue;
        }
        let name = ctrls.strip_prefix("name=").unwrap_or(ctrls);
        let first = name.split(',').next().unwrap_or(name);
        let host = root.join(first).join(cg.trim_start_matches('/'));
        if !host.is_dir() {
            continue;
        }
        let target = dest.join(first);
        ensure_target(&target, false)?;
        mount(
            Some(&host),
            &target,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .ctx(|| format!("bind {}", host.display()))?;
        remount_bind(
            &target,
            (opts.flags & libc::MS_RDONLY) | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        )?;
    }
    if opts.flags & libc::MS_RDONLY != 0 {
        mount(
            None,
            dest,
            None,
            libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some("mode=755"),
        )
        .ctx(|| format!("remount {} read-only", dest.display()))?;
    }
    Ok(())
}

struct Dev<'a> {
    path: &'a str,
    kind: LinuxDeviceType,
    major: i64,
    minor: i64,
    mode: u32,
    uid: u32,
    gid: u32,
}

const DEFAULT_DEVICES: [(&str, i64, i64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

fn setup_dev(ctx: &FsContext<'_>, devices: &[LinuxDevice]) -> SetupResult<()> {
    let mut all: Vec<Dev<'_>> = DEFAULT_DEVICES
        .iter()
        .filter(|(p, _, _)| !devices.iter().any(|d| d.path() == Path::new(p)))
        .map(|&(path, major, minor)| Dev {
            path,
            kind: LinuxDeviceType::C,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect();
    for d in devices {
        all.push(Dev {
            path: d.path().to_str().ok_or("device path is not UTF-8")?,
            kind: d.typ(),
            major: d.major(),
            minor: d.minor(),
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    for d in &all {
        let dest = resolve_in_root(ctx.rootfs, Path::new(d.path))?;
        if let Some(parent) = dest.parent() {
            mkdir_all(parent)?;
        }
        make_device(d, &dest, ctx.userns)?;
    }
    let dev = ctx.rootfs.join("dev");
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let p = dev.join(link);
        if std::fs::symlink_metadata(&p).is_ok() {
            continue;
        }
        std::os::unix::fs::symlink(target, &p).ctx(|| format!("symlink {}", p.display()))?;
    }
    if Path::new("/proc/kcore").exists() {
        let _ = std::os::unix::fs::symlink("/proc/kcore", dev.join("core"));
    }
    Ok(())
}

fn make_device(d: &Dev<'_>, dest: &Path, userns: bool) -> SetupResult<()> {
    if let Ok(m) = std::fs::symlink_metadata(dest)
        && (m.file_type().is_char_device() || m.file_type().is_block_device())
    {
        return Ok(());
    }
    let kind = match d.kind {
        LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        LinuxDeviceType::A => return Err(format!("device {} of type a", d.path)),
    };
    if !userns {
        let c = cstr(dest);
        let dev = libc::makedev(d.major as u32, d.minor as u32);
        // SAFETY: c is a NUL-terminated path.
        #[allow(unsafe_code)]
        let r = unsafe { libc::mknod(c.as_ptr(), kind | (d.mode & 0o7777), dev) };
        if r == 0 {
            std::os::unix::fs::chown(dest, Some(d.uid), Some(d.gid))
                .ctx(|| format!("chown {}", dest.display()))?;
            std::fs::set_permissions(dest, std::fs::Permissions::from_mode(d.mode & 0o7777))
                .ctx(|| format!("chmod {}", dest.display()))?;
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EPERM) {
            return Err(format!("mknod {}: {e}", d.path));
        }
    }
    // In a user namespace: bind the host's node.
    ensure_target(dest, true)?;
    mount(Some(Path::new(d.path)), dest, None, libc::MS_BIND, None)
        .ctx(|| format!("bind host device {}", d.path))
}

fn pivot_root(rootfs: &Path) -> SetupResult<()> {
    let old = std::fs::File::open("/").ctx(|| "open /".into())?;
    std::env::set_current_dir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
    nix::unistd::pivot_root(".", ".").ctx(|| format!("pivot_root {}", rootfs.display()))?;
    nix::unistd::fchdir(&old).ctx(|| "fchdir old root".into())?;
    mount(
        None,
        Path::new("."),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )
    .ctx(|| "make the old root slave".into())?;
    umount2(Path::new("."), libc::MNT_DETACH).ctx(|| "unmount the old root".into())?;
    std::env::set_current_dir("/").ctx(|| "chdir /".into())?;
    Ok(())
}

fn readonly_path(p: &Path) -> SetupResult<()> {
    match mount(Some(p), p, None, libc::MS_BIND | libc::MS_REC, None) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("bind {} for read-only: {e}", p.display())),
    }
    remount_bind(p, libc::MS_RDONLY | libc::MS_REC | locked_flags(p))
}

fn mask_path(p: &Path) -> SetupResult<()> {
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("stat masked path {}: {e}", p.display())),
    };
    if meta.is_dir() {
        mount(
            Some(Path::new("tmpfs")),
            p,
            Some("tmpfs"),
            libc::MS_RDONLY,
            None,
        )
        .ctx(|| format!("mask {}", p.display()))
    } else {
        mount(Some(Path::new("/dev/null")), p, None, libc::MS_BIND, None)
            .ctx(|| format!("mask {}", p.display()))
    }
}
