//! Containers under `$HOIST_HOME/containers/<id>/`:
//!
//! ```text
//! containers/
//!   .names/<name>          symlink -> <id>: names are reserved atomically (symlink(2) fails if taken)
//!   <id>/container.json    what the container is (image, options, command); written once
//!        state.json        status, pids (+ start times), exit code, times; replaced atomically
//!        bundle/config.json   the OCI runtime spec of the current run
//!        rootfs/           the overlay (layers as lower dirs + upper) while it runs
//!        upper/ work/      the writable layer, kept until the container is removed
//!        hosts hostname resolv.conf   bound onto /etc in the container
//!        container.log[.N] stdout/stderr as JSON lines ({"log","stream","time"}), rotated
//!        supervisor.log    the supervisor's own errors
//!        stop-requested    written by stop, kill and rm -f: no restart follows (`restart`)
//!        state.lock        held while a state is read, changed and written back (`update_state`)
//! ```
//! A container is `created`, `running` or `exited`. Whoever runs it (the foreground `hoist run`,
//! or the detached supervisor `hoist __supervise ID`) records its own pid and start time in
//! `state.json` next to the container init's; reading a state checks both, so a supervisor that
//! died (even by SIGKILL) never leaves a container reported as running: its init is killed and
//! the container is recorded as exited ([`ContainerStore::state`]).

pub mod attach;
pub mod health;
pub mod logs;
mod rename;
pub mod restart;
mod supervise;

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::spec::{BindMount, RunOptions};

pub use rename::RenameError;
pub use supervise::{
    Attach, ExecOptions, RawMode, RunError, Supervisor, exec, forwarded, write_etc_files,
};

/// What went wrong with a container.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("container name {0:?} is ambiguous: it prefixes several container ids")]
    Ambiguous(String),
    #[error(
        "conflict: the container name \"/{name}\" is already in use by container {id}: remove (or rename) that container to reuse the name"
    )]
    NameInUse { name: String, id: String },
    #[error("invalid container name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error(
        "cannot remove container {0}: container is running: stop the container before removing or force remove"
    )]
    Running(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is paused: unpause it first")]
    Paused(String),
    #[error("container {0} is not paused")]
    NotPaused(String),
    #[error("container {name}: {source}")]
    Cgroup {
        name: String,
        #[source]
        source: crate::exec::ExecError,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("invalid state file {path}: {reason}")]
    BadState { path: String, reason: String },
}

pub(crate) fn ioe(what: impl Into<String>) -> impl FnOnce(io::Error) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Io { what, source }
}

/// Leaves the caller's session (for the detached supervisor): no controlling terminal, none of
/// its signals. Fails silently for a process group leader, which stays where it is.
pub fn new_session() {
    let _ = nix::unistd::setsid();
}

/// A new random 64-hex id.
pub fn new_id() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("{}{}", a.simple(), b.simple())
}

/// RFC 3339 with nanoseconds, UTC (`2026-11-22T05:36:37.123456789Z`), docker's time format.
pub use hoist_oci::time::rfc3339_nanos as rfc3339;

/// Seconds since the epoch, now.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A mount of the container, as recorded (and shown by `inspect`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MountRecord {
    /// `volume` or `bind`.
    pub kind: String,
    /// The volume's name (for volumes).
    pub name: Option<String>,
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
    /// An anonymous volume made for this container: removed with it by `rm -v` and `--rm`.
    #[serde(default)]
    pub anonymous: bool,
    /// `volume-nocopy`: a new volume is not filled with what the image has at its path.
    #[serde(default)]
    pub no_copy: bool,
    /// A bind's propagation and recursion.
    #[serde(default)]
    pub bind: crate::spec::BindOptions,
}

impl MountRecord {
    pub fn bind_mount(&self) -> BindMount {
        BindMount {
            source: self.source.clone(),
            destination: self.destination.clone(),
            read_only: self.read_only,
            options: self.bind.clone(),
        }
    }
}

/// What a container is: written once at create.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ContainerConfig {
    /// `-l KEY=VALUE`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub id: String,
    pub name: String,
    /// RFC 3339.
    pub created: String,
    pub created_unix: i64,
    /// The image as the user named it (`busybox`, `busybox:1`).
    pub image: String,
    /// The image id (config digest).
    pub image_id: String,
    /// The image's repository in the store and its manifest digest (for `commit`).
    pub image_repo: String,
    pub image_manifest_digest: String,
    /// The image's manifest and config, as stored.
    pub image_manifest: Value,
    pub image_config: Value,
    /// Unpacked layer directories, bottom to top.
    pub layers: Vec<PathBuf>,
    pub options: RunOptions,
    /// The command: `path` and `args`, as docker shows them.
    pub path: String,
    pub args: Vec<String>,
    pub stop_signal: Option<String>,
    /// `--stop-timeout`, seconds.
    pub stop_timeout: Option<u64>,
    pub auto_remove: bool,
    pub mounts: Vec<MountRecord>,
    /// The network mode as given (`bridge`, `none`, `host`, `container:NAME`).
    pub network_mode: String,
    /// Log rotation: bytes per file and files kept.
    pub log_max_size: u64,
    pub log_max_files: u32,
    /// The OCI runtime that runs it: `None` is hoist's own executor, else a runtime CLI
    /// (`runc`, `crun`, or a path to one).
    #[serde(default)]
    pub runtime: Option<String>,
    /// `--restart`.
    #[serde(default)]
    pub restart_policy: restart::RestartPolicy,
    /// The health check: the image's `HEALTHCHECK` under the `--health-*` flags.
    #[serde(default)]
    pub healthcheck: Option<health::HealthConfig>,
}

/// `created`, `running` or `exited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        }
    }
}

/// A process and its start time (clock ticks since boot, `/proc/PID/stat` field 22): together
/// they name one process even when pids are reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    pub start: u64,
}

impl ProcessId {
    /// This process.
    pub fn current() -> Option<ProcessId> {
        let pid = std::process::id() as i32;
        Some(ProcessId {
            pid,
            start: process_start(pid)?,
        })
    }

    /// `pid` now, if it exists.
    pub fn of(pid: i32) -> Option<ProcessId> {
        Some(ProcessId {
            pid,
            start: process_start(pid)?,
        })
    }

    /// Whether this very process still exists (and is not a zombie).
    pub fn alive(&self) -> bool {
        self.pid > 0
            && process_stat(self.pid)
                .is_some_and(|(state, start)| start == self.start && state != 'Z')
    }
}

/// `/proc/PID/stat`: the state letter and the start time.
fn process_stat(pid: i32) -> Option<(char, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command is in parentheses and may hold spaces or parentheses: fields follow the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 overall is the 20th after the command (state is field 3).
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

fn process_start(pid: i32) -> Option<u64> {
    process_stat(pid).map(|(_, s)| s)
}

/// The mutable state of a container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    pub status: Status,
    /// The container's init (host pid), while it runs.
    pub init: Option<ProcessId>,
    /// Whoever supervises the current run.
    pub supervisor: Option<ProcessId>,
    pub exit_code: Option<i32>,
    /// Why the last start failed, or how the supervisor died.
    #[serde(default)]
    pub error: String,
    pub started_at: Option<String>,
    pub started_unix: Option<i64>,
    pub finished_at: Option<String>,
    pub finished_unix: Option<i64>,
    #[serde(default)]
    pub restart_count: u32,
    #[serde(default)]
    pub oom_killed: bool,
    /// Frozen by `hoist pause` (the status stays `running`, as docker's does).
    #[serde(default)]
    pub paused: bool,
    /// Between two runs of a restart policy (the status stays `running`, as docker's does).
    #[serde(default)]
    pub restarting: bool,
    /// The health checks' results, for a container with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<health::Health>,
}

impl State {
    fn created() -> State {
        State {
            status: Status::Created,
            init: None,
            supervisor: None,
            exit_code: None,
            error: String::new(),
            started_at: None,
            started_unix: None,
            finished_at: None,
            finished_unix: None,
            restart_count: 0,
            oom_killed: false,
            paused: false,
            restarting: false,
            health: None,
        }
    }

    pub fn running(&self) -> bool {
        self.status == Status::Running
    }

    /// docker's `State.Status`: `created`, `running`, `paused`, `restarting` or `exited`.
    pub fn status_name(&self) -> &'static str {
        if self.running() && self.paused {
            "paused"
        } else if self.running() && self.restarting {
            "restarting"
        } else {
            self.status.as_str()
        }
    }

    /// Docker's `STATUS` column: `Up 5 seconds`, `Exited (0) 3 minutes ago`, `Created`.
    pub fn describe(&self, now: i64) -> String {
        match self.status {
            Status::Created => "Created".to_owned(),
            Status::Running if self.restarting && !self.paused => format!(
                "Restarting ({}) {} ago",
                self.exit_code.unwrap_or(0),
                human_duration(now - self.finished_unix.unwrap_or(now))
            ),
            Status::Running => {
                let up = human_duration(now - self.started_unix.unwrap_or(now));
                match &self.health {
                    _ if self.paused => format!("Up {up} (Paused)"),
                    Some(h) => format!("Up {up} ({})", h.describe()),
                    None => format!("Up {up}"),
                }
            }
            Status::Exited => format!(
                "Exited ({}) {} ago",
                self.exit_code.unwrap_or(0),
                human_duration(now - self.finished_unix.unwrap_or(now))
            ),
        }
    }
}

/// Docker's `HumanDuration`: `Less than a second`, `5 seconds`, `About a minute`, `3 hours`...
pub use hoist_oci::time::human_duration;

/// A container: its config and (liveness-checked) state.
#[derive(Debug, Clone)]
pub struct Container {
    pub config: ContainerConfig,
    pub state: State,
    pub dir: PathBuf,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.config.id
    }
    pub fn short_id(&self) -> &str {
        &self.config.id[..12]
    }
    pub fn name(&self) -> &str {
        &self.config.name
    }
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    /// Docker's "init layer": the mount points the runtime needs (`/etc/hosts`, `/etc/hostname`,
    /// `/etc/mtab` -> `/proc/mounts`, `/etc/resolv.conf`, `/dev`, `/proc`, `/sys`, and the empty
    /// `/.dockerenv`), made once, stacked above the image's
    /// layers and below the upper dir, so they never show as changes of the container.
    pub fn init_layer(&self) -> PathBuf {
        self.dir.join("init")
    }
    /// The lower dirs of the rootfs, bottom..top: the image's layers, then the init layer.
    pub fn lowers(&self) -> Vec<PathBuf> {
        let mut l = self.config.layers.clone();
        l.push(self.init_layer());
        l
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("container.log")
    }
    pub fn hosts_path(&self) -> PathBuf {
        self.dir.join("hosts")
    }
    pub fn hostname_path(&self) -> PathBuf {
        self.dir.join("hostname")
    }
    pub fn resolv_conf_path(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
    /// The signal `stop` sends: the container's STOPSIGNAL, else SIGTERM.
    pub fn stop_signal(&self) -> i32 {
        self.config
            .stop_signal
            .as_deref()
            .and_then(parse_signal)
            .unwrap_or(libc::SIGTERM)
    }
}

/// Parses `TERM`, `SIGTERM`, `sigterm`, `15`.
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => {
            let rt = name.strip_prefix("RTMIN+")?.parse::<i32>().ok()?;
            let n = libc::SIGRTMIN() + rt;
            return (n <= libc::SIGRTMAX()).then_some(n);
        }
    };
    Some(n)
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ContainerError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(ioe(format!("creating a file in {}", dir.display())))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(ioe(format!("writing {}", path.display())))?;
    tmp.persist(path)
        .map_err(|e| ioe(format!("writing {}", path.display()))(e.error))?;
    Ok(())
}

/// Docker's container name rule.
pub fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

const ADJECTIVES: [&str; 24] = [
    "admiring",
    "brave",
    "clever",
    "dazzling",
    "eager",
    "focused",
    "gallant",
    "happy",
    "jolly",
    "keen",
    "loving",
    "modest",
    "nifty",
    "optimistic",
    "peaceful",
    "quirky",
    "relaxed",
    "serene",
    "tender",
    "upbeat",
    "vibrant",
    "wizardly",
    "youthful",
    "zealous",
];
const NAMES: [&str; 24] = [
    "babbage",
    "curie",
    "darwin",
    "einstein",
    "franklin",
    "goodall",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "lovelace",
    "mcclintock",
    "noether",
    "pascal",
    "ritchie",
    "shannon",
    "thompson",
    "turing",
    "volhard",
    "wilson",
    "wozniak",
    "yalow",
    "zhukovsky",
    "lamarr",
];

/// A random docker-style name (`brave_turing`), with a number when `attempt > 0`.
pub fn random_name(attempt: u32) -> String {
    let r = uuid::Uuid::new_v4();
    let b = r.as_bytes();
    let base = format!(
        "{}_{}",
        ADJECTIVES[b[0] as usize % ADJECTIVES.len()],
        NAMES[b[1] as usize % NAMES.len()]
    );
    if attempt == 0 {
        base
    } else {
        format!("{base}{}", u16::from_le_bytes([b[2], b[3]]) % 10)
    }
}

/// How long a name reserved for a container whose config does not exist yet stays taken: the
/// time `run` takes from reserving the name to writing the config, with a wide margin (a name
/// left by a `run` killed in between is free again after it).
const RESERVATION_GRACE: Duration = Duration::from_secs(60);

/// How long ago a symlink itself was made.
fn link_age(path: &Path) -> Option<Duration> {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .map(|t| t.elapsed().unwrap_or_default())
}

/// The containers of one hoist home.
#[derive(Debug, Clone)]
pub struct ContainerStore {
    root: PathBuf,
}

const CONFIG: &str = "container.json";
const STATE: &str = "state.json";

impl ContainerStore {
    /// The store at `home/containers`.
    pub fn open(home: &Path) -> Result<Self, ContainerError> {
        let root = home.join("containers");
        std::fs::create_dir_all(root.join(".names"))
            .map_err(ioe(format!("creating {}", root.display())))?;
        Ok(ContainerStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn names_dir(&self) -> PathBuf {
        self.root.join(".names")
    }

    /// Reserves `name` for `id` (a random name when `None`). Fails when the name is taken.
    pub fn reserve_name(&self, name: Option<&str>, id: &str) -> Result<String, ContainerError> {
        let mut attempt = 0;
        loop {
            let n = match name {
                Some(n) => {
                    let n = n.strip_prefix('/').unwrap_or(n);
                    if !valid_name(n) {
                        return Err(ContainerError::InvalidName(n.to_owned()));
                    }
                    n.to_owned()
                }
                None => random_name(attempt),
            };
            match std::os::unix::fs::symlink(id, self.names_dir().join(&n)) {
                Ok(()) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if name.is_some() {
                        let owner = std::fs::read_link(self.names_dir().join(&n))
                            .map(|p| p.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        // A name left by a container whose directory is gone is free again;
                        // one reserved moments ago is a `run --name` (or rename) that has not
                        // written its config yet, and stays taken.
                        if !owner.is_empty()
                            && !self.root.join(&owner).join(CONFIG).exists()
                            && link_age(&self.names_dir().join(&n))
                                .is_some_and(|age| age > RESERVATION_GRACE)
                        {
                            let _ = std::fs::remove_file(self.names_dir().join(&n));
                            continue;
                        }
                        return Err(ContainerError::NameInUse { name: n, id: owner });
                    }
                    attempt += 1;
                    if attempt > 100 {
                        return Err(ioe("choosing a container name")(e));
                    }
                }
                Err(e) => return Err(ioe(format!("reserving the name {n}"))(e)),
            }
        }
    }

    /// Creates the container's directory with `config` and a `created` state.
    pub fn create(&self, config: &ContainerConfig) -> Result<Container, ContainerError> {
        let dir = self.root.join(&config.id);
        for d in [
            &dir,
            &dir.join("upper"),
            &dir.join("work"),
            &dir.join("rootfs"),
            &dir.join("bundle"),
        ] {
            std::fs::create_dir_all(d).map_err(ioe(format!("creating {}", d.display())))?;
        }
        let init = dir.join("init");
        for d in ["etc", "dev", "proc", "sys"] {
            let p = init.join(d);
            std::fs::create_dir_all(&p).map_err(ioe(format!("creating {}", p.display())))?;
        }
        // `/.dockerenv` is docker's marker that a process runs in a container: scripts and
        // runtimes (Go's, Node's `is-docker`) look for it.
        for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf", ".dockerenv"] {
            let p = init.join(f);
            std::fs::write(&p, b"").map_err(ioe(format!("creating {}", p.display())))?;
        }
        // Docker makes its marker 0755.
        let marker = init.join(".dockerenv");
        std::fs::set_permissions(&marker, std::fs::Permissions::from_mode(0o755))
            .map_err(ioe(format!("setting the mode of {}", marker.display())))?;
        // As docker's init layer: /etc/mtab is the kernel's mount table.
        let mtab = init.join("etc/mtab");
        std::os::unix::fs::symlink("/proc/mounts", &mtab)
            .map_err(ioe(format!("creating {}", mtab.display())))?;
        let bytes = serde_json::to_vec_pretty(config).expect("a container config serialises");
        write_atomic(&dir.join(CONFIG), &bytes)?;
        let state = State::created();
        self.write_state(&config.id, &state)?;
        Ok(Container {
            config: config.clone(),
            state,
            dir,
        })
    }

    /// Replaces the config of `c` (with `network connect` on a container that is not running:
    /// what its next start joins).
    pub fn write_config(&self, config: &ContainerConfig) -> Result<(), ContainerError> {
        let bytes = serde_json::to_vec_pretty(config).expect("a container config serialises");
        write_atomic(&self.root.join(&config.id).join(CONFIG), &bytes)
    }

    /// Replaces the state of `id`.
    pub fn write_state(&self, id: &str, state: &State) -> Result<(), ContainerError> {
        let bytes = serde_json::to_vec_pretty(state).expect("a state serialises");
        write_atomic(&self.root.join(id).join(STATE), &bytes)
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, path: &Path) -> Result<T, ContainerError> {
        let bytes = std::fs::read(path).map_err(ioe(format!("reading {}", path.display())))?;
        serde_json::from_slice(&bytes).map_err(|e| ContainerError::BadState {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Every container id.
    pub fn ids(&self) -> Result<Vec<String>, ContainerError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.root)
            .map_err(ioe(format!("listing {}", self.root.display())))?
        {
            let e = e.map_err(ioe(format!("listing {}", self.root.display())))?;
            let n = e.file_name().to_string_lossy().into_owned();
            if n.len() == 64
                && n.bytes().all(|b| b.is_ascii_hexdigit())
                && e.path().join(CONFIG).exists()
            {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// Resolves a name, a full id or a unique id prefix to an id.
    pub fn resolve(&self, name_or_id: &str) -> Result<String, ContainerError> {
        let n = name_or_id.strip_prefix('/').unwrap_or(name_or_id);
        if n.len() == 64 && self.root.join(n).join(CONFIG).exists() {
            return Ok(n.to_owned());
        }
        if valid_name(n)
            && let Ok(id) = std::fs::read_link(self.names_dir().join(n))
        {
            let id = id.to_string_lossy().into_owned();
            if self.root.join(&id).join(CONFIG).exists() {
                return Ok(id);
            }
        }
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_hexdigit()) {
            let matches: Vec<String> = self
                .ids()?
                .into_iter()
                .filter(|id| id.starts_with(n))
                .collect();
            match matches.len() {
                0 => {}
                1 => return Ok(matches.into_iter().next().expect("one")),
                _ => return Err(ContainerError::Ambiguous(n.to_owned())),
            }
        }
        Err(ContainerError::NotFound(name_or_id.to_owned()))
    }

    /// The container `name_or_id`, with its state checked against its processes.
    pub fn get(&self, name_or_id: &str) -> Result<Container, ContainerError> {
        let id = self.resolve(name_or_id)?;
        self.load(&id)
    }

    /// The container `id`.
    pub fn load(&self, id: &str) -> Result<Container, ContainerError> {
        let dir = self.root.join(id);
        let config: ContainerConfig = match self.read_json(&dir.join(CONFIG)) {
            Err(ContainerError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(ContainerError::NotFound(id.to_owned()));
            }
            other => other?,
        };
        let state = self.state(id)?;
        Ok(Container { config, state, dir })
    }

    /// The cgroups of container `id` (the executor creates them at `/hoist/<id>`).
    fn cgroups(id: &str) -> Result<crate::exec::CgroupPaths, crate::exec::ExecError> {
        crate::exec::CgroupPaths::for_container(id, Some(Path::new(&format!("/hoist/{id}"))))
    }

    /// `hoist pause`: freezes every process of a running container.
    pub fn pause(&self, name_or_id: &str) -> Result<(), ContainerError> {
        let c = self.get(name_or_id)?;
        if !c.state.running() {
            return Err(ContainerError::NotRunning(c.name().to_owned()));
        }
        if c.state.paused {
            return Err(ContainerError::Paused(c.name().to_owned()));
        }
        Self::cgroups(c.id())
            .and_then(|cg| cg.freeze(true))
            .map_err(|source| ContainerError::Cgroup {
                name: c.name().to_owned(),
                source,
            })?;
        self.set_paused(c.id(), true)
    }

    /// `hoist unpause`: thaws a paused container.
    pub fn unpause(&self, name_or_id: &str) -> Result<(), ContainerError> {
        let c = self.get(name_or_id)?;
        if !c.state.running() || !c.state.paused {
            return Err(ContainerError::NotPaused(c.name().to_owned()));
        }
        self.thaw(c.id(), c.name())
    }

    /// Thaws `id` if it is paused (before it is signalled: a frozen process only dies once thawed).
    pub fn thaw_if_paused(&self, c: &Container) -> Result<(), ContainerError> {
        if c.state.paused {
            self.thaw(c.id(), c.name())?;
        }
        Ok(())
    }

    fn thaw(&self, id: &str, name: &str) -> Result<(), ContainerError> {
        Self::cgroups(id)
            .and_then(|cg| cg.freeze(false))
            .map_err(|source| ContainerError::Cgroup {
                name: name.to_owned(),
                source,
            })?;
        self.set_paused(id, false)
    }

    fn set_paused(&self, id: &str, paused: bool) -> Result<(), ContainerError> {
        self.update_state(id, |state| state.paused = paused && state.running())
            .map(|_| ())
    }

    /// Changes the state of `id` with `f`, under the container's `state.lock`: the supervisor,
    /// its health checks and `pause` never lose one another's changes.
    pub fn update_state(
        &self,
        id: &str,
        f: impl FnOnce(&mut State),
    ) -> Result<State, ContainerError> {
        let path = self.root.join(id).join("state.lock");
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path);
        let file = match file {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ContainerError::NotFound(id.to_owned()));
            }
            other => other.map_err(ioe(format!("opening {}", path.display())))?,
        };
        let _lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| ioe(format!("locking {}", path.display()))(io::Error::from(e)))?;
        let mut state = self.raw_state(id)?;
        f(&mut state);
        self.write_state(id, &state)?;
        Ok(state)
    }

    /// The raw state of `id`, as last written.
    /// [`ContainerError::NotFound`] once the container is removed (also while it removes
    /// itself, `--rm`, under a caller that still holds its id).
    pub fn raw_state(&self, id: &str) -> Result<State, ContainerError> {
        match self.read_json(&self.root.join(id).join(STATE)) {
            Err(ContainerError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Err(ContainerError::NotFound(id.to_owned()))
            }
            other => other,
        }
    }

    /// The state of `id`, checked: a `running` (or starting) container whose supervisor is gone
    /// is recorded as exited (its init, if still there, is killed first).
    pub fn state(&self, id: &str) -> Result<State, ContainerError> {
        let mut state = self.raw_state(id)?;
        let supervised = matches!(state.status, Status::Running)
            || (state.status == Status::Created && state.supervisor.is_some());
        if !supervised || state.supervisor.is_some_and(|s| s.alive()) {
            return Ok(state);
        }
        // The supervisor died before it could record the end. Re-read: it may have just done so.
        std::thread::sleep(Duration::from_millis(20));
        let again = self.raw_state(id)?;
        if again != state {
            state = again;
            if state.status != Status::Running || state.supervisor.is_some_and(|s| s.alive()) {
                return Ok(state);
            }
        }
        if let Some(init) = state.init
            && init.alive()
        {
            // SAFETY-free: a plain kill(2) of a process identified by pid and start time.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(init.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            crate::exec::CgroupPaths::for_container(id, Some(Path::new(&format!("/hoist/{id}"))))
                .map(|cg| {
                    cg.kill_all();
                    let _ = cg.remove();
                })
                .ok();
        }
        let was_running = state.status == Status::Running;
        let pid = state.supervisor.map_or(0, |s| s.pid);
        state.status = if was_running || state.started_at.is_some() {
            Status::Exited
        } else {
            Status::Created
        };
        if state.status == Status::Exited {
            state.exit_code = Some(state.exit_code.unwrap_or(255));
            let now = SystemTime::now();
            state.finished_at = Some(rfc3339(now));
            state.finished_unix = Some(now_unix());
        }
        state.error = format!("the supervisor (pid {pid}) died while the container ran");
        state.paused = false;
        state.restarting = false;
        state.init = None;
        state.supervisor = None;
        self.write_state(id, &state)?;
        Ok(state)
    }

    /// Every container, newest first.
    pub fn list(&self) -> Result<Vec<Container>, ContainerError> {
        let mut out = Vec::new();
        for id in self.ids()? {
            match self.load(&id) {
                Ok(c) => out.push(c),
                Err(ContainerError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| {
            b.config
                .created
                .cmp(&a.config.created)
                .then_with(|| a.config.id.cmp(&b.config.id))
        });
        Ok(out)
    }

    /// Volume name -> ids of the containers (any state) that use it.
    pub fn volumes_in_use(&self) -> Result<BTreeMap<String, Vec<String>>, ContainerError> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in self.list()? {
            for m in &c.config.mounts {
                if let Some(n) = &m.name {
                    out.entry(n.clone()).or_default().push(c.config.id.clone());
                }
            }
        }
        Ok(out)
    }

    /// Image ids some container (any state) uses.
    pub fn images_in_use(&self) -> Result<HashSet<String>, ContainerError> {
        Ok(self
            .list()?
            .into_iter()
            .map(|c| c.config.image_id)
            .collect())
    }

    /// Removes a container that is not running: its rootfs is unmounted first (never is a
    /// directory removed while something is mounted on it), then its directory and its name.
    /// Returns the anonymous volumes it had, for the caller to remove if asked.
    pub fn remove(&self, c: &Container) -> Result<Vec<String>, ContainerError> {
        if self.state(c.id())?.running() {
            return Err(ContainerError::Running(c.name().to_owned()));
        }
        unmount_all(&c.rootfs())?;
        // The name as recorded now: `c` may predate a rename.
        let name = self
            .read_json::<ContainerConfig>(&c.dir.join(CONFIG))
            .map_or_else(|_| c.name().to_owned(), |cfg| cfg.name);
        let gone = self.root.join(format!(".rm-{}", c.id()));
        match std::fs::rename(&c.dir, &gone) {
            // Another remover (`rm -f` against `--rm`) was first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ContainerError::NotFound(c.id().to_owned()));
            }
            r => r.map_err(ioe(format!("removing {}", c.dir.display())))?,
        }
        let link = self.names_dir().join(&name);
        if std::fs::read_link(&link).is_ok_and(|t| t == Path::new(c.id())) {
            let _ = std::fs::remove_file(&link);
        }
        std::fs::remove_dir_all(&gone).map_err(ioe(format!("removing {}", gone.display())))?;
        Ok(c.config
            .mounts
            .iter()
            .filter(|m| m.anonymous)
            .filter_map(|m| m.name.clone())
            .collect())
    }
}

/// Whether `path` is a mount point (its device differs from its parent's, or it is listed in
/// /proc/self/mountinfo).
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(canon) = std::fs::canonicalize(path) else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = canon.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|mp| mp == want))
}

/// Unmounts whatever is mounted at `path` (lazily, repeatedly for stacked mounts); fails if
/// something stays mounted.
pub fn unmount_all(path: &Path) -> Result<(), ContainerError> {
    for _ in 0..16 {
        if !is_mount_point(path) {
            return Ok(());
        }
        nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).map_err(|e| {
            ioe(format!("unmounting {}", path.display()))(io::Error::from_raw_os_error(e as i32))
        })?;
    }
    Err(ioe(format!("unmounting {}", path.display()))(
        io::Error::other("still mounted"),
    ))
}

#[cfg(test)]
mod tests;
