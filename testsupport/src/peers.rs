//! Peer tools for the differential and interop tests: running commands with a timeout, finding
//! peer tools, private podman/buildah storage, and a private dockerd.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hoist_conformance::harness::which;

/// How long one peer-tool command may take before the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        uid, "0",
        "the interop tests need root (podman/buildah storage, dockerd); run them as root"
    );
}

/// The path of a peer tool, or a failure naming the apt package that provides it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    which(name).unwrap_or_else(|| {
        panic!("{name} is not installed: apt-get install {package} (or run .ci/peers.sh)")
    })
}

pub fn skopeo() -> Command {
    Command::new(tool("skopeo", "skopeo"))
}

/// Runs a command with a timeout; panics with the command line, status and output on failure.
/// Returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let (ok, out, err) = run_status(cmd);
    assert!(
        ok,
        "command failed: {}\n--- stdout\n{out}\n--- stderr\n{err}",
        show(cmd)
    );
    out
}

/// Runs a command with a timeout; returns (success, stdout, stderr).
pub fn run_status(cmd: &mut Command) -> (bool, String, String) {
    let line = show(cmd);
    let mut child = spawn(cmd, Stdio::null());
    let out = drain(child.stdout.take().expect("piped"));
    let err = drain(child.stderr.take().expect("piped"));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "timed out after {COMMAND_TIMEOUT:?}: {line}\n--- stdout\n{}\n--- stderr\n{}",
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    (status.success(), out, err)
}

/// Starts `cmd` with `stdin` and piped stdout and stderr; a failure to start fails the test.
fn spawn(cmd: &mut Command, stdin: Stdio) -> Child {
    let line = show(cmd);
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {line}: {e}"))
}

pub fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// A private containers/storage root for podman or buildah.
pub struct Storage {
    dir: tempfile::TempDir,
}

impl Default for Storage {
    fn default() -> Storage {
        Storage::new()
    }
}

impl Storage {
    pub fn new() -> Storage {
        Storage { dir: tmp() }
    }

    pub fn podman(&self) -> Command {
        let mut cmd = self.command(tool("podman", "podman"));
        cmd.arg("--tmpdir").arg(self.dir.path().join("tmp")).args([
            "--storage-driver",
            "vfs",
            "--events-backend",
            "none",
            "--cgroup-manager",
            "cgroupfs",
        ]);
        cmd
    }

    pub fn buildah(&self) -> Command {
        let mut cmd = self.command(tool("buildah", "buildah"));
        cmd.args(["--storage-driver", "vfs"]);
        cmd
    }

    /// `program --root ROOT --runroot RUN` in this storage, with `TMPDIR` in it too.
    fn command(&self, program: PathBuf) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new(program);
        cmd.arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .env("TMPDIR", d);
        cmd
    }
}

/// A private dockerd (own data root, exec root, socket; no bridge, no iptables), stopped on drop.
pub struct Dockerd {
    child: Child,
    dir: tempfile::TempDir,
    log: PathBuf,
    /// [`Dockerd::start_with_bridge`]'s default bridge, deleted on drop.
    bridge: Option<String>,
}

/// The bridges [`Dockerd::start_with_bridge`] made in this process (a counter for unique names
/// and addresses).
static BRIDGES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The pool a bridged dockerd's user networks come from: apart from hoist's (docker's own
/// default pools, 172.17.0.0/16 on).
pub const DOCKERD_POOL: &str = "10.198.0.0/16";

impl Dockerd {
    /// A private dockerd with no bridge: its containers get only `lo` (`--network none`).
    pub fn start() -> Dockerd {
        Dockerd::spawn(None, &[])
    }

    /// A private dockerd with a default bridge of its own (`dkd<pid><n>`, 10.199.X.1/24, made
    /// here and deleted on drop) and user networks from [`DOCKERD_POOL`]; still no iptables, no
    /// masquerading (so no br_netfilter and the host's firewall stays as it is): published
    /// ports go through docker-proxy, which reaches the container from 127.0.0.1. Its user
    /// networks' bridges (`br-*`) still there on drop are deleted too.
    pub fn start_with_bridge() -> Dockerd {
        let n = BRIDGES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("dkd{}x{n}", std::process::id() % 1_000_000);
        let used = Command::new("ip")
            .args(["-4", "-o", "addr"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let start = std::process::id() + n * 37;
        let third = (0..200)
            .map(|i| (start + i) % 200 + 20)
            .find(|x| !used.contains(&format!("10.199.{x}.")))
            .expect("a free 10.199.X.0/24");
        let _ = Command::new("ip").args(["link", "del", &name]).output();
        for args in [
            vec!["link", "add", &name, "type", "bridge"],
            vec!["addr", "add", &format!("10.199.{third}.1/24"), "dev", &name],
            vec!["link", "set", &name, "up"],
        ] {
            let args: Vec<&str> = args.iter().map(|s| s.as_ref()).collect();
            run(Command::new("ip").args(&args));
        }
        let pool = format!("--default-address-pool=base={DOCKERD_POOL},size=24");
        let bridge = format!("--bridge={name}");
        Dockerd::spawn(Some(name), &[&bridge, &pool])
    }

    /// Starts dockerd ([`Dockerd::command`], its `--bridge=none` replaced by `extra` when
    /// `bridge` is set) and waits (60 s at most) until it answers.
    fn spawn(bridge: Option<String>, extra: &[&str]) -> Dockerd {
        let dockerd = tool("dockerd", "docker.io");
        tool("docker", "docker.io");
        // Short path: the socket paths under it must stay below the 108-byte sun_path limit.
        let dir = tempfile::Builder::new()
            .prefix("hoist-dockerd-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let d = dir.path();
        let log = d.join("dockerd.log");
        let mut cmd = if bridge.is_some() {
            Dockerd::command_with(&dockerd, d, extra)
        } else {
            Dockerd::command(&dockerd, d)
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::File::create(d.join("dockerd.err")).expect("log file"))
            .spawn()
            .expect("starting dockerd");
        // Made before waiting: a dockerd that never answers is stopped (and its bridge
        // deleted) on the way out.
        let mut me = Dockerd {
            child,
            dir,
            log,
            bridge,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (ok, _, _) =
                run_status(
                    me.docker()
                        .args(["version", "--format", "{{.Server.Version}}"]),
                );
            if ok {
                break;
            }
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("dockerd exited ({status}):\n{}", me.logs());
            }
            if Instant::now() > deadline {
                panic!("dockerd did not answer within 60 s:\n{}", me.logs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        me
    }

    /// The command line of a private dockerd under `root` (short: the socket path must stay
    /// below the 108-byte sun_path limit): its own data root, exec root, pidfile and socket
    /// ([`Dockerd::host`]), no bridge, no iptables.
    pub fn command(dockerd: &Path, root: &Path) -> Command {
        Dockerd::command_with(dockerd, root, &["--bridge=none"])
    }

    /// [`Dockerd::command`] with `bridge` (`--bridge=none`, or a bridge and its pools) in
    /// place of its `--bridge=none`.
    fn command_with(dockerd: &Path, root: &Path, bridge: &[&str]) -> Command {
        let mut cmd = Command::new(dockerd);
        cmd.arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("dockerd.pid"))
            .arg("-H")
            .arg(Dockerd::host(root))
            .args(bridge)
            .args(["--iptables=false", "--ip6tables=false", "--ip-masq=false"]);
        cmd
    }

    /// The `DOCKER_HOST` of the dockerd [`Dockerd::command`] starts under `root`.
    pub fn host(root: &Path) -> String {
        format!("unix://{}", root.join("docker.sock").display())
    }

    pub fn logs(&self) -> String {
        let mut s = std::fs::read_to_string(&self.log).unwrap_or_default();
        s.push_str(
            &std::fs::read_to_string(self.dir.path().join("dockerd.err")).unwrap_or_default(),
        );
        let tail: Vec<&str> = s.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// The `DOCKER_CONFIG` directory its `docker` commands use (where `docker login` writes).
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn docker(&self) -> Command {
        let mut cmd = Command::new(tool("docker", "docker.io"));
        cmd.env("DOCKER_HOST", Dockerd::host(self.dir.path()))
            .env("DOCKER_CONFIG", self.dir.path().join("config"));
        cmd
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM lets dockerd stop its managed containerd and unmount its layers.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut stopped = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                stopped = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // What dockerd leaves mounted under its root (its `exec/netns/default`) would keep the
        // temp directory from being removed.
        let root = self.dir.path().to_string_lossy().into_owned();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
            .filter(|m| m.starts_with(&format!("{root}/")))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", &m]).output();
        }
        if let Some(bridge) = self.bridge.take() {
            let _ = Command::new("ip").args(["link", "del", &bridge]).output();
            // The bridges of its user networks the test did not remove: those addressed from
            // its pool (a hoist bridge never is).
            let out = Command::new("ip")
                .args(["-4", "-o", "addr", "show", "type", "bridge"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let prefix = DOCKERD_POOL
                .split('.')
                .take(2)
                .collect::<Vec<_>>()
                .join(".");
            for line in out.lines() {
                let mut w = line.split_whitespace();
                let (Some(_), Some(dev), Some(_), Some(addr)) =
                    (w.next(), w.next(), w.next(), w.next())
                else {
                    continue;
                };
                if dev.starts_with("br-") && addr.starts_with(&format!("{prefix}.")) {
                    let _ = Command::new("ip").args(["link", "del", dev]).output();
                }
            }
        }
    }
}

/// The digest `docker push` reports (`...: digest: sha256:... size: N`).
pub fn pushed_digest(output: &str) -> String {
    output
        .split_whitespace()
        .skip_while(|w| *w != "digest:")
        .nth(1)
        .unwrap_or_else(|| panic!("no digest in docker push output:\n{output}"))
        .to_owned()
}

/// Runs `cmd` with `input` on stdin; returns (success, stdout, stderr).
pub fn run_input(cmd: &mut Command, input: &str) -> (bool, String, String) {
    let mut child = spawn(cmd, Stdio::piped());
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
