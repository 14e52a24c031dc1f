//! `--label-file` and `-l` against docker's: the same files and flags through `docker create`
//! and `hoist create`, the labels compared through `inspect` (files first, `-l` last, a bare KEY
//! line dropped, comments and blank lines skipped; a bad line refused).

mod common;
mod run_support;

use common::Dockerd;
use run_support::Home;

const PATH_ENV: &str = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[test]
fn label_files_and_flags_match_docker() {
    common::require_root();
    let dockerd = Dockerd::start();
    let h = Home::new();
    common::run(
        dockerd
            .docker()
            .args(["import", "--change", PATH_ENV])
            .arg(h.dir.path().join("rootfs.tar"))
            .arg("busybox"),
    );
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.labels");
    let two = dir.path().join("two.labels");
    std::fs::write(&one, "# a comment\n\na=1\n  b=from file\nbare\nc=x=y\n").unwrap();
    std::fs::write(&two, "a=2\nd=\n").unwrap();
    let (one, two) = (one.to_str().unwrap(), two.to_str().unwrap());
    let args = [
        "create",
        "--label-file",
        one,
        "--label-file",
        two,
        "-l",
        "b=from flag",
        "--name",
        "lab",
        "busybox",
        "true",
    ];
    common::run(dockerd.docker().args(args));
    h.ok(&args);
    let fmt = ["inspect", "-f", "{{json .Config.Labels}}", "lab"];
    let d = common::run(dockerd.docker().args(fmt));
    let hl = h.ok(&fmt);
    assert_eq!(hl, d);
    assert!(d.contains(r#""b":"from flag""#), "{d}");
    // A line docker refuses.
    let bad = dir.path().join("bad.labels");
    std::fs::write(&bad, "has space=1\n").unwrap();
    let bad = bad.to_str().unwrap();
    let args = ["create", "--label-file", bad, "busybox", "true"];
    let (ok, _, derr) = common::run_status(dockerd.docker().args(args));
    assert!(!ok, "docker accepted it");
    let (code, _, herr) = h.fails(&args);
    assert_eq!(code, 125, "{herr}");
    assert!(
        derr.contains("whitespaces") && herr.contains("whitespaces"),
        "{derr} / {herr}"
    );
}
