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
}

impl Dockerd {
    pub fn start() -> Dockerd {
        let dockerd = tool("dockerd", "docker.io");
        tool("docker", "docker.io");
        // Short path: the socket paths under it must stay below the 108-byte sun_path limit.
        let dir = tempfile::Builder::new()
            .prefix("hoist-dockerd-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let d = dir.path();
        let log = d.join("dockerd.log");
        let child = Dockerd::command(&dockerd, d)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::File::create(d.join("dockerd.err")).expect("log file"))
            .spawn()
            .expect("starting dockerd");
        let mut me = Dockerd { child, dir, log };
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
        let mut cmd = Command::new(dockerd);
        cmd.arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("dockerd.pid"))
            .arg("-H")
            .arg(Dockerd::host(root))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
            ]);
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
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
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
