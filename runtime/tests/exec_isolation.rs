//! hoist's executor: isolation, asserted from inside the container (as root, busybox bundles).

mod exec_support;

use std::path::PathBuf;

use exec_support::*;
use hoist_runtime::exec::{Executor, Stdio};
use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxIdMappingBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscallBuilder, MountBuilder, PosixRlimitBuilder, PosixRlimitType,
    UserBuilder,
};

fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .trim()
        .to_string()
}

#[test]
fn default_capabilities_no_new_privs_and_no_seccomp() {
    let exec = hoist();
    let st = sh(&exec, "cat /proc/self/status", |_| {});
    // runc's default set: AUDIT_WRITE, KILL, NET_BIND_SERVICE.
    let want = format!("{:016x}", (1u64 << 29) | (1 << 5) | (1 << 10));
    for f in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(&st, f), want, "{f}");
    }
    assert_eq!(status_field(&st, "NoNewPrivs"), "1");
    assert_eq!(status_field(&st, "Seccomp"), "0");
}

#[test]
fn capabilities_of_a_non_root_user_and_no_caps_at_all() {
    let exec = hoist();
    let st = sh(&exec, "cat /proc/self/status; id -u; id -g", |b| {
        let p = b.process_mut();
        p.set_user(
            UserBuilder::default()
                .uid(1000u32)
                .gid(1000u32)
                .additional_gids(vec![10u32, 20])
                .build()
                .unwrap(),
        );
        let chown: oci_spec::runtime::Capabilities = [Capability::Chown].into_iter().collect();
        let mut caps = LinuxCapabilities::default();
        caps.set_bounding(Some(chown.clone()));
        caps.set_permitted(Some(chown.clone()));
        caps.set_effective(Some(chown.clone()));
        caps.set_inheritable(Some(chown.clone()));
        caps.set_ambient(Some(chown));
        p.set_capabilities(Some(caps));
        p.set_no_new_privileges(Some(false));
    });
    assert_eq!(status_field(&st, "CapEff"), "0000000000000001");
    assert_eq!(status_field(&st, "CapBnd"), "0000000000000001");
    assert_eq!(status_field(&st, "CapAmb"), "0000000000000001");
    assert_eq!(status_field(&st, "NoNewPrivs"), "0");
    assert_eq!(status_field(&st, "Uid"), "1000\t1000\t1000\t1000");
    assert_eq!(status_field(&st, "Gid"), "1000\t1000\t1000\t1000");
    assert_eq!(status_field(&st, "Groups"), "10 20");

    let st = sh(&exec, "cat /proc/self/status", |b| {
        let mut caps = LinuxCapabilities::default();
        let none: oci_spec::runtime::Capabilities = Default::default();
        caps.set_bounding(Some(none.clone()));
        caps.set_permitted(Some(none.clone()));
        caps.set_effective(Some(none.clone()));
        caps.set_inheritable(Some(none.clone()));
        caps.set_ambient(Some(none));
        b.process_mut().set_capabilities(Some(caps));
    });
    for f in ["CapPrm", "CapEff", "CapBnd"] {
        assert_eq!(status_field(&st, f), "0000000000000000", "{f}");
    }
    // Without CAP_DAC_OVERRIDE root can't write a file it doesn't own... and without CHOWN
    // it can't give files away.
    let out = run(&exec, &{
        let mut b = Bundle::new(&["sh", "-c", "touch /dev/shm/f && chown 1000 /dev/shm/f"]);
        let mut caps = LinuxCapabilities::default();
        let none: oci_spec::runtime::Capabilities = Default::default();
        caps.set_bounding(Some(none.clone()));
        caps.set_permitted(Some(none.clone()));
        caps.set_effective(Some(none.clone()));
        caps.set_inheritable(Some(none.clone()));
        caps.set_ambient(Some(none));
        b.process_mut().set_capabilities(Some(caps));
        b
    });
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );
}

fn rule(
    names: &[&str],
    errno: u32,
    args: Vec<oci_spec::runtime::LinuxSeccompArg>,
) -> oci_spec::runtime::LinuxSyscall {
    let mut b = LinuxSyscallBuilder::default()
        .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(errno);
    if !args.is_empty() {
        b = b.args(args);
    }
    b.build().unwrap()
}

fn arg(
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    two: Option<u64>,
) -> oci_spec::runtime::LinuxSeccompArg {
    let mut b = LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value);
    if let Some(t) = two {
        b = b.value_two(t);
    }
    b.build().unwrap()
}

#[test]
fn seccomp_rules_with_arguments() {
    use LinuxSeccompOperator::*;
    let exec = hoist();
    let profile = LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .syscalls(vec![
            rule(&["mkdir", "mkdirat"], libc::EPERM as u32, vec![]),
            // chmod to exactly 0700: EACCES
            rule(
                &["chmod"],
                libc::EACCES as u32,
                vec![arg(1, ScmpCmpEq, 0o700, None)],
            ),
            rule(
                &["fchmodat"],
                libc::EACCES as u32,
                vec![arg(2, ScmpCmpEq, 0o700, None)],
            ),
            // any mode with all of "other" rwx bits: EROFS
            rule(
                &["chmod"],
                libc::EROFS as u32,
                vec![arg(1, ScmpCmpMaskedEq, 0o7, Some(0o7))],
            ),
            rule(
                &["fchmodat"],
                libc::EROFS as u32,
                vec![arg(2, ScmpCmpMaskedEq, 0o7, Some(0o7))],
            ),
            // kill with a signal >= 30: EPERM
            rule(
                &["kill"],
                libc::EPERM as u32,
                vec![arg(1, ScmpCmpGe, 30, None)],
            ),
        ])
        .build()
        .unwrap();
    let script = "grep Seccomp: /proc/self/status; \
        mkdir /dev/shm/d 2>&1; \
        touch /dev/shm/f; \
        chmod 700 /dev/shm/f 2>&1; chmod 755 /dev/shm/f && echo 755 ok; \
        chmod 707 /dev/shm/f 2>&1; \
        kill -0 $$ && echo kill-0 ok; kill -30 $$ 2>&1; echo end";
    let out = sh(&exec, script, |b| {
        b.linux_mut().set_seccomp(Some(profile.clone()));
        b.spec
            .root_mut()
            .as_mut()
            .unwrap()
            .set_readonly(Some(false));
    });
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Seccomp:\t2", "{out}");
    assert!(lines[1].contains("Operation not permitted"), "{out}");
    assert!(lines[2].contains("Permission denied"), "{out}");
    assert_eq!(lines[3], "755 ok", "{out}");
    assert!(lines[4].contains("Read-only file system"), "{out}");
    assert_eq!(lines[5], "kill-0 ok", "{out}");
    assert!(lines[6].contains("not permitted"), "{out}");
    assert_eq!(lines[7], "end");
}

#[test]
fn seccomp_default_deny_allowlist() {
    // An allowlist of every x86_64 syscall but mkdir/mkdirat, default EPERM: everything else
    // works (the program is long: one rule per syscall).
    let header = std::fs::read_to_string("/usr/include/x86_64-linux-gnu/asm/unistd_64.h").unwrap();
    let names: Vec<String> = header
        .lines()
        .filter_map(|l| l.strip_prefix("#define __NR_"))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "mkdir" && *n != "mkdirat")
        .map(String::from)
        .collect();
    assert!(names.len() > 300);
    let profile = LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(libc::EPERM as u32)
        .syscalls(vec![
            LinuxSyscallBuilder::default()
                .names(names)
                .action(LinuxSeccompAction::ScmpActAllow)
                .build()
                .unwrap(),
        ])
        .build()
        .unwrap();
    let exec = hoist();
    let out = sh(
        &exec,
        "echo hi > /dev/shm/x; cat /dev/shm/x; mkdir /dev/shm/d 2>&1; exit 0",
        |b| {
            b.linux_mut().set_seccomp(Some(profile));
        },
    );
    assert_eq!(out.lines().next(), Some("hi"));
    assert!(out.contains("Operation not permitted"), "{out}");
}

#[test]
fn dev_sys_proc_and_read_only_root() {
    let exec = hoist();
    let script = "ls /dev; for d in null zero full random urandom tty; do test -c /dev/$d || echo no $d; done; \
        test -d /dev/pts && test -d /dev/shm && test -d /dev/mqueue && echo dirs ok; \
        test -c /dev/pts/ptmx && echo ptmx ok; \
        echo x > /dev/null && head -c 4 /dev/zero | wc -c; \
        touch /sys/kernel/x 2>&1; touch /newfile 2>&1; echo shm > /dev/shm/ok && cat /dev/shm/ok; \
        grep -E ' /(sys|proc) ' /proc/mounts; exit 0";
    let out = sh(&exec, script, |_| {});
    for d in [
        "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "tty", "urandom", "zero", "fd",
        "stdin", "stdout", "stderr",
    ] {
        assert!(out.lines().any(|l| l == d), "/dev/{d} missing in {out}");
    }
    assert!(!out.contains("no "), "{out}");
    assert!(out.contains("dirs ok\nptmx ok\n4\n"), "{out}");
    assert!(
        out.contains("touch: /sys/kernel/x: Read-only file system"),
        "{out}"
    );
    assert!(
        out.contains("touch: /newfile: Read-only file system"),
        "{out}"
    );
    assert!(out.contains("shm\n"), "{out}");
    let sys = out
        .lines()
        .find(|l| l.starts_with("sysfs /sys "))
        .expect("sysfs mounted");
    assert!(sys.contains(" ro,"), "{sys}");
    assert!(
        out.lines().any(|l| l.starts_with("proc /proc proc rw")),
        "{out}"
    );
}

#[test]
fn masked_and_read_only_paths() {
    // runc's default masked paths that exist on this host read empty inside; the read-only ones
    // refuse writes.
    assert!(
        !std::fs::read_to_string("/proc/timer_list")
            .unwrap()
            .is_empty()
    );
    assert!(std::fs::read_dir("/sys/firmware").unwrap().next().is_some());
    let exec = hoist();
    let script = "wc -c < /proc/timer_list; wc -c < /proc/keys; ls -A /sys/firmware | wc -l; \
        ls -A /proc/acpi | wc -l; \
        echo 1 > /proc/sys/vm/overcommit_memory || echo sys ro; \
        grep -E ' /proc/(sys|bus|irq|fs) ' /proc/mounts; exit 0";
    let out = run(&exec, &Bundle::new(&["sh", "-c", script]));
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    assert_eq!(lines[..5], ["0", "0", "0", "0", "sys ro"], "{}", out.stdout);
    assert!(
        out.stderr.contains("Read-only file system"),
        "{}",
        out.stderr
    );
    for p in ["/proc/sys", "/proc/bus", "/proc/irq", "/proc/fs"] {
        let m = out
            .stdout
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(p))
            .unwrap_or_else(|| panic!("{p} not a mount: {}", out.stdout));
        assert!(m.contains(" ro,"), "{m}");
    }
}

#[test]
fn bind_mounts_read_only_and_read_write() {
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("hello"), "from the host\n").unwrap();
    let rw = tempfile::tempdir().unwrap();
    let exec = hoist();
    let script = "cat /data/hello; touch /data/x 2>&1; echo from inside > /rw/out; \
        grep ' /data ' /proc/mounts; exit 0";
    let (hp, rp) = (host.path().to_path_buf(), rw.path().to_path_buf());
    let out = sh(&exec, script, move |b| {
        let mounts = b.spec.mounts_mut().as_mut().unwrap();
        mounts.push(
            MountBuilder::default()
                .destination("/data")
                .typ("bind")
                .source(hp)
                .options(vec![
                    "rbind".into(),
                    "ro".into(),
                    "nosuid".into(),
                    "nodev".into(),
                ])
                .build()
                .unwrap(),
        );
        mounts.push(
            MountBuilder::default()
                .destination("/rw")
                .typ("none")
                .source(rp)
                .options(vec!["bind".into(), "rw".into()])
                .build()
                .unwrap(),
        );
    });
    assert!(out.starts_with("from the host\n"), "{out}");
    assert!(
        out.contains("touch: /data/x: Read-only file system"),
        "{out}"
    );
    let m = out.lines().find(|l| l.contains(" /data ")).unwrap();
    assert!(
        m.contains(" ro,") && m.contains("nosuid") && m.contains("nodev"),
        "{m}"
    );
    assert_eq!(
        std::fs::read_to_string(rw.path().join("out")).unwrap(),
        "from inside\n"
    );
    assert!(!host.path().join("x").exists());
}

#[test]
fn cgroup_limits_v1_or_v2() {
    let exec = hoist();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max \
         /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us; \
         for i in 1 2 3 4 5 6 7 8; do sleep 1 & done",
    ]);
    let res = oci_spec::runtime::LinuxResourcesBuilder::default()
        .memory(
            oci_spec::runtime::LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .build()
                .unwrap(),
        )
        .pids(
            oci_spec::runtime::LinuxPidsBuilder::default()
                .limit(4i64)
                .build()
                .unwrap(),
        )
        .cpu(
            oci_spec::runtime::LinuxCpuBuilder::default()
                .quota(50_000i64)
                .period(100_000u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    b.linux_mut().set_resources(Some(res));
    let mut dirs: Vec<PathBuf> = Vec::new();
    let out = run_with(&exec, &b, None, |c| {
        let cg = hoist_runtime::exec::CgroupPaths::for_container(&c.id, None).unwrap();
        assert!(!cg.is_v2(), "this machine is cgroup v1");
        let mem = cg.dir("memory").unwrap();
        assert_eq!(
            std::fs::read_to_string(mem.join("memory.limit_in_bytes"))
                .unwrap()
                .trim(),
            (64u64 << 20).to_string()
        );
        let procs = std::fs::read_to_string(cg.dir("pids").unwrap().join("cgroup.procs")).unwrap();
        assert!(procs.lines().any(|l| l == c.pid.to_string()), "{procs}");
        dirs = ["memory", "pids", "cpu"]
            .iter()
            .map(|c| cg.dir(c).unwrap().to_path_buf())
            .collect();
    });
    // (a shell that can't fork gives up: the exit code is not asserted)
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[..4],
        ["67108864", "4", "50000", "100000"],
        "{}",
        out.stdout
    );
    // pids.max = 4: sh and 3 sleeps, then fork fails.
    assert!(
        out.stdout.contains("can't fork") || out.stderr.contains("can't fork"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    for d in dirs {
        assert!(!d.exists(), "{} left after delete", d.display());
    }
}

#[test]
fn rlimits() {
    let exec = hoist();
    let out = sh(&exec, "ulimit -n; ulimit -Hn", |b| {
        b.process_mut().set_rlimits(Some(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(256u64)
                .hard(512u64)
                .build()
                .unwrap(),
        ]));
    });
    assert_eq!(out, "256\n512\n");
}

#[test]
fn network_none_has_loopback_up_and_host_network_shares() {
    let exec = hoist();
    let out = sh(
        &exec,
        "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; cat /sys/class/net/lo/flags",
        |_| {},
    );
    assert_eq!(out, "lo\n0x9\n", "only lo, up (IFF_UP|IFF_LOOPBACK)");
    let out = sh(&exec, "readlink /proc/self/ns/net", |b| {
        let ns = b.linux_mut().namespaces_mut().as_mut().unwrap();
        ns.retain(|n| n.typ() != LinuxNamespaceType::Network);
        // The host's sysfs can't be mounted from another network namespace's view; keep it.
    });
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(out.trim(), host.to_str().unwrap());
}

#[test]
fn user_namespace_with_mappings() {
    let exec = hoist();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map /proc/self/gid_map; stat -c %u /bin/busybox; \
         test -c /dev/null && echo null ok; echo x > /dev/null && echo write ok",
    ]);
    // The rootfs must be reachable by the mapped root (host uid 100000).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(b.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let l = b.linux_mut();
    l.namespaces_mut().as_mut().unwrap().push(
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::User)
            .build()
            .unwrap(),
    );
    let map = LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(100_000u32)
        .size(65_536u32)
        .build()
        .unwrap();
    l.set_uid_mappings(Some(vec![map]));
    l.set_gid_mappings(Some(vec![map]));
    let out = run(&exec, &b);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(
        words,
        [
            "0", "0", "100000", "65536", "0", "100000", "65536", "65534", "null", "ok", "write",
            "ok"
        ],
        "{}",
        out.stdout
    );
}

#[test]
fn pty() {
    let exec = hoist();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "test -t 0 && test -t 1 && echo is a tty; test -c /dev/console && echo console",
    ]);
    b.process_mut().set_terminal(Some(true));
    b.write();
    let c = exec
        .create(&unique_id("pty"), b.path(), Stdio::Pty)
        .unwrap();
    let master = c.pty.as_ref().unwrap().try_clone().unwrap();
    exec.start(&c).unwrap();
    let mut f = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match std::io::Read::read(&mut f, &mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break, // slave closed
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(exec.wait(&c).unwrap(), 0);
    exec.delete(&c).unwrap();
    assert_eq!(String::from_utf8_lossy(&out), "is a tty\r\nconsole\r\n");
}

#[test]
fn exec_in_joins_namespaces_and_cgroups() {
    let exec = hoist();
    let b = Bundle::new(&["sleep", "30"]);
    b.write();
    let c = exec
        .create(&unique_id("exec"), b.path(), Stdio::Null)
        .unwrap();
    exec.start(&c).unwrap();
    let mut p = oci_spec::runtime::Process::default();
    p.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "hostname; echo $$; cat /proc/1/cmdline; echo; pwd; \
         [ \"$(cat /proc/self/cgroup)\" = \"$(cat /proc/1/cgroup)\" ] && echo same cgroups; \
         grep -c hoist/ /proc/self/cgroup; exit 0"
            .into(),
    ]));
    p.set_cwd("/dev".into());
    let (r, w) = std::io::pipe().unwrap();
    let e = hoist_runtime::exec::exec_in_with(
        c.pid,
        &p,
        None,
        std::path::Path::new(env!("CARGO_BIN_EXE_hoist-init")),
        Stdio::Fds {
            stdin: None,
            stdout: w.into(),
            stderr: std::fs::File::create("/dev/null").unwrap().into(),
        },
    )
    .unwrap();
    assert_eq!(hoist_runtime::exec::wait_pid(e.pid).unwrap(), 0);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut { r }, &mut out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "hoist-test");
    assert_ne!(lines[1], "1");
    assert_eq!(lines[2], "sleep\u{0}30\u{0}");
    assert_eq!(lines[3], "/dev");
    assert_eq!(lines[4], "same cgroups");
    // In the container's cgroup namespace: its cgroups are its root.
    assert_eq!(lines[5], "0", "{out}");
    exec.kill(&c, libc::SIGKILL).unwrap();
    assert_eq!(exec.wait(&c).unwrap(), 137);
    exec.delete(&c).unwrap();
}

#[test]
fn namespace_path_joins_another_containers_network() {
    let exec = hoist();
    let a = Bundle::new(&["sleep", "30"]);
    a.write();
    let ca = exec
        .create(&unique_id("neta"), a.path(), Stdio::Null)
        .unwrap();
    exec.start(&ca).unwrap();
    let theirs = std::fs::read_link(format!("/proc/{}/ns/net", ca.pid)).unwrap();
    let pid = ca.pid;
    let out = sh(
        &exec,
        "readlink /proc/self/ns/net; readlink /proc/self/ns/uts",
        move |b| {
            let ns = b.linux_mut().namespaces_mut().as_mut().unwrap();
            for n in ns.iter_mut() {
                if n.typ() == LinuxNamespaceType::Network {
                    n.set_path(Some(format!("/proc/{pid}/ns/net").into()));
                }
            }
        },
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(theirs.to_str().unwrap()));
    let a_uts = std::fs::read_link(format!("/proc/{}/ns/uts", ca.pid)).unwrap();
    assert_ne!(
        lines.next(),
        Some(a_uts.to_str().unwrap()),
        "only the network is shared"
    );
    exec.kill(&ca, libc::SIGKILL).unwrap();
    assert_eq!(exec.wait(&ca).unwrap(), 137);
    exec.delete(&ca).unwrap();
}

#[test]
fn sysctl_oom_score_adj_and_domainname() {
    let exec = hoist();
    let out = sh(
        &exec,
        "cat /proc/sys/net/ipv4/ip_forward /proc/self/oom_score_adj /proc/sys/kernel/domainname; \
         echo 0 > /proc/sys/net/ipv4/ip_forward || echo still read-only",
        |b| {
            b.spec.set_domainname(Some("example.test".into()));
            b.process_mut().set_oom_score_adj(Some(500));
            b.linux_mut().set_sysctl(Some(
                [("net.ipv4.ip_forward".to_string(), "1".to_string())].into(),
            ));
        },
    );
    assert_eq!(out, "1\n500\nexample.test\nstill read-only\n");
    // The host's (another network namespace) is untouched.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim()
            .len(),
        1
    );
}

#[test]
fn device_cgroup_rules() {
    // Deny every device, then what the container needs comes back (the default nodes); with
    // CAP_MKNOD a block device node still can't be made.
    let exec = hoist();
    let out = sh(
        &exec,
        "head -c 3 /dev/zero | wc -c; echo x > /dev/null && echo null ok; \
         mknod /dev/shm/blk b 7 0 2>&1 || echo block refused; exit 0",
        |b| {
            let deny_all = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap();
            let mut res = oci_spec::runtime::LinuxResources::default();
            res.set_devices(Some(vec![deny_all]));
            b.linux_mut().set_resources(Some(res));
            let mut caps = LinuxCapabilities::default();
            let mut set = caps.bounding().clone().unwrap();
            set.insert(Capability::Mknod);
            caps.set_bounding(Some(set.clone()));
            caps.set_permitted(Some(set.clone()));
            caps.set_effective(Some(set.clone()));
            caps.set_inheritable(Some(set.clone()));
            caps.set_ambient(Some(set));
            b.process_mut().set_capabilities(Some(caps));
        },
    );
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[0], "3", "{out}");
    assert_eq!(lines[1], "null ok", "{out}");
    assert!(lines[2].contains("Operation not permitted"), "{out}");
    assert_eq!(lines[3], "block refused", "{out}");
}
