//! hoist's executor: lifecycle, process, exit codes (as root, busybox bundles).

mod exec_support;

use exec_support::*;
use hoist_runtime::exec::Executor;

#[test]
fn exit_code_stdout_stderr_and_pid_1() {
    let exec = hoist();
    let b = Bundle::new(&["sh", "-c", "echo out $$; echo err >&2; exit 3"]);
    let out = run(&exec, &b);
    assert_eq!(out.code, 3, "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "out 1\n");
    assert_eq!(out.stderr, "err\n");
}

#[test]
fn killed_by_signal_is_128_plus_signal() {
    let exec = hoist();
    // Without a pid namespace the process is not an init, so it can signal itself.
    let mut b = Bundle::new(&["sh", "-c", "kill -9 $$"]);
    let ns = b.linux_mut().namespaces_mut().as_mut().unwrap();
    ns.retain(|n| n.typ() != oci_spec::runtime::LinuxNamespaceType::Pid);
    assert_eq!(run(&exec, &b).code, 137);
}

#[test]
fn kill_forwards_signals_to_pid_1() {
    let exec = hoist();
    // PID 1 gets only signals it handles: the trap makes TERM count.
    let b = Bundle::new(&[
        "sh",
        "-c",
        "trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.05; done",
    ]);
    b.write();
    let id = unique_id("kill");
    let (out_r, out_w) = std::io::pipe().unwrap();
    let c = exec
        .create(
            &id,
            b.path(),
            hoist_runtime::exec::Stdio::Fds {
                stdin: None,
                stdout: out_w.into(),
                stderr: std::fs::File::create("/dev/null").unwrap().into(),
            },
        )
        .unwrap();
    exec.start(&c).unwrap();
    let mut lines = std::io::BufReader::new(out_r);
    let mut first = String::new();
    std::io::BufRead::read_line(&mut lines, &mut first).unwrap();
    assert_eq!(first, "ready\n");
    exec.kill(&c, libc::SIGTERM).unwrap();
    assert_eq!(exec.wait(&c).unwrap(), 42);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut lines, &mut rest).unwrap();
    assert_eq!(rest, "got TERM\n");
    exec.delete(&c).unwrap();

    // SIGKILL from outside always works: 137.
    let b = Bundle::new(&["sleep", "100"]);
    b.write();
    let c = exec
        .create(
            &unique_id("kill"),
            b.path(),
            hoist_runtime::exec::Stdio::Null,
        )
        .unwrap();
    exec.start(&c).unwrap();
    exec.kill(&c, libc::SIGKILL).unwrap();
    assert_eq!(exec.wait(&c).unwrap(), 137);
    exec.delete(&c).unwrap();
}

#[test]
fn created_container_waits_for_start() {
    let exec = hoist();
    let b = Bundle::new(&["sh", "-c", "echo started"]);
    let out = run_with(&exec, &b, None, |c| {
        // Created: the init exists (it is our child), blocked before exec: still the helper.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let exe = std::fs::read_link(format!("/proc/{}/exe", c.pid));
        // Non-dumpable until exec: /proc/<pid>/exe of the init is not readable by others, and
        // for us it still names the init helper binary.
        if let Ok(exe) = exe {
            assert!(exe.to_string_lossy().contains("hoist-init"), "{exe:?}");
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", c.pid)).unwrap();
        assert!(!stat.contains("(sh)"), "{stat}");
    });
    assert_eq!(out.stdout, "started\n");
}

#[test]
fn stdin_is_piped() {
    let exec = hoist();
    let b = Bundle::new(&["cat"]);
    let out = run_with(&exec, &b, Some(b"through the pipe\n"), |_| {});
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "through the pipe\n");
}

#[test]
fn env_cwd_and_path_lookup() {
    let exec = hoist();
    let out = sh(&exec, "pwd; echo $FOO; echo $PATH; which ls", |b| {
        let p = b.process_mut();
        p.set_cwd("/work/dir".into());
        p.set_env(Some(vec!["PATH=/bin".into(), "FOO=bar baz".into()]));
    });
    assert_eq!(out, "/work/dir\nbar baz\n/bin\n/bin/ls\n");
}

#[test]
fn missing_executable_fails_create() {
    let exec = hoist();
    let b = Bundle::new(&["no-such-program"]);
    b.write();
    let err = exec
        .create(&unique_id("nx"), b.path(), hoist_runtime::exec::Stdio::Null)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no-such-program") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn no_leaked_descriptors() {
    // A descriptor this process leaks on purpose (no O_CLOEXEC) must not reach the container.
    let leaked = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let exec = hoist();
    // PID 1 is the shell; `ls` (its child: a command follows, so the shell can't exec it in
    // place) lists the shell's descriptors.
    let out = sh(&exec, "ls /proc/1/fd; exit 0", |_| {});
    drop(leaked);
    assert_eq!(out, "0\n1\n2\n", "descriptors of PID 1");
}

#[test]
fn hostname_and_namespaces() {
    let exec = hoist();
    let out = sh(
        &exec,
        "hostname; for n in net pid ipc uts mnt; do readlink /proc/self/ns/$n; done",
        |_| {},
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("hoist-test"));
    for (line, ns) in lines.zip(["net", "pid", "ipc", "uts", "mnt"]) {
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(line, host.to_str().unwrap(), "{ns} namespace is the host's");
    }
}

#[test]
fn delete_before_start_kills_and_cleans_up() {
    let exec = hoist();
    let b = Bundle::new(&["true"]);
    b.write();
    let id = unique_id("del");
    let c = exec
        .create(&id, b.path(), hoist_runtime::exec::Stdio::Null)
        .unwrap();
    let cg = hoist_runtime::exec::CgroupPaths::for_container(&id, None).unwrap();
    let mem = cg.dir("memory").unwrap().to_path_buf();
    assert!(mem.is_dir());
    assert!(std::path::Path::new(&format!("/proc/{}", c.pid)).exists());
    // The same id twice is refused while the first exists.
    let err = exec
        .create(&id, b.path(), hoist_runtime::exec::Stdio::Null)
        .unwrap_err();
    assert!(
        matches!(err, hoist_runtime::exec::ExecError::AlreadyExists(_)),
        "{err}"
    );
    exec.delete(&c).unwrap();
    assert!(!std::path::Path::new(&format!("/proc/{}", c.pid)).exists());
    assert!(!mem.exists());
    let err = exec.start(&c).unwrap_err();
    assert!(
        matches!(err, hoist_runtime::exec::ExecError::NotFound(_)),
        "{err}"
    );
}

#[test]
fn bad_requests_are_refused_with_what_was_wrong() {
    let exec = hoist();
    let b = Bundle::new(&["true"]);
    b.write();
    let err = exec
        .create("a/b", b.path(), hoist_runtime::exec::Stdio::Null)
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid container id \"a/b\""), "{err}");
    // process.terminal without a pty
    let mut t = Bundle::new(&["true"]);
    t.process_mut().set_terminal(Some(true));
    t.write();
    let err = exec
        .create(
            &unique_id("bad"),
            t.path(),
            hoist_runtime::exec::Stdio::Null,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("process.terminal"), "{err}");
    // no config.json
    let empty = tempfile::tempdir().unwrap();
    let err = exec
        .create(
            &unique_id("bad"),
            empty.path(),
            hoist_runtime::exec::Stdio::Null,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("config.json"), "{err}");
    // a hostname without a uts namespace (it would rename the host)
    let mut h = Bundle::new(&["true"]);
    h.linux_mut()
        .namespaces_mut()
        .as_mut()
        .unwrap()
        .retain(|n| n.typ() != oci_spec::runtime::LinuxNamespaceType::Uts);
    h.write();
    let err = exec
        .create(
            &unique_id("bad"),
            h.path(),
            hoist_runtime::exec::Stdio::Null,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("uts namespace"), "{err}");
}

#[test]
fn concurrent_creates_of_one_id_yield_one_container() {
    let exec = hoist();
    let b = Bundle::new(&["true"]);
    b.write();
    let id = unique_id("dup");
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| exec.create(&id, b.path(), hoist_runtime::exec::Stdio::Null)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, hoist_runtime::exec::ExecError::AlreadyExists(_)),
                "{e}"
            );
        }
    }
    exec.start(ok[0]).unwrap();
    assert_eq!(exec.wait(ok[0]).unwrap(), 0);
    exec.delete(ok[0]).unwrap();
}
