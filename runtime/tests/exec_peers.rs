//! The same bundles under hoist's executor, runc and crun give the same observable results.
//! (runc and crun are installed by .ci/peers.sh.)

mod exec_support;

use exec_support::*;
use hoist_runtime::exec::{Executor, OciCliExecutor, Stdio};

fn executors(state: &std::path::Path) -> Vec<(&'static str, Box<dyn Executor>)> {
    vec![
        ("hoist", Box::new(hoist())),
        (
            "runc",
            Box::new(OciCliExecutor::runc(state.join("runc")).unwrap()),
        ),
        (
            "crun",
            Box::new(OciCliExecutor::crun(state.join("crun")).unwrap()),
        ),
    ]
}

/// Runs the same bundle (built by `make`) under all three; returns (name, output) pairs.
fn all(make: impl Fn() -> Bundle) -> Vec<(&'static str, Output)> {
    let state = tempfile::tempdir().unwrap();
    executors(state.path())
        .into_iter()
        .map(|(name, exec)| {
            let b = make();
            (name, run(exec.as_ref(), &b))
        })
        .collect()
}

fn assert_same(results: &[(&str, Output)]) {
    let (first, base) = &results[0];
    for (name, out) in &results[1..] {
        assert_eq!(
            (out.code, &out.stdout),
            (base.code, &base.stdout),
            "{name} differs from {first}; stderr {name}: {:?}, {first}: {:?}",
            out.stderr,
            base.stderr
        );
    }
}

#[test]
fn process_identity_and_exit_code() {
    let results = all(|| {
        let mut b = Bundle::new(&[
            "sh",
            "-c",
            "echo pid $$; hostname; id -u; id -g; pwd; echo $FOO; \
             grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status; \
             ulimit -n; exit 7",
        ]);
        let p = b.process_mut();
        p.set_cwd("/tmp".into());
        p.set_env(Some(vec!["PATH=/bin".into(), "FOO=foo".into()]));
        b
    });
    assert_eq!(results[0].1.code, 7);
    assert!(
        results[0]
            .1
            .stdout
            .starts_with("pid 1\nhoist-test\n0\n0\n/tmp\nfoo\n")
    );
    assert_same(&results);
}

#[test]
fn filesystem_view() {
    let results = all(|| {
        Bundle::new(&[
            "sh",
            "-c",
            "for d in null zero full random urandom tty ptmx fd stdin stdout stderr pts shm mqueue; do \
               test -e /dev/$d && echo /dev/$d; done; \
             touch /x 2>/dev/null || echo root ro; touch /sys/x 2>/dev/null || echo sys ro; \
             wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l; \
             echo 1 > /proc/sys/vm/overcommit_memory 2>/dev/null || echo proc/sys ro; \
             cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; \
             ls /proc/1/fd; exit 0",
        ])
    });
    assert!(
        results[0].1.stdout.contains("/dev/null\n"),
        "{}",
        results[0].1.stdout
    );
    assert!(
        results[0]
            .1
            .stdout
            .contains("root ro\nsys ro\n0\n0\nproc/sys ro\nlo\n0\n1\n2\n"),
        "{}",
        results[0].1.stdout
    );
    assert_same(&results);
}

#[test]
fn signal_exit_code() {
    for (name, exec) in executors(tempfile::tempdir().unwrap().path()) {
        let b = Bundle::new(&["sleep", "100"]);
        b.write();
        let c = exec
            .create(&unique_id(name), b.path(), Stdio::Null)
            .unwrap();
        exec.start(&c).unwrap();
        exec.kill(&c, libc::SIGKILL).unwrap();
        assert_eq!(exec.wait(&c).unwrap(), 137, "{name}");
        exec.delete(&c).unwrap();
    }
}

#[test]
fn pty_through_console_socket() {
    for (name, exec) in executors(tempfile::tempdir().unwrap().path()) {
        let mut b = Bundle::new(&["sh", "-c", "test -t 0 && test -t 1 && echo is a tty"]);
        b.process_mut().set_terminal(Some(true));
        b.write();
        let c = exec.create(&unique_id(name), b.path(), Stdio::Pty).unwrap();
        let master = c.pty.as_ref().unwrap().try_clone().unwrap();
        exec.start(&c).unwrap();
        let mut f = std::fs::File::from(master);
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match std::io::Read::read(&mut f, &mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
                Err(e) => panic!("{name}: {e}"),
            }
        }
        assert_eq!(exec.wait(&c).unwrap(), 0, "{name}");
        exec.delete(&c).unwrap();
        assert_eq!(String::from_utf8_lossy(&out), "is a tty\r\n", "{name}");
    }
}

#[test]
fn docker_default_seccomp_profile() {
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let json = hoist_runtime::spec::default_profile(&caps, std::env::consts::ARCH);
    let profile: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(json).unwrap();
    let results = all(|| {
        let mut b = Bundle::new(&[
            "sh",
            "-c",
            "grep Seccomp: /proc/self/status; ls / > /dev/null && echo ls ok; \
             unshare -U true 2>&1; mkdir /dev/shm/d && echo mkdir ok; exit 0",
        ]);
        b.linux_mut().set_seccomp(Some(profile.clone()));
        b
    });
    assert!(
        results[0]
            .1
            .stdout
            .starts_with("Seccomp:\t2\nls ok\nunshare: "),
        "{}",
        results[0].1.stdout
    );
    assert_same(&results);
}

#[test]
fn oci_runtime_state_follows_the_lifecycle() {
    let state = tempfile::tempdir().unwrap();
    for exec in [
        OciCliExecutor::runc(state.path().join("runc")).unwrap(),
        OciCliExecutor::crun(state.path().join("crun")).unwrap(),
    ] {
        let b = Bundle::new(&["sleep", "100"]);
        b.write();
        let id = unique_id("state");
        let c = exec.create(&id, b.path(), Stdio::Null).unwrap();
        assert_eq!(exec.state(&id).unwrap(), "created");
        exec.start(&c).unwrap();
        assert_eq!(exec.state(&id).unwrap(), "running");
        exec.kill(&c, libc::SIGKILL).unwrap();
        assert_eq!(exec.wait(&c).unwrap(), 137);
        assert_eq!(exec.state(&id).unwrap(), "stopped");
        exec.delete(&c).unwrap();
        assert!(exec.state(&id).is_err(), "deleted");
    }
}
