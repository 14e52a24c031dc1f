//! Shared by the executor tests: busybox bundles and a runner that captures output.
#![allow(dead_code)]

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use hoist_runtime::exec::{Created, Executor, HoistExecutor, Stdio};
use oci_spec::runtime::{Process, Spec};
use tempfile::TempDir;

/// The init helper binary of this package.
pub fn hoist() -> HoistExecutor {
    HoistExecutor::with_init_binary(env!("CARGO_BIN_EXE_hoist-init"))
}

pub fn unique_id(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A busybox rootfs: /bin/busybox with every applet linked, /etc/passwd and /etc/group.
pub fn busybox_rootfs(root: &Path) {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
    }
    for d in ["etc", "proc", "sys", "dev", "tmp", "root", "home/app"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\nwheel:x:10:app\napp:x:1000:\n",
    )
    .unwrap();
}

pub struct Bundle {
    pub dir: TempDir,
    pub spec: Spec,
}

impl Bundle {
    /// The default OCI spec (runc's: pid, net, ipc, uts, mount, cgroup namespaces; /proc, /dev,
    /// /dev/pts, /dev/shm, /dev/mqueue, /sys, /sys/fs/cgroup; masked and read-only paths; three
    /// capabilities; no_new_privs) running `args` on a busybox rootfs.
    pub fn new(args: &[&str]) -> Bundle {
        let dir = tempfile::tempdir().unwrap();
        busybox_rootfs(&dir.path().join("rootfs"));
        let mut spec = Spec::default();
        spec.set_hostname(Some("hoist-test".into()));
        let mut process = Process::default();
        process.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        spec.set_process(Some(process));
        Bundle { dir, spec }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn process_mut(&mut self) -> &mut Process {
        self.spec.process_mut().as_mut().unwrap()
    }

    pub fn linux_mut(&mut self) -> &mut oci_spec::runtime::Linux {
        self.spec.linux_mut().as_mut().unwrap()
    }

    /// Writes config.json.
    pub fn write(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.spec).unwrap(),
        )
        .unwrap();
    }
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

fn reader(fd: std::io::PipeReader) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let mut fd = fd;
        fd.read_to_string(&mut s).unwrap();
        s
    })
}

/// Creates, starts, waits for and deletes the bundle's container with piped output.
pub fn run(exec: &dyn Executor, bundle: &Bundle) -> Output {
    run_with(exec, bundle, None, |_| {})
}

/// [`run`] with optional stdin bytes and a hook between create and start.
pub fn run_with(
    exec: &dyn Executor,
    bundle: &Bundle,
    stdin: Option<&[u8]>,
    between: impl FnOnce(&Created),
) -> Output {
    bundle.write();
    let id = unique_id("t");
    let (out_r, out_w) = std::io::pipe().unwrap();
    let (err_r, err_w) = std::io::pipe().unwrap();
    let (in_r, in_w) = std::io::pipe().unwrap();
    let c = exec
        .create(
            &id,
            bundle.path(),
            Stdio::Fds {
                stdin: Some(OwnedFd::from(in_r)),
                stdout: OwnedFd::from(out_w),
                stderr: OwnedFd::from(err_w),
            },
        )
        .unwrap_or_else(|e| panic!("create {id}: {e}"));
    let out = reader(out_r);
    let err = reader(err_r);
    let input = stdin.map(|b| b.to_vec());
    let writer = std::thread::spawn(move || {
        let mut w = in_w;
        if let Some(b) = input {
            let _ = std::io::Write::write_all(&mut w, &b);
        }
    });
    between(&c);
    exec.start(&c).unwrap_or_else(|e| panic!("start {id}: {e}"));
    let code = exec.wait(&c).unwrap();
    exec.delete(&c).unwrap();
    writer.join().unwrap();
    Output {
        code,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs `sh -c script` in a default bundle modified by `f`; asserts exit 0; returns stdout.
pub fn sh(exec: &dyn Executor, script: &str, f: impl FnOnce(&mut Bundle)) -> String {
    let mut b = Bundle::new(&["sh", "-c", script]);
    f(&mut b);
    let out = run(exec, &b);
    assert_eq!(
        out.code, 0,
        "script {script:?} exited {}: stdout {:?} stderr {:?}",
        out.code, out.stdout, out.stderr
    );
    if !out.stderr.is_empty() {
        eprintln!("stderr of {script:?}: {}", out.stderr);
    }
    out.stdout
}
