//! `hoist-conformance --username U --password-stdin` against the CNCF registry with htpasswd
//! auth: the password from standard input reaches the registry (the base case passes), a wrong
//! one or none does not (it fails). hoist's Bearer flow is tested with `hoist serve` in
//! `cli/tests/auth.rs`.

use std::io::Write;
use std::process::{Command, Stdio};

use hoist_conformance::harness::{Server, which};

const BIN: &str = env!("CARGO_BIN_EXE_hoist-conformance");

fn run(url: &str, args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(BIN)
        .args(["--url", url, "--filter", "base/api-version-200"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_password_comes_from_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = which("htpasswd").expect("htpasswd is not installed (apache2-utils)");
    let out = Command::new(htpasswd)
        .args(["-Bbn", "alice", "s3cret-pw"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, &out.stdout).unwrap();
    let server = Server::distribution_with(&format!(
        "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
        file.display()
    ))
    .unwrap();

    let (ok, out) = run(
        &server.url,
        &["--username", "alice", "--password-stdin"],
        "s3cret-pw\n",
    );
    assert!(ok, "with the right password:\n{out}");
    assert!(
        out.contains("ok base/api-version-200") && out.contains("1 passed, 0 failed"),
        "{out}"
    );
    let (ok, out) = run(
        &server.url,
        &["--username", "alice", "--password-stdin"],
        "wrong\n",
    );
    assert!(
        !ok && out.contains("FAIL base/api-version-200"),
        "with a wrong password:\n{out}"
    );
    let (ok, out) = run(&server.url, &[], "");
    assert!(
        !ok && out.contains("FAIL base/api-version-200"),
        "without credentials:\n{out}"
    );
    // --username alone is refused before any request.
    let (ok, out) = run(&server.url, &["--username", "alice"], "");
    assert!(!ok && out.contains("needs --password-stdin"), "{out}");
}
