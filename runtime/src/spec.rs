//! Image config + run options -> OCI runtime [`Spec`], with docker's defaults.
//!
//! Pure: everything the builder needs (the image's `/etc/passwd` and `/etc/group`, the host's
//! rlimits, the container's file paths) is passed in, so every rule is unit-tested without root.
//!
//! What docker does, and so does this:
//! - capabilities: docker's default set (14 caps) in the bounding, effective and permitted sets for
//!   root; only the bounding set for other users (as execve would leave them); `--cap-add`,
//!   `--cap-drop` (`ALL` works in both), `--privileged` gives every capability the kernel knows;
//! - seccomp: docker's default profile ([`seccomp`]), an allowlist whose default action is an
//!   errno, with the capability- and architecture-conditional rules resolved for this container;
//!   none when privileged;
//! - masked and read-only paths under /proc and /sys (none when privileged), `noNewPrivileges`;
//! - mounts: /proc, /dev (tmpfs), /dev/pts, /dev/shm, /dev/mqueue, /sys (read-only unless
//!   privileged), and /etc/hosts, /etc/hostname, /etc/resolv.conf bound from the container dir;
//! - the process: Entrypoint + Cmd with `--entrypoint` and arguments overriding as docker does,
//!   Env (default PATH, HOSTNAME, TERM with a tty, HOME from the user's passwd entry), WorkingDir,
//!   User resolved through the image's own /etc/passwd and /etc/group;
//! - limits: `--memory`, `--cpus`, `--pids-limit` as cgroup resources; rlimits checked against the
//!   host's hard limits.

mod seccomp;
mod user;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::image::Config as ImageConfig;
use oci_spec::runtime::Spec;
use serde_json::{Value, json};

pub use seccomp::default_profile;
pub use user::{ExecUser, resolve_user};

/// What is wrong with the run options or the image.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("no command specified: the image has no Entrypoint or Cmd and none was given")]
    NoCommand,
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    #[error("building the runtime spec: {0}")]
    Build(String),
}

fn invalid(what: &'static str, value: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        what,
        value: value.into(),
        reason: reason.into(),
    }
}

/// Docker's default PATH, when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability by number (`capabilities(7)`), `CAP_CHOWN` = 0.
pub const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The annotation that asks hoist's executor for a reaper as PID 1 (`--init`).
pub const INIT_ANNOTATION: &str = "org.hoist.init";

/// Docker's masked paths (bind-mounted over with /dev/null or an empty read-only tmpfs).
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `--network`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The host's network with a hostname of its own (a RUN step's default, and what containers
    /// created before bridge networks recorded).
    #[default]
    Default,
    /// Bridge networks ([`RunOptions::networks`]): a namespace of its own, set up by the
    /// supervisor at each start ([`crate::net::sandbox`]), at [`crate::net::netns::path_for`].
    Bridge,
    /// A new network namespace with only the loopback interface.
    None,
    /// The host's network namespace and hostname.
    Host,
    /// Another container's network namespace: the `/proc/PID/ns/net` path of its init.
    Container(PathBuf),
}

impl Network {
    /// Parses `none`, `host`, `default`/`bridge`; `container:NAME` yields `Err(NAME)` for the
    /// caller to resolve to a namespace path.
    pub fn parse(s: &str) -> Result<Result<Network, String>, SpecError> {
        Ok(Ok(match s {
            "none" => Network::None,
            "host" => Network::Host,
            "default" | "bridge" => Network::Bridge,
            _ => match s.strip_prefix("container:") {
                Some(name) if !name.is_empty() => return Ok(Err(name.to_owned())),
                _ => {
                    return Err(invalid(
                        "network",
                        s,
                        "expected none, host, bridge or container:NAME",
                    ));
                }
            },
        }))
    }

    /// The name docker shows (`HostConfig.NetworkMode`).
    pub fn mode_name(&self) -> String {
        match self {
            Network::Default | Network::Bridge => "bridge".to_owned(),
            Network::None => "none".to_owned(),
            Network::Host => "host".to_owned(),
            Network::Container(p) => format!("container:{}", p.display()),
        }
    }
}

/// One mount the container gets from `-v` or a VOLUME: a host directory (a named volume's
/// `_data`, or a bind source) at `destination`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
    #[serde(default)]
    pub options: BindOptions,
}

/// `--mount type=bind`'s `bind-propagation` and `bind-nonrecursive`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BindOptions {
    /// private, rprivate (the default), shared, rshared, slave, rslave.
    #[serde(default)]
    pub propagation: Option<String>,
    /// A plain bind (submounts of the source left out) instead of docker's recursive one.
    #[serde(default)]
    pub non_recursive: bool,
}

/// A `--tmpfs DEST[:OPTIONS]` (or `--mount type=tmpfs`): a new tmpfs at `destination`, mounted
/// nosuid,nodev,noexec as docker's, with `options` (size=, mode=, ...) added.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TmpfsMount {
    pub destination: String,
    pub options: Vec<String>,
}

/// A `--device HOST[:CONTAINER][:PERMISSIONS]`: the host node's type and numbers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceMapping {
    pub path: String,
    /// `c` or `b`.
    pub kind: String,
    pub major: i64,
    pub minor: i64,
    pub file_mode: u32,
    /// `rwm` or a subset.
    pub permissions: String,
}

/// `--security-opt seccomp=...`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SeccompChoice {
    /// docker's default profile.
    #[default]
    Default,
    /// `seccomp=unconfined`: no filter.
    Unconfined,
    /// `seccomp=PATH`: a profile in moby's format (the file's text, read at create time).
    Profile(String),
}

/// A `--ulimit name=soft[:hard]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ulimit {
    /// `RLIMIT_NOFILE`, ...
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

/// `docker run` options that shape the runtime spec.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunOptions {
    /// `--tmpfs` and `--mount type=tmpfs`.
    #[serde(default)]
    pub tmpfs: Vec<TmpfsMount>,
    /// `--shm-size` in bytes (docker's default 64 MiB when `None`).
    #[serde(default)]
    pub shm_size: Option<u64>,
    /// `--security-opt no-new-privileges` (docker's default is off).
    #[serde(default)]
    pub no_new_privileges: bool,
    /// `--security-opt seccomp=...`.
    #[serde(default)]
    pub seccomp: SeccompChoice,
    /// `--init`: a reaper runs as PID 1 and the command as its child.
    #[serde(default)]
    pub init: bool,
    /// `--device`.
    #[serde(default)]
    pub devices: Vec<DeviceMapping>,
    /// `--group-add`: supplementary groups (gids or group names of the image).
    #[serde(default)]
    pub group_add: Vec<String>,
    /// `--entrypoint`: `Some("")` clears the image's entrypoint.
    pub entrypoint: Option<String>,
    /// Arguments after the image: they replace the image's Cmd.
    pub args: Vec<String>,
    /// Supplementary groups from `/etc/group` only, as BuildKit's RUN has them (`docker run`
    /// also lists the primary group, which is the default).
    #[serde(default)]
    pub groups_from_group_file_only: bool,
    /// No `HOSTNAME` in the environment, as BuildKit's RUN has none (`docker run` sets it, the
    /// default).
    #[serde(default)]
    pub no_hostname_env: bool,
    /// `KEY=VALUE` from `--env-file` then `-e`, in order (later wins).
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub hostname: Option<String>,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub read_only: bool,
    pub tty: bool,
    pub interactive: bool,
    /// Bytes.
    pub memory: Option<i64>,
    /// Nano-CPUs (0.5 CPU = 500_000_000), docker's unit.
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    pub network: Network,
    /// The bridge networks of [`Network::Bridge`], in order (the first is `eth0`, the default
    /// route, and carries the published ports).
    #[serde(default)]
    pub networks: Vec<crate::net::sandbox::NetworkRequest>,
    /// `-p`/`-P`.
    #[serde(default)]
    pub publish: Vec<crate::net::sandbox::PortRequest>,
    /// `--dns`.
    #[serde(default)]
    pub dns: Vec<String>,
    /// `--add-host NAME:IP`.
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    /// A pod's IPC and UTS namespaces to join (its infra process's `/proc/PID/ns/ipc` and
    /// `/proc/PID/ns/uts`); the hostname is then the pod's.
    #[serde(default)]
    pub ipc_ns: Option<PathBuf>,
    #[serde(default)]
    pub uts_ns: Option<PathBuf>,
    #[serde(default)]
    pub ulimits: Vec<Ulimit>,
    pub mounts: Vec<BindMount>,
}

/// Facts about the container and the host the builder needs.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The container's 64-hex id.
    pub id: &'a str,
    /// The merged root filesystem (absolute).
    pub rootfs: &'a Path,
    /// `hosts`, `hostname`, `resolv.conf` files in the container dir, bound onto /etc.
    pub hosts_path: &'a Path,
    pub hostname_path: &'a Path,
    pub resolv_conf_path: &'a Path,
    /// The image's `/etc/passwd` and `/etc/group`, when it has them.
    pub passwd: Option<&'a str>,
    pub group: Option<&'a str>,
    /// The host's hard rlimits (`RLIMIT_NOFILE` -> 20000); a `--ulimit` over one is refused.
    pub host_hard_limits: &'a BTreeMap<&'static str, u64>,
    /// The host's hostname, for `--network host`.
    pub host_hostname: &'a str,
    /// `/proc/sys/kernel/cap_last_cap`.
    pub cap_last_cap: usize,
    /// cgroups path (`/hoist/ID`).
    pub cgroups_path: String,
}

/// The hostname a container gets: `--hostname`, else the host's under `--network host`, else the
/// short id.
pub fn hostname(opts: &RunOptions, id: &str, host_hostname: &str) -> String {
    match (&opts.hostname, &opts.network) {
        (Some(h), _) => h.clone(),
        (None, Network::Host) => host_hostname.to_owned(),
        _ => id.chars().take(12).collect(),
    }
}

/// Entrypoint + Cmd, as docker combines them: `--entrypoint` replaces the image's entrypoint and
/// drops its Cmd; arguments replace Cmd.
pub fn command(image: Option<&ImageConfig>, opts: &RunOptions) -> Result<Vec<String>, SpecError> {
    let image_ep = image
        .and_then(|c| c.entrypoint().clone())
        .unwrap_or_default();
    let image_cmd = image.and_then(|c| c.cmd().clone()).unwrap_or_default();
    let (entrypoint, default_cmd) = match &opts.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.clone()], Vec::new()),
        None => (image_ep, image_cmd),
    };
    let cmd = if opts.args.is_empty() {
        default_cmd
    } else {
        opts.args.clone()
    };
    let all: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if all.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(all)
}

/// The environment: image Env (PATH defaulted), HOSTNAME (unless the options say none), TERM
/// with a tty, then the options'
/// variables (later keys replace earlier ones, keeping the first position), HOME last if unset.
pub fn environment(
    image: Option<&ImageConfig>,
    opts: &RunOptions,
    hostname: &str,
    home: &str,
) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |kv: &str| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(e) => e.1 = v.to_owned(),
            None => env.push((k.to_owned(), v.to_owned())),
        }
    };
    set(&format!("PATH={DEFAULT_PATH}"));
    if !opts.no_hostname_env {
        set(&format!("HOSTNAME={hostname}"));
    }
    for kv in image.and_then(|c| c.env().clone()).unwrap_or_default() {
        set(&kv);
    }
    if opts.tty {
        set("TERM=xterm");
    }
    for kv in &opts.env {
        set(kv);
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".to_owned(), home.to_owned()));
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Normalises a capability name: `net_admin`, `NET_ADMIN`, `CAP_NET_ADMIN` -> `CAP_NET_ADMIN`.
fn cap_name(s: &str) -> Result<String, SpecError> {
    let up = s.to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if ALL_CAPS.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(invalid("capability", s, "unknown capability"))
    }
}

/// The capability list: docker's defaults (or every capability up to `last_cap` when
/// privileged), minus `drop`, plus `add`. `ALL` in `drop` starts from nothing; in `add`, from
/// everything. Adding wins over dropping the same capability, as in docker.
pub fn capabilities(
    add: &[String],
    drop: &[String],
    privileged: bool,
    last_cap: usize,
) -> Result<Vec<String>, SpecError> {
    let all: Vec<String> = ALL_CAPS
        .iter()
        .take(last_cap + 1)
        .map(|c| (*c).to_owned())
        .collect();
    if privileged {
        return Ok(all);
    }
    let add: Vec<String> = add.iter().map(|c| cap_name(c)).collect::<Result<_, _>>()?;
    let drop: Vec<String> = drop.iter().map(|c| cap_name(c)).collect::<Result<_, _>>()?;
    if add.iter().any(|c| c == "ALL") {
        return Ok(all
            .into_iter()
            .filter(|c| !drop.contains(c) || add.contains(c))
            .collect());
    }
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS
            .iter()
            .map(|c| (*c).to_owned())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    for c in add {
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    Ok(caps)
}

/// Parses a docker memory size: `64m`, `1g`, `512k`, `1024b`, `1024` (bytes).
pub fn parse_memory(s: &str) -> Result<i64, SpecError> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let mult: i64 = match &t[i..] {
                "b" => 1,
                "k" | "kb" | "kib" => 1 << 10,
                "m" | "mb" | "mib" => 1 << 20,
                "g" | "gb" | "gib" => 1 << 30,
                "t" | "tb" | "tib" => 1 << 40,
                _ => return Err(invalid("memory size", s, "unknown unit (use b, k, m, g)")),
            };
            (&t[..i], mult)
        }
        None => (t.as_str(), 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| invalid("memory size", s, "not a number"))?;
    if !n.is_finite() || n <= 0.0 {
        return Err(invalid("memory size", s, "must be positive"));
    }
    let bytes = (n * mult as f64) as i64;
    // The kernel's floor for a memory cgroup limit that can still run a process; docker's too.
    if bytes < 6 * 1024 * 1024 {
        return Err(invalid(
            "memory size",
            s,
            "minimum memory limit allowed is 6MB",
        ));
    }
    Ok(bytes)
}

/// Parses `--cpus 0.5` into nano-CPUs.
pub fn parse_cpus(s: &str) -> Result<i64, SpecError> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| invalid("cpus", s, "not a number"))?;
    if !n.is_finite() || n <= 0.0 {
        return Err(invalid("cpus", s, "must be positive"));
    }
    let nano = (n * 1e9).round() as i64;
    // Docker's floor: a CFS quota of at least 1 ms per 100 ms period.
    if nano < 10_000_000 {
        return Err(invalid("cpus", s, "the minimum is 0.01"));
    }
    Ok(nano)
}

/// Parses `--ulimit nofile=1024[:2048]`, checking it against the host's hard limits.
pub fn parse_ulimit(s: &str, host_hard: &BTreeMap<&'static str, u64>) -> Result<Ulimit, SpecError> {
    let (name, vals) = s
        .split_once('=')
        .ok_or_else(|| invalid("ulimit", s, "expected NAME=SOFT[:HARD]"))?;
    let kind = RLIMITS
        .iter()
        .find(|(n, _)| *n == name.to_ascii_lowercase())
        .map(|(_, k)| *k)
        .ok_or_else(|| invalid("ulimit", s, format!("unknown limit {name}")))?;
    let num = |v: &str| -> Result<u64, SpecError> {
        if v == "-1" || v == "unlimited" {
            return Ok(u64::MAX);
        }
        v.parse()
            .map_err(|_| invalid("ulimit", s, format!("{v:?} is not a number")))
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(vals)?, num(vals)?),
    };
    if soft > hard {
        return Err(invalid(
            "ulimit",
            s,
            format!("soft limit {soft} is above the hard limit {hard}"),
        ));
    }
    if let Some(max) = host_hard.get(kind)
        && hard > *max
    {
        return Err(invalid(
            "ulimit",
            s,
            format!("hard limit {hard} is above the host's hard limit {max}"),
        ));
    }
    Ok(Ulimit {
        kind: kind.to_owned(),
        soft,
        hard,
    })
}

/// `--ulimit` names and their OCI types.
pub const RLIMITS: [(&str, &str); 15] = [
    ("core", "RLIMIT_CORE"),
    ("cpu", "RLIMIT_CPU"),
    ("data", "RLIMIT_DATA"),
    ("fsize", "RLIMIT_FSIZE"),
    ("locks", "RLIMIT_LOCKS"),
    ("memlock", "RLIMIT_MEMLOCK"),
    ("msgqueue", "RLIMIT_MSGQUEUE"),
    ("nice", "RLIMIT_NICE"),
    ("nofile", "RLIMIT_NOFILE"),
    ("nproc", "RLIMIT_NPROC"),
    ("rss", "RLIMIT_RSS"),
    ("rtprio", "RLIMIT_RTPRIO"),
    ("rttime", "RLIMIT_RTTIME"),
    ("sigpending", "RLIMIT_SIGPENDING"),
    ("stack", "RLIMIT_STACK"),
];

/// Parses an `--env-file`: `KEY=VALUE` lines, `#` comments and blank lines skipped, a bare
/// `KEY` taken from `lookup` (dropped when unset there), as docker does.
pub fn parse_env_file(
    text: &str,
    file: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, SpecError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.extend(
            env_entry(line, &lookup)
                .map_err(|reason| invalid("env file line", format!("{file}:{}", n + 1), reason))?,
        );
    }
    Ok(out)
}

/// One `-e` value: `KEY=VALUE`, or `KEY` taken from `lookup` (none when unset there).
pub fn env_entry(
    s: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    let (k, v) = match s.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (s.trim_end(), None),
    };
    if k.is_empty() {
        return Err(format!("variable {s:?} has an empty name"));
    }
    if k.contains(char::is_whitespace) {
        return Err(format!("variable {k:?} contains whitespaces"));
    }
    Ok(match v {
        Some(v) => Some(format!("{k}={v}")),
        None => lookup(k).map(|v| format!("{k}={v}")),
    })
}

/// Checks a `-w`: it must be absolute.
pub fn check_workdir(w: &str) -> Result<(), SpecError> {
    if w.starts_with('/') {
        Ok(())
    } else {
        Err(invalid(
            "working directory",
            w,
            "it needs to be an absolute path",
        ))
    }
}

/// The working directory: `-w`, else the image's, else `/`.
pub fn workdir(image: Option<&ImageConfig>, opts: &RunOptions) -> Result<String, SpecError> {
    let w = opts
        .workdir
        .clone()
        .or_else(|| image.and_then(|c| c.working_dir().clone()))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    check_workdir(&w)?;
    Ok(w)
}

/// Builds the OCI runtime spec.
pub fn build(
    image: Option<&ImageConfig>,
    opts: &RunOptions,
    ctx: &Context<'_>,
) -> Result<Spec, SpecError> {
    let args = command(image, opts)?;
    let user_arg = opts
        .user
        .clone()
        .or_else(|| image.and_then(|c| c.user().clone()))
        .unwrap_or_default();
    let mut user = user::resolve_user_as(
        &user_arg,
        ctx.passwd,
        ctx.group,
        !opts.groups_from_group_file_only,
    )?;
    for g in &opts.group_add {
        let gid = user::group_id(g, ctx.group).ok_or_else(|| SpecError::UnknownGroup(g.clone()))?;
        if !user.additional_gids.contains(&gid) {
            user.additional_gids.push(gid);
        }
    }
    let hostname = hostname(opts, ctx.id, ctx.host_hostname);
    let env = environment(image, opts, &hostname, &user.home);
    let cwd = workdir(image, opts)?;
    let caps = capabilities(
        &opts.cap_add,
        &opts.cap_drop,
        opts.privileged,
        ctx.cap_last_cap,
    )?;

    let capabilities = if user.uid == 0 {
        json!({"bounding": caps, "effective": caps, "permitted": caps})
    } else {
        json!({"bounding": caps})
    };
    let rlimits: Vec<Value> = opts
        .ulimits
        .iter()
        .map(|u| json!({"type": u.kind, "soft": u.soft, "hard": u.hard}))
        .collect();
    let mut process = json!({
        "terminal": opts.tty,
        "user": {"uid": user.uid, "gid": user.gid},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": capabilities,
        "noNewPrivileges": opts.no_new_privileges,
        "oomScoreAdj": 0,
    });
    if !user.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(user.additional_gids);
    }
    if !rlimits.is_empty() {
        process["rlimits"] = json!(rlimits);
    }

    let sys_opts: Vec<&str> = if opts.privileged {
        vec!["nosuid", "noexec", "nodev"]
    } else {
        vec!["nosuid", "noexec", "nodev", "ro"]
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777",
                           format!("size={}", opts.shm_size.unwrap_or(64 << 20))]}),
    ];
    // The /etc files and the user mounts, shallowest destination first (a volume on /etc goes
    // under /etc/hosts, as docker orders them); a user mount over one of the /etc files wins.
    let mut binds: Vec<(String, Value)> = Vec::new();
    for (dest, src) in [
        ("/etc/resolv.conf", ctx.resolv_conf_path),
        ("/etc/hostname", ctx.hostname_path),
        ("/etc/hosts", ctx.hosts_path),
    ] {
        if opts.mounts.iter().any(|m| m.destination == dest) {
            continue;
        }
        let mut options = vec!["rbind", "rprivate"];
        if opts.read_only {
            options.push("ro");
        }
        binds.push((
            dest.to_owned(),
            json!({"destination": dest, "type": "bind", "source": src, "options": options}),
        ));
    }
    for m in &opts.mounts {
        if !m.destination.starts_with('/') {
            return Err(invalid(
                "mount destination",
                &m.destination,
                "it needs to be an absolute path",
            ));
        }
        let mut options = vec![
            if m.options.non_recursive {
                "bind"
            } else {
                "rbind"
            },
            m.options.propagation.as_deref().unwrap_or("rprivate"),
        ];
        if m.read_only {
            options.push("ro");
        }
        binds.push((
            m.destination.clone(),
            json!({"destination": m.destination, "type": "bind",
                   "source": m.source, "options": options}),
        ));
    }
    binds.sort_by_key(|(d, _)| d.trim_end_matches('/').matches('/').count());
    mounts.extend(binds.into_iter().map(|(_, m)| m));
    let mut tmpfs: Vec<&TmpfsMount> = opts.tmpfs.iter().collect();
    tmpfs.sort_by_key(|m| m.destination.matches('/').count());
    for t in tmpfs {
        if !t.destination.starts_with('/') || t.destination == "/" {
            return Err(invalid(
                "tmpfs destination",
                &t.destination,
                "it needs to be an absolute path other than /",
            ));
        }
        let mut options = vec!["nosuid".to_owned(), "nodev".to_owned(), "noexec".to_owned()];
        options.extend(t.options.iter().cloned());
        mounts.push(json!({"destination": t.destination, "type": "tmpfs",
                           "source": "tmpfs", "options": options}));
    }

    let joined = |kind: &str, path: &Option<PathBuf>| match path {
        Some(p) => json!({"type": kind, "path": p}),
        None => json!({"type": kind}),
    };
    let mut namespaces = vec![
        json!({"type": "pid"}),
        joined("ipc", &opts.ipc_ns),
        joined("uts", &opts.uts_ns),
        json!({"type": "mount"}),
    ];
    match &opts.network {
        Network::None => namespaces.push(json!({"type": "network"})),
        Network::Container(path) => namespaces.push(json!({"type": "network", "path": path})),
        Network::Bridge => {
            let path = crate::net::netns::path_for(ctx.id);
            namespaces.push(json!({"type": "network", "path": path}));
        }
        Network::Default | Network::Host => {}
    }

    let mut device_rules = default_device_rules(opts.privileged);
    let mut devices = Vec::new();
    for d in &opts.devices {
        devices.push(
            json!({"path": d.path, "type": d.kind, "major": d.major, "minor": d.minor,
                            "fileMode": d.file_mode, "uid": 0, "gid": 0}),
        );
        if let Some(rules) = device_rules.as_array_mut() {
            rules.push(json!({"allow": true, "type": d.kind, "major": d.major,
                              "minor": d.minor, "access": d.permissions}));
        }
    }
    let mut resources = json!({"devices": device_rules});
    if let Some(m) = opts.memory {
        resources["memory"] = json!({"limit": m});
    }
    if let Some(nano) = opts.nano_cpus {
        let period: u64 = 100_000;
        let quota = (nano as i128 * period as i128 / 1_000_000_000) as i64;
        resources["cpu"] = json!({"quota": quota, "period": period});
    }
    if let Some(p) = opts.pids_limit {
        resources["pids"] = json!({"limit": p});
    }

    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": ctx.cgroups_path,
    });
    if !devices.is_empty() {
        linux["devices"] = json!(devices);
    }
    if !opts.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
        // The profile's capability rules follow the container's capability list, as docker's do.
        let effective: Vec<&str> = caps.iter().map(String::as_str).collect();
        match &opts.seccomp {
            SeccompChoice::Default => {
                linux["seccomp"] = default_profile(&effective, std::env::consts::ARCH);
            }
            SeccompChoice::Unconfined => {}
            SeccompChoice::Profile(text) => {
                linux["seccomp"] = seccomp::profile_from(text, &effective, std::env::consts::ARCH)
                    .map_err(|e| invalid("seccomp profile", "", &e))?;
            }
        }
    }

    let spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": ctx.rootfs, "readonly": opts.read_only},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
        "annotations": {"org.hoist.container.id": ctx.id},
    });
    let mut spec = spec;
    if opts.uts_ns.is_some() {
        // The joined UTS namespace's hostname stays (a pod's).
        if let Some(o) = spec.as_object_mut() {
            o.remove("hostname");
        }
    }
    if opts.init {
        spec["annotations"][INIT_ANNOTATION] = json!("true");
    }
    serde_json::from_value(spec).map_err(|e| SpecError::Build(e.to_string()))
}

/// Docker's default device cgroup rules: deny everything, then allow mknod of any device and the
/// standard nodes (null, zero, full, random, urandom, tty, ptmx, pts, tun). Privileged: allow all.
fn default_device_rules(privileged: bool) -> Value {
    if privileged {
        return json!([{"allow": true, "access": "rwm"}]);
    }
    json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "access": "m"},
        {"allow": true, "type": "b", "access": "m"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
        {"allow": true, "type": "c", "major": 136, "access": "rwm"},
        {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
    ])
}

/// The host's hard rlimits that `--ulimit` is checked against.
pub fn host_hard_limits() -> BTreeMap<&'static str, u64> {
    use nix::sys::resource::{Resource, getrlimit};
    let mut out = BTreeMap::new();
    for (kind, r) in [
        ("RLIMIT_NOFILE", Resource::RLIMIT_NOFILE),
        ("RLIMIT_NPROC", Resource::RLIMIT_NPROC),
        ("RLIMIT_CORE", Resource::RLIMIT_CORE),
        ("RLIMIT_STACK", Resource::RLIMIT_STACK),
        ("RLIMIT_MEMLOCK", Resource::RLIMIT_MEMLOCK),
        ("RLIMIT_FSIZE", Resource::RLIMIT_FSIZE),
        ("RLIMIT_CPU", Resource::RLIMIT_CPU),
        ("RLIMIT_DATA", Resource::RLIMIT_DATA),
        ("RLIMIT_SIGPENDING", Resource::RLIMIT_SIGPENDING),
        ("RLIMIT_MSGQUEUE", Resource::RLIMIT_MSGQUEUE),
        ("RLIMIT_NICE", Resource::RLIMIT_NICE),
        ("RLIMIT_RTPRIO", Resource::RLIMIT_RTPRIO),
        ("RLIMIT_RSS", Resource::RLIMIT_RSS),
        ("RLIMIT_LOCKS", Resource::RLIMIT_LOCKS),
        ("RLIMIT_RTTIME", Resource::RLIMIT_RTTIME),
    ] {
        if let Ok((_, hard)) = getrlimit(r) {
            out.insert(kind, hard);
        }
    }
    out
}

/// `/proc/sys/kernel/cap_last_cap`, or the highest capability hoist knows.
pub fn cap_last_cap() -> usize {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(ALL_CAPS.len() - 1)
        .min(ALL_CAPS.len() - 1)
}

#[cfg(test)]
mod tests;
