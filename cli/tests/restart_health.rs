//! Restart policies (`--restart`) and health checks (`HEALTHCHECK`, `--health-*`), end to end,
//! as root: the detached supervisor restarts and checks real containers.

mod run_support;

use std::time::{Duration, Instant};

use run_support::Home;

fn restart_count(h: &Home, name: &str) -> u64 {
    h.inspect(name)["RestartCount"].as_u64().unwrap()
}

fn health(h: &Home, name: &str) -> String {
    h.inspect(name)["State"]["Health"]["Status"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn ps_status(h: &Home, name: &str) -> String {
    h.ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("name=^{name}$"),
        "--format",
        "{{.Status}}",
    ])
    .trim()
    .to_owned()
}

#[test]
fn always_restarts_and_counts_until_stopped() {
    let h = Home::new();
    h.ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 3",
    ]);
    let v = h.inspect("a");
    assert_eq!(
        v["HostConfig"]["RestartPolicy"],
        serde_json::json!({"Name": "always", "MaximumRetryCount": 0})
    );
    h.eventually("three restarts", || restart_count(&h, "a") >= 3);
    // Between two runs (backoff 100, 200, 400 ms...): docker's Restarting status.
    let mut seen = false;
    let start = Instant::now();
    while !seen && start.elapsed() < Duration::from_secs(10) {
        let s = ps_status(&h, "a");
        if s.starts_with("Restarting (3) ") {
            assert!(s.ends_with(" ago"), "{s}");
            assert_eq!(h.status("a"), "restarting");
            seen = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(seen, "never saw the container restarting");
    let logs = h.ok(&["logs", "a"]);
    assert!(logs.matches("run").count() >= 3, "{logs}");
    // An explicit stop ends the loop.
    h.ok(&["stop", "-t", "1", "a"]);
    let n = restart_count(&h, "a");
    assert_eq!(h.status("a"), "exited");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(h.status("a"), "exited");
    assert_eq!(restart_count(&h, "a"), n);
    // --restart with --rm is refused, as docker refuses it.
    let (code, _, err) = h.fails(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert_eq!(code, 125);
    assert!(
        err.contains("conflicting options: cannot specify both --restart and --rm"),
        "{err}"
    );
    let (_, _, err) = h.fails(&["create", "--restart", "always:3", "busybox"]);
    assert!(
        err.contains("maximum retry count can only be used with 'on-failure'"),
        "{err}"
    );
}

#[test]
fn on_failure_stops_after_its_count_and_not_on_success() {
    let h = Home::new();
    h.ok(&[
        "run",
        "-d",
        "--name",
        "f",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    h.eventually("the loop to end", || {
        h.status("f") == "exited" && h.inspect("f")["State"]["Pid"] == 0
    });
    // Wait past the next backoff, in case it were still to restart.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(h.status("f"), "exited");
    assert_eq!(restart_count(&h, "f"), 2);
    assert_eq!(h.ok(&["logs", "f"]).matches("run").count(), 3);
    let v = h.inspect("f");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 2);
    assert_eq!(v["State"]["ExitCode"], 1);

    // Exit 0 is no failure: not restarted.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "ok",
        "--restart",
        "on-failure",
        "busybox",
        "true",
    ]);
    h.eventually("it to exit", || h.status("ok") == "exited");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(h.status("ok"), "exited");
    assert_eq!(restart_count(&h, "ok"), 0);

    // Without a policy: docker's "no".
    h.ok(&["run", "-d", "--name", "no", "busybox", "false"]);
    h.eventually("it to exit", || h.status("no") == "exited");
    assert_eq!(
        h.inspect("no")["HostConfig"]["RestartPolicy"],
        serde_json::json!({"Name": "no", "MaximumRetryCount": 0})
    );
    assert_eq!(restart_count(&h, "no"), 0);
}

#[test]
fn unless_stopped_restarts_until_killed_and_start_resets() {
    let h = Home::new();
    // Exits twice (restarted each time), then stays up: its runs count in its own filesystem.
    h.ok(&[
        "run", "-d", "--name", "u", "--restart", "unless-stopped", "busybox", "sh", "-c",
        "n=$(($(cat /n 2>/dev/null || echo 0) + 1)); echo $n > /n; [ $n -ge 3 ] && exec sleep 60; exit 0",
    ]);
    h.eventually("the third run", || {
        let v = h.inspect("u");
        v["RestartCount"] == 2 && v["State"]["Pid"] != 0 && v["State"]["Restarting"] == false
    });
    assert_eq!(h.status("u"), "running");
    // Killed: it stays stopped.
    h.ok(&["kill", "u"]);
    h.eventually("it to stop", || h.status("u") == "exited");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(h.status("u"), "exited");
    assert_eq!(restart_count(&h, "u"), 2);
    assert_eq!(h.inspect("u")["State"]["ExitCode"], 137);
    // A start begins a new loop, its count from 0; rm -f ends it.
    h.ok(&["start", "u"]);
    assert_eq!(h.status("u"), "running");
    assert_eq!(restart_count(&h, "u"), 0);
    h.ok(&["rm", "-f", "u"]);
    assert_eq!(h.ok(&["ps", "-aq"]), "");
}

#[test]
fn health_cmd_goes_starting_then_healthy_or_unhealthy() {
    let h = Home::new();
    // The failing one first: the other's first check (after 1 s) is not reached yet below.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "bad",
        "--health-cmd",
        "echo broken; false",
        "--health-interval",
        "300ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "60",
    ]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "good",
        "--health-cmd",
        "echo fine",
        "--health-interval",
        "1s",
        "busybox",
        "sleep",
        "60",
    ]);
    assert_eq!(health(&h, "good"), "starting");
    assert!(ps_status(&h, "good").ends_with(" (health: starting)"));
    let starting = h.ok(&[
        "ps",
        "--filter",
        "health=starting",
        "--format",
        "{{.Names}}",
    ]);
    assert!(starting.lines().any(|l| l == "good"), "{starting}");
    h.eventually("healthy", || health(&h, "good") == "healthy");
    h.eventually("unhealthy", || health(&h, "bad") == "unhealthy");
    assert!(ps_status(&h, "good").ends_with(" (healthy)"));
    assert!(ps_status(&h, "bad").ends_with(" (unhealthy)"));
    let v = h.inspect("good");
    let hs = &v["State"]["Health"];
    assert_eq!(hs["FailingStreak"], 0);
    let log = hs["Log"].as_array().unwrap();
    assert_eq!(log[0]["ExitCode"], 0);
    assert_eq!(log[0]["Output"], "fine\n");
    assert!(log[0]["Start"].as_str().unwrap() <= log[0]["End"].as_str().unwrap());
    assert_eq!(
        v["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "echo fine"])
    );
    assert_eq!(v["Config"]["Healthcheck"]["Interval"], 1_000_000_000u64);
    let bad = h.inspect("bad");
    assert!(bad["State"]["Health"]["FailingStreak"].as_u64().unwrap() >= 2);
    assert_eq!(bad["State"]["Health"]["Log"][0]["Output"], "broken\n");
    // The last 5 results are kept.
    h.eventually("five results", || {
        h.inspect("bad")["State"]["Health"]["Log"]
            .as_array()
            .unwrap()
            .len()
            == 5
    });
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        h.inspect("bad")["State"]["Health"]["Log"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    let names = |f: &str| {
        let mut v: Vec<String> = h
            .ok(&["ps", "--filter", f, "--format", "{{.Names}}"])
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    h.ok(&["run", "-d", "--name", "plain", "busybox", "sleep", "60"]);
    assert_eq!(names("health=healthy"), ["good"]);
    assert_eq!(names("health=unhealthy"), ["bad"]);
    assert_eq!(names("health=none"), ["plain"]);
    assert!(ps_status(&h, "plain").starts_with("Up "));
    assert!(!ps_status(&h, "plain").contains('('));
    assert!(h.inspect("plain")["State"].get("Health").is_none());
    let (_, _, err) = h.fails(&["ps", "--filter", "health=sick"]);
    assert!(
        err.contains("unrecognised filter value for health: sick"),
        "{err}"
    );
    let (_, _, err) = h.fails(&["run", "--no-healthcheck", "--health-cmd", "true", "busybox"]);
    assert!(
        err.contains("--no-healthcheck conflicts with --health-* options"),
        "{err}"
    );
    let (_, _, err) = h.fails(&["create", "--health-retries", "-1", "busybox"]);
    assert!(err.contains("--health-retries cannot be negative"), "{err}");
    h.ok(&["rm", "-f", "good", "bad", "plain"]);
}

#[test]
fn health_check_times_out() {
    let h = Home::new();
    h.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 5",
        "--health-interval",
        "200ms",
        "--health-timeout",
        "300ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "60",
    ]);
    h.eventually("unhealthy", || health(&h, "slow") == "unhealthy");
    let v = h.inspect("slow");
    let log = &v["State"]["Health"]["Log"][0];
    assert_eq!(log["ExitCode"], -1);
    assert_eq!(log["Output"], "Health check exceeded timeout (300ms)");
    h.ok(&["rm", "-f", "slow"]);
}

#[test]
fn image_healthcheck_and_no_healthcheck() {
    let h = Home::new();
    let ctx = h.path().join("hc");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nHEALTHCHECK --interval=300ms --retries=1 CMD [\"sh\", \"-c\", \"test -e /ok\"]\n",
    )
    .unwrap();
    h.ok(&["build", "-q", "-t", "hc", ctx.to_str().unwrap()]);
    // The image's check: unhealthy until /ok exists.
    h.ok(&["run", "-d", "--name", "img", "hc", "sleep", "60"]);
    let v = h.inspect("img");
    assert_eq!(
        v["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "sh", "-c", "test -e /ok"])
    );
    h.eventually("unhealthy", || health(&h, "img") == "unhealthy");
    h.ok(&["exec", "img", "touch", "/ok"]);
    h.eventually("healthy", || health(&h, "img") == "healthy");
    // A flag overrides what it sets, the image gives the rest.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "over",
        "--health-cmd",
        "false",
        "hc",
        "sleep",
        "60",
    ]);
    let v = h.inspect("over");
    assert_eq!(
        v["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "false"])
    );
    assert_eq!(v["Config"]["Healthcheck"]["Interval"], 300_000_000u64);
    // --no-healthcheck: none runs.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "off",
        "--no-healthcheck",
        "hc",
        "sleep",
        "60",
    ]);
    std::thread::sleep(Duration::from_millis(800));
    let v = h.inspect("off");
    assert!(v["State"].get("Health").is_none(), "{}", v["State"]);
    assert_eq!(
        v["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["NONE"])
    );
    assert!(!ps_status(&h, "off").contains("health"));
    h.ok(&["rm", "-f", "img", "over", "off"]);
}

#[test]
fn a_foreground_run_with_a_restart_policy_goes_on_detached() {
    // docker: the CLI returns the first exit code; the daemon restarts the container after.
    let h = Home::new();
    let (code, _, _) = h.fails(&[
        "run",
        "--name",
        "fg",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo ran >> /tmp/runs; exit 3",
    ]);
    assert_eq!(code, 3);
    h.eventually("a restart", || restart_count(&h, "fg") >= 1);
    h.eventually("the end of the policy", || {
        h.inspect("fg")["State"]["Status"] == "exited" && restart_count(&h, "fg") >= 2
    });
    assert!(restart_count(&h, "fg") <= 3);
    assert_eq!(h.inspect("fg")["State"]["ExitCode"], 3);
    // Without a policy nothing restarts.
    let (code, _, _) = h.fails(&["run", "--name", "once", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(code, 3);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(restart_count(&h, "once"), 0);
    assert_eq!(h.inspect("once")["State"]["Status"], "exited");
}

/// The host goes down and comes up: what docker's daemon does for restart policies at its
/// start, `hoist system service start` does (what the unit `install` writes runs at boot).
#[test]
fn after_a_reboot_the_service_brings_back_what_the_policies_ask() {
    let h = Home::new();
    h.ok(&["network", "create", "--subnet", "10.241.0.0/24", "bootnet"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let publish = format!("127.0.0.1:{port}:80");
    let run = |name: &str, policy: &str, extra: &[&str], cmd: &[&str]| {
        let mut args = vec!["run", "-d", "--name", name, "--restart", policy];
        args.extend_from_slice(extra);
        args.push("busybox");
        args.extend_from_slice(cmd);
        h.ok(&args);
    };
    let web = ["httpd", "-f", "-p", "80", "-h", "/etc"];
    let sleep = ["sleep", "300"];
    run(
        "a",
        "always",
        &["--network", "bootnet", "-p", &publish],
        &web,
    );
    run("b", "unless-stopped", &[], &sleep);
    run("c", "unless-stopped", &[], &sleep);
    run("d", "no", &[], &sleep);
    run("e", "always", &[], &sleep);
    h.ok(&["stop", "-t", "1", "c"]);
    let get = || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        std::io::Write::write_all(&mut s, b"GET /passwd HTTP/1.0\r\n\r\n")?;
        let mut body = String::new();
        std::io::Read::read_to_string(&mut s, &mut body)?;
        Ok::<_, std::io::Error>(body)
    };
    h.eventually("a serves", || get().is_ok_and(|b| b.contains("root:")));
    // Stopped by hand before the host goes down: their endpoints and rules are undone, the
    // record of the networks' tables stays.
    for stopped in ["a", "e"] {
        h.ok(&["stop", "-t", "1", stopped]);
    }

    // Down: every supervisor and process dies at once; the namespaces (in /run), the bridges
    // and the tables (in the kernel) are gone with the old boot.
    let bridge_of = |net: &str| {
        let id = h.ok(&["network", "inspect", net, "--format", "{{.Id}}"]);
        let id = id.trim().to_owned();
        let dev = if net == "bridge" {
            h.ok(&[
                "network",
                "inspect",
                "bridge",
                "--format",
                "{{index .Options \"com.docker.network.bridge.name\"}}",
            ])
            .trim()
            .to_owned()
        } else {
            format!("hbr-{}", &id[..11])
        };
        (dev, format!("hoist-{}", &id[..12]))
    };
    let gone = [bridge_of("bridge"), bridge_of("bootnet")];
    let ids: Vec<String> = ["b", "d"]
        .iter()
        .map(|n| h.inspect(n)["Id"].as_str().unwrap().to_owned())
        .collect();
    for n in ["b", "d"] {
        h.crash(n);
    }
    std::thread::sleep(Duration::from_millis(300));
    for id in &ids {
        let ns = format!("/run/hoist/netns/{id}");
        let _ = std::process::Command::new("umount").arg(&ns).status();
        let _ = std::fs::remove_file(&ns);
    }
    for (dev, table) in &gone {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", dev])
            .status();
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "ip", table])
            .status();
    }

    // Up.
    let started = h.ok(&["system", "service", "start"]);
    let mut started: Vec<&str> = started.lines().collect();
    started.sort();
    // docker: `always` comes back even after a stop by hand; `unless-stopped` not then.
    assert_eq!(started, ["a", "b", "e"]);
    for (name, running) in [
        ("a", true),
        ("b", true),
        ("c", false),
        ("d", false),
        ("e", true),
    ] {
        assert_eq!(
            h.inspect(name)["State"]["Running"],
            running,
            "{name}: {}",
            h.inspect(name)["State"]
        );
    }
    // Its network and published port are there again, rules and all.
    h.eventually("a serves again", || {
        get().is_ok_and(|b| b.contains("root:"))
    });
    // Nothing more to start.
    assert_eq!(h.ok(&["system", "service", "start"]), "");

    // The unit that runs it at boot.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let said = h.ok(&["system", "service", "install", "--unit-dir", d]);
    let unit = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .next()
        .expect("a unit")
        .path();
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(said.contains("systemctl enable"), "{said}");
    assert!(text.contains(" system service start\n"), "{text}");
    let home = std::fs::canonicalize(h.home()).unwrap();
    assert!(
        text.contains(&format!("Environment=HOIST_HOME={}\n", home.display())),
        "{text}"
    );
    h.ok(&["system", "service", "uninstall", "--unit-dir", d]);
    assert!(!unit.exists());
    for n in ["a", "b", "c", "d", "e"] {
        h.ok(&["rm", "-f", n]);
    }
    h.ok(&["network", "rm", "bootnet"]);
}

/// A restart makes the container's veth again under the same name while the last run's one
/// may still be there (it goes with that run's namespace, which something may still hold):
/// the old one is replaced, and the container keeps restarting.
#[test]
fn a_restart_replaces_the_last_run_s_veth_still_held() {
    let h = Home::new();
    h.ok(&[
        "run",
        "-d",
        "--name",
        "r",
        "--restart",
        "on-failure:3",
        "busybox",
        "sh",
        "-c",
        "echo run; sleep 1; exit 1",
    ]);
    let id = h.inspect("r")["Id"].as_str().unwrap().to_owned();
    h.eventually("the first run's namespace", || {
        std::path::Path::new(&format!("/run/hoist/netns/{id}")).exists()
    });
    // Something holds the first run's namespace (and so its veth) past the run's end.
    let mut holder = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/hoist/netns/{id}"))
        .args(["sleep", "10"])
        .spawn()
        .unwrap();
    h.eventually("three restarts", || restart_count(&h, "r") >= 3);
    h.eventually("the loop to end", || h.status("r") == "exited");
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(h.ok(&["logs", "r"]).matches("run").count(), 4);
    assert_eq!(h.inspect("r")["State"]["ExitCode"], 1);
    assert_eq!(h.inspect("r")["State"]["Error"], "");
}
