//! haproxy (Debian's, from `.ci/peers.sh`) on loopback for tests and benches: a round-robin HTTP
//! balancer with no sticky sessions in front of several servers, on a free port, stopped when
//! dropped.
//!
//! In `mode http` haproxy picks a server for every request, not every connection, so the
//! requests of one client connection (a chunked upload's PATCHes) land on different backends.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running haproxy; killed when dropped.
pub struct Haproxy {
    /// `127.0.0.1:PORT`, where clients connect.
    pub addr: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The configuration [`Haproxy::round_robin`] runs: `frontend` on `bind`, every address of
/// `backends` a server, round-robin, health-checked every 500 ms, a failed connection retried
/// on another server (`option redispatch`), the client's address sent in `X-Forwarded-For`.
pub fn round_robin_config(bind: &str, backends: &[String]) -> String {
    let mut cfg = String::from(
        "global\n  maxconn 4096\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n  \
         timeout http-request 10s\n  retries 3\n  option redispatch\n  \
         option http-server-close\n  option forwardfor\n\
         frontend registry\n",
    );
    cfg.push_str(&format!("  bind {bind}\n  default_backend replicas\n"));
    cfg.push_str("backend replicas\n  balance roundrobin\n  option httpchk GET /readyz\n");
    for (i, b) in backends.iter().enumerate() {
        cfg.push_str(&format!(
            "  server r{i} {b} check inter 500ms fall 1 rise 1\n"
        ));
    }
    cfg
}

impl Haproxy {
    /// Round-robin over `backends` (`HOST:PORT` each), from [`round_robin_config`].
    pub fn round_robin(backends: &[String]) -> Haproxy {
        let port = free_port();
        let bind = format!("127.0.0.1:{port}");
        Haproxy::with_config(&round_robin_config(&bind, backends), &bind)
    }

    /// haproxy on the configuration text `config`, whose frontend binds `addr`.
    pub fn with_config(config: &str, addr: &str) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config).unwrap();
        let check = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output()
            .expect("haproxy is not installed: run .ci/peers.sh");
        assert!(
            check.status.success(),
            "haproxy refused its configuration:\n{config}\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let log = std::fs::File::create(dir.path().join("haproxy.log")).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting haproxy");
        let mut h = Haproxy {
            addr: addr.to_owned(),
            child,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&h.addr).is_err() {
            if let Some(status) = h.child.try_wait().unwrap() {
                panic!("haproxy exited before it listened: {status}\n{}", h.log());
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        h
    }

    /// What haproxy wrote to stderr so far (alerts and warnings).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }

    /// The directory holding the configuration and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
