//! [`OciCliExecutor`]: drives an OCI runtime's command line (`runc`, `crun`) with the same
//! bundles, so hoist's executor can be checked against the references.
//!
//! `create` leaves the container's init (`runc init` / crun's) waiting for `start`; the create
//! command exits and the init is re-parented. To `wait` for it, the executor makes this process a
//! child subreaper (`PR_SET_CHILD_SUBREAPER`), so the init becomes its child.
//!
//! crun 1.8 refuses this machine's hybrid cgroup layout (v1 controllers plus a cgroup2 mount at
//! /sys/fs/cgroup/unified); every crun command runs in a private mount namespace where
//! /sys/fs/cgroup/unified is unmounted (done between fork and exec: no extra process).

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Created, ExecError, Executor, Stdio, signal_pid, wait_pid};

/// An executor that runs `runc` or `crun`.
pub struct OciCliExecutor {
    binary: PathBuf,
    root: PathBuf,
    private_cgroup_mounts: bool,
}

impl OciCliExecutor {
    /// `binary` (a path or a name on PATH) with its state under `root` (its `--root`).
    /// Makes this process a child subreaper (see the module docs).
    pub fn new(binary: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Result<Self, ExecError> {
        let binary = binary.into();
        let is_crun = binary.file_name().is_some_and(|n| n == "crun");
        let hybrid = super::cgroups::is_cgroup2(Path::new("/sys/fs/cgroup/unified"));
        // SAFETY: plain prctl on our own process.
        #[allow(unsafe_code)]
        let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if r < 0 {
            return Err(ExecError::io(
                "become a child subreaper",
                io::Error::last_os_error(),
            ));
        }
        Ok(OciCliExecutor {
            binary,
            root: root.into(),
            private_cgroup_mounts: is_crun && hybrid,
        })
    }

    /// `runc` with state under `root`.
    pub fn runc(root: impl Into<PathBuf>) -> Result<Self, ExecError> {
        Self::new("runc", root)
    }

    /// `crun` with state under `root`.
    pub fn crun(root: impl Into<PathBuf>) -> Result<Self, ExecError> {
        Self::new("crun", root)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root);
        if self.private_cgroup_mounts {
            let root = CString::new("/").unwrap_or_default();
            let unified = CString::new("/sys/fs/cgroup/unified").unwrap_or_default();
            // SAFETY: only async-signal-safe syscalls (unshare, mount, umount2) on strings
            // prepared before the fork.
            #[allow(unsafe_code)]
            unsafe {
                cmd.pre_exec(move || {
                    if libc::unshare(libc::CLONE_NEWNS) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    if libc::mount(
                        std::ptr::null(),
                        root.as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) < 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                    if libc::umount2(unified.as_ptr(), libc::MNT_DETACH) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd
    }

    fn name(&self) -> String {
        self.binary.display().to_string()
    }

    /// Runs a command to completion, capturing stderr for the error.
    fn run(&self, args: &[&str]) -> Result<String, ExecError> {
        let out = self
            .command()
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| ExecError::io(format!("run {}", self.name()), e))?;
        if !out.status.success() {
            return Err(ExecError::Runtime {
                command: format!("{} {}", self.name(), args.join(" ")),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The runtime's view of the container (`state` JSON's `status`: created, running, stopped).
    pub fn state(&self, id: &str) -> Result<String, ExecError> {
        let out = self.run(&["state", id])?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| ExecError::Runtime {
            command: format!("{} state {id}", self.name()),
            status: "ok".into(),
            stderr: format!("unparsable output: {e}"),
        })?;
        Ok(v["status"].as_str().unwrap_or_default().to_string())
    }
}

/// Receives the pty master a runtime sends to `--console-socket`.
fn recv_console(listener: &UnixListener) -> Result<OwnedFd, ExecError> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let (conn, _) = listener
        .accept()
        .map_err(|e| ExecError::io("accept on the console socket", e))?;
    let mut buf = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| ExecError::io("receive the pty master", e.into()))?;
    for c in msg
        .cmsgs()
        .map_err(|e| ExecError::io("console socket", e.into()))?
    {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(&fd) = fds.first()
        {
            // SAFETY: the fd was just received with SCM_RIGHTS; we own it.
            #[allow(unsafe_code)]
            return Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
        }
    }
    Err(ExecError::Init("the runtime sent no pty master".into()))
}

impl Executor for OciCliExecutor {
    fn create(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<Created, ExecError> {
        std::fs::create_dir_all(&self.root)
            .map_err(|e| ExecError::io(format!("create {}", self.root.display()), e))?;
        let work = tempfile::Builder::new()
            .prefix(&format!(".{id}-"))
            .tempdir_in(&self.root)
            .map_err(|e| ExecError::io("create a work dir", e))?;
        let pid_file = work.path().join("pid");
        let log = work.path().join("create.log");
        let mut cmd = self.command();
        // Errors go to a file (the container's stderr may be a pipe nobody reads yet).
        cmd.arg("--log").arg(&log);
        cmd.arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file);
        let mut console = None;
        let mut console_dir = None;
        match stdio {
            Stdio::Inherit => {}
            Stdio::Null => {
                cmd.stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
            }
            Stdio::Fds {
                stdin,
                stdout,
                stderr,
            } => {
                match stdin {
                    Some(fd) => cmd.stdin(fd),
                    None => cmd.stdin(std::process::Stdio::null()),
                };
                cmd.stdout(stdout).stderr(stderr);
            }
            Stdio::Pty => {
                // A short path: a socket's path must fit sun_path (108 bytes), which one under
                // the runtime's root (`$HOIST_HOME/runtimes/...`) need not. The listener is
                // bound before the directory goes, and is all the runtime needs until it has
                // sent the pty.
                let dir = tempfile::Builder::new()
                    .prefix("hoist-console-")
                    .tempdir_in("/tmp")
                    .map_err(|e| ExecError::io("create the console socket's dir", e))?;
                let sock = dir.path().join("c.sock");
                let listener = UnixListener::bind(&sock)
                    .map_err(|e| ExecError::io(format!("bind {}", sock.display()), e))?;
                console_dir = Some(dir);
                cmd.arg("--console-socket").arg(&sock);
                cmd.stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null());
                console = Some(listener);
            }
        }
        if console.is_some() {
            cmd.stderr(std::process::Stdio::null());
        }
        cmd.arg(id);
        let mut child = cmd
            .spawn()
            .map_err(|e| ExecError::io(format!("run {} create", self.name()), e))?;
        drop(cmd);
        let pty = match &console {
            Some(l) => match recv_console(l) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e);
                }
            },
            None => None,
        };
        drop(console_dir);
        let status = child
            .wait()
            .map_err(|e| ExecError::io(format!("wait for {} create", self.name()), e))?;
        if !status.success() {
            let mut err = String::new();
            let _ = std::fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut err));
            return Err(ExecError::Runtime {
                command: format!("{} create {id}", self.name()),
                status: status.to_string(),
                stderr: err.trim().to_string(),
            });
        }
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .map_err(|e| ExecError::io(format!("read {}", pid_file.display()), e))?
            .trim()
            .parse()
            .map_err(|e| ExecError::Init(format!("pid file {}: {e}", pid_file.display())))?;
        Ok(Created {
            id: id.to_string(),
            pid,
            pty,
        })
    }

    fn start(&self, c: &Created) -> Result<(), ExecError> {
        self.run(&["start", &c.id]).map(drop)
    }

    fn wait(&self, c: &Created) -> Result<i32, ExecError> {
        wait_pid(c.pid)
    }

    fn kill(&self, c: &Created, signal: i32) -> Result<(), ExecError> {
        match self.run(&["kill", &c.id, &signal.to_string()]) {
            Ok(_) => Ok(()),
            // A container whose init exited but was not deleted: signal the pid if alive.
            Err(e) => signal_pid(c.pid, signal).map_err(|_| e),
        }
    }

    fn delete(&self, c: &Created) -> Result<(), ExecError> {
        self.run(&["delete", "--force", &c.id])?;
        // Reap the init if it was still ours and running (delete --force killed it).
        // SAFETY: waitpid on a pid that may be our child (ECHILD if it is not, or was reaped).
        #[allow(unsafe_code)]
        unsafe {
            let mut st = 0;
            libc::waitpid(c.pid, &mut st, 0);
        }
        Ok(())
    }
}
