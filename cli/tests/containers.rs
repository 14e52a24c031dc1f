//! The container lifecycle end to end, as root, with a busybox image imported by the test:
//! detached runs, ps, logs, exec, stop/kill/start/restart/wait/rm, inspect, diff, commit,
//! prune, and a crashed supervisor.

mod run_support;

use std::time::{Duration, Instant};

use run_support::Home;

#[test]
fn detached_ps_logs_exec() {
    let h = Home::new();
    let id = h.ok(&[
        "run",
        "-d",
        "--name",
        "quotes",
        "busybox",
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo line $i; echo err $i >&2; sleep 0.1; done",
    ]);
    let id = id.trim().to_owned();
    assert_eq!(id.len(), 64);
    // ps: docker's columns, only running containers; -q the short ids.
    let ps = h.ok(&["ps"]);
    let mut lines = ps.lines();
    let header = lines.next().unwrap();
    for col in [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(&id[..12])
            && row.contains("busybox")
            && row.contains("Up ")
            && row.ends_with("quotes"),
        "{row}"
    );
    assert_eq!(h.ok(&["ps", "-q"]), format!("{}\n", &id[..12]));
    // logs: kept per container; --tail; --timestamps; stdout and stderr apart.
    h.eventually("5 lines of logs", || {
        h.ok(&["logs", "quotes"]).lines().count() >= 5
    });
    let out = h.run(&["logs", "--tail", "2", "quotes"]);
    // The last 2 records of both streams, each on its own stream.
    let tail = String::from_utf8(out.stdout).unwrap();
    let tail_err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        tail.lines().count() + tail_err.lines().count(),
        2,
        "{tail}{tail_err}"
    );
    assert!(tail.lines().all(|l| l.starts_with("line ")));
    assert!(tail_err.lines().all(|l| l.starts_with("err ")));
    let ts = h.ok(&["logs", "--timestamps", "quotes"]);
    let (time, rest) = ts.lines().next().unwrap().split_once(' ').unwrap();
    assert!(time.ends_with('Z') && time.contains('T'), "{ts}");
    assert!(rest.starts_with("line "));
    // logs --follow streams until the container stops.
    let follower = h
        .cmd(&["logs", "--follow", "--tail", "0", "quotes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // exec joins the namespaces: the main process is PID 1.
    let ps = h.ok(&["exec", "quotes", "ps"]);
    let first = ps.lines().nth(1).unwrap();
    assert!(
        first.trim_start().starts_with("1 ") && first.contains("sh -c"),
        "{ps}"
    );
    assert_eq!(
        h.ok(&[
            "exec",
            "-e",
            "MY_VAR=1",
            "quotes",
            "sh",
            "-c",
            "echo $MY_VAR; hostname"
        ])
        .lines()
        .next(),
        Some("1")
    );
    let (code, _, _) = h.fails(&["exec", "quotes", "sh", "-c", "exit 4"]);
    assert_eq!(code, 4);
    assert_eq!(
        h.ok(&["exec", "-t", "quotes", "sh", "-c", "test -t 1 && echo tty"]),
        "tty\r\n"
    );
    assert_eq!(
        h.ok(&[
            "exec",
            "-u",
            "nobody",
            "-w",
            "/tmp",
            "quotes",
            "sh",
            "-c",
            "id -u; pwd"
        ]),
        "65534\n/tmp\n"
    );
    h.ok(&["stop", "-t", "1", "quotes"]);
    let followed = follower.wait_with_output().unwrap();
    let followed = String::from_utf8(followed.stdout).unwrap();
    assert!(
        followed.lines().count() >= 2 && followed.lines().all(|l| l.starts_with("line ")),
        "{followed}"
    );
    // The detached container's CLI is long gone; its state stays.
    assert_eq!(h.ok(&["ps", "-q"]), "");
    let all = h.ok(&["ps", "-a"]);
    assert!(all.contains("Exited (137)"), "{all}");
    let (_, _, err) = h.fails(&["exec", "quotes", "true"]);
    assert!(err.contains("not running"), "{err}");
}

#[test]
fn stop_timing_kill_start_restart_wait_rm() {
    let h = Home::new();
    // PID 1 ignores SIGTERM it has no handler for: stop waits the whole timeout, then SIGKILL.
    h.ok(&["run", "-d", "--name", "stubborn", "busybox", "sleep", "60"]);
    let start = Instant::now();
    h.ok(&["stop", "stubborn"]);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(16),
        "{took:?}"
    );
    assert_eq!(h.inspect("stubborn")["State"]["ExitCode"], 137);
    // -t shortens it.
    h.ok(&["start", "stubborn"]);
    assert_eq!(h.status("stubborn"), "running");
    let start = Instant::now();
    h.ok(&["stop", "-t", "1", "stubborn"]);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // A process that handles SIGTERM stops at once, with its own exit code.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "polite",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
    ]);
    let start = Instant::now();
    h.ok(&["stop", "polite"]);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(h.inspect("polite")["State"]["ExitCode"], 0);

    // The image's STOPSIGNAL is what stop sends.
    h.import("usr1", &[r#"CMD ["sh"]"#, "STOPSIGNAL SIGUSR1"]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "sig",
        "usr1",
        "sh",
        "-c",
        "trap 'exit 9' USR1; while :; do sleep 0.1; done",
    ]);
    let start = Instant::now();
    h.ok(&["stop", "sig"]);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(h.inspect("sig")["State"]["ExitCode"], 9);

    // kill -s.
    h.ok(&["start", "sig"]);
    assert_eq!(h.ok(&["kill", "-s", "USR1", "sig"]), "sig\n");
    assert_eq!(h.ok(&["wait", "sig"]), "9\n");
    h.ok(&["start", "sig"]);
    h.ok(&["kill", "sig"]);
    assert_eq!(h.ok(&["wait", "sig"]), "137\n");

    // wait prints the exit code once the container ends.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "short",
        "busybox",
        "sh",
        "-c",
        "sleep 0.5; exit 7",
    ]);
    assert_eq!(h.ok(&["wait", "short"]), "7\n");
    assert_eq!(h.status("short"), "exited");

    // restart: stops (here at once) and starts again; the writable layer is kept.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "keeper",
        "busybox",
        "sh",
        "-c",
        "echo run >> /runs; trap 'exit 0' TERM; while :; do sleep 0.1; done",
    ]);
    h.eventually("the first run", || {
        h.run(&["exec", "keeper", "cat", "/runs"]).stdout == b"run\n"
    });
    let started = h.inspect("keeper")["State"]["StartedAt"]
        .as_str()
        .unwrap()
        .to_owned();
    h.ok(&["restart", "keeper"]);
    assert_eq!(h.status("keeper"), "running");
    assert_ne!(
        h.inspect("keeper")["State"]["StartedAt"].as_str().unwrap(),
        started
    );
    h.eventually("the second run", || {
        h.run(&["exec", "keeper", "cat", "/runs"]).stdout == b"run\nrun\n"
    });

    // rm refuses a running container; -f kills it.
    let (_, _, err) = h.fails(&["rm", "keeper"]);
    assert!(err.contains("container is running"), "{err}");
    let dir = h.container_dir("keeper");
    assert_eq!(h.ok(&["rm", "-f", "keeper"]), "keeper\n");
    assert!(!dir.exists());
    let (_, _, err) = h.fails(&["inspect", "keeper"]);
    assert!(err.contains("keeper"), "{err}");
    // The name is free again.
    h.ok(&["run", "--name", "keeper", "busybox", "true"]);
    let (_, _, err) = h.fails(&["run", "--name", "keeper", "busybox", "true"]);
    assert!(err.contains("already in use"), "{err}");
}

#[test]
fn a_crashed_supervisor_never_leaves_a_container_running() {
    let h = Home::new();
    h.ok(&["run", "-d", "--name", "orphan", "busybox", "sleep", "60"]);
    let dir = h.container_dir("orphan");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    let sup = state["supervisor"]["pid"].as_i64().unwrap();
    let init = state["init"]["pid"].as_i64().unwrap();
    assert!(sup > 0 && init > 0 && sup != init);
    // The supervisor outlived the CLI, in its own session.
    let stat = std::fs::read_to_string(format!("/proc/{sup}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    assert_eq!(
        fields[3],
        sup.to_string(),
        "the supervisor leads its own session"
    );
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &sup.to_string()])
            .status()
            .unwrap()
            .success()
    );
    h.eventually("the supervisor to be gone", || {
        std::fs::read_to_string(format!("/proc/{sup}/stat")).map_or(true, |s| s.contains(") Z "))
    });
    assert_eq!(h.ok(&["ps", "-q"]), "");
    let st = h.inspect("orphan")["State"].clone();
    assert_eq!(st["Status"], "exited");
    assert!(st["Error"].as_str().unwrap().contains("supervisor"));
    // And the container's init did not survive it.
    h.eventually("the init to be gone", || {
        std::fs::read_to_string(format!("/proc/{init}/stat")).map_or(true, |s| s.contains(") Z "))
    });
    // It can be started again.
    h.ok(&["start", "orphan"]);
    assert_eq!(h.status("orphan"), "running");
}

#[test]
fn inspect_diff_commit_prune() {
    let h = Home::new();
    h.ok(&[
        "run",
        "--name",
        "changer",
        "-e",
        "ADDED=1",
        "busybox",
        "sh",
        "-c",
        "echo x > /new; rm /etc/group; mkdir -p /var/made",
    ]);
    let c = h.inspect("changer");
    assert_eq!(c["Name"], "/changer");
    assert_eq!(c["State"]["Status"], "exited");
    assert_eq!(c["State"]["ExitCode"], 0);
    assert_eq!(c["Path"], "sh");
    assert!(
        c["Config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "ADDED=1")
    );
    // `inspect` finds an image when no container has the name.
    let img = h.inspect("busybox");
    assert!(img["RootFS"]["Layers"].is_array());
    let diff = h.ok(&["diff", "changer"]);
    // Exactly the container's changes: not the mount points the runtime needed.
    assert_eq!(diff, "C /etc\nD /etc/group\nA /new\nC /var\nA /var/made\n");
    // commit: a new image layer from the upper dir.
    let id = h.ok(&["commit", "changer", "snap:1"]);
    assert!(id.trim().starts_with("sha256:"));
    assert_eq!(h.ok(&["run", "--rm", "snap:1", "cat", "/new"]), "x\n");
    h.ok(&[
        "run",
        "--rm",
        "snap:1",
        "sh",
        "-c",
        "test ! -e /etc/group && test -d /var/made",
    ]);
    let snap = h.inspect("snap:1");
    assert_eq!(snap["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    assert!(
        snap["Config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "ADDED=1")
    );

    // An image a container uses is not removed by rmi or image prune -a.
    h.ok(&["run", "--name", "usessnap", "snap:1", "true"]);
    let (_, _, err) = h.fails(&["rmi", "snap:1"]);
    assert!(err.contains("container"), "{err}");
    h.ok(&["image", "prune", "-a", "-f"]);
    assert!(h.ok(&["images"]).contains("snap"));
    h.ok(&["run", "--rm", "snap:1", "true"]);

    // container prune removes every stopped container.
    h.ok(&["run", "-d", "--name", "alive", "busybox", "sleep", "30"]);
    let out = h.ok(&["container", "prune", "-f"]);
    assert!(out.starts_with("Deleted Containers:"), "{out}");
    let left = h.ok(&["ps", "-aq"]);
    assert_eq!(left.lines().count(), 1, "{left}");
    assert_eq!(h.status("alive"), "running");
    // Now nothing uses snap:1: rmi removes it.
    h.ok(&["rmi", "snap:1"]);
}

#[test]
fn logs_rotate_and_detached_rm_removes() {
    let h = Home::new();
    h.ok(&[
        "run",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=2k",
        "--log-opt",
        "max-file=2",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo line $i; done",
    ]);
    let dir = h.container_dir("chatty");
    assert!(dir.join("container.log.1").exists());
    assert!(!dir.join("container.log.2").exists());
    for f in ["container.log", "container.log.1"] {
        assert!(std::fs::metadata(dir.join(f)).unwrap().len() <= 2048);
    }
    let logs = h.ok(&["logs", "chatty"]);
    assert!(logs.ends_with("line 300\n"), "{logs}");
    assert!(
        !logs.starts_with("line 1\n"),
        "the oldest lines were rotated away"
    );
    let n: Vec<u32> = logs.lines().map(|l| l[5..].parse().unwrap()).collect();
    assert!(n.windows(2).all(|w| w[1] == w[0] + 1));

    // -d --rm: the supervisor removes the container when it ends.
    let id = h.ok(&["run", "-d", "--rm", "busybox", "sh", "-c", "sleep 0.3"]);
    let id = id.trim().to_owned();
    h.eventually("the container to be removed", || {
        !h.ok(&["ps", "-aq", "--no-trunc"]).contains(&id)
    });
    assert!(!h.home().join("containers").join(&id).exists());
}

#[test]
fn pause_freezes_every_process_and_unpause_resumes() {
    let h = Home::new();
    let out = tempfile::tempdir().unwrap();
    let bind = format!("{}:/out", out.path().display());
    let count = out.path().join("count");
    h.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo $i > /out/count; sleep 0.05; done",
    ]);
    let read = || -> u64 {
        std::fs::read_to_string(&count)
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while read() < 3 {
        assert!(Instant::now() < deadline, "the container never counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(h.ok(&["pause", "ticker"]), "ticker\n");
    // Frozen: the counter stands still, ps and inspect say so, exec and a second pause are refused.
    let frozen = read();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read(), frozen, "a paused container kept running");
    let ps = h.ok(&["ps"]);
    assert!(ps.contains("(Paused)"), "{ps}");
    let state = &h.inspect("ticker")["State"];
    assert_eq!(state["Status"], "paused");
    assert_eq!(state["Paused"], true);
    assert_eq!(state["Running"], true);
    let (_, _, err) = h.fails(&["exec", "ticker", "true"]);
    assert!(err.contains("paused"), "{err}");
    let (_, _, err) = h.fails(&["pause", "ticker"]);
    assert!(err.contains("paused"), "{err}");
    // Thawed: it counts again.
    assert_eq!(h.ok(&["unpause", "ticker"]), "ticker\n");
    let (_, _, err) = h.fails(&["unpause", "ticker"]);
    assert!(err.contains("not paused"), "{err}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while read() <= frozen {
        assert!(
            Instant::now() < deadline,
            "an unpaused container stayed frozen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(h.inspect("ticker")["State"]["Status"], "running");
    // A paused container still stops (thawed first) and rm -f removes one.
    h.ok(&["pause", "ticker"]);
    let started = Instant::now();
    h.ok(&["stop", "-t", "1", "ticker"]);
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(h.inspect("ticker")["State"]["Status"], "exited");
    assert_eq!(h.inspect("ticker")["State"]["Paused"], false);
    let (_, _, err) = h.fails(&["pause", "ticker"]);
    assert!(err.contains("not running"), "{err}");
    h.ok(&["start", "ticker"]);
    h.ok(&["pause", "ticker"]);
    h.ok(&["rm", "-f", "ticker"]);
    assert_eq!(h.ok(&["ps", "-aq"]), "");
}

/// `hoist cp` and `export` hold a stopped container's supervisor lock while they use its
/// filesystem; `start` waits for them (as docker's start waits for a copy) instead of failing
/// with "already running".
#[test]
fn start_waits_for_a_command_holding_a_stopped_container() {
    let h = Home::new();
    h.ok(&[
        "create", "--name", "held", "busybox", "sh", "-c", "echo ran",
    ]);
    let lock_path = h.container_dir("held").join("supervisor.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap();
    let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    let mut child = h
        .cmd(&["start", "-a", "held"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "start gave up while the lock was held"
    );
    drop(lock);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
}
