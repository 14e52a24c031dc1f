//! Pods end to end (PODS.md), as root: mc1 (a shared emptyDir served over HTTP), mc2 (System V
//! IPC between two containers, the image built from C by `hoist build`), init containers, the
//! restart policies and phases, shared namespaces, and fields hoist does not implement.

mod run_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use run_support::Home;
use serde_json::Value;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn inspect(h: &Home, pod: &str) -> Value {
    let v: Value = serde_json::from_str(&h.ok(&["pod", "inspect", pod])).unwrap();
    v[0].clone()
}

/// Waits until the pod's phase is `phase` (20 s at most).
fn wait_phase(h: &Home, pod: &str, phase: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = inspect(h, pod);
        if v["Phase"] == phase {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "pod {pod} never reached {phase}: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The container `name` of a pod's inspect JSON.
fn member(v: &Value, name: &str) -> Value {
    v["Containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Name"] == name)
        .unwrap_or_else(|| panic!("no container {name}: {v}"))
        .clone()
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// PODS.md's mc1, verbatim.
const MC1: &str = include_str!("../../engine/src/pods/testdata/mc1.yaml");

#[test]
fn mc1_two_containers_share_an_emptydir_served_over_http() {
    let h = Home::new();
    // PODS.md: `nginx` is any local image with an HTTP server (busybox httpd here), `debian` one
    // with a shell.
    h.import(
        "nginx",
        &["CMD [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/usr/share/nginx/html\"]"],
    );
    h.ok(&["tag", "busybox", "debian"]);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "mc1.yaml", MC1);
    let id = h.ok(&["pod", "run", &file]);
    assert_eq!(id.trim().len(), 64);
    let v = wait_phase(&h, "mc1", "Running");
    let lines = |c: &str, p: &str| {
        h.ok(&["pod", "exec", "mc1", "-c", c, "--", "cat", p])
            .lines()
            .count()
    };
    eventually("two dates", || lines("2nd", "/html/index.html") >= 2);
    // The same growing file through both containers.
    let a = h.ok(&[
        "pod",
        "exec",
        "mc1",
        "-c",
        "1st",
        "--",
        "cat",
        "/usr/share/nginx/html/index.html",
    ]);
    let b = h.ok(&[
        "pod",
        "exec",
        "mc1",
        "-c",
        "2nd",
        "--",
        "cat",
        "/html/index.html",
    ]);
    assert!(b.starts_with(&a) || a.starts_with(&b), "{a} / {b}");
    eventually("a third date", || {
        lines("1st", "/usr/share/nginx/html/index.html") > a.lines().count()
    });
    // An HTTP GET to the pod's web server returns it.
    let ip: std::net::Ipv4Addr = v["IPAddress"].as_str().unwrap().parse().unwrap();
    let mut s =
        TcpStream::connect_timeout(&SocketAddr::from((ip, 80)), Duration::from_secs(5)).unwrap();
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(
        body.contains("200 OK") && body.contains(a.lines().next().unwrap()),
        "{body}"
    );
    // Both containers have the pod's hostname (one UTS namespace) and its network.
    assert_eq!(
        h.ok(&["pod", "exec", "mc1", "-c", "2nd", "--", "hostname"]),
        "mc1\n"
    );
    let got = h.ok(&[
        "pod",
        "exec",
        "mc1",
        "-c",
        "2nd",
        "--",
        "wget",
        "-qO-",
        "http://127.0.0.1/index.html",
    ]);
    assert!(got.contains(a.lines().next().unwrap()), "{got}");
    let ls = h.ok(&["pod", "ls"]);
    assert!(ls.contains("mc1") && ls.contains("Running"), "{ls}");

    // Stop, then rm: the containers and the emptyDir go; a new mc1 starts empty.
    h.ok(&["pod", "stop", "mc1"]);
    let v = inspect(&h, "mc1");
    assert_ne!(v["Phase"], "Running", "{v}");
    let (_, _, err) = h.fails(&["pod", "run", &file]);
    assert!(err.contains("pod mc1 already exists"), "{err}");
    h.ok(&["pod", "rm", "mc1"]);
    assert_eq!(h.ok(&["ps", "-aq"]), "");
    h.ok(&["pod", "run", &file]);
    wait_phase(&h, "mc1", "Running");
    let first = h.ok(&[
        "pod",
        "exec",
        "mc1",
        "-c",
        "1st",
        "--",
        "sh",
        "-c",
        "cat /usr/share/nginx/html/index.html | wc -l",
    ]);
    assert!(
        first.trim().parse::<u32>().unwrap() <= 2,
        "a new pod's emptyDir starts empty: {first}"
    );
    let (_, _, err) = h.fails(&["pod", "rm", "mc1"]);
    assert!(err.contains("is running"), "{err}");
    h.ok(&["pod", "rm", "-f", "mc1"]);
    assert!(h.ok(&["pod", "ls"]).lines().count() == 1);
}

/// PODS.md's mc2 program: a producer and a consumer over one System V message queue.
const IPC_C: &str = include_str!("../../engine/src/pods/testdata/ipc.c");
/// Its multi-stage build: compiled in a Debian+gcc stage, the static binary alone at the end.
const MC2_DOCKERFILE: &str = include_str!("../../engine/src/pods/testdata/mc2.Dockerfile");

/// PODS.md's mc2, verbatim.
const MC2: &str = include_str!("../../engine/src/pods/testdata/mc2.yaml");

#[test]
fn mc2_two_containers_talk_over_system_v_ipc_and_the_pod_succeeds() {
    let h = Home::new();
    let tar = hoist_testsupport::bases::debian_gcc_tar(Path::new(env!("CARGO_TARGET_TMPDIR")));
    h.ok(&["import", tar.to_str().unwrap(), "debian-gcc:bookworm"]);
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "ipc.c", IPC_C);
    write(ctx.path(), "Dockerfile", MC2_DOCKERFILE);
    h.ok(&[
        "build",
        "-q",
        "-t",
        "allingeek/ch6_ipc",
        ctx.path().to_str().unwrap(),
    ]);
    let file = write(ctx.path(), "mc2.yaml", MC2);
    h.ok(&["pod", "run", &file]);
    let v = wait_phase(&h, "mc2", "Succeeded");
    for c in v["Containers"].as_array().unwrap() {
        assert_eq!(c["ExitCode"], 0, "{v}");
        assert_eq!(c["RestartCount"], 0, "{v}");
    }
    let produced = h.ok(&["pod", "logs", "mc2", "-c", "producer"]);
    let consumed = h.ok(&["pod", "logs", "mc2", "-c", "consumer"]);
    let p: Vec<&str> = produced
        .lines()
        .map(|l| l.trim_start_matches("Produced: "))
        .collect();
    let c: Vec<&str> = consumed
        .lines()
        .map(|l| l.trim_start_matches("Consumed: "))
        .collect();
    assert_eq!(p.len(), 6, "{produced}");
    assert_eq!(p, c, "the consumer got what the producer sent, in order");
    assert_eq!(c.last(), Some(&"done"));
    // The queue was the pod's: the host's IPC namespace never saw it.
    let ipcs = std::process::Command::new("ipcs")
        .arg("-q")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&ipcs.stdout).contains("0x000006c6"));
    h.ok(&["pod", "rm", "mc2"]);

    // They paired up only because the pod shares one IPC namespace: two separate containers of
    // the same image each have their own, and the consumer never finds the producer's queue
    // (it gives up after 10 s).
    h.ok(&[
        "run",
        "-d",
        "--name",
        "alone",
        "allingeek/ch6_ipc",
        "./ipc",
        "-consumer",
    ]);
    let produced = h.ok(&["run", "--rm", "allingeek/ch6_ipc", "./ipc", "-producer"]);
    assert!(produced.contains("Produced: done"), "{produced}");
    assert_eq!(h.ok(&["wait", "alone"]).trim(), "1");
    // perror writes to stderr, which `logs` replays on stderr.
    let logs = h.cmd(&["logs", "alone"]).output().unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&logs.stdout),
        String::from_utf8_lossy(&logs.stderr)
    );
    assert!(
        logs.contains("msgget") && !logs.contains("Consumed"),
        "{logs}"
    );
    h.ok(&["rm", "alone"]);
}

#[test]
fn init_containers_run_in_order_before_the_others_and_restart_policies_hold() {
    let h = Home::new();
    let dir = tempfile::tempdir().unwrap();
    let host_dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "init.yaml",
        &format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: ordered
  labels:
    app: demo
spec:
  restartPolicy: OnFailure
  volumes:
  - name: data
    emptyDir: {{}}
  - name: out
    hostPath:
      path: {}
  initContainers:
  - name: one
    image: busybox
    command: [sh, -c, 'echo one >> /data/log']
    volumeMounts: [{{name: data, mountPath: /data}}]
  - name: two
    image: busybox
    command: [sh, -c, 'echo two >> /data/log']
    volumeMounts: [{{name: data, mountPath: /data}}]
  containers:
  - name: main
    image: busybox
    env:
    - name: GREETING
      value: hi
    workingDir: /data
    command: [sh, -c]
    args: ['echo $GREETING $(pwd) >> log; cat log > /out/seen; echo x >> runs; [ $(wc -l < runs) -ge 3 ]']
    volumeMounts:
    - {{name: data, mountPath: /data}}
    - {{name: out, mountPath: /out}}
",
            host_dir.path().display()
        ),
    );
    h.ok(&["pod", "run", &file]);
    // OnFailure: main fails twice, then exits 0: the pod succeeds after two restarts.
    let v = wait_phase(&h, "ordered", "Succeeded");
    let main = member(&v, "main");
    assert_eq!(main["RestartCount"], 2, "{v}");
    assert_eq!(main["ExitCode"], 0, "{v}");
    let seen = std::fs::read_to_string(host_dir.path().join("seen")).unwrap();
    assert_eq!(seen, "one\ntwo\nhi /data\nhi /data\nhi /data\n");
    h.ok(&["pod", "rm", "ordered"]);

    // Never: a failing container fails the pod, with no restart.
    let file = write(
        dir.path(),
        "never.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: once\nspec:\n  restartPolicy: Never\n  containers:\n  - name: bad\n    image: busybox\n    command: [sh, -c, 'exit 3']\n  - name: good\n    image: busybox\n    command: ['true']\n",
    );
    h.ok(&["pod", "run", &file]);
    let v = wait_phase(&h, "once", "Failed");
    let bad = member(&v, "bad");
    assert_eq!(
        (bad["ExitCode"].as_i64(), bad["RestartCount"].as_i64()),
        (Some(3), Some(0)),
        "{v}"
    );
    h.ok(&["pod", "rm", "once"]);

    // Always: a container that exits is started again, until the pod is stopped.
    let file = write(
        dir.path(),
        "always.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: loop\nspec:\n  containers:\n  - name: blink\n    image: busybox\n    command: [sh, -c, 'sleep 0.2']\n",
    );
    h.ok(&["pod", "run", &file]);
    eventually("a restart", || {
        inspect(&h, "loop")["Containers"][0]["RestartCount"]
            .as_i64()
            .unwrap_or(0)
            >= 1
    });
    h.ok(&["pod", "stop", "loop"]);
    h.ok(&["pod", "rm", "loop"]);
}

#[test]
fn two_containers_binding_one_port_conflict_and_unknown_fields_are_named() {
    let h = Home::new();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "clash.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: clash\nspec:\n  restartPolicy: Never\n  containers:\n  - name: a\n    image: busybox\n    command: [httpd, -f, -p, '8080']\n  - name: b\n    image: busybox\n    command: [sh, -c, 'sleep 1; exec httpd -f -p 8080']\n",
    );
    h.ok(&["pod", "run", &file]);
    let c = h.fails_until_logs(
        &["pod", "logs", "clash", "-c", "b"],
        "Address already in use",
    );
    assert!(c.contains("Address already in use"), "{c}");
    h.ok(&["pod", "rm", "-f", "clash"]);

    let file = write(
        dir.path(),
        "probe.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: probe\nspec:\n  containers:\n  - name: a\n    image: busybox\n    livenessProbe:\n      exec:\n        command: ['true']\n",
    );
    let (_, _, err) = h.fails(&["pod", "run", &file]);
    assert!(err.contains("livenessProbe"), "{err}");
    assert!(err.contains("probe.yaml"), "{err}");
    assert_eq!(h.ok(&["pod", "ls"]).lines().count(), 1, "nothing made");
    assert_eq!(h.ok(&["ps", "-aq"]), "");
}

trait LogsUntil {
    fn fails_until_logs(&self, args: &[&str], want: &str) -> String;
}

impl LogsUntil for Home {
    /// The output of `args`, polled until it contains `want` (20 s at most).
    fn fails_until_logs(&self, args: &[&str], want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.run(args);
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if text.contains(want) || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn a_pod_publishes_its_host_ports() {
    let h = Home::new();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = write(
        dir.path(),
        "web.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pubweb\nspec:\n  containers:\n  - name: web\n    image: busybox\n    command: [sh, -c, 'mkdir -p /www && echo pod-page > /www/index.html && exec httpd -f -p 80 -h /www']\n    ports:\n    - containerPort: 80\n      hostPort: {port}\n"
        ),
    );
    h.ok(&["pod", "run", &file]);
    wait_phase(&h, "pubweb", "Running");
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let got = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(2),
        )
        .and_then(|mut s| {
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut b = String::new();
            s.read_to_string(&mut b)?;
            Ok(b)
        });
        match got {
            Ok(b) if b.contains("pod-page") => break b,
            _ if Instant::now() > deadline => panic!("no answer on {port}: {got:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(body.contains("200 OK"), "{body}");
    h.ok(&["pod", "rm", "-f", "pubweb"]);
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the host port is free again");
}
