//! `hoist create`, `hoist start -a/-i` and `hoist attach` against docker's: each scenario runs on
//! the private dockerd (the docker CLI) and on hoist, from the same busybox rootfs, and the
//! output, error streams and exit codes are compared. Engine errors are compared by their docker
//! text (`Error response from daemon: ...` against `hoist: ...`).

mod common;
mod run_support;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Dockerd;
use run_support::Home;

const PATH_ENV: &str = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

struct Both {
    dockerd: Dockerd,
    h: Home,
}

#[derive(Debug, PartialEq)]
struct Seen {
    code: i32,
    stdout: String,
    stderr: String,
}

fn seen(o: &Output) -> Seen {
    Seen {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn with_stdin(c: Command, stdin: Option<&[u8]>) -> Output {
    with_stdin_after(c, stdin, Duration::ZERO, false)
}

/// Runs `c`, writing `stdin` after `delay`; with `hold`, stdin stays open until `c` ends (as a
/// user's terminal does), else it is closed after the write.
fn with_stdin_after(mut c: Command, stdin: Option<&[u8]>, delay: Duration, hold: bool) -> Output {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the command");
    let mut input = child.stdin.take();
    std::thread::sleep(delay);
    if let (Some(b), Some(i)) = (stdin, input.as_mut()) {
        let _ = i.write_all(b);
    }
    if !hold {
        input = None;
    }
    // Bounded: a hung attach fails the test instead of hanging it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            drop(input);
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("timed out: {:?}", seen(&o));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Both {
    fn new() -> Both {
        common::require_root();
        let dockerd = Dockerd::start();
        let h = Home::new();
        let rootfs = h.dir.path().join("rootfs.tar");
        common::run(
            dockerd
                .docker()
                .args(["import", "--change", PATH_ENV, "--change", r#"CMD ["sh"]"#])
                .arg(&rootfs)
                .arg("busybox"),
        );
        Both { dockerd, h }
    }

    /// `args` through docker and through hoist (stdin fed to both).
    fn both(&self, args: &[&str], stdin: Option<&[u8]>) -> (Seen, Seen) {
        let mut d = self.dockerd.docker();
        d.args(args);
        let docker = seen(&with_stdin(d, stdin));
        let hoist = seen(&with_stdin(self.h.cmd(args), stdin));
        (docker, hoist)
    }

    /// `attach NAME` through both, `stdin` written a moment after it starts and kept open
    /// until the attachment ends, as a terminal's is. (docker's daemon stops relaying output
    /// once the client's stdin ends, "no matter what": hoist relays it until the exit, a
    /// deliberate difference; and docker forwards stdin before it has hooked the output up,
    /// hence the moment. hoist registers a client before it reads its input.)
    fn attach(&self, name: &str, stdin: &[u8]) -> (Seen, Seen) {
        let mut d = self.dockerd.docker();
        d.args(["attach", name]);
        let docker = seen(&with_stdin_after(
            d,
            Some(stdin),
            Duration::from_secs(1),
            true,
        ));
        let hoist = seen(&with_stdin_after(
            self.h.cmd(&["attach", name]),
            Some(stdin),
            Duration::ZERO,
            true,
        ));
        (docker, hoist)
    }

    /// Both succeed (their stdout is returned).
    fn ok(&self, args: &[&str]) -> (String, String) {
        let (d, h) = self.both(args, None);
        assert_eq!(d.code, 0, "docker {args:?}: {d:?}");
        assert_eq!(h.code, 0, "hoist {args:?}: {h:?}");
        (d.stdout, h.stdout)
    }

    /// Waits until `name` runs in both.
    fn running(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (d, h) = self.both(&["inspect", "-f", "{{.State.Status}}", name], None);
            if d.stdout.trim() == "running" && h.stdout.trim() == "running" {
                return;
            }
            assert!(Instant::now() < deadline, "{name} never ran: {d:?} {h:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// docker's engine error and hoist's carry the same text.
fn same_error(d: &Seen, h: &Seen, text: &str) {
    assert_eq!(d.code, h.code, "exit codes: docker {d:?} / hoist {h:?}");
    assert!(d.stderr.contains(text), "docker: {d:?}");
    assert!(h.stderr.contains(text), "hoist: {h:?}");
    assert!(!h.stderr.contains("panicked"), "{h:?}");
}

#[test]
fn attach_feeds_stdin_and_returns_the_exit_code_as_docker() {
    let b = Both::new();
    b.ok(&[
        "run",
        "-di",
        "--name",
        "talk",
        "busybox",
        "sh",
        "-c",
        "read x; echo got $x; echo to-stderr >&2; exit 4",
    ]);
    b.running("talk");
    let (d, h) = b.attach("talk", b"hello\n");
    assert_eq!(
        d,
        Seen {
            code: 4,
            stdout: "got hello\n".into(),
            stderr: "to-stderr\n".into()
        }
    );
    assert_eq!(h, d);
    // The exit is recorded as docker records it.
    let (d, h) = b.ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        "talk",
    ]);
    assert_eq!(h, d);
}

#[test]
fn create_makes_a_container_that_start_a_runs_attached() {
    let b = Both::new();
    let (d, h) = b.ok(&[
        "create",
        "--name",
        "later",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    for id in [&d, &h] {
        let id = id.trim();
        assert_eq!(id.len(), 64, "create prints the full id: {id:?}");
        assert!(id.bytes().all(|c| c.is_ascii_hexdigit()));
    }
    let (d, h) = b.ok(&["inspect", "-f", "{{.State.Status}}", "later"]);
    assert_eq!((d.trim(), h.trim()), ("created", "created"));
    let (d, h) = b.ok(&[
        "ps",
        "-a",
        "--filter",
        "status=created",
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(h, d);
    // Nothing ran: no output in the logs yet.
    let (d, h) = b.ok(&["logs", "later"]);
    assert_eq!((d.as_str(), h.as_str()), ("", ""));
    let (d, h) = b.both(&["start", "-a", "later"], None);
    assert_eq!(
        d,
        Seen {
            code: 3,
            stdout: "out\n".into(),
            stderr: "err\n".into()
        }
    );
    assert_eq!(h, d);
    // Started again, attached again: the same run, the log holds both.
    let (d, h) = b.both(&["start", "-a", "later"], None);
    assert_eq!(h, d);
    let (d, h) = b.ok(&["logs", "later"]);
    assert_eq!(h, d);
}

#[test]
fn start_ai_feeds_stdin_of_a_container_created_with_i() {
    let b = Both::new();
    b.ok(&[
        "create",
        "-i",
        "--name",
        "reader",
        "busybox",
        "sh",
        "-c",
        "read a; read b; echo \"$b $a\"",
    ]);
    let (d, h) = b.both(&["start", "-ai", "reader"], Some(b"first\nsecond\n"));
    assert_eq!(d.stdout, "second first\n", "{d:?}");
    assert_eq!(h, d);
}

#[test]
fn attach_and_start_refuse_as_docker() {
    let b = Both::new();
    b.ok(&["create", "--name", "idle", "busybox", "true"]);
    let (d, h) = b.both(&["attach", "idle"], None);
    same_error(
        &d,
        &h,
        "You cannot attach to a stopped container, start it first",
    );
    let (d, h) = b.both(&["attach", "nosuch"], None);
    assert_eq!(d.code, h.code, "{d:?} / {h:?}");
    assert!(h.stderr.contains("nosuch"), "{h:?}");
    // A tty container with a stdin that is no terminal.
    b.ok(&[
        "run", "-dit", "--name", "term", "busybox", "sh", "-c", "sleep 30",
    ]);
    b.running("term");
    let (d, h) = b.both(&["attach", "term"], Some(b"x\n"));
    same_error(&d, &h, "the input device is not a TTY");
    b.ok(&["create", "--name", "one", "busybox", "true"]);
    let (d, h) = b.both(&["start", "-a", "one", "idle"], None);
    same_error(
        &d,
        &h,
        "you cannot start and attach multiple containers at once",
    );
    b.both(&["rm", "-f", "term"], None);
}

#[test]
fn attach_sees_only_output_from_the_moment_it_attached() {
    let b = Both::new();
    // "after" needs the line the attachment sends: it is printed only once the client is
    // attached, so the comparison is deterministic.
    b.ok(&[
        "run",
        "-di",
        "--name",
        "late",
        "busybox",
        "sh",
        "-c",
        "echo before; read x; echo after $x; exit 7",
    ]);
    b.running("late");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (d, h) = b.ok(&["logs", "late"]);
        if d == "before\n" && h == "before\n" {
            break;
        }
        assert!(Instant::now() < deadline, "{d:?} {h:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (d, h) = b.attach("late", b"go\n");
    assert_eq!(
        d,
        Seen {
            code: 7,
            stdout: "after go\n".into(),
            stderr: String::new()
        }
    );
    assert_eq!(h, d);
}

#[test]
fn attach_relays_output_after_its_stdin_ends() {
    // docker stops relaying output when the client's stdin ends; hoist keeps relaying until
    // the container exits (deliberate: nothing the container prints is lost).
    let h = Home::new();
    h.ok(&[
        "run",
        "-di",
        "--name",
        "rest",
        "busybox",
        "sh",
        "-c",
        "read x; sleep 0.3; echo still $x; exit 2",
    ]);
    let out = seen(&with_stdin(h.cmd(&["attach", "rest"]), Some(b"here\n")));
    assert_eq!(
        out,
        Seen {
            code: 2,
            stdout: "still here\n".into(),
            stderr: String::new()
        }
    );
}
