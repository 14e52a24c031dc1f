//! hoist's executor: lifecycle, process, exit codes (as root, busybox bundles).

mod exec_support;

use exec_support::*;

#[test]
fn exit_code_stdout_stderr_and_pid_1() {
    let exec = hoist();
    let b = Bundle::new(&["sh", "-c", "echo out $$; echo err >&2; exit 3"]);
    let out = run(&exec, &b);
    assert_eq!(out.code, 3, "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "out 1\n");
    assert_eq!(out.stderr, "err\n");
}
