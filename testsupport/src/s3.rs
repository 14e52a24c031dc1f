//! Real S3 servers on loopback for tests: `s3s-fs` (crates.io) and moto's server (PyPI), each on
//! a free port with its own data directory, stopped when dropped. `.ci/peers.sh` installs both
//! into `target/peers/`; a missing one fails the test, saying so.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bucket every server here has.
pub const BUCKET: &str = "hoist-test";
pub const ACCESS_KEY: &str = "hoist-access";
pub const SECRET_KEY: &str = "hoist-secret";

/// A program `.ci/peers.sh` installs under `target/peers/` (or one on `PATH`).
pub fn repo_peer(name: &str) -> PathBuf {
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/peers");
    let path = std::env::var("PATH").unwrap_or_default();
    [peers.join("bin"), peers.join("venv/bin")]
        .into_iter()
        .chain(std::env::split_paths(&path))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: run .ci/peers.sh (it installs {name} into target/peers)"
            )
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running S3 server; stopped (and its data removed) when dropped.
pub struct S3Server {
    pub name: &'static str,
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until the server accepts connections.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited before it listened: {status}", self.name);
            }
            assert!(Instant::now() < deadline, "{} did not listen", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// s3s-fs on a directory holding [`BUCKET`].
    pub fn s3s_fs() -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(BUCKET)).unwrap();
        let port = free_port();
        let child = Command::new(repo_peer("s3s-fs"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(dir.path())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .expect("starting s3s-fs");
        let mut s = S3Server {
            name: "s3s-fs",
            child,
            port,
            _dir: dir,
        };
        s.wait_ready();
        s
    }

    /// moto's server, with [`BUCKET`] created (moto keeps buckets in memory and checks no
    /// signature by default).
    pub fn moto() -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(repo_peer("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env("TMPDIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        let mut s = S3Server {
            name: "moto",
            child,
            port,
            _dir: dir,
        };
        s.wait_ready();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match s.put_bucket() {
                Ok(status)
                    if status.starts_with("HTTP/1.1 2") || status.starts_with("HTTP/1.0 2") =>
                {
                    break;
                }
                other => {
                    assert!(Instant::now() < deadline, "creating the bucket: {other:?}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        s
    }

    /// `PUT /BUCKET`; the status line of the answer.
    fn put_bucket(&self) -> std::io::Result<String> {
        let mut c = TcpStream::connect(("127.0.0.1", self.port))?;
        c.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            c,
            "PUT /{BUCKET} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut out = String::new();
        c.read_to_string(&mut out)?;
        Ok(out.lines().next().unwrap_or_default().to_owned())
    }
}
