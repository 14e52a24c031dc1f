//! Running a container: mount its rootfs, build its runtime spec, run it through an executor,
//! pump its output into the log (and the terminal when attached), record how it ended.
//!
//! The same code serves the foreground `hoist run` (the CLI process supervises, attached) and the
//! detached supervisor (`hoist __supervise ID`, in its own session, stdio to the log only).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use oci_spec::image::Config as ImageConfig;
use oci_spec::runtime::Spec;

use super::attach::{self, Hub};
use super::logs::{self, LogWriter};
use super::{
    Container, ContainerError, ContainerStore, ProcessId, State, Status, ioe, now_unix, rfc3339,
};
use crate::exec::{self, Created, ExecError, Executor, Stdio};
use crate::spec::{self, SpecError};
use crate::volume::VolumeStore;

/// What went wrong running a container.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    #[error("mounting the rootfs of {id}: {reason}")]
    Mount { id: String, reason: String },
    #[error("starting container {0}: no client attached within 60s")]
    AttachTimeout(String),
    #[error("container {0} is busy: another command has held its filesystem for 60s")]
    Busy(String),
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
}

/// How the container's stdio is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// Output to the log and to the clients of its attach socket ([`super::attach`]); stdin is
    /// theirs when the container keeps it open (`-i`), else /dev/null. With `wait_client` the
    /// process starts once a client has attached (`hoist start -a`), so it misses no output.
    Detached { wait_client: bool },
    /// Output to the log and to this process's stdout/stderr; this process's stdin is the
    /// container's when `stdin`.
    Foreground { stdin: bool },
    /// A pty: its output to the log and this process's stdout; this process's stdin copied to it
    /// when `stdin` (in raw mode when it is a terminal).
    Tty { stdin: bool },
}

/// Runs containers of one store.
pub struct Supervisor<'a> {
    pub store: &'a ContainerStore,
    pub volumes: &'a VolumeStore,
    pub executor: &'a dyn Executor,
}

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Opens `path` (absolute, inside the container) under `root` without ever leaving it: symlinks
/// resolve as if `root` were `/`.
fn open_in_root(root: &Path, path: &str, dir: bool) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags, openat2};
    let rootfd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;
    let mut flags = OFlags::CLOEXEC;
    flags |= if dir {
        OFlags::PATH | OFlags::DIRECTORY
    } else {
        OFlags::RDONLY
    };
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    openat2(
        &rootfd,
        rel,
        flags,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(errno)
}

/// Reads a small file of the image (`/etc/passwd`) safely; `None` when it has none.
fn read_in_root(root: &Path, path: &str) -> Option<String> {
    let fd = open_in_root(root, path, false).ok()?;
    let mut s = String::new();
    File::from(fd).take(4 << 20).read_to_string(&mut s).ok()?;
    Some(s)
}

/// `mkdir -p` of `path` inside `root`, never leaving it.
pub(crate) fn mkdir_in_root(root: &Path, path: &str) -> io::Result<()> {
    let mut done = String::new();
    for comp in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let parent = open_in_root(root, if done.is_empty() { "/" } else { &done }, true)?;
        match rustix::fs::mkdirat(&parent, comp, rustix::fs::Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(errno(e)),
        }
        done.push('/');
        done.push_str(comp);
    }
    Ok(())
}

/// Mounts the rootfs: the layers (bottom..top) as overlay lower dirs under the upper dir (or a
/// copy where overlay is unavailable).
fn mount_rootfs(c: &Container) -> Result<(), RunError> {
    super::unmount_all(&c.rootfs())?;
    crate::rootfs::Rootfs::mount(&c.lowers(), &c.upper(), &c.work(), &c.rootfs()).map_err(|e| {
        RunError::Mount {
            id: c.id().to_owned(),
            reason: e.to_string(),
        }
    })?;
    Ok(())
}

/// Copies our terminal's window size to the pty.
fn copy_winsize(master: &impl AsFd) {
    if let Ok(ws) = rustix::termios::tcgetwinsize(rustix::stdio::stdin()) {
        let _ = rustix::termios::tcsetwinsize(master, ws);
    }
}

/// Puts our stdin in raw mode while alive (nothing when it is not a terminal).
pub struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    pub fn enter() -> RawMode {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = io::stdin();
        let Ok(orig) = tcgetattr(&stdin) else {
            return RawMode(None);
        };
        let mut raw = orig.clone();
        cfmakeraw(&mut raw);
        if tcsetattr(&stdin, SetArg::TCSANOW, &raw).is_err() {
            return RawMode(None);
        }
        RawMode(Some(orig))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ =
                nix::sys::termios::tcsetattr(io::stdin(), nix::sys::termios::SetArg::TCSANOW, t);
        }
    }
}

/// The signals an attached CLI forwards to the container (and SIGWINCH).
pub fn forwarded() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        set.add(s);
    }
    set
}

/// Blocks the forwarded signals in this thread (threads spawned after inherit it) and forwards
/// them to `pid` from a thread; SIGWINCH resizes `pty`.
fn forward_signals(pid: i32, pty: Option<Arc<OwnedFd>>) {
    attach::forward_signals(Some(pid), move || {
        if let Some(m) = &pty {
            copy_winsize(m.as_ref());
        }
    });
}

/// Streams an attached process's stdio: returns the pump threads to join.
fn start_pumps(
    attach: Attach,
    log: &Arc<LogWriter>,
    out_r: Option<OwnedFd>,
    err_r: Option<OwnedFd>,
    pty: Option<Arc<OwnedFd>>,
    hub: Option<Arc<Hub>>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    // Where the output goes besides the log: our terminal, or the attached clients.
    let sink = move |stream: u8| -> Option<Box<dyn Write + Send>> {
        match (&hub, attach) {
            (Some(h), _) => Some(Box::new(h.writer(stream))),
            (None, Attach::Detached { .. }) => None,
            (None, _) if stream == attach::STDERR => Some(Box::new(io::stderr())),
            (None, _) => Some(Box::new(io::stdout())),
        }
    };
    if let Some(master) = pty {
        if matches!(attach, Attach::Tty { stdin: true }) {
            let m = master.clone();
            // Not joined: it ends with our stdin, or with the process.
            std::thread::spawn(move || {
                let mut stdin = io::stdin().lock();
                let mut buf = [0u8; 4096];
                let mut w = File::from(m.try_clone().expect("dup the pty master"));
                while let Ok(n) = stdin.read(&mut buf) {
                    if n == 0 || w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
        let log = log.clone();
        let mut out = sink(attach::STDOUT);
        threads.push(std::thread::spawn(move || {
            let r = File::from(master.try_clone().expect("dup the pty master"));
            let tee = out.as_deref_mut().map(|w| w as &mut dyn Write);
            logs::pump(r, &log, "stdout", tee);
        }));
        return threads;
    }
    for (fd, stream, kind) in [
        (out_r, "stdout", attach::STDOUT),
        (err_r, "stderr", attach::STDERR),
    ] {
        let Some(fd) = fd else { continue };
        let log = log.clone();
        let mut out = sink(kind);
        threads.push(std::thread::spawn(move || {
            let tee = out.as_deref_mut().map(|w| w as &mut dyn Write);
            logs::pump(File::from(fd), &log, stream, tee);
        }));
    }
    threads
}

fn pipe() -> Result<(OwnedFd, OwnedFd), RunError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| ioe("creating a pipe")(errno(e)).into())
}

fn host_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The `Config` part of the image config, if any.
pub(crate) fn image_config(c: &Container) -> Option<ImageConfig> {
    c.config
        .image_config
        .get("config")
        .filter(|v| !v.is_null())
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

impl Supervisor<'_> {
    /// Builds the runtime spec of `c` (its rootfs mounted) and writes `bundle/config.json`.
    pub fn write_bundle(&self, c: &Container) -> Result<Spec, RunError> {
        let image = image_config(c);
        let rootfs = c.rootfs();
        let passwd = read_in_root(&rootfs, "/etc/passwd");
        let group = read_in_root(&rootfs, "/etc/group");
        let limits = spec::host_hard_limits();
        let (hosts, hostname_p, resolv) = (c.hosts_path(), c.hostname_path(), c.resolv_conf_path());
        let hh = host_hostname();
        let ctx = spec::Context {
            id: c.id(),
            rootfs: &rootfs,
            hosts_path: &hosts,
            hostname_path: &hostname_p,
            resolv_conf_path: &resolv,
            passwd: passwd.as_deref(),
            group: group.as_deref(),
            host_hard_limits: &limits,
            host_hostname: &hh,
            cap_last_cap: spec::cap_last_cap(),
            cgroups_path: format!("/hoist/{}", c.id()),
        };
        let mut opts = c.config.options.clone();
        opts.mounts = c
            .config
            .mounts
            .iter()
            .map(super::MountRecord::bind_mount)
            .collect();
        let s = spec::build(image.as_ref(), &opts, &ctx)?;
        // Docker creates the working directory and mount points when the image lacks them.
        if let Some(p) = s.process() {
            mkdir_in_root(&rootfs, &p.cwd().display().to_string()).map_err(ioe(format!(
                "creating the working directory {}",
                p.cwd().display()
            )))?;
        }
        for m in &c.config.mounts {
            if m.source.is_dir() {
                mkdir_in_root(&rootfs, &m.destination)
                    .map_err(ioe(format!("creating the mount point {}", m.destination)))?;
            }
            // A new volume gets what the image has at its mount point (docker's copy-up).
            if m.kind == "volume"
                && !m.no_copy
                && let Some(name) = &m.name
                && let Ok(v) = self.volumes.get(name)
                && let Ok(fd) = open_in_root(&rootfs, &m.destination, true)
            {
                let src = PathBuf::from(format!(
                    "/proc/self/fd/{}",
                    std::os::fd::AsRawFd::as_raw_fd(&fd)
                ));
                self.volumes.populate(&v, &src).map_err(|e| {
                    ioe(format!("filling volume {name}"))(io::Error::other(e.to_string()))
                })?;
            }
        }
        let bytes = serde_json::to_vec_pretty(&s).map_err(|e| SpecError::Build(e.to_string()))?;
        super::write_atomic(&c.bundle().join("config.json"), &bytes)?;
        Ok(s)
    }

    pub(super) fn record(&self, id: &str, f: impl FnOnce(&mut State)) -> Result<State, RunError> {
        Ok(self.store.update_state(id, f)?)
    }

    /// Runs the container `id` to its end: returns its exit code. The caller is its supervisor
    /// for the whole run (it holds the container's supervisor lock).
    pub fn run(&self, id: &str, attach: Attach) -> Result<i32, RunError> {
        let c = self.store.load(id)?;
        let lock_path = c.dir.join("supervisor.lock");
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(ioe(format!("opening {}", lock_path.display())))?;
        // The lock is held by this container's supervisor while it runs, and by `hoist cp` or
        // `export` while they use a stopped one's filesystem: that one is waited for, as
        // docker's start waits for a copy.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut file = lock_file;
        let _lock = loop {
            match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(l) => break l,
                Err((back, _)) => {
                    if self.store.raw_state(id)?.running() {
                        return Err(RunError::AlreadyRunning(c.name().to_owned()));
                    }
                    if std::time::Instant::now() > deadline {
                        return Err(RunError::Busy(c.name().to_owned()));
                    }
                    std::thread::sleep(Duration::from_millis(25));
                    file = back;
                }
            }
        };
        // What it is now, after any wait.
        let c = self.store.load(id)?;
        if c.state.running() {
            return Err(RunError::AlreadyRunning(c.name().to_owned()));
        }
        let me = ProcessId::current();
        super::restart::clear_stop(&c.dir);
        self.record(id, |s| {
            s.supervisor = me;
            s.init = None;
            s.error.clear();
            s.restart_count = 0;
        })?;
        // The detached supervisor applies the restart policy (`--restart`).
        let policy = match attach {
            Attach::Detached { .. } => c.config.restart_policy.clone(),
            _ => super::restart::RestartPolicy::default(),
        };
        let mut restarts = super::restart::RestartManager::new(policy);
        let mut c = c;
        // The network sandbox of the last run is torn down after its exit is recorded (below):
        // a client that saw the exit code finds the container exited. A restart gets a new one.
        let mut sandbox;
        let result = loop {
            sandbox = None;
            let began = std::time::Instant::now();
            let result = self.run_locked(&c, attach, &mut sandbox);
            let _ = super::unmount_all(&c.rootfs());
            // A copy rootfs (no overlay here): its changes go to the upper dir, in overlay
            // form, so `diff` and `commit` see them as they would an overlay's.
            if let Err(e) =
                crate::rootfs::sync_copy_changes(&c.lowers(), &c.upper(), &c.work(), &c.rootfs())
            {
                tracing::warn!(id = %c.id(), "recording the changes of a copy rootfs: {e}");
            }
            let Ok(code) = result else { break result };
            if !self.restart_due(&c, &mut restarts, code, began.elapsed()) {
                break result;
            }
            c = self.store.load(id)?;
        };
        match &result {
            Ok(code) => {
                let code = *code;
                self.record(id, |s| {
                    s.status = Status::Exited;
                    s.restarting = false;
                    s.paused = false;
                    s.exit_code = Some(code);
                    s.finished_at = Some(rfc3339(SystemTime::now()));
                    s.finished_unix = Some(now_unix());
                    s.init = None;
                    s.supervisor = None;
                })?;
            }
            Err(e) => {
                let msg = e.to_string();
                self.record(id, |s| {
                    // A container that never started stays created (docker's "Created" with an
                    // error); one that ran and failed afterwards has exited.
                    if s.status == Status::Running {
                        s.status = Status::Exited;
                        s.finished_at = Some(rfc3339(SystemTime::now()));
                        s.finished_unix = Some(now_unix());
                    }
                    s.exit_code = Some(s.exit_code.unwrap_or(128));
                    s.restarting = false;
                    s.paused = false;
                    s.error = msg;
                    s.init = None;
                    s.supervisor = None;
                })?;
            }
        }
        result
    }

    fn sandbox(&self, c: &Container) -> Result<crate::net::sandbox::Sandbox, RunError> {
        let home = self.store.root().parent().unwrap_or(self.store.root());
        let hostname = std::fs::read_to_string(c.hostname_path())
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| c.short_id().to_owned());
        let o = &c.config.options;
        let spec = crate::net::sandbox::SandboxSpec {
            id: c.id(),
            name: c.name(),
            hostname: &hostname,
            networks: &o.networks,
            ports: &o.publish,
            dns: &o.dns,
            extra_hosts: &o.extra_hosts,
            hosts_path: &c.hosts_path(),
            resolv_conf_path: &c.resolv_conf_path(),
        };
        Ok(crate::net::sandbox::up(home, &spec)?)
    }

    fn run_locked(
        &self,
        c: &Container,
        attach: Attach,
        sandbox: &mut Option<crate::net::sandbox::Sandbox>,
    ) -> Result<i32, RunError> {
        mount_rootfs(c)?;
        // Bridge networks: the namespace, interfaces, ports and /etc files, undone when the
        // caller drops it (after recording the end).
        if c.config.options.network == spec::Network::Bridge {
            *sandbox = Some(self.sandbox(c)?);
        }
        self.write_bundle(c)?;
        let log = Arc::new(
            LogWriter::open(&c.log_path(), c.config.log_max_size, c.config.log_max_files)
                .map_err(ioe(format!("opening {}", c.log_path().display())))?,
        );
        let tty = matches!(attach, Attach::Tty { .. }) || c.config.options.tty;
        let detached = matches!(attach, Attach::Detached { .. });
        // A detached container that keeps stdin open (`-i`) reads what attached clients write.
        let mut stdin_w = None;
        let (stdio, out_r, err_r) = if tty {
            (Stdio::Pty, None, None)
        } else {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let stdin = match attach {
                Attach::Foreground { stdin: true } => Some(
                    io::stdin()
                        .as_fd()
                        .try_clone_to_owned()
                        .map_err(ioe("duplicating stdin"))?,
                ),
                Attach::Detached { .. } if c.config.options.interactive => {
                    let (r, w) = pipe()?;
                    stdin_w = Some(File::from(w));
                    Some(r)
                }
                _ => None,
            };
            (
                Stdio::Fds {
                    stdin,
                    stdout: out_w,
                    stderr: err_w,
                },
                Some(out_r),
                Some(err_r),
            )
        };
        let mut created = self.executor.create(c.id(), &c.bundle(), stdio)?;
        let pty = created.pty.take().map(Arc::new);
        let init = ProcessId::of(created.pid);
        let attached = !detached;
        let _raw =
            (attached && tty && matches!(attach, Attach::Tty { stdin: true })).then(RawMode::enter);
        if let Some(m) = &pty
            && attached
        {
            copy_winsize(m.as_ref());
        }
        if attached {
            forward_signals(created.pid, pty.clone());
        }
        let hub = if detached {
            let input = match &pty {
                Some(m) if c.config.options.interactive => Some(File::from(
                    m.try_clone().map_err(ioe("duplicating the pty master"))?,
                )),
                _ => stdin_w,
            };
            match Hub::listen(&c.dir, input, pty.clone()) {
                Ok(h) => Some(h),
                Err(e) => {
                    let _ = self.executor.delete(&created);
                    return Err(RunError::from(ioe(format!(
                        "listening on {}",
                        c.dir.join(attach::SOCKET).display()
                    ))(e)));
                }
            }
        } else {
            None
        };
        if let (Some(h), Attach::Detached { wait_client: true }) = (&hub, attach)
            && !h.wait_client(Duration::from_secs(60))
        {
            let _ = self.executor.delete(&created);
            return Err(RunError::AttachTimeout(c.name().to_owned()));
        }
        let pumps = start_pumps(attach, &log, out_r, err_r, pty, hub.clone());
        let started = self.executor.start(&created);
        if let Err(e) = started {
            let _ = self.executor.delete(&created);
            return Err(e.into());
        }
        let now = SystemTime::now();
        self.record(c.id(), |s| {
            s.status = Status::Running;
            s.restarting = false;
            s.paused = false;
            s.init = init;
            s.exit_code = None;
            s.started_at = Some(rfc3339(now));
            s.started_unix = Some(now_unix());
            s.finished_at = None;
            s.finished_unix = None;
            super::health::mark_starting(s, c);
        })?;
        // The health checks of this run (`HEALTHCHECK`), stopped before the exit is recorded.
        let health = super::health::Monitor::start(self.store, c);
        let code = self.executor.wait(&created);
        drop(health);
        let _ = self.executor.delete(&created);
        drop(created);
        for p in pumps {
            let _ = p.join();
        }
        let code = code?;
        // After all the output: the clients see it, then the exit code.
        if let Some(h) = &hub {
            h.finish(code);
        }
        Ok(code)
    }
}

/// The process an exec of `o` runs in the running container `c` (its spec's, with `o`'s
/// arguments, environment, user and working directory), its seccomp profile, and the
/// container's init.
pub(crate) fn exec_process(
    c: &Container,
    o: &ExecOptions,
) -> Result<
    (
        oci_spec::runtime::Process,
        Option<oci_spec::runtime::LinuxSeccomp>,
        ProcessId,
    ),
    RunError,
> {
    let Some(init) = c.state.init.filter(|_| c.state.running()) else {
        return Err(ContainerError::NotRunning(c.name().to_owned()).into());
    };
    if c.state.paused {
        return Err(ContainerError::Paused(c.name().to_owned()).into());
    }
    if o.args.is_empty() {
        return Err(SpecError::NoCommand.into());
    }
    let path = c.bundle().join("config.json");
    let bytes = std::fs::read(&path).map_err(ioe(format!("reading {}", path.display())))?;
    let s: Spec = serde_json::from_slice(&bytes).map_err(|e| SpecError::Build(e.to_string()))?;
    let mut process = s.process().clone().ok_or(SpecError::NoCommand)?;
    process.set_args(Some(o.args.clone()));
    process.set_terminal(Some(o.tty));
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    for kv in &o.env {
        let key = kv.split('=').next().unwrap_or(kv);
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    if o.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".to_owned());
    }
    process.set_env(Some(env));
    if let Some(w) = &o.workdir {
        spec::check_workdir(w)?;
        process.set_cwd(w.into());
    }
    if let Some(u) = &o.user {
        let root = PathBuf::from(format!("/proc/{}/root", init.pid));
        let user = spec::resolve_user(
            u,
            read_in_root(&root, "/etc/passwd").as_deref(),
            read_in_root(&root, "/etc/group").as_deref(),
        )?;
        let mut pu = process.user().clone();
        pu.set_uid(user.uid);
        pu.set_gid(user.gid);
        pu.set_additional_gids(Some(user.additional_gids));
        process.set_user(pu);
    }
    let seccomp = if o.privileged {
        None
    } else {
        s.linux().as_ref().and_then(|l| l.seccomp().clone())
    };
    Ok((process, seccomp, init))
}

/// `hoist exec`: what to run in a running container.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub tty: bool,
    pub interactive: bool,
    pub privileged: bool,
}

/// Runs a process in the running container `c` (joining its namespaces and cgroups, with its
/// capabilities, seccomp profile and environment), attached to this process's stdio; returns its
/// exit code.
pub fn exec(c: &Container, o: &ExecOptions) -> Result<i32, RunError> {
    let (process, seccomp, init) = exec_process(c, o)?;
    let (stdio, out_r, err_r) = if o.tty {
        (Stdio::Pty, None, None)
    } else if o.interactive {
        (Stdio::Inherit, None, None)
    } else {
        let out = io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(ioe("duplicating stdout"))?;
        let err = io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(ioe("duplicating stderr"))?;
        (
            Stdio::Fds {
                stdin: None,
                stdout: out,
                stderr: err,
            },
            None::<OwnedFd>,
            None::<OwnedFd>,
        )
    };
    let _ = (out_r, err_r);
    let mut created: Created = exec::exec_in_with(
        init.pid,
        &process,
        seccomp.as_ref(),
        Path::new("/proc/self/exe"),
        stdio,
    )?;
    let pty = created.pty.take().map(Arc::new);
    let _raw = (o.tty && o.interactive).then(RawMode::enter);
    if let Some(m) = &pty {
        copy_winsize(m.as_ref());
    }
    forward_signals(created.pid, pty.clone());
    let mut pumps = Vec::new();
    if let Some(master) = pty {
        if o.interactive {
            let m = master.clone();
            std::thread::spawn(move || {
                let mut stdin = io::stdin().lock();
                let mut buf = [0u8; 4096];
                let mut w = File::from(m.try_clone().expect("dup the pty master"));
                while let Ok(n) = stdin.read(&mut buf) {
                    if n == 0 || w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
        pumps.push(std::thread::spawn(move || {
            let mut r = File::from(master.try_clone().expect("dup the pty master"));
            let mut out = io::stdout();
            let mut buf = [0u8; 8192];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
        }));
    }
    let code = exec::wait_pid(created.pid)?;
    for p in pumps {
        let _ = p.join();
    }
    Ok(code)
}

/// Writes the container's `hosts`, `hostname` and `resolv.conf` (docker's content): the
/// hostname, localhost entries, and the host's resolv.conf (or, joining another container's
/// network, that container's files).
pub fn write_etc_files(
    c: &Container,
    hostname: &str,
    share_from: Option<&Container>,
) -> Result<(), ContainerError> {
    if let Some(other) = share_from {
        for (from, to) in [
            (other.hosts_path(), c.hosts_path()),
            (other.resolv_conf_path(), c.resolv_conf_path()),
        ] {
            std::fs::copy(&from, &to).map_err(ioe(format!("copying {}", from.display())))?;
        }
    } else {
        let hosts = if c.config.options.network == spec::Network::Host {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
                 fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
                 ff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
            )
        };
        std::fs::write(c.hosts_path(), hosts).map_err(ioe("writing the hosts file"))?;
        // docker copies the host's resolv.conf even with `--network none`.
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        std::fs::write(c.resolv_conf_path(), resolv).map_err(ioe("writing resolv.conf"))?;
    }
    std::fs::write(c.hostname_path(), format!("{hostname}\n")).map_err(ioe("writing hostname"))?;
    Ok(())
}
