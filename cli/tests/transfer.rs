//! `hoist login/pull/push/logout` end to end: the binary against `hoist serve` and the CNCF
//! registry (anonymous and with htpasswd auth), with skopeo putting images in and reading what
//! hoist pushed. Every test has its own HOIST_HOME and DOCKER_CONFIG.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use hoist_conformance::fixtures::{Layout, random_image};
use hoist_conformance::harness::{Server, which};
use hoist_testsupport::peers;

const BIN: &str = env!("CARGO_BIN_EXE_hoist");

/// A user: a local store and a docker config of their own.
struct User {
    home: tempfile::TempDir,
    docker: tempfile::TempDir,
}

impl User {
    fn new() -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
            docker: tempfile::tempdir().unwrap(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("HOIST_HOME", self.home.path())
            .env("DOCKER_CONFIG", self.docker.path())
            .env("RUST_LOG", "warn");
        c
    }

    /// Runs hoist with stdin from `input` (empty when `None`).
    fn run_with(&self, args: &[&str], input: Option<&str>) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(i) = input {
            stdin.write_all(i.as_bytes()).unwrap();
        }
        drop(stdin);
        child.wait_with_output().unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, None)
    }

    /// Runs hoist, asserts success, returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "hoist {args:?} failed\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs hoist, asserts failure with one line on stderr, returns it.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!out.status.success(), "hoist {args:?} succeeded: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
        assert!(err.starts_with("hoist: "), "{err}");
        err
    }
}

fn skopeo(args: &[&str]) -> String {
    peers::run(peers::skopeo().args(args))
}

/// A two-layer image in an OCI layout, copied with skopeo to `addr/repo:tag`.
fn seed(addr: &str, repo: &str, creds: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    random_image(&layout, "v1", 2, 300_000, 7).unwrap();
    let dest = format!("docker://{addr}/{repo}:v1");
    let mut args = vec!["copy", "--dest-tls-verify=false"];
    if let Some(c) = creds {
        args.extend(["--dest-creds", c]);
    }
    let src = layout.reference("v1");
    args.extend([src.as_str(), dest.as_str()]);
    skopeo(&args);
    dir
}

fn remote_digest(addr: &str, reference: &str, creds: Option<&str>) -> String {
    let target = format!("docker://{addr}/{reference}");
    let mut args = vec!["inspect", "--tls-verify=false", "--format", "{{.Digest}}"];
    if let Some(c) = creds {
        args.extend(["--creds", c]);
    }
    args.push(&target);
    skopeo(&args).trim().to_owned()
}

/// Pull what skopeo pushed, push it to two more repositories, check what skopeo sees.
fn round_trip(server: &Server) {
    let addr = &server.addr;
    let _layout = seed(addr, "src/app", None);
    let user = User::new();
    let src = format!("{addr}/src/app:v1");
    // skopeo may rewrite the manifest on the way: the registry's digest is the one to expect.
    let digest = remote_digest(addr, "src/app:v1", None);

    let out = user.ok(&["pull", &src]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {src}")),
        "{out}"
    );
    let out = user.ok(&["pull", &src]);
    assert!(
        out.contains(&format!("Status: Image is up to date for {src}")),
        "{out}"
    );
    assert_eq!(user.ok(&["pull", "-q", &src]).trim(), src);

    // Another repository of the same registry: blobs are mounted from the one pulled from.
    let dst = format!("{addr}/dst/app:v2");
    user.ok(&["tag", &src, &dst]);
    let out = user.ok(&["push", &dst]);
    assert!(out.contains("Mounted from src/app"), "{out}");
    assert!(
        out.contains(&format!("v2: digest: {digest} size: ")),
        "{out}"
    );
    assert_eq!(remote_digest(addr, "dst/app:v2", None), digest);

    // Again: everything is there already.
    let out = user.ok(&["push", &dst]);
    assert!(out.contains("Layer already exists"), "{out}");
    assert!(!out.contains("Mounted from"), "{out}");
    assert!(!out.contains("Pushed"), "{out}");
}

#[test]
fn round_trip_with_hoist_serve() {
    let server = Server::hoist(Path::new(BIN)).unwrap();
    round_trip(&server);
}

#[test]
fn round_trip_with_the_cncf_registry() {
    let server = Server::distribution().unwrap();
    round_trip(&server);
}

#[test]
fn unknown_images_fail_with_one_line() {
    let server = Server::hoist(Path::new(BIN)).unwrap();
    let user = User::new();
    let err = user.fails(&["pull", &format!("{}/nothing/here:v1", server.addr)]);
    assert!(err.contains("manifest unknown"), "{err}");
    let err = user.fails(&["push", &format!("{}/nothing/here:v1", server.addr)]);
    assert!(err.contains("does not exist locally"), "{err}");
    // Nothing listens on port 9 of loopback.
    let err = user.fails(&["pull", "127.0.0.1:9/a/b:c"]);
    assert!(err.contains("cannot reach registry 127.0.0.1:9"), "{err}");
}

#[test]
fn login_pull_push_logout_with_htpasswd() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = which("htpasswd").expect("htpasswd is not installed (apache2-utils)");
    let out = Command::new(htpasswd)
        .args(["-Bbn", "alice", "s3cret"])
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
    let addr = &server.addr;
    let creds = "alice:s3cret";
    let _layout = seed(addr, "team/app", Some(creds));
    let digest = remote_digest(addr, "team/app:v1", Some(creds));
    let user = User::new();
    let src = format!("{addr}/team/app:v1");

    // Anonymous: refused, with the way out in the message.
    let err = user.fails(&["pull", &src]);
    assert!(err.contains("hoist login"), "{err}");
    let err = user.fails(&["login", addr, "-u", "alice", "-p", "wrong"]);
    assert!(err.contains("incorrect username or password"), "{err}");
    let err = user.fails(&["login", addr, "-u", "alice"]);
    assert!(err.contains("not a terminal"), "{err}");

    let out = user.run_with(
        &["login", addr, "-u", "alice", "--password-stdin"],
        Some("s3cret\n"),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Login Succeeded"
    );
    let config = std::fs::read_to_string(user.docker.path().join("config.json")).unwrap();
    assert!(config.contains(addr.as_str()), "{config}");

    let out = user.ok(&["pull", &src]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    let dst = format!("{addr}/team/copy:v1");
    user.ok(&["tag", &src, &dst]);
    let out = user.ok(&["push", &dst]);
    assert!(out.contains("Mounted from team/app"), "{out}");
    assert_eq!(remote_digest(addr, "team/copy:v1", Some(creds)), digest);

    let out = user.ok(&["logout", addr]);
    assert!(out.contains("Removing login credentials"), "{out}");
    let err = user.fails(&["push", &dst]);
    assert!(err.contains("hoist login"), "{err}");
}
