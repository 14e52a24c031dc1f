//! `hoist run`/`exec` edges found against docker: a `--rm` container removing itself, `-t` under
//! runc and crun (the console socket's path), `exec -t`'s pty.

mod run_support;

use run_support::Home;

/// `run -d --rm busybox true` answers with the id every time (the container may be gone before
/// the CLI looks at it), and every command on a container that is removing itself answers
/// cleanly: success, or "no such container".
#[test]
fn a_container_removing_itself_answers_cleanly() {
    let h = Home::new();
    for _ in 0..8 {
        let out = h.run(&["run", "-d", "--rm", "busybox", "true"]);
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            out.status.success(),
            "run -d --rm: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.len(), 64, "{stdout:?}");
        for cmd in [
            vec!["inspect", &stdout],
            vec!["wait", &stdout],
            vec!["stop", &stdout],
            vec!["rm", "-f", &stdout],
            vec!["ps", "-a"],
        ] {
            let o = h.run(&cmd);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                o.status.success()
                    || err.contains("no such container")
                    || err.contains("no such image"),
                "hoist {cmd:?}: {}: {err}",
                o.status
            );
        }
    }
}

/// `-t` with runc and crun under a hoist home whose runtime state path is long (the console
/// socket used to live there, past sun_path's 108 bytes).
#[test]
fn tty_runs_under_runc_and_crun() {
    let h = Home::new();
    for rt in ["runc", "crun"] {
        let out = h.run(&[
            "run",
            "--rm",
            "-t",
            "--runtime",
            rt,
            "busybox",
            "echo",
            "tty-ok",
        ]);
        assert!(
            out.status.success(),
            "{rt}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "tty-ok\r\n", "{rt}");
    }
}

/// `exec -t`: the pty is the container's own (`tty` names it), as docker's.
#[test]
fn exec_tty_is_the_containers_pty() {
    let h = Home::new();
    h.ok(&["run", "-d", "--name", "ttyc", "busybox", "sleep", "60"]);
    let out = h.ok(&["exec", "-t", "ttyc", "tty"]);
    assert_eq!(out, "/dev/pts/0\r\n");
    // Flags after the container belong to the command.
    let out = h.ok(&["exec", "ttyc", "echo", "-w", "5", "-e", "x"]);
    assert_eq!(out, "-w 5 -e x\n");
    let (code, _, _) = h.fails(&["exec", "ttyc", "nosuchcommand"]);
    assert_eq!(
        code, 126,
        "docker exec's status for a command that cannot start"
    );
}
