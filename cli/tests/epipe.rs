//! A closed pipe on stdout (`hoist pull IMG | head -1`) ends any command quietly, as it ends
//! `cat` or `docker`: no panic, no message, the status of a process that SIGPIPE ended (or
//! success when it had nothing more to print).

mod run_support;

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use run_support::Home;

/// `hoist serve` on a free loopback port, killed on drop.
struct Registry {
    child: Child,
    addr: String,
    _data: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let data = tempfile::tempdir().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hoist"))
            .args(["serve", "--listen", &addr, "--data"])
            .arg(data.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting hoist serve");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "hoist serve did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            addr,
            _data: data,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `hoist ARGS` with stdout a pipe whose reader is already gone.
fn closed_stdout(h: &Home, args: &[&str]) -> (std::process::ExitStatus, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = h
        .cmd(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("running hoist");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let h = Home::new();
    let reg = Registry::start();
    let remote = format!("{}/epipe/busybox:1", reg.addr);
    h.ok(&["tag", "busybox", &remote]);
    h.ok(&["push", &remote]);
    h.ok(&["run", "--name", "c", "busybox", "sh", "-c", "seq 1 2000"]);
    h.ok(&["volume", "create", "vol"]);
    let commands: Vec<Vec<&str>> = vec![
        vec!["pull", &remote],
        vec!["push", &remote],
        vec!["images"],
        vec!["images", "-q"],
        vec!["image", "ls"],
        vec!["inspect", "busybox"],
        vec!["history", "busybox"],
        vec!["save", "busybox"],
        vec!["ps", "-a"],
        vec!["container", "ls", "-a"],
        vec!["logs", "c"],
        vec!["volume", "ls"],
        vec!["system", "df"],
        vec!["run", "--rm", "busybox", "seq", "1", "2000"],
        vec!["run", "-d", "--rm", "busybox", "true"],
        vec!["--help"],
    ];
    let mut failures = Vec::new();
    for args in &commands {
        let (status, err) = closed_stdout(&h, args);
        let quiet = status.success() || status.signal() == Some(13) || status.code() == Some(141);
        if !quiet || !err.is_empty() {
            failures.push(format!("hoist {}: {status}: {err}", args.join(" ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
