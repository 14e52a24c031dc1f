//! The executor: runs an OCI runtime bundle (`config.json` + rootfs), like runc and crun.
//!
//! [`HoistExecutor`] is hoist's own runtime. The caller may be multi-threaded (tokio), so nothing
//! is set up in the caller's process: `create` spawns the init helper (a re-exec of the hoist
//! binary, `/proc/self/exe`, that [`init_if_requested`] turns into the init before anything else
//! runs), hands it the config over an inherited socket (fd 3) and talks to it over that socket:
//!
//! ```text
//! caller                                  init helper (single-threaded)         container init
//! spawn helper, place it in the cgroups
//! send the request ---------------------> setns(paths), unshare(user)
//! write uid/gid maps <------------------- "maps please"
//! "maps written" -----------------------> unshare(mnt, uts, ipc, net, pid, ...)
//!                                         clone(CLONE_PARENT) ----------------> (PID 1, a child of
//! <-------------------------------------- its pid, then exits                   the caller)
//!                                                                               mounts, /dev, pivot_root,
//!                                                                               masks, hostname, rlimits
//! create returns <--------------------------------------------------------------"ready"
//! start: "go" ----------------------------------------------------------------> seccomp, user, caps,
//! start returns on EOF (exec closed the socket) or the init's error <---------- no_new_privs, execve
//! ```
//! The container's init is a child of the caller (CLONE_PARENT), so `wait` is a plain waitpid.
//! [`OciCliExecutor`] drives the `runc`/`crun` command line with the same bundles.

mod cgroups;
mod init;
mod mounts;
mod oci_cli;
mod proto;
mod seccomp;
mod syscalls;

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::{LinuxNamespaceType, LinuxSeccomp, Process, Spec};
use parking_lot::Mutex;

pub use cgroups::CgroupPaths;
pub use oci_cli::OciCliExecutor;
pub use seccomp::compile as compile_seccomp;

use proto::{Msg, Request};

/// Environment variable that marks a process as hoist's container init helper; its value is the
/// number of the inherited sync socket.
const INIT_ENV: &str = "_HOIST_INIT_FD";
/// The fd number the sync socket gets in the init helper.
const INIT_FD: i32 = 3;

/// Errors of the executors.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("invalid bundle config: {0}")]
    Config(String),
    #[error("container init failed: {0}")]
    Init(String),
    #[error("no container {0:?} in this executor")]
    NotFound(String),
    #[error("container {0:?} already exists")]
    AlreadyExists(String),
    #[error("{command} failed ({status}): {stderr}")]
    Runtime {
        command: String,
        status: String,
        stderr: String,
    },
}

impl ExecError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        ExecError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Where the container process's stdin, stdout and stderr go.
#[derive(Debug)]
pub enum Stdio {
    /// The caller's own stdio.
    Inherit,
    /// `/dev/null` for all three.
    Null,
    /// Given descriptors (stdin `None` = `/dev/null`).
    Fds {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// A new pseudo-terminal: its slave is the process's controlling terminal and stdio (and
    /// `/dev/console`), its master is returned in [`Created::pty`]. Needs `process.terminal`.
    Pty,
}

/// A created container (or an exec'd process, see [`exec_in`]).
#[derive(Debug)]
pub struct Created {
    pub id: String,
    /// Host pid of the container's init (PID 1 inside its pid namespace).
    pub pid: i32,
    /// The pty master when [`Stdio::Pty`] was asked for.
    pub pty: Option<OwnedFd>,
}

/// An OCI runtime.
pub trait Executor: Send + Sync {
    /// Namespaces, mounts, cgroups ready; the process is blocked before exec.
    fn create(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<Created, ExecError>;
    /// Lets the process exec the user program; returns once it did (or failed to).
    fn start(&self, c: &Created) -> Result<(), ExecError>;
    /// Waits for the container's init to exit: its exit code, 128+signal when killed.
    fn wait(&self, c: &Created) -> Result<i32, ExecError>;
    /// Sends a signal to the container's init.
    fn kill(&self, c: &Created, signal: i32) -> Result<(), ExecError>;
    /// Removes what `create` set up (cgroups, state). A still-running container is killed
    /// (SIGKILL) and reaped first.
    fn delete(&self, c: &Created) -> Result<(), ExecError>;
}

/// If this process was started as hoist's container init helper, run it and never return.
/// The first line of `main()` of any binary used as the init (the `hoist` binary).
pub fn init_if_requested() {
    if let Some(fd) = std::env::var_os(INIT_ENV) {
        let fd = fd
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            .unwrap_or(INIT_FD);
        init::main(fd)
    }
}

/// Restores SIGPIPE's default action (the Rust runtime ignores it): a write to a closed pipe
/// then ends the process quietly, as it does `cat` or `docker` (`hoist pull | head -1`), instead
/// of failing the write with EPIPE. For processes that only print: one that relays a container's
/// output, or serves connections, keeps it ignored and handles EPIPE itself.
#[allow(unsafe_code)]
pub fn sigpipe_default() {
    // SAFETY: SIG_DFL installs no handler; nothing else of this process depends on SIGPIPE.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
}

struct Entry {
    sock: UnixStream,
    cgroups: Option<CgroupPaths>,
    pid: i32,
    reaped: Option<i32>,
}

/// hoist's own executor. Containers live as long as this value: `create`, `start`, `wait`,
/// `delete` of one container are called on the same executor, in the process that created it
/// (the container's init is that process's child).
pub struct HoistExecutor {
    init_binary: PathBuf,
    containers: Mutex<HashMap<String, Entry>>,
    /// Ids being created (so two concurrent creates of one id can't both proceed).
    pending: Mutex<std::collections::HashSet<String>>,
}

impl Default for HoistExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl HoistExecutor {
    /// An executor whose init helper is this very binary (`/proc/self/exe`), which must call
    /// [`init_if_requested`] first thing in `main`.
    pub fn new() -> Self {
        Self::with_init_binary("/proc/self/exe")
    }

    /// An executor whose init helper is `binary` (a program that calls [`init_if_requested`]).
    pub fn with_init_binary(binary: impl Into<PathBuf>) -> Self {
        HoistExecutor {
            init_binary: binary.into(),
            containers: Mutex::new(HashMap::new()),
            pending: Mutex::new(std::collections::HashSet::new()),
        }
    }
}

/// Reads and parses `bundle/config.json`; returns the spec and the absolute rootfs path.
pub fn load_bundle(bundle: &Path) -> Result<(Spec, PathBuf), ExecError> {
    let path = bundle.join("config.json");
    let text =
        std::fs::read(&path).map_err(|e| ExecError::io(format!("read {}", path.display()), e))?;
    let spec: Spec = serde_json::from_slice(&text)
        .map_err(|e| ExecError::Config(format!("{}: {e}", path.display())))?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| ExecError::Config(format!("{}: no root", path.display())))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    let rootfs = std::fs::canonicalize(&rootfs)
        .map_err(|e| ExecError::io(format!("rootfs {}", rootfs.display()), e))?;
    if spec.process().is_none() {
        return Err(ExecError::Config(format!("{}: no process", path.display())));
    }
    Ok((spec, rootfs))
}

/// The child-side descriptors of a [`Stdio`], and the pty master if any.
struct StdioSetup {
    child: [Option<OwnedFd>; 3],
    null: bool,
    master: Option<OwnedFd>,
    pty_path: Option<PathBuf>,
}

/// A new pty of the devpts instance whose `ptmx` is `ptmx` (a container's own, for `exec -t`:
/// its `tty` is then `/dev/pts/N` of the container): the master, and the slave opened through
/// the master (TIOCGPTPEER), so no path of the slave is needed in this mount namespace.
fn pty_of(ptmx: &Path) -> Result<(OwnedFd, OwnedFd), ExecError> {
    use rustix::pty::{OpenptFlags, ioctl_tiocgptpeer, unlockpt};
    let master: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(ptmx)
        .map_err(|e| ExecError::io(format!("open {}", ptmx.display()), e))?
        .into();
    unlockpt(&master).map_err(|e| ExecError::io("unlockpt", e.into()))?;
    let slave = ioctl_tiocgptpeer(&master, OpenptFlags::RDWR | OpenptFlags::NOCTTY)
        .map_err(|e| ExecError::io("open the pty slave (TIOCGPTPEER)", e.into()))?;
    Ok((master, slave))
}

fn prepare_stdio(stdio: Stdio) -> Result<StdioSetup, ExecError> {
    prepare_stdio_in(stdio, None)
}

/// [`prepare_stdio`], a pty coming from the devpts of `ptmx` when given.
fn prepare_stdio_in(stdio: Stdio, ptmx: Option<&Path>) -> Result<StdioSetup, ExecError> {
    if let (Stdio::Pty, Some(ptmx)) = (&stdio, ptmx) {
        let (master, slave) = pty_of(ptmx)?;
        let s1 = slave.try_clone().map_err(|e| ExecError::io("dup pty", e))?;
        let s2 = slave.try_clone().map_err(|e| ExecError::io("dup pty", e))?;
        return Ok(StdioSetup {
            child: [Some(slave), Some(s1), Some(s2)],
            null: false,
            master: Some(master),
            pty_path: None,
        });
    }
    Ok(match stdio {
        Stdio::Inherit => StdioSetup {
            child: [None, None, None],
            null: false,
            master: None,
            pty_path: None,
        },
        Stdio::Null => StdioSetup {
            child: [None, None, None],
            null: true,
            master: None,
            pty_path: None,
        },
        Stdio::Fds {
            stdin,
            stdout,
            stderr,
        } => {
            let stdin = match stdin {
                Some(fd) => fd,
                None => std::fs::File::open("/dev/null")
                    .map_err(|e| ExecError::io("open /dev/null", e))?
                    .into(),
            };
            StdioSetup {
                child: [Some(stdin), Some(stdout), Some(stderr)],
                null: false,
                master: None,
                pty_path: None,
            }
        }
        Stdio::Pty => {
            use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
            let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
                .map_err(|e| ExecError::io("open a pty", e.into()))?;
            grantpt(&master).map_err(|e| ExecError::io("grantpt", e.into()))?;
            unlockpt(&master).map_err(|e| ExecError::io("unlockpt", e.into()))?;
            let name =
                ptsname(&master, Vec::new()).map_err(|e| ExecError::io("ptsname", e.into()))?;
            let path = PathBuf::from(std::ffi::OsString::from_vec(name.into_bytes()));
            let slave: OwnedFd = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY)
                .open(&path)
                .map_err(|e| ExecError::io(format!("open {}", path.display()), e))?
                .into();
            let s1 = slave.try_clone().map_err(|e| ExecError::io("dup pty", e))?;
            let s2 = slave.try_clone().map_err(|e| ExecError::io("dup pty", e))?;
            StdioSetup {
                child: [Some(slave), Some(s1), Some(s2)],
                null: false,
                master: Some(master),
                pty_path: Some(path),
            }
        }
    })
}

/// Spawns the init helper with `setup`'s stdio and the child end of a new socket pair as fd 3.
fn spawn_helper(
    binary: &Path,
    setup: &mut StdioSetup,
) -> Result<(std::process::Child, UnixStream), ExecError> {
    let (ours, theirs) = UnixStream::pair().map_err(|e| ExecError::io("socketpair", e))?;
    let mut cmd = Command::new(binary);
    cmd.env_clear().env(INIT_ENV, INIT_FD.to_string());
    if setup.null {
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
    } else {
        let [a, b, c] = &mut setup.child;
        if let Some(fd) = a.take() {
            cmd.stdin(fd);
        }
        if let Some(fd) = b.take() {
            cmd.stdout(fd);
        }
        if let Some(fd) = c.take() {
            cmd.stderr(fd);
        }
    }
    let raw = theirs.as_raw_fd();
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            if raw == INIT_FD {
                let flags = libc::fcntl(raw, libc::F_GETFD);
                if flags < 0 || libc::fcntl(raw, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(raw, INIT_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| ExecError::io(format!("spawn init helper {}", binary.display()), e))?;
    drop(theirs);
    Ok((child, ours))
}

/// Drives the helper through the handshake up to the container init's pid; then reaps the
/// helper. On error the helper is killed and reaped.
fn handshake(
    helper: &mut std::process::Child,
    sock: &mut UnixStream,
    req: &Request,
    maps: Option<(
        &[oci_spec::runtime::LinuxIdMapping],
        &[oci_spec::runtime::LinuxIdMapping],
    )>,
) -> Result<i32, ExecError> {
    let result = (|| {
        proto::send_request(sock, req)?;
        loop {
            match proto::recv(sock)? {
                Msg::NeedMaps => {
                    let (u, g) = maps.unwrap_or((&[], &[]));
                    write_id_maps(helper.id() as i32, u, g)?;
                    proto::send(sock, &Msg::MapsDone)?;
                }
                Msg::Pid(pid) => return Ok(pid),
                Msg::Error(e) => return Err(ExecError::Init(e)),
                other => {
                    return Err(ExecError::Init(format!(
                        "unexpected message {other:?} from the init helper"
                    )));
                }
            }
        }
    })();
    if result.is_err() {
        let _ = helper.kill();
    }
    let status = helper
        .wait()
        .map_err(|e| ExecError::io("wait for the init helper", e))?;
    let pid = result?;
    if !status.success() {
        return Err(ExecError::Init(format!("init helper exited with {status}")));
    }
    Ok(pid)
}

fn write_id_maps(
    pid: i32,
    uids: &[oci_spec::runtime::LinuxIdMapping],
    gids: &[oci_spec::runtime::LinuxIdMapping],
) -> Result<(), ExecError> {
    let fmt = |m: &[oci_spec::runtime::LinuxIdMapping]| {
        m.iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    for (file, maps) in [("uid_map", uids), ("gid_map", gids)] {
        if maps.is_empty() {
            return Err(ExecError::Config(format!(
                "a new user namespace needs linux.{}Mappings",
                &file[..3]
            )));
        }
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, fmt(maps)).map_err(|e| ExecError::io(format!("write {path}"), e))?;
    }
    Ok(())
}

/// Waits for `sock` to report the init ready (or its error).
fn wait_ready(sock: &mut UnixStream) -> Result<(), ExecError> {
    match proto::recv(sock)? {
        Msg::Ready => Ok(()),
        Msg::Error(e) => Err(ExecError::Init(e)),
        other => Err(ExecError::Init(format!(
            "unexpected message {other:?} from the container init"
        ))),
    }
}

/// Tells the init to exec, and waits until it did: EOF (the socket is close-on-exec) or an error.
fn go(sock: &mut UnixStream) -> Result<(), ExecError> {
    proto::send(sock, &Msg::Start)?;
    match proto::recv_or_eof(sock)? {
        None => Ok(()),
        Some(Msg::Error(e)) => Err(ExecError::Init(e)),
        Some(other) => Err(ExecError::Init(format!(
            "unexpected message {other:?} from the container init"
        ))),
    }
}

fn kill_and_reap(pid: i32) {
    // SAFETY: plain syscalls on a pid that is our child.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
    }
}

/// Waits for process `pid` (a child of this process) to exit: its exit code, or 128+signal.
pub fn wait_pid(pid: i32) -> Result<i32, ExecError> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only to `status`.
        #[allow(unsafe_code)]
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(ExecError::io(format!("wait for pid {pid}"), e));
        }
        if libc::WIFEXITED(status) {
            return Ok(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(128 + libc::WTERMSIG(status));
        }
    }
}

/// Sends `signal` to `pid`.
pub fn signal_pid(pid: i32, signal: i32) -> Result<(), ExecError> {
    // SAFETY: plain syscall.
    #[allow(unsafe_code)]
    let r = unsafe { libc::kill(pid, signal) };
    if r < 0 {
        return Err(ExecError::io(
            format!("send signal {signal} to pid {pid}"),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

impl HoistExecutor {
    /// `create` once the id is reserved.
    fn create_new(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<Created, ExecError> {
        let bundle = std::fs::canonicalize(bundle)
            .map_err(|e| ExecError::io(format!("bundle {}", bundle.display()), e))?;
        let (spec, rootfs) = load_bundle(&bundle)?;
        let terminal = spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        if terminal != matches!(stdio, Stdio::Pty) {
            return Err(ExecError::Config(format!(
                "process.terminal is {terminal} but the stdio asked for is {}",
                if matches!(stdio, Stdio::Pty) {
                    "a pty"
                } else {
                    "not a pty"
                }
            )));
        }
        let linux = spec.linux().clone().unwrap_or_default();
        let new_userns = linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
        // A terminal comes from the container's own devpts, once the init has mounted it
        // (docker's: `tty` says /dev/pts/0); until then the init's stdio is /dev/null.
        let want_pty = matches!(stdio, Stdio::Pty);
        let mut setup = prepare_stdio(if want_pty { Stdio::Null } else { stdio })?;
        let cgroups = CgroupPaths::for_container(id, linux.cgroups_path().as_deref())?;
        let (mut helper, mut sock) = spawn_helper(&self.init_binary, &mut setup)?;
        let placed = (|| {
            cgroups.create(linux.resources().as_ref())?;
            cgroups.add(helper.id() as i32)
        })();
        if let Err(e) = placed {
            let _ = helper.kill();
            let _ = helper.wait();
            let _ = cgroups.remove();
            return Err(e);
        }
        let req = Request::Create {
            id: id.to_string(),
            bundle,
            rootfs,
            spec: Box::new(spec),
            console: setup.pty_path.clone(),
        };
        let empty: Vec<oci_spec::runtime::LinuxIdMapping> = Vec::new();
        let maps = new_userns.then(|| {
            (
                linux.uid_mappings().as_deref().unwrap_or(&empty),
                linux.gid_mappings().as_deref().unwrap_or(&empty),
            )
        });
        let pid = match handshake(&mut helper, &mut sock, &req, maps) {
            Ok(pid) => pid,
            Err(e) => {
                let _ = cgroups.remove();
                return Err(e);
            }
        };
        let ready = wait_ready(&mut sock).and_then(|()| {
            if !want_pty {
                return Ok(());
            }
            // Our slave stays open until the init has opened its own: a pty whose every slave
            // has closed reads EIO at the master, and the output relay would end before the
            // command's first byte.
            let (master, slave) = pty_of(Path::new(&format!("/proc/{pid}/root/dev/pts/ptmx")))?;
            let name = rustix::pty::ptsname(&master, Vec::new())
                .map_err(|e| ExecError::io("ptsname", e.into()))?;
            let n = name
                .to_str()
                .ok()
                .and_then(|p| p.rsplit('/').next())
                .and_then(|n| n.parse::<u32>().ok())
                .ok_or_else(|| ExecError::Init(format!("unexpected pty name {name:?}")))?;
            proto::send(&mut sock, &Msg::Pty(n))?;
            wait_ready(&mut sock)?;
            drop(slave);
            setup.master = Some(master);
            Ok(())
        });
        if let Err(e) = ready {
            kill_and_reap(pid);
            let _ = cgroups.remove();
            return Err(e);
        }
        self.containers.lock().insert(
            id.to_string(),
            Entry {
                sock,
                cgroups: Some(cgroups),
                pid,
                reaped: None,
            },
        );
        Ok(Created {
            id: id.to_string(),
            pid,
            pty: setup.master,
        })
    }
}

impl Executor for HoistExecutor {
    fn create(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<Created, ExecError> {
        if id.is_empty() || id.contains('/') || id == "." || id == ".." {
            return Err(ExecError::Config(format!("invalid container id {id:?}")));
        }
        {
            let map = self.containers.lock();
            if map.contains_key(id) || !self.pending.lock().insert(id.to_string()) {
                return Err(ExecError::AlreadyExists(id.to_string()));
            }
        }
        let r = self.create_new(id, bundle, stdio);
        self.pending.lock().remove(id);
        r
    }

    fn start(&self, c: &Created) -> Result<(), ExecError> {
        let mut sock = {
            let map = self.containers.lock();
            let e = map
                .get(&c.id)
                .ok_or_else(|| ExecError::NotFound(c.id.clone()))?;
            e.sock
                .try_clone()
                .map_err(|e| ExecError::io("dup sync socket", e))?
        };
        go(&mut sock)
    }

    fn wait(&self, c: &Created) -> Result<i32, ExecError> {
        if let Some(code) = self.containers.lock().get(&c.id).and_then(|e| e.reaped) {
            return Ok(code);
        }
        let code = wait_pid(c.pid)?;
        if let Some(e) = self.containers.lock().get_mut(&c.id) {
            e.reaped = Some(code);
        }
        Ok(code)
    }

    fn kill(&self, c: &Created, signal: i32) -> Result<(), ExecError> {
        if let Some(e) = self.containers.lock().get(&c.id)
            && e.reaped.is_some()
        {
            return Err(ExecError::Init(format!("container {:?} has exited", c.id)));
        }
        signal_pid(c.pid, signal)
    }

    fn delete(&self, c: &Created) -> Result<(), ExecError> {
        let entry = self
            .containers
            .lock()
            .remove(&c.id)
            .ok_or_else(|| ExecError::NotFound(c.id.clone()))?;
        if entry.reaped.is_none() {
            kill_and_reap(entry.pid);
        }
        drop(entry.sock);
        if let Some(cg) = entry.cgroups {
            cg.kill_all();
            cg.remove()?;
        }
        Ok(())
    }
}

/// Runs `process` inside the running container whose init is `target_pid`: joins its
/// namespaces (user first, mount last) and cgroups, and execs at once. The process is a child of
/// the caller: [`wait_pid`] and [`signal_pid`] (or any executor's `wait`/`kill`) apply.
pub fn exec_in(target_pid: i32, process: &Process, stdio: Stdio) -> Result<Created, ExecError> {
    exec_in_with(
        target_pid,
        process,
        None,
        Path::new("/proc/self/exe"),
        stdio,
    )
}

/// [`exec_in`] with the container's seccomp profile applied to the process and an explicit
/// init helper binary.
pub fn exec_in_with(
    target_pid: i32,
    process: &Process,
    seccomp: Option<&LinuxSeccomp>,
    init_binary: &Path,
    stdio: Stdio,
) -> Result<Created, ExecError> {
    let terminal = process.terminal().unwrap_or(false);
    if terminal != matches!(stdio, Stdio::Pty) {
        return Err(ExecError::Config(format!(
            "process.terminal is {terminal} but the stdio does not match"
        )));
    }
    // The container's own devpts (docker's exec: `tty` is /dev/pts/N inside).
    let ptmx = PathBuf::from(format!("/proc/{target_pid}/root/dev/pts/ptmx"));
    let mut setup = prepare_stdio_in(stdio, Some(&ptmx))?;
    let (mut helper, mut sock) = spawn_helper(init_binary, &mut setup)?;
    if let Err(e) = cgroups::join_cgroups_of(target_pid, helper.id() as i32) {
        let _ = helper.kill();
        let _ = helper.wait();
        return Err(e);
    }
    let req = Request::Exec {
        target_pid,
        process: Box::new(process.clone()),
        seccomp: seccomp.cloned().map(Box::new),
    };
    let pid = handshake(&mut helper, &mut sock, &req, None)?;
    let started = wait_ready(&mut sock).and_then(|()| go(&mut sock));
    if let Err(e) = started {
        kill_and_reap(pid);
        return Err(e);
    }
    Ok(Created {
        id: format!("exec-{pid}"),
        pid,
        pty: setup.master,
    })
}
