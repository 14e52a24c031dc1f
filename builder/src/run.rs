//! `RUN` in a container of the runtime's executor: an OCI bundle (spec from
//! `hoist_runtime::spec::build` with docker's defaults, for the step's args, env, user, working
//! directory and network) over the step's overlay rootfs; stdout and stderr stream to the log.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hoist_runtime::exec::{Executor, Stdio};
use hoist_runtime::spec::{self, BindMount, Network, RunOptions};
use serde_json::{Value, json};

use crate::graph::{LogSink, OpError};

/// Runs a `RUN` step (the runtime's executor in production).
pub trait Runner: Send + Sync {
    /// Runs `request` with `rootfs` as the container's root (an overlay whose upper dir is the
    /// step's new layer). Returns the exit code; output goes to `log`.
    fn run(&self, request: &RunRequest, rootfs: &Path, log: &dyn LogSink) -> Result<i32, OpError>;
}

/// What a `RUN` step runs.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub args: Vec<String>,
    /// `KEY=value`, the image's environment plus build args in scope.
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    /// Host network unless `false`.
    pub network: bool,
    /// `(host path, container path, read-only)` bind mounts (cache, bind, secret mounts).
    pub binds: Vec<(PathBuf, String, bool)>,
    /// Container paths to mount as tmpfs, with their `size=` in bytes.
    pub tmpfs: Vec<(String, Option<u64>)>,
    /// The image config (for `spec` defaults: user resolution and the like).
    pub image_config: Value,
}

/// A [`Runner`] on an [`Executor`].
pub struct ExecutorRunner {
    executor: Arc<dyn Executor>,
    host_limits: BTreeMap<&'static str, u64>,
    cap_last_cap: usize,
    hostname: String,
}

impl ExecutorRunner {
    pub fn new(executor: Arc<dyn Executor>) -> Self {
        ExecutorRunner {
            executor,
            host_limits: spec::host_hard_limits(),
            cap_last_cap: spec::cap_last_cap(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into()),
        }
    }
}

impl Runner for ExecutorRunner {
    fn run(&self, req: &RunRequest, rootfs: &Path, log: &dyn LogSink) -> Result<i32, OpError> {
        let bundle = tempfile::Builder::new().prefix("hoist-run-").tempdir()?;
        let id = hoist_runtime::container::new_id();
        let hosts = bundle.path().join("hosts");
        let hostname = bundle.path().join("hostname");
        let resolv = bundle.path().join("resolv.conf");
        std::fs::write(
            &hosts,
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        )?;
        std::fs::write(&hostname, format!("{}\n", &id[..12]))?;
        let resolv_text = if req.network {
            std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
        } else {
            String::new()
        };
        std::fs::write(&resolv, resolv_text)?;
        // The image's files, symlinks resolved inside the rootfs: an /etc/passwd linked to
        // /etc/shadow reads the image's shadow, never the host's.
        let root = hoist_runtime::confined::Root::open(rootfs)?;
        let passwd = root.read_to_string("etc/passwd", 4 << 20).ok();
        let group = root.read_to_string("etc/group", 4 << 20).ok();
        let opts = RunOptions {
            args: req.args.clone(),
            env: req.env.clone(),
            user: (!req.user.is_empty()).then(|| req.user.clone()),
            workdir: Some(req.cwd.clone()),
            hostname: Some("buildkitsandbox".into()),
            groups_from_group_file_only: true,
            no_hostname_env: true,
            network: if req.network {
                Network::Host
            } else {
                Network::None
            },
            mounts: req
                .binds
                .iter()
                .map(|(s, d, ro)| BindMount {
                    source: s.clone(),
                    destination: d.clone(),
                    read_only: *ro,
                    options: Default::default(),
                })
                .collect(),
            ..RunOptions::default()
        };
        let ctx = spec::Context {
            id: &id,
            rootfs,
            hosts_path: &hosts,
            hostname_path: &hostname,
            resolv_conf_path: &resolv,
            passwd: passwd.as_deref(),
            group: group.as_deref(),
            host_hard_limits: &self.host_limits,
            host_hostname: &self.hostname,
            cap_last_cap: self.cap_last_cap,
            cgroups_path: format!("/hoist-build/{id}"),
        };
        let s = spec::build(None, &opts, &ctx)?;
        let mut value = serde_json::to_value(&s)?;
        for (t, size) in &req.tmpfs {
            let mut options = vec!["nosuid".to_owned(), "nodev".into(), "mode=1777".into()];
            if let Some(size) = size {
                options.push(format!("size={size}"));
            }
            if let Some(m) = value["mounts"].as_array_mut() {
                m.push(json!({"destination": t, "type": "tmpfs", "source": "tmpfs",
                    "options": options}));
            }
        }
        std::fs::write(
            bundle.path().join("config.json"),
            serde_json::to_vec(&value)?,
        )?;
        let (reader, writer) = rustix::pipe::pipe()?;
        let writer2: OwnedFd = writer.try_clone()?;
        let created = self.executor.create(
            &id,
            bundle.path(),
            Stdio::Fds {
                stdin: None,
                stdout: writer,
                stderr: writer2,
            },
        )?;
        let result = (|| -> Result<i32, OpError> {
            self.executor.start(&created)?;
            let mut pipe = std::fs::File::from(reader);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => log.log(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(self.executor.wait(&created)?)
        })();
        let deleted = self.executor.delete(&created);
        let code = result?;
        deleted?;
        Ok(code)
    }
}

// ---------------------------------------------------------------------------------------------
// What `RUN --mount` needs on the host side: cache directories and their locks, confined source
// paths, private copies of secrets, the ssh agent proxy.

/// A lock on a cache mount's directory, held for the RUN (released on drop).
pub(crate) struct CacheLock {
    _file: std::fs::File,
}

/// How a cache mount's directory is made the first time it is used.
pub(crate) struct CacheInit<'a> {
    /// `uid`, `gid`, `mode` as given (applied to the new directory; unset: root, 0755, or the
    /// seed's own when seeded).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
    /// `from`+`source`: a directory (or file, `false`) whose contents seed the new cache: the
    /// stage's root and the path inside it (no symlink in it, from [`resolve_confined`]).
    pub seed: Option<(&'a Path, &'a Path, bool)>,
}

fn lock_path(dir: &Path) -> std::path::PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    dir.with_file_name(name)
}

fn open_lock(dir: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(lock_path(dir))
}

/// The directory of cache mount `base` (`<cache>/mounts/<hash of id>`) for this RUN, made if
/// new, and the lock that keeps it ours per `sharing`: `shared` takes a shared lock (waits only
/// while a `locked` user holds it), `locked` an exclusive one (a second user waits until the RUN
/// ends), `private` the first of `base`, `base.1`, `base.2`, ... whose exclusive lock is free.
pub(crate) fn cache_dir(
    base: &Path,
    sharing: crate::dockerfile::CacheSharing,
    init: &CacheInit<'_>,
) -> Result<(std::path::PathBuf, CacheLock), OpError> {
    use crate::dockerfile::CacheSharing;
    use rustix::fs::{FlockOperation, flock};
    if let Some(parent) = base.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let (dir, file) = match sharing {
        CacheSharing::Shared | CacheSharing::Locked => {
            let file = open_lock(base)?;
            let op = if sharing == CacheSharing::Shared {
                FlockOperation::LockShared
            } else {
                FlockOperation::LockExclusive
            };
            flock(&file, op).map_err(std::io::Error::from)?;
            (base.to_path_buf(), file)
        }
        CacheSharing::Private => {
            let mut n = 0usize;
            loop {
                let dir = if n == 0 {
                    base.to_path_buf()
                } else {
                    let mut name = base.file_name().unwrap_or_default().to_os_string();
                    name.push(format!(".{n}"));
                    base.with_file_name(name)
                };
                let file = open_lock(&dir)?;
                match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                    Ok(()) => break (dir, file),
                    Err(rustix::io::Errno::WOULDBLOCK) => n += 1,
                    Err(e) => return Err(std::io::Error::from(e).into()),
                }
            }
        }
    };
    if !dir.exists() {
        make_cache_dir(&dir, init)?;
    }
    Ok((dir, CacheLock { _file: file }))
}

/// Makes `dir` whole in a temporary sibling and renames it in place (never over one another
/// build made meanwhile), so a cache directory is never seen half seeded.
fn make_cache_dir(dir: &Path, init: &CacheInit<'_>) -> Result<(), OpError> {
    use std::os::unix::fs::{PermissionsExt, lchown};
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let tmp = tempfile::Builder::new()
        .prefix(".new-")
        .tempdir_in(parent)?;
    let new = tmp.path().join("d");
    match init.seed {
        Some((root, rel, true)) => copy_tree(root, rel, &new)?,
        Some((root, rel, false)) => {
            // A file seeds a cache that holds it.
            std::fs::create_dir(&new)?;
            std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755))?;
            let name = rel.file_name().unwrap_or_default();
            let to = new.join(name);
            copy_tree(root, rel, &to)?;
        }
        None => {
            std::fs::create_dir(&new)?;
            std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755))?;
            lchown(&new, Some(0), Some(0))?;
        }
    }
    if init.uid.is_some() || init.gid.is_some() {
        lchown(&new, init.uid, init.gid)?;
    }
    if let Some(mode) = init.mode {
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(mode & 0o7777))?;
    }
    match rustix::fs::renameat_with(
        rustix::fs::CWD,
        &new,
        rustix::fs::CWD,
        dir,
        rustix::fs::RenameFlags::NOREPLACE,
    ) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(std::io::Error::from(e).into()),
    }
}

/// Copies `rel` of the tree `root` (a file, symlink, directory tree or special file; `rel` has
/// no symlink in it, as [`resolve_confined`] returns it) to `dst`, a new path in the builder's
/// own work dirs, with modes and owners. The tree is read through its descriptor with no symlink
/// followed (links are copied as links).
pub(crate) fn copy_tree(root: &Path, rel: &Path, dst: &Path) -> std::io::Result<()> {
    use hoist_runtime::confined::{Root, open_dir_beneath};
    use std::os::unix::ffi::OsStrExt;
    let r = Root::open(root)?;
    let comps: Vec<&[u8]> = rel
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.as_bytes()),
            _ => None,
        })
        .collect();
    match comps.split_last() {
        Some((base, parent)) => copy_out(&open_dir_beneath(r.fd(), parent)?, base, dst),
        None => copy_out(&r.fd(), b".", dst),
    }
}

/// [`copy_tree`] of `name` in the directory `dir`.
fn copy_out(dir: &impl std::os::fd::AsFd, name: &[u8], dst: &Path) -> std::io::Result<()> {
    use hoist_runtime::confined::{DIR_FLAGS, list, lstat_at, read_link_at};
    use rustix::fs::{FileType, Mode, OFlags};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{PermissionsExt, lchown};
    let st = lstat_at(dir, name)?;
    let ft = FileType::from_raw_mode(st.st_mode);
    let n = std::ffi::OsStr::from_bytes(name);
    match ft {
        FileType::Symlink => std::os::unix::fs::symlink(read_link_at(dir, name)?, dst)?,
        FileType::Directory => {
            match std::fs::create_dir(dst) {
                Ok(()) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::AlreadyExists
                        && std::fs::symlink_metadata(dst).is_ok_and(|m| m.is_dir()) => {}
                Err(e) => return Err(e),
            }
            let sub = rustix::fs::openat(dir, n, DIR_FLAGS, Mode::empty())?;
            for child in list(&sub)? {
                copy_out(&sub, &child, &dst.join(std::ffi::OsStr::from_bytes(&child)))?;
            }
        }
        FileType::RegularFile => {
            let from = rustix::fs::openat(
                dir,
                n,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let mut to = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dst)?;
            std::io::copy(&mut std::fs::File::from(from), &mut to)?;
        }
        FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice => {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                dst,
                ft,
                Mode::from_raw_mode(st.st_mode & 0o7777),
                st.st_rdev,
            )?;
        }
        // A socket: nothing to copy (a socket file is useless without its listener).
        _ => return Ok(()),
    }
    lchown(dst, Some(st.st_uid), Some(st.st_gid))?;
    if ft != FileType::Symlink {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(st.st_mode & 0o7777))?;
    }
    Ok(())
}

/// Resolves `source` (a `--mount` `source=`) under `root` the way a chroot would, following
/// symlinks inside the root. `..` above the root is an error; so, when `links_may_escape` is
/// false (the build context), is a symlink that points outside the root (absolute or through
/// `..`). In a stage's filesystem (`links_may_escape` true) an absolute link target is taken from
/// the stage's root, as the container would see it. The error says what escaped. Each step looks
/// at one entry through the root's descriptor with no symlink followed
/// ([`hoist_runtime::confined`]). Returns the path (below `root`, with no symlink in it) and its
/// metadata (`None`: nothing there).
pub(crate) fn resolve_confined(
    root: &Path,
    source: &str,
    links_may_escape: bool,
) -> Result<(std::path::PathBuf, Option<crate::tree::Meta>), String> {
    use hoist_runtime::confined::{Root, lstat_at, open_dir_beneath, read_link_at};
    use std::collections::VecDeque;
    let r = Root::open(root).map_err(|e| e.to_string())?;
    let mut pending: VecDeque<(String, bool)> =
        source.split('/').map(|c| (c.to_owned(), false)).collect();
    let mut stack: Vec<String> = Vec::new();
    let mut links = 0;
    let mut last = None;
    while let Some((c, from_link)) = pending.pop_front() {
        match c.as_str() {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    if from_link && links_may_escape {
                        continue;
                    }
                    return Err(if from_link {
                        "goes through a symlink that points outside the root".into()
                    } else {
                        "points outside the root (..)".into()
                    });
                }
                last = None;
            }
            name => {
                let comps: Vec<&[u8]> = stack.iter().map(|c| c.as_bytes()).collect();
                let st = open_dir_beneath(r.fd(), &comps)
                    .and_then(|d| lstat_at(&d, name.as_bytes()).map(|st| (d, st)));
                match st {
                    Ok((d, st)) => {
                        let m = crate::tree::Meta::of(&st);
                        if m.is_symlink() {
                            links += 1;
                            if links > 40 {
                                return Err("too many levels of symbolic links".into());
                            }
                            let target =
                                read_link_at(&d, name.as_bytes()).map_err(|e| e.to_string())?;
                            let t = target.to_string_lossy().into_owned();
                            if t.starts_with('/') {
                                if !links_may_escape {
                                    let here: std::path::PathBuf = stack.iter().collect();
                                    return Err(format!(
                                        "goes through symlink /{}, which points outside the root (to {t})",
                                        here.join(name).display()
                                    ));
                                }
                                stack.clear();
                            }
                            for part in t.split('/').rev() {
                                pending.push_front((part.to_owned(), true));
                            }
                            last = None;
                            continue;
                        }
                        last = Some(m);
                    }
                    Err(_) => last = None,
                }
                stack.push(name.to_owned());
            }
        }
    }
    if stack.is_empty() {
        last = Some(crate::tree::Meta::of(
            &rustix::fs::fstat(r.fd()).map_err(|e| e.to_string())?,
        ));
    }
    Ok((
        stack.iter().fold(root.to_path_buf(), |p, c| p.join(c)),
        last,
    ))
}

/// A private copy of a secret for one RUN: `dst` with `mode` (default 0400) and owner.
pub(crate) fn secret_copy(
    src: &Path,
    dst: &Path,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
) -> std::io::Result<()> {
    use std::os::unix::fs::{PermissionsExt, lchown};
    std::fs::copy(src, dst)?;
    lchown(dst, Some(uid.unwrap_or(0)), Some(gid.unwrap_or(0)))?;
    std::fs::set_permissions(
        dst,
        std::fs::Permissions::from_mode(mode.unwrap_or(0o400) & 0o7777),
    )
}

/// A unix socket that forwards each connection to an ssh agent's socket, with the mode and
/// owner `RUN --mount=type=ssh` asks for (BuildKit forwards the agent the same way rather than
/// exposing the client's socket). Stops listening on drop.
pub(crate) struct SshProxy {
    dir: tempfile::TempDir,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SshProxy {
    pub(crate) fn start(
        agent: &Path,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> std::io::Result<SshProxy> {
        use std::os::unix::fs::{PermissionsExt, lchown};
        use std::os::unix::net::{UnixListener, UnixStream};
        // In the system temp dir: socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new().prefix("hoist-ssh-").tempdir()?;
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path)?;
        lchown(&path, Some(uid.unwrap_or(0)), Some(gid.unwrap_or(0)))?;
        std::fs::set_permissions(
            &path,
            std::fs::Permissions::from_mode(mode.unwrap_or(0o600) & 0o7777),
        )?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let agent = agent.to_path_buf();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let agent = agent.clone();
                std::thread::spawn(move || {
                    let Ok(upstream) = UnixStream::connect(&agent) else {
                        return;
                    };
                    let (Ok(mut c_read), Ok(mut u_write)) =
                        (client.try_clone(), upstream.try_clone())
                    else {
                        return;
                    };
                    let t = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut c_read, &mut u_write);
                        let _ = u_write.shutdown(std::net::Shutdown::Write);
                    });
                    let (mut u_read, mut c_write) = (upstream, client);
                    let _ = std::io::copy(&mut u_read, &mut c_write);
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                    let _ = t.join();
                });
            }
        });
        Ok(SshProxy {
            dir,
            stop,
            thread: Some(thread),
        })
    }

    pub(crate) fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("agent.sock")
    }
}

impl Drop for SshProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees `stop`.
        let _ = std::os::unix::net::UnixStream::connect(self.socket());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The part of the build context under `src` (a directory inside `ctx.root()`) as the build
/// sees it: `dst` gets everything the ignore file does not exclude, as hard links to the
/// context's files where the filesystem allows (the caller mounts it read-only or under an
/// overlay, so nothing writes through them) and copies elsewhere.
pub(crate) fn context_view(
    ctx: &crate::context::Context,
    src: &Path,
    dst: &Path,
) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown};
    let rel_of = |p: &Path| -> String {
        p.strip_prefix(ctx.root())
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let meta = std::fs::symlink_metadata(src)?;
    std::fs::create_dir(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let path = entry.path();
        let rel = rel_of(&path);
        let ft = entry.file_type()?;
        let ignored = ctx.is_ignored(&rel);
        let to = dst.join(entry.file_name());
        if ft.is_dir() {
            if ignored && ctx.ignore().can_skip_dir(&rel) {
                continue;
            }
            context_view(ctx, &path, &to)?;
            // An excluded directory kept only for what an exception re-includes below it.
            if ignored && std::fs::read_dir(&to)?.next().is_none() {
                std::fs::remove_dir(&to)?;
            }
        } else if ignored {
            continue;
        } else if ft.is_file() {
            if std::fs::hard_link(&path, &to).is_err() {
                copy_tree(ctx.root(), Path::new(&rel), &to)?;
            }
        } else {
            copy_tree(ctx.root(), Path::new(&rel), &to)?;
        }
    }
    lchown(dst, Some(meta.uid()), Some(meta.gid()))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
}
