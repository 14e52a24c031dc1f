//! `hoist run` end to end, as root, with a busybox image imported by the test: every behaviour
//! is asserted from inside (or on) a real container.

mod run_support;

use std::time::{Duration, Instant};

use run_support::{Home, field, path};

#[test]
fn hello_world_and_exit_codes() {
    let h = Home::new();
    assert_eq!(
        h.ok(&["run", "--rm", "busybox", "echo", "Hello World"]),
        "Hello World\n"
    );
    let (code, _, _) = h.fails(&["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(code, 3);
    // --rm left nothing behind.
    assert_eq!(h.ok(&["ps", "-aq"]), "");
    // The image's Cmd is the default command; stderr goes to stderr.
    let out = h.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let (_, _, err) = h.fails(&["run", "--rm", "busybox", "/no/such/program"]);
    assert!(err.contains("/no/such/program"), "{err}");
    let (_, _, err) = h.fails(&["run", "--rm", "nosuchimage"]);
    assert!(err.contains("nosuchimage"), "{err}");
}

#[test]
fn pid_one_hostname_and_etc_files() {
    let h = Home::new();
    let out = h.ok(&[
        "run", "--rm", "--hostname", "web", "busybox", "sh", "-c",
        "echo $$; hostname; cat /etc/hostname; grep -c web /etc/hosts; test -s /etc/resolv.conf && echo resolv",
    ]);
    assert_eq!(out, "1\nweb\nweb\n1\nresolv\n");
    // Without --hostname: the short id.
    let out = h.ok(&["run", "--name", "named", "busybox", "hostname"]);
    let id = h.inspect("named")["Id"].as_str().unwrap().to_owned();
    assert_eq!(out.trim(), &id[..12]);
    // /dev has docker's nodes, /sys is read-only.
    let out = h.ok(&["run", "--rm", "busybox", "ls", "/dev"]);
    for n in [
        "full", "mqueue", "null", "pts", "random", "shm", "tty", "urandom", "zero",
    ] {
        assert!(out.lines().any(|l| l == n), "no /dev/{n} in {out}");
    }
    let (_, _, err) = h.fails(&["run", "--rm", "busybox", "mkdir", "/sys/x"]);
    assert!(err.contains("Read-only file system"), "{err}");
}

#[test]
fn docker_default_isolation() {
    let h = Home::new();
    let status = h.ok(&["run", "--rm", "busybox", "cat", "/proc/self/status"]);
    // docker's 14 default capabilities.
    assert_eq!(field(&status, "CapEff:"), "00000000a80425fb");
    assert_eq!(field(&status, "CapBnd:"), "00000000a80425fb");
    // docker's default: no_new_privs only with --security-opt no-new-privileges.
    assert_eq!(field(&status, "NoNewPrivs:"), "0");
    assert_eq!(field(&status, "Seccomp:"), "2");
    // The seccomp profile: mount and unshare are refused without CAP_SYS_ADMIN.
    let (_, _, err) = h.fails(&["run", "--rm", "busybox", "unshare", "-n", "true"]);
    assert!(err.contains("unshare"), "{err}");
    // Masked and read-only paths.
    for p in [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/interrupts",
    ] {
        if std::fs::metadata(p).is_ok_and(|m| m.is_file()) {
            assert_eq!(
                h.ok(&["run", "--rm", "busybox", "cat", p]),
                "",
                "{p} is not masked"
            );
        }
    }
    assert_eq!(h.ok(&["run", "--rm", "busybox", "ls", "/sys/firmware"]), "");
    let (_, _, err) = h.fails(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo 1 > /proc/sys/kernel/printk",
    ]);
    assert!(err.contains("Read-only file system"), "{err}");
    // No file descriptors leak in: 0, 1, 2 and ls's own directory.
    let fds = h.ok(&["run", "--rm", "busybox", "ls", "/proc/self/fd"]);
    assert_eq!(fds.split_whitespace().count(), 4, "{fds}");

    // --privileged lifts it all.
    let status = h.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "cat",
        "/proc/self/status",
    ]);
    // Every capability the kernel knows, as far as the host itself has them (this machine's
    // root lacks CAP_SYS_RESOURCE).
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").unwrap();
    let all: u64 = (1u64 << (last.trim().parse::<u32>().unwrap() + 1)) - 1;
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    let host_bnd = u64::from_str_radix(field(&host, "CapBnd:"), 16).unwrap();
    assert_eq!(
        field(&status, "CapEff:"),
        format!("{:016x}", all & host_bnd)
    );
    assert_eq!(field(&status, "Seccomp:"), "0");
    assert_eq!(field(&status, "NoNewPrivs:"), "0");
    h.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "unshare",
        "-n",
        "true",
    ]);

    // --cap-drop / --cap-add.
    let status = h.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_ADMIN",
        "busybox",
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(field(&status, "CapEff:"), "0000000000001000");
    let status = h.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "chown",
        "busybox",
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(field(&status, "CapEff:"), "00000000a80425fa");
    let (_, _, err) = h.fails(&[
        "run",
        "--rm",
        "--cap-drop",
        "chown",
        "busybox",
        "chown",
        "65534",
        "/tmp",
    ]);
    assert!(err.contains("Operation not permitted"), "{err}");
}

#[test]
fn read_only_rootfs() {
    let h = Home::new();
    let (_, _, err) = h.fails(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert!(err.contains("Read-only file system"), "{err}");
    // Mounts stay writable: /dev/shm, volumes.
    h.ok(&[
        "run",
        "--rm",
        "--read-only",
        "-v",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "touch /dev/shm/x /scratch/y",
    ]);
    h.ok(&["run", "--rm", "busybox", "touch", "/x"]);
}

#[test]
fn user_env_workdir_entrypoint() {
    let h = Home::new();
    assert!(
        h.ok(&["run", "--rm", "--user", "1000:1000", "busybox", "id"])
            .starts_with("uid=1000 gid=1000")
    );
    assert_eq!(
        h.ok(&["run", "--rm", "-u", "nobody", "busybox", "id", "-u"]),
        "65534\n"
    );
    // A non-root user has no effective capabilities (docker keeps only the bounding set).
    let status = h.ok(&[
        "run",
        "--rm",
        "-u",
        "nobody",
        "busybox",
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(field(&status, "CapEff:"), "0000000000000000");
    assert_eq!(field(&status, "CapBnd:"), "00000000a80425fb");
    let (_, _, err) = h.fails(&["run", "--rm", "-u", "ghost", "busybox", "id"]);
    assert!(err.contains("unable to find user ghost"), "{err}");

    let env_file = h.dir.path().join("vars.env");
    std::fs::write(&env_file, "# comment\nFROM_FILE=f\nK=from-file\n").unwrap();
    let out = h.ok(&[
        "run",
        "--rm",
        "-e",
        "K=V",
        "--env-file",
        path(&env_file),
        "-w",
        "/app",
        "busybox",
        "sh",
        "-c",
        "echo $K $FROM_FILE $HOME $PATH; pwd",
    ]);
    assert_eq!(
        out,
        "V f /root /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/app\n"
    );
    // The image's Env/WorkingDir/User/Entrypoint, and the flags over them.
    h.import(
        "app:1",
        &[
            r#"ENTRYPOINT ["echo", "ep"]"#,
            r#"CMD ["default"]"#,
            "ENV GREETING=hello",
            "WORKDIR /srv",
            "USER nobody",
        ],
    );
    assert_eq!(h.ok(&["run", "--rm", "app:1"]), "ep default\n");
    assert_eq!(h.ok(&["run", "--rm", "app:1", "given"]), "ep given\n");
    assert_eq!(
        h.ok(&[
            "run",
            "--rm",
            "--entrypoint",
            "sh",
            "app:1",
            "-c",
            "echo $GREETING; pwd; id -u"
        ]),
        "hello\n/srv\n65534\n"
    );
    assert_eq!(
        h.ok(&["run", "--rm", "--entrypoint", "", "app:1", "id", "-u"]),
        "65534\n"
    );
    let (_, _, err) = h.fails(&["run", "--rm", "-w", "relative", "busybox", "true"]);
    assert!(err.contains("absolute path"), "{err}");
}

/// The cgroup directory of `controller` for process `pid` (v1, or the v2 unified path).
fn cgroup_dir(pid: i64, controller: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for l in text.lines() {
        let parts: Vec<&str> = l.splitn(3, ':').collect();
        if parts[1].split(',').any(|c| c == controller) {
            return std::path::PathBuf::from(format!("/sys/fs/cgroup/{controller}{}", parts[2]));
        }
    }
    let v2 = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    let root = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "/sys/fs/cgroup"
    } else {
        "/sys/fs/cgroup/unified"
    };
    std::path::PathBuf::from(format!("{root}{v2}"))
}

#[test]
fn limits_through_cgroups_and_rlimits() {
    let h = Home::new();
    h.ok(&[
        "run",
        "-d",
        "--name",
        "limited",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "64",
        "busybox",
        "sleep",
        "30",
    ]);
    let pid = h.inspect("limited")["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0);
    let mem = cgroup_dir(pid, "memory");
    let limit = std::fs::read_to_string(mem.join("memory.limit_in_bytes"))
        .or_else(|_| std::fs::read_to_string(mem.join("memory.max")))
        .unwrap();
    assert_eq!(limit.trim(), "67108864");
    let cpu = cgroup_dir(pid, "cpu");
    if let Ok(q) = std::fs::read_to_string(cpu.join("cpu.cfs_quota_us")) {
        assert_eq!(q.trim(), "50000");
        assert_eq!(
            std::fs::read_to_string(cpu.join("cpu.cfs_period_us"))
                .unwrap()
                .trim(),
            "100000"
        );
    } else {
        assert_eq!(
            std::fs::read_to_string(cpu.join("cpu.max")).unwrap().trim(),
            "50000 100000"
        );
    }
    let pids = cgroup_dir(pid, "pids");
    assert_eq!(
        std::fs::read_to_string(pids.join("pids.max"))
            .unwrap()
            .trim(),
        "64"
    );
    // The pids limit holds inside: the 6th process cannot be forked.
    let out = h.run(&[
        "run",
        "--rm",
        "--pids-limit",
        "5",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("can't fork") || err.contains("Resource temporarily unavailable"),
        "{err}"
    );
    h.ok(&["rm", "-f", "limited"]);

    // rlimits within the host's hard limits.
    assert_eq!(
        h.ok(&[
            "run",
            "--rm",
            "--ulimit",
            "nofile=512:1024",
            "busybox",
            "sh",
            "-c",
            "ulimit -n; ulimit -Hn"
        ]),
        "512\n1024\n"
    );
    let hard = nix_hard_nofile();
    let over = format!("nofile={}", hard + 1);
    let (_, _, err) = h.fails(&["run", "--rm", "--ulimit", &over, "busybox", "true"]);
    assert!(err.contains("host's hard limit"), "{err}");
}

fn nix_hard_nofile() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(4).unwrap().parse().unwrap()
}

#[test]
fn named_volumes_bind_mounts_and_read_only() {
    let h = Home::new();
    h.ok(&[
        "run",
        "--rm",
        "-v",
        "my-data:/data",
        "busybox",
        "sh",
        "-c",
        "echo hi > /data/x",
    ]);
    // The named volume outlives the container.
    assert_eq!(
        h.ok(&[
            "run",
            "--rm",
            "-v",
            "my-data:/data",
            "busybox",
            "cat",
            "/data/x"
        ]),
        "hi\n"
    );
    let (code, _, err) = h.fails(&[
        "run",
        "--rm",
        "-v",
        "my-data:/data:ro",
        "busybox",
        "sh",
        "-c",
        "echo no > /data/x",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    assert_eq!(
        h.ok(&[
            "run",
            "--rm",
            "-v",
            "my-data:/data:ro",
            "busybox",
            "cat",
            "/data/x"
        ]),
        "hi\n"
    );
    assert!(
        h.ok(&["volume", "ls"])
            .lines()
            .any(|l| l.split_whitespace().last() == Some("my-data"))
    );
    let v: serde_json::Value =
        serde_json::from_str(&h.ok(&["volume", "inspect", "my-data"])).unwrap();
    let mp = v[0]["Mountpoint"].as_str().unwrap().to_owned();
    assert_eq!(std::fs::read_to_string(format!("{mp}/x")).unwrap(), "hi\n");

    // Bind mounts: absolute paths only, both ways visible, :ro.
    let src = h.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("in"), "from host").unwrap();
    let bind = format!("{}:/app/src", path(&src));
    assert_eq!(
        h.ok(&[
            "run",
            "--rm",
            "-v",
            &bind,
            "busybox",
            "sh",
            "-c",
            "cat /app/src/in; echo back > /app/src/out"
        ]),
        "from host"
    );
    assert_eq!(std::fs::read_to_string(src.join("out")).unwrap(), "back\n");
    let ro = format!("{}:/app/src:ro", path(&src));
    let (_, _, err) = h.fails(&["run", "--rm", "-v", &ro, "busybox", "touch", "/app/src/no"]);
    assert!(err.contains("Read-only file system"), "{err}");
    // docker 25+: a source starting with . is relative to the working directory; other
    // relative paths are refused.
    let out = h
        .cmd(&[
            "run",
            "--rm",
            "-v",
            "./src:/app",
            "busybox",
            "cat",
            "/app/out",
        ])
        .current_dir(src.parent().unwrap())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "back\n");
    let (_, _, err) = h.fails(&["run", "--rm", "-v", "a/src:/app", "busybox", "true"]);
    assert!(err.contains("absolute"), "{err}");

    // rm refuses a volume a container uses, even an exited one.
    h.ok(&[
        "run",
        "--name",
        "user",
        "-v",
        "my-data:/data",
        "busybox",
        "true",
    ]);
    let (_, _, err) = h.fails(&["volume", "rm", "my-data"]);
    assert!(err.contains("in use"), "{err}");
    h.ok(&["rm", "user"]);
    assert_eq!(h.ok(&["volume", "rm", "my-data"]), "my-data\n");
    assert!(!std::path::Path::new(&mp).exists());
    h.ok(&["volume", "create", "spare"]);
    h.ok(&["volume", "prune", "-f", "--all"]);
    assert_eq!(h.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn image_volumes_become_anonymous_volumes() {
    let h = Home::new();
    h.import("withvol", &[r#"CMD ["sh"]"#, "VOLUME /cache"]);
    h.ok(&[
        "run",
        "--name",
        "v1",
        "withvol",
        "sh",
        "-c",
        "echo kept > /cache/f",
    ]);
    let mounts = h.inspect("v1")["Mounts"].clone();
    assert_eq!(mounts[0]["Destination"], "/cache");
    let name = mounts[0]["Name"].as_str().unwrap().to_owned();
    assert_eq!(name.len(), 64);
    assert!(h.ok(&["volume", "ls", "-q"]).contains(&name));
    let mp = mounts[0]["Source"].as_str().unwrap().to_owned();
    assert_eq!(
        std::fs::read_to_string(format!("{mp}/f")).unwrap(),
        "kept\n"
    );
    // rm -v takes the anonymous volume with the container; --rm does too.
    h.ok(&["rm", "-v", "v1"]);
    assert!(!h.ok(&["volume", "ls", "-q"]).contains(&name));
    h.ok(&["run", "--rm", "withvol", "true"]);
    assert_eq!(h.ok(&["volume", "ls", "-q"]), "");
}

fn netns(h: &Home, args: &[&str]) -> String {
    let mut a = vec!["run", "--rm"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["busybox", "readlink", "/proc/self/ns/net"]);
    h.ok(&a).trim().to_owned()
}

#[test]
fn network_modes() {
    let h = Home::new();
    let host_ns = std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .display()
        .to_string();
    // none: a namespace of its own, with only the loopback interface.
    assert_ne!(netns(&h, &["--network", "none"]), host_ns);
    let dev = h.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "cat",
        "/proc/net/dev",
    ]);
    let ifaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .map(|l| l.split(':').next().unwrap().trim())
        .collect();
    assert_eq!(ifaces, ["lo"]);
    // host: the host's namespace and hostname.
    assert_eq!(netns(&h, &["--network", "host"]), host_ns);
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        h.ok(&["run", "--rm", "--network", "host", "busybox", "hostname"]),
        host_name
    );
    // container:NAME: that container's namespace.
    h.ok(&[
        "run",
        "-d",
        "--name",
        "netowner",
        "--network",
        "none",
        "busybox",
        "sleep",
        "30",
    ]);
    let owner = h
        .ok(&["exec", "netowner", "readlink", "/proc/self/ns/net"])
        .trim()
        .to_owned();
    assert_ne!(owner, host_ns);
    assert_eq!(netns(&h, &["--network", "container:netowner"]), owner);
    h.ok(&["rm", "-f", "netowner"]);
    let (_, _, err) = h.fails(&[
        "run",
        "--rm",
        "--network",
        "container:gone",
        "busybox",
        "true",
    ]);
    assert!(err.contains("gone"), "{err}");
}

#[test]
fn interactive_tty_and_signals() {
    let h = Home::new();
    let out = h.run_with(
        &["run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo end"],
        Some(b"typed\n"),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "typed\nend\n");
    // Without -i the container's stdin is empty.
    let out = h.run_with(&["run", "--rm", "busybox", "cat"], Some(b"ignored\n"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    // -t: a pty (its line discipline turns \n into \r\n).
    let out = h.ok(&[
        "run",
        "--rm",
        "-t",
        "busybox",
        "sh",
        "-c",
        "test -t 0 && test -t 1 && echo tty; echo $TERM",
    ]);
    assert_eq!(out, "tty\r\nxterm\r\n");
    // Signals to the CLI reach the container's main process.
    let mut child = h
        .cmd(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got; exit 5' TERM; echo ready; while :; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    let start = Instant::now();
    nix_kill(child.id() as i32, 15);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(5));
    assert!(start.elapsed() < Duration::from_secs(5));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "got\n");
}

fn nix_kill(pid: i32, sig: i32) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn run_pulls_a_missing_image_once() {
    let h = Home::new();
    let server = hoist_conformance::harness::Server::hoist(std::path::Path::new(env!(
        "CARGO_BIN_EXE_hoist"
    )))
    .expect("start hoist serve");
    let remote = format!("{}/lib/busybox:1", server.addr);
    h.ok(&["tag", "busybox", &remote]);
    h.ok(&["push", &remote]);
    h.ok(&["rmi", &remote]);
    // Not in the store and --pull never: refused without pulling.
    let (_, _, err) = h.fails(&["run", "--rm", "--pull", "never", &remote, "true"]);
    assert!(err.contains("unable to find image"), "{err}");
    // First use pulls and says so on stderr; stdout is the container's alone.
    let out = h.run(&["run", "--rm", &remote, "echo", "pulled"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pulled\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Unable to find image"), "{err}");
    assert!(err.contains("Digest: sha256:"), "{err}");
    // Later uses are served from the local store.
    let out = h.run(&["run", "--rm", &remote, "echo", "again"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "again\n");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Unable to find image"));
    // --pull always pulls even when the image is there.
    let out = h.run(&["run", "--rm", "--pull", "always", &remote, "true"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Status: Image is up to date"));
}

#[test]
fn runtime_flag_runs_the_same_container_under_runc_and_crun() {
    let h = Home::new();
    let probe = "echo $$; hostname; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; \
                 touch /sys/x 2>&1 | grep -c Read-only";
    let ours = h.ok(&[
        "run",
        "--rm",
        "--hostname",
        "box",
        "busybox",
        "sh",
        "-c",
        probe,
    ]);
    assert!(ours.starts_with("1\nbox\n"), "{ours}");
    for runtime in ["runc", "crun"] {
        let theirs = h.ok(&[
            "run",
            "--rm",
            "--runtime",
            runtime,
            "--hostname",
            "box",
            "busybox",
            "sh",
            "-c",
            probe,
        ]);
        assert_eq!(theirs, ours, "{runtime} differs from hoist's executor");
        // Exit codes, detached runs with logs, stop and exec work through the runtime CLI too.
        let (code, _, _) = h.fails(&[
            "run",
            "--rm",
            "--runtime",
            runtime,
            "busybox",
            "sh",
            "-c",
            "exit 7",
        ]);
        assert_eq!(code, 7, "{runtime}");
        let name = format!("via-{runtime}");
        h.ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--runtime",
            runtime,
            "busybox",
            "sh",
            "-c",
            "echo started; exec sleep 60",
        ]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !h.ok(&["logs", &name]).contains("started") {
            assert!(Instant::now() < deadline, "{runtime}: no log line");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            h.ok(&["exec", &name, "cat", "/proc/1/cmdline"]),
            "sleep\u{0}60\u{0}"
        );
        h.ok(&["stop", "-t", "1", &name]);
        assert_eq!(h.inspect(&name)["State"]["Status"], "exited");
        h.ok(&["rm", &name]);
    }
    let (_, _, err) = h.fails(&[
        "run",
        "--rm",
        "--runtime",
        "nosuch-runtime",
        "busybox",
        "true",
    ]);
    assert!(err.contains("unknown runtime \"nosuch-runtime\""), "{err}");
}
