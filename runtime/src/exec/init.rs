//! The container init helper: runs in a freshly exec'd, single-threaded process (see the module
//! docs of `exec` for the protocol). Every step that fails is reported to the caller over the
//! sync socket as one line naming what failed.
#![allow(unsafe_code)] // namespaces, clone, capabilities, execve: raw syscalls, each with SAFETY

use std::convert::Infallible;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, LinuxNamespaceType, LinuxSeccomp, PosixRlimitType, Process, Spec,
};

use super::mounts::{self, Ctx, FsContext, SetupResult};
use super::proto::{self, Msg, Request};
use super::seccomp;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Entry point of the init helper (never returns).
pub(crate) fn main(fd: i32) -> ! {
    // SAFETY: `fd` is the sync socket the executor passed us; nothing else owns it.
    let mut sock = unsafe { UnixStream::from_raw_fd(fd) };
    let code = match helper(&mut sock) {
        Ok(()) => 0,
        Err(e) => {
            let _ = proto::send_io(&mut sock, &Msg::Error(e));
            1
        }
    };
    std::process::exit(code)
}

fn sys(r: libc::c_long, what: impl FnOnce() -> String) -> SetupResult<libc::c_long> {
    if r < 0 {
        Err(format!("{}: {}", what(), io::Error::last_os_error()))
    } else {
        Ok(r)
    }
}

fn ns_flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => 0x80, // CLONE_NEWTIME
    }
}

/// setns order: user first (it grants the capabilities for the others), mount last (it changes
/// what paths mean).
const NS_ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Mount,
];

fn setns(file: &std::fs::File, flag: libc::c_int, what: &str) -> SetupResult<()> {
    // SAFETY: plain syscall on an open namespace fd.
    let r = unsafe { libc::setns(file.as_raw_fd(), flag) };
    sys(r as libc::c_long, || format!("setns {what}"))?;
    Ok(())
}

fn become_root_in_userns() -> SetupResult<()> {
    // SAFETY: plain syscalls.
    unsafe {
        sys(libc::setresgid(0, 0, 0) as libc::c_long, || {
            "setresgid 0 in the user namespace (is 0 mapped?)".into()
        })?;
        sys(libc::setresuid(0, 0, 0) as libc::c_long, || {
            "setresuid 0 in the user namespace (is 0 mapped?)".into()
        })?;
    }
    Ok(())
}

/// Clones the container's process (see [`clone_parent`]); the helper reports its pid to the
/// caller and returns `Some(pid)`; the child gets `None`, once that report is on the socket
/// (both write to the same socket: the pid must come first).
fn spawn_reported(sock: &mut UnixStream) -> SetupResult<Option<libc::pid_t>> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe".into())?;
    let pid = clone_parent()?;
    if pid > 0 {
        drop(r);
        let sent = proto::send_io(sock, &Msg::Pid(pid)).ctx(|| "send the pid".into());
        drop(w);
        return sent.map(|()| Some(pid));
    }
    drop(w);
    let mut b = [0u8; 1];
    // EOF once the helper has sent the pid and closed its end.
    let _ = nix::unistd::read(&r, &mut b);
    Ok(None)
}

/// fork-like clone whose child's parent is our parent (the executor's process), so the
/// executor can wait for it.
fn clone_parent() -> SetupResult<libc::pid_t> {
    // SAFETY: fork-like clone (no new stack) in a single-threaded process; the child continues
    // on a copy of our memory.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    Ok(sys(r, || "clone".into())? as libc::pid_t)
}

fn helper(sock: &mut UnixStream) -> SetupResult<()> {
    // SAFETY: plain syscalls: no core dumps or ptrace/proc access to this (host binary) process;
    // every inherited descriptor but stdio is closed at exec (the socket included).
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        sys(
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                4u32, /* CLOEXEC */
            ),
            || "close_range".into(),
        )?;
        libc::umask(0);
    }
    let req = proto::recv_request(sock).ctx(|| "read the init request".into())?;
    match req {
        Request::Create {
            id: _,
            bundle,
            rootfs,
            spec,
            console,
        } => create(sock, &spec, &rootfs, &bundle, console.as_deref()),
        Request::Exec {
            target_pid,
            process,
            seccomp,
        } => exec(sock, target_pid, &process, seccomp.as_deref()),
    }
}

fn create(
    sock: &mut UnixStream,
    spec: &Spec,
    rootfs: &Path,
    bundle: &Path,
    console: Option<&Path>,
) -> SetupResult<()> {
    let linux = spec.linux().clone().unwrap_or_default();
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let process = spec.process().as_ref().ok_or("no process")?;
    let has = |t| namespaces.iter().any(|n| n.typ() == t);
    if !has(LinuxNamespaceType::Mount) {
        return Err("a mount namespace is required".into());
    }
    // Open every namespace to join before joining any.
    let mut joins = Vec::new();
    for t in NS_ORDER {
        for n in namespaces.iter().filter(|n| n.typ() == t) {
            if let Some(p) = n.path() {
                let f = std::fs::File::open(p).ctx(|| format!("open namespace {}", p.display()))?;
                joins.push((t, f, p.clone()));
            }
        }
    }
    for (t, f, p) in &joins {
        setns(f, ns_flag(*t), &p.display().to_string())?;
        if *t == LinuxNamespaceType::User {
            become_root_in_userns()?;
        }
    }
    let new = |t| {
        namespaces
            .iter()
            .any(|n| n.typ() == t && n.path().is_none())
    };
    let userns = has(LinuxNamespaceType::User);
    if new(LinuxNamespaceType::User) {
        // SAFETY: plain syscall in a single-threaded process.
        sys(
            unsafe { libc::unshare(libc::CLONE_NEWUSER) } as libc::c_long,
            || "unshare the user namespace".into(),
        )?;
        proto::send_io(sock, &Msg::NeedMaps).ctx(|| "ask for id maps".into())?;
        match proto::recv_io(sock).ctx(|| "wait for id maps".into())? {
            Msg::MapsDone => {}
            other => return Err(format!("expected maps, got {other:?}")),
        }
        become_root_in_userns()?;
    }
    let host_cgroups =
        std::fs::read_to_string("/proc/self/cgroup").ctx(|| "read /proc/self/cgroup".into())?;
    let mut flags = 0;
    for n in &namespaces {
        if n.path().is_none() && n.typ() != LinuxNamespaceType::User {
            flags |= ns_flag(n.typ());
        }
    }
    // SAFETY: plain syscall in a single-threaded process.
    sys(unsafe { libc::unshare(flags) } as libc::c_long, || {
        format!("unshare namespaces {flags:#x}")
    })?;
    if spawn_reported(sock)?.is_some() {
        return Ok(());
    }
    // The container's init (PID 1 of a new pid namespace).
    let fs = FsContext {
        spec,
        rootfs,
        bundle,
        console,
        userns,
        host_cgroups: &host_cgroups,
    };
    let Err(e) = container_init(sock, &fs, process, &linux);
    let _ = proto::send_io(sock, &Msg::Error(e));
    // SAFETY: leave without running anything of the parent's (no atexit, no flushes).
    unsafe { libc::_exit(1) }
}

fn container_init(
    sock: &mut UnixStream,
    fs: &FsContext<'_>,
    process: &Process,
    linux: &oci_spec::runtime::Linux,
) -> SetupResult<Infallible> {
    let spec = fs.spec;
    let namespaces = linux.namespaces().as_deref().unwrap_or(&[]);
    let new_net = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_none());
    if new_net {
        loopback_up()?;
    }
    let seccomp_prog = linux
        .seccomp()
        .as_ref()
        .map(|s| {
            seccomp::compile(s)
                .map(|p| (p, s))
                .map_err(|e| e.to_string())
        })
        .transpose()?;
    mounts::setup(fs)?;
    if let Some(h) = spec.hostname().as_deref() {
        if !namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Uts)
        {
            return Err("a hostname needs a uts namespace".into());
        }
        nix::unistd::sethostname(h).ctx(|| format!("set hostname {h:?}"))?;
    }
    if let Some(d) = spec.domainname().as_deref() {
        let c = CString::new(d).map_err(|_| "domainname has a NUL")?;
        // SAFETY: c is NUL-terminated; the length excludes the NUL.
        sys(
            unsafe { libc::setdomainname(c.as_ptr(), d.len()) } as libc::c_long,
            || format!("set domainname {d:?}"),
        )?;
    }
    for (k, v) in linux.sysctl().iter().flatten() {
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        std::fs::write(&path, v).ctx(|| format!("sysctl {k}={v}"))?;
    }
    mounts::finish(fs)?;
    let (seccomp_prog, seccomp_spec) = match &seccomp_prog {
        Some((p, s)) => (Some(p.as_slice()), Some(*s)),
        None => (None, None),
    };
    let reaper = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(crate::spec::INIT_ANNOTATION))
        .is_some_and(|v| v == "true");
    run_process(sock, process, seccomp_prog, seccomp_spec, reaper)
}

/// The common tail of create and exec: rlimits, cwd, the executable, then "ready", wait for
/// "start", then session, seccomp, user, capabilities, no_new_privs and execve.
fn run_process(
    sock: &mut UnixStream,
    process: &Process,
    seccomp_prog: Option<&[seccompiler::sock_filter]>,
    seccomp_spec: Option<&LinuxSeccomp>,
    reaper: bool,
) -> SetupResult<Infallible> {
    for rl in process.rlimits().iter().flatten() {
        let res = rlimit_resource(rl.typ());
        let lim = libc::rlimit {
            rlim_cur: rl.soft(),
            rlim_max: rl.hard(),
        };
        // SAFETY: lim is a valid rlimit.
        sys(
            unsafe { libc::setrlimit(res, &lim) } as libc::c_long,
            || {
                format!(
                    "setrlimit {:?} soft {} hard {}",
                    rl.typ(),
                    rl.soft(),
                    rl.hard()
                )
            },
        )?;
    }
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .ctx(|| format!("oom_score_adj {adj}"))?;
    }
    let cwd = process.cwd();
    if !cwd.is_absolute() {
        return Err(format!("process.cwd {} is not absolute", cwd.display()));
    }
    if std::fs::metadata(cwd).is_err() {
        std::fs::create_dir_all(cwd).ctx(|| format!("create cwd {}", cwd.display()))?;
        let _ = std::fs::set_permissions(cwd, std::fs::Permissions::from_mode(0o755));
    }
    std::env::set_current_dir(cwd).ctx(|| format!("chdir to cwd {}", cwd.display()))?;
    let args = process.args().as_deref().unwrap_or(&[]);
    let Some(arg0) = args.first() else {
        return Err("process.args is empty".into());
    };
    let env = process.env().as_deref().unwrap_or(&[]);
    let exe = find_executable(arg0, env)?;
    let cstrs = |v: &[String]| -> SetupResult<Vec<CString>> {
        v.iter()
            .map(|s| CString::new(s.as_bytes()).map_err(|_| format!("{s:?} contains a NUL")))
            .collect()
    };
    let argv = cstrs(args)?;
    let envp = cstrs(env)?;
    let exe_c = CString::new(exe.as_os_str().as_bytes()).map_err(|_| "path has a NUL")?;
    let user = process.user();
    let nnp = process.no_new_privileges().unwrap_or(false);
    let caps = process.capabilities().as_ref();
    let terminal = process.terminal().unwrap_or(false);

    proto::send_io(sock, &Msg::Ready).ctx(|| "send ready".into())?;
    let mut msg = proto::recv_io(sock).ctx(|| "wait for start".into())?;
    if let Msg::Pty(n) = msg {
        container_pty(n)?;
        // The caller holds a slave of its own until it hears this one is open.
        proto::send_io(sock, &Msg::Ready).ctx(|| "send pty ready".into())?;
        msg = proto::recv_io(sock).ctx(|| "wait for start".into())?;
    }
    match msg {
        Msg::Start => {}
        other => return Err(format!("expected start, got {other:?}")),
    }

    // SAFETY: plain syscalls on our own process.
    unsafe {
        libc::setsid();
        if terminal {
            sys(libc::ioctl(0, libc::TIOCSCTTY, 0) as libc::c_long, || {
                "set the controlling terminal".into()
            })?;
            if let Some(size) = process.console_size() {
                let ws = libc::winsize {
                    ws_row: size.height() as u16,
                    ws_col: size.width() as u16,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                libc::ioctl(0, libc::TIOCSWINSZ, &ws);
            }
        }
    }
    if reaper {
        reap_as_init(sock)?;
    }
    if let (Some(prog), Some(s)) = (seccomp_prog, seccomp_spec)
        && !nnp
    {
        seccomp::install(prog, s).ctx(|| "load the seccomp filter".into())?;
    }
    set_user_and_caps(
        user.uid(),
        user.gid(),
        user.additional_gids().as_deref().unwrap_or(&[]),
        caps,
    )?;
    if nnp {
        // SAFETY: plain prctl.
        sys(
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } as libc::c_long,
            || "set no_new_privs".into(),
        )?;
        if let (Some(prog), Some(s)) = (seccomp_prog, seccomp_spec) {
            seccomp::install(prog, s).ctx(|| "load the seccomp filter".into())?;
        }
    }
    reset_signals();
    // SAFETY: umask is a plain syscall.
    unsafe {
        libc::umask(user.umask().unwrap_or(0o022) as libc::mode_t);
    }
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: NUL-terminated strings and null-terminated arrays, alive for the call.
    unsafe { libc::execve(exe_c.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    Err(format!(
        "exec {}: {}",
        exe.display(),
        io::Error::last_os_error()
    ))
}

fn find_executable(arg0: &str, env: &[String]) -> SetupResult<PathBuf> {
    let is_exec = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if arg0.contains('/') {
        let p = PathBuf::from(arg0);
        if std::fs::metadata(&p).is_err() {
            return Err(format!("exec {arg0}: no such file or directory"));
        }
        return Ok(p);
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(arg0);
        if is_exec(&p) {
            return Ok(p);
        }
    }
    Err(format!("exec {arg0}: executable file not found in $PATH"))
}

fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Bit mask of an OCI capability set (names the kernel/caps crate don't know are skipped).
fn cap_mask(set: Option<&Capabilities>) -> u64 {
    let mut mask = 0u64;
    for c in set.into_iter().flatten() {
        let Ok(serde_json::Value::String(name)) = serde_json::to_value(c) else {
            continue;
        };
        if let Ok(cap) = name.parse::<caps::Capability>() {
            mask |= cap.bitmask();
        }
    }
    mask
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
const CAP_V3: u32 = 0x2008_0522;

fn capget() -> SetupResult<(u64, u64, u64)> {
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: v3 header and two data structs, as the kernel expects.
    sys(
        unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) },
        || "capget".into(),
    )?;
    let join = |f: fn(&CapData) -> u32| (f(&data[0]) as u64) | ((f(&data[1]) as u64) << 32);
    Ok((
        join(|d| d.effective),
        join(|d| d.permitted),
        join(|d| d.inheritable),
    ))
}

fn capset(e: u64, p: u64, i: u64) -> SetupResult<()> {
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: e as u32,
            permitted: p as u32,
            inheritable: i as u32,
        },
        CapData {
            effective: (e >> 32) as u32,
            permitted: (p >> 32) as u32,
            inheritable: (i >> 32) as u32,
        },
    ];
    // SAFETY: v3 header and two data structs, as the kernel expects.
    sys(
        unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) },
        || format!("capset effective {e:#x} permitted {p:#x} inheritable {i:#x}"),
    )?;
    Ok(())
}

/// Bounding set, groups, gid, uid, then the capability sets (kept across the uid change).
fn set_user_and_caps(
    uid: u32,
    gid: u32,
    groups: &[u32],
    caps: Option<&oci_spec::runtime::LinuxCapabilities>,
) -> SetupResult<()> {
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    let (_, permitted_now, _) = capget()?;
    let want = caps.map(|c| {
        (
            cap_mask(c.bounding().as_ref()),
            cap_mask(c.effective().as_ref()),
            cap_mask(c.permitted().as_ref()),
            cap_mask(c.inheritable().as_ref()),
            cap_mask(c.ambient().as_ref()),
        )
    });
    if let Some((bounding, ..)) = want {
        for cap in 0..=last_cap {
            if bounding & (1u64 << cap) == 0 {
                // SAFETY: plain prctl.
                let r =
                    unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
                if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
                    return Err(format!(
                        "drop capability {cap} from the bounding set: {}",
                        io::Error::last_os_error()
                    ));
                }
            }
        }
    }
    // SAFETY: plain syscalls on our own credentials.
    unsafe {
        libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
        let setgroups_allowed = std::fs::read_to_string("/proc/self/setgroups")
            .map(|s| s.trim() != "deny")
            .unwrap_or(true);
        if setgroups_allowed {
            sys(
                libc::setgroups(groups.len(), groups.as_ptr()) as libc::c_long,
                || format!("setgroups {groups:?}"),
            )?;
        }
        sys(libc::setresgid(gid, gid, gid) as libc::c_long, || {
            format!("setgid {gid}")
        })?;
        sys(libc::setresuid(uid, uid, uid) as libc::c_long, || {
            format!("setuid {uid}")
        })?;
        libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
    }
    if let Some((bounding, effective, permitted, inheritable, ambient)) = want {
        let p = permitted & permitted_now;
        let e = effective & p;
        let i = inheritable & bounding;
        capset(e, p, i)?;
        for cap in 0..=last_cap {
            if ambient & (1u64 << cap) != 0 && p & i & (1u64 << cap) != 0 {
                // SAFETY: plain prctl.
                let r = unsafe {
                    libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                        cap as libc::c_ulong,
                        0,
                        0,
                    )
                };
                sys(r as libc::c_long, || {
                    format!("raise ambient capability {cap}")
                })?;
            }
        }
    }
    Ok(())
}

/// The container's own pty `/dev/pts/N` (its master held by the caller) becomes stdio and
/// `/dev/console`, as runc's console does.
fn container_pty(n: u32) -> SetupResult<()> {
    let path = format!("/dev/pts/{n}");
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)
        .ctx(|| format!("open {path}"))?;
    for fd in 0..3 {
        // SAFETY: dup2 of an fd we own onto the stdio numbers.
        sys(
            unsafe { libc::dup2(slave.as_raw_fd(), fd) } as libc::c_long,
            || format!("dup {path} to fd {fd}"),
        )?;
    }
    let console = Path::new("/dev/console");
    if std::fs::metadata(console).is_err() {
        let _ = std::fs::File::create(console);
    }
    mounts::mount(Some(Path::new(&path)), console, None, libc::MS_BIND, None)
        .ctx(|| format!("bind {path} to /dev/console"))?;
    Ok(())
}

/// `--init`: forks. The child returns, to become the command; this process stays PID 1, reaps
/// every process that ends in the container, forwards the signals it gets to the command, and
/// exits with the command's status (128+signal when a signal ended it), as docker's tini does.
fn reap_as_init(sock: &UnixStream) -> SetupResult<()> {
    // SAFETY: plain syscalls; the child only goes on to exec.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old);
        let child = libc::fork();
        if child < 0 {
            return Err(format!(
                "fork the init's command: {}",
                io::Error::last_os_error()
            ));
        }
        if child == 0 {
            libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            return Ok(());
        }
        // The supervisor learns that the command started from the socket's end.
        libc::close(sock.as_raw_fd());
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        loop {
            loop {
                let mut status = 0;
                let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if pid <= 0 {
                    break;
                }
                if pid == child {
                    let code = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    };
                    libc::_exit(code);
                }
            }
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigtimedwait(&all, &mut info, &timeout);
            if sig > 0 && sig != libc::SIGCHLD {
                libc::kill(child, sig);
            }
        }
    }
}

/// Default dispositions and an empty mask for the user process (Rust's runtime ignores SIGPIPE,
/// and ignored signals stay ignored across exec).
fn reset_signals() {
    // SAFETY: plain syscalls; no handlers are installed.
    unsafe {
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Brings `lo` up in a new network namespace.
fn loopback_up() -> SetupResult<()> {
    // SAFETY: an ifreq for "lo", SIOCGIFFLAGS/SIOCSIFFLAGS on a datagram socket we close.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        sys(fd as libc::c_long, || "socket for lo".into())?;
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let r = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        if r < 0 {
            let e = io::Error::last_os_error();
            libc::close(fd);
            return Err(format!("get lo flags: {e}"));
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        let r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        let e = io::Error::last_os_error();
        libc::close(fd);
        if r < 0 {
            return Err(format!("bring lo up: {e}"));
        }
    }
    Ok(())
}

fn exec(
    sock: &mut UnixStream,
    target_pid: i32,
    process: &Process,
    seccomp_spec: Option<&LinuxSeccomp>,
) -> SetupResult<()> {
    let prog = seccomp_spec
        .map(|s| seccomp::compile(s).map_err(|e| e.to_string()))
        .transpose()?;
    let mut joins = Vec::new();
    for t in NS_ORDER {
        let name = match t {
            LinuxNamespaceType::Mount => "mnt",
            LinuxNamespaceType::Network => "net",
            LinuxNamespaceType::Cgroup => "cgroup",
            LinuxNamespaceType::Uts => "uts",
            LinuxNamespaceType::Ipc => "ipc",
            LinuxNamespaceType::User => "user",
            LinuxNamespaceType::Pid => "pid",
            LinuxNamespaceType::Time => "time",
        };
        let theirs = format!("/proc/{target_pid}/ns/{name}");
        let ours = format!("/proc/self/ns/{name}");
        let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
            continue;
        };
        use std::os::unix::fs::MetadataExt;
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        let f = std::fs::File::open(&theirs).ctx(|| format!("open {theirs}"))?;
        joins.push((t, f, theirs));
    }
    for (t, f, p) in &joins {
        setns(f, ns_flag(*t), p)?;
        if *t == LinuxNamespaceType::User {
            become_root_in_userns()?;
        }
    }
    if spawn_reported(sock)?.is_some() {
        return Ok(());
    }
    let Err(e) = run_process(sock, process, prog.as_deref(), seccomp_spec, false);
    let _ = proto::send_io(sock, &Msg::Error(e));
    // SAFETY: leave without running anything of the parent's.
    unsafe { libc::_exit(1) }
}
